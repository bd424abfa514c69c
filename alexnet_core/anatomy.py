"""Model anatomy: the layers' names, the layer table, the shape trace, input sizes, feature maps.

Everything returns plain DataFrames, dicts or tensors, so the Model page, the
CLI and the tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
import torchinfo
from torch import nn

from .variants import AlexNet, FastLRN, feature_size, get_model, get_spec, list_models, min_input_size, out_size

__all__ = [
    "accepted_sizes",
    "check_input_size",
    "classifier_input",
    "compare_variants",
    "feature_maps",
    "forward_shapes",
    "layer_kind",
    "layer_names",
    "layer_table",
    "min_input_size",
    "shape_trace",
]


# Each layer's kind in a student's words, not PyTorch's class names (FastLRN, Conv2d).
_KINDS = (
    (nn.Conv2d, "convolution"),
    (nn.MaxPool2d, "max pool"),
    ((FastLRN, nn.LocalResponseNorm), "LRN"),
    (nn.BatchNorm2d, "BatchNorm"),
    (nn.ReLU, "ReLU"),
    (nn.Dropout, "dropout"),
    (nn.Linear, "fully connected"),
    (nn.AdaptiveAvgPool2d, "average pool"),
    (nn.Identity, "none"),
)
# The short name of each kind a conv or fc number is put after (relu5, norm1, pool5).
_PREFIXES = ((nn.ReLU, "relu"), ((FastLRN, nn.LocalResponseNorm), "norm"), (nn.BatchNorm2d, "bn"),
             ((nn.MaxPool2d, nn.AvgPool2d), "pool"))


def layer_kind(module: nn.Module | None) -> str:
    """What a layer is, in words: "convolution", "max pool", "LRN", "fully connected"..."""
    if module is None:
        return "flatten"
    return next((kind for cls, kind in _KINDS if isinstance(module, cls)), type(module).__name__)


def layer_names(model: nn.Module) -> dict[str, str]:
    """The name AlexNet's literature gives every leaf layer, by module path: ``{"features.0": "conv1", ...}``.

    Convolutions count conv1, conv2, ... and the fully-connected layers go on
    counting from there (fc6, fc7, fc8 after five convs). A ReLU, LRN (norm),
    BatchNorm (bn) or pool takes the number of the conv or fc before it, as
    Caffe's reference AlexNet names them (pool5 follows conv5); a dropout the number of
    the fc it feeds (drop6 before fc6). The adaptive pool is "avgpool"; any other
    layer keeps its path.
    """
    names: dict[str, str] = {}
    number = 0
    for path, module in model.named_modules():
        if not path or list(module.children()):
            continue
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            number += 1
            names[path] = f"{'conv' if isinstance(module, nn.Conv2d) else 'fc'}{number}"
        elif isinstance(module, nn.Dropout):
            names[path] = f"drop{number + 1}"
        elif path == "avgpool":
            names[path] = "avgpool"
        else:
            prefix = next((word for cls, word in _PREFIXES if isinstance(module, cls)), None)
            names[path] = f"{prefix}{number}" if prefix else path
    return names


def _dotted(info) -> str:
    """Dotted module path (``features.0``) from torchinfo's parent chain."""
    parts = []
    while info is not None and info.depth > 0:
        parts.append(str(info.var_name))
        info = info.parent_info
    return ".".join(reversed(parts))


def _triple(module: nn.Module) -> tuple[str, str, str]:
    def fmt(v):
        if v is None:
            return ""
        if isinstance(v, tuple):
            return str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v))
        return str(v)

    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return fmt(module.kernel_size), fmt(module.stride), fmt(module.padding)
    return "", "", ""


def layer_table(model: nn.Module, input_size: int | None = None, in_channels: int | None = None):
    """One row per leaf layer, from torchinfo's own data, plus totals.

    Returns ``(table, totals)``: the table has columns name (``conv1``,
    ``layer_names``), kind (``layer_kind``), layer (the module path,
    ``features.0``), type (its class), output_shape, params, mult_adds, kernel,
    stride, padding; totals has
    params, trainable_params, mult_adds (summed over leaf rows), weights_mb and
    activations_mb_per_image (every leaf output, float32, one image).
    """
    size = input_size or getattr(model, "input_size", None)
    channels = in_channels or getattr(model, "in_channels", 3)
    if isinstance(model, AlexNet):
        check_input_size(model, size)
    stats = torchinfo.summary(
        model,
        input_size=(1, channels, size, size),
        device="cpu",
        verbose=0,
        col_names=("output_size", "num_params", "mult_adds", "kernel_size"),
    )
    names = layer_names(model)
    rows = []
    for info in stats.summary_list:
        if not info.is_leaf_layer:
            continue
        kernel, stride, padding = _triple(info.module)
        path = _dotted(info)
        rows.append(
            {
                "name": names.get(path, path),
                "kind": layer_kind(info.module),
                "layer": path,
                "type": info.class_name,
                "output_shape": tuple(info.output_size[1:]),
                "params": int(info.num_params),
                "mult_adds": int(info.macs),
                "kernel": kernel,
                "stride": stride,
                "padding": padding,
                "_bytes": int(info.output_bytes),
            }
        )
    table = pd.DataFrame(rows)
    params = sum(p.numel() for p in model.parameters())
    totals = {
        "params": params,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "mult_adds": int(table["mult_adds"].sum()),
        "weights_mb": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
        "activations_mb_per_image": float(table["_bytes"].sum()) / 2**20,
    }
    return table.drop(columns="_bytes"), totals


