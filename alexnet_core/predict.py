"""Predictions: confusion matrix, per-class accuracy, filters, and one uploaded image.

A predictions table (``runs.read_predictions``) has one row per test image with
the columns ``index`` (position in the dataset's test split), ``label``,
``pred``, ``p_pred``, ``p_true`` and ``loss``. Everything here is plain numpy,
pandas, PIL and torch, so the pages, the CLI and the tests share it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from alexnet_core import imagefiles
from alexnet_core.batches import prepare_batch

# Okabe-Ito bluish green and vermillion: read as green/red by most people and
# still distinct for red-green colour blindness.
CORRECT_RGB = (0, 158, 115)
WRONG_RGB = (213, 94, 0)
UNKNOWN_RGB = (120, 120, 120)


class ImageError(ValueError):
    """An uploaded file that is not a usable image; the message says why."""


# --------------------------------------------------------------------------
# Tables


def _num_classes(preds: pd.DataFrame, num_classes: int | None) -> int:
    if num_classes is not None:
        return int(num_classes)
    if preds.empty:
        return 0
    return int(max(preds["label"].max(), preds["pred"].max())) + 1


def confusion_matrix(preds: pd.DataFrame, num_classes: int | None = None) -> np.ndarray:
    """Counts with true classes as rows and predicted classes as columns."""
    n = _num_classes(preds, num_classes)
    matrix = np.zeros((n, n), dtype=np.int64)
    if n and not preds.empty:
        np.add.at(matrix, (preds["label"].to_numpy(int), preds["pred"].to_numpy(int)), 1)
    return matrix


def accuracy(preds: pd.DataFrame) -> float:
    """Fraction of rows whose prediction equals the label (NaN for no rows)."""
    if preds.empty:
        return float("nan")
    return float((preds["label"] == preds["pred"]).mean())


def per_class_accuracy(preds: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """One row per class: ``class``, ``correct``, ``total``, ``accuracy`` (NaN when absent)."""
    matrix = confusion_matrix(preds, len(classes))
    total = matrix.sum(axis=1)
    correct = np.diag(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(total > 0, correct / np.maximum(total, 1), np.nan)
    return pd.DataFrame(
        {"class": list(classes), "correct": correct, "total": total, "accuracy": acc}
    )


def most_confused(preds: pd.DataFrame, classes: Sequence[str], k: int | None = 10) -> pd.DataFrame:
    """The off-diagonal cells with the most images, largest first.

    Columns: ``true``, ``predicted``, ``count`` (class names), plus
    ``true_index`` and ``pred_index`` for filtering. ``k=None`` keeps every
    non-empty cell.
    """
    matrix = confusion_matrix(preds, len(classes))
    rows = [
        (classes[t], classes[p], int(matrix[t, p]), t, p)
        for t in range(len(classes))
        for p in range(len(classes))
        if t != p and matrix[t, p] > 0
    ]
    rows.sort(key=lambda r: (-r[2], r[3], r[4]))
    if k is not None:
        rows = rows[:k]
    return pd.DataFrame(rows, columns=["true", "predicted", "count", "true_index", "pred_index"])


def filter_predictions(
    preds: pd.DataFrame,
    *,
    misclassified: bool = False,
    true_class: int | None = None,
    pred_class: int | None = None,
    sort_by_loss: bool = False,
) -> pd.DataFrame:
    """Rows matching every filter given; ``true_class`` and ``pred_class`` together pick a
    confusion-matrix cell. Sorted by loss (largest first) or by dataset index."""
    keep = pd.Series(True, index=preds.index)
    if misclassified:
        keep &= preds["label"] != preds["pred"]
    if true_class is not None:
        keep &= preds["label"] == int(true_class)
    if pred_class is not None:
        keep &= preds["pred"] == int(pred_class)
    out = preds[keep]
    if sort_by_loss:
        out = out.sort_values(["loss", "index"], ascending=[False, True], kind="stable")
    else:
        out = out.sort_values("index", kind="stable")
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------
# Tiles and feature-map grids (numpy images, ready for st.image)


def _to_hwc_uint8(x) -> np.ndarray:
    """(C, H, W) or (H, W) uint8 tensor/array -> (H, W, 3) uint8."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    arr = np.transpose(arr, (1, 2, 0))
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] != 3:
        arr = np.repeat(arr.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    return arr


def upscale_factor(height: int, width: int, target: int = 112) -> int:
    """Integer nearest-neighbour factor that brings the longer side near ``target``."""
    return max(1, round(target / max(height, width, 1)))


def tile_image(x, correct: bool | None, *, target: int = 112, border: int | None = None) -> np.ndarray:
    """One test image as an (H, W, 3) uint8 tile: upscaled with nearest neighbour (so an
    8x8 digit stays crisp on a projector) inside a green (correct) or red (wrong) frame."""
    img = _to_hwc_uint8(x)
    factor = upscale_factor(img.shape[0], img.shape[1], target)
    img = img.repeat(factor, axis=0).repeat(factor, axis=1)
    if border is None:
        border = max(4, max(img.shape[:2]) // 16)
    colour = UNKNOWN_RGB if correct is None else (CORRECT_RGB if correct else WRONG_RGB)
    framed = np.empty((img.shape[0] + 2 * border, img.shape[1] + 2 * border, 3), np.uint8)
    framed[:] = colour
    framed[border:-border, border:-border] = img
    return framed


def channel_grid(
    fmap, *, max_channels: int = 64, cell: int = 48, pad: int = 2, columns: int | None = None,
    shared_scale: bool = False,
) -> np.ndarray:
    """A feature map (C, H, W) as one grayscale grid image (uint8), one cell per channel.

    Each channel is scaled to its own min..max so weak channels stay visible, or,
    with ``shared_scale``, every channel to the whole map's (a difference map: a
    channel that did not change stays black). Cells are upscaled with nearest
    neighbour to about ``cell`` pixels.
    """
    t = fmap.detach().float().cpu() if isinstance(fmap, torch.Tensor) else torch.as_tensor(fmap).float()
    if t.ndim == 4:
        t = t[0]
    if t.ndim == 2:
        t = t[None]
    t = t[:max_channels]
    c, h, w = t.shape
    dims = (0, 1, 2) if shared_scale else (1, 2)
    lo = t.amin(dim=dims, keepdim=True)
    hi = t.amax(dim=dims, keepdim=True)
    t = ((t - lo) / (hi - lo).clamp_min(1e-8) * 255).round().to(torch.uint8).numpy()
    factor = upscale_factor(h, w, cell)
    t = t.repeat(factor, axis=1).repeat(factor, axis=2)
    ch, cw = t.shape[1:]
    cols = columns or math.ceil(math.sqrt(c))
    rows = math.ceil(c / cols)
    grid = np.full((rows * (ch + pad) + pad, cols * (cw + pad) + pad), 255, np.uint8)
    for i in range(c):
        r, q = divmod(i, cols)
        y, x = pad + r * (ch + pad), pad + q * (cw + pad)
        grid[y : y + ch, x : x + cw] = t[i]
    return grid


# --------------------------------------------------------------------------
# One uploaded image


def load_image(data: bytes, *, max_pixels: int | None = None) -> Image.Image:
    """Decode an uploaded file into an RGB or L image, turned upright by its EXIF orientation.

    Any PIL mode is accepted (16-bit, CMYK, palette, alpha: composited on
    white); an animated image gives its first frame. Raises ``ImageError``
    with a sentence for an empty, corrupt, non-image or too-large file.
    ``max_pixels`` defaults to ``imagefiles.MAX_PIXELS``, the limit image folders have too.
    """
    if not data:
        raise ImageError("The uploaded file is empty (0 bytes). Choose a PNG or JPEG image.")
    limit = max_pixels or imagefiles.MAX_PIXELS
    try:
        with warnings.catch_warnings():
            # the size is checked below, from the header, against our own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        problem = imagefiles.pixel_limit_problem(img.width, img.height, limit)
        if problem:
            raise ImageError(f"The image is too large: {problem}. Resize it and upload it again.")
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)  # a phone photo stored sideways, as image folders do
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"The image is too large to open safely ({exc}). Resize it below "
            f"{limit:,} pixels and upload it again."
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            "This file is not an image that can be read (is it really a PNG or JPEG?). "
            "Choose an image file."
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"The image file is damaged or incomplete ({exc}). Save it again and re-upload it."
        ) from None
    if img.width < 1 or img.height < 1:
        raise ImageError("The image has no pixels.")
    return _normalise_mode(img)


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Any PIL mode -> "RGB" or "L"."""
    if img.mode in ("RGB", "L"):
        return img.copy()
    if img.mode == "1":
        return img.convert("L")
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16"):
            arr = arr / 65535.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return Image.fromarray((arr * 255).round().clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("P", "PA", "LA", "RGBA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        merged = Image.alpha_composite(white, rgba)
        return merged.convert("L" if img.mode in ("LA", "La") else "RGB")
    return img.convert("RGB")


def suggest_invert(image: Image.Image, dataset_mean: Sequence[float]) -> bool:
    """True when the picture's background is light but the dataset's is dark
    (a digit drawn in black on white paper, shown to a net trained on white-on-black)."""
    if not dataset_mean or float(np.mean(dataset_mean)) > 0.35:
        return False
    arr = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    return float(np.median(border)) > 0.6


def image_to_uint8(image: Image.Image, *, channels: int, image_size: int, invert: bool = False) -> torch.Tensor:
    """(1, channels, image_size, image_size) uint8: the picture as the dataset stores its images."""
    img = image.convert("L" if channels == 1 else "RGB")
    if invert:
        img = ImageOps.invert(img)
    img = ImageOps.fit(img, (image_size, image_size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.from_numpy(arr.copy())[None]


def model_in_channels(model: torch.nn.Module) -> int:
    """Channels the model's first convolution expects."""
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            return module.in_channels
    raise ValueError("The model has no convolution layer.")


