"""Image files into uint8 tensors: torchvision's dataset formats, photos, image folders.

``datasets`` decides what to load and from where; this module reads it:

    read_mnist_like(cls_name, data_root, download), read_cifar10(data_root, download),
    read_flowers102(data_root, download, size, squash=False), read_folder(path, data_root, size, squash=False)
        -> (classes, train_x, train_y, test_x, test_y[, source]): uint8 (N, C, H, W), int64 labels
    flowers102_files(data_root, download), folder_files(path, data_root)
        -> (classes, train_files, train_y, test_files, test_y, source): what the readers above decode
    decode_files(files, size, root, squash) -> uint8 (N, 3, size, size), decoded on threads
    decode_image(path, size, root, squash=False) -> uint8 (size, size, 3): the centred square
        (or the whole photo squashed), resized
    listing(top, root=None) -> [(relative path, size, mtime_ns)]: what a cache stamp is made of
    MAX_PIXELS, MAX_LISTING_ENTRIES, MAX_FOLDER_IMAGES: the bounds on one image and one folder

Bad files raise ValueError naming the file and what to do. A folder walk
follows a link only inside ``root`` and into a folder it has not seen (a link
loop is walked once), opens only regular files (never a FIFO), and stops with
a sentence past MAX_LISTING_ENTRIES.
"""

from __future__ import annotations

import os
import stat
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
# One limit for a folder's images and an upload, checked from the header before
# decoding. Pillow's own threshold (Image.MAX_IMAGE_PIXELS), so Pillow never warns
# below it: about 9,460 x 9,460, 268 MB as RGB.
MAX_PIXELS = 89_478_485
# Bounds on one folder walk: entries seen (files and folders, images or not) and images kept.
MAX_LISTING_ENTRIES = 1_000_000
MAX_FOLDER_IMAGES = 200_000

def _is_hidden(name: str) -> bool:
    # .ipynb_checkpoints, .DS_Store, macOS "._x.jpg" forks, __MACOSX in zips
    return name.startswith((".", "__MACOSX"))


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not _is_hidden(name)


