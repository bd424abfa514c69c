"""Model anatomy: the layer table, the shape trace, input sizes, feature maps.

Everything returns plain DataFrames, dicts or tensors, so the Model page, the
CLI and the tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
import torchinfo
from torch import nn

from .variants import AlexNet, FastLRN, get_model, get_spec, list_models, min_input_size, out_size

__all__ = [
    "accepted_sizes",
    "check_input_size",
    "compare_variants",
    "feature_maps",
    "forward_shapes",
    "layer_table",
    "min_input_size",
    "shape_trace",
]


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

    Returns ``(table, totals)``: the table has columns layer (dotted name),
    type, output_shape, params, mult_adds, kernel, stride, padding; totals has
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
    rows = []
    for info in stats.summary_list:
        if not info.is_leaf_layer:
            continue
        kernel, stride, padding = _triple(info.module)
        rows.append(
            {
                "layer": _dotted(info),
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
    is the flatten that feeds the classifier. Computed from the layers'
    settings alone (no forward pass); the tests check it against real forward
    shapes. A size below the variant's minimum raises ValueError.
    """
    size = input_size or model.input_size
    minimum = min_input_size(model)
    if size < minimum:
        raise ValueError(f"{model.spec.name} needs at least {minimum}x{minimum} input, got {size}x{size}.")
    channels = model.in_channels
    rows = []
    for name, module in model.features.named_children():
        layer = f"features.{name}"
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p = (_first(module.kernel_size), _first(module.stride), _first(module.padding))
            new = out_size(size, k, s, p)
            arithmetic = f"floor(({size} - {k} + 2*{p}) / {s}) + 1 = {new}"
            if isinstance(module, nn.Conv2d):
                channels = module.out_channels
            rows.append(_trace_row(layer, module, size, new, channels, k, s, p, arithmetic))
            size = new
        elif isinstance(module, (nn.BatchNorm2d, FastLRN, nn.LocalResponseNorm)):
            rows.append(_trace_row(layer, module, size, size, channels, "", "", "", "same size"))
    if isinstance(model.avgpool, nn.AdaptiveAvgPool2d):
        target = _first(model.avgpool.output_size)
        rows.append(
            _trace_row("avgpool", model.avgpool, size, target, channels, "", "", "", f"adaptive: any {size} -> {target}")
        )
        size = target
    rows.append(
        _trace_row(
            "flatten", None, size, 1, channels * size * size, "", "", "", f"{channels} * {size} * {size} = {channels * size * size}"
        )
    )
    return pd.DataFrame(rows)


def _first(v):
    return v[0] if isinstance(v, tuple) else v


def _trace_row(layer, module, size_in, size_out, channels, k, s, p, arithmetic):
    return {
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