def prepare_image(
    image: Image.Image,
    *,
    channels: int,
    image_size: int,
    in_channels: int,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    invert: bool = False,
) -> torch.Tensor:
    """The model's input for one picture, (1, in_channels, input_size, input_size) float32:
    first stored like a dataset image, then through the same adapter as training."""
    x = image_to_uint8(image, channels=channels, image_size=image_size, invert=invert)
    return prepare_batch(
        x, in_channels=in_channels, size=input_size, mean=mean, std=std, device=torch.device("cpu")
    )


def top_k(model: torch.nn.Module, x: torch.Tensor, classes: Sequence[str], k: int = 5) -> pd.DataFrame:
    """Class probabilities for one prepared input: ``class``, ``probability`` (largest first)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            probs = torch.softmax(model(x.to(device)).float(), dim=1)[0].cpu()
    finally:
        model.train(was_training)
    k = min(k, probs.numel())
    values, indices = probs.topk(k)
    return pd.DataFrame(
        {"class": [classes[i] for i in indices.tolist()], "probability": values.numpy().astype(float)}
    )


def classify_image(
    model: torch.nn.Module,
    image: Image.Image,
    *,
    classes: Sequence[str],
    channels: int,
    image_size: int,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    k: int = 5,
    invert: bool = False,
) -> pd.DataFrame:
    """Top-``k`` classes for a picture (``channels``/``image_size``/``mean``/``std`` are the
    training dataset's, ``input_size`` the run's)."""
    x = prepare_image(
        image,
        channels=channels,
        image_size=image_size,
        in_channels=model_in_channels(model),
        input_size=input_size,
        mean=mean,
        std=std,
        invert=invert,
    )
    return top_k(model, x, classes, k)


def test_fingerprint(dataset) -> str:
    """A short hash of a dataset's test split (class names, labels, pixels): a run
    records it, so its predictions are never shown over another folder's images."""
    h = hashlib.blake2b(digest_size=12)
    h.update(json.dumps(list(dataset.classes)).encode("utf-8", "backslashreplace"))
    for tensor in (dataset.test_y, dataset.test_x):
        h.update(str(tuple(tensor.shape)).encode())
        for start in range(0, len(tensor), 512):  # a streamed split is decoded a chunk at a time
            h.update(tensor[start: start + 512].contiguous().numpy().tobytes())
    return h.hexdigest()
