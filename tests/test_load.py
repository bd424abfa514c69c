"""Load: a classroom's browsers on the Train page while one run trains.

Issue 5's load test, marked ``load`` and ``e2e``; CI runs it (about 6.5
minutes on 2 cores). Figures and history: bench/README.md and docs/history.md.
What makes it pass is the refresh budget of ui/live.py: a watching page's
status line and charts are two Streamlit fragments that rerun every 2 s and
5 s for one viewer; with twenty pages watching, each reruns 8x slower (every
16 s and 40 s), so the server spends about what three pages at the base rate
cost, and each rerun reads only the run's new metric lines, once for everyone.

One headless Chromium opens the Train page in ``VIEWERS`` (20) browser
contexts, each its own Streamlit session, against `streamlit run app.py` on a
loopback port. The test checks that every session shows live updates (its
progress text changes) and no error, and measures

- training images/s (the median of the run's step events) with 0 viewers and
  with 20, two runs of the same config in sequence: the drop is printed and
  bounded at ``MAX_DROP`` (the target is 15%; the bound leaves room for a
  noisy CI machine);
- that every page says it refreshes slower for its audience;
- the CPU the server, the browsers and the training used while the 20 watched;
- the server's resident memory (VmRSS), sampled every few seconds while the 20
  watch, as growth per minute.

In a classroom the browsers run on the students' computers. Here they share
the test machine, so the test splits it: the server and the training run (one
thread) share core 0, the classroom server; Chromium gets core 1, the
students' computers. What the drop measures is then what the server's 20
sessions cost the training next to them. With fewer than two cores the test
is skipped.

Opening the twenty pages takes most of the time (149-207 s: Chromium parses
Streamlit's and plotly's code once per context, on one core). The 5-minute
memory measurement is a script mode, not part of CI::

    python tests/test_load.py --soak 300

All traffic goes to 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` and `alexnet_core` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pytest

from alexnet_core import runs
from bench.procstat import OtherLoad, cpu_seconds, descendants
from alexnet_core.config import TrainConfig
from tests.browser import ARTIFACTS, CHROMIUM, ERRORS, PROGRESS, Server, kill_runs, lab_env, launch_chromium, settle, shown_as, wait_until

VIEWERS = 20
MAX_DROP = 0.25  # the test's bound; the target is 0.15
SERVER_CORE, BROWSER_CORE = 0, 1
WINDOW_S = 60.0  # each measurement window: twenty viewers' status lines refresh every 16 s (ui.live)
RSS_EVERY_S = 3.0
PAGE_MS = 180_000  # opening 20 pages on two shared cores takes a while
VIEWPORT = {"width": 1280, "height": 1000}

pytestmark = [
    pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores: one for the server, one for the browsers"),
    pytest.mark.load,
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def load_config() -> TrainConfig:
    """The mnist variant on the bundled digits at 28x28: many more epochs than any
    measurement needs (each run is stopped once measured)."""
    return TrainConfig(variant="mnist", dataset="digits", input_size=28, epochs=500, batch_size=64,
                       optimizer="adamw", lr=1e-3, seed=0, threads=1)


@contextlib.contextmanager
def on_cores(*cores: int):
    """Processes started inside run on ``cores`` (they inherit this thread's affinity)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cores))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# --------------------------------------------------------------------------- measuring


def rss_mb(pid: int) -> float:
    """The process's resident set (VmRSS) in MB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def chromium_pids() -> list[int]:
    """Chromium's processes started under this one (through Playwright's driver)."""
    pids = []
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            if "chrom" in Path(f"/proc/{pid}/comm").read_text():
                pids.append(pid)
    return pids


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(samples) < 2:
        return float("nan")
    ts, ys = zip(*samples)
    t_mean, y_mean = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - t_mean) ** 2 for t in ts)
    return 60 * sum((t - t_mean) * (y - y_mean) for t, y in zip(ts, ys)) / den if den else float("nan")


def rates(run_id: str, runs_dir: Path, start: float, end: float) -> list[float]:
    """images_per_s of the run's step events written between two wall-clock times."""
    events, _ = runs.read_metrics(run_id, 0, runs_dir)
    return [e["images_per_s"] for e in events
            if e.get("type") == "step" and e.get("images_per_s") and start <= e.get("time", 0) <= end]


def warmed_up(run_id: str, runs_dir: Path) -> bool:
    """The run is past its first epoch (start-up and first-step costs are behind it)."""
    events, _ = runs.read_metrics(run_id, 0, runs_dir)
    return any(e.get("type") == "step" and e.get("epoch", 0) >= 2 for e in events)


def launch_and_warm(runs_dir: Path) -> str:
    run_id = runs.launch(load_config(), runs_dir)
    wait_until(lambda: warmed_up(run_id, runs_dir), timeout=240, what="the run's second epoch")
    return run_id


def stop_run(run_id: str, runs_dir: Path) -> None:
    runs.stop(run_id, runs_dir)
    runs.wait(run_id, timeout=120, runs_dir=runs_dir)


# --------------------------------------------------------------------------- viewers


