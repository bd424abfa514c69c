"""The Model page in words a student reads (issue 17 items 7 and 9): the paper's layer
names with the module path beside them, and what 224 instead of 227 does to the
classifier, unclipped on a 1280x800 projector."""

from __future__ import annotations

import pytest

from alexnet_core import anatomy
from tests.browser import CHROMIUM, Server, lab_env, launch_chromium, projector_page, settle, shot
from tests.test_pages import no_errors, open_page


def test_the_layers_read_conv_pool_norm_fc_with_the_module_path_beside(ui_lab):
    at = open_page("model", variant="paper", size="227", model_view="Layers")
    no_errors(at)
    table = at.html[0].value
    for name, path in (("conv1", "features.0"), ("norm1", "features.2"), ("pool5", "features.14"),
                       ("fc6", "classifier.1"), ("fc8", "classifier.6")):
        assert f"<td>{name}</td>" in table and f"<td>{path}</td>" in table, name
    assert "<td>LRN</td>" in table and "FastLRN" not in table and "Conv2d" not in table
    assert "Identity" not in table  # the paper net's empty avgpool is no layer to a student
    assert "<td>96×55×55</td>" in table  # conv1's output at 227


def test_the_shape_trace_reads_in_the_same_names(ui_lab):
    at = open_page("model", variant="mnist", model_view="Shapes")
    no_errors(at)
    trace = at.html[0].value
    assert all(f"<td>{name}</td>" in trace for name in ("conv1", "pool1", "conv5", "pool5", "flatten"))
    assert "<td>features.12</td>" in trace and "MaxPool2d" not in trace
    assert any("the way AlexNet is written about" in c.value for c in at.main.caption)


def test_the_feature_maps_are_headed_by_the_conv_they_show(ui_lab):
    at = open_page("model", variant="mnist", model_view="Feature maps")
    no_errors(at)
    heads = [m.value for m in at.markdown if "after its ReLU (" in m.value]
    assert [h.split("**")[1] for h in heads] == ["conv1", "conv2", "conv3", "conv4", "conv5"], heads
    assert "features\\.1" in heads[0]  # the module path, escaped as text


def test_224_or_227_says_what_the_classifier_is_rebuilt_for(ui_lab):
    at = open_page("model", variant="paper", size="227", model_view="224 or 227")
    no_errors(at)
    (table,) = [h.value for h in at.html]  # both sizes in one table, side by side
    assert "<th>224 x 224</th>" in table and "<th>227 x 227</th>" in table
    assert "224 → 54 ✘ 1 px dropped" in table and "227 → 55 ✔" in table  # conv1
    assert "256 × 5 × 5 = 6,400" in table and "256 × 6 × 6 = 9,216" in table
    small, large = anatomy.classifier_input("paper", 224, 3, 10), anatomy.classifier_input("paper", 227, 3, 10)
    assert f"{small.params:,} parameters" in table and f"{large.params:,} parameters" in table
    (said,) = [m.value for m in at.markdown if "What it changes" in m.value]
    assert "**6,400** inputs instead of **9,216**" in said
    assert f"**{(9_216 - 6_400) * 4_096:,} fewer parameters**" in said


def test_224_or_227_for_a_net_with_an_adaptive_pool(ui_lab):
    at = open_page("model", variant="torchvision", model_view="224 or 227")
    no_errors(at)
    (said,) = [m.value for m in at.markdown if "adaptive average pool" in m.value]
    assert "**9,216** inputs at both sizes" in said


@pytest.mark.e2e
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_the_model_tables_fit_a_projector(tmp_path):
    """At 1280x800 the 224 table was cut ("x 1 px dropp..."): every table of these
    tabs fits its column, nothing scrolls sideways."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    expect = playwright_api.expect
    views = [("paper", "224 or 227", "6,400"), ("torchvision", "224 or 227", "9,216"), ("paper", "Layers", "fc6"),
             ("bn", "Shapes", "pool5"), ("mnist", "Layers", "fc8")]
    with Server(lab_env(tmp_path), tmp_path / "server.log") as srv, playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            for variant, view, words in views:
                with projector_page(browser) as pg:
                    pg.goto(f"{srv.url}/model?variant={variant}&model_view={view.replace(' ', '+')}")
                    settle(pg)
                    expect(pg.locator(".lab-table").get_by_text(words).first).to_be_visible()
                    widths = pg.locator(".lab-table-box").evaluate_all(
                        "boxes => boxes.map(b => [b.scrollWidth, b.clientWidth])")
                    assert widths and all(scroll <= client for scroll, client in widths), (variant, view, widths)
                    shot(pg, f"model-{variant}-{view.replace(' ', '-')}")
        finally:
            browser.close()
