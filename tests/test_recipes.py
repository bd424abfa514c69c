"""Recipes: each reference setup as written and ours, their differences listed, shown by the CLI and the Train page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alexnet_core.config import ConfigError, get_recipe
from test_cli import cli
from ui import choice

APP = str(Path(__file__).resolve().parent.parent / "ui" / "frame.py")


def open_train(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(choice.TRAIN).run()
    for key, value in state.items():
        at.selectbox(key=key).set_value(value).run()
    return at


# --------------------------------------------------------------- the folder a recipe needs


def test_a_folder_recipe_without_a_folder_names_the_flag(tmp_path):
    with pytest.raises(ConfigError, match="give it with --folder"):
        get_recipe("bn-catsdogs").make_config().validate()
    done = cli("train", "--recipe", "bn-catsdogs", workdir=tmp_path, check=False)
    assert done.returncode == 2 and "--folder" in done.stderr, done.stderr


def test_a_folder_recipe_without_a_folder_names_the_sidebar_box(ui_lab):
    at = open_train(recipe="bn-catsdogs")
    assert not at.exception
    assert any("Image folder box" in e.value for e in at.error), [e.value for e in at.error]


# --------------------------------------------------------------- the benchmark's baseline


def test_the_benchmarks_mnist_baseline_is_the_posts_network():
    import torch
    from torch import nn

    from alexnet_core import variants
    from bench import reference

    ours = variants.get_model("mnist", in_channels=1, num_classes=10)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    post = reference.mnist_post_model(ours)
    after_conv = []
    convs = 0
    for layer in post.features:
        convs += isinstance(layer, nn.Conv2d)
        if isinstance(layer, nn.ReLU):
            after_conv.append(convs)
    assert after_conv == [1, 2, 5]  # the post's three ReLUs
    assert not any(isinstance(m, (nn.ReLU, nn.Dropout)) for m in post.classifier)
    assert sum(p.numel() for p in post.parameters()) == sum(p.numel() for p in ours.parameters())
    assert all(torch.equal(v, ours.state_dict()[k]) for k, v in before.items())  # ours untouched
    assert post(torch.randn(2, 1, 28, 28)).shape == (2, 10)
