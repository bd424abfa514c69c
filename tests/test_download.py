"""A dataset that is not here downloads when a run needs it; a damaged file is named.

torchvision's own download functions are patched to write fixture files in
its on-disk formats (or to fail as offline), so nothing leaves this machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import pytest

from alexnet_core import datafiles, datasets, runs
from alexnet_core.__main__ import main
from fixtures import tiny_config, write_cifar10, write_flowers102, write_mnist

DAMAGED = b"damaged"


@pytest.fixture
def md5_by_content(monkeypatch):
    """torchvision's md5 checks, standing in: a file passes unless it starts with DAMAGED."""
    import torchvision.datasets.cifar
    import torchvision.datasets.flowers102

    def check(fpath, md5=None):
        if not os.path.isfile(fpath):
            return False
        with open(fpath, "rb") as f:
            return f.read(len(DAMAGED)) != DAMAGED

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", check)
    monkeypatch.setattr(torchvision.datasets.flowers102, "check_integrity", check)


@pytest.fixture
def downloads(monkeypatch):
    """Patch torchvision's downloads: each writes the dataset's fixture files, or fails as
    offline when ``offline`` is set. ``done`` lists the datasets downloaded."""
    import torchvision.datasets.cifar
    import torchvision.datasets.flowers102
    import torchvision.datasets.mnist

    patched = Downloads()

    def fake(name, write):
        def download(url, download_root, *args, **kwargs):
            if patched.offline:
                raise URLError("[Errno -3] Temporary failure in name resolution")
            patched.done.append(name)
            write(Path(download_root))
        return download

    mnist = fake("mnist", lambda raw: write_mnist(raw.parent.parent, raw.parent.name))
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", mnist)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", fake("cifar10", write_cifar10))
    flowers = fake("flowers102", lambda base: write_flowers102(base.parent))
    monkeypatch.setattr(torchvision.datasets.flowers102, "download_and_extract_archive", flowers)
    monkeypatch.setattr(torchvision.datasets.flowers102, "download_url", lambda *a, **k: None)  # the .mat files: written above
    return patched


class Downloads:
    def __init__(self):
        self.done: list[str] = []
        self.offline = False


@pytest.mark.parametrize("dataset, variant, size", [("mnist", "mnist", 12), ("cifar10", "cifar", 32),
                                                    ("flowers102", "cifar", 32)])
def test_a_run_downloads_a_dataset_that_is_not_here(lab_data_root, tmp_path, md5_by_content, downloads,
                                                     dataset, variant, size):
    ok, where = datasets.availability(dataset)
    assert not ok and "downloads by itself on first load when online" in where
    assert datasets.obtainable(dataset)[0]
    config = tiny_config(dataset=dataset, variant=variant, input_size=size, batch_size=4, val_fraction=0.2)
    run_id = runs.create_run(config, tmp_path / "runs")  # refused before any download was tried
    result = runs.run_worker(runs.run_path(run_id, tmp_path / "runs"))
    assert result["state"] == "finished", result
    assert downloads.done[0] == dataset
    assert datasets.availability(dataset)[0]


def test_the_cli_trains_on_a_dataset_it_downloads_first(lab_data_root, tmp_path, md5_by_content, downloads, capsys):
    code = main(["train", "--variant", "cifar", "--dataset", "cifar10", "--epochs", "1", "--batch-size", "8",
                 "--threads", "1", "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert downloads.done == ["cifar10"] and "finished: test accuracy" in out
    assert "settings from the cifar recipe, ours for cifar on cifar10" in out  # no recipe named: ours for the pair


def test_offline_the_run_fails_saying_where_the_files_go(lab_data_root, tmp_path, md5_by_content, downloads):
    downloads.offline = True
    run_id = runs.create_run(tiny_config(dataset="mnist"), tmp_path / "runs")
    result = runs.run_worker(runs.run_path(run_id, tmp_path / "runs"))
    assert result["state"] == "failed"
    error = runs.status(run_id, tmp_path / "runs")["error"]
    assert str(lab_data_root / "MNIST" / "raw") in error and "The download failed" in error


def test_a_dataset_that_cannot_download_is_still_refused_at_once(lab_data_root, tmp_path):
    from alexnet_core.config import ConfigError

    assert datasets.obtainable("folder", folder="nowhere")[0] is False
    with pytest.raises(ConfigError, match="nowhere"):
        runs.create_run(tiny_config(dataset="folder", folder="nowhere"), tmp_path / "runs")


@pytest.mark.parametrize("dataset, damage", [("cifar10", "cifar-10-batches-py/data_batch_3"),
                                             ("flowers102", "flowers-102/setid.mat")])
def test_a_file_failing_its_checksum_is_named(lab_data_root, md5_by_content, downloads, dataset, damage):
    (write_cifar10 if dataset == "cifar10" else write_flowers102)(lab_data_root)
    (lab_data_root / damage).write_bytes(DAMAGED + b" by a cut-short copy")
    fname = Path(damage).name

    ok, where = datasets.availability(dataset)
    assert not ok and f"file {fname} in {lab_data_root / Path(damage).parent}" in where and "checksum" in where
    assert datasets.obtainable(dataset)[0]  # a download replaces it

    downloads.offline = True
    with pytest.raises(datasets.DatasetUnavailable) as err:
        datasets.load_dataset(dataset)
    message = str(err.value)
    assert f"file {fname} in" in message and "checksum" in message and "is not in" not in message
    assert "The download failed" in message
    with pytest.raises(datasets.DatasetUnavailable, match=f"file {fname} in .* checksum"):
        datasets.load_dataset(dataset, download=False)

    downloads.offline = False  # online: the download writes good files over it
    assert datasets.load_dataset(dataset).num_classes in (10, 102)
    assert datasets.availability(dataset)[0] and downloads.done == [dataset]


def test_a_checksum_is_computed_once_while_the_file_stays_the_same(lab_data_root, monkeypatch):
    import torchvision.datasets.cifar

    calls = []
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda f, md5=None: calls.append(f) or True)
    write_cifar10(lab_data_root)
    for _ in range(3):
        assert datasets.availability("cifar10")[0]
    assert len(calls) == len(datafiles.SOURCES["cifar10"].files)
