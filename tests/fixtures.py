"""Tiny datasets written in torchvision's own on-disk formats, and the tiniest real run.

Each writer returns the arrays it wrote, so a test can compare what a loader
read with what is on disk. Images are small and few: every writer runs in
milliseconds.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

MNIST_FILES = {
    "train-images-idx3-ubyte": ("train", "images"),
    "train-labels-idx1-ubyte": ("train", "labels"),
    "t10k-images-idx3-ubyte": ("test", "images"),
    "t10k-labels-idx1-ubyte": ("test", "labels"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array in the idx format (big-endian header: 0, 0, type 0x08, ndim; then dims)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def mnist_arrays(n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    """Random 28x28 images with labels cycling through 0..9. Test images are brighter
    than train images, so statistics taken from the wrong split are caught."""
    rng = np.random.default_rng(seed)
    return {
        ("train", "images"): rng.integers(0, 128, (n_train, 28, 28), dtype=np.uint8),
        ("train", "labels"): (np.arange(n_train) % 10).astype(np.uint8),
        ("test", "images"): rng.integers(128, 256, (n_test, 28, 28), dtype=np.uint8),
        ("test", "labels"): (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_mnist(root: Path, name: str = "MNIST", *, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    """Write ``<root>/<name>/raw/`` with the four uncompressed idx files (name: MNIST or FashionMNIST)."""
    arrays = mnist_arrays(n_train, n_test, seed)
    raw = Path(root) / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for fname, key in MNIST_FILES.items():
        (raw / fname).write_bytes(idx_bytes(arrays[key]))
    return arrays


def write_mnist_gz(folder: Path, *, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    """Write the four ``*.gz`` idx files into ``folder``, as Debian's dataset-fashion-mnist does."""
    arrays = mnist_arrays(n_train, n_test, seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for fname, key in MNIST_FILES.items():
        with gzip.open(folder / f"{fname}.gz", "wb") as f:
            f.write(idx_bytes(arrays[key]))
    return arrays


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root: Path, *, per_batch: int = 8, n_test: int = 10, seed: int = 0) -> dict:
    """Write ``<root>/cifar-10-batches-py/`` (data_batch_1..5, test_batch, batches.meta).

    Returns {"train_x": (N, 3, 32, 32), "train_y", "test_x", "test_y"} as numpy arrays.
    torchvision md5-checks every file: patch ``torchvision.datasets.cifar.check_integrity``.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(fname: str, n: int, offset: int, high: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.integers(0, high, (n, 3, 32, 32), dtype=np.uint8)
        y = (np.arange(n) + offset) % 10
        entry = {"batch_label": fname, "data": x.reshape(n, 3072), "labels": y.tolist()}
        with open(folder / fname, "wb") as f:
            pickle.dump(entry, f)
        return x, y

    train = [batch(f"data_batch_{i}", per_batch, i, 200) for i in range(1, 6)]
    test_x, test_y = batch("test_batch", n_test, 0, 256)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR10_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return {
        "train_x": np.concatenate([x for x, _ in train]),
        "train_y": np.concatenate([y for _, y in train]),
        "test_x": test_x,
        "test_y": test_y,
    }


FLOWER_COLOURS = [(220, 30, 30), (30, 200, 40), (40, 60, 220)]


def write_flowers102(root: Path, *, labels=(1, 2, 102), per_split: dict | None = None, size=(48, 40)) -> dict:
    """Write ``<root>/flowers-102/`` (jpg/image_XXXXX.jpg, imagelabels.mat, setid.mat).

    ``labels``: the 1-based Flowers-102 labels used; each image is a solid colour
    from FLOWER_COLOURS by label position, so a decoded image can be checked.
    Returns {"train": [(id, label0)], "val": [...], "test": [...]} with 0-based labels.
    torchvision md5-checks the .mat files: patch ``torchvision.datasets.flowers102.check_integrity``.
    """
    from PIL import Image
    from scipy.io import savemat

    per_split = per_split or {"trnid": 2, "valid": 2, "tstid": 3}
    folder = Path(root) / "flowers-102"
    (folder / "jpg").mkdir(parents=True, exist_ok=True)
    all_labels, split_ids, image_id = [], {}, 0
    result = {}
    for key, split in zip(("trnid", "valid", "tstid"), ("train", "val", "test")):
        ids = []
        for i in range(per_split[key] * len(labels)):
            image_id += 1
            pos = i % len(labels)
            all_labels.append(labels[pos])
            ids.append(image_id)
            Image.new("RGB", size, FLOWER_COLOURS[pos % len(FLOWER_COLOURS)]).save(
                folder / "jpg" / f"image_{image_id:05d}.jpg", quality=95
            )
        split_ids[key] = np.array(ids, dtype=np.uint16)
        result[split] = [(i, all_labels[i - 1] - 1) for i in ids]
    savemat(folder / "imagelabels.mat", {"labels": np.array([all_labels], dtype=np.uint8)})
    savemat(folder / "setid.mat", {k: v[None, :] for k, v in split_ids.items()})
    return result


def save_png(path: Path, mode: str, value, size=(12, 10)) -> Path:
    """A solid PNG in one PIL mode: "RGB" (r, g, b), "RGBA" (r, g, b, a), "L" v, "P" (r, g, b)
    through a palette, "P-transparent" a palette image whose only colour is transparent,
    "I;16" a 16-bit grayscale value 0..65535."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        image = Image.fromarray(np.full(size[::-1], value, dtype=np.uint16))
        assert image.mode == "I;16"
    elif mode == "P":
        image = Image.new("RGB", size, tuple(value)).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    elif mode == "P-transparent":
        image = Image.new("P", size, 0)
        image.putpalette([*value, 0, 0, 0])
        image.info["transparency"] = 0
    else:
        image = Image.new(mode, size, value if mode == "L" else tuple(value))
    image.save(path)
    return path


def write_image_folder(folder: Path, classes: dict[str, int], *, mode="RGB", value=(200, 100, 50)) -> dict:
    """``folder/<class>/<class>_<i>.png``: ``classes`` maps class name to image count."""
    folder = Path(folder)
    files = {}
    for name, count in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        files[name] = [save_png(folder / name / f"{name}_{i:03d}.png", mode, value) for i in range(count)]
    return files


def tiny_config(**changes):
    """The smallest real run: the mnist net at its 12x12 minimum on digits, 20 steps per epoch."""
    from alexnet_core.config import TrainConfig

    values = dict(variant="mnist", dataset="digits", input_size=12, epochs=1, batch_size=64,
                  optimizer="adamw", lr=3e-3, threads=1, seed=0)
    values.update(changes)
    return TrainConfig(**values)
