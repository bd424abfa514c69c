"""The AlexNet family: one model class, each variant a frozen spec.

A variant is data (``VariantSpec``): its feature stack as a tuple of layer
specs, its classifier widths and how it initialises weights. ``build_model``
turns a spec into an ``AlexNet`` with the usual ``features`` / ``avgpool`` /
``classifier`` parts, so module names (``features.0.weight`` ...) match
torchvision's and its state_dicts load strictly.

Parameter counts at the native input, 3 channels and 1000 classes:
    paper        62,378,344   (60,965,224 with groups=2, the paper's figure)
    torchvision  61,100,840
    lrn          61,100,840   (LRN has no parameters)
    bn           62,381,096
    cifar        23,272,266  (32x32, 10 classes; most of it the 4096-wide classifier)
    mnist         3,868,170  (1x28x28, 10 classes)
    layered      62,071,144   (the paper's widths, conv2 alone in two groups)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import torch
from torch import nn

# --------------------------------------------------------------------------- #
# Layer specs


@dataclass(frozen=True)
class Conv:
    """A convolution followed by its activation (and optional norm)."""

    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias_init: float = 0.0  # the paper sets 1 in conv2, conv4, conv5
    split: bool = False  # grouped when the two-GPU option (groups=2) is on


@dataclass(frozen=True)
class Pool:
    kernel: int
    stride: int


@dataclass(frozen=True)
class LRN:
    """Local response normalisation across channels (paper section 3.3)."""

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0


LayerSpec = Union[Conv, Pool, LRN]

INITS = ("default", "paper", "kaiming")
# Every variant takes these options: a reference post's own network can differ from ours in just these.
COMMON_OPTIONS = ("dropout", "linear_init")


@dataclass(frozen=True)
class VariantSpec:
    """Everything that defines one named AlexNet variant."""

    name: str
    title: str
    description: str
    source: str
    input_size: int  # native height == width
    in_channels: int  # native channel count
    features: tuple[LayerSpec, ...]
    hidden: tuple[int, ...]  # widths of the hidden fully-connected layers
    adaptive_pool: int | None = None  # AdaptiveAvgPool2d output; None: flatten size follows the input
    batch_norm: bool = False  # BatchNorm2d after every conv
    dropout: float = 0.5
    dropout_after: bool = False  # each hidden layer as Linear, ReLU, Dropout (True) or Dropout, Linear, ReLU
    # "default" (PyTorch's), "paper" (N(0, 0.01) + paper biases) or "kaiming" (He et al. 2015:
    # keeps the activations' scale through ReLU layers, so a small net starts learning at once)
    init: str = "default"
    hidden_bias_init: float = 0.0
    options: tuple[str, ...] = field(default=COMMON_OPTIONS)  # keyword options get_model accepts


# --------------------------------------------------------------------------- #
# The family


def _paper_features() -> tuple[LayerSpec, ...]:
    return (
        Conv(96, 11, stride=4),  # (N, 96, 55, 55) at 227
        LRN(),
        Pool(3, 2),  # overlapping pooling: (N, 96, 27, 27)
        Conv(256, 5, padding=2, bias_init=1.0, split=True),
        LRN(),
        Pool(3, 2),  # (N, 256, 13, 13)
        Conv(384, 3, padding=1),  # conv3 sees both GPU halves
        Conv(384, 3, padding=1, bias_init=1.0, split=True),
        Conv(256, 3, padding=1, bias_init=1.0, split=True),
        Pool(3, 2),  # (N, 256, 6, 6)
    )


def _torchvision_features(lrn: bool) -> tuple[LayerSpec, ...]:
    norm = (LRN(),) if lrn else ()
    return (
        Conv(64, 11, stride=4, padding=2),
        *norm,
        Pool(3, 2),
        Conv(192, 5, padding=2),
        *norm,
        Pool(3, 2),
        Conv(384, 3, padding=1),
        Conv(256, 3, padding=1),
        Conv(256, 3, padding=1),
        Pool(3, 2),
    )


_SPECS: dict[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec(
            name="paper",
            title="AlexNet 2012 (paper)",
            description="The 2012 paper net: 96-256-384-384-256 convs, LRN after conv1/conv2, "
            "overlapping 3/2 max-pool, dropout 0.5, paper initialisation.",
            source="Krizhevsky, Sutskever, Hinton, NeurIPS 2012",
            input_size=227,
            in_channels=3,
            features=_paper_features(),
            hidden=(4096, 4096),
            init="paper",
            hidden_bias_init=1.0,
            options=("groups", *COMMON_OPTIONS),
        ),
        VariantSpec(
            name="torchvision",
            title="torchvision AlexNet",
            description="torchvision.models.alexnet: 64-192-384-256-256 convs, adaptive 6x6 average pool.",
            source="torchvision.models.alexnet (One weird trick..., Krizhevsky 2014)",
            input_size=224,
            in_channels=3,
            features=_torchvision_features(lrn=False),
            hidden=(4096, 4096),
            adaptive_pool=6,
        ),
        VariantSpec(
            name="lrn",
            title="torchvision AlexNet + LRN",
            description="torchvision's layout with local response normalisation after conv1 and conv2.",
            source="AlexNet on CIFAR-10 with LRN blog post",
            input_size=227,
            in_channels=3,
            features=_torchvision_features(lrn=True),
            hidden=(4096, 4096),
            adaptive_pool=6,
        ),
        VariantSpec(
            name="bn",
            title="AlexNet + BatchNorm",
            description="The paper's widths with BatchNorm after every conv and no LRN.",
            source="Cats-vs-dogs AlexNet blog post",
            input_size=227,
            in_channels=3,
            features=tuple(c for c in _paper_features() if not isinstance(c, LRN)),
            hidden=(4096, 4096),
            batch_norm=True,
        ),
        VariantSpec(
            name="cifar",
            title="AlexNet for 32x32 (CIFAR)",
            # The posts' question "resize 32-px images to 227, or change the kernels?", answered where it is asked.
            description="3x3 kernels and 2x2 pools for 32x32 images; a 256*2*2 classifier input. Resize "
            "32-px images to 227, or change the kernels? Both train here: lrn or paper keep AlexNet's layers on "
            "CIFAR-10 upsampled to 227 (11-18 times the work, no new detail); this variant changes the kernels "
            "to fit 32 px.",
            source="pytorch-cifar10 AlexNet",
            input_size=32,
            in_channels=3,
            features=(
                Conv(64, 3, stride=2, padding=1),  # (N, 64, 16, 16)
                Pool(2, 2),  # (N, 64, 8, 8)
                Conv(192, 3, padding=1),
                Pool(2, 2),  # (N, 192, 4, 4)
                Conv(384, 3, padding=1),
                Conv(256, 3, padding=1),
                Conv(256, 3, padding=1),
                Pool(2, 2),  # (N, 256, 2, 2)
            ),
            hidden=(4096, 4096),
        ),
        VariantSpec(
            name="mnist",
            title="AlexNet for 28x28 (MNIST)",
            description="32-64-128-256-256 3x3 convs for 28x28 digits. Unlike its post: a ReLU after every "
            "layer (the post: conv1, conv2, conv5 only), dropout 0.5 (none) and He initialisation.",
            source="AlexNet-on-MNIST blog post",
            input_size=28,
            in_channels=1,
            features=(
                Conv(32, 3, padding=1),
                Pool(2, 2),  # (N, 32, 14, 14)
                Conv(64, 3, padding=1),
                Pool(2, 2),  # (N, 64, 7, 7)
                Conv(128, 3, padding=1),
                Conv(256, 3, padding=1),
                Conv(256, 3, padding=1),
                Pool(3, 2),  # (N, 256, 3, 3)
            ),
            hidden=(1024, 512),
            init="kaiming",
        ),
        VariantSpec(
            name="layered",
            title="AlexNet layer by layer (survey post)",
            description="The survey post's layered network: the paper's 96-256-384-384-256 convs, LRN after the "
            "first two pools (its hand-written LRN, which is k=1), conv2 alone in two groups, and dropout 0.5 "
            "after each hidden layer's ReLU; PyTorch's default initialisation.",
            source="The survey post's layer-by-layer AlexNet",
            input_size=227,
            in_channels=3,
            features=(
                Conv(96, 11, stride=4),  # (N, 96, 55, 55) at 227
                Pool(3, 2),  # (N, 96, 27, 27)
                LRN(k=1.0),
                Conv(256, 5, padding=2, groups=2),
                Pool(3, 2),  # (N, 256, 13, 13)
                LRN(k=1.0),
                Conv(384, 3, padding=1),
                Conv(384, 3, padding=1),
                Conv(256, 3, padding=1),
                Pool(3, 2),  # (N, 256, 6, 6)
            ),
            hidden=(4096, 4096),
            dropout_after=True,
        ),
    )
}


# --------------------------------------------------------------------------- #
# Registry


def list_models() -> list[str]:
    """Names of every variant, in display order."""
    return list(_SPECS)


def get_spec(name: str) -> VariantSpec:
    """The spec of a named variant; an unknown name raises ValueError listing the valid ones."""
    try:
        return _SPECS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown variant {name!r}; choose one of: {', '.join(_SPECS)}.") from None


def get_model(
    name: str,
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int | None = None,
    **options,
) -> "AlexNet":
    """Build a variant for any channel and class count.

    ``input_size`` defaults to the variant's native size. Variants without
    adaptive pooling compute their flatten size from it, so build them for the
    size they will see. Options: ``groups=2`` for ``paper`` (the two-GPU split);
    for every variant ``dropout`` (the hidden layers' dropout probability, 0 for
    none) and ``linear_init`` (one of ``INITS``: how the linear layers start,
    where a post's code differs from its variant's own initialisation).
    """
    spec = get_spec(name)
    unknown = set(options) - set(spec.options)
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise ValueError(f"Variant {name!r} takes no option {', '.join(sorted(unknown))}; its options: {allowed}.")
    groups = options.get("groups", 1)
    if groups not in (1, 2):
        raise ValueError(f"groups must be 1 or 2 (the paper's two-GPU split), got {groups!r}.")
    dropout = options.get("dropout", spec.dropout)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability, at least 0 and below 1, got {dropout!r}.")
    linear_init = options.get("linear_init", spec.init)
    if linear_init not in INITS:
        raise ValueError(f"linear_init must be one of {', '.join(INITS)}, got {linear_init!r}.")
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels} and {num_classes}.")
    size = spec.input_size if input_size is None else int(input_size)
    minimum = min_input_size(name)
    if size < minimum:
        raise ValueError(f"{name} needs at least {minimum}x{minimum} input, got {size}x{size}.")
    return AlexNet(spec, in_channels, num_classes, size, groups=groups, dropout=float(dropout), linear_init=linear_init)


# --------------------------------------------------------------------------- #
# Shape arithmetic (shared with anatomy)


def out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """floor((W - K + 2P) / S) + 1, the output side of a conv or pool."""
    return (size - kernel + 2 * padding) // stride + 1


def feature_size(spec: VariantSpec, size: int) -> int:
    """Side of the feature stack's output for a square input; < 1 means the input is too small."""
    for layer in spec.features:
        if isinstance(layer, Conv):
            size = out_size(size, layer.kernel, layer.stride, layer.padding)
        elif isinstance(layer, Pool):
            if size < layer.kernel:
                return 0
            size = out_size(size, layer.kernel, layer.stride, 0)
        if size < 1:
            return 0
    return size


