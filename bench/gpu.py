"""The CUDA path, end to end, on a machine with an NVIDIA GPU.

    python bench/gpu.py [--epochs 1] [--batch 128] [--variants paper,mnist]

Runs the real CLI (``python -m alexnet_core train --device cuda``) and prints
one table: for each variant at its native input, one epoch of Fashion-MNIST
(60,000 images; bf16 autocast, channels_last, data on the GPU) with the
training images/s the run itself reported, then the ``quick`` and ``mnist``
recipes with their test accuracy and wall time. Nothing here runs in CI (CI
has no GPU); the figures go in bench/README.md. (Not named cuda.py: run from
bench/, that name would hide the ``cuda`` package torch imports.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from alexnet_core import variants


def run(argv: list[str], runs_dir: Path) -> tuple[float, list[dict]]:
    """One foreground CLI run; returns its wall seconds and its metric events."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "alexnet_core", "train", "--device", "cuda", "--runs-dir",
                           str(runs_dir), *argv], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    newest = max(runs_dir.iterdir(), key=lambda p: p.stat().st_mtime)
    events = [json.loads(line) for line in (newest / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return wall, events


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--variants", default="", help="comma-separated (default: all)")
    p.add_argument("--recipes", default="quick,mnist")
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("No CUDA device: nothing to measure.")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    names = [v for v in variants.list_models() if not args.variants or v in args.variants.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp)
        for name in names:
            wall, events = run(["--variant", name, "--dataset", "fashion-mnist", "--epochs", str(args.epochs),
                                "--batch-size", str(args.batch), "--optimizer", "adamw", "--lr", "1e-3"], runs_dir)
            steps = [e["images_per_s"] for e in events if e.get("type") == "step"][1:]  # the first holds warm-up
            epoch = [e for e in events if e.get("type") == "epoch"][-1]
            rows.append((f"{name} {variants.get_spec(name).input_size}px, batch {args.batch}",
                         f"{statistics.median(steps):,.0f} img/s" if steps else "-",
                         f"test {epoch['test_acc']:.2%}", f"{wall:.0f} s wall"))
            print(*rows[-1], sep=" | ", flush=True)
        for recipe in filter(None, args.recipes.split(",")):
            wall, events = run(["--recipe", recipe], runs_dir)
            epochs = [e for e in events if e.get("type") == "epoch"]
            rows.append((f"recipe {recipe}", f"{len(epochs)} epochs",
                         "test " + ", ".join(f"{e['test_acc']:.2%}" for e in epochs), f"{wall:.0f} s wall"))
            print(*rows[-1], sep=" | ", flush=True)
    print()
    print("| case | training | accuracy | time |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
