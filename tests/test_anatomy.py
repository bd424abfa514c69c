"""Layer table, shape trace, minimum sizes and feature maps against real forwards."""

import re

import pytest
import torch
from torch import nn

from alexnet_core.anatomy import (
    check_input_size,
    classifier_input,
    compare_variants,
    feature_maps,
    response_change,
    forward_shapes,
    layer_kind,
    layer_names,
    layer_table,
    shape_trace,
)
from alexnet_core.variants import get_model, get_spec, list_models, min_input_size


def _sizes(name):
    spec = get_spec(name)
    minimum = min_input_size(name)
    return sorted({minimum, minimum + 1, spec.input_size, spec.input_size + 3})


@pytest.mark.parametrize("name", list_models())
def test_shape_trace_equals_forward_shapes(name):
    for size in _sizes(name):
        model = get_model(name, 3, 10, input_size=size)
        trace = shape_trace(model, size).set_index("layer")
        real = forward_shapes(model, size)
        spatial = trace.drop(index=[i for i in trace.index if not i.startswith("features.")])
        assert len(spatial) > 0
        for layer, row in spatial.iterrows():
            c, h, w = real[layer]
            assert (row["out_side"], row["out_side"], row["out_channels"]) == (h, w, c), (name, size, layer)
        # the flatten width is what the classifier really takes
        first_linear = next(m for m in model.classifier if isinstance(m, nn.Linear))
        assert trace.loc["flatten", "out_channels"] == first_linear.in_features
        # and the model runs at that size
        assert model(torch.zeros(1, 3, size, size)).shape == (1, 10)


@pytest.mark.parametrize("name", list_models())
def test_below_minimum_is_refused(name):
    minimum = min_input_size(name)
    model = get_model(name, 3, 10, input_size=minimum)
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}"):
        shape_trace(model, minimum - 1)
    with pytest.raises(ValueError, match=f"at least {minimum}x{minimum}"):
        check_input_size(name, minimum - 1)
    # the minimum really is the smallest that works for a full forward pass
    with pytest.raises(RuntimeError):
        get_model("torchvision").features(torch.zeros(1, 3, 62, 62))


def test_224_vs_227_for_the_paper_net():
    at_224 = shape_trace(get_model("paper", input_size=224)).set_index("layer")
    at_227 = shape_trace(get_model("paper", input_size=227)).set_index("layer")
    assert at_224.loc["features.0", "arithmetic"] == "floor((224 - 11 + 2*0) / 4) + 1 = 54"
    assert at_227.loc["features.0", "arithmetic"] == "floor((227 - 11 + 2*0) / 4) + 1 = 55"
    assert at_224.loc["features.14", "out_hw"] == "5x5"
    assert at_227.loc["features.14", "out_hw"] == "6x6"
    assert at_227.loc["flatten", "out_channels"] == 9216


def test_layer_table_matches_torch():
    model = get_model("paper", 3, 1000)
    table, totals = layer_table(model, 227, 3)
    assert totals["params"] == 62_378_344 == table["params"].sum()
    conv1 = table.set_index("layer").loc["features.0"]
    assert conv1["output_shape"] == (96, 55, 55)
    assert (conv1["kernel"], conv1["stride"], conv1["padding"]) == ("11", "4", "0")
    # conv1 mult-adds: 96 filters x (3*11*11 weights + bias) x 55*55 positions
    assert conv1["mult_adds"] == 96 * (3 * 11 * 11 + 1) * 55 * 55  # torchinfo counts the bias add
    assert totals["mult_adds"] == table["mult_adds"].sum()
    assert totals["weights_mb"] == pytest.approx(62_378_344 * 4 / 2**20)
    assert totals["activations_mb_per_image"] > 1
    assert "classifier.6" in set(table["layer"])


def test_layer_table_refuses_a_size_the_model_was_not_built_for():
    with pytest.raises(ValueError, match="built for 227x227"):
        layer_table(get_model("paper"), 224)
    with pytest.raises(ValueError, match="at least 63x63"):
        layer_table(get_model("torchvision"), 32)


def test_feature_maps_hooks_are_removed_and_mode_restored():
    model = get_model("mnist", 1, 10)
    model.train()
    image = torch.rand(1, 28, 28)
    maps = feature_maps(model, image)
    assert list(maps.maps) == ["features.1", "features.4", "features.7", "features.9", "features.11"]
    assert maps.maps["features.1"].shape == (32, 28, 28)
    assert (maps.maps["features.1"] >= 0).all()  # after a ReLU
    assert maps.logits.shape == (10,)
    assert model.training
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ValueError, match="No layer named nope"):
        feature_maps(model, image, ["nope"])
    assert all(not m._forward_hooks for m in model.modules())


def test_feature_maps_equal_a_plain_forward():
    model = get_model("cifar", 3, 10).eval()
    image = torch.rand(3, 32, 32)
    maps = feature_maps(model, image, ["features.0"])
    with torch.no_grad():
        torch.testing.assert_close(maps.maps["features.0"], model.features[0](image[None])[0])
        torch.testing.assert_close(maps.logits, model(image[None])[0])


def test_compare_variants_has_every_variant():
    table = compare_variants(3, 10)
    assert list(table["variant"]) == list_models()
    assert (table["params"] > 0).all() and (table["min_input"] <= table["native_input"]).all()


def test_response_change_is_relative_to_the_response_before():
    before = torch.rand(4, 5, 5) + 0.1
    assert response_change(before, before.clone()) == 0.0
    assert response_change(before, 2 * before) == pytest.approx(1.0)
    assert response_change(before, before + 0.5 * before) == pytest.approx(0.5)
    assert response_change(torch.zeros(2, 3, 3), torch.ones(2, 3, 3)) > 1e6  # nothing before: anything is a huge change
    with pytest.raises(ValueError, match="shape"):
        response_change(before, before[:2])


