"""Dataset registry: real datasets decoded once into in-memory uint8 tensors.

Every dataset comes back as a :class:`Dataset`: uint8 images ``(N, C, H, W)``
on the CPU, int64 labels, class names, and the per-channel mean/std of the
training split. Files are read by torchvision's own dataset classes (or
scikit-learn for the bundled ``digits``) and the decoded tensors are cached
under :func:`alexnet_core.paths.cache_root`, so a second load is one
``torch.load``.

:func:`prepare_batch` turns a uint8 batch into model input on the training
device: per-sample augmentation, channel adaptation, resize, normalisation.

Where the files come from, in order: the data root in torchvision's layout
(``root`` or ``ALEXNET_LAB_DATA``, default ``./data``); a known system archive
folder (Debian's ``dataset-fashion-mnist``); torchvision's download unless
``download=False``; otherwise :class:`DatasetUnavailable` says which files to
put where.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import math
import os
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import paths

__all__ = [
    "Augment",
    "Dataset",
    "DatasetInfo",
    "DatasetUnavailable",
    "availability",
    "get_info",
    "list_datasets",
    "load_dataset",
    "prepare_batch",
]

# Bump when the cached payload or any decoding choice changes: old cache files
# then simply stop matching.
CACHE_VERSION = 1

# Flowers-102 photos are about 500x600. Stored at 64x64 all 8,189 images take
# 100 MB of memory (400 MB at 128), decode and cache quickly, and 64 is still
# above the torchvision variant's 63-pixel minimum; models that want 224 or 227
# upsample on the device in prepare_batch.
FLOWERS_IMAGE_SIZE = 64
# Your own photos: 128 keeps 10,000 colour images at 490 MB and leaves enough
# detail to upsample to AlexNet's 224/227.
FOLDER_IMAGE_SIZE = 128
# The share of each class held out when an image folder has no test/ split.
FOLDER_TEST_FRACTION = 0.2
FOLDER_SPLIT_SEED = 0
# torchvision.datasets.folder.IMG_EXTENSIONS, repeated here so that a cache
# hit does not pay torchvision's 1.5 s import.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

# ITU-R BT.601 luma weights (what PIL's convert("L") uses).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR10_FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)
_FLOWERS_FILES = ("jpg/", "imagelabels.mat", "setid.mat")
_DOWNLOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, tarfile.TarError)


class DatasetUnavailable(RuntimeError):
    """A dataset's files are not here and could not be downloaded.

    The message says which files to put where, and the offline options.
    """


@dataclass(frozen=True)
class DatasetInfo:
    """What the registry knows about a dataset before loading it."""

    name: str
    title: str
    description: str
    channels: int
    image_size: int
    num_classes: int | None
    offline: str


@dataclass(eq=False)  # tensors have no single truth value: compare fields yourself
class Dataset:
    """Train and test splits as in-memory uint8 tensors on the CPU.

    ``train_x``/``test_x`` are uint8 ``(N, C, H, W)``; ``train_y``/``test_y``
    int64 ``(N,)``; ``mean``/``std`` are per channel on the [0, 1] scale,
    computed from ``train_x`` only.
    """

    name: str
    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
            f"{self.channels}x{self.image_size}x{self.image_size}, {self.num_classes} classes, "
            f"source={self.source!r})"
        )


@dataclass(frozen=True)
class Augment:
    """Per-sample training augmentation, applied by :func:`prepare_batch`."""

    flip: bool = False  # per-sample horizontal flip with p=0.5
    crop_padding: int = 0  # per-sample random crop after zero padding by this many pixels
    rotation: float = 0.0  # per-sample rotation, uniform in [-rotation, +rotation] degrees

    @property
    def active(self) -> bool:
        return self.flip or self.crop_padding > 0 or self.rotation != 0


@dataclass(frozen=True)
class _TorchvisionSource:
    folder: str  # under the data root, where torchvision looks
    files: tuple[str, ...]  # names inside `folder`; "jpg/" is a directory
    how: str  # how to get the files by hand
    download_mb: int


_INFOS = {
    info.name: info
    for info in (
        DatasetInfo(
            "digits",
            "Digits (8x8)",
            "1,797 handwritten digits, 8x8 grayscale, bundled with scikit-learn.",
            1,
            8,
            10,
            "Always available: it ships with scikit-learn.",
        ),
        DatasetInfo(
            "mnist",
            "MNIST",
            "70,000 handwritten digits, 28x28 grayscale.",
            1,
            28,
            10,
            "Put the four idx files (gunzipped) in <data root>/MNIST/raw/.",
        ),
        DatasetInfo(
            "fashion-mnist",
            "Fashion-MNIST",
            "70,000 photos of clothes in 10 classes, 28x28 grayscale.",
            1,
            28,
            10,
            "apt-get install dataset-fashion-mnist, or put the four idx files in <data root>/FashionMNIST/raw/.",
        ),
        DatasetInfo(
            "cifar10",
            "CIFAR-10",
            "60,000 colour photos in 10 classes, 32x32.",
            3,
            32,
            10,
            "Extract cifar-10-python.tar.gz into <data root> (it makes cifar-10-batches-py/).",
        ),
        DatasetInfo(
            "flowers102",
            "Flowers-102",
            f"8,189 flower photos in 102 classes, stored at {FLOWERS_IMAGE_SIZE}x{FLOWERS_IMAGE_SIZE}.",
            3,
            FLOWERS_IMAGE_SIZE,
            102,
            "Put jpg/ (from 102flowers.tgz), imagelabels.mat and setid.mat in <data root>/flowers-102/.",
        ),
        DatasetInfo(
            "folder",
            "Image folder",
            "Your own photos: one subfolder per class, optionally under train/ and test/.",
            3,
            FOLDER_IMAGE_SIZE,
            None,
            "Copy the folder inside the data root (ALEXNET_LAB_DATA, default ./data).",
        ),
    )
}

_TORCHVISION = {
    "mnist": _TorchvisionSource(
        "MNIST/raw",
        _MNIST_FILES,
        "the .gz files from https://ossci-datasets.s3.amazonaws.com/mnist/, gunzipped",
        12,
    ),
    "fashion-mnist": _TorchvisionSource(
        "FashionMNIST/raw",
        _MNIST_FILES,
        "the .gz files from https://github.com/zalandoresearch/fashion-mnist, gunzipped",
        30,
    ),
    "cifar10": _TorchvisionSource(
        "cifar-10-batches-py",
        _CIFAR10_FILES,
        "extract https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into the data root",
        163,
    ),
    "flowers102": _TorchvisionSource(
        "flowers-102",
        _FLOWERS_FILES,
        "jpg/ from 102flowers.tgz, and imagelabels.mat and setid.mat, all from "
        "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
        330,
    ),
}


# ---------------------------------------------------------------- registry


def list_datasets() -> list[str]:
    """The registered dataset names, the default (``digits``) first."""
    return list(_INFOS)


def get_info(name: str) -> DatasetInfo:
    """The registry entry for ``name``; an unknown name raises ValueError listing the valid ones."""
    try:
        return _INFOS[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(_INFOS)}.") from None


def availability(
    name: str, root: str | os.PathLike | None = None, folder: str | os.PathLike | None = None
) -> tuple[bool, str]:
    """Whether ``name`` loads without network right now.

    Returns ``(True, where it would load from)`` or ``(False, how to get it)``.
    Only looks at files; never downloads or decodes.
    """
    info = get_info(name)
    data_root = paths.data_root(root)
    if name == "digits":
        return True, "bundled with scikit-learn"
    if name == "folder":
        if folder is None:
            return False, f"Choose an image folder inside {data_root}: one subfolder per class."
        try:
            path = _resolve_folder(folder, data_root)
        except (ValueError, DatasetUnavailable) as e:
            return False, str(e)
        return True, str(path)
    src = _TORCHVISION[name]
    if _missing_files(data_root, src) == []:
        return True, str(data_root / src.folder)
    archive = _system_archive(name)
    if archive is not None:
        return True, f"{archive} (copied into {data_root / src.folder} on first load)"
    return False, (
        f"{info.title} is not in {data_root / src.folder}. "
        f"It downloads by itself on first load when online (about {src.download_mb} MB); "
        f"offline: {_offline_hint(name, data_root)}"
    )


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    folder: str | os.PathLike | None = None,
    download: bool | None = None,
    cache: bool = True,
    image_size: int | None = None,
) -> Dataset:
    """Load a registered dataset into in-memory uint8 tensors.

    Args:
        name: a name from :func:`list_datasets`.
        root: dataset root in torchvision's layout (default :func:`paths.data_root`).
        folder: the image folder for ``name == "folder"``, absolute or relative to
            the data root; it must lie inside the data root.
        download: ``None`` downloads when the files are absent; ``False`` never does.
            (``True`` behaves like ``None``: files already here are never fetched again.)
        cache: read and write the decoded tensors under :func:`paths.cache_root`.
        image_size: stored size for datasets decoded from photos (``flowers102``,
            ``folder``); the others have one native size.

    Raises:
        ValueError: unknown name, or bad input (folder outside the data root, no
            images, one class, an unreadable image: the message names the file).
        DatasetUnavailable: the files are not here and could not be downloaded.
    """
    info = get_info(name)
    if image_size is not None and image_size != info.image_size and name not in ("flowers102", "folder"):
        raise ValueError(f"{info.title} is stored at its native {info.image_size}x{info.image_size}; "
                         "image_size only applies to flowers102 and folder.")
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}.")
    size = image_size or info.image_size
    data_root = paths.data_root(root)

    if name == "digits":
        identity = _stamp(["digits", _version("scikit-learn")])
        return _cached(name, identity, identity, data_root, cache, _load_digits)
    if name == "folder":
        path = _resolve_folder(folder, data_root)
        identity = _stamp([str(path), size])
        return _cached(
            name, identity, lambda: _stamp(_listing(path)), data_root, cache,
            lambda: _load_folder(path, data_root, size),
        )

    src = _TORCHVISION[name]
    identity = _stamp([name, str(data_root), size])

    def files_stamp() -> str | None:
        if _missing_files(data_root, src):
            return None
        return _stamp(_listing(data_root / src.folder))

    return _cached(
        name, identity, files_stamp, data_root, cache,
        lambda: _load_torchvision(name, data_root, download, size),
    )


# ------------------------------------------------------------------ caching


def _cached(
    name: str,
    identity: str,
    stamp: str | Callable[[], str | None],
    data_root: Path,
    use_cache: bool,
    build: Callable[[], Dataset],
) -> Dataset:
    # The file name holds what the data is (identity) and the state of its
    # source files (stamp): a changed source misses, and the stale file for the
    # same identity is removed when the new one is written.
    cache_dir = paths.cache_root(data_root)
    current = stamp() if callable(stamp) else stamp
    if use_cache and current is not None:
        hit = _read_cache(cache_dir / f"{name}-{identity}-{current}.pt", name)
        if hit is not None:
            return hit
    dataset = build()
    if use_cache:
        # the state seen before reading, when there was one: if the files change
        # while being read, the next load misses instead of trusting a mix
        after = current if current is not None else stamp()
        if after is not None:
            _write_cache(cache_dir, f"{name}-{identity}-", after, dataset)
    return dataset


def _read_cache(path: Path, name: str) -> Dataset | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("version") != CACHE_VERSION:
            return None
        return Dataset(
            name=name,
            classes=list(payload["classes"]),
            train_x=payload["train_x"],
            train_y=payload["train_y"],
            test_x=payload["test_x"],
            test_y=payload["test_y"],
            mean=tuple(payload["mean"]),
            std=tuple(payload["std"]),
            source=f"cache: {path} (from {payload['source']})",
        )
    except (OSError, RuntimeError, KeyError, AttributeError, EOFError) as e:
        warnings.warn(f"Ignoring an unreadable dataset cache file {path}: {e}", stacklevel=3)
        return None


def _write_cache(cache_dir: Path, prefix: str, stamp: str, dataset: Dataset) -> None:
    payload = {
        "version": CACHE_VERSION,
        "classes": list(dataset.classes),
        "train_x": dataset.train_x.contiguous(),
        "train_y": dataset.train_y.contiguous(),
        "test_x": dataset.test_x.contiguous(),
        "test_y": dataset.test_y.contiguous(),
        "mean": list(dataset.mean),
        "std": list(dataset.std),
        "source": dataset.source,
    }
    target = cache_dir / f"{prefix}{stamp}.pt"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for stale in cache_dir.glob(f"{prefix}*.pt"):
            if stale != target:
                stale.unlink(missing_ok=True)
    except OSError as e:
        warnings.warn(f"Could not write the dataset cache {target}: {e}", stacklevel=3)


def _stamp(parts: Sequence[object]) -> str:
    return hashlib.sha256(repr(list(parts)).encode()).hexdigest()[:16]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _is_hidden(name: str) -> bool:
    # .ipynb_checkpoints, .DS_Store, macOS "._x.jpg" forks, __MACOSX in zips
    return name.startswith((".", "__MACOSX"))


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not _is_hidden(name)


def _listing(top: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every file under ``top``, links followed."""
    rows = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d))
        for fname in sorted(filenames):
            if _is_hidden(fname):
                continue
            full = os.path.join(dirpath, fname)
            try:
                st = os.stat(full)
            except OSError:
                continue
            rows.append((os.path.relpath(full, top), st.st_size, st.st_mtime_ns))
    return rows


