"""Recipes: each reference setup as written and ours, their differences listed, shown by the CLI and the Train page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from alexnet_core.config import ConfigError
from alexnet_core.recipes import get_recipe
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


# --------------------------------------------------------------- as written, and ours


def test_each_reference_setup_has_an_as_written_recipe_and_ours_with_every_difference_said():
    from alexnet_core.recipes import RECIPES

    written = {r.reference: r for r in RECIPES.values() if r.kind == "as written"}
    ours = {r.reference: r for r in RECIPES.values() if r.kind == "ours"}
    assert set(written) == {"the MNIST post", "the paper-net post", "the LRN post", "the cats-vs-dogs post",
                            "the Flowers-102 post"}
    assert set(written) <= set(ours)
    for recipe in [*written.values(), *(ours[name] for name in written)]:
        assert recipe.differences, recipe.name
        for difference in recipe.differences:
            assert difference.what.strip() and len(difference.why) > 30, (recipe.name, difference)
        folder = "cats-vs-dogs" if recipe.config.dataset == "folder" else None
        assert recipe.make_config(folder=folder).validate()
    assert written["the LRN post"].reported.accuracy == 0.82
    assert written["the Flowers-102 post"].reported.text == "48% test accuracy after 250 epochs"


def test_the_as_written_recipes_are_their_posts_setups():
    def config(name):
        return get_recipe(name).config

    lrn = config("lrn-cifar10-as-written")
    assert (lrn.epochs, lrn.batch_size, lrn.flip, lrn.optimizer, lrn.lr) == (50, 256, True, "adam", 1e-3)
    assert (lrn.schedule, lrn.step_size, lrn.gamma) == ("step", 5, 0.5)  # halved every 5 epochs
    bn = config("bn-catsdogs-as-written")
    assert (bn.lr, bn.batch_size, bn.epochs, bn.flip) == (1e-3, 256, 30, False)  # Adam's default: LR=0.02 unused
    flowers = config("torchvision-flowers-as-written")
    assert (flowers.epochs, flowers.batch_size, flowers.rotation, flowers.weight_decay) == (500, 256, 30.0, 0.0)
    mnist = config("mnist-as-written")
    assert (mnist.dataset, mnist.optimizer, mnist.lr, mnist.momentum, mnist.batch_size) == ("mnist", "sgd", 0.01, 0.9, 128)
    assert mnist.variant_options == {"dropout": 0.0} and mnist.label_smoothing == 0
    assert config("paper-as-written").variant_options == {"linear_init": "default"}
    assert config("lrn-cifar10").flip  # ours flips too, as the post does


def test_the_as_written_networks_are_their_posts():
    import torch
    from torch import nn

    from alexnet_core import builders

    def model(name, **changes):
        config = get_recipe(name).make_config(**changes)
        return builders.build_model(config, builders.model_args(config, 10))

    torch.manual_seed(0)
    assert all(m.p == 0 for m in model("mnist-as-written").modules() if isinstance(m, nn.Dropout))
    assert all(m.p == 0.5 for m in model("mnist").modules() if isinstance(m, nn.Dropout))
    written, ours = model("paper-as-written"), model("paper")
    hidden = lambda m: [x for x in m.classifier if isinstance(x, nn.Linear)][0]  # noqa: E731
    assert torch.all(hidden(ours).bias == 1) and abs(hidden(ours).weight.std().item() - 0.01) < 1e-3
    assert not torch.all(hidden(written).bias == 1)  # PyTorch's default, as the post's code leaves it
    conv2 = lambda m: [x for x in m.features if isinstance(x, nn.Conv2d)][1]  # noqa: E731
    assert torch.all(conv2(written).bias == 1)  # the convolutions keep the paper's initialisation


def test_a_pair_without_a_recipe_starts_from_ours(capsys):
    from alexnet_core.__main__ import build_parser, config_from_args

    def config(*flags):
        return config_from_args(build_parser().parse_args(["train", *flags]))

    chosen = config("--variant", "mnist", "--dataset", "fashion-mnist", "--epochs", "3")
    assert chosen.recipe == "mnist" and chosen.optimizer == "adamw" and chosen.label_smoothing == 0.1
    assert chosen.epochs == 3
    assert config("--variant", "lrn", "--dataset", "cifar10").recipe == "lrn-cifar10"
    assert config("--variant", "mnist", "--dataset", "mnist").recipe == "mnist"  # ours for the variant
    assert config("--variant", "layered", "--dataset", "cifar10").recipe is None  # no recipe: the defaults
    assert config("--recipe", "mnist-as-written").recipe == "mnist-as-written"


def test_a_pair_chosen_in_the_sidebar_starts_the_train_form_from_our_recipe_for_it(ui_lab):
    """The form opened on the quick demo whatever the sidebar held: cifar on CIFAR-10 trained
    the demo's mnist on digits unless the visitor found the radio."""
    from tests.test_pages import open_page

    at = open_page("train", variant="cifar", dataset="cifar10")
    assert not at.exception
    assert at.selectbox(key="recipe").value == "cifar"
    assert "Trains **cifar** on **cifar10** at **32x32**." in [m.value for m in at.markdown]
    assert open_page("train", variant="mnist", dataset="fashion-mnist").selectbox(key="recipe").value == "mnist"
    assert open_page("train", variant="paper").selectbox(key="recipe").value == "quick"  # none for paper on digits
    at.selectbox(key="recipe").set_value("paper").run()  # a recipe the visitor picks stays picked
    assert at.selectbox(key="recipe").value == "paper"