def listing(top: Path, root: Path | None = None) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime_ns) of every regular file under ``top`` (see :func:`walk`)."""
    files, _ = walk(top, root)
    return [(rel, st.st_size, st.st_mtime_ns) for rel, st in files]


def walk(top: Path, root: Path | None = None) -> tuple[list[tuple[str, os.stat_result]], list[str]]:
    """The regular, non-hidden files under ``top`` as (relative path, stat), and its folders.

    Sorted as torchvision's ImageFolder sorts (by folder, then name). A link to a
    folder is followed once: one back into a folder already walked is skipped.
    ``root``: a link whose target lies outside it raises ValueError. FIFOs,
    sockets, devices and broken links are skipped; more than MAX_LISTING_ENTRIES
    entries raises ValueError.
    """
    top_st = os.stat(top)
    seen = {(top_st.st_dev, top_st.st_ino)}
    files, folders, pending, entries = [], [], [""], 0
    while pending:
        rel_dir = pending.pop()
        try:
            with os.scandir(os.path.join(top, rel_dir)) as it:
                found = []
                for entry in it:
                    entries += 1
                    if entries > MAX_LISTING_ENTRIES:
                        raise ValueError(
                            f"The folder {paths.display(top)} holds more than {MAX_LISTING_ENTRIES:,} files and "
                            "folders (counting what its links lead to). Choose a smaller folder."
                        )
                    if not _is_hidden(entry.name):
                        found.append(entry)
        except (NotADirectoryError, PermissionError, FileNotFoundError):
            continue
        subdirs = []
        for entry in sorted(found, key=lambda e: e.name):
            rel = os.path.join(rel_dir, entry.name)
            try:
                st = os.stat(entry.path)  # follows links; a link loop raises ELOOP
            except OSError:
                continue
            if root is not None and entry.is_symlink() and not paths.is_within(entry.path, root):
                raise ValueError(outside_root(entry.path, root))
            if stat.S_ISDIR(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                folders.append(rel)
                subdirs.append(rel)
            elif stat.S_ISREG(st.st_mode):
                files.append((rel, st))
        pending.extend(reversed(subdirs))
    files.sort(key=lambda row: (os.path.dirname(row[0]), os.path.basename(row[0])))
    return files, folders


def outside_root(path: str | os.PathLike, root: Path) -> str:
    """The sentence for a link out of the data root."""
    return (
        f"{paths.display(path)} is a link to {paths.display(Path(path).resolve())}, outside the data root "
        f"{paths.display(root)}. Copy the file or folder itself into the folder."
    )


def pixel_limit_problem(width: int, height: int, limit: int = MAX_PIXELS) -> str | None:
    """Why an image of ``width`` x ``height`` is refused, or None within ``limit``."""
    if width * height <= limit:
        return None
    return f"{width:,} x {height:,} = {width * height:,} pixels, above the limit of {limit:,} pixels for one image"


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


def read_flowers102(data_root: Path, download: bool, size: int, squash: bool = False):
    classes, train_files, train_y, test_files, test_y, _ = flowers102_files(data_root, download)
    return (classes, decode_files(train_files, size, None, squash), train_y,
            decode_files(test_files, size, None, squash), test_y)


def flowers102_files(data_root: Path, download: bool) -> tuple:
    """Flowers-102's (classes, train files, train labels, test files, test labels, source), nothing decoded:
    the official split, train and val (10 per class each) for training, test (6,149) held out."""
    from torchvision.datasets import Flowers102

    # a loader that returns the path: torchvision lists the files and labels, nothing is opened
    splits = {s: Flowers102(str(data_root), split=s, download=download and s == "train", loader=str)
              for s in ("train", "val", "test")}

    def files(*names: str) -> tuple[list[str], torch.Tensor]:
        pairs = [splits[n][i] for n in names for i in range(len(splits[n]))]
        return [p for p, _ in pairs], torch.tensor([label for _, label in pairs], dtype=torch.int64)

    return (list(Flowers102.classes), *files("train", "val"), *files("test"), str(data_root / "flowers-102"))


def _parallel(fn: Callable[[int], None], items) -> None:
    # PIL releases the GIL while decoding and resizing, so threads scale
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(fn, items):
            pass


def decode_image(path: str | os.PathLike, size: int, root: Path | None, squash: bool = False) -> np.ndarray:
    """One image file as uint8 RGB ``(size, size, 3)``: the largest centred square, resized
    (its short side becomes ``size``, as the 2012 paper stored ImageNet), or with ``squash``
    the whole photo resized to a square, its aspect ratio lost.

    Transparent pixels are composited on white; 16-bit images are scaled to 8 bits.
    ``root``: refuse a file whose real path (links resolved) lies outside it.
    """
    from PIL import Image, ImageOps

    if root is not None and not paths.is_within(path, root):
        raise ValueError(f"The image {outside_root(path, root)}")
    shown = paths.display(path)
    try:
        # O_NONBLOCK: a FIFO named *.png would block a plain open() until a writer came
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise _Refused(f"{shown} is not a regular file (a pipe or a device?). Remove it from the folder.")
            with Image.open(f) as img:
                problem = pixel_limit_problem(img.width, img.height)  # from the header: nothing decoded yet
                if problem:
                    raise _Refused(f"The image {shown} is too large: {problem}. Resize it or remove it "
                                   "from the folder, and load again.")
                # JPEG only: decode at 1/2, 1/4 or 1/8 scale while staying >= size
                img.draft("RGB", (size, size))
                img = ImageOps.exif_transpose(img)
                img = _to_rgb(img)
                if squash:
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                else:
                    img = ImageOps.fit(img, (size, size), Image.Resampling.BILINEAR)
                return np.array(img, dtype=np.uint8)  # writable: torch.from_numpy warns on read-only
    except _Refused:
        raise
    except Image.DecompressionBombError as e:
        raise ValueError(
            f"The image {shown} is too large ({e}), above the limit of {MAX_PIXELS:,} pixels for one image. "
            "Resize it or remove it from the folder, and load again."
        ) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(
            f"Could not read the image file {shown}: {paths.display(str(e))}. Delete or replace that file "
            "and load again."
        ) from e


class _Refused(ValueError):
    """A file refused by a check of ours, not by Pillow."""


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


def _folder_samples(path: Path, data_root: Path, *, role: str) -> tuple[list[str], list[str], list[int]]:
    """(class names, image paths, labels) of ``path``'s class subfolders, as torchvision's
    ImageFolder would list them, with the walk's bounds; class names made displayable."""
    files, folders = walk(path, data_root)
    classes = sorted(f for f in folders if os.sep not in f)
    shown = paths.display(path)
    if not classes:
        loose = sum(1 for rel, _ in files if os.sep not in rel and _is_image_name(rel))
        found = f" It holds {loose} images directly; move them into class subfolders." if loose else ""
        raise ValueError(
            f"The image folder {shown} has no class subfolders: put each class's images in its own "
            f"subfolder, e.g. {paths.display(path / 'cats')} and {paths.display(path / 'dogs')}.{found}"
        )
    index = {c: i for i, c in enumerate(classes)}
    samples = [(os.path.join(path, rel), index[rel.split(os.sep, 1)[0]])
               for rel, _ in files if os.sep in rel and _is_image_name(os.path.basename(rel))]
    samples.sort(key=lambda s: s[1])  # stable: each class's files stay in walk order
    names = [paths.display(c) for c in classes]
    if len(samples) > MAX_FOLDER_IMAGES:
        raise ValueError(
            f"The image folder {shown} holds {len(samples):,} images, more than the {MAX_FOLDER_IMAGES:,} "
            "one dataset may have here. Choose a smaller folder or a subset of the classes."
        )
    if not samples:
        raise ValueError(
            f"No images found in {shown} (its class subfolders: {', '.join(names)}). "
            f"Images need one of these extensions: {', '.join(IMAGE_EXTENSIONS)}."
        )
    counts = np.bincount([t for _, t in samples], minlength=len(classes))
    if role == "train":
        empty = [classes[i] for i in np.flatnonzero(counts == 0)]
        if empty:
            raise ValueError(
                f"These class folders in {shown} have no images: "
                + ", ".join(paths.display(path / c) for c in empty)
                + ". Add images or remove the folders."
            )
        if len(classes) < 2:
            raise ValueError(
                f"The image folder {shown} has only one class ({names[0]!r}): a classifier needs at "
                "least two class subfolders with images."
            )
    return names, [p for p, _ in samples], [t for _, t in samples]


