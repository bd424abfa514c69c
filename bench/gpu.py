"""A GPU, measured in one call: every variant's training speed in bf16, eager and compiled, and a DDP run.

    .venv/bin/python bench/gpu.py                                    # every variant, batch 256, then DDP
    .venv/bin/python bench/gpu.py --variants paper,torchvision --no-ddp
    .venv/bin/python bench/gpu.py --device cpu --variants mnist --batch 8 --steps 2 --precision fp32   # a dry run

For each variant at its native input size and batch 256 (``--batch``), the
training step the loop runs (``engine.Engine``: bf16 autocast, cudnn.benchmark,
channels_last on CUDA, AdamW) on batches the loop's own input path makes on the
device (``batches.prepare_batch``: uint8 32x32 colour images augmented,
normalised and resized to the input there), without and with ``torch.compile``:

- images/s over ``--steps`` timed steps after the warm-up (compiling included in the warm-up);
- the fraction of the GPU's bf16 peak it reaches: images/s x 6 x the forward
  pass's multiply-adds per image (forward 2 FLOPs per multiply-add, backward
  twice the forward), over the peak (a table of known GPUs, or ``--peak-tflops``);
- whether the GPU waits on the input: the same steps on one batch made once
  (no input work) against the full path, as "busy" = step alone / full step,
  and NVML's utilisation sampled during the full steps where ``pynvml`` is there.

Then, unless ``--no-ddp``, one run of the real CLI over every GPU there
(``--nproc-per-node`` = the GPU count) against one process, from
bench/distributed.py. Prints a markdown table; nothing here runs in CI (no
GPU there), tests/test_bench_gpu.py runs the dry run above. Not named cuda.py:
run from bench/, that name would hide the ``cuda`` package torch imports.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from alexnet_core import anatomy, variants  # noqa: E402
from alexnet_core.batches import Augment, prepare_batch  # noqa: E402
from alexnet_core.device import resolve_device, resolve_precision  # noqa: E402
from alexnet_core.engine import Engine  # noqa: E402

# Dense bf16 tensor-core peaks in TFLOP/s, from the makers' data sheets (SXM where there are two).
PEAK_BF16_TFLOPS = {
    "B200": 2250, "H200": 989, "H100 PCIe": 756, "H100": 989, "H800": 989, "GH200": 989, "A100": 312,
    "A800": 312, "L40S": 362, "L40": 181, "L4": 121, "A10G": 70, "A10": 125, "RTX 4090": 165, "RTX 6000 Ada": 364,
    "RTX A6000": 155, "RTX 3090": 71,
}
SOURCE = (3, 32, 32)  # the stored images: CIFAR-like uint8, resized on the device as training does


def peak_tflops(name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():  # longer names first where they share a prefix
        if key in name:
            return float(value)
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Utilisation:
    """NVML's GPU utilisation, sampled on a thread while the block runs (None without pynvml)."""

    def __init__(self, device: torch.device):
        self.device, self.samples, self._stop = device, [], threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            try:
                torch.cuda.utilization(self.device)
            except Exception:  # no pynvml, or NVML refuses: the busy share from timing stands alone
                return self
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.samples.append(torch.cuda.utilization(self.device))

    def __exit__(self, *exc) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def time_steps(step, steps: int, device: torch.device) -> float:
    """Seconds per step over ``steps`` steps (the device waited for at the end)."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def measure(name: str, *, device: torch.device, precision: str, batch: int, steps: int, warmup: int,
            compile: bool) -> dict:
    spec = variants.get_spec(name)
    size, channels = spec.input_size, spec.in_channels
    torch.manual_seed(0)
    model = variants.get_model(name, in_channels=channels, num_classes=10, input_size=size)
    macs = anatomy.layer_table(model, size, channels)[1]["mult_adds"]
    channels_last = device.type == "cuda"
    model = model.to(device).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    engine = Engine(device, precision)
    module = engine.prepare(model, compile=compile)
    criterion = nn.CrossEntropyLoss()
    stored = torch.randint(0, 256, (batch, SOURCE[0], SOURCE[1], SOURCE[2]), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    generator = torch.Generator(device=device).manual_seed(1)
    kwargs = dict(in_channels=channels, size=size, mean=(0.5,) * SOURCE[0], std=(0.25,) * SOURCE[0], device=device,
                  channels_last=channels_last)
    augment = Augment(flip=True, crop_padding=4)

    def full_step():
        xb = prepare_batch(stored, augment=augment, generator=generator, **kwargs)
        engine.step(module, optimizer, criterion, xb, labels)

    made = prepare_batch(stored, augment=augment, generator=generator, **kwargs)

    def step_alone():
        engine.step(module, optimizer, criterion, made, labels)

    model.train()
    warm_start = time.perf_counter()
    for _ in range(warmup):
        full_step()
    _sync(device)
    warm = time.perf_counter() - warm_start
    with Utilisation(device) as nvml:
        full = time_steps(full_step, steps, device)
    alone = time_steps(step_alone, steps, device)
    rate = batch / full
    return {"variant": name, "size": size, "compile": compile, "rate": rate, "warmup_s": warm,
            "tflops": rate * 6 * macs / 1e12, "busy": min(1.0, alone / full), "nvml": nvml.mean}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="", help="comma-separated (default: every variant)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed steps per case")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compiling happens in the first)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="bf16")
    p.add_argument("--no-compile", action="store_true", help="eager only")
    p.add_argument("--no-ddp", action="store_true", help="skip the DDP run over every GPU")
    p.add_argument("--peak-tflops", type=float, help="the device's bf16 peak, when the table does not know it")
    args = p.parse_args()
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    print(f"torch {torch.__version__}, {name}, {precision}, batch {args.batch}, bf16 peak "
          f"{f'{peak:g} TFLOP/s' if peak else 'unknown (--peak-tflops)'}", flush=True)
    names = [v for v in variants.list_models() if not args.variants or v in args.variants.split(",")]
    rows = []
    for variant in names:
        for compiled in (False,) if args.no_compile else (False, True):
            r = measure(variant, device=device, precision=precision, batch=args.batch, steps=args.steps,
                        warmup=args.warmup, compile=compiled)
            rows.append(r)
            print(f"{variant} {'compiled' if compiled else 'eager'}: {r['rate']:,.0f} img/s", flush=True)
    print()
    print("| variant | input | torch.compile | training images/s | TFLOP/s | of bf16 peak | GPU busy (step alone / full) "
          "| NVML utilisation | warm-up |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        share = f"{r['tflops'] / peak:.0%}" if peak else "-"
        nvml = f"{r['nvml']:.0f}%" if r["nvml"] is not None else "-"
        print(f"| {r['variant']} | {r['size']} | {'yes' if r['compile'] else 'no'} | {r['rate']:,.0f} | "
              f"{r['tflops']:.1f} | {share} | {r['busy']:.0%} | {nvml} | {r['warmup_s']:.1f} s |")
    if not args.no_ddp:
        import distributed

        gpus = torch.cuda.device_count() if device.type == "cuda" else 2
        flags = ["--variant", "torchvision", "--dataset", "digits", "--epochs", "3", "--batch-size", str(args.batch),
                 "--optimizer", "adamw", "--lr", "1e-3", "--precision", args.precision if device.type == "cuda" else "auto"]
        if device.type != "cuda":
            flags = ["--recipe", "quick", "--epochs", "1", "--batch-size", str(args.batch)]
        print()
        print("| DDP | processes | device | training images/s | wall | test accuracy by epoch |\n|---|---|---|---:|---:|---|")
        for n in sorted({1, gpus}):
            r = distributed.measure("torchvision on digits" if device.type == "cuda" else "quick", flags, n, args.device)
            accs = ", ".join(f"{e['test_acc']:.2%}" for e in r["epochs"])
            print(f"| {r['case']} | {r['processes']} | {r['device']} | {r['images'] / r['train_s']:,.0f} | "
                  f"{r['wall']:.0f} s | {accs} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