# ------------------------------------------------------------ the datasets


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of uint8 images, on the [0, 1] scale."""
    levels = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for c in range(x.shape[1]):
        # a 256-bin histogram is exact and never materialises a float copy
        hist = torch.bincount(x[:, c].reshape(-1), minlength=256).to(torch.float64)
        n = hist.sum()
        mean = (hist * levels).sum() / n
        var = (hist * levels.square()).sum() / n - mean.square()
        std = math.sqrt(max(float(var), 0.0)) / 255
        means.append(float(mean) / 255)
        # a constant channel would divide by zero in prepare_batch
        stds.append(std if std > 0 else 1.0)
    return tuple(means), tuple(stds)


def _make(name, classes, train_x, train_y, test_x, test_y, source) -> Dataset:
    mean, std = _channel_stats(train_x)
    return Dataset(
        name=name,
        classes=[str(c) for c in classes],
        train_x=train_x.contiguous(),
        train_y=train_y.to(torch.int64),
        test_x=test_x.contiguous(),
        test_y=test_y.to(torch.int64),
        mean=mean,
        std=std,
        source=source,
    )


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)  # (1797, 64) float, values 0..16
    x = torch.from_numpy(np.rint(images * (255 / 16)).astype(np.uint8).reshape(-1, 1, 8, 8))
    y = torch.from_numpy(labels.astype(np.int64))
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.2, random_state=0, stratify=labels
    )
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    return _make(
        "digits", [str(i) for i in range(10)],
        x[train_idx], y[train_idx], x[test_idx], y[test_idx],
        "scikit-learn load_digits (stratified 80/20 split, random_state=0)",
    )


def _missing_files(data_root: Path, src: _TorchvisionSource) -> list[str]:
    base = data_root / src.folder
    missing = []
    for f in src.files:
        path = base / f.rstrip("/")
        if not (path.is_dir() if f.endswith("/") else path.is_file()):
            missing.append(f)
    return missing


def _system_archive(name: str) -> Path | None:
    """A system folder holding the dataset's files (.gz or not), if one is installed."""
    for folder in paths.SYSTEM_ARCHIVES.get(name, []):
        folder = Path(folder)
        if all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in _TORCHVISION[name].files):
            return folder
    return None


