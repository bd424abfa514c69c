"""Dataset registry: real datasets decoded once into in-memory uint8 tensors.

Every dataset comes back as a :class:`Dataset`: uint8 images ``(N, C, H, W)``
on the CPU, int64 labels, class names, and the per-channel mean/std of the
training split. Files are read by torchvision's own dataset classes (or
scikit-learn for the bundled ``digits``; ``imagefiles`` does the reading) and
the decoded tensors are cached under :func:`alexnet_core.paths.cache_root`, so
a second load is one ``torch.load``. ``batches.prepare_batch`` turns them into
model input.

Public API::

    list_datasets(), get_info(name) -> DatasetInfo
    availability(name, root=None, folder=None) -> (ok, where or how to get it)
    obtainable(name, root=None, folder=None) -> (here or downloadable, where or how to get it)
    load_dataset(name, root=None, *, folder=None, download=None, cache=True, image_size=None, squash=False,
                 stream=None) -> Dataset
    storage_plan(name, root=None, folder=None, image_size=None) -> (streamed, why) or None
    Dataset, DatasetInfo, DatasetUnavailable; PHOTO_DATASETS, PHOTO_SIZE, photo_bytes(name, n, size)

Photos whose decoded size would not fit the memory available are streamed
instead (``streaming``): their splits are ``streaming.LazyImages``, decoded a
batch at a time, and ``Dataset.storage`` says which way a dataset is held and why.

Where the files come from, in order: the data root in torchvision's layout
(``root`` or ``ALEXNET_LAB_DATA``, default ``./data``); a known system archive
folder (Debian's ``dataset-fashion-mnist``); torchvision's download unless
``download=False``; otherwise :class:`DatasetUnavailable` says which files to
put where.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alexnet_core import datafiles, imagefiles, paths, streaming
from alexnet_core.runfiles import torch_load_reason

# Bump when the cached payload or any decoding choice changes: old cache files
# then simply stop matching.
CACHE_VERSION = 1

# Datasets decoded from photos of any size. They are stored as the 2012 paper
# stored ImageNet: the short side resized to 256 and the centre 256x256 kept, so
# training can take random 224/227 windows (batches.WINDOWS) and evaluation the
# centre one. 256x256x3 bytes is 192 KiB a photo: Flowers-102's 8,189 take
# 1.5 GiB in memory (and as much again in the cache file), 25,000 cats and dogs
# 4.6 GiB. A run may store them smaller (TrainConfig.image_size).
PHOTO_DATASETS = ("flowers102", "folder")
PHOTO_SIZE = 256
FLOWERS_IMAGES = 8_189
FLOWERS_IMAGE_SIZE = FOLDER_IMAGE_SIZE = PHOTO_SIZE

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

    ``train_x``/``test_x`` are uint8 ``(N, C, H, W)`` (``streaming.LazyImages``, indexed
    the same way, for photos streamed from disk); ``train_y``/``test_y``
    int64 ``(N,)``; ``mean``/``std`` are per channel on the [0, 1] scale,
    computed from ``train_x`` only. ``storage``: how the images are held, and why.
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
    storage: str = ""

    @property
    def streamed(self) -> bool:
        """Whether the images are decoded from their files a batch at a time."""
        return isinstance(self.train_x, streaming.LazyImages)

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


_INFOS = {
    info.name: info
    for info in (
        DatasetInfo("digits", "Digits (8x8)", "1,797 handwritten digits, 8x8 grayscale, bundled with scikit-learn.",
                    1, 8, 10, "Always available: it ships with scikit-learn."),
        DatasetInfo("mnist", "MNIST", "70,000 handwritten digits, 28x28 grayscale.", 1, 28, 10,
                    "Put the four idx files (gunzipped) in <data root>/MNIST/raw/."),
        DatasetInfo("fashion-mnist", "Fashion-MNIST", "70,000 photos of clothes in 10 classes, 28x28 grayscale.",
                    1, 28, 10, "apt-get install dataset-fashion-mnist, or put the four idx files in "
                    "<data root>/FashionMNIST/raw/."),
        DatasetInfo("cifar10", "CIFAR-10", "60,000 colour photos in 10 classes, 32x32.", 3, 32, 10,
                    "Extract cifar-10-python.tar.gz into <data root> (it makes cifar-10-batches-py/)."),
        DatasetInfo("flowers102", "Flowers-102",
                    f"8,189 flower photos in 102 classes, stored at {PHOTO_SIZE}x{PHOTO_SIZE} (the centre of each).",
                    3, PHOTO_SIZE, 102,
                    "Put jpg/ (from 102flowers.tgz), imagelabels.mat and setid.mat in <data root>/flowers-102/."),
        DatasetInfo("folder", "Image folder",
                    "Your own photos: one subfolder per class, optionally under train/ and test/.", 3, PHOTO_SIZE,
                    None, "Copy the folder inside the data root (ALEXNET_LAB_DATA, default ./data)."),
    )
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
    src = datafiles.SOURCES[name]
    if not datafiles.missing_files(data_root, name):
        damaged = datafiles.damaged_file(data_root, name)
        if damaged is None:
            return True, str(data_root / src.folder)
        return False, (f"{datafiles.damaged_text(info.title, data_root, name, damaged)} Online, a first load "
                       f"downloads {info.title} again (about {src.download_mb} MB); offline: "
                       f"{datafiles.offline_hint(name, data_root)}")
    archive = datafiles.system_archive(name)
    if archive is not None:
        return True, f"{archive} (copied into {data_root / src.folder} on first load)"
    return False, (
        f"{info.title} is not in {data_root / src.folder}. "
        f"It downloads by itself on first load when online (about {src.download_mb} MB); "
        f"offline: {datafiles.offline_hint(name, data_root)}"
    )


def obtainable(
    name: str, root: str | os.PathLike | None = None, folder: str | os.PathLike | None = None
) -> tuple[bool, str]:
    """Whether a run can get ``name``'s images: they are here (``availability``), or torchvision
    downloads them on first load when online. ``(False, how to get them)`` otherwise.

    What a launch checks: a dataset that downloads is not refused before the download is tried.
    Never downloads itself.
    """
    ok, where = availability(name, root, folder)
    return (ok or name in datafiles.SOURCES), where


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    folder: str | os.PathLike | None = None,
    download: bool | None = None,
    cache: bool = True,
    image_size: int | None = None,
    squash: bool = False,
    stream: bool | None = None,
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
            ``folder``; default PHOTO_SIZE); the others have one native size.
        squash: photos are resized whole to the square, their aspect ratio lost, instead
            of keeping their centre square (photo datasets only).
        stream: photo datasets only: True decodes them a batch at a time (``streaming``), False
            in memory; None streams those whose decoded size would not fit (``streaming.plan``).

    Raises:
        ValueError: unknown name, or bad input (folder outside the data root, no
            images, one class, an unreadable image: the message names the file).
        DatasetUnavailable: the files are not here and could not be downloaded.
    """
    info = get_info(name)
    if image_size is not None and image_size != info.image_size and name not in PHOTO_DATASETS:
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
        files = imagefiles.folder_files(path, data_root)
        streamed, storage = streaming.plan(len(files[1]) + len(files[3]), size, stream=stream)
        if streamed:
            classes, train_files, train_y, test_files, test_y, source = files
            lazy = lambda f: streaming.LazyImages(f, size, squash, data_root)  # noqa: E731
            return _make("folder", classes, lazy(train_files), train_y, lazy(test_files), test_y, source, storage)
        identity = _stamp([str(path), size] + (["squash"] if squash else []))
        ds = _cached(
            name, identity, lambda: _stamp(imagefiles.listing(path, data_root)), data_root, cache,
            lambda: _make("folder", *imagefiles.read_folder(path, data_root, size, squash)),
        )
        ds.storage = storage
        return ds
    if name == "flowers102":
        streamed, storage = streaming.plan(FLOWERS_IMAGES, size, stream=stream)
        if streamed:
            ds = _load_torchvision(name, data_root, download, size, squash, streamed=True)
            ds.storage = storage
            return ds

    identity = _stamp([name, str(data_root), size] + (["squash"] if squash and name in PHOTO_DATASETS else []))

    def files_stamp() -> str | None:
        if datafiles.missing_files(data_root, name):
            return None
        return _stamp(imagefiles.listing(data_root / datafiles.SOURCES[name].folder))

    ds = _cached(
        name, identity, files_stamp, data_root, cache,
        lambda: _load_torchvision(name, data_root, download, size, squash),
    )
    if name in PHOTO_DATASETS:
        ds.storage = storage
    return ds


