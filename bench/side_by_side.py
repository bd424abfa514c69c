"""Recipes side by side: each trained to the end by the CLI, one after the other, on the same machine.

    .venv/bin/python bench/side_by_side.py mnist-as-written:fashion-mnist mnist

Each argument is a recipe name, optionally ``:dataset`` to train it on
another dataset (the MNIST post's recipe on Fashion-MNIST, since MNIST cannot
be downloaded offline). Prints one Markdown row per recipe: test accuracy
after each epoch, the final one, the post's reported figure where there is
one, and the wall time (start-up included). Needs the datasets on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alexnet_core.recipes import get_recipe  # noqa: E402


def train(recipe: str, dataset: str | None, runs_dir: Path) -> dict:
    argv = [sys.executable, "-m", "alexnet_core", "train", "--recipe", recipe, "--runs-dir", str(runs_dir)]
    if dataset:
        argv += ["--dataset", dataset]
    before = {p for p in runs_dir.iterdir() if p.is_dir()}
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, ALEXNET_LAB_RUNS=str(runs_dir)),
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{recipe} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    (run_dir,) = {p for p in runs_dir.iterdir() if (p / "metrics.jsonl").is_file()} - before
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [e for e in events if e.get("type") == "epoch"]
    return {"wall_s": wall, "test_acc": [e["test_acc"] for e in epochs],
            "epoch_s": [e["epoch_time"] for e in epochs]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", help="recipe[:dataset]")
    args = parser.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores")
    print("| recipe | dataset | test accuracy after each epoch | final | the post reported | wall |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.recipes:
            name, _, dataset = spec.partition(":")
            recipe = get_recipe(name)
            result = train(name, dataset or None, Path(tmp))
            accs = ", ".join(f"{100 * a:.2f}%" for a in result["test_acc"])
            reported = recipe.reported.text if recipe.reported else "-"
            print(f"| `{name}` | {dataset or recipe.config.dataset} | {accs} | **{100 * result['test_acc'][-1]:.2f}%** "
                  f"| {reported} | {result['wall_s']:.0f} s |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
