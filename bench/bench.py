"""AlexNet Lab benchmark: one table of speed and time-to-accuracy figures.

    .venv/bin/python bench/bench.py                 # throughput, pipeline, accuracy (digits), ui
    .venv/bin/python bench/bench.py --quick         # every measurement shrunk: a smoke run (< 2 min)
    .venv/bin/python bench/bench.py --full          # adds Fashion-MNIST (several minutes) and its reference
    .venv/bin/python bench/bench.py --only throughput,pipeline --json out.json

A script, not a test: it prints a markdown table (and writes it as JSON with
``--json``). What each column means and the targets: bench/README.md.
"""

from __future__ import annotations

import os
import sys

# PyTorch's CPU allocator reads this once, at its first allocation: set it before torch is imported.
# With it, large activations come from 2 MiB pages instead of being faulted in 4 KiB at a time.
# "0" rather than unset for --no-thp: the training CLI and runs.launch default it to 1 for their processes.
os.environ["THP_MEM_ALLOC_ENABLE"] = "0" if "--no-thp" in sys.argv else "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from alexnet_core import anatomy, batches, builders, datasets, runfiles, runlogs, training, variants  # noqa: E402
from alexnet_core.config import TrainConfig  # noqa: E402

import procstat  # noqa: E402  (bench/procstat.py)
import reference  # noqa: E402  (bench/reference.py)

SECTIONS = ("throughput", "pipeline", "accuracy", "accuracy-fmnist", "accuracy-fmnist-ref", "ui")
DEFAULT_SECTIONS = ("throughput", "pipeline", "accuracy", "ui")
BIG = 100  # inputs at least this large are the 224/227 variants


# --------------------------------------------------------------------------- #
# Results


@dataclass
class Row:
    """One line of the table; numbers stay numbers in the JSON."""

    section: str
    case: str
    ours: float | None = None
    ours_unit: str = ""
    reference: float | None = None
    ratio: float | None = None  # ours / reference (speed) or as stated in details
    details: str = ""
    target: str = ""
    met: bool | None = None
    others: float | None = None  # cores used by processes outside the benchmark while this was measured
    extra: dict = field(default_factory=dict)


class Report:
    def __init__(self, header: dict):
        self.header = header
        self.rows: list[Row] = []
        self.load = procstat.OtherLoad()

    def mark(self) -> None:
        """Start of a measurement window for the other-work reading of the next row."""
        self.load.mark()

    def add(self, row: Row) -> Row:
        if row.others is None:
            row.others = self.load.cores()
        self.load.mark()
        self.rows.append(row)
        print(f"  {row.section:10s} {row.case}: {fmt(row.ours)} {row.ours_unit}"
              + (f" | ref {fmt(row.reference)}" if row.reference is not None else "")
              + (f" | {row.ratio:.2f}x" if row.ratio is not None else "")
              + (f" | {row.details}" if row.details else ""), file=sys.stderr, flush=True)
        return row

    def markdown(self) -> str:
        lines = [f"# AlexNet Lab benchmark, {self.header['date']}", ""]
        for key in ("command", "cpu", "threads", "thp", "torch", "peak", "load"):
            lines.append(f"- {key}: {self.header[key]}")
        lines += [
            "",
            "| section | case | ours | reference | ours/ref | details | target | met |",
            "|---|---|---:|---:|---:|---|---|---|",
        ]
        for r in self.rows:
            met = "" if r.met is None else ("yes" if r.met else "**no**")
            case = r.case + (f" (busy: {r.others:.1f} cores of other work)" if busy(r) else "")
            ours = f"{fmt(r.ours)} {r.ours_unit}".strip() if r.ours is not None else "-"
            ref = f"{fmt(r.reference)} {r.ours_unit}".strip() if r.reference is not None else "-"
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
            lines.append(f"| {r.section} | {case} | {ours} | {ref} | {ratio} | {r.details} | {r.target} | {met} |")
        lines.append("")
        if any(busy(r) for r in self.rows):
            lines.append(f"(busy): processes outside the benchmark used more than {BUSY_CORES} of a core on average "
                         "while the row was measured: its absolute figures are low, and ratios lean our way "
                         "(bench/README.md, Reading the figures). Re-run on a quiet machine.")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"header": self.header, "rows": [{**asdict(r), "busy": busy(r)} for r in self.rows]}


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.2f} G"
    if a >= 1e6:
        return f"{v / 1e6:.2f} M"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


