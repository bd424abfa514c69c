"""TrainConfig: the settings declared once, their checks and messages, the CLI flags made from them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from alexnet_core import datasets, variants
from alexnet_core.__main__ import build_parser, config_from_args
from alexnet_core.config import (
    OPTIMIZERS,
    SETTINGS,
    ConfigError,
    Setting,
    TrainConfig,
    get_setting,
    setting_field,
    settings_of,
)
from alexnet_core.recipes import RECIPES, get_recipe, list_recipes
from tests.fixtures import tiny_config as tiny

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- #
# The config, its checks and its recipes


def test_config_round_trips_through_json(tmp_path):
    config = tiny(flip=True, crop_padding=2, rotation=5.0, schedule="step", variant_options={}, recipe="quick")
    path = tmp_path / "config.json"
    config.to_json(path)
    assert TrainConfig.from_json(path) == config
    assert json.loads(path.read_text())["lr"] == 3e-3
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_config_defaults_validate_and_resolve():
    config = TrainConfig().validate()
    assert config.resolved_input_size == 28  # the mnist variant's native size
    assert config.resolved_channels_last("cpu") is False
    assert TrainConfig(variant="torchvision").resolved_channels_last("cpu") is True
    assert TrainConfig(channels_last=False, variant="torchvision").resolved_channels_last("cpu") is False


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"lr": 0}, ["learning rate", "greater than 0"]),
        ({"lr": -0.1}, ["greater than 0"]),
        ({"lr": float("nan")}, ["finite"]),
        ({"lr": float("inf")}, ["finite"]),
        ({"batch_size": 0}, ["batch_size", "at least 1"]),
        ({"epochs": 0}, ["epochs", "at least 1"]),
        ({"epochs": 2.5}, ["whole number"]),
        ({"optimizer": "rmsprop"}, ["sgd, adam, adamw"]),
        ({"schedule": "plateau"}, ["none, step, cosine, onecycle"]),
        ({"variant": "vgg"}, ["paper", "torchvision", "mnist"]),
        ({"dataset": "imagenet"}, ["digits", "fashion-mnist"]),
        ({"input_size": 8}, ["at least 12x12", "8x8"]),
        ({"val_fraction": 1.0}, ["val_fraction", "below 1"]),
        ({"val_fraction": -0.1}, ["val_fraction"]),
        ({"momentum": 1.5}, ["momentum"]),
        ({"device": "tpu"}, ["auto", "cpu", "cuda"]),
        ({"dataset": "folder"}, ["folder"]),
        ({"variant_options": {"groups": 2}}, ["no option groups"]),
    ],
)
def test_config_errors_say_what_to_change(changes, words):
    with pytest.raises(ConfigError) as info:
        tiny(**changes).validate()
    message = str(info.value)
    for word in words:
        assert word in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_config_refuses_an_absent_device():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        tiny(device="cuda").validate()


def test_unknown_config_field_is_refused():
    with pytest.raises(ConfigError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_recipes_are_valid_configs():
    assert list_recipes()[0] == "quick"
    assert {"quick", "mnist", "cifar", "paper", "lrn-cifar10", "bn-catsdogs", "torchvision-flowers"} <= set(RECIPES)
    for name in list_recipes():
        recipe = get_recipe(name)
        config = recipe.make_config(folder="cats-vs-dogs" if recipe.config.dataset == "folder" else None)
        assert config.recipe == name and config.validate() is config
    reference = get_recipe("mnist").config
    assert (reference.variant, reference.dataset, reference.batch_size, reference.epochs) == (
        "mnist", "fashion-mnist", 64, 3)
    with pytest.raises(ConfigError, match="quick"):
        get_recipe("fast")


# --------------------------------------------------------------------------- #
# One declaration per setting


def test_every_field_has_one_setting_in_field_order():
    assert [s.name for s in SETTINGS] == list(TrainConfig.__dataclass_fields__)
    assert get_setting("batch_size").flag_name == "--batch-size"
    assert (get_setting("input_size").kind, get_setting("input_size").optional) == (int, True)
    assert (get_setting("channels_last").kind, get_setting("channels_last").optional) == (bool, True)
    assert get_setting("variant_options").kind is dict and not get_setting("variant_options").flag
    with pytest.raises(ConfigError, match="batch_size"):
        get_setting("batchsize")


def test_choices_come_from_the_registries():
    assert get_setting("variant").choice_list() == variants.list_models()
    assert get_setting("dataset").choice_list() == datasets.list_datasets()
    assert get_setting("optimizer").choice_list() == list(OPTIMIZERS)
    assert get_setting("epochs").choice_list() == []


def test_the_train_form_sections_hold_todays_widgets():
    main = [s.name for s in SETTINGS if s.section == "main"]
    more = [s.name for s in SETTINGS if s.section == "more"]
    assert main == ["epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule", "val_fraction"]
    assert more == ["flip", "crop_padding", "rotation", "photo_fit", "label_smoothing", "step_size", "gamma", "seed", "device",
                    "precision", "nproc_per_node", "compile"]
    assert get_setting("momentum").active_when == ("optimizer", ("sgd",))
    assert get_setting("gamma").active_when == get_setting("step_size").active_when == ("schedule", ("step",))
    for setting in SETTINGS:
        assert setting.label and len(setting.label) <= 32, setting.name  # a quarter of a 1280 px page
        assert setting.help.endswith(".") and "\n" not in setting.help, setting.name


def _outside(setting: Setting) -> list:
    """Values just outside the setting's bounds."""
    values = []
    if setting.minimum is not None:
        edge = setting.minimum
        values.append(edge if setting.min_exclusive else (edge - 1 if setting.kind is int else math.nextafter(edge, -math.inf)))
    if setting.maximum is not None:
        edge = setting.maximum
        values.append(edge if setting.max_exclusive else (edge + 1 if setting.kind is int else math.nextafter(edge, math.inf)))
    return values