def _import_system_archive(name: str, data_root: Path) -> Path | None:
    """Copy (gunzip) a system archive into the data root, where torchvision reads it."""
    archive = _system_archive(name)
    if archive is None:
        return None
    raw = data_root / _TORCHVISION[name].folder
    try:
        raw.mkdir(parents=True, exist_ok=True)
        for f in _TORCHVISION[name].files:
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
        raise DatasetUnavailable(
            f"Found {get_info(name).title} in {archive} but could not copy it into {raw}: {e}. "
            "Set ALEXNET_LAB_DATA to a folder you can write to."
        ) from e
    return archive


def _offline_hint(name: str, data_root: Path) -> str:
    src = _TORCHVISION[name]
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


def _load_torchvision(name: str, data_root: Path, download: bool | None, size: int) -> Dataset:
    readers = {
        "mnist": lambda dl: _read_mnist_like("MNIST", data_root, dl),
        "fashion-mnist": lambda dl: _read_mnist_like("FashionMNIST", data_root, dl),
        "cifar10": lambda dl: _read_cifar10(data_root, dl),
        "flowers102": lambda dl: _read_flowers102(data_root, dl, size),
    }
    read = readers[name]
    source = str(data_root / _TORCHVISION[name].folder)
    parts = _try_read(read, download=False)
    if parts is None:
        archive = _import_system_archive(name, data_root)
        if archive is not None:
            parts = _try_read(read, download=False)
            source = f"{archive} (imported into {source})"
    failure = ""
    if parts is None and download is not False:
        data_root.mkdir(parents=True, exist_ok=True)
        try:
            parts = read(True)
            source = f"{source} (downloaded)"
        except _DOWNLOAD_ERRORS as e:
            failure = f" The download failed: {e}"
    if parts is None:
        title = get_info(name).title
        raise DatasetUnavailable(
            f"{title} is not in {data_root / _TORCHVISION[name].folder}. "
            f"To use it offline, {_offline_hint(name, data_root)}"
            + ("" if download is not False else " (Downloading was switched off.)")
            + failure
        )
    classes, train_x, train_y, test_x, test_y = parts
    return _make(name, classes, train_x, train_y, test_x, test_y, source)


