"""The quick demo as a teacher starts it: from `streamlit run app.py` to a visible
misclassified gallery (issue 17, item 1).

    .venv/bin/python bench/demo_time.py               # 3 rounds, a markdown table on stdout
    .venv/bin/python bench/demo_time.py --rounds 5 --json artifacts/demo_time.json

Each round starts a fresh server (``bench/ui_speed.Server``: `streamlit run app.py`
on a free loopback port, its run store in a temporary folder) with Chromium
already open, as a teacher's browser is, then in a new 1280x800 browser session:
the server answers ``/_stcore/health``; Home shows its title and the demo's
button; the button is clicked; the Train page says the run "is finished"; "See
its predictions" is clicked; the first misclassified tile ("✗ predicted") and
its image are visible. Every time is in seconds from the server's start.

A script, not a test: the figures depend on the machine and its load, so each
round records the load average and the cores used by processes outside this
script's tree (``procstat.OtherLoad``). What the columns mean: bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import procstat  # noqa: E402  (bench/procstat.py)
from ui_speed import CHROMIUM, CHROMIUM_ARGS, Server  # noqa: E402  (bench/ui_speed.py)

TARGET_S = 15.0  # issue 17: about 15 s from the start to the gallery
TIMEOUT_MS = 600_000  # a busy laptop took minutes: wait, and say so in the figures
WARMED = re.compile(rb"imported and warmed in ([\d.]+) s")


def run_events(runs_dir: Path) -> dict:
    """When the demo's training process wrote its first event and its end (unix times),
    its epochs' own seconds, and its test accuracy."""
    [run_dir] = [p for p in runs_dir.iterdir() if p.is_dir()]
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    status = json.loads((run_dir / "status.json").read_text())
    epochs = [e for e in events if e["type"] == "epoch"]
    return {
        "created": status.get("created"),
        "first_event": events[0]["time"],
        "end": events[-1]["time"],
        "epoch_s": [round(e["epoch_time"], 2) for e in epochs],
        "test_acc": status.get("test_acc"),
    }


def one_round(playwright_browser, workdir: Path) -> dict:
    runs_dir = workdir / "runs"
    runs_dir.mkdir(parents=True)
    load = procstat.OtherLoad()
    load_avg = os.getloadavg()[0]
    started_wall = time.time()
    server = Server(runs_dir, workdir / "streamlit.log")
    at = {}
    try:
        at["server answered"] = server.wait_healthy(timeout=TIMEOUT_MS / 1000)
        context = playwright_browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.url)
            page.get_by_role("heading", name="AlexNet Lab").wait_for()
            demo = page.get_by_role("button", name="Start the quick demo")
            demo.wait_for()
            at["Home shown"] = time.perf_counter() - server.start
            demo.click()
            at["demo clicked"] = time.perf_counter() - server.start
            page.get_by_text("is finished").wait_for()
            at["training finished"] = time.perf_counter() - server.start
            page.get_by_role("link", name="See its predictions").click()
            page.locator("[data-testid=stMarkdownContainer]", has_text="✗ predicted").first.wait_for()
            page.wait_for_function("""() => {
                const img = document.querySelector('[data-testid=stImage] img');
                return img && img.complete && img.naturalWidth > 0;
            }""")
            at["gallery visible"] = time.perf_counter() - server.start
        finally:
            context.close()
    finally:
        server.stop()
    run = run_events(runs_dir)
    warmed = WARMED.search((workdir / "streamlit.log").read_bytes())
    return {
        "at": at,
        "warm_up_s": float(warmed.group(1)) if warmed else None,
        # the training process: from the click's launch to its first event (Python, PyTorch, the data),
        # then to its end (every epoch, the checkpoints)
        "run_start_up_s": run["first_event"] - run["created"] if run["created"] else None,
        "run_training_s": run["end"] - run["first_event"],
        "epoch_s": run["epoch_s"],
        "test_acc": run["test_acc"],
        "load_avg_1min_at_start": load_avg,
        "other_cores": load.cores(),
        "started": time.strftime("%H:%M:%S", time.localtime(started_wall)),
    }


def fmt(v, unit=" s") -> str:
    return "-" if v is None else f"{v:.1f}{unit}"


def table(rounds: list[dict]) -> str:
    steps = list(rounds[0]["at"])
    lines = [
        "| round | started | load avg (1 min) | other work (cores) | " + " | ".join(steps)
        + " | PyTorch warm-up in the server | run start-up | run training | test accuracy |",
        "|" + "---|" * (len(steps) + 8),
    ]
    for i, r in enumerate(rounds, 1):
        lines.append(
            f"| {i} | {r['started']} | {r['load_avg_1min_at_start']:.2f} | {fmt(r['other_cores'], '')} | "
            + " | ".join(fmt(r["at"][s]) for s in steps)
            + f" | {fmt(r['warm_up_s'])} | {fmt(r['run_start_up_s'])} | {fmt(r['run_training_s'])} | "
            f"{100 * r['test_acc']:.1f}% |"
        )
    median = {s: statistics.median(r["at"][s] for r in rounds) for s in steps}
    lines.append(
        "| median | | | | " + " | ".join(fmt(median[s]) for s in steps)
        + f" | {fmt(statistics.median(r['warm_up_s'] or 0 for r in rounds))}"
        f" | {fmt(statistics.median(r['run_start_up_s'] or 0 for r in rounds))}"
        f" | {fmt(statistics.median(r['run_training_s'] for r in rounds))} | |"
    )
    total = median["gallery visible"]
    lines.append(f"\nStart to gallery, median of {len(rounds)}: {total:.1f} s (target about {TARGET_S:.0f} s: "
                 f"{'met' if total <= TARGET_S else 'not met'}).")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh servers, one after the other (default 3)")
    parser.add_argument("--json", type=Path, help="also write every round's figures here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    procstat.adopt_orphans()  # Chromium's helpers stay in this tree: their CPU is not "other work"
    rounds = []
    with tempfile.TemporaryDirectory(prefix="demo-time-") as tmp, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for i in range(args.rounds):
                print(f"round {i + 1} of {args.rounds}…", file=sys.stderr)
                rounds.append(one_round(browser, Path(tmp) / f"round-{i + 1}"))
                print(json.dumps(rounds[-1]), file=sys.stderr)
        finally:
            browser.close()
    print(table(rounds))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rounds": rounds}, indent=1))


if __name__ == "__main__":
    main()