def storage_plan(name: str, root: str | os.PathLike | None = None, folder: str | os.PathLike | None = None,
                 image_size: int | None = None) -> tuple[bool, str] | None:
    """Whether a run's photos would be streamed or held in memory, and why (``streaming.plan``),
    from the number of photos, without decoding any; None for datasets that are not photos
    or a folder that cannot be read (loading it says why)."""
    if name not in PHOTO_DATASETS:
        return None
    size = image_size or PHOTO_SIZE
    if name == "flowers102":
        return streaming.plan(FLOWERS_IMAGES, size)
    try:
        files = imagefiles.folder_files(_resolve_folder(folder, paths.data_root(root)), paths.data_root(root))
    except (ValueError, OSError, DatasetUnavailable):
        return None
    return streaming.plan(len(files[1]) + len(files[3]), size)


def photo_bytes(name: str, n: int, size: int | None = None) -> int:
    """Bytes that ``n`` images of ``name`` take decoded in memory at ``size`` (photos: PHOTO_SIZE)."""
    info = get_info(name)
    side = size or info.image_size
    return n * info.channels * side * side


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
        if not isinstance(payload, dict) or payload.get("version") != CACHE_VERSION:
            return None
        return _checked(Dataset(
            name=name,
            classes=list(payload["classes"]),
            train_x=payload["train_x"],
            train_y=payload["train_y"],
            test_x=payload["test_x"],
            test_y=payload["test_y"],
            mean=tuple(payload["mean"]),
            std=tuple(payload["std"]),
            source=f"cache: {path} (from {payload['source']})",
        ))
    except Exception as e:  # random bytes, a pickle, a wrong field: the images are decoded again
        warnings.warn(f"Ignoring an unreadable dataset cache file {path} ({torch_load_reason(e)}); "
                      "it is made again", stacklevel=3)
        return None