def test_the_cli_lists_every_recipe_with_its_differences(tmp_path):
    out = cli("recipes", workdir=tmp_path).stdout
    assert "\nmnist-as-written  [as written: the MNIST post]" in out
    assert "How it differs from the LRN post, and why:" in out
    assert "The post reported 82% test accuracy." in out
    assert out.count("How it differs from") == 10


def test_a_finished_run_is_set_beside_its_posts_figure():
    from alexnet_core.recipes import reported_line

    written = get_recipe("lrn-cifar10-as-written")
    assert reported_line(written.make_config(), 0.8031) == "The LRN post reported 82% test accuracy; this run: 80.31%."
    assert reported_line(written.make_config(epochs=2, device="cpu"), 0.5) == (
        "The LRN post reported 82% test accuracy; this run: 50.00% (it changed the recipe: epochs 2 instead of 50).")
    assert reported_line(written.make_config(), None) == "The LRN post reported 82% test accuracy."
    assert reported_line(get_recipe("lrn-cifar10").make_config(), 0.9) is None  # ours: no figure of its own


def test_the_train_page_shows_a_recipes_differences_and_its_posts_figure(ui_lab):
    at = open_train(recipe="lrn-cifar10-as-written")
    assert not at.exception
    [expander] = [e for e in at.expander if e.label.startswith("How it differs from the LRN post")]
    items = [m.value for m in expander.caption]
    assert items and items[0].startswith("- **the rate halves every 5 epochs through a scheduler**: the post")
    assert items[0].count("\n- ") == 2  # one line per difference
    assert any("The LRN post reported 82% test accuracy." in c.value for c in at.caption)


def test_the_train_page_launches_a_recipes_own_network_options(ui_lab):
    from alexnet_core import runs

    at = open_train(recipe="mnist-as-written")
    at.radio(key="mnist-as-written:what").set_value("sidebar").run()  # mnist on the bundled digits
    at.number_input(key="mnist-as-written:epochs").set_value(1).run()
    before = set(runs.list_runs()["id"])
    at.button(key="launch").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    [run_id] = set(runs.list_runs()["id"]) - before
    runs.stop(run_id)
    assert runs.read_config(run_id).variant_options == {"dropout": 0.0}  # the post's net has no dropout


# --------------------------------------------------------------- the posts' own questions


def test_the_train_page_says_where_mean_and_std_come_from_and_shows_them(ui_lab):
    from alexnet_core import datasets

    at = open_train()  # the quick recipe: digits, here on every computer
    assert not at.exception
    digits = datasets.load_dataset("digits")
    [note] = [c.value for c in at.caption if "Inputs are normalised with the training split's own" in c.value]
    assert f"mean {digits.mean[0]:.3f} and std {digits.std[0]:.3f}" in note and "checkpoints" in note


def test_summary_takes_the_number_of_classes(capsys):
    from alexnet_core.__main__ import main

    assert main(["summary", "--variant", "torchvision", "--num-classes", "1000"]) == 0
    out = capsys.readouterr().out
    assert "1000 classes (--num-classes)" in out and "totals: params 61,100,840," in out  # torchinfo's figure
    assert main(["summary", "--variant", "mnist", "--num-classes", "0"]) == 2
    assert "--num-classes must be at least 1" in capsys.readouterr().err


def test_the_cifar_variant_answers_resize_or_change_the_kernels():
    from alexnet_core import variants

    text = variants.get_spec("cifar").description
    assert "Resize 32-px images to 227, or change the kernels?" in text
    assert all(f" {name} " in text for name in ("lrn", "paper")) and "upsampled to 227" in text