BOUNDED = [s for s in SETTINGS if s.kind in (int, float) and (s.minimum is not None or s.maximum is not None)]


@pytest.mark.parametrize("setting", BOUNDED, ids=[s.name for s in BOUNDED])
def test_a_bounded_setting_refuses_a_value_just_outside_with_its_name(setting):
    for value in _outside(setting):
        for check in (setting.check, lambda v: tiny(**{setting.name: v}).validate()):
            with pytest.raises(ConfigError) as info:
                check(value)
            message = str(info.value)
            assert setting.name in message or setting.label in message, message
            assert setting.bounds_text() in message, message
    for edge, exclusive in ((setting.minimum, setting.min_exclusive), (setting.maximum, setting.max_exclusive)):
        if edge is not None and not exclusive:
            assert setting.check(setting.kind(edge)) == edge


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("epochs", "5", ["epochs", "whole number"]),
        ("lr", True, ["lr", "number"]),
        ("flip", 1, ["flip", "true or false"]),
        ("channels_last", "yes", ["channels_last", "true or false"]),
        ("folder", 3, ["folder", "text"]),
        ("variant_options", [("groups", 2)], ["variant_options", "mapping"]),
        ("variant", None, ["variant", "needs a value"]),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused(name, value, words):
    with pytest.raises(ConfigError) as info:
        get_setting(name).check(value)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_optional_settings_take_none_and_numpy_numbers_count():
    import numpy as np

    assert get_setting("input_size").check(None) is None
    assert get_setting("epochs").check(np.int64(3)) == 3
    assert get_setting("lr").check(np.float32(0.5)) == 0.5


def _help_text(args: list[str]) -> str:
    done = subprocess.run([sys.executable, "-m", "alexnet_core", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.split())  # argparse wraps the lines


def test_every_setting_with_a_flag_is_in_train_help_with_its_help():
    text = _help_text(["train", "--help"])
    for setting in SETTINGS:
        if setting.flag:
            assert f"{setting.flag_name} " in text or f"{setting.flag_name}," in text, setting.name
            assert " ".join(setting.help.split()) in text, setting.name
    assert "--variant-options" not in text  # variant options are --option KEY=VALUE
    assert "--no-flip" in text and "One of: paper, torchvision" in text  # the choices, from the registry


def test_flags_build_the_config_the_settings_describe():
    args = build_parser().parse_args(
        ["train", "--epochs", "3", "--lr", "0.02", "--no-flip", "--channels-last", "--input-size", "16"])
    made = config_from_args(args)
    assert (made.epochs, made.lr, made.flip, made.channels_last, made.input_size) == (3, 0.02, False, True, 16)
    assert made.batch_size == TrainConfig().batch_size  # flags not given keep the default


@dataclass
class _WithWarmup(TrainConfig):
    warmup_epochs: int = setting_field(
        0, label="Warm-up epochs", help="Epochs at a rising learning rate before the schedule starts.",
        minimum=0, maximum=10, section="more")


def test_a_new_field_gets_its_flag_check_and_help_with_no_other_edit(capsys):
    settings = settings_of(_WithWarmup)
    assert settings[:-1] == SETTINGS and settings[-1].name == "warmup_epochs" and settings[-1].kind is int
    parser = build_parser(settings)
    made = config_from_args(parser.parse_args(["train", "--warmup-epochs", "3"]), settings, _WithWarmup)
    assert isinstance(made, _WithWarmup) and made.warmup_epochs == 3
    made.validate()
    with pytest.raises(ConfigError, match="warmup_epochs"):
        made.replace(warmup_epochs=11).validate()
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--warmup-epochs" in help_text and "Epochs at a rising learning rate before the schedule starts." in help_text


def test_reading_a_config_and_parsing_flags_do_not_import_torch():
    """A queued worker parses its flags and reads its config.json while it waits, without torch."""
    code = (
        "import sys\n"
        "from alexnet_core.__main__ import build_parser\n"
        "from alexnet_core import config, runs\n"
        "build_parser().parse_args(['train', '--run-dir', 'x'])\n"
        "config.TrainConfig.from_dict(config.TrainConfig().to_dict())\n"
        "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