def min_input_size(name: str | VariantSpec | nn.Module) -> int:
    """The smallest square input the variant can take."""
    spec = _spec_of(name)
    size = 1
    while feature_size(spec, size) < 1:
        size += 1
    return size


def _spec_of(thing) -> VariantSpec:
    if isinstance(thing, VariantSpec):
        return thing
    if isinstance(thing, AlexNet):
        return thing.spec
    return get_spec(thing)


# --------------------------------------------------------------------------- #
# The one model class


class AlexNet(nn.Module):
    """``features`` -> ``avgpool`` -> flatten -> ``classifier``, built from a spec."""

    def __init__(self, spec: VariantSpec, in_channels: int, num_classes: int, input_size: int, groups: int = 1,
                 dropout: float | None = None, linear_init: str | None = None):
        super().__init__()
        self.spec = spec
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.input_size = input_size
        self.groups = groups
        dropout = spec.dropout if dropout is None else dropout
        linear_init = linear_init or spec.init

        layers: list[nn.Module] = []
        channels = in_channels
        for layer in spec.features:
            if isinstance(layer, Conv):
                conv = nn.Conv2d(
                    channels,
                    layer.out_channels,
                    layer.kernel,
                    stride=layer.stride,
                    padding=layer.padding,
                    groups=groups if layer.split else layer.groups,
                )
                self._init(conv, spec.init, layer.bias_init)
                layers.append(conv)
                if spec.batch_norm:
                    layers.append(nn.BatchNorm2d(layer.out_channels))
                layers.append(nn.ReLU(inplace=True))
                channels = layer.out_channels
            elif isinstance(layer, LRN):
                layers.append(FastLRN(layer.size, layer.alpha, layer.beta, layer.k))
            else:
                layers.append(nn.MaxPool2d(layer.kernel, layer.stride))
        self.features = nn.Sequential(*layers)

        if spec.adaptive_pool is not None:
            self.avgpool: nn.Module = nn.AdaptiveAvgPool2d((spec.adaptive_pool, spec.adaptive_pool))
            side = spec.adaptive_pool
        else:
            self.avgpool = nn.Identity()
            side = feature_size(spec, input_size)
        width = channels * side * side

        head: list[nn.Module] = []
        for hidden in spec.hidden:
            linear = nn.Linear(width, hidden)
            self._init(linear, linear_init, spec.hidden_bias_init)
            # Dropout is not in-place: an in-place dropout on a ReLU's output breaks backward.
            if spec.dropout_after:
                head += [linear, nn.ReLU(inplace=True), nn.Dropout(dropout)]
            else:
                head += [nn.Dropout(dropout), linear, nn.ReLU(inplace=True)]
            width = hidden
        out = nn.Linear(width, num_classes)
        self._init(out, linear_init, 0.0, nonlinearity="linear")
        head.append(out)
        self.classifier = nn.Sequential(*head)

    @staticmethod
    def _init(module: nn.Conv2d | nn.Linear, how: str, bias: float, nonlinearity: str = "relu") -> None:
        if how == "paper":
            nn.init.normal_(module.weight, mean=0.0, std=0.01)
            nn.init.constant_(module.bias, bias)
        elif how == "kaiming":
            if nonlinearity == "relu":
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            else:  # the output layer: near-zero logits, so the first loss is ln(classes)
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
            nn.init.constant_(module.bias, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)

    def extra_repr(self) -> str:
        return f"variant={self.spec.name}, in_channels={self.in_channels}, input_size={self.input_size}"