def check_input_size(model: AlexNet | str, size: int) -> None:
    """Raise ValueError when the variant cannot take a ``size`` x ``size`` input."""
    spec = model.spec if isinstance(model, AlexNet) else get_spec(model)
    minimum = min_input_size(spec)
    if size is None or size < minimum:
        raise ValueError(f"{spec.name} needs at least {minimum}x{minimum} input, got {size}x{size}.")
    if isinstance(model, AlexNet) and spec.adaptive_pool is None and size != model.input_size:
        raise ValueError(
            f"This {spec.name} net was built for {model.input_size}x{model.input_size} input: its "
            f"classifier's input width depends on the image size; build it for {size}x{size} instead."
        )


def accepted_sizes(name: str, up_to: int = 512) -> tuple[int, int]:
    """(smallest, largest shown) side the variant can take: every size from the minimum up works."""
    return min_input_size(name), up_to


def shape_trace(model: AlexNet, input_size: int | None = None) -> pd.DataFrame:
    """Per spatial layer: input and output side with the arithmetic written out.

    Each conv and pool row shows ``floor((W - K + 2P) / S) + 1``; the last row
    is the flatten that feeds the classifier. Columns: name (``layer_names``),
    kind, layer (the module path), type, in_hw, out_hw, out_channels, kernel,
    stride, padding, arithmetic, out_side. Computed from the layers' settings
    alone (no forward pass); the tests check it against real forward shapes. A
    size below the variant's minimum raises ValueError.
    """
    size = input_size or model.input_size
    minimum = min_input_size(model)
    if size < minimum:
        raise ValueError(f"{model.spec.name} needs at least {minimum}x{minimum} input, got {size}x{size}.")
    names = layer_names(model)
    channels = model.in_channels
    rows = []
    for index, module in model.features.named_children():
        layer = f"features.{index}"
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p = (_first(module.kernel_size), _first(module.stride), _first(module.padding))
            new = out_size(size, k, s, p)
            arithmetic = f"floor(({size} - {k} + 2*{p}) / {s}) + 1 = {new}"
            if isinstance(module, nn.Conv2d):
                channels = module.out_channels
            rows.append(_trace_row(names[layer], layer, module, size, new, channels, (k, s, p), arithmetic))
            size = new
        elif isinstance(module, (nn.BatchNorm2d, FastLRN, nn.LocalResponseNorm)):
            rows.append(_trace_row(names[layer], layer, module, size, size, channels, ("", "", ""), "same size"))
    if isinstance(model.avgpool, nn.AdaptiveAvgPool2d):
        target = _first(model.avgpool.output_size)
        rows.append(_trace_row("avgpool", "avgpool", model.avgpool, size, target, channels, ("", "", ""),
                               f"adaptive: any {size} -> {target}"))
        size = target
    width = channels * size * size
    rows.append(_trace_row("flatten", "flatten", None, size, 1, width, ("", "", ""),
                           f"{channels} * {size} * {size} = {width}"))
    return pd.DataFrame(rows)


def _first(v):
    return v[0] if isinstance(v, tuple) else v


def _trace_row(name, layer, module, size_in, size_out, channels, ksp, arithmetic):
    k, s, p = ksp
    return {
        "name": name,
        "kind": layer_kind(module),
        "layer": layer,
        "type": type(module).__name__ if module is not None else "Flatten",
        "in_hw": f"{size_in}x{size_in}",
        "out_hw": f"{size_out}x{size_out}" if module is not None else "",
        "out_channels": channels,
        "kernel": k,
        "stride": s,
        "padding": p,
        "arithmetic": arithmetic,
        "out_side": size_out,
    }


@dataclass(frozen=True)
class ClassifierInput:
    """What a variant's classifier is built for at one input size."""

    size: int  # the input's side
    fc: str  # the paper's name of the first fully-connected layer (fc6)
    fc_path: str  # its module path (classifier.1)
    side: int  # side of the maps the classifier flattens
    channels: int  # how many maps
    inputs: int  # channels * side * side: the first fully-connected layer's input width
    fc_params: int  # that layer's weights and biases
    params: int  # the whole network's