def test_training_memory_grows_with_the_batch_and_the_optimizer():
    from alexnet_core.anatomy import training_memory_mb

    totals = {"activations_mb_per_image": 7.4, "weights_mb": 222.5}  # the paper net at 227
    sgd_128 = training_memory_mb(totals, 128, optimizer_states=1)
    assert sgd_128 == pytest.approx(2 * 7.4 * 128 + 3 * 222.5)  # about 2.6 GB: 3.1 GB was measured with PyTorch's own
    assert training_memory_mb(totals, 4096, 1) > 24 * 1024  # the form's largest batch cannot fit a 24 GB machine
    assert training_memory_mb(totals, 128, optimizer_states=2) > sgd_128


def test_available_memory_is_read_from_the_system():
    from alexnet_core.device import available_memory_mb

    mb = available_memory_mb()
    assert mb is None or 0 < mb < 2**30


@pytest.mark.parametrize("name, options", [(name, {}) for name in list_models()] + [("paper", {"groups": 2})])
def test_every_layer_has_its_usual_name(name, options):
    """Students read conv1..conv5, pool, LRN (norm) and fc6..fc8, never features.3 or FastLRN."""
    model = get_model(name, 3, 10, **options)
    names = layer_names(model)
    leaves = [path for path, m in model.named_modules() if path and not list(m.children())]
    assert list(names) == leaves  # every layer, in order
    assert len(set(names.values())) == len(names), names  # no two alike
    assert not any("." in n for n in names.values()), names  # no module path left
    convs = [names[p] for p, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [names[p] for p, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert convs == [f"conv{i}" for i in range(1, len(convs) + 1)]
    assert linears == [f"fc{i}" for i in range(len(convs) + 1, len(convs) + len(linears) + 1)]
    assert linears == ["fc6", "fc7", "fc8"]  # every variant has five convs and three linears
    order = list(names.values())
    number = {n: re.sub(r"\D", "", n) for n in order}
    for i, n in enumerate(order):  # a ReLU, norm, bn or pool carries the number of the conv or fc before it
        if n.startswith(("relu", "norm", "bn", "pool")):
            before = next(b for b in reversed(order[:i]) if b.startswith(("conv", "fc")))
            assert number[n] == number[before], (n, before)
        if n.startswith("drop"):  # a dropout the number of the fc it feeds
            assert number[n] == number[next(a for a in order[i:] if a.startswith("fc"))], n
    kinds = {layer_kind(m) for m in model.modules() if not list(m.children())}
    assert {"convolution", "max pool", "ReLU", "dropout", "fully connected"} <= kinds
    assert not kinds & {"Conv2d", "FastLRN", "Linear", "MaxPool2d"}


def test_the_paper_net_reads_as_in_the_literature():
    names = layer_names(get_model("paper"))
    assert list(names.values()) == [
        "conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2", "pool2", "conv3", "relu3", "conv4", "relu4",
        "conv5", "relu5", "pool5", "avgpool", "drop6", "fc6", "relu6", "drop7", "fc7", "relu7", "fc8"]
    assert names["features.2"] == "norm1" and layer_kind(get_model("paper").features[2]) == "LRN"


def test_layer_table_and_shape_trace_carry_the_names_and_the_paths():
    model = get_model("paper", 3, 10)
    table, _ = layer_table(model, 227, 3)
    row = table.set_index("name").loc["norm1"]
    assert (row["layer"], row["type"], row["kind"]) == ("features.2", "FastLRN", "LRN")
    assert table.set_index("name").loc["fc6", "layer"] == "classifier.1"
    trace = shape_trace(model, 227).set_index("name")
    assert list(trace.index) == ["conv1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3", "conv4", "conv5",
                                 "pool5", "flatten"]
    assert trace.loc["pool5", "layer"] == "features.14" and trace.loc["pool5", "kind"] == "max pool"


def test_at_224_the_paper_nets_classifier_takes_6400_inputs_instead_of_9216():
    at_224, at_227 = classifier_input("paper", 224), classifier_input("paper", 227)
    assert (at_224.channels, at_224.side, at_224.inputs) == (256, 5, 6_400)
    assert (at_227.channels, at_227.side, at_227.inputs) == (256, 6, 9_216)
    assert (at_224.fc, at_224.fc_path) == ("fc6", "classifier.1")
    # only fc6 changes: (9,216 - 6,400) inputs, each with 4,096 weights
    assert at_227.params - at_224.params == at_227.fc_params - at_224.fc_params == (9_216 - 6_400) * 4_096
    # an adaptive pool makes 6x6 maps of either size: the same classifier
    tv_224, tv_227 = classifier_input("torchvision", 224), classifier_input("torchvision", 227)
    assert tv_224.inputs == tv_227.inputs == 9_216 and tv_224.params == tv_227.params


@pytest.mark.parametrize("name", list_models())
def test_classifier_input_counts_what_the_built_network_holds(name):
    spec = get_spec(name)
    size = spec.input_size + 5
    model = get_model(name, 3, 7, input_size=size)
    first = next(m for m in model.classifier if isinstance(m, nn.Linear))
    fit = classifier_input(name, size, 3, 7)
    assert fit.inputs == first.in_features == shape_trace(model, size).set_index("layer").loc["flatten", "out_channels"]
    assert fit.params == sum(p.numel() for p in model.parameters())
    assert fit.fc_params == sum(p.numel() for p in first.parameters())
