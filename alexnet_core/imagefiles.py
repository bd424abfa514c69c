"""Image files into uint8 tensors: torchvision's dataset formats, photos, image folders.

``datasets`` decides what to load and from where; this module reads it:

    read_mnist_like(cls_name, data_root, download), read_cifar10(data_root, download),
    read_flowers102(data_root, download, size), read_folder(path, data_root, size)
        -> (classes, train_x, train_y, test_x, test_y[, source]): uint8 (N, C, H, W), int64 labels
    decode_image(path, size, root) -> uint8 (size, size, 3): the centred square, resized
    listing(top) -> [(relative path, size, mtime_ns)]: what a cache stamp is made of

Bad files raise ValueError naming the file and what to do.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from alexnet_core import paths

# The share of each class held out when an image folder has no test/ split.
FOLDER_TEST_FRACTION = 0.2
FOLDER_SPLIT_SEED = 0
# torchvision.datasets.folder.IMG_EXTENSIONS, repeated here so that a cache
# hit does not pay for importing torchvision.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

def _is_hidden(name: str) -> bool:
    # .ipynb_checkpoints, .DS_Store, macOS "._x.jpg" forks, __MACOSX in zips
    return name.startswith((".", "__MACOSX"))


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not _is_hidden(name)


def listing(top: Path) -> list[tuple[str, int, int]]:
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


def read_mnist_like(cls_name: str, data_root: Path, download: bool):
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


def read_cifar10(data_root: Path, download: bool):
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


def read_flowers102(data_root: Path, download: bool, size: int):
    from torchvision.datasets import Flowers102

    loader = functools.partial(decode_image, size=size, root=None)
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


def decode_image(path: str | os.PathLike, size: int, root: Path | None) -> np.ndarray:
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
        x[i] = torch.from_numpy(decode_image(files[i], size, data_root)).permute(2, 0, 1)

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


def read_folder(path: Path, data_root: Path, size: int) -> tuple:
    """An image folder's (classes, train_x, train_y, test_x, test_y, source).

    ``train/`` and ``test/`` (or ``val/``) subfolders are the splits; otherwise
    FOLDER_TEST_FRACTION of each class is held out, seeded.
    """
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
        return (
            classes,
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
    return (
        classes, x[train_idx], y[train_idx], x[test_idx], y[test_idx],
        f"{split_dir} ({round(FOLDER_TEST_FRACTION * 100)}% of each class held out, seed {FOLDER_SPLIT_SEED})",
    )