def classifier_input(name: str, size: int, in_channels: int | None = None, num_classes: int = 1000,
                     **options) -> ClassifierInput:
    """The flatten width and parameter counts of variant ``name`` built for ``size`` x ``size``.

    A variant without an adaptive pool (paper, bn) rebuilds its first fc layer
    for the maps a size leaves: 256 * 5 * 5 = 6,400 inputs at 224, 256 * 6 * 6
    = 9,216 at 227. Built on PyTorch's meta device: the shapes and counts
    without the memory or the random initialisation.
    """
    spec = get_spec(name)
    with torch.device("meta"):
        model = get_model(name, in_channels or spec.in_channels, num_classes, size, **options)
    path, first = next((p, m) for p, m in model.named_modules() if isinstance(m, nn.Linear))
    side = spec.adaptive_pool or feature_size(spec, size)
    return ClassifierInput(
        size=size,
        fc=layer_names(model)[path],
        fc_path=path,
        side=side,
        channels=first.in_features // (side * side),
        inputs=first.in_features,
        fc_params=sum(p.numel() for p in first.parameters()),
        params=sum(p.numel() for p in model.parameters()),
    )


def forward_shapes(model: nn.Module, input_size: int, in_channels: int | None = None) -> dict[str, tuple]:
    """Real output shapes (without the batch) of every feature layer, by forward hooks."""
    return {name: tuple(t.shape[1:]) for name, t in _capture(model, _zeros(model, input_size, in_channels)).items()}


@dataclass
class FeatureMaps:
    """Activations of the chosen layers for one image: name -> (C, H, W) tensor."""

    maps: dict[str, torch.Tensor]
    logits: torch.Tensor


def feature_maps(model: nn.Module, image: torch.Tensor, layers: list[str] | None = None) -> FeatureMaps:
    """Activations of one prepared image (C, H, W) at each ReLU after a conv (default) or at ``layers``.

    Hooks are always removed, the model is left in the mode it was in.
    """
    if layers is None:
        layers = _conv_relus(model)
    x = image.unsqueeze(0) if image.dim() == 3 else image
    captured: dict[str, torch.Tensor] = {}
    logits = _run_with_hooks(model, x, layers, captured)
    return FeatureMaps({k: v[0] for k, v in captured.items()}, logits[0])


def response_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """How much a layer's response to one image changed, as ||after - before|| / ||before||
    (0: the same; 1: a change as large as the response itself)."""
    before, after = before.detach().float(), after.detach().float()
    if before.shape != after.shape:
        raise ValueError(f"the two responses differ in shape: {tuple(before.shape)} and {tuple(after.shape)}")
    return float(torch.linalg.vector_norm(after - before) / torch.linalg.vector_norm(before).clamp_min(1e-12))


def _conv_relus(model: nn.Module) -> list[str]:
    """Names of the activation after each conv: what a conv layer 'sees'."""
    names, after_conv = [], False
    for name, module in model.features.named_children():
        if isinstance(module, nn.Conv2d):
            after_conv = True
        elif isinstance(module, nn.ReLU) and after_conv:
            names.append(f"features.{name}")
            after_conv = False
    return names


def _capture(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    layers = [f"features.{n}" for n, _ in model.features.named_children()]
    captured: dict[str, torch.Tensor] = {}
    _run_with_hooks(model, x, layers, captured)
    return captured


def _run_with_hooks(model, x, layers, captured):
    modules = dict(model.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ValueError(f"No layer named {', '.join(missing)}; layers are: {', '.join(n for n in modules if n)}.")
    handles = []
    was_training = model.training
    try:
        for name in layers:
            handles.append(modules[name].register_forward_hook(_store(captured, name)))
        model.eval()
        with torch.no_grad():
            return model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def _store(captured, name):
    def hook(_module, _inputs, output):
        # ReLU(inplace=True) returns the conv's output tensor: clone so later layers can't change it.
        captured[name] = output.detach().clone()

    return hook


def _zeros(model, input_size, in_channels):
    channels = in_channels or getattr(model, "in_channels", 3)
    device = next(model.parameters()).device
    return torch.zeros(1, channels, input_size, input_size, device=device)


def compare_variants(in_channels: int = 3, num_classes: int = 10) -> pd.DataFrame:
    """Every variant side by side at its native input."""
    rows = []
    for name in list_models():
        spec = get_spec(name)
        model = get_model(name, in_channels, num_classes)
        table, totals = layer_table(model, spec.input_size, in_channels)
        rows.append(
            {
                "variant": name,
                "title": spec.title,
                "native_input": spec.input_size,
                "min_input": min_input_size(name),
                "params": totals["params"],
                "mult_adds": totals["mult_adds"],
                "conv_layers": int((table["type"] == "Conv2d").sum()),
                "norm": "BatchNorm" if spec.batch_norm else ("LRN" if (table["type"] == "FastLRN").any() else "none"),
                "source": spec.source,
            }
        )
    return pd.DataFrame(rows)


def training_memory_mb(totals: dict, batch_size: int, optimizer_states: int = 1) -> float:
    """About how much memory a training step takes, from ``layer_table``'s totals.

    Every layer's output is kept for the backward pass and gets a gradient of the
    same size (2x the activations per image, times the batch); the weights have a
    gradient and ``optimizer_states`` more copies (SGD with momentum 1, Adam 2). A
    rough lower bound: the framework's own memory comes on top.
    """
    activations = 2 * totals["activations_mb_per_image"] * batch_size
    return activations + totals["weights_mb"] * (2 + optimizer_states)
