"""Benchmark of the "What it learned" page's work (issue 20), a script, not a test.

    .venv/bin/python bench/learned.py [--run-dir RUN] [--threads 1,2] [--tsne]

On Fashion-MNIST (60,000 training and 10,000 test images, from Debian's
dataset-fashion-mnist or the data root) with the mnist variant at 28x28:

- features: the last hidden layer of all 70,000 images, computed and written to
  a run folder (``insight.run_features``: the first visit), per thread count,
  with the process's CPU seconds (with one thread about the time on a quiet core);
- cached: reading them back from the run folder (a later visit);
- lookup: the 8 nearest training images of one test image (median of 50);
- heatmaps: Grad-CAM of a 24-tile page (one batched pass, both classes) plus the
  24 heat tiles, for the mnist net at 28 and the paper net at 227 (median of 5);
- pca / t-SNE (``--tsne``): the map of the 10,000 test images.

``--run-dir`` takes the weights of a trained run's best.pt (a copy: its folder is
not written); without it the net's initial weights are used (the same work).
Prints a markdown table; each row says how many cores other processes used
while it was measured (``procstat.OtherLoad``), and the header the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # as bench.py: before torch is imported

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from alexnet_core import checkpoints, datasets, insight, variants  # noqa: E402
from alexnet_core.config import TrainConfig  # noqa: E402

import procstat  # noqa: E402  (bench/procstat.py)

TILES = 24


def fresh_run(tmp: Path, source: Path | None, name: str) -> Path:
    """A run folder holding only a best.pt: the given run's, or the mnist net's initial weights."""
    run_dir = tmp / name
    run_dir.mkdir()
    if source is not None:
        shutil.copy2(source / "best.pt", run_dir / "best.pt")
        return run_dir
    config = TrainConfig(variant="mnist", dataset="fashion-mnist")
    torch.manual_seed(0)
    model = variants.get_model("mnist", 1, 10, 28)
    checkpoints.save_checkpoint({"model": model.state_dict(), "config": config.to_dict(), "epoch": 0,
                                 "model_args": {"in_channels": 1, "num_classes": 10, "input_size": 28}}, run_dir / "best.pt")
    return run_dir


def median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heatmap_page(model, ds, indices) -> float:
    """Seconds for one page as the page makes it: the batched Grad-CAM for two classes each (the
    page takes the predicted class from the saved predictions: here the next class stands in)
    and the 24 heat tiles."""
    truth = ds.test_y[indices]

    def page():
        x = insight.model_input(model, ds.test_x[indices], mean=ds.mean, std=ds.std)
        cams = insight.grad_cam(model, x, torch.stack([(truth + 1) % 10, truth], 1))
        for i, index in enumerate(indices):
            insight.heat_tile(ds.test_x[index], cams[i, 0], False, target=128)

    page()  # warm-up: the first pass allocates
    return median_seconds(page, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="a trained mnist-variant run on fashion-mnist (its best.pt)")
    parser.add_argument("--threads", default="1,2", help="torch thread counts for the features, e.g. 1,2")
    parser.add_argument("--tsne", action="store_true", help="also time the t-SNE map of the 10,000 test images")
    args = parser.parse_args()

    load_before = os.getloadavg()
    ds = datasets.load_dataset("fashion-mnist", download=False)
    rows: list[tuple[str, str, str, float | None]] = []
    other = procstat.OtherLoad()

    def row(case: str, value: str, details: str = "") -> None:
        cores = other.cores()
        rows.append((case, value, details, cores))
        print(f"  {case}: {value} {details} (others {cores:.2f} cores)" if cores is not None else f"  {case}: {value}",
              file=sys.stderr, flush=True)
        other.mark()

    with tempfile.TemporaryDirectory() as tmp:
        features = None
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            run_dir = fresh_run(Path(tmp), args.run_dir, f"run-{threads}")
            other.mark()
            start, cpu = time.perf_counter(), time.process_time()
            features = insight.run_features(run_dir, ds)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            n = len(ds.train_y) + len(ds.test_y)
            row(f"features, {threads} thread{'s' * (threads > 1)}", f"{seconds:.1f} s",
                f"{n:,} images, {n / seconds:,.0f} img/s, CPU {cpu:.0f} s, "
                f"{insight.features_path(run_dir).stat().st_size / 1e6:.0f} MB file")
        torch.set_num_threads(max(int(t) for t in args.threads.split(",")))
        cached = median_seconds(lambda: insight.run_features(run_dir, ds), 3)
        row("cached (a later visit)", f"{cached:.2f} s", "read back from the run folder")
        features.train_norms  # once per visit, with the features' loading
        lookup = statistics.median(median_seconds(lambda i=i: features.closest(i, 8, ds.train_y), 1) for i in range(50))
        row("lookup", f"{lookup * 1000:.0f} ms", "8 nearest of 60,000, exact, median of 50 test images")

        indices = list(range(TILES))
        model = checkpoints.model_from_checkpoint(checkpoints.load_checkpoint(run_dir / "best.pt"))
        row("heatmaps, mnist at 28", f"{heatmap_page(model, ds, indices):.2f} s", f"{TILES} tiles, both classes, median of 5")
        torch.manual_seed(0)
        paper = variants.get_model("paper", 3, 10, 227).eval()
        row("heatmaps, paper at 227", f"{heatmap_page(paper, ds, indices):.2f} s", f"{TILES} tiles, both classes, median of 5")

        start = time.perf_counter()
        insight.project(features.test, "pca")
        row("map: PCA", f"{time.perf_counter() - start:.2f} s", f"{len(ds.test_y):,} test images")
        if args.tsne:
            start, cpu = time.perf_counter(), time.process_time()
            insight.project(features.test, "tsne", progress=lambda fraction, text: None)
            row("map: t-SNE", f"{time.perf_counter() - start:.0f} s",
                f"{len(ds.test_y):,} test images, 1 OpenMP thread, CPU {time.process_time() - cpu:.0f} s")

    load_after = os.getloadavg()
    print(f"# What it learned: Fashion-MNIST, mnist variant ({time.strftime('%Y-%m-%d %H:%M')})\n")
    print(f"- command: {' '.join(sys.argv)}")
    print(f"- weights: {args.run_dir or 'initial (seed 0)'}; CPU threads for the rest: {torch.get_num_threads()}")
    print(f"- load average (1, 5, 15 min) at start {', '.join(f'{v:.2f}' for v in load_before)}; "
          f"at end {', '.join(f'{v:.2f}' for v in load_after)}\n")
    print("| case | time | details | other processes (cores) |")
    print("|---|---:|---|---:|")
    for case, value, details, cores in rows:
        print(f"| {case} | {value} | {details} | {'' if cores is None else f'{cores:.2f}'} |")


if __name__ == "__main__":
    main()