# Each page remembers every distinct progress text it showed (checked twice a second,
# in the page: no round trips from the test while it measures).
WATCH = """() => {
    window.__seen = new Set();
    window.__watch = setInterval(() => {
        const bar = document.querySelector('[data-testid=stProgress]');
        if (bar) window.__seen.add(bar.innerText);
    }, 500);
}"""
REPORT = """(errors) => {
    clearInterval(window.__watch);
    const paced = Array.from(document.querySelectorAll('[data-testid=stCaptionContainer]'))
        .some(e => e.innerText.includes('pages are watching this run'));
    return {updates: window.__seen.size, paced: paced, errors: Array.from(document.querySelectorAll(errors)).map(e => e.innerText)};
}"""


def open_viewers(browser, url: str, run_id: str, count: int) -> list:
    """``count`` browser contexts (separate sessions) on the Train page, each showing ``run_id`` live."""
    from playwright.sync_api import expect

    pages = []
    for _ in range(count):
        pg = browser.new_context(viewport=VIEWPORT).new_page()
        pg.set_default_timeout(PAGE_MS)
        pg.goto(f"{url}/train", wait_until="commit")  # ask for all of them at once, as a class would
        pages.append(pg)
    for i, pg in enumerate(pages):
        try:
            expect(pg.get_by_text(f"{shown_as(run_id)} is running")).to_be_visible(timeout=PAGE_MS)
            expect(pg.locator(PROGRESS)).to_contain_text("step", timeout=PAGE_MS)
        except AssertionError as exc:  # keep what the page showed
            ARTIFACTS.mkdir(exist_ok=True)
            pg.screenshot(path=str(ARTIFACTS / f"load-viewer-{i}.png"))
            shown = pg.locator("body").inner_text()[:600]
            raise AssertionError(f"viewer {i} of {count} did not show {run_id} running; it showed:\n{shown}") from exc
    return pages


def watch(pages: list, server_pid: int, seconds: float) -> tuple[list[dict], list[tuple[float, float]]]:
    """Let the pages watch for ``seconds``, sampling the server's RSS every RSS_EVERY_S;
    returns each page's report and the (seconds, MB) samples."""
    for pg in pages:
        pg.evaluate(WATCH)
    start = time.monotonic()
    samples = []
    for _ in range(int(seconds / RSS_EVERY_S) + 1):  # bounded: one sample per period
        samples.append((time.monotonic() - start, rss_mb(server_pid)))
        left = seconds - (time.monotonic() - start)
        if left <= 0:
            break
        time.sleep(min(RSS_EVERY_S, left))  # the sampling period of a measurement, not a wait for the page
    reports = [pg.evaluate(REPORT, ERRORS) for pg in pages]
    return reports, samples


@contextlib.contextmanager
def lab_environ(lab: Path):
    """The run store and dataset cache of ``lab`` for this process and the runs it launches."""
    saved = {k: os.environ.get(k) for k in ("ALEXNET_LAB_RUNS", "ALEXNET_LAB_CACHE", "ALEXNET_LAB_MAX_RUNS")}
    os.environ.update(ALEXNET_LAB_RUNS=str(lab / "runs"), ALEXNET_LAB_CACHE=str(lab / "cache"))
    os.environ.pop("ALEXNET_LAB_MAX_RUNS", None)
    try:
        yield lab / "runs"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def browsers():
    """Headless Chromium, its driver and every process it starts on the browsers' core."""
    from playwright.sync_api import sync_playwright

    with on_cores(BROWSER_CORE):
        p = sync_playwright().start()
    try:
        browser = launch_chromium(p)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        p.stop()


def cpu_use(pids: list[int], seconds: float, before: dict[int, float]) -> float:
    """CPU cores used on average by ``pids`` since ``before`` was taken."""
    return sum((cpu_seconds(p) or 0.0) - before.get(p, 0.0) for p in pids) / seconds


# --------------------------------------------------------------------------- the test


