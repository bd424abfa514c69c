"""Shared pytest fixtures."""

import os

import pytest


# --- data (alexnet_core.datasets) -------------------------------------------------


@pytest.fixture
def lab_data_root(tmp_path, monkeypatch):
    """An empty data root and cache in tmp_path (ALEXNET_LAB_DATA / ALEXNET_LAB_CACHE),
    with no system archive folders, so nothing reads or writes the real ./data."""
    from alexnet_core import paths

    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("ALEXNET_LAB_DATA", str(root))
    monkeypatch.setenv("ALEXNET_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(paths, "SYSTEM_ARCHIVES", {})
    return root


@pytest.fixture
def no_md5_check(monkeypatch):
    """torchvision md5-checks CIFAR-10 and Flowers-102 files: accept any file that exists,
    as torchvision's own tests do for their fake datasets."""
    import torchvision.datasets.cifar
    import torchvision.datasets.flowers102

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", exists)
    monkeypatch.setattr(torchvision.datasets.flowers102, "check_integrity", exists)


# --- dashboard (app.py, ui/, pages/) -----------------------------------------


@pytest.fixture(scope="module")
def ui_lab(tmp_path_factory):
    """A run store and a data cache in a temporary folder for one test module
    (ALEXNET_LAB_RUNS / ALEXNET_LAB_CACHE), shared by its AppTest sessions and
    by the training processes they launch."""
    root = tmp_path_factory.mktemp("ui_lab")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALEXNET_LAB_RUNS", str(root / "runs"))
        mp.setenv("ALEXNET_LAB_CACHE", str(root / "cache"))
        yield root


@pytest.fixture(scope="module")
def finished_run(ui_lab):
    """The id of a finished run: the quick recipe trained for one epoch on digits."""
    from alexnet_core import runs
    from alexnet_core.recipes import get_recipe

    config = get_recipe("quick").make_config(epochs=1)
    run_id = runs.launch(config)
    state = runs.wait(run_id, timeout=240)
    assert state["state"] == "finished", state
    return run_id
