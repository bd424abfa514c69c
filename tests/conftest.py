"""Shared pytest fixtures."""

import os

import pytest


# --- data (alexnet_core.data) -------------------------------------------------


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