def test_twenty_viewers_while_a_run_trains(tmp_path):
    lab = tmp_path
    with lab_environ(lab) as runs_dir:
        server = Server(lab_env(lab), lab / "server.log")
        try:
            with on_cores(SERVER_CORE):
                server.start()
            began = time.monotonic()

            # 0 viewers: the server is up, nobody watches.
            with on_cores(SERVER_CORE):
                alone = launch_and_warm(runs_dir)
            t0 = time.time()
            other = OtherLoad()
            time.sleep(WINDOW_S)  # the measurement window itself, not a wait for something to happen
            quiet = rates(alone, runs_dir, t0, time.time())
            other0 = other.cores() or 0.0
            stop_run(alone, runs_dir)

            with browsers() as browser:
                with on_cores(SERVER_CORE):
                    watched = launch_and_warm(runs_dir)
                opened = time.monotonic()
                pages = open_viewers(browser, server.url, watched, VIEWERS)
                open_s = time.monotonic() - opened
                for pg in pages:
                    settle(pg)
                rss_start = rss_mb(server.pid)
                cpu_pids = {"server": [server.pid], "chromium": chromium_pids(),
                            "training": [runs.status(watched, runs_dir)["pid"]]}
                cpu_before = {pid: cpu_seconds(pid) or 0.0 for pids in cpu_pids.values() for pid in pids}
                t1 = time.time()
                other = OtherLoad()
                reports, samples = watch(pages, server.pid, WINDOW_S)
                t2 = time.time()
                other20 = other.cores() or 0.0
                busy = rates(watched, runs_dir, t1, t2)
                cores = {name: cpu_use(pids, t2 - t1, cpu_before) for name, pids in cpu_pids.items()}
                rss_end = rss_mb(server.pid)
                stop_run(watched, runs_dir)
        finally:
            server.stop()
            kill_runs(runs_dir)

    assert len(quiet) >= 20 and len(busy) >= 20, (len(quiet), len(busy))
    median0, median20 = statistics.median(quiet), statistics.median(busy)
    drop = 1 - median20 / median0
    growth = slope_per_minute(samples)
    print(
        f"\nload: training images/s, median of step events: {median0:.0f} with 0 viewers ({len(quiet)} events), "
        f"{median20:.0f} with {VIEWERS} ({len(busy)} events): ratio {median20 / median0:.2f}, drop {100 * drop:.1f}%"
        f"\nload: other work on this {os.cpu_count()}-core machine: {other0:.2f} cores (0 viewers window), "
        f"{other20:.2f} cores ({VIEWERS} viewers window)"
        f"\nload: {VIEWERS} pages opened in {open_s:.0f} s; CPU cores used while they watched: "
        + ", ".join(f"{k} {v:.2f}" for k, v in cores.items())
        + f"\nload: server RSS {rss_start:.0f} MB -> {rss_end:.0f} MB over {samples[-1][0]:.0f} s "
        f"({growth:+.1f} MB/min, {len(samples)} samples)"
        f"\nload: updates seen per page: {sorted(r['updates'] for r in reports)}"
        f"\nload: whole test {time.monotonic() - began:.0f} s"
    )
    for i, report in enumerate(reports):
        assert report["errors"] == [], (i, report["errors"])
        assert report["updates"] >= 3, f"page {i} showed {report['updates']} distinct progress texts in {WINDOW_S} s"
        assert report["paced"], f"page {i} did not say that it refreshes slower for {VIEWERS} viewers"
    assert drop <= MAX_DROP, f"training slowed by {100 * drop:.0f}% with {VIEWERS} viewers (bound {100 * MAX_DROP:.0f}%)"


# --------------------------------------------------------------------------- the soak (script mode)


def soak(seconds: float, viewers: int = VIEWERS) -> int:
    """20 viewers watch one run for ``seconds``; print the server's memory over time."""
    seconds = max(10.0, min(seconds, 3600.0))
    with tempfile.TemporaryDirectory(prefix="alexnet-soak-") as tmp, lab_environ(Path(tmp)) as runs_dir:
        lab = Path(tmp)
        server = Server(lab_env(lab), lab / "server.log")
        try:
            with on_cores(SERVER_CORE):
                server.start()
            print(f"server up at {server.url}: RSS {rss_mb(server.pid):.0f} MB with no session", flush=True)
            with browsers() as browser:
                with on_cores(SERVER_CORE):
                    run_id = launch_and_warm(runs_dir)
                pages = open_viewers(browser, server.url, run_id, viewers)
                for pg in pages:
                    settle(pg)
                print(f"{viewers} viewers open: RSS {rss_mb(server.pid):.0f} MB; watching for {seconds:.0f} s", flush=True)
                t0 = time.time()
                reports, samples = watch(pages, server.pid, seconds)
                t1 = time.time()
                speed = rates(run_id, runs_dir, t0, t1)
                stop_run(run_id, runs_dir)
        finally:
            server.stop()
            kill_runs(runs_dir)
    for t, mb in samples[:: max(1, len(samples) // 12)]:
        print(f"  t={t:5.0f} s  RSS {mb:7.1f} MB")
    first, last = samples[0][1], samples[-1][1]
    errors = sum(len(r["errors"]) for r in reports)
    print(
        f"soak: server RSS {first:.0f} MB -> {last:.0f} MB after {samples[-1][0]:.0f} s with {viewers} viewers; "
        f"growth {slope_per_minute(samples):+.2f} MB/min (least squares), "
        f"{60 * (last - first) / max(samples[-1][0], 1):+.2f} MB/min (end - start); peak {max(m for _, m in samples):.0f} MB"
        f"\nsoak: training {statistics.median(speed):.0f} images/s (median); "
        f"distinct progress texts per page {min(r['updates'] for r in reports)}..{max(r['updates'] for r in reports)}; "
        f"errors on pages: {errors}"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `timeout` still runs the clean-up
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak", type=float, metavar="SECONDS", required=True,
                        help="watch one run with 20 viewers this long and print the server's memory")
    parser.add_argument("--viewers", type=int, default=VIEWERS)
    args = parser.parse_args()
    sys.exit(soak(args.soak, max(1, min(args.viewers, 50))))
