"""What a run learned and where it looked: the paper's Figures 3 and 4 for any run.

Public API::

    conv1_kernels(model) -> (out, in, k, k) float32;  save_kernels(run_dir, epoch, model)
    kernel_epochs(run_dir) -> [epochs];  load_kernels(run_dir, epoch)
    kernel_grid(kernels, *, colour, count=None) -> uint8 (H, W, 3)   one shared scale, grey is zero

    hidden_features(model, x_uint8, *, mean, std) -> float16 (N, D)   the last hidden layer
    run_features(run_dir, dataset, which="best", progress=None) -> Features   cached in the run folder
    features_ready(run_dir, dataset, which="best") -> bool;  checkpoint_stamp(run_dir, which="best")
    nearest(train_features, query, k=8, labels=None) -> DataFrame index, (label,) distance
    Features.closest(test_index, k=8, labels=None)    the same, its squared norms computed once

    model_input(model, x_uint8, *, mean, std) -> float32 model input
    grad_cam(model, x, targets, *, average=True) -> (B, [T,] h, w) in [0, 1]
    heat_tile(x_uint8, cam, correct, *, target=112) -> uint8 tile with the heatmap over it

    project(features, method="pca"|"tsne", progress=None) -> (M, 2)
    test_map(features, method="pca", progress=None) -> (M, 2)  t-SNE cached in the run folder
    flipped(before, after) -> (right_to_wrong, wrong_to_right)   two epochs' predictions

The module is called ``insight``, not ``inspect``: ``from alexnet_core import
inspect`` would take the standard library's name in the importing module, and
with alexnet_core/ on ``sys.path`` (a script run from inside it) torch's own
``import inspect`` would load this file.

Nothing here registers hooks: the pages share one model between sessions, and
a hook on it would fire for another session's forward pass. The AlexNet family's
named parts (``features`` / ``avgpool`` / ``classifier``) are called in turn
instead. ``progress`` callbacks receive (fraction done, a short sentence).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from alexnet_core import checkpoints, predict
from alexnet_core.batches import prepare_batch
from alexnet_core.runfiles import FileLock

Progress = Callable[[float, str], None]

FEATURE_BATCH = 256  # a batch's activations stay in the caches: more images per CPU second than 512-2048
NEAREST_CHUNK = 8192  # rows of training features turned into float32 at a time
FLOAT16_MAX = 65504.0  # the features are kept as float16
# One OpenMP thread: on two cores that other work shares, two threads spin waiting for each
# other (bench/README.md, "What it learned").
TSNE_THREADS = 1
TSNE_LOCK = threading.Lock()  # t-SNE's progress is read from its printed lines: one at a time per process


def _atomic_npz(path: Path, **arrays) -> None:
    """``np.savez`` to a temp file beside ``path``, renamed over it (the trainer's temp-file
    names, so ``runfiles.remove_stale_temps`` knows a leftover)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _load_npz(path: Path, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The named arrays of an npz file, never unpickled; None when it is missing or damaged."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {name: arrays[name] for name in names}
    except (OSError, ValueError, KeyError, EOFError):
        return None


# --------------------------------------------------------------------------- #
# conv1's kernels, epoch by epoch (the paper's Figure 3)


def conv1_kernels(model: nn.Module) -> np.ndarray:
    """The first convolution's weights, (out, in, k, k) float32 on the CPU."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError("The model has no convolution layer.")
    return conv.weight.detach().float().cpu().numpy()


def kernel_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """Where conv1's kernels after ``epoch`` are kept (0: the run's start), beside its predictions."""
    return Path(run_dir) / "predictions" / f"conv1-{epoch:03d}.npz"


def save_kernels(run_dir: str | os.PathLike, epoch: int, model: nn.Module) -> None:
    """Keep conv1's kernels after ``epoch`` (the paper net's are 96x3x11x11 floats, 139 kB)."""
    path = kernel_path(run_dir, epoch)
    path.parent.mkdir(exist_ok=True)
    _atomic_npz(path, kernels=conv1_kernels(model))


def kernel_epochs(run_dir: str | os.PathLike) -> list[int]:
    """Epochs whose conv1 kernels are kept, ascending (empty for runs made before they were)."""
    folder = Path(run_dir) / "predictions"
    found = (re.fullmatch(r"conv1-(\d+)\.npz", p.name) for p in folder.glob("conv1-*.npz")) if folder.is_dir() else ()
    return sorted(int(m.group(1)) for m in found if m)


def load_kernels(run_dir: str | os.PathLike, epoch: int) -> np.ndarray:
    """conv1's kernels after ``epoch``; a missing or damaged file raises ValueError."""
    arrays = _load_npz(kernel_path(run_dir, epoch), ["kernels"])
    if arrays is None or arrays["kernels"].ndim != 4:
        raise ValueError(f"The first layer's filters after epoch {epoch} are missing or damaged.")
    return arrays["kernels"].astype(np.float32)


