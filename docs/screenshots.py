"""Take the README's pictures again: one per page at a projector's 1280x800.

    .venv/bin/python docs/screenshots.py    # docs/images/{home,model,train,predictions,learned,runs}.png

Starts `streamlit run app.py` with its run store in a temporary folder, opens it
in headless Chromium, and follows the demo: Home, "Start the quick demo", the
run trained on the Train page, "See its predictions", then Model, What it learned
and Runs. Each
picture is reduced to a 256-colour palette so that it stays small. Look at every
PNG before committing it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser import DRAWN_CHART, ERRORS, RENDERED, Server, launch_chromium, lab_env, nav, settle  # noqa: E402

IMAGES = ROOT / "docs" / "images"
TIMEOUT_MS = 600_000  # the demo trains in this browser: minutes on a busy machine


def save(pg, name: str, broken: list[str]) -> None:
    """The first screen, once images have loaded and no placeholder is left, as a small PNG;
    a page showing an error is named in ``broken`` instead."""
    settle(pg)
    pg.wait_for_function(RENDERED)
    if pg.locator(ERRORS).count():
        broken.append(f"{name}: {pg.locator(ERRORS).first.inner_text()[:200]}")
        return
    pg.mouse.move(1279, 799)  # off the charts: a hovered plotly chart shows its toolbar, then fades it
    pg.wait_for_function("() => [...document.querySelectorAll('.modebar-group')].every(m => getComputedStyle(m).opacity === '0')",
                         timeout=10_000)
    path = IMAGES / f"{name}.png"
    pg.screenshot(path=str(path))
    with Image.open(path) as shot:
        small = shot.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KB", file=sys.stderr)


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    broken: list[str] = []
    with tempfile.TemporaryDirectory(prefix="lab-shots-") as tmp, Server(lab_env(Path(tmp)), Path(tmp) / "log") as server, \
            sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            pg = context.new_page()
            pg.set_default_timeout(TIMEOUT_MS)
            pg.goto(server.url)
            pg.get_by_role("button", name="Start the quick demo").wait_for()
            save(pg, "home", broken)
            pg.get_by_role("button", name="Start the quick demo").click()
            pg.get_by_text("is finished").wait_for()
            pg.locator(DRAWN_CHART).first.wait_for()
            save(pg, "train", broken)
            pg.get_by_role("link", name="See its predictions").click()
            pg.locator("[data-testid=stMarkdownContainer]", has_text="✗ predicted").first.wait_for()
            save(pg, "predictions", broken)
            nav(pg, "Model")
            pg.get_by_text("Mult-adds per image").first.wait_for()
            save(pg, "model", broken)
            nav(pg, "What it learned")
            pg.get_by_role("heading", name="What it learned").wait_for()
            save(pg, "learned", broken)
            nav(pg, "Runs")
            pg.locator(DRAWN_CHART).first.wait_for()
            save(pg, "runs", broken)
            context.close()
        finally:
            browser.close()
    if broken:
        sys.exit("Not taken, the page showed an error:\n" + "\n".join(broken))


if __name__ == "__main__":
    main()
