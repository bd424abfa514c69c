"""bench/gpu.py, the GPU measurement, in its dry run on the CPU: so its one call on a GPU
machine (lent rarely, by the quarter hour) does not fail on something a CPU could have shown."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_bench_runs_end_to_end_on_the_cpu(tmp_path):
    done = subprocess.run(
        [sys.executable, "bench/gpu.py", "--device", "cpu", "--variants", "mnist", "--batch", "8", "--steps", "2",
         "--warmup", "1", "--precision", "fp32", "--no-compile"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "ALEXNET_LAB_CACHE": str(tmp_path / "cache"), "ALEXNET_LAB_RUNS": str(tmp_path / "runs")},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    speed = [line for line in lines if line.startswith("| mnist | 28 | no |")]
    assert len(speed) == 1 and speed[0].count("|") == 10  # one row: every column filled
    ddp = [line for line in lines if line.startswith("| quick |")]
    assert [row.split("|")[2].strip() for row in ddp] == ["1", "2"]  # one process, then one per "GPU" (2 on the CPU)
    assert "cpu (2 processes)" in ddp[1]


def test_the_peak_table_knows_the_gpus_by_their_names():
    saved = list(sys.path)  # the script puts the repository and bench/ on the path for itself
    try:
        spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "gpu.py")
        gpu = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gpu)
    finally:
        sys.path[:] = saved
    assert gpu.peak_tflops("NVIDIA H200") == 989
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756
    assert gpu.peak_tflops("NVIDIA A10G") == 70 and gpu.peak_tflops("NVIDIA A10") == 125
    assert gpu.peak_tflops("NVIDIA L40S") == 362 and gpu.peak_tflops("NVIDIA L4") == 121
    assert gpu.peak_tflops("Tesla V100-SXM2-16GB") is None  # no bf16: --peak-tflops says what to compare with
