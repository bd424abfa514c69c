"""Where a torchvision dataset's files are: the data root's layout, a system archive, their checksums.

    SOURCES[name] -> Source(folder, files, how, download_mb)
    missing_files(data_root, name) -> the names not there
    damaged_file(data_root, name) -> (file, expected md5) of the first file failing torchvision's check, or None
    system_archive(name), import_system_archive(name, data_root, title)
    offline_hint(name, data_root) -> how to put the files there by hand

Only files are looked at here; ``datasets`` decodes them.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from alexnet_core import paths


@dataclass(frozen=True)
class Source:
    folder: str  # under the data root, where torchvision looks
    files: tuple[str, ...]  # names inside `folder`; "jpg/" is a directory
    how: str  # how to get the files by hand
    download_mb: int


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                  "batches.meta")

SOURCES = {
    "mnist": Source(
        "MNIST/raw", _MNIST_FILES, "the .gz files from https://ossci-datasets.s3.amazonaws.com/mnist/, gunzipped", 12),
    "fashion-mnist": Source(
        "FashionMNIST/raw", _MNIST_FILES,
        "the .gz files from https://github.com/zalandoresearch/fashion-mnist, gunzipped", 30),
    "cifar10": Source(
        "cifar-10-batches-py", _CIFAR10_FILES,
        "extract https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into the data root", 163),
    "flowers102": Source(
        "flowers-102", ("jpg/", "imagelabels.mat", "setid.mat"),
        "jpg/ from 102flowers.tgz, and imagelabels.mat and setid.mat, all from "
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/", 330),
}


def missing_files(data_root: Path, name: str) -> list[str]:
    """The dataset's file names (``SOURCES[name].files``) that are not in its folder."""
    src = SOURCES[name]
    base = data_root / src.folder
    missing = []
    for f in src.files:
        path = base / f.rstrip("/")
        if not (path.is_dir() if f.endswith("/") else path.is_file()):
            missing.append(f)
    return missing


def _checksums(name: str):
    """(module whose check_integrity torchvision uses, [(file, md5)]) for the datasets it md5-checks."""
    if name == "cifar10":
        from torchvision.datasets import cifar

        listed = cifar.CIFAR10.train_list + cifar.CIFAR10.test_list
        return cifar, [(f, md5) for f, md5 in listed] + [(cifar.CIFAR10.meta["filename"], cifar.CIFAR10.meta["md5"])]
    if name == "flowers102":
        from torchvision.datasets import flowers102

        return flowers102, [flowers102.Flowers102._file_dict[key] for key in ("label", "setid")]
    return None, []


# (check, path, size, mtime, md5) -> passed: a file is hashed once while it stays the same
_checked: dict[tuple, bool] = {}


def damaged_file(data_root: Path, name: str) -> tuple[str, str] | None:
    """The first present file of ``name`` that fails torchvision's own md5 check, with the md5
    torchvision expects; None when every present file passes (or the dataset has no checksums).

    torchvision refuses such files as "not found or corrupted"; this says which one.
    """
    module, listed = _checksums(name)
    base = data_root / SOURCES[name].folder
    for fname, md5 in listed:
        path = base / fname
        try:
            stat = path.stat()
        except OSError:
            continue  # missing: missing_files says so
        check = module.check_integrity  # looked up now: tests patch it, as torchvision's own do
        key = (check, str(path), stat.st_size, stat.st_mtime_ns, md5)
        if key not in _checked:
            _checked[key] = bool(check(str(path), md5))
        if not _checked[key]:
            return fname, md5
    return None


def system_archive(name: str) -> Path | None:
    """A system folder holding the dataset's files (.gz or not), if one is installed."""
    for folder in paths.SYSTEM_ARCHIVES.get(name, []):
        folder = Path(folder)
        if all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in SOURCES[name].files):
            return folder
    return None


class ArchiveCopyError(OSError):
    """A system archive was found but could not be copied into the data root."""


def import_system_archive(name: str, data_root: Path) -> Path | None:
    """Copy (gunzip) a system archive into the data root, where torchvision reads it; the archive or None."""
    archive = system_archive(name)
    if archive is None:
        return None
    raw = data_root / SOURCES[name].folder
    try:
        raw.mkdir(parents=True, exist_ok=True)
        for f in SOURCES[name].files:
            if (raw / f).is_file():
                continue
            gz = archive / f"{f}.gz"
            fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{f}-")
            try:
                with os.fdopen(fd, "wb") as out:
                    if gz.is_file():
                        with gzip.open(gz, "rb") as src:
                            shutil.copyfileobj(src, out, length=1 << 20)
                    else:
                        with open(archive / f, "rb") as src:
                            shutil.copyfileobj(src, out, length=1 << 20)
                os.replace(tmp, raw / f)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except (OSError, EOFError) as e:
        raise ArchiveCopyError(f"Found it in {archive} but could not copy it into {raw}: {e}. "
                               "Set ALEXNET_LAB_DATA to a folder you can write to.") from e
    return archive


def offline_hint(name: str, data_root: Path) -> str:
    """How to put the dataset's files in the data root by hand."""
    src = SOURCES[name]
    files = ", ".join(src.files)
    hint = (
        f"put {files} in {data_root / src.folder} ({src.how}), or set ALEXNET_LAB_DATA to a folder "
        "that holds them in torchvision's layout."
    )
    if name == "fashion-mnist":
        hint += (
            " On Debian/Ubuntu: apt-get install dataset-fashion-mnist (its .gz files in "
            "/usr/share/datasets/fashion-mnist are imported on first load)."
        )
    return hint


def damaged_text(title: str, data_root: Path, name: str, damaged: tuple[str, str]) -> str:
    """A sentence naming the file whose checksum failed."""
    fname, md5 = damaged
    return (f"{title}'s file {fname} in {data_root / SOURCES[name].folder} fails torchvision's checksum (its md5 "
            f"should be {md5}): it is damaged, cut short or not the original file.")
