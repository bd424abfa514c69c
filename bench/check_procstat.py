"""Check the benchmark's CPU accounting (procstat.py) by hand: python bench/check_procstat.py

It measures other work on the whole machine, so it is not a test of the suite
(a loaded machine fails it): run it on a quiet machine after changing
procstat.py. Each case runs in a fresh Python process: a child subreaper would
adopt every orphan of the calling process and keep them as zombies.
Prints what it measured and exits 1 when a check fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A child starts a grandchild that burns 1.5 s of CPU and exits at once: the grandchild is orphaned.
_CASE = """
import json, subprocess, sys, time
sys.path.insert(0, "bench")
import procstat
adopted = procstat.adopt_orphans() if sys.argv[1] == "adopt" else None
load, start = procstat.OtherLoad(), time.monotonic()
burn = "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 1.5: pass"
subprocess.run([sys.executable, "-c", f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {burn!r}])"])
time.sleep(2.5)  # the orphan burns and exits
print(json.dumps({"adopted": adopted, "other_cpu_s": load.cores() * (time.monotonic() - start)}))
"""


def other_work(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", _CASE, mode], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout)


def main() -> int:
    if not sys.platform.startswith("linux"):
        print("procstat reads Linux's /proc: nothing to check here")
        return 0
    adopted, plain = other_work("adopt"), other_work("plain")
    checks = [
        ("adopt_orphans() makes this process a child subreaper", adopted["adopted"] is True),
        # its 1.5 CPU seconds stay in the tree
        (f"an adopted orphan is ours: {adopted['other_cpu_s']:.2f} s of other work (< 0.5)", adopted["other_cpu_s"] < 0.5),
        # without it, the orphan's CPU leaves the tree and reads as other work: why adopt_orphans exists
        (f"an orphan not adopted reads as other work: {plain['other_cpu_s']:.2f} s (> 1.0)", plain["other_cpu_s"] > 1.0),
    ]
    for text, ok in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
