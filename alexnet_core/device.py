"""Device choice, precision, CPU threads and seeding: one place each.

torch is imported when a device is resolved, not with this module: ``config``
lists ``DEVICES`` and ``PRECISIONS`` for a form and the CLI without loading it,
and the run queue counts this machine's GPUs (``gpu_ids``) without it.

    DEVICES, DEVICE_SYNTAX          auto, cpu, cuda, cuda:N, mps
    resolve_device(name, gpu=None) -> torch.device
    device_choices() -> list[str]   what a form offers on this machine
    PRECISIONS; resolve_precision(precision, device) -> "bf16" | "fp16" | "fp32"
    autocast(device, precision)     the context a forward pass runs in
    bf16_supported(device);  compile_problem(device) -> str | None
    gpu_ids() -> list[str]          this machine's NVIDIA GPUs, torch-free
    describe(device, processes=1, machines=1) -> str   e.g. "cuda:1", "cpu (2 processes)"
    seed_everything(seed);  torch_threads(threads);  available_memory_mb()
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import re
import shutil

DEVICES = ("auto", "cpu", "cuda", "mps")
# A field check, not a machine check: a run trained on cuda:3 can still be read on a laptop.
DEVICE_SYNTAX = (r"auto|cpu|mps|cuda(?::\d{1,3})?", "auto, cpu, cuda, cuda:N (N: a GPU's index), mps")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
NVIDIA_GPUS = "/proc/driver/nvidia/gpus"  # one folder per GPU the driver sees (Linux)


def resolve_device(name: str = "auto", gpu: int | None = None):
    """The ``torch.device`` for ``name``: ``auto`` picks cuda, then mps, then cpu; ``cuda``
    is ``cuda:0``. ``gpu``, when given, is the CUDA index to use for auto, cuda and cuda:N
    (the run queue's placement). An absent device raises ValueError saying what there is."""
    import torch

    if not isinstance(name, str) or not re.fullmatch(DEVICE_SYNTAX[0], name):
        raise ValueError(f"Unknown device {name!r}; choose one of: {DEVICE_SYNTAX[1]}.")
    kind, _, index = name.partition(":")
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError("Device 'mps' was asked for, but this machine has no Apple GPU; use 'auto' or 'cpu'.")
    if kind != "cuda":
        return torch.device(kind)
    if not torch.cuda.is_available():
        raise ValueError(f"Device {name!r} was asked for, but this machine has no CUDA GPU; use 'auto' or 'cpu'.")
    count = torch.cuda.device_count()
    chosen = gpu if gpu is not None else int(index or 0)
    if chosen >= count:
        there = ", ".join(f"cuda:{i}" for i in range(count))
        raise ValueError(f"Device {name!r} was asked for, but this machine has {count} CUDA GPU"
                         f"{'s' if count != 1 else ''} ({there}); choose one of those, 'cuda' or 'auto'.")
    return torch.device("cuda", chosen)


def device_choices() -> list[str]:
    """The devices a form offers here: auto, cpu, then cuda (and cuda:N with several GPUs), then mps."""
    import torch

    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        names += ["cuda"] + ([f"cuda:{i}" for i in range(count)] if count > 1 else [])
    if torch.backends.mps.is_available():
        names.append("mps")
    return names


# --------------------------------------------------------------------------- #
# Precision


def bf16_supported(device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (a CUDA GPU of compute capability 8.0
    or later, or ROCm); PyTorch's emulation on older GPUs does not count: it is slow."""
    import torch

    if device.type != "cuda":
        return False
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_precision(precision: str, device) -> str:
    """What ``precision`` means on ``device``: "bf16", "fp16" or "fp32".

    auto: bf16 on a GPU that has it, fp16 (with a gradient scaler) on older GPUs,
    fp32 elsewhere. What the device cannot do raises ValueError with a sentence.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}.")
    kind = torch.device(device).type
    if kind == "cuda":
        native = bf16_supported(torch.device(device))
        if precision == "auto":
            return "bf16" if native else "fp16"
        if precision == "bf16" and not native:
            major, minor = torch.cuda.get_device_capability(device)
            raise ValueError(
                f"Precision bf16 needs a GPU with bfloat16 (compute capability 8.0 or later); "
                f"{torch.cuda.get_device_name(device)} is {major}.{minor}: choose fp16, fp32 or auto.")
        return precision
    if precision == "auto":
        return "fp32"
    if kind == "cpu" and precision == "fp16":
        raise ValueError("Precision fp16 needs a CUDA GPU; on the CPU choose fp32 or auto (bf16 also runs, "
                         "but is slower than fp32 on most CPUs).")
    if kind != "cpu" and precision != "fp32":
        raise ValueError(f"Precision {precision} is offered on CUDA GPUs (and bf16 on the CPU); "
                         f"on {kind} choose fp32 or auto.")
    return precision


def autocast(device, precision: str):
    """The autocast context for a resolved ``precision`` ("bf16", "fp16"; "fp32": none)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def compile_problem(device) -> str | None:
    """Why ``torch.compile`` cannot run on ``device`` here, as a sentence; None when it can."""
    import torch

    kind = torch.device(device).type
    if kind == "cuda" and importlib.util.find_spec("triton") is None:
        return "compile on a CUDA GPU needs Triton (pip install triton); turn compile off or install it."
    if kind == "cpu" and not any(shutil.which(c) for c in (os.environ.get("CXX") or "g++", "clang++", "c++")):
        return "compile on the CPU needs a C++ compiler (g++ or clang++); turn compile off or install one."
    if kind not in ("cuda", "cpu"):
        return f"compile is offered on CUDA GPUs and the CPU, not on {kind}; turn it off."
    return None


# --------------------------------------------------------------------------- #
# GPUs without torch, for the run queue


def gpu_ids() -> list[str]:
    """The NVIDIA GPUs runs may use, as ``CUDA_VISIBLE_DEVICES`` names them: its entries when
    it is set, else "0".."N-1" for the N GPUs the driver lists; [] without the NVIDIA driver.

    Torch-free: a queued run counts the GPUs without loading PyTorch.
    """
    try:
        count = len(os.listdir(NVIDIA_GPUS))
    except OSError:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [str(i) for i in range(count)]
    return [v.strip() for v in visible.split(",") if v.strip()][:count]


def describe(device, processes: int = 1, machines: int = 1) -> str:
    """How a run's device reads on the pages: the GPU as the machine numbers it (not as
    ``CUDA_VISIBLE_DEVICES`` renumbered it for this process), and the processes of a DDP run."""
    kind = getattr(device, "type", str(device))
    index = getattr(device, "index", None)
    name = kind
    if kind == "cuda":
        visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
        first, local = index or 0, processes // machines
        ids = visible[first: first + local] if visible else [str(first + i) for i in range(local)]
        name = "cuda:" + ",".join(ids)
    if processes == 1:
        return name
    return f"{name} ({processes} processes)" if machines == 1 else f"{name} ({processes} processes on {machines} machines)"


# --------------------------------------------------------------------------- #
# Seeds, threads, memory


def seed_everything(seed: int):
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded the same way."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def torch_threads(threads: int):
    """PyTorch's CPU threads set to ``threads`` inside the block (0: leave its default)."""
    import torch

    if threads and threads > 0:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)
    else:
        yield


def available_memory_mb(device=None) -> float | None:
    """Memory a new run can have now, in MB: a CUDA ``device``'s free memory, else the
    system's (Linux's MemAvailable); None where it cannot be read."""
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        return torch.cuda.mem_get_info(device)[0] / 2**20
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
