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