def decode_files(files: list[str], size: int, data_root: Path | None, squash: bool) -> torch.Tensor:
    """uint8 ``(N, 3, size, size)``: each file through :func:`decode_image`, on threads."""
    x = torch.empty((len(files), 3, size, size), dtype=torch.uint8)

    def one(i: int) -> None:
        x[i] = torch.from_numpy(decode_image(files[i], size, data_root, squash)).permute(2, 0, 1)

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


def read_folder(path: Path, data_root: Path, size: int, squash: bool = False) -> tuple:
    """An image folder's (classes, train_x, train_y, test_x, test_y, source) (see :func:`folder_files`)."""
    classes, train_files, train_y, test_files, test_y, source = folder_files(path, data_root)
    return (classes, decode_files(train_files, size, data_root, squash), train_y,
            decode_files(test_files, size, data_root, squash), test_y, source)


def folder_files(path: Path, data_root: Path) -> tuple:
    """An image folder's (classes, train files, train labels, test files, test labels, source), nothing decoded.

    ``train/`` and ``test/`` (or ``val/``) subfolders are the splits; otherwise
    FOLDER_TEST_FRACTION of each class is held out, seeded.
    """
    train_dir = path / "train"
    test_dir = next((path / t for t in ("test", "val") if (path / t).is_dir()), None)
    if train_dir.is_dir() and test_dir is not None:
        classes, train_files, train_labels = _folder_samples(train_dir, data_root, role="train")
        test_classes, test_files, test_labels = _folder_samples(test_dir, data_root, role="test")
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise ValueError(
                f"{paths.display(test_dir)} has class folders that {paths.display(train_dir)} lacks: "
                f"{', '.join(unknown)}. "
                "The test classes must be a subset of the training classes."
            )
        remap = [classes.index(c) for c in test_classes]
        test_labels = [remap[t] for t in test_labels]
        return (
            classes, train_files, torch.tensor(train_labels, dtype=torch.int64),
            test_files, torch.tensor(test_labels, dtype=torch.int64),
            f"{paths.display(path)} (train/ and {test_dir.name}/)",
        )

    split_dir = train_dir if train_dir.is_dir() else path
    classes, files, labels = _folder_samples(split_dir, data_root, role="train")
    labels_np = np.asarray(labels)
    train_idx, test_idx = _split_per_class(labels_np, len(classes))
    if len(test_idx) == 0:
        raise ValueError(
            f"The image folder {paths.display(split_dir)} has one image per class, so no image is left to "
            "test on: each class needs at least 2 images (one to train on, one to test on), and 10 or more "
            "give a test accuracy worth reading. Add images, or add a test/ folder beside train/."
        )
    y = torch.from_numpy(labels_np.astype(np.int64))
    return (
        classes, [files[i] for i in train_idx], y[train_idx], [files[i] for i in test_idx], y[test_idx],
        f"{paths.display(split_dir)} ({round(FOLDER_TEST_FRACTION * 100)}% of each class held out, seed {FOLDER_SPLIT_SEED})",
    )