BUSY_CORES = 0.25


def busy(row: Row) -> bool:
    """Other work used more than BUSY_CORES on average while the row was measured."""
    return row.others is not None and row.others > BUSY_CORES


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def thp_state() -> str:
    env = os.environ.get("THP_MEM_ALLOC_ENABLE", "")
    on = env == "1"
    kernel = ""
    with contextlib.suppress(OSError):
        kernel = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    return f"THP_MEM_ALLOC_ENABLE={'1 (on)' if on else (env or 'unset') + ' (off)'}; kernel THP: {kernel or 'unknown'}"


# --------------------------------------------------------------------------- #
# Timing helpers


def timed(fn: Callable[[], object], warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleaved(fns: dict[str, Callable[[], object]], *, warmup: int, steps: int, rounds: int) -> dict[str, list[float]]:
    """Time each function ``rounds`` times in turn (A B A B ...): slow drifts in machine load hit both."""
    out = {k: [] for k in fns}
    for k, fn in fns.items():
        timed(fn, warmup, 0)
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k] += timed(fn, 0, steps)
    return out


def matmul_peak(n: int = 2048, reps: int = 8) -> dict:
    """fp32 torch.mm FLOP/s with the current thread count: best and median of ``reps``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    torch.mm(a, b, out=c)
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b, out=c)
        rates.append(2 * n**3 / (time.perf_counter() - start))
    return {"best": max(rates), "median": statistics.median(rates), "n": n, "reps": reps}


# --------------------------------------------------------------------------- #
# Sources of images


def _real_or_noise(name: str, shape: tuple[int, int, int], n: int, seed: int):
    """n uint8 images of ``shape``: the dataset's first ones when it is in the data root, else seeded noise."""
    ok, _ = datasets.availability(name)
    if ok:
        ds = datasets.load_dataset(name, download=False)
        return ds.train_x[:n], ds.train_y[:n], ds.mean, ds.std, datasets.get_info(name).title
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    channels = shape[0]
    return x, y, (0.5,) * channels, (0.25,) * channels, "random " + "x".join(map(str, shape))


def cifar_like(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple, str]:
    """n uint8 3x32x32 images: real CIFAR-10 when it is in the data root, else seeded noise."""
    return _real_or_noise("cifar10", (3, 32, 32), n, seed)


def gray28(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple, str]:
    """n uint8 1x28x28 images: Fashion-MNIST when available offline, else seeded noise."""
    return _real_or_noise("fashion-mnist", (1, 28, 28), n, seed)


# --------------------------------------------------------------------------- #
# 1. Training throughput per variant


