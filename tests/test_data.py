"""alexnet_core.datasets: every loader on tiny files in torchvision's own formats; batches.prepare_batch."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from alexnet_core import batches, datasets, paths
from fixtures import (
    CIFAR10_CLASSES,
    FLOWER_COLOURS,
    save_png,
    write_cifar10,
    write_flowers102,
    write_image_folder,
    write_mnist,
    write_mnist_gz,
)

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


def stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    xf = x.double() / 255
    return xf.mean(dim=(0, 2, 3)).tolist(), xf.std(dim=(0, 2, 3), unbiased=False).tolist()


def check_dataset(ds: datasets.Dataset, *, channels: int, size: int, num_classes: int) -> None:
    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.shape[1:] == (channels, size, size) and x.shape[0] == y.shape[0]
        assert x.is_contiguous()
        assert 0 <= int(y.min()) and int(y.max()) < num_classes
    assert (ds.channels, ds.image_size, ds.num_classes) == (channels, size, num_classes)
    mean, std = stats(ds.train_x)
    assert ds.mean == pytest.approx(mean, abs=1e-9)
    assert ds.std == pytest.approx(std, abs=1e-9)


def assert_same(a: datasets.Dataset, b: datasets.Dataset) -> None:
    assert a.classes == b.classes and a.mean == b.mean and a.std == b.std
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


# ---------------------------------------------------------------- registry


def test_registry_names_and_unknown_name(lab_data_root):
    assert datasets.list_datasets() == ["digits", "mnist", "fashion-mnist", "cifar10", "flowers102", "folder"]
    assert datasets.get_info("cifar10").channels == 3 and datasets.get_info("folder").num_classes is None
    for call in (datasets.get_info, datasets.load_dataset, datasets.availability):
        names = "digits, mnist, fashion-mnist, cifar10, flowers102, folder"
        with pytest.raises(ValueError, match=f"choose one of {names}"):
            call("imagenet")


def test_digits_is_offline_split_and_cached(lab_data_root):
    assert datasets.availability("digits") == (True, "bundled with scikit-learn")
    ds = datasets.load_dataset("digits")
    check_dataset(ds, channels=1, size=8, num_classes=10)
    assert (len(ds.train_y), len(ds.test_y)) == (1437, 360)
    assert ds.classes == [str(i) for i in range(10)]
    assert int(ds.train_x.max()) == 255  # 16 -> 255
    # stratified: every class about 20% in test
    assert torch.bincount(ds.test_y, minlength=10).min() >= 35
    again = datasets.load_dataset("digits")
    assert again.source.startswith("cache: ") and not ds.source.startswith("cache: ")
    assert_same(ds, again)
    assert_same(ds, datasets.load_dataset("digits", cache=False))


# -------------------------------------------------- torchvision's formats


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_like_from_idx_files(lab_data_root, name, folder):
    arrays = write_mnist(lab_data_root, folder, n_train=60, n_test=20)
    ok, where = datasets.availability(name)
    assert ok and where == str(lab_data_root / folder / "raw")

    ds = datasets.load_dataset(name, download=False)
    check_dataset(ds, channels=1, size=28, num_classes=10)
    assert torch.equal(ds.train_x[:, 0], torch.from_numpy(arrays["train", "images"]))
    assert torch.equal(ds.test_y, torch.from_numpy(arrays["test", "labels"]).long())
    assert ds.mean[0] < 0.5  # train images are dark, test images bright: stats come from train
    assert len(ds.classes) == 10
    if name == "fashion-mnist":
        assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"

    again = datasets.load_dataset(name, download=False)
    assert again.source.startswith("cache: ")
    assert_same(ds, again)
    # a changed source file misses the cache
    write_mnist(lab_data_root, folder, n_train=30, n_test=20, seed=1)
    assert len(datasets.load_dataset(name, download=False).train_y) == 30


def test_fashion_mnist_imported_from_system_archive(lab_data_root, tmp_path, monkeypatch):
    archive = tmp_path / "usr-share-datasets-fashion-mnist"
    arrays = write_mnist_gz(archive, n_train=40, n_test=10)
    monkeypatch.setitem(paths.SYSTEM_ARCHIVES, "fashion-mnist", [tmp_path / "absent", archive])

    ok, where = datasets.availability("fashion-mnist")
    assert ok and str(archive) in where
    ds = datasets.load_dataset("fashion-mnist", download=False)
    check_dataset(ds, channels=1, size=28, num_classes=10)
    assert torch.equal(ds.train_x[:, 0], torch.from_numpy(arrays["train", "images"]))
    assert str(archive) in ds.source
    raw = lab_data_root / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    )
    assert datasets.availability("fashion-mnist") == (True, str(raw))
    assert datasets.load_dataset("fashion-mnist", download=False).source.startswith("cache: ")


def test_cifar10_from_pickled_batches(lab_data_root, no_md5_check):
    written = write_cifar10(lab_data_root, per_batch=8, n_test=10)
    ds = datasets.load_dataset("cifar10", download=False)
    check_dataset(ds, channels=3, size=32, num_classes=10)
    assert ds.classes == CIFAR10_CLASSES
    assert torch.equal(ds.train_x, torch.from_numpy(written["train_x"]))  # channel order survives HWC -> CHW
    assert torch.equal(ds.test_y, torch.from_numpy(written["test_y"]))
    assert_same(ds, datasets.load_dataset("cifar10", download=False))


def test_flowers102_official_splits_at_fixed_size(lab_data_root, no_md5_check):
    splits = write_flowers102(lab_data_root, labels=(1, 2, 102))
    ds = datasets.load_dataset("flowers102", download=False)
    check_dataset(ds, channels=3, size=datasets.FLOWERS_IMAGE_SIZE, num_classes=102)
    assert ds.classes[0] == "pink primrose" and len(ds.classes) == 102
    assert ds.train_y.tolist() == [label for _, label in splits["train"] + splits["val"]]
    assert ds.test_y.tolist() == [label for _, label in splits["test"]]
    assert set(ds.train_y.tolist()) == {0, 1, 101}
    for x, y in zip(ds.test_x, ds.test_y):
        colour = FLOWER_COLOURS[[0, 1, 101].index(int(y))]
        assert (x.float().mean(dim=(1, 2)) - torch.tensor(colour)).abs().max() < 6  # JPEG
    assert_same(ds, datasets.load_dataset("flowers102", download=False))
    small = datasets.load_dataset("flowers102", download=False, image_size=16)
    assert small.image_size == 16
    with pytest.raises(ValueError, match="native 28x28"):
        datasets.load_dataset("mnist", image_size=64)


@pytest.mark.parametrize("name, where", [
    ("mnist", "MNIST/raw"), ("fashion-mnist", "FashionMNIST/raw"),
    ("cifar10", "cifar-10-batches-py"), ("flowers102", "flowers-102"),
])
def test_missing_files_say_where_they_go(lab_data_root, name, where):
    ok, how = datasets.availability(name)
    assert not ok and str(lab_data_root / where) in how
    with pytest.raises(datasets.DatasetUnavailable) as err:
        datasets.load_dataset(name, download=False)
    message = str(err.value)
    assert isinstance(err.value, RuntimeError)
    assert str(lab_data_root / where) in message and "ALEXNET_LAB_DATA" in message
    if name == "fashion-mnist":
        assert "apt-get install dataset-fashion-mnist" in message


@pytest.mark.skipif(not (REAL_FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_LAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ALEXNET_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(paths.SYSTEM_ARCHIVES, "fashion-mnist", [REAL_FASHION])
    ds = datasets.load_dataset("fashion-mnist", download=False)
    assert (len(ds.train_y), len(ds.test_y), ds.num_classes) == (60_000, 10_000, 10)
    assert ds.train_x.shape == (60_000, 1, 28, 28)
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.mean[0] == pytest.approx(0.2860, abs=1e-4) and ds.std[0] == pytest.approx(0.3530, abs=1e-4)
    start = time.perf_counter()
    again = datasets.load_dataset("fashion-mnist", download=False)
    seconds = time.perf_counter() - start
    assert again.source.startswith("cache: ")
    assert seconds < 1.0, f"second load took {seconds:.2f} s"
    assert_same(ds, again)


# ----------------------------------------------------------- image folders


def test_folder_with_train_and_test_and_every_png_mode(lab_data_root):
    top = lab_data_root / "pets"
    save_png(top / "train" / "cat" / "rgb.png", "RGB", (200, 100, 50))
    save_png(top / "train" / "cat" / "rgba.png", "RGBA", (0, 0, 0, 0))  # fully transparent: white
    save_png(top / "train" / "cat" / "palette.png", "P", (10, 20, 30))
    save_png(top / "train" / "dog" / "grey.png", "L", 77)
    save_png(top / "train" / "dog" / "deep.png", "I;16", 65535)
    save_png(top / "train" / "dog" / "half.png", "I;16", 32896)  # 128 * 257
    save_png(top / "train" / "dog" / "clear.png", "P-transparent", (5, 5, 5))
    (top / "train" / "dog" / "notes.txt").write_text("not an image")
    save_png(top / "train" / ".ipynb_checkpoints" / "x.png", "RGB", (1, 2, 3))
    save_png(top / "test" / "dog" / "t.png", "RGB", (9, 9, 9))  # test lacks "cat": allowed

    ds = datasets.load_dataset("folder", folder="pets", image_size=16)
    check_dataset(ds, channels=3, size=16, num_classes=2)
    assert ds.classes == ["cat", "dog"]
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 1] and ds.test_y.tolist() == [1]
    # ImageFolder sorts files: palette, rgb, rgba | clear, deep, grey, half
    pixels = [tuple(x[:, 8, 8].tolist()) for x in ds.train_x]
    assert pixels == [(10, 20, 30), (200, 100, 50), (255, 255, 255),
                      (255, 255, 255), (255, 255, 255), (77, 77, 77), (128, 128, 128)]
    assert datasets.availability("folder", folder="pets") == (True, str(top))
    again = datasets.load_dataset("folder", folder=top, image_size=16)
    assert again.source.startswith("cache: ")
    assert_same(ds, again)


def test_folder_split_is_stratified_deterministic_and_cache_follows_files(lab_data_root):
    write_image_folder(lab_data_root / "shapes", {"a": 10, "b": 5, "c": 2})
    ds = datasets.load_dataset("folder", folder="shapes", image_size=8)
    assert ds.image_size == 8 and datasets.load_dataset("folder", folder="shapes").image_size == datasets.FOLDER_IMAGE_SIZE
    assert torch.bincount(ds.test_y, minlength=3).tolist() == [2, 1, 1]
    assert torch.bincount(ds.train_y, minlength=3).tolist() == [8, 4, 1]
    fresh = datasets.load_dataset("folder", folder="shapes", image_size=8, cache=False)
    assert_same(ds, fresh)
    assert datasets.load_dataset("folder", folder="shapes", image_size=8).source.startswith("cache: ")
    save_png(lab_data_root / "shapes" / "c" / "new.png", "RGB", (0, 0, 0))
    grown = datasets.load_dataset("folder", folder="shapes", image_size=8)
    assert not grown.source.startswith("cache: ") and len(grown.train_y) + len(grown.test_y) == 18


def test_folder_errors_name_the_problem(lab_data_root, tmp_path):
    with pytest.raises(datasets.DatasetUnavailable, match="does not exist"):
        datasets.load_dataset("folder", folder="nowhere")
    with pytest.raises(ValueError, match="needs folder="):
        datasets.load_dataset("folder")

    (lab_data_root / "flat").mkdir()
    save_png(lab_data_root / "flat" / "a.png", "RGB", (1, 1, 1))
    with pytest.raises(ValueError, match="no class subfolders.*1 images directly"):
        datasets.load_dataset("folder", folder="flat")

    (lab_data_root / "empty" / "cats").mkdir(parents=True)
    (lab_data_root / "empty" / "cats" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="No images found in .*empty"):
        datasets.load_dataset("folder", folder="empty")

    write_image_folder(lab_data_root / "one", {"cats": 3})
    with pytest.raises(ValueError, match="only one class \\('cats'\\)"):
        datasets.load_dataset("folder", folder="one")

    write_image_folder(lab_data_root / "hole", {"cats": 3})
    (lab_data_root / "hole" / "dogs").mkdir()
    with pytest.raises(ValueError, match="have no images: .*hole/dogs"):
        datasets.load_dataset("folder", folder="hole")

    files = write_image_folder(lab_data_root / "broken", {"cats": 2, "dogs": 2})
    bad = files["dogs"][1]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ValueError, match=f"Could not read the image file {bad}"):
        datasets.load_dataset("folder", folder="broken")

    outside = tmp_path / "outside"
    write_image_folder(outside, {"cats": 2, "dogs": 2})
    (lab_data_root / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="is a link to .*outside the data root"):
        datasets.load_dataset("folder", folder="link")
    with pytest.raises(ValueError, match="outside the data root"):
        datasets.load_dataset("folder", folder=outside)
    ok, how = datasets.availability("folder", folder="link")
    assert not ok and "outside the data root" in how

    # a link to an image outside the root, inside an otherwise good folder
    write_image_folder(lab_data_root / "sneaky", {"cats": 2, "dogs": 2})
    (lab_data_root / "sneaky" / "dogs" / "z.png").symlink_to(files["cats"][0].rename(outside / "cat.png"))
    with pytest.raises(ValueError, match="z.png is a link to .*outside the data root"):
        datasets.load_dataset("folder", folder="sneaky")


# ------------------------------------------------------------ prepare_batch


def batch(n=6, c=3, size=8, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("c, in_channels, size", [(1, 3, 16), (3, 1, 8), (3, 3, 12), (1, 1, 4), (3, 3, 8)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_prepare_batch_shapes(c, in_channels, size, channels_last):
    out = batches.prepare_batch(batch(c=c), in_channels=in_channels, size=size, mean=(0.5,) * c, std=(0.25,) * c,
                             device="cpu", channels_last=channels_last)
    assert out.shape == (6, in_channels, size, size) and out.dtype == torch.float32
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert out.is_contiguous(memory_format=fmt)


def test_prepare_batch_normalises_a_constant_image():
    x = torch.full((2, 3, 5, 5), 51, dtype=torch.uint8)  # 0.2 on the [0, 1] scale
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.25, 0.1)
    out = batches.prepare_batch(x, in_channels=3, size=9, mean=mean, std=std, device="cpu")
    expected = torch.tensor([(0.2 - m) / s for m, s in zip(mean, std)]).view(1, 3, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected)
    grey = batches.prepare_batch(x[:, :1], in_channels=3, size=9, mean=(0.1,), std=(0.5,), device="cpu")
    torch.testing.assert_close(grey, torch.full_like(grey, (0.2 - 0.1) / 0.5))
    luma = batches.prepare_batch(x, in_channels=1, size=5, mean=mean, std=std, device="cpu")
    w = batches.LUMA_WEIGHTS
    value = (0.2 - sum(a * b for a, b in zip(w, mean))) / sum(a * b for a, b in zip(w, std))
    torch.testing.assert_close(luma, torch.full_like(luma, value))


def test_prepare_batch_resize_matches_normalise_after_resize():
    x = batch(n=4, c=3, size=10)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.3, 0.25)
    out = batches.prepare_batch(x, in_channels=3, size=23, mean=mean, std=std, device="cpu")
    up = torch.nn.functional.interpolate(x.float() / 255, size=(23, 23), mode="bilinear", align_corners=False)
    ref = (up - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_flip_is_drawn_per_sample():
    one = torch.zeros((1, 1, 4, 4), dtype=torch.uint8)
    one[..., 0] = 255  # left column bright: asymmetric
    x = one.repeat(64, 1, 1, 1)
    out = batches.prepare_batch(x, in_channels=1, size=4, mean=(0.0,), std=(1.0,), device="cpu",
                             augment=batches.Augment(flip=True), generator=torch.Generator().manual_seed(0))
    left = out[:, 0, :, 0].mean(1) == 1
    right = out[:, 0, :, 3].mean(1) == 1
    assert bool((left ^ right).all())
    assert 10 < int(left.sum()) < 54  # both outcomes occur in one batch


def test_crop_and_rotation_are_per_sample_and_reproducible():
    x = batch(n=32, c=3, size=8).expand(32, 3, 8, 8).clone()
    x[:] = x[0]  # 32 identical images
    aug = batches.Augment(flip=True, crop_padding=2, rotation=15)
    args = dict(in_channels=3, size=8, mean=(0.5,) * 3, std=(0.2,) * 3, device="cpu", augment=aug)
    a = batches.prepare_batch(x, generator=torch.Generator().manual_seed(7), **args)
    b = batches.prepare_batch(x, generator=torch.Generator().manual_seed(7), **args)
    c = batches.prepare_batch(x, generator=torch.Generator().manual_seed(8), **args)
    assert torch.equal(a, b) and not torch.equal(a, c)
    distinct = {tuple(img.flatten().tolist()) for img in a}
    assert len(distinct) > 16


@pytest.mark.parametrize("flip", [False, True])
def test_crop_takes_a_window_of_the_zero_padded_image(flip):
    x = batch(n=20, c=1, size=6)
    out = batches.prepare_batch(x, in_channels=1, size=6, mean=(0.0,), std=(1 / 255,), device="cpu",
                             augment=batches.Augment(flip=flip, crop_padding=2),
                             generator=torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(x.float(), (2, 2, 2, 2))
    images = (padded, padded.flip(-1)) if flip else (padded,)
    matched = []  # per image: which of the (un)flipped padded images it is a window of
    for i in range(len(x)):
        matched.append({k for k, p in enumerate(images) for r in range(5) for c in range(5)
                        if torch.equal(out[i], p[i, :, r:r + 6, c:c + 6])})
    assert all(matched)
    if flip:
        assert {0} in matched and {1} in matched


def test_no_augmentation_is_identity():
    x = batch(n=5, c=3, size=8)
    args = dict(in_channels=3, size=8, mean=(0.3,) * 3, std=(0.2,) * 3, device="cpu")
    plain = batches.prepare_batch(x, **args)
    for aug in (None, batches.Augment(), batches.Augment(flip=False, crop_padding=0, rotation=0.0)):
        assert torch.equal(batches.prepare_batch(x, augment=aug, generator=torch.Generator().manual_seed(0), **args),
                           plain)


def test_prepare_batch_refuses_what_it_cannot_adapt():
    with pytest.raises(ValueError, match="uint8"):
        batches.prepare_batch(batch().float(), in_channels=3, size=8, mean=(0,) * 3, std=(1,) * 3, device="cpu")
    with pytest.raises(ValueError, match="one value per channel"):
        batches.prepare_batch(batch(), in_channels=3, size=8, mean=(0.5,), std=(1,), device="cpu")
    with pytest.raises(ValueError, match="Cannot adapt 3-channel"):
        batches.prepare_batch(batch(), in_channels=2, size=8, mean=(0,) * 3, std=(1,) * 3, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_prepare_batch_on_cuda_matches_cpu():
    x = batch(n=16, c=1, size=28)
    args = dict(in_channels=3, size=64, mean=(0.3,), std=(0.3,), augment=batches.Augment(True, 2, 10))
    cpu = batches.prepare_batch(x, device="cpu", generator=torch.Generator().manual_seed(1), **args)
    gpu = batches.prepare_batch(x, device="cuda", generator=torch.Generator().manual_seed(1), channels_last=True,
                             **args)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