def _try_read(read, *, download: bool):
    # torchvision says "Dataset not found" (or "... or corrupted") with a RuntimeError
    try:
        return read(download)
    except RuntimeError as e:
        if "not found" in str(e):
            return None
        raise


def _read_mnist_like(cls_name: str, data_root: Path, download: bool):
    from torchvision import datasets

    cls = getattr(datasets, cls_name)
    train = cls(str(data_root), train=True, download=download)
    test = cls(str(data_root), train=False, download=False)
    classes = [str(i) for i in range(10)] if cls_name == "MNIST" else list(train.classes)
    return (
        classes,
        train.data.unsqueeze(1),  # (N, 28, 28) -> (N, 1, 28, 28)
        train.targets,
        test.data.unsqueeze(1),
        test.targets,
    )


def _read_cifar10(data_root: Path, download: bool):
    from torchvision.datasets import CIFAR10

    train = CIFAR10(str(data_root), train=True, download=download)
    test = CIFAR10(str(data_root), train=False, download=False)

    def images(ds) -> torch.Tensor:
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)

    return (
        list(train.classes),
        images(train),
        torch.tensor(train.targets),
        images(test),
        torch.tensor(test.targets),
    )


def _read_flowers102(data_root: Path, download: bool, size: int):
    from torchvision.datasets import Flowers102

    loader = functools.partial(_decode_image, size=size, root=None)
    # the official split: train and val (10 per class each) for training, test (6,149) held out
    splits = {s: Flowers102(str(data_root), split=s, download=download and s == "train", loader=loader)
              for s in ("train", "val", "test")}

    def decode(ds) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.empty((len(ds), 3, size, size), dtype=torch.uint8)
        y = torch.empty(len(ds), dtype=torch.int64)

        def one(i: int) -> None:
            image, label = ds[i]
            x[i] = torch.from_numpy(image).permute(2, 0, 1)
            y[i] = label

        _parallel(one, range(len(ds)))
        return x, y

    train_x, train_y = zip(*(decode(splits[s]) for s in ("train", "val")))
    test_x, test_y = decode(splits["test"])
    return (list(Flowers102.classes), torch.cat(train_x), torch.cat(train_y), test_x, test_y)