class OurStep:
    """One training step exactly as alexnet_core.training's loop takes it.

    In-memory uint8 batch -> batches.prepare_batch (channels_last where TrainConfig
    turns it on) -> forward, loss, zero_grad(set_to_none), backward, optimizer
    step -> the per-step loss/accuracy sums and the sync the CPU loop does.
    """

    def __init__(self, config: TrainConfig, model: nn.Module, x: torch.Tensor, y: torch.Tensor, mean, std):
        device = torch.device("cpu")
        self.channels_last = config.resolved_channels_last(device)
        self.model = model
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.optimizer = builders.build_optimizer(config, self.model)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.augment = config.augment
        self.gen = torch.Generator().manual_seed(config.seed + 1)
        self.x, self.y, self.B = x, y, config.batch_size
        self.kwargs = dict(in_channels=model.in_channels, size=config.resolved_input_size, mean=mean, std=std,
                           device=device, channels_last=self.channels_last)
        self.order = torch.randperm(len(y), generator=torch.Generator().manual_seed(config.seed))
        self.pos = 0
        self.loss_sum = torch.zeros(())
        self.correct = torch.zeros((), dtype=torch.int64)

    def __call__(self) -> None:
        if self.pos + self.B > len(self.order):
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.B]
        self.pos += self.B
        xb = batches.prepare_batch(self.x[idx], augment=self.augment, generator=self.gen, **self.kwargs)
        yb = self.y[idx]
        logits = self.model(xb)
        loss = self.criterion(logits, yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach().float() * len(idx)
        self.correct += (logits.detach().argmax(1) == yb).sum()
        float(self.loss_sum)  # the CPU loop syncs every step to catch a NaN at once


def update_peak(report: Report, n: int, reps: int) -> float:
    """Measure the matmul peak again and keep the best reading of the run (load from others only lowers it)."""
    reading = matmul_peak(n, reps)
    peak = report.header["peak_flops"]
    peak["readings"].append(reading["best"])
    if reading["best"] > peak["best"]:
        peak["best"] = reading["best"]
    report.header["peak"] = peak_text(peak)
    return peak["best"]


def peak_text(peak: dict) -> str:
    readings = peak["readings"]
    return (f"fp32 matmul peak {peak['best'] / 1e9:.0f} GFLOP/s with these threads: the best of {len(readings)} "
            f"readings (torch.mm {peak['n']}^2, best of {peak['reps']} each; lowest reading "
            f"{min(readings) / 1e9:.0f}), taken before each variant")


def section_throughput(report: Report, args) -> None:
    torch.manual_seed(0)
    names = [v for v in variants.list_models() if not args.variants or v in args.variants]
    rows = []
    for name in names:
        update_peak(report, report.header["peak_flops"]["n"], report.header["peak_flops"]["reps"])
        spec = variants.get_spec(name)
        size, channels = spec.input_size, spec.in_channels
        big = size >= BIG
        B = (args.big_batch if big else args.small_batch)
        if args.quick:
            B = 16 if big else 64
        # (warm-up steps, steps per turn, turns): ours and the reference alternate turn by turn
        if args.quick:
            warmup, steps, rounds = (1, 1, 1) if big else (1, 1, 3)
        else:
            warmup, steps, rounds = (1, 1, 3) if big else (2, 2, 5)
        pool_n = B * (steps * rounds + warmup + 1)
        if channels == 1:
            x, y, mean, std, source = gray28(pool_n)
        else:
            x, y, mean, std, source = cifar_like(pool_n)
        y = y % 10

        torch.manual_seed(0)
        model = variants.get_model(name, in_channels=channels, num_classes=10)
        _, totals = anatomy.layer_table(model, size, channels)
        ref_model = reference.reference_model(model)

        config = TrainConfig(variant=name, dataset="digits", batch_size=B, optimizer="adam", lr=1e-3,
                                      weight_decay=0.0, seed=0)
        has_lrn = any(isinstance(m, variants.FastLRN) for m in model.modules())
        arms: dict[str, Callable[[], object]] = {}
        if args.ablate:
            # what each of our choices is worth: the same step with one choice undone
            if config.resolved_channels_last(torch.device("cpu")):
                arms["ours, NCHW"] = OurStep(config.replace(channels_last=False), copy.deepcopy(model), x, y, mean, std)
            else:
                arms["ours, channels_last"] = OurStep(config.replace(channels_last=True), copy.deepcopy(model), x, y,
                                                      mean, std)
            if has_lrn:
                arms["ours, nn.LocalResponseNorm"] = OurStep(config, reference.reference_model(model), x, y, mean, std)
        ours = OurStep(config, model, x, y, mean, std)

        transform = reference.pil_transform(size=size, source=x.shape[-1], mean=mean, std=std)
        ref_data = reference.loader(reference.PILDataset(reference.pil_images(x), y, transform), B,
                                    workers=args.ref_workers)
        ref = reference.ReferenceLoop(ref_model, ref_data, optimizer="adam", lr=1e-3)

        times = interleaved({"ours": ours, "ref": ref.step, **arms}, warmup=warmup, steps=steps, rounds=rounds)
        ablation = {k: B / statistics.median(times[k]) for k in arms}
        ours_ips = B / statistics.median(times["ours"])
        ref_ips = B / statistics.median(times["ref"])
        flops = 6 * totals["mult_adds"]  # forward 2 x mult-adds; backward twice the forward
        frac = ours_ips * flops / report.header["peak_flops"]["best"]
        ratio = ours_ips / ref_ips
        target = ">= 1.2x ref" if big else ">= 1.0x ref"
        rows.append(report.add(Row(
            section="throughput",
            case=f"{name} {channels}x{size}x{size}, batch {B}",
            ours=ours_ips, ours_unit="img/s", reference=ref_ips, ratio=ratio,
            details=(f"{totals['params'] / 1e6:.2f} M params, {totals['mult_adds'] / 1e6:,.0f} M mult-adds/img, "
                     f"{frac:.0%} of peak; {'channels_last' if ours.channels_last else 'NCHW'}"
                     f"{', FastLRN vs nn.LRN' if has_lrn else ''}; from {source}"
                     + "".join(f"; {k}: {v:.1f} img/s ({ours_ips / v:.2f}x)" for k, v in ablation.items())),
            target=target, met=ratio >= (1.2 if big else 1.0),
            extra={"params": totals["params"], "mult_adds": totals["mult_adds"], "fraction_of_peak": frac,
                   "ref_fraction_of_peak": None, "batch": B,
                   "ours_step_s": times["ours"], "ref_step_s": times["ref"], "source": source,
                   "channels_last": ours.channels_last, "ref_workers": args.ref_workers,
                   "flops_per_image": flops, "ablation_img_s": ablation,
                   # the fastest step of each side: less disturbed by other work on a busy machine
                   "ours_best_img_s": B / min(times["ours"]), "ref_best_img_s": B / min(times["ref"]),
                   "ablation_step_s": {k: times[k] for k in arms}},
        )))
        del ours, ref, model, ref_model, arms
    # the fractions against the best peak reading of the whole section
    peak = report.header["peak_flops"]["best"]
    for row in rows:
        old = f"{row.extra['fraction_of_peak']:.0%} of peak"
        row.extra["fraction_of_peak"] = row.ours * row.extra["flops_per_image"] / peak
        row.extra["ref_fraction_of_peak"] = row.reference * row.extra["flops_per_image"] / peak
        row.details = row.details.replace(old, f"{row.extra['fraction_of_peak']:.0%} of peak "
                                               f"(ref {row.extra['ref_fraction_of_peak']:.0%})")


# --------------------------------------------------------------------------- #
# 2. Data pipeline


def section_pipeline(report: Report, args) -> None:
    digits = datasets.load_dataset("digits")
    gx, gy, gmean, gstd, gsource = gray28(2048)
    cx, cy, cmean, cstd, csource = cifar_like(512)
    fg = torch.Generator().manual_seed(0)
    flowers = torch.randint(0, 256, (256, 3, 64, 64), dtype=torch.uint8, generator=fg)
    cases = [
        # (label, x, mean, std, in_channels, size, augment, batch)
        ("digits 1x8x8 -> 16 (quick recipe)", digits.train_x, digits.mean, digits.std, 1, 16, None, 64),
        ("digits 1x8x8 -> 28", digits.train_x, digits.mean, digits.std, 1, 28, None, 128),
        (f"{gsource} 1x28x28 -> 28", gx, gmean, gstd, 1, 28, None, 128),
        (f"{csource} -> 3x227x227", cx, cmean, cstd, 3, 227, None, 64),
        (f"{csource} -> 3x227x227, flip + crop 4", cx, cmean, cstd, 3, 227, batches.Augment(flip=True, crop_padding=4), 64),
        ("random 3x64x64 -> 3x224x224, flip + crop 8 + rotate 10", flowers, (0.5,) * 3, (0.25,) * 3, 3, 224,
         batches.Augment(flip=True, crop_padding=8, rotation=10.0), 32),
    ]
    labels = torch.zeros(4096, dtype=torch.int64)
    for label, x, mean, std, in_ch, size, aug, B in cases:
        if args.quick:
            B = min(B, 32)
        steps = 6  # enough distinct images for the reference's dataset; the timing below picks its own count
        channels_last = size >= BIG  # what training does on the CPU for these inputs
        gen = torch.Generator().manual_seed(1)
        n = len(x)

        def ours(x=x, B=B, mean=mean, std=std, in_ch=in_ch, size=size, aug=aug, gen=gen, cl=channels_last):
            idx = torch.randint(0, len(x), (B,), generator=gen)
            batches.prepare_batch(x[idx], in_channels=in_ch, size=size, mean=mean, std=std, device="cpu",
                               augment=aug, generator=gen, channels_last=cl)

        transform = reference.pil_transform(
            size=size, source=x.shape[-1], mean=mean, std=std, channels=in_ch,
            flip=bool(aug and aug.flip), crop_padding=aug.crop_padding if aug else 0,
            rotation=aug.rotation if aug else 0.0,
        )
        ds = reference.PILDataset(reference.pil_images(x[: min(n, B * (steps + 2))]), labels[: min(n, B * (steps + 2))],
                                  transform)
        dl = reference.loader(ds, B, workers=args.ref_workers)
        it = [iter(dl)]

        def ref(dl=dl, it=it):
            try:
                next(it[0])
            except StopIteration:
                it[0] = iter(dl)
                next(it[0])

        # enough batches for ~budget seconds per arm, in 3 alternating turns (tiny batches take microseconds)
        budget = 0.3 if args.quick else 1.5
        per = {k: min(timed(fn, 1, 1)) for k, fn in (("ours", ours), ("ref", ref))}
        turn = max(1, min(int(budget / 3 / max(per["ours"], per["ref"])), 200))
        times = interleaved({"ours": ours, "ref": ref}, warmup=0, steps=turn, rounds=3)
        o, r = B / statistics.median(times["ours"]), B / statistics.median(times["ref"])
        report.add(Row(
            section="pipeline", case=f"{label}, batch {B}", ours=o, ours_unit="img/s", reference=r, ratio=o / r,
            details="prepare_batch" + (" (channels_last out)" if channels_last else "")
            + f" vs DataLoader + per-image PIL transforms ({args.ref_workers} workers)",
            extra={"ours_s": times["ours"], "ref_s": times["ref"], "batch": B},
        ))


# --------------------------------------------------------------------------- #
# 3. Time to accuracy


def _cli_available() -> bool:
    return (ROOT / "alexnet_core" / "__main__.py").exists()


def wait_for(what: str, ready: Callable[[], bool], timeout: float) -> bool:
    """Poll ``ready`` every 30 s up to ``timeout`` seconds (code that other engineers are still landing)."""
    deadline = time.time() + timeout
    while not ready():
        if time.time() >= deadline:
            return False
        print(f"  waiting for {what} ...", file=sys.stderr, flush=True)
        time.sleep(30)
    return True


def read_events(run_dir: Path) -> list[dict]:
    events = []
    with contextlib.suppress(FileNotFoundError):
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


def run_cli(argv: list[str], runs_dir: Path, timeout: float) -> tuple[float, Path | None, subprocess.CompletedProcess]:
    """``python -m alexnet_core train ...`` in the foreground; wall seconds (start-up included) and its run folder."""
    before = set(p.name for p in runs_dir.iterdir()) if runs_dir.exists() else set()
    env = dict(os.environ, ALEXNET_LAB_RUNS=str(runs_dir))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "alexnet_core", "train", *argv, "--runs-dir", str(runs_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    new = sorted(p for p in runs_dir.iterdir() if p.name not in before and p.is_dir()) if runs_dir.exists() else []
    return wall, (new[-1] if new else None), proc


def overhead_share(events: list[dict], writes: dict) -> dict:
    """Share of the epochs' wall time spent outside training steps: evaluation, checkpoints, metrics."""
    epochs = [e for e in events if e.get("type") == "epoch"]
    steps = [e for e in events if e.get("type") == "step"]
    total = sum(e["epoch_time"] for e in epochs)
    train = sum(e["train_time"] for e in epochs)
    evaluation = sum(e.get("eval_time") or 0.0 for e in epochs)
    # best.pt, last.pt, predictions .npz, the epoch event; checkpoints are written on a thread of
    # their own (checkpoints.CheckpointWriter) while the next epoch trains: its CPU time is added in
    # full, though part of it already slowed train_time (an upper bound, not a saving hidden)
    writer_cpu = sum(e.get("checkpoint_cpu") or 0.0 for e in events if e.get("type") == "end")  # one per session
    checkpoints = total - train - evaluation + writer_cpu
    # step events and status.json rewrites happen inside train_time: cost them from a measurement
    metrics = len(steps) * writes["event_s"] + train / training.STATUS_INTERVAL_S * writes["status_s"]
    return {
        "epoch_time": total, "train_time": train, "eval_time": evaluation, "checkpoint_time": checkpoints,
        "metrics_time": metrics, "share": (total - train + writer_cpu + metrics) / total if total else None,
        "eval_share": evaluation / total if total else None,
        "checkpoint_share": checkpoints / total if total else None,
        "metrics_share": metrics / total if total else None, "step_events": len(steps), "epochs": len(epochs),
    }


def measure_writes(n: int = 200) -> dict:
    """Seconds per metrics.jsonl step event and per status.json update, measured here."""
    with tempfile.TemporaryDirectory() as tmp:
        writer = runlogs.MetricsWriter(Path(tmp) / "metrics.jsonl")
        event = {"type": "step", "epoch": 1, "step": 1, "batch": 1, "steps_per_epoch": 100, "loss": 0.5,
                 "lr": 0.01, "images_per_s": 400.0, "eta_s": 12.0, "time": time.time()}
        start = time.perf_counter()
        for _ in range(n):
            writer.write(event)
        event_s = (time.perf_counter() - start) / n
        writer.close()
        start = time.perf_counter()
        for i in range(n // 4):
            runfiles.update_status(tmp, epoch=1, step=i, batch=i, images_per_s=400.0, eta_seconds=12.0)
        status_s = (time.perf_counter() - start) / (n // 4)
    return {"event_s": event_s, "status_s": status_s}


def _best_test(epochs: list[dict]) -> float:
    """Test accuracy of the epoch the validation split picked (what best.pt holds)."""
    best = [e for e in epochs if e.get("best")]
    return (best or epochs)[-1]["test_acc"]


def section_accuracy(report: Report, args, runs_dir: Path) -> None:
    if not wait_for("the training CLI (python -m alexnet_core)", _cli_available, args.wait):
        report.add(Row("accuracy", "digits, quick recipe", details="python -m alexnet_core is not there yet: not measured"))
        return
    writes = measure_writes()
    launched = time.time()
    wall, run_dir, proc = run_cli(["--recipe", "quick"], runs_dir, timeout=600)
    events = read_events(run_dir) if run_dir else []
    epochs = [e for e in events if e.get("type") == "epoch"]
    if proc.returncode != 0 or not epochs:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        report.add(Row("accuracy", "digits, quick recipe", details=f"failed (exit {proc.returncode}): {' / '.join(tail)}",
                       met=False))
        return
    acc = epochs[-1]["test_acc"]
    start_event = next((e for e in events if e.get("type") == "start"), {})
    startup = start_event.get("time", launched) - launched  # process start to the first event (imports, data, model)
    report.add(Row(
        section="accuracy", case="digits, `python -m alexnet_core train --recipe quick`",
        ours=acc * 100, ours_unit="% test",
        details=(f"{wall:.1f} s wall, start-up included (first event after {startup:.1f} s; epochs "
                 + ", ".join(f"{e['epoch_time']:.1f}" for e in epochs) + f" s); {len(epochs)} epochs, "
                 f"input {start_event.get('input_size', '?')}; best-by-validation epoch's test "
                 f"{_best_test(epochs):.1%}"),
        target=">= 97% in <= 15 s", met=acc >= 0.97 and wall <= 15.0,
        extra={"wall_s": wall, "startup_s": startup, "test_acc": acc, "run": run_dir.name,
               "epoch_times": [e["epoch_time"] for e in epochs], "stdout_tail": proc.stdout[-500:]},
    ))
    share = overhead_share(events, writes)
    report.add(Row(
        others=report.rows[-1].others,  # the same run as the row above
        section="accuracy", case="digits quick: eval + checkpoints + metrics share of epoch time",
        ours=share["share"] * 100 if share["share"] is not None else None, ours_unit="%",
        details=(f"eval {share['eval_share']:.1%}, checkpoints/predictions {share['checkpoint_share']:.1%}, "
                 f"metrics {share['metrics_share']:.2%} (step event {writes['event_s'] * 1e6:.0f} us, "
                 f"status.json {writes['status_s'] * 1e3:.2f} ms); from metrics.jsonl"),
        target="<= 10%", met=share["share"] is not None and share["share"] <= 0.10, extra={**share, **writes},
    ))


def section_fmnist(report: Report, args, runs_dir: Path) -> None:
    if not datasets.availability("fashion-mnist")[0]:
        report.add(Row("accuracy", "Fashion-MNIST, mnist recipe", details="Fashion-MNIST is not available here: not measured"))
        return
    if not wait_for("the training CLI (python -m alexnet_core)", _cli_available, args.wait):
        report.add(Row("accuracy", "Fashion-MNIST, mnist recipe", details="python -m alexnet_core is not there yet"))
        return
    writes = measure_writes()
    extra_args = ["--epochs", "1"] if args.quick else []  # a smoke run: the target is for 3 epochs
    wall, run_dir, proc = run_cli(["--recipe", "mnist", *extra_args], runs_dir, timeout=3600)
    events = read_events(run_dir) if run_dir else []
    epochs = [e for e in events if e.get("type") == "epoch"]
    if proc.returncode != 0 or not epochs:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        report.add(Row("accuracy", "Fashion-MNIST, mnist recipe", details=f"failed (exit {proc.returncode}): {' / '.join(tail)}",
                       met=False))
        return
    acc = epochs[-1]["test_acc"]
    ips = [e["images_per_s"] for e in events if e.get("type") == "step"]
    epoch_times = ", ".join(f"{e['epoch_time']:.0f}" for e in epochs)
    report.add(Row(
        section="accuracy", case=f"Fashion-MNIST, `python -m alexnet_core train --recipe mnist` ({len(epochs)} epoch{'s' * (len(epochs) > 1)})",
        ours=acc * 100, ours_unit="% test",
        details=f"{wall:.0f} s wall; epochs {epoch_times} s; "
        f"median {statistics.median(ips):.0f} img/s" if ips else f"{wall:.0f} s wall",
        target=">= 91% in 3 epochs", met=None if args.quick else (acc >= 0.91 and len(epochs) <= 3),
        extra={"wall_s": wall, "test_acc": acc, "epoch_times": [e["epoch_time"] for e in epochs], "run": run_dir.name},
    ))
    report.header["_fmnist"] = {"wall_s": wall, "test_acc": acc}
    share = overhead_share(events, writes)
    report.add(Row(
        others=report.rows[-1].others,  # the same run as the row above
        section="accuracy", case="Fashion-MNIST: eval + checkpoints + metrics share of epoch time",
        ours=share["share"] * 100, ours_unit="%",
        details=(f"eval {share['eval_share']:.1%}, checkpoints/predictions {share['checkpoint_share']:.1%}, "
                 f"metrics {share['metrics_share']:.2%}; from metrics.jsonl"),
        target="<= 10%", met=share["share"] <= 0.10, extra={**share, **writes},
    ))


def section_fmnist_reference(report: Report, args) -> None:
    """The MNIST post's recipe the posts' way: its net (ReLUs after conv1, conv2, conv5 only; no dropout; default
    init), SGD 0.01 / 0.9, batch 128, DataLoader, 3 epochs."""
    if not datasets.availability("fashion-mnist")[0]:
        report.add(Row("accuracy", "Fashion-MNIST, reference recipe", details="Fashion-MNIST is not available here"))
        return
    ds = datasets.load_dataset("fashion-mnist", download=False)
    epochs = 1 if args.quick else 3
    n_train = 2048 if args.quick else len(ds.train_y)
    torch.manual_seed(0)
    model = reference.mnist_post_model(variants.get_model("mnist", in_channels=1, num_classes=10))
    tf = reference.pil_transform(size=28, source=28, mean=ds.mean, std=ds.std)
    train = reference.loader(reference.PILDataset(reference.pil_images(ds.train_x[:n_train]), ds.train_y[:n_train], tf),
                             128, workers=args.ref_workers)
    test = reference.loader(reference.PILDataset(reference.pil_images(ds.test_x), ds.test_y, tf), 1000,
                            workers=args.ref_workers, shuffle=False)
    loop = reference.ReferenceLoop(model, train, optimizer="sgd", lr=0.01, momentum=0.9)
    start = time.perf_counter()
    loop.run_epochs(epochs)
    acc = reference.reference_accuracy(model, test)
    wall = time.perf_counter() - start
    ours = report.header.get("_fmnist")
    report.add(Row(
        section="accuracy", case=f"Fashion-MNIST, reference recipe ({epochs} epoch{'s' * (epochs > 1)}" + (", 2,048 images" if args.quick else "") + ")",
        ours=ours["test_acc"] * 100 if ours else None, ours_unit="% test", reference=acc * 100,
        ratio=(wall / ours["wall_s"]) if ours else None,
        details=(f"reference {wall:.0f} s (in-process, no start-up); ratio = reference time / ours"
                 if ours else f"reference {wall:.0f} s; run --only accuracy-fmnist,accuracy-fmnist-ref for the ratio"),
        target="ours >= reference", met=(ours["test_acc"] >= acc) if ours else None,
        extra={"ref_wall_s": wall, "ref_test_acc": acc},
    ))


# --------------------------------------------------------------------------- #
# Main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help=f"comma-separated sections: {', '.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="shrink every measurement: a smoke run of < 2 minutes")
    p.add_argument("--full", action="store_true", help="every section, Fashion-MNIST included (several minutes)")
    p.add_argument("--json", type=Path, help="also write the table as JSON here")
    p.add_argument("--variants", default="", help="comma-separated variants for the throughput section (default all)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads in this process (default: torch's own, one per core); "
                        "the training subprocesses keep their own")
    p.add_argument("--big-batch", type=int, default=64, help="batch for the 224/227 variants (default 64)")
    p.add_argument("--small-batch", type=int, default=128, help="batch for the 28/32 variants (default 128)")
    p.add_argument("--ref-workers", type=int, default=0, help="DataLoader workers of the reference way (default 0)")
    p.add_argument("--wait", type=float, default=0.0,
                   help="seconds to wait for the training CLI / the app when they are not there yet (default 0)")
    p.add_argument("--ablate", action="store_true",
                   help="throughput: also time our step with channels_last flipped and with nn.LocalResponseNorm")
    p.add_argument("--no-thp", action="store_true", help="THP_MEM_ALLOC_ENABLE=0 here and in the training processes (to measure what it is worth)")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    if args.only:
        sections = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            p.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    elif args.full:
        sections = list(SECTIONS)
    else:
        sections = list(DEFAULT_SECTIONS)

    # SIGTERM unwinds like Ctrl-C: the finally blocks stop the Streamlit server and any training run
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    procstat.adopt_orphans()  # Chromium's helpers outlive its main process: keep them counted as ours
    run_load = procstat.OtherLoad()
    peak = matmul_peak(1024 if args.quick else 2048, 4 if args.quick else 8)
    peak["readings"] = [peak["best"]]
    header = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/bench.py", *(argv if argv is not None else sys.argv[1:])]),
        "cpu": f"{cpu_model()}, {os.cpu_count()} logical cores",
        "threads": f"torch.get_num_threads() = {threads}",
        "thp": thp_state(),
        "torch": f"torch {torch.__version__}, Python {platform.python_version()}",
        "peak": peak_text(peak),
        "load": f"load average at start {load_before[0]:.2f}",
        "sections": sections,
        "quick": args.quick,
        "peak_flops": peak,
    }
    print(f"{header['cpu']}; {header['threads']}; {header['thp']}; first matmul reading "
          f"{peak['best'] / 1e9:.0f} GFLOP/s", file=sys.stderr, flush=True)
    report = Report(header)
    with tempfile.TemporaryDirectory(prefix="alexnet-bench-") as tmp:
        runs_dir = Path(tmp) / "runs"
        runs_dir.mkdir()
        for section in sections:
            print(f"[{section}]", file=sys.stderr, flush=True)
            report.mark()
            start = time.perf_counter()
            if section == "throughput":
                section_throughput(report, args)
            elif section == "pipeline":
                section_pipeline(report, args)
            elif section == "accuracy":
                section_accuracy(report, args, runs_dir)
            elif section == "accuracy-fmnist":
                section_fmnist(report, args, runs_dir)
            elif section == "accuracy-fmnist-ref":
                section_fmnist_reference(report, args)
            elif section == "ui":
                import ui_speed  # bench/ui_speed.py: streamlit + Playwright

                ui_speed.section_ui(report, args, Row, Path(tmp) / "ui-runs")
            print(f"[{section}] {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    others = run_load.cores()
    header["load"] += f", at end {load_after[0]:.2f}" + (
        f"; processes outside the benchmark used {others:.2f} cores on average during the run" if others is not None else "")
    header["other_cores"] = others
    header.pop("_fmnist", None)
    print(report.markdown())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