def _checked(ds: Dataset) -> Dataset:
    """``ds`` if its tensors are the kinds and shapes a cache holds; ValueError if not."""
    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        if not (isinstance(x, torch.Tensor) and x.dtype == torch.uint8 and x.dim() == 4 and isinstance(y, torch.Tensor)
                and y.dim() == 1 and len(x) == len(y) and (not len(y) or 0 <= int(y.min()) <= int(y.max()) < len(ds.classes))):
            raise ValueError("its tensors are not uint8 images with a label each")
    return ds


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


# ------------------------------------------------------------ the datasets


def _histograms(x: torch.Tensor) -> torch.Tensor:
    """(C, 256) float64 counts of each level per channel: exact, and never a float copy of ``x``."""
    return torch.stack([torch.bincount(x[:, c].reshape(-1), minlength=256) for c in range(x.shape[1])]).double()


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of uint8 images (or of their ``_histograms``),
    on the [0, 1] scale."""
    levels = torch.arange(256, dtype=torch.float64)
    hists = x if x.dtype == torch.float64 else _histograms(x)
    means, stds = [], []
    for hist in hists:
        n = hist.sum()
        mean = (hist * levels).sum() / n
        var = (hist * levels.square()).sum() / n - mean.square()
        std = math.sqrt(max(float(var), 0.0)) / 255
        means.append(float(mean) / 255)
        # a constant channel would divide by zero in prepare_batch
        stds.append(std if std > 0 else 1.0)
    return tuple(means), tuple(stds)


def _make(name, classes, train_x, train_y, test_x, test_y, source, storage="") -> Dataset:
    if isinstance(train_x, streaming.LazyImages):
        # a seeded sample of the training photos, decoded once: all of them would not fit
        count = min(len(train_x), streaming.STATS_SAMPLE)
        sample = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0))[:count].sort().values
        # chunk by chunk: the sample's histograms, never the sample decoded whole
        hists = sum((_histograms(train_x[sample[i: i + 256]]) for i in range(0, count, 256)),
                    torch.zeros((3, 256), dtype=torch.float64))
        mean, std = _channel_stats(hists)
        source = f"{source}; mean and std from {count:,} of its {len(train_x):,} training photos"
    else:
        mean, std = _channel_stats(train_x)
        train_x, test_x = train_x.contiguous(), test_x.contiguous()
    return Dataset(
        name=name,
        classes=[str(c) for c in classes],
        train_x=train_x,
        train_y=train_y.to(torch.int64),
        test_x=test_x,
        test_y=test_y.to(torch.int64),
        mean=mean,
        std=std,
        source=source,
        storage=storage,
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


def _lazy_flowers(data_root: Path, download: bool, size: int, squash: bool) -> tuple:
    classes, train_files, train_y, test_files, test_y, _ = imagefiles.flowers102_files(data_root, download)
    lazy = lambda f: streaming.LazyImages(f, size, squash, None)  # noqa: E731
    return classes, lazy(train_files), train_y, lazy(test_files), test_y


def _load_torchvision(name: str, data_root: Path, download: bool | None, size: int, squash: bool = False,
                      streamed: bool = False) -> Dataset:
    readers = {
        "mnist": lambda dl: imagefiles.read_mnist_like("MNIST", data_root, dl),
        "fashion-mnist": lambda dl: imagefiles.read_mnist_like("FashionMNIST", data_root, dl),
        "cifar10": lambda dl: imagefiles.read_cifar10(data_root, dl),
        "flowers102": lambda dl: imagefiles.read_flowers102(data_root, dl, size, squash),
    }
    read = (lambda dl: _lazy_flowers(data_root, dl, size, squash)) if streamed else readers[name]
    title, folder = get_info(name).title, data_root / datafiles.SOURCES[name].folder
    source = str(folder)
    parts = _try_read(read, download=False)
    if parts is None:
        try:
            archive = datafiles.import_system_archive(name, data_root)
        except datafiles.ArchiveCopyError as e:
            raise DatasetUnavailable(f"{title}: {e}") from e
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
        damaged = None if datafiles.missing_files(data_root, name) else datafiles.damaged_file(data_root, name)
        where = (datafiles.damaged_text(title, data_root, name, damaged) if damaged else f"{title} is not in {folder}.")
        raise DatasetUnavailable(
            f"{where} To use it offline, {datafiles.offline_hint(name, data_root)}"
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


# ----------------------------------------------------------- image folders


def _resolve_folder(folder: str | os.PathLike | None, data_root: Path) -> Path:
    if folder is None or str(folder) == "":
        raise ValueError(
            f"The 'folder' dataset needs folder=...: an image folder inside the data root {data_root}."
        )
    problem = paths.name_problem(folder)
    if problem:
        raise ValueError(f"The image folder name {paths.shorten(folder)!r} cannot be used: {problem}. "
                         f"Choose a folder inside the data root {data_root}.")
    given = Path(folder).expanduser()
    path = given if given.is_absolute() else data_root / given
    try:
        inside, real, is_dir = paths.is_within(path, data_root), path.resolve(), path.is_dir()
    except (OSError, RuntimeError) as e:  # a link loop: RuntimeError from resolve() before Python 3.13
        raise DatasetUnavailable(
            f"The image folder {paths.display(path)} cannot be opened ({paths.display(str(e))}). "
            f"If it is a link, point it at a real folder inside {data_root}."
        ) from None
    if not inside:
        link = f" (it is a link to {paths.display(real)})" if real != Path(os.path.abspath(path)) else ""
        raise ValueError(
            f"The image folder {paths.display(path)}{link} is outside the data root {data_root}. "
            f"Copy it inside {data_root}, or set ALEXNET_LAB_DATA to a folder that contains it."
        )
    if not is_dir:
        raise DatasetUnavailable(
            f"The image folder {paths.display(path)} does not exist. Make it inside {data_root} with one "
            f"subfolder per class, e.g. {paths.display(path / 'cats' / '001.jpg')} and "
            f"{paths.display(path / 'dogs' / '001.jpg')} (optionally under train/ and test/)."
        )
    return real
