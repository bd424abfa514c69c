"""The first live refresh of a long run: a metrics.jsonl of about 200 MB of step lines.

    .venv/bin/python bench/long_metrics.py [--mb 200]

Prints the seconds RunMetrics takes to read it and draw its charts, the step rows
it keeps, and the growth of this process's peak RSS. Writes its run into a
temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alexnet-long-") as tmp:
        os.environ["ALEXNET_LAB_RUNS"] = str(Path(tmp) / "runs")
        from alexnet_core import runfiles
        from tests.fixtures import tiny_config
        from ui import live

        run = Path(tmp) / "runs" / "20260101-000000-mnist-digits-0000"
        run.mkdir(parents=True)
        tiny_config(epochs=100).to_json(run / "config.json")
        runfiles.write_json_atomic(run / "status.json", {"state": "finished", "created": time.time()})
        step = {"type": "step", "epoch": 1, "step": 0, "batch": 0, "loss": 0.5, "lr": 0.001, "images_per_s": 300.0,
                "time": 0.0}
        with open(run / "metrics.jsonl", "w") as f:
            i = 0
            while f.tell() < args.mb * 2**20:
                step.update(step=i, epoch=1 + i // 10_000, batch=i % 10_000, loss=1 / (1 + i * 1e-4))
                f.write(json.dumps(step) + "\n")
                if i % 10_000 == 9_999:
                    f.write(json.dumps({"type": "epoch", "epoch": 1 + i // 10_000, "step": i, "val_acc": 0.9}) + "\n")
                i += 1
        size = (run / "metrics.jsonl").stat().st_size / 2**20
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        metrics = live.RunMetrics(run.name, str(run.parent))
        metrics.snapshot()
        took = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{size:.0f} MB, {i:,} steps: first refresh {took:.1f} s, {metrics.steps:,} step rows kept, "
              f"peak RSS +{after - before:.0f} MB")


if __name__ == "__main__":
    main()
