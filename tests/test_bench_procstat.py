"""The benchmark's CPU accounting (bench/procstat.py): what it calls other work.

Each case runs in a fresh Python process: a child subreaper would adopt every
orphan of the test session (training processes of a stopped server among them)
and keep them as zombies that still answer kill(pid, 0).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")

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
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_orphaned_descendant_counts_as_ours_once_adopted():
    adopted = other_work("adopt")
    assert adopted["adopted"] is True
    assert adopted["other_cpu_s"] < 0.5, adopted  # its 1.5 CPU seconds stayed in the tree
    # without it, the orphan's CPU leaves the tree and reads as other work: why adopt_orphans exists
    assert other_work("plain")["other_cpu_s"] > 1.0