class FastLRN(nn.Module):
    """Local response normalisation (paper section 3.3), computed cheaply.

    b_c = a_c * (k + alpha/n * sum_{c' in window(c)} a_c'^2) ** -beta

    The same numbers as ``nn.LocalResponseNorm(size, alpha, beta, k)`` (which,
    like Caffe, divides alpha by n = size), but the channel-window sum is a 1x1
    convolution with a banded 0/1 matrix (a matmul, fast in either memory
    format) and the backward pass is written out, so autograd keeps three
    tensors instead of a chain of elementwise temporaries. PyTorch's version
    costs about a third of an LRN variant's training step on the CPU; this one
    is 2-3x cheaper (bench/README.md).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def _channel_band(channels: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """(C, C, 1, 1) weight whose row c sums channels c - size//2 .. c + (size-1)//2."""
    idx = torch.arange(channels, device=like.device)
    offset = idx[None, :] - idx[:, None]
    band = (offset >= -(size // 2)) & (offset <= (size - 1) // 2)
    return band.to(like.dtype).view(channels, channels, 1, 1)


class _LRNFunction(torch.autograd.Function):
    # Under CUDA autocast the sums of squares and the power run in float32, as
    # autocast does for nn.LocalResponseNorm; the next conv casts back to bf16.
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, x, size, alpha, beta, k):
        band = _channel_band(x.shape[1], size, x)
        denom = torch.nn.functional.conv2d(x * x, band).mul_(alpha / size).add_(k)
        scale = denom.pow(-beta)
        ctx.save_for_backward(x, denom, scale, band)
        ctx.coef = 2.0 * alpha / size * beta
        return x * scale

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        x, denom, scale, band = ctx.saved_tensors
        # d b_c / d a_j = scale_c [c == j] - coef * a_c a_j scale_c / denom_c, j in window(c)
        inner = (grad * x).mul_(scale).div_(denom)
        spread = torch.nn.functional.conv2d(inner, band.transpose(0, 1))
        return grad * scale - spread.mul_(x).mul_(ctx.coef), None, None, None, None
