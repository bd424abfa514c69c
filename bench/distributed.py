"""One run on one process against the same run on several (DistributedDataParallel under torchrun).

    .venv/bin/python bench/distributed.py                       # 1 against 2 processes, on the CPU (gloo)
    .venv/bin/python bench/distributed.py --processes 1,2,4 --device cuda
    .venv/bin/python bench/distributed.py --machines            # also two "machines" meeting on 127.0.0.1

Runs the real CLI (``python -m alexnet_core train ... --nproc-per-node N``) in
the foreground for each case and prints one markdown table: training images/s
(the training images of every epoch over its training time, evaluation left
out), wall time from the command to its end (start-up included), and test
accuracy. The cases: the quick recipe as it is (dropout on: each process draws
its own masks), and the same without dropout, where N processes of batch/N
train as one process of the batch, up to rounding. With ``--machines`` the
no-dropout case also runs as two torchrun "nodes" on the loopback address
(``--nnodes 2 --rdzv-endpoint 127.0.0.1:PORT``), the command docs/distributed.md
gives for two machines. A script, not a test; the figures go in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "quick recipe": ["--recipe", "quick", "--threads", "0"],
    "quick, no dropout": ["--recipe", "quick", "--threads", "0", "--option", "dropout=0"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(commands: list[list[str]], runs_dir: Path) -> tuple[float, list[dict]]:
    """Start the commands together (one per "machine"), wait for all; returns the wall
    seconds and the run's metric events (one run in ``runs_dir``)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    # Several "machines" on one computer: the first hosts torchrun's store (docs/distributed.md).
    procs = [subprocess.Popen([sys.executable, "-m", "alexnet_core", "train", *cmd, "--runs-dir", str(runs_dir)],
                              cwd=ROOT, env={**env, "PET_RDZV_CONF": f"is_host={int(i == 0)}"} if len(commands) > 1 else env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, cmd in enumerate(commands)]
    outputs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - start
    if any(p.returncode for p in procs):
        raise SystemExit(f"{commands[0]} failed:\n" + "\n".join(out[-3000:] for out in outputs))
    (run,) = [p for p in runs_dir.iterdir() if not p.name.startswith(".")]
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return wall, events


def measure(name: str, flags: list[str], processes: int, device: str, machines: int = 1) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        flags = [*flags, "--device", device, "--nproc-per-node", str(processes // machines)]
        if machines > 1:
            flags += ["--nnodes", str(machines), "--rdzv-endpoint", f"127.0.0.1:{_free_port()}"]
        wall, events = _run([flags] * machines, Path(tmp))
    start = next(e for e in events if e["type"] == "start")
    epochs = [e for e in events if e["type"] == "epoch"]
    images = start["steps_per_epoch"] * len(epochs) * int(flags[flags.index("--batch-size") + 1])
    return {
        "case": name, "processes": f"{processes}" + (f" on {machines} machines" if machines > 1 else ""),
        "device": start["device"], "images": images, "epochs": epochs, "wall": wall,
        "train_s": sum(e["train_time"] for e in epochs), "test_acc": epochs[-1]["test_acc"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", default="1,2", help="comma-separated process counts (default 1,2)")
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    p.add_argument("--batch-size", type=int, default=32, help="the global batch (the quick recipe's: 32)")
    p.add_argument("--machines", action="store_true", help="also two torchrun nodes on 127.0.0.1")
    args = p.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    rows = []
    for name, flags in CASES.items():
        for n in counts:
            rows.append(measure(name, [*flags, "--batch-size", str(args.batch_size)], n, args.device))
            print(rows[-1]["case"], rows[-1]["processes"], f"{rows[-1]['test_acc']:.2%}", flush=True)
    if args.machines:
        rows.append(measure("quick, no dropout", [*CASES["quick, no dropout"], "--batch-size", str(args.batch_size)],
                            2, args.device, machines=2))
    print()
    print("| case | processes | device | training images/s | wall (start-up included) | test accuracy by epoch |")
    print("|---|---|---|---:|---:|---|")
    for r in rows:
        rate = f"{r['images'] / r['train_s']:,.0f}"
        accs = ", ".join(f"{e['test_acc']:.2%}" for e in r["epochs"])
        print(f"| {r['case']} | {r['processes']} | {r['device']} | {rate} | {r['wall']:.1f} s | {accs} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
