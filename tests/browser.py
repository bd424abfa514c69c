"""Helpers shared by the browser tests: a real `streamlit run app.py` on a free
loopback port, Debian's chromium, and waits on what the page shows.

Every wait is on visible text, an element or an endpoint's answer, never on a
sleep. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from alexnet_core.recipes import get_recipe

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"
VIEWPORT = {"width": 1440, "height": 1800}
QUICK_SIZE = get_recipe("quick").config.input_size  # the quick demo's input side, in pixels
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling the health endpoint, not waiting on the page
    raise TimeoutError(f"{url} did not become healthy in {timeout} s")


def lab_env(lab: Path) -> dict:
    """The environment of a server (and the runs it launches) whose run store and
    dataset cache live in ``lab``."""
    return dict(os.environ, ALEXNET_LAB_RUNS=str(lab / "runs"), ALEXNET_LAB_CACHE=str(lab / "cache"))


class Server:
    """`streamlit run app.py` on a loopback port; ``start()`` returns once it is healthy.

    The server gets its own process group, and ``stop()`` signals that group,
    as a terminal's Ctrl-C or a service manager would: a training run it
    launched lives in a session of its own and must not notice.
    """

    def __init__(self, env: dict, log_path: Path, port: int | None = None):
        self.env = env
        self.log_path = Path(log_path)
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 120) -> "Server":
        """Start on ``port`` (a free one the first time; the same one on a restart)."""
        self.port = self.port or free_port()
        port = self.port
        self.url = f"http://127.0.0.1:{port}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "streamlit", "run", "app.py",
                    "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                    "--browser.gatherUsageStats", "false",
                ],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            wait_healthy(self.url, self.proc, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 10) -> str:
        """SIGTERM to the server's process group, then SIGKILL if it has not exited
        within ``timeout`` s. Returns the signal that ended it ("" if it had already exited)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return ""
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
            return "SIGTERM"
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            return "SIGKILL"

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the server leads its own group (start_new_session)
    except ProcessLookupError:
        pass


@contextlib.contextmanager
def projector_page(browser):
    """A page in a browser session of its own (nothing shared), at a projector's 1280x800."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        pg = context.new_page()
        pg.set_default_timeout(60_000)
        yield pg
    finally:
        context.close()


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def settle(pg) -> None:
    """Wait until the app is up and the script is not running."""
    pg.wait_for_selector("[data-testid=stApp]")
    pg.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]")


RENDERED = """() => {
    const images = Array.from(document.querySelectorAll('[data-testid=stImage] img'));
    return images.every(i => i.complete && i.naturalWidth > 0)
        && document.querySelectorAll('[data-testid=stSkeleton]').length === 0;
}"""


def shot(pg, name: str) -> None:
    """Screenshot once every image has loaded and no placeholder is left."""
    pg.wait_for_function(RENDERED)
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"))


ERRORS = "[data-testid=stException], [data-testid=stAlertContentError]"
# A plotly chart that is drawn (its SVG exists only once plotly.js has loaded and plotted).
DRAWN_CHART = "[data-testid=stPlotlyChart]:has(.main-svg)"
# The live view's status line (st.progress with its text).
PROGRESS = "[data-testid=stProgress]"


def no_exception(pg) -> None:
    assert pg.locator("[data-testid=stException]").count() == 0


def error_texts(pg) -> list[str]:
    """The text of every traceback and st.error alert on the page."""
    return pg.locator(ERRORS).all_inner_texts()


def nav(pg, label: str) -> None:
    pg.locator("[data-testid=stSidebarNav]").get_by_text(label, exact=True).click()


# The x values of each Plotly chart on the page, by chart title. Plotly keeps the figure on its div; ._fullData holds the decoded
# arrays (plotly.py sends numpy columns base64-encoded, so .data holds {dtype,
# bdata} objects).
CHART_XS = """() => {
    const out = {};
    for (const gd of document.querySelectorAll('.js-plotly-plot')) {
        const title = gd.layout && gd.layout.title ? (gd.layout.title.text || '') : '';
        out[title] = (gd._fullData || []).map(t => ({name: t.name, x: Array.from(t.x || [])}));
    }
    return out;
}"""


def chart_xs(pg) -> dict:
    """{chart title: [{name, x}, ...]} of the Plotly charts now drawn."""
    return pg.evaluate(CHART_XS)


def wait_for_chart(pg, title: str, trace: str, predicate_js: str, arg=None, timeout: float | None = None) -> None:
    """Wait until trace ``trace`` of the chart titled ``title`` has x values ``x``
    for which the JavaScript expression ``predicate_js`` (of x and arg) is true."""
    pg.wait_for_function(
        f"""([arg, title, trace]) => {{
            const charts = ({CHART_XS})();
            const line = (charts[title] || []).find(t => t.name === trace);
            if (!line) return false;
            const x = line.x;
            return {predicate_js};
        }}""",
        arg=[arg, title, trace],
        timeout=timeout,
    )


# --------------------------------------------------------------------------- training processes


def shown_as(run_id: str, runs_dir: Path | None = None) -> str:
    """The short name the pages show for ``run_id`` (``mnist · digits #1``)."""
    from alexnet_core import runs

    return runs.list_runs(runs_dir).set_index("id").at[run_id, "name"]


def run_pids(runs_dir: Path) -> dict[str, int]:
    """{run id: pid} of every run folder whose status.json names a live process."""
    from alexnet_core import runfiles

    found = {}
    for status_path in sorted(Path(runs_dir).glob("*/status.json")):
        st = runfiles.read_json(status_path, default=None) or {}
        pid = st.get("pid")
        if pid and runfiles.pid_alive(pid, st.get("proc_start")):
            found[status_path.parent.name] = int(pid)
    return found


def kill_runs(runs_dir: Path) -> None:
    """SIGKILL every training process a run folder under ``runs_dir`` names (by pid from status.json)."""
    for pid in run_pids(runs_dir).values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_until(predicate, timeout: float, what: str, poll: float = 0.2):
    """Poll a condition on files or processes (not on the page: use expect there)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
