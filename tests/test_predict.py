"""alexnet_core.predict: tables, filters, tiles, and decoding uploaded images."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from alexnet_core import predict, variants

CLASSES = ["cat", "dog", "bird"]


@pytest.fixture
def preds() -> pd.DataFrame:
    # index label pred: 4 right, 4 wrong (two of them cat -> dog).
    rows = [
        (0, 0, 0, 0.9, 0.9, 0.1),
        (1, 0, 1, 0.8, 0.1, 2.3),
        (2, 0, 1, 0.6, 0.3, 1.2),
        (3, 1, 1, 0.7, 0.7, 0.4),
        (4, 1, 2, 0.5, 0.2, 1.6),
        (5, 2, 2, 0.99, 0.99, 0.01),
        (6, 2, 0, 0.4, 0.35, 1.05),
        (7, 2, 2, 0.6, 0.6, 0.5),
    ]
    return pd.DataFrame(rows, columns=["index", "label", "pred", "p_pred", "p_true", "loss"])


def png_bytes(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


# ---------------------------------------------------------------- tables


def test_confusion_matrix_rows_true_columns_predicted(preds):
    matrix = predict.confusion_matrix(preds, 3)
    assert matrix.tolist() == [[1, 2, 0], [0, 1, 1], [1, 0, 2]]
    assert matrix.sum() == len(preds)


def test_per_class_accuracy(preds):
    acc = predict.per_class_accuracy(preds, CLASSES)
    assert list(acc.columns) == ["class", "correct", "total", "accuracy"]
    assert acc["total"].tolist() == [3, 2, 3]
    assert acc["correct"].tolist() == [1, 1, 2]
    assert acc["accuracy"].tolist() == pytest.approx([1 / 3, 1 / 2, 2 / 3])


def test_per_class_accuracy_absent_class_is_nan(preds):
    acc = predict.per_class_accuracy(preds, CLASSES + ["fish"])
    assert np.isnan(acc["accuracy"].iloc[3]) and acc["total"].iloc[3] == 0


def test_most_confused_sorted_and_off_diagonal(preds):
    pairs = predict.most_confused(preds, CLASSES, k=10)
    assert pairs.iloc[0][["true", "predicted", "count"]].tolist() == ["cat", "dog", 2]
    assert (pairs["true"] != pairs["predicted"]).all()
    assert pairs["count"].sum() == int((preds["label"] != preds["pred"]).sum())
    assert len(predict.most_confused(preds, CLASSES, k=1)) == 1


def test_filter_misclassified_sorted_by_loss(preds):
    out = predict.filter_predictions(preds, misclassified=True, sort_by_loss=True)
    assert (out["label"] != out["pred"]).all()
    assert out["loss"].is_monotonic_decreasing
    assert out["index"].tolist() == [1, 4, 2, 6]


def test_filter_confusion_cell(preds):
    out = predict.filter_predictions(preds, true_class=0, pred_class=1)
    assert out["index"].tolist() == [1, 2]
    assert predict.filter_predictions(preds, pred_class=2)["index"].tolist() == [4, 5, 7]


def test_filter_keeps_everything_by_default(preds):
    out = predict.filter_predictions(preds)
    assert out["index"].tolist() == list(range(8))


def test_accuracy(preds):
    assert predict.accuracy(preds) == pytest.approx(0.5)
    assert np.isnan(predict.accuracy(preds.iloc[:0]))


# ---------------------------------------------------------------- images for the page


def test_tile_is_upscaled_with_nearest_neighbour_and_framed():
    x = torch.arange(64, dtype=torch.uint8).reshape(1, 8, 8) * 4
    tile = predict.tile_image(x, True, target=96, border=5)
    assert tile.shape == (8 * 12 + 10, 8 * 12 + 10, 3) and tile.dtype == np.uint8
    assert tuple(tile[0, 0]) == predict.CORRECT_RGB
    inner = tile[5:-5, 5:-5, 0]
    assert (inner[:12, :12] == 0).all() and (inner[:12, 12:24] == 4).all()  # crisp blocks
    assert tuple(predict.tile_image(x, False)[0, 0]) == predict.WRONG_RGB


def test_tile_keeps_colour_images():
    x = torch.zeros(3, 32, 32, dtype=torch.uint8)
    x[0] = 255
    tile = predict.tile_image(x, None, target=64, border=2)
    assert tile.shape == (68, 68, 3)
    assert tuple(tile[10, 10]) == (255, 0, 0)


def test_channel_grid_scales_each_channel_or_the_whole_map():
    ramp = torch.linspace(0, 1, 9).reshape(3, 3)
    fmap = torch.stack([0.1 * ramp, ramp])  # a weak channel and a strong one
    own = predict.channel_grid(fmap, cell=3, pad=0, columns=2)
    shared = predict.channel_grid(fmap, cell=3, pad=0, columns=2, shared_scale=True)
    assert own[:, :3].max() == own[:, 3:].max() == 255  # each to its own range: the weak one shows
    assert shared[:, 3:].max() == 255 and shared[:, :3].max() == 26  # one range: the weak one stays dark


def test_channel_grid_one_cell_per_channel():
    fmap = torch.randn(10, 5, 5)
    grid = predict.channel_grid(fmap, cell=10, pad=2)
    # 10 channels -> 4 columns x 3 rows of 10x10 cells
    assert grid.shape == (3 * 12 + 2, 4 * 12 + 2)
    assert grid.dtype == np.uint8
    assert predict.channel_grid(torch.randn(100, 3, 3), max_channels=16, cell=3, pad=1).shape == (4 * 4 + 1, 4 * 4 + 1)


# ---------------------------------------------------------------- uploads


def test_load_image_rgb_png():
    img = predict.load_image(png_bytes(Image.new("RGB", (20, 10), (10, 20, 30))))
    assert img.mode == "RGB" and img.size == (20, 10)


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (None, "damaged"),  # truncated PNG, filled in below
    ],
)
def test_load_image_rejects_bad_files(data, words):
    if data is None:
        full = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
        data = full[: len(full) // 2]
    with pytest.raises(predict.ImageError, match=words):
        predict.load_image(data)


def test_load_image_too_large_says_so():
    data = png_bytes(Image.new("L", (100, 100)))
    with pytest.raises(predict.ImageError, match="too large"):
        predict.load_image(data, max_pixels=5000)


@pytest.mark.parametrize(
    "make, mode",
    [
        (lambda: Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)), "L"),  # 16-bit grayscale
        (lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "RGB"),
        (lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 0)), "RGB"),
        (lambda: Image.new("LA", (8, 8), (0, 255)), "L"),
        (lambda: Image.new("1", (8, 8), 1), "L"),
        (lambda: Image.new("RGB", (8, 8), (0, 0, 255)).convert("P"), "RGB"),
        (lambda: Image.new("RGB", (1, 1), (5, 5, 5)), "RGB"),
    ],
)
def test_load_image_any_mode(make, mode):
    img = make()
    fmt = "JPEG" if img.mode == "CMYK" else "PNG"
    out = predict.load_image(png_bytes(img, fmt))
    assert out.mode == mode and out.size == img.size


def test_16_bit_png_is_scaled_not_clipped():
    img = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))
    out = predict.load_image(png_bytes(img))
    assert abs(int(np.asarray(out)[0, 0]) - 128) <= 1


def test_transparent_background_becomes_white():
    out = predict.load_image(png_bytes(Image.new("RGBA", (4, 4), (255, 0, 0, 0))))
    assert tuple(np.asarray(out)[0, 0]) == (255, 255, 255)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("L", (6, 6), 0), Image.new("L", (6, 6), 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = predict.load_image(buf.getvalue())
    assert out.size == (6, 6) and int(np.asarray(out.convert("L")).max()) == 0


def test_suggest_invert_for_dark_ink_on_white_paper():
    paper = Image.new("L", (28, 28), 255)
    assert predict.suggest_invert(paper, (0.2,))
    assert not predict.suggest_invert(paper, (0.5, 0.5, 0.5))  # natural photos: never
    assert not predict.suggest_invert(Image.new("L", (28, 28), 0), (0.2,))


def test_image_to_uint8_matches_dataset_layout():
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    x = predict.image_to_uint8(img, channels=1, image_size=8, invert=True)
    assert x.shape == (1, 1, 8, 8) and x.dtype == torch.uint8
    assert int(x.max()) == 0  # white inverted to black


def test_classify_image_top_k_sums_below_one():
    torch.manual_seed(0)
    model = variants.get_model("mnist", in_channels=1, num_classes=3, input_size=16)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (30, 30, 3), dtype=np.uint8))
    was_training = model.training
    top = predict.classify_image(
        model, img, classes=CLASSES, channels=1, image_size=8, input_size=16, mean=(0.3,), std=(0.3,), k=5
    )
    assert list(top.columns) == ["class", "probability"]
    assert len(top) == 3  # k is capped at the number of classes
    assert sorted(top["class"]) == sorted(CLASSES)
    assert top["probability"].is_monotonic_decreasing
    assert top["probability"].sum() == pytest.approx(1.0, abs=1e-5)
    assert model.training == was_training


def test_prepare_image_adapts_channels_and_size():
    img = Image.new("L", (10, 10), 128)
    x = predict.prepare_image(
        img, channels=1, image_size=8, in_channels=3, input_size=32, mean=(0.5,), std=(0.25,)
    )
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32
    assert x.abs().max() < 0.1  # 128/255 ~ the mean


def test_the_test_fingerprint_changes_with_the_test_split_only():
    import torch

    from alexnet_core.datasets import Dataset
    from alexnet_core.predict import test_fingerprint

    def dataset(test_y, classes=("a", "b"), train_y=(0, 1)):
        n = len(test_y)
        return Dataset(name="folder", classes=list(classes), train_x=torch.zeros(len(train_y), 1, 4, 4, dtype=torch.uint8),
                       train_y=torch.tensor(train_y), test_x=torch.arange(n * 16, dtype=torch.uint8).reshape(n, 1, 4, 4),
                       test_y=torch.tensor(test_y), mean=(0.5,), std=(0.2,), source="test")

    base = test_fingerprint(dataset([0, 1, 1]))
    assert base == test_fingerprint(dataset([0, 1, 1], train_y=(1, 1)))  # training images do not count
    assert base != test_fingerprint(dataset([0, 1, 0]))  # a label
    assert base != test_fingerprint(dataset([0, 1, 1, 0]))  # an image more
    assert base != test_fingerprint(dataset([0, 1, 1], classes=("a", "c")))  # a class renamed