def _parallel(fn: Callable[[int], None], items) -> None:
    # PIL releases the GIL while decoding and resizing, so threads scale
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(fn, items):
            pass


def _decode_image(path: str | os.PathLike, size: int, root: Path | None) -> np.ndarray:
    """One image file as uint8 RGB ``(size, size, 3)``: the largest centred square, resized.

    Transparent pixels are composited on white; 16-bit images are scaled to 8 bits.
    ``root``: refuse a file whose real path (links resolved) lies outside it.
    """
    from PIL import Image, ImageOps

    if root is not None and not paths.is_within(path, root):
        raise ValueError(
            f"The image {path} is a link to {Path(path).resolve()}, outside the data root {root}. "
            "Copy the file itself into the folder."
        )
    try:
        with Image.open(path) as img:
            # JPEG only: decode at 1/2, 1/4 or 1/8 scale while staying >= size
            img.draft("RGB", (size, size))
            img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            img = ImageOps.fit(img, (size, size), Image.Resampling.BILINEAR)
            return np.array(img, dtype=np.uint8)  # writable: torch.from_numpy warns on read-only
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(
            f"Could not read the image file {path}: {e}. Delete or replace that file and load again."
        ) from e


def _to_rgb(img):
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        if img.mode == "F":
            top = 1.0 if a.max(initial=0) <= 1 else 255.0
        elif img.mode.startswith("I;16") or a.max(initial=0) > 255:
            top = 65535.0
        else:
            top = 255.0
        img = Image.fromarray(np.clip(np.rint(a * (255 / top)), 0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert("RGB")


# ----------------------------------------------------------- image folders


def _resolve_folder(folder: str | os.PathLike | None, data_root: Path) -> Path:
    if folder is None or str(folder) == "":
        raise ValueError(
            f"The 'folder' dataset needs folder=...: an image folder inside the data root {data_root}."
        )
    given = Path(folder).expanduser()
    path = given if given.is_absolute() else data_root / given
    if not paths.is_within(path, data_root):
        real = path.resolve()
        link = f" (it is a link to {real})" if real != Path(os.path.abspath(path)) else ""
        raise ValueError(
            f"The image folder {path}{link} is outside the data root {data_root}. "
            f"Copy it inside {data_root}, or set ALEXNET_LAB_DATA to a folder that contains it."
        )
    if not path.is_dir():
        raise DatasetUnavailable(
            f"The image folder {path} does not exist. Make it inside {data_root} with one subfolder "
            f"per class, e.g. {path / 'cats' / '001.jpg'} and {path / 'dogs' / '001.jpg'} "
            "(optionally under train/ and test/)."
        )
    return path.resolve()


@functools.cache
def _image_folder_class():
    from torchvision.datasets import ImageFolder

    class _ImageFolder(ImageFolder):
        """ImageFolder that skips hidden class folders (.ipynb_checkpoints, __MACOSX)."""

        def find_classes(self, directory):
            classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not _is_hidden(e.name))
            return classes, {c: i for i, c in enumerate(classes)}

    return _ImageFolder


def _open_image_folder(path: Path):
    """torchvision's ImageFolder over ``path``, after the checks it would do less clearly."""
    subdirs = sorted(e.name for e in os.scandir(path) if e.is_dir() and not _is_hidden(e.name))
    if not subdirs:
        loose = sum(1 for e in os.scandir(path) if e.is_file() and _is_image_name(e.name))
        found = f" It holds {loose} images directly; move them into class subfolders." if loose else ""
        raise ValueError(
            f"The image folder {path} has no class subfolders: put each class's images in its own "
            f"subfolder, e.g. {path / 'cats'} and {path / 'dogs'}.{found}"
        )

    def is_valid_file(p: str) -> bool:
        rel = Path(os.path.relpath(p, path))
        return _is_image_name(rel.name) and not any(_is_hidden(part) for part in rel.parts)

    # allow_empty: torchvision would raise on the first empty class folder with a
    # generic message; we check below and name the folders ourselves
    return _image_folder_class()(str(path), is_valid_file=is_valid_file, allow_empty=True)


def _folder_samples(path: Path, *, role: str) -> tuple[list[str], list[str], list[int]]:
    ds = _open_image_folder(path)
    if not ds.samples:
        raise ValueError(
            f"No images found in {path} (its class subfolders: {', '.join(ds.classes)}). "
            f"Images need one of these extensions: {', '.join(IMAGE_EXTENSIONS)}."
        )
    counts = np.bincount([t for _, t in ds.samples], minlength=len(ds.classes))
    if role == "train":
        empty = [ds.classes[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise ValueError(
                f"These class folders in {path} have no images: "
                + ", ".join(str(path / c) for c in empty)
                + ". Add images or remove the folders."
            )
        if len(ds.classes) < 2:
            raise ValueError(
                f"The image folder {path} has only one class ({ds.classes[0]!r}): a classifier needs at "
                "least two class subfolders with images."
            )
    return list(ds.classes), [p for p, _ in ds.samples], [t for _, t in ds.samples]


def _decode_files(files: list[str], size: int, data_root: Path) -> torch.Tensor:
    x = torch.empty((len(files), 3, size, size), dtype=torch.uint8)

    def one(i: int) -> None:
        x[i] = torch.from_numpy(_decode_image(files[i], size, data_root)).permute(2, 0, 1)

    _parallel(one, range(len(files)))
    return x


def _split_per_class(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split: about FOLDER_TEST_FRACTION of each class to test."""
    train, test = [], []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        # one generator per class: adding images to one class leaves the others' split alone
        idx = np.random.default_rng([FOLDER_SPLIT_SEED, c]).permutation(idx)
        n_test = round(len(idx) * FOLDER_TEST_FRACTION)
        if len(idx) >= 2:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _load_folder(path: Path, data_root: Path, size: int) -> Dataset:
    train_dir = path / "train"
    test_dir = next((path / t for t in ("test", "val") if (path / t).is_dir()), None)
    if train_dir.is_dir() and test_dir is not None:
        classes, train_files, train_labels = _folder_samples(train_dir, role="train")
        test_classes, test_files, test_labels = _folder_samples(test_dir, role="test")
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise ValueError(
                f"{test_dir} has class folders that {train_dir} lacks: {', '.join(unknown)}. "
                "The test classes must be a subset of the training classes."
            )
        remap = [classes.index(c) for c in test_classes]
        test_labels = [remap[t] for t in test_labels]
        return _make(
            "folder", classes,
            _decode_files(train_files, size, data_root), torch.tensor(train_labels),
            _decode_files(test_files, size, data_root), torch.tensor(test_labels),
            f"{path} (train/ and {test_dir.name}/)",
        )

    split_dir = train_dir if train_dir.is_dir() else path
    classes, files, labels = _folder_samples(split_dir, role="train")
    labels_np = np.asarray(labels)
    train_idx, test_idx = _split_per_class(labels_np, len(classes))
    x = _decode_files(files, size, data_root)
    y = torch.from_numpy(labels_np.astype(np.int64))
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return _make(
        "folder", classes, x[train_idx], y[train_idx], x[test_idx], y[test_idx],
        f"{split_dir} ({round(FOLDER_TEST_FRACTION * 100)}% of each class held out, seed {FOLDER_SPLIT_SEED})",
    )


# ------------------------------------------------------------- batches


def prepare_batch(
    x_uint8: torch.Tensor,
    *,
    in_channels: int,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str,
    augment: Augment | None = None,
    generator: torch.Generator | None = None,
    channels_last: bool = False,
) -> torch.Tensor:
    """Turn a uint8 batch into model input on ``device``.

    Steps, all batched on the device: per-sample augmentation (random flip, crop
    after zero padding, rotation; black fill as in torchvision), channel adaptation
    (1 -> N repeats, 3 -> 1 takes ITU-R 601 luminance), normalisation by the
    dataset's ``mean``/``std`` (per source channel, [0, 1] scale), bilinear resize
    to ``size`` x ``size``.

    Normalisation runs before the resize: bilinear weights sum to one, so the two
    commute exactly, and the per-pixel work is done on the small image.
    For 3 -> 1 the luminance is normalised with mean ``w . mean`` (exact) and std
    ``w . std`` (exact when the colour channels are perfectly correlated, an upper
    bound otherwise; close for natural photos).

    Args:
        x_uint8: uint8 ``(N, C, H, W)``, C matching ``len(mean)``.
        generator: draws the augmentation parameters; seed it for reproducible batches.
        channels_last: return the batch in ``torch.channels_last`` memory format.

    Returns:
        float32 ``(N, in_channels, size, size)`` on ``device``.
    """
    if x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4:
        raise ValueError(
            f"prepare_batch needs a uint8 (N, C, H, W) batch, got {x_uint8.dtype} {tuple(x_uint8.shape)}."
        )
    n, c, h, w = x_uint8.shape
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean and std need one value per channel ({c}), got {len(mean)} and {len(std)}.")
    if not (in_channels == c or c == 1 or (c == 3 and in_channels == 1)):
        raise ValueError(f"Cannot adapt {c}-channel images to {in_channels} channels (only 1 -> N and 3 -> 1).")
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    x = x_uint8.to(device, non_blocking=True)
    if augment is not None and augment.active:
        x = _augment(x, augment, generator)
    x = x.to(torch.float32)  # 0..255; a fresh tensor unless rotation already made one

    mean_t = torch.tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.tensor(std, dtype=torch.float32, device=device)
    if c == 3 and in_channels == 1:
        luma = torch.tensor(LUMA_WEIGHTS, dtype=torch.float32, device=device)
        std_l = (luma * std_t).sum()
        weight = (luma / (255 * std_l)).view(1, 3, 1, 1)
        bias = ((luma * mean_t).sum() / std_l).neg().view(1)
        x = F.conv2d(x, weight, bias)  # (N, 1, H, W)
    else:
        x = x.mul_((1 / (255 * std_t)).view(1, c, 1, 1)).sub_((mean_t / std_t).view(1, c, 1, 1))

    # NCHW through the resize: on the CPU, bilinear interpolation of a
    # channels_last input measured 1.8x slower than converting its output
    if (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < h or size < w)
    if x.shape[1] != in_channels:
        x = x.expand(-1, in_channels, -1, -1)  # (N, 1, S, S) -> (N, in_channels, S, S), copied below
    return x.contiguous(memory_format=memory_format)


def _augment(x: torch.Tensor, aug: Augment, generator: torch.Generator | None) -> torch.Tensor:
    """Per-sample flip / crop / rotation of a ``(N, C, H, W)`` batch; each image draws its own parameters."""
    n, c, h, w = x.shape
    draw_device = generator.device if generator is not None else x.device

    def uniform(count: int) -> torch.Tensor:
        return torch.rand(count, generator=generator, device=draw_device).to(x.device)

    if aug.flip or aug.crop_padding > 0:
        p = max(aug.crop_padding, 0)
        if p:
            offsets = torch.randint(0, 2 * p + 1, (2, n), generator=generator, device=draw_device).to(x.device)
            padded = F.pad(x, (p, p, p, p))  # zeros: black, as torchvision's RandomCrop(padding=p)
        else:
            offsets = torch.zeros((2, n), dtype=torch.int64, device=x.device)
            padded = x
        rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (N, H)
        cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (N, W)
        if aug.flip:
            flip = uniform(n) < 0.5
            # flipping the crop window's columns == cropping the flipped image
            cols = torch.where(flip[:, None], (w + 2 * p - 1) - cols, cols)
        # one gather does flip and crop together: (N, C, H, W)
        x = padded[
            torch.arange(n, device=x.device)[:, None, None, None],
            torch.arange(c, device=x.device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]

    if aug.rotation:
        angle = (uniform(n) * 2 - 1) * math.radians(aug.rotation)
        cos, sin = angle.cos(), angle.sin()
        zero = torch.zeros_like(angle)
        # normalised coordinates: a rotation for the square images stored here
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (N, 2, 3)
        xf = x.to(torch.float32)
        grid = F.affine_grid(theta, list(xf.shape), align_corners=False)
        x = F.grid_sample(xf, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x
