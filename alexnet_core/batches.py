"""Batches: uint8 images into model input on the training device.

Public API::

    prepare_batch(x_uint8, *, in_channels, size, mean, std, device, augment=None, generator=None,
                  channels_last=False, window="whole") -> float32 (N, in_channels, size, size)
    Augment(flip, crop_padding, rotation, window)   per-sample training augmentation
    WINDOWS                                 how the input is taken from a stored photo
    LUMA_WEIGHTS                            how 3 channels become 1

Everything happens on whole batches on the device: each image draws its own
flip, crop and rotation (torchvision's v2 transforms draw one set per call).
Photos stored larger than the input (256 px for 224/227, the paper's protocol)
give the network a window: a random one in training, the centre one in evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# ITU-R BT.601 luma weights (what PIL's convert("L") uses).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
# whole: the stored image resized to the input; centre: the central input-size window
# (evaluation); random: a random input-size window (the paper's training crops);
# resized: torchvision's RandomResizedCrop, 8-100% of the area at aspect 3/4-4/3, resized.
WINDOWS = ("whole", "centre", "random", "resized")
RESIZED_SCALE = (0.08, 1.0)
RESIZED_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class Augment:
    """Per-sample training augmentation, applied by :func:`prepare_batch`."""

    flip: bool = False  # per-sample horizontal flip with p=0.5
    crop_padding: int = 0  # per-sample random crop after zero padding by this many pixels
    rotation: float = 0.0  # per-sample rotation, uniform in [-rotation, +rotation] degrees
    window: str = ""  # "random" or "resized": the training window of a larger stored photo (WINDOWS)

    @property
    def active(self) -> bool:
        return self.flip or self.crop_padding > 0 or self.rotation != 0


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
    window: str = "whole",
) -> torch.Tensor:
    """Turn a uint8 batch into model input on ``device``.

    Steps, all batched on the device: the input window of a stored photo
    (``window``, or the augmentation's own in training), per-sample augmentation (random flip, crop
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
        window: one of WINDOWS. ``centre`` and ``random`` take a ``size`` window of a
            larger image (a smaller one is resized whole); ``augment.window`` replaces it.

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

    if augment is not None and augment.window:
        window = augment.window
    if window not in WINDOWS:
        raise ValueError(f"Unknown window {window!r}; choose one of {', '.join(WINDOWS)}.")

    x = x_uint8.to(device, non_blocking=True)
    x = _window(x, window, size, generator)
    h, w = x.shape[-2:]
    if augment is not None and augment.active:
        x = _augment(x, augment, generator)
    x = x.to(torch.float32)  # 0..255; a fresh tensor unless rotation or a resized crop already made one

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
    # channels_last input is slower than converting its output
    if (h, w) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < h or size < w)
    if x.shape[1] != in_channels:
        x = x.expand(-1, in_channels, -1, -1)  # (N, 1, S, S) -> (N, in_channels, S, S), copied below
    return x.contiguous(memory_format=memory_format)


def _draw(generator: torch.Generator | None, device: torch.device, count: int) -> torch.Tensor:
    """``count`` uniform numbers in [0, 1) from ``generator``, on ``device``."""
    draw_device = generator.device if generator is not None else device
    return torch.rand(count, generator=generator, device=draw_device).to(device)


def _window(x: torch.Tensor, window: str, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """The ``size`` x ``size`` input window of each image (see WINDOWS); ``x`` itself for ``whole``
    or, for ``centre`` and ``random``, when the images are not larger than ``size``."""
    n, c, h, w = x.shape
    if window == "resized":
        return _resized_crop(x, size, generator)
    if window == "whole" or h < size or w < size or (h, w) == (size, size):
        return x
    if window == "centre":  # torchvision's CenterCrop rounds the offsets the same way
        top, left = int(round((h - size) / 2)), int(round((w - size) / 2))
        return x[:, :, top: top + size, left: left + size]
    top = (_draw(generator, x.device, n) * (h - size + 1)).long().clamp_(max=h - size)
    left = (_draw(generator, x.device, n) * (w - size + 1)).long().clamp_(max=w - size)
    rows = top[:, None] + torch.arange(size, device=x.device)  # (N, S)
    cols = left[:, None] + torch.arange(size, device=x.device)  # (N, S)
    return x[
        torch.arange(n, device=x.device)[:, None, None, None],
        torch.arange(c, device=x.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def _resized_crop(x: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """torchvision's RandomResizedCrop on a whole batch: each image a box of RESIZED_SCALE of its
    area at an aspect ratio in RESIZED_RATIO (log-uniform), resized to ``size``, bilinear.

    torchvision redraws a box that does not fit (up to 10 times); here its sides are
    clipped to the image instead, so every image draws once."""
    n, c, h, w = x.shape
    area = (RESIZED_SCALE[0] + _draw(generator, x.device, n) * (RESIZED_SCALE[1] - RESIZED_SCALE[0])) * (h * w)
    log_lo, log_hi = math.log(RESIZED_RATIO[0]), math.log(RESIZED_RATIO[1])
    ratio = torch.exp(log_lo + _draw(generator, x.device, n) * (log_hi - log_lo))
    box_w = (area * ratio).sqrt().clamp(1, w)
    box_h = (area / ratio).sqrt().clamp(1, h)
    # the box's centre, in grid_sample's [-1, 1] coordinates of the whole image
    cx = (box_w / 2 + _draw(generator, x.device, n) * (w - box_w)) * (2 / w) - 1
    cy = (box_h / 2 + _draw(generator, x.device, n) * (h - box_h)) * (2 / h) - 1
    zero = torch.zeros_like(cx)
    theta = torch.stack([torch.stack([box_w / w, zero, cx], 1), torch.stack([zero, box_h / h, cy], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x.to(torch.float32), grid, mode="bilinear", padding_mode="border", align_corners=False)


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
