"""Every recipe, each post's as written and ours, trains end to end on fixture files in each dataset's
own on-disk format: through the CLI, and through the Train page's Launch button.

Only the length is cut (1 epoch, a batch of 8): each recipe keeps its network, input size,
optimizer, schedule, augmentation and photo handling, so a 227-pixel recipe runs at 227.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alexnet_core import runs
from alexnet_core.recipes import RECIPES, get_recipe, reported_line
from tests import fixtures

SHORT = {"epochs": 1, "batch_size": 8}
FOLDER = "cats-vs-dogs"
MD5_FREE = Path(__file__).resolve().parent / "md5_free"  # sitecustomize for the processes the page starts


def write_every_dataset(root: Path) -> None:
    """MNIST, Fashion-MNIST, CIFAR-10 and Flowers-102 as torchvision keeps them, and a folder of photos."""
    fixtures.write_mnist(root, "MNIST")
    fixtures.write_mnist(root, "FashionMNIST")
    fixtures.write_cifar10(root)
    fixtures.write_flowers102(root, per_split={"trnid": 4, "valid": 2, "tstid": 3})
    for name, colour in (("cats", (200, 120, 40)), ("dogs", (60, 90, 200))):
        for i in range(12):
            fixtures.save_png(root / FOLDER / name / f"{name}_{i:02d}.png", "RGB", colour, size=(40, 30))


def short(name: str):
    """The recipe as the tests train it: only epochs and batch cut."""
    recipe = get_recipe(name)
    return recipe.make_config(**SHORT, folder=FOLDER if recipe.config.dataset == "folder" else None)


def settings(config) -> dict:
    """What a run trains with (the page writes out the native input size the recipe leaves unset)."""
    return config.to_dict() | {"data_root": None, "input_size": config.resolved_input_size}


def assert_trained(run_id: str, runs_dir, name: str, *, threads: int | None = None) -> None:
    state = runs.wait(run_id, timeout=600, runs_dir=runs_dir)
    assert state["state"] == "finished", (name, state, runs.log_tail(run_id, 30, runs_dir))
    config = runs.read_config(run_id, runs_dir)
    expected = short(name).replace(**({"threads": threads} if threads else {}))
    assert settings(config) == settings(expected), name
    test_acc = state["test_acc"]
    assert 0 <= test_acc <= 1
    if get_recipe(name).reported:  # "the post reported X; this run: Y (it changed the recipe: epochs 1 ...)"
        line = reported_line(config, test_acc)
        assert f"this run: {100 * test_acc:.2f}%" in line and "epochs 1 instead of" in line, line


@pytest.mark.parametrize("name", list(RECIPES))
def test_each_recipe_trains_through_the_cli(name, lab_data_root, no_md5_check, tmp_path, capsys):
    from alexnet_core.__main__ import main

    write_every_dataset(lab_data_root)
    runs_dir = tmp_path / "runs"
    flags = ["--epochs", "1", "--batch-size", "8", "--threads", "1"]
    if get_recipe(name).config.dataset == "folder":
        flags += ["--folder", FOLDER]
    assert main(["train", "--recipe", name, *flags, "--runs-dir", str(runs_dir)]) == 0, capsys.readouterr().err
    (run_id,) = runs.list_runs(runs_dir)["id"]
    assert_trained(run_id, runs_dir, name, threads=1)


def test_each_recipe_trains_from_the_train_page(ui_lab, tmp_path, monkeypatch):
    """Each recipe chosen on the page, its epochs and batch cut in the form, launched; the runs
    queue behind one another and each finishes with the recipe's settings."""
    from tests.test_pages import open_page

    write_every_dataset(tmp_path)
    monkeypatch.setenv("ALEXNET_LAB_DATA", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(MD5_FREE))
    launched = {}
    for name in RECIPES:
        at = open_page("train", dataset="folder", folder=FOLDER)
        at.selectbox(key="recipe").set_value(name).run()
        for setting, value in SHORT.items():
            at.number_input(key=f"{name}:{setting}").set_value(value).run()
        assert not at.exception and not at.error, (name, [e.value for e in at.error])
        before = set(runs.list_runs()["id"]) if not runs.list_runs().empty else set()
        at.button(key="launch").click().run()
        assert not at.exception and not at.error, (name, [e.value for e in at.error])
        (launched[name],) = set(runs.list_runs()["id"]) - before
    for name, run_id in launched.items():
        assert_trained(run_id, None, name, threads=short(name).threads)