def kernel_grid(kernels, *, colour: bool, cell: int = 40, pad: int = 3, columns: int | None = None,
                count: int | None = None) -> np.ndarray:
    """conv1's kernels as one image, (H, W, 3) uint8: a tile per kernel on a white ground.

    One scale for every kernel of the epoch, symmetric about zero (mid-grey is a
    zero weight), as the paper draws them. ``colour``: the input's channels as
    red, green and blue; otherwise a grey tile of the kernel's sum over its input
    channels (what a kernel does to an image whose channels are equal: a grey
    dataset given to a 3-channel net). ``count``: only the first kernels, on the
    scale of them all.
    """
    w = torch.as_tensor(np.asarray(kernels), dtype=torch.float32)
    if not (colour and w.shape[1] == 3):
        w = w.sum(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    scale = float(w.abs().max()) or 1.0
    w = w[:count]
    tiles = ((w / scale * 127.5) + 127.5).round().clamp(0, 255).to(torch.uint8).numpy()  # (out, 3, k, k)
    n, _, k, _ = tiles.shape
    factor = predict.upscale_factor(k, k, cell)
    tiles = tiles.repeat(factor, axis=2).repeat(factor, axis=3).transpose(0, 2, 3, 1)  # (out, s, s, 3)
    side = tiles.shape[1]
    cols = columns or min(n, 16)
    rows = -(-n // cols)
    grid = np.full((rows * (side + pad) + pad, cols * (side + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = pad + r * (side + pad), pad + q * (side + pad)
        grid[y : y + side, x : x + side] = tiles[i]
    return grid


# --------------------------------------------------------------------------- #
# The last hidden layer and nearest training images (the paper's Figure 4)


def model_input(model: nn.Module, x_uint8: torch.Tensor, *, mean, std, channels_last: bool = False) -> torch.Tensor:
    """uint8 images (N, C, H, W) as the model's input on its device, as evaluation makes it."""
    device = next(model.parameters()).device
    return prepare_batch(x_uint8, in_channels=model.in_channels, size=model.input_size, mean=mean, std=std,
                         device=device, channels_last=channels_last)


def _head_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.flatten(model.avgpool(model.features(x)), 1)


def hidden_features(
    model: nn.Module, x_uint8: torch.Tensor, *, mean, std, batch_size: int = FEATURE_BATCH,
    channels_last: bool = False, done: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """The last hidden layer (after its ReLU, the paper's 4096-d layer) of every image, (N, D)
    float16 on the CPU (values beyond float16's range are clipped to it). ``done`` receives
    the images finished so far after each batch; ``channels_last`` is the input's memory
    format (for a model in channels_last)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            out: torch.Tensor | None = None
            for start in range(0, len(x_uint8), batch_size):
                xb = model_input(model, x_uint8[start : start + batch_size], mean=mean, std=std,
                                 channels_last=channels_last)
                h = model.classifier[:-1](_head_input(model, xb)).float().cpu().clamp_(max=FLOAT16_MAX)  # (B, D)
                if out is None:
                    out = torch.empty((len(x_uint8), h.shape[1]), dtype=torch.float16)
                out[start : start + len(h)] = h
                if done is not None:
                    done(start + len(h))
    finally:
        model.train(was_training)
    if out is None:  # no images
        width = next(m for m in reversed(list(model.classifier)) if isinstance(m, nn.Linear)).in_features
        out = torch.empty((0, width), dtype=torch.float16)
    return out


@dataclass
class Features:
    """The last hidden layer of a run's checkpoint for the training and test images."""

    train: torch.Tensor  # (N, D) float16
    test: torch.Tensor  # (M, D) float16
    epoch: int  # the checkpoint's epoch
    seconds: float  # what computing them took, the first time
    which: str  # "best" or "last"
    run_dir: Path
    stamp: tuple[int, ...]  # the checkpoint file's size, mtime_ns and inode when they were computed

    @functools.cached_property
    def train_norms(self) -> torch.Tensor:
        return squared_norms(self.train)

    def closest(self, test_index: int, k: int = 8, labels=None) -> pd.DataFrame:
        """``nearest`` training images of test image ``test_index``."""
        return nearest(self.train, self.test[test_index], k, labels, norms=self.train_norms)


def features_path(run_dir: str | os.PathLike, which: str = "best") -> Path:
    return Path(run_dir) / f"features-{which}.npz"


def checkpoint_stamp(run_dir: str | os.PathLike, which: str = "best") -> tuple[int, int, int]:
    """What tells one ``which``.pt from the next: size, mtime and inode (a checkpoint is replaced
    by a rename, so a new one has a new inode even within the file system's clock tick).
    FileNotFoundError for a run without it."""
    stat = (Path(run_dir) / f"{which}.pt").stat()
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


def _cache_matches(run_dir: Path, which: str, dataset) -> bool:
    """Whether the kept features belong to this checkpoint and dataset (reads a few numbers)."""
    kept = _load_npz(features_path(run_dir, which), ["stamp", "sizes"])
    try:
        stamp = checkpoint_stamp(run_dir, which)
    except OSError:
        return False
    return (kept is not None and tuple(int(v) for v in kept["stamp"]) == stamp
            and tuple(int(v) for v in kept["sizes"]) == (len(dataset.train_y), len(dataset.test_y)))


def _read_features(run_dir: Path, which: str, dataset) -> Features | None:
    """The kept features if they belong to this checkpoint and dataset."""
    if not _cache_matches(run_dir, which, dataset):
        return None
    arrays = _load_npz(features_path(run_dir, which), ["train", "test", "stamp", "epoch", "seconds"])
    if arrays is None or arrays["train"].dtype != np.float16 or arrays["train"].shape[1:] != arrays["test"].shape[1:]:
        return None
    return Features(torch.from_numpy(arrays["train"]), torch.from_numpy(arrays["test"]), int(arrays["epoch"]),
                    float(arrays["seconds"]), which, run_dir, tuple(int(v) for v in arrays["stamp"]))


def features_ready(run_dir: str | os.PathLike, dataset, which: str = "best") -> bool:
    """Whether ``run_features`` would only read what the run folder keeps (cheap: no arrays read)."""
    return _cache_matches(Path(run_dir), which, dataset)


def run_features(run_dir: str | os.PathLike, dataset, which: str = "best", progress: Progress | None = None,
                 *, batch_size: int = FEATURE_BATCH) -> Features:
    """The last hidden layer of ``which``.pt for every training and test image of ``dataset``.

    Computed once per checkpoint and kept in the run folder (``features-best.npz``,
    float16: the paper net's 4096 values take 8 kB an image); a newer checkpoint,
    or another dataset's images, computes them again. Two callers at once (two
    sessions, the CLI) compute them once: the second waits for the first. A run
    folder that cannot be written still gets its features, uncached. A run
    without ``which``.pt raises FileNotFoundError; a damaged one CheckpointError.
    """
    run_dir = Path(run_dir)
    found = _read_features(run_dir, which, dataset)
    if found is not None:
        return found
    lock = FileLock(run_dir / "features.lock")
    with contextlib.suppress(OSError):  # a read-only run folder: compute without the lock
        if not lock.acquire(blocking=False):
            if progress is not None:
                progress(0.0, "Waiting: someone else is computing the same features")
            lock.acquire()
    try:
        found = _read_features(run_dir, which, dataset)
        if found is not None:
            return found
        stamp = checkpoint_stamp(run_dir, which)
        checkpoint = checkpoints.load_checkpoint(run_dir / f"{which}.pt")
        model = checkpoints.model_from_checkpoint(checkpoint).to(memory_format=torch.channels_last)
        mean, std = checkpoint.get("mean") or dataset.mean, checkpoint.get("std") or dataset.std
        total = len(dataset.test_y) + len(dataset.train_y)
        start = time.perf_counter()

        def reporter(offset: int, what: str) -> Callable[[int], None]:
            def done(n: int) -> None:
                if progress is not None:
                    progress((offset + n) / max(total, 1), f"The last hidden layer of the {what} images: {n:,} done")
            return done

        test = hidden_features(model, dataset.test_x, mean=mean, std=std, batch_size=batch_size, channels_last=True,
                               done=reporter(0, f"{len(dataset.test_y):,} test"))
        train = hidden_features(model, dataset.train_x, mean=mean, std=std, batch_size=batch_size, channels_last=True,
                                done=reporter(len(dataset.test_y), f"{len(dataset.train_y):,} training"))
        seconds = time.perf_counter() - start
        epoch = int(checkpoint.get("epoch") or 0)
        with contextlib.suppress(OSError):  # a read-only or full run folder: keep them in memory only
            _atomic_npz(features_path(run_dir, which), train=train.numpy(), test=test.numpy(),
                        stamp=np.array(stamp, np.int64), epoch=np.int64(epoch), seconds=np.float64(seconds),
                        sizes=np.array([len(train), len(test)], np.int64))
        return Features(train, test, epoch, seconds, which, run_dir, stamp)
    finally:
        lock.release()


def squared_norms(x: torch.Tensor) -> torch.Tensor:
    """Each row's squared length, (N,) float32 (a float16 matrix converted a chunk at a time)."""
    out = torch.empty(len(x), dtype=torch.float32)
    for start in range(0, len(x), NEAREST_CHUNK):
        out[start : start + NEAREST_CHUNK] = x[start : start + NEAREST_CHUNK].float().square().sum(dim=1)
    return out


def nearest(train: torch.Tensor, query: torch.Tensor, k: int = 8, labels=None, *, norms: torch.Tensor | None = None) -> pd.DataFrame:
    """The ``k`` rows of ``train`` closest to ``query`` in Euclidean distance, closest first:
    ``index``, ``distance`` (and ``label`` from ``labels``, one per training row).

    Candidates come from |t|^2 - 2 t.q (one matrix-vector product; ``norms`` are
    ``squared_norms(train)``, computed here when not given); the distances of the
    closest few are then computed from the differences themselves: exact, so an
    identical row is at distance 0, without paying for every difference.
    """
    q = query.reshape(-1).float()
    n = len(train)
    norms = squared_norms(train) if norms is None else norms
    approx = torch.empty(n, dtype=torch.float32)
    for start in range(0, n, NEAREST_CHUNK):
        approx[start : start + NEAREST_CHUNK] = norms[start : start + NEAREST_CHUNK] - 2 * (train[start : start + NEAREST_CHUNK].float() @ q)
    pool = torch.topk(approx, min(n, 4 * k + 32), largest=False).indices
    exact = (train[pool].float() - q).square_().sum(dim=1)
    order = torch.argsort(exact, stable=True)[: min(k, n)]
    frame = pd.DataFrame({"index": pool[order].numpy().astype(np.int64), "distance": exact[order].sqrt().numpy().astype(float)})
    if labels is not None:
        frame.insert(1, "label", np.asarray(labels)[frame["index"].to_numpy()].astype(np.int64))
    return frame


# --------------------------------------------------------------------------- #
# Where it looked: Grad-CAM on the last convolution


def _cam_cut(model: nn.Module) -> int:
    """Position in ``model.features`` of the last convolution's ReLU (the convolution itself
    when no ReLU follows it before a pool)."""
    layers = list(model.features)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("The model has no convolution layer.")
    for i in range(convs[-1] + 1, len(layers)):
        if isinstance(layers[i], nn.ReLU):
            return i
        if not isinstance(layers[i], nn.BatchNorm2d):
            break
    return convs[-1]


def grad_cam(model: nn.Module, x: torch.Tensor, targets, *, average: bool = True) -> np.ndarray:
    """Where the network looked for a class: a heatmap per image and target class.

    ``x`` is the model's input (B, C, S, S); ``targets`` the classes, (B,) for one
    map per image or (B, T) for T maps each (the predicted and the true class: one
    forward pass). Returns float32 (B, h, w) or (B, T, h, w) at the last
    convolution's resolution, each map scaled to its own maximum (0 where no
    position speaks for the class).

    ``average=True`` is Grad-CAM (Selvaraju et al. 2017): each channel of the last
    convolution's rectified output, weighted by the mean gradient of the class
    score over that channel, summed, rectified. ``average=False`` weighs each
    position by its own gradient (HiResCAM, Draelos & Carin 2020): only the
    positions the score depends on light up, which matters for a head of fully
    connected layers like AlexNet's; with a global-average head the two agree.
    """
    targets = torch.as_tensor(targets, dtype=torch.int64)
    single = targets.ndim == 1
    targets = targets.reshape(len(targets), -1)
    cut = _cam_cut(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            act = model.features[: cut + 1](x)  # (B, K, h, w)
        act = act.detach().float().contiguous().requires_grad_(True)
        maps = []
        with torch.enable_grad():
            rest = model.features[cut + 1 :](act)
            logits = model.classifier(torch.flatten(model.avgpool(rest), 1)).float()
            for t in range(targets.shape[1]):
                score = logits.gather(1, targets[:, t : t + 1].to(logits.device)).sum()
                (grad,) = torch.autograd.grad(score, act, retain_graph=t < targets.shape[1] - 1)
                weights = grad.mean(dim=(2, 3), keepdim=True) if average else grad
                maps.append(F.relu((weights * act).sum(dim=1)).detach())  # (B, h, w)
    finally:
        model.train(was_training)
    cams = torch.stack(maps, dim=1)  # (B, T, h, w)
    cams = cams / cams.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
    cams = cams.cpu().numpy().astype(np.float32)
    return cams[:, 0] if single else cams


# Anchors of Google's Turbo colormap: dark blue (nothing) through green to dark red (most),
# each step distinct on a washed-out projector.
_TURBO = np.array([(48, 18, 59), (70, 107, 227), (41, 187, 236), (49, 242, 153), (162, 252, 60),
                   (237, 208, 58), (251, 128, 34), (208, 47, 5), (122, 4, 3)], dtype=np.float32)


def heat_colours(cam: np.ndarray) -> np.ndarray:
    """A map in [0, 1] as Turbo colours, float32 (..., 3) in 0..255."""
    stops = np.linspace(0, 1, len(_TURBO))
    cam = np.clip(cam, 0, 1)
    return np.stack([np.interp(cam, stops, _TURBO[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def heat_tile(x_uint8, cam: np.ndarray, correct: bool | None, *, target: int = 112) -> np.ndarray:
    """``predict.tile_image`` with a heatmap over the picture: the same size and frame as the
    plain tile, the map stretched smoothly over the whole image (the model's input is the
    whole image resized), the picture showing through where the map is low."""
    tile = predict.tile_image(x_uint8, correct, target=target)
    h, w = np.shape(x_uint8)[-2:]
    factor = predict.upscale_factor(h, w, target)
    h, w = h * factor, w * factor
    border = (tile.shape[0] - h) // 2
    inner = tile[border : border + h, border : border + w].astype(np.float32)
    heat = F.interpolate(torch.as_tensor(cam, dtype=torch.float32)[None, None], size=(h, w),
                         mode="bilinear", align_corners=False)[0, 0].clamp(0, 1).numpy()
    alpha = (0.2 + 0.45 * heat)[..., None]  # the picture stays legible under the hottest spot
    tile[border : border + h, border : border + w] = (inner * (1 - alpha) + heat_colours(heat) * alpha).round()
    return tile


# --------------------------------------------------------------------------- #
# A map of the test set


def _principal(x: torch.Tensor, q: int) -> torch.Tensor:
    """``x`` (M, D) projected on its first ``q`` principal axes, (M, q) float32; each axis
    signed so that its largest loading is positive (the same picture every time)."""
    x = x.float()
    x = x - x.mean(dim=0)
    q = max(1, min(q, *x.shape))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _, _, v = torch.pca_lowrank(x, q=min(q + 4, *x.shape), center=False, niter=6)
    v = v[:, :q]
    signs = torch.sign(v.gather(0, v.abs().argmax(dim=0, keepdim=True)))
    return x @ (v * signs)


class _TsneLines(io.TextIOBase):
    """Where sys.stdout points while scikit-learn's t-SNE runs: its progress lines become
    ``progress`` calls, anything else goes on to the real stdout."""

    def __init__(self, progress: Progress, max_iter: int, out):
        self.progress, self.max_iter, self.out, self._pending = progress, max_iter, out, ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            if m := re.match(r"\[t-SNE\] Iteration (\d+)", line):
                i = int(m.group(1))
                self.progress(0.1 + 0.9 * min(i / self.max_iter, 1.0), f"t-SNE: iteration {i:,} of at most {self.max_iter:,}")
            elif line.startswith("[t-SNE] Computed conditional"):
                self.progress(0.1, "t-SNE: neighbourhoods found; arranging the points")
            elif not line.startswith("[t-SNE]"):
                self.out.write(line + "\n")
        return len(text)


def project(features: torch.Tensor, method: str = "pca", progress: Progress | None = None, *, seed: int = 0) -> np.ndarray:
    """Each row of ``features`` as a point in 2-D, (M, 2) float32.

    ``pca``: the first two principal components (exact up to a seeded randomised
    SVD). ``tsne``: scikit-learn's t-SNE (Barnes-Hut) on the first 50 principal
    components, seeded; ``progress`` follows its iterations.
    """
    if method not in ("pca", "tsne"):
        raise ValueError(f"Unknown projection {method!r}; choose pca or tsne.")
    n = len(features)
    if n < 2:
        return np.zeros((n, 2), np.float32)
    if method == "pca" or n < 5:
        xy = _principal(features, 2)
        return np.pad(xy.numpy(), ((0, 0), (0, 2 - xy.shape[1]))).astype(np.float32)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    reduced = _principal(features, 50).numpy()
    tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed,
                verbose=2 if progress is not None else 0)
    if progress is None:
        with threadpool_limits(TSNE_THREADS):
            return tsne.fit_transform(reduced).astype(np.float32)
    progress(0.0, f"t-SNE: finding each of {n:,} points' neighbours")
    with TSNE_LOCK, threadpool_limits(TSNE_THREADS):
        lines = _TsneLines(progress, tsne.max_iter, sys.stdout)
        with contextlib.redirect_stdout(lines):
            xy = tsne.fit_transform(reduced)
    progress(1.0, "t-SNE: done")
    return xy.astype(np.float32)


def test_map(features: Features, method: str = "pca", progress: Progress | None = None) -> np.ndarray:
    """``project`` of the test features; a t-SNE map is kept in the run folder beside them."""
    if method != "tsne":
        return project(features.test, method, progress)
    path = features.run_dir / f"map-tsne-{features.which}.npz"
    cached = _load_npz(path, ["xy", "stamp"])
    if cached is not None and tuple(int(v) for v in cached["stamp"]) == features.stamp and len(cached["xy"]) == len(features.test):
        return cached["xy"].astype(np.float32)
    xy = project(features.test, "tsne", progress)
    with contextlib.suppress(OSError):
        _atomic_npz(path, xy=xy, stamp=np.array(features.stamp, np.int64))
    return xy


# --------------------------------------------------------------------------- #
# What flipped between two epochs


def flipped(before: pd.DataFrame, after: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The test images right at ``before``'s epoch and wrong at ``after``'s, and the other way.

    Both frames are predictions tables (``runs.read_predictions``). Each result has
    ``after``'s columns plus ``pred_before``, sorted by ``after``'s loss (largest
    first for right-to-wrong, smallest first for wrong-to-right), then by index.
    """
    merged = after.merge(before[["index", "pred"]].rename(columns={"pred": "pred_before"}), on="index", how="inner")
    was_right = merged["label"] == merged["pred_before"]
    now_right = merged["label"] == merged["pred"]
    worse = merged[was_right & ~now_right].sort_values(["loss", "index"], ascending=[False, True], kind="stable")
    better = merged[~was_right & now_right].sort_values(["loss", "index"], kind="stable")
    return worse.reset_index(drop=True), better.reset_index(drop=True)
