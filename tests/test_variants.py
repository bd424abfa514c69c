"""The AlexNet family, tested from the registry: every variant, every shape."""

import pytest
import torch
import torchvision
from torch import nn

from alexnet_core.variants import FastLRN, get_model, get_spec, list_models, min_input_size


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry_lists_the_seven_variants():
    assert list_models() == ["paper", "torchvision", "lrn", "bn", "cifar", "mnist", "layered"]
    for name in list_models():
        spec = get_spec(name)
        assert spec.description and spec.source
        assert spec.input_size >= min_input_size(name)


@pytest.mark.parametrize("bad", ["alexnet", "", "Paper", None])
def test_unknown_variant_lists_the_valid_names(bad):
    with pytest.raises(ValueError, match="paper, torchvision, lrn, bn, cifar, mnist, layered"):
        get_model(bad)


def test_unknown_option_is_refused():
    with pytest.raises(ValueError, match="no option"):
        get_model("torchvision", groups=2)
    with pytest.raises(ValueError, match="groups must be 1 or 2"):
        get_model("paper", groups=3)


@pytest.mark.parametrize("num_classes", [10, 1000])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", list_models())
def test_every_variant_trains(name, in_channels, num_classes):
    spec = get_spec(name)
    model = get_model(name, in_channels, num_classes)
    x = torch.randn(2, in_channels, spec.input_size, spec.input_size)
    y = torch.randint(0, num_classes, (2,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    model.train()
    logits = model(x)
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()
    loss = nn.functional.cross_entropy(logits, y)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient on {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient on {pname}"
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_torchvision_variant_is_torchvision_alexnet():
    reference = torchvision.models.alexnet(num_classes=37)
    ours = get_model("torchvision", 3, 37)
    ours.load_state_dict(reference.state_dict(), strict=True)
    reference.eval(), ours.eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in reference.named_parameters()]


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_paper_parameter_counts():
    assert _count(get_model("paper", 3, 1000)) == 62_378_344
    assert _count(get_model("paper", 3, 1000, groups=2)) == 60_965_224  # the paper's 60 million


def test_paper_initialisation():
    model = get_model("paper", 3, 1000)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    ones = {1, 3, 4}  # conv2, conv4, conv5
    for i, conv in enumerate(convs):
        assert torch.all(conv.bias == (1.0 if i in ones else 0.0)), f"conv{i + 1} bias"
        assert abs(conv.weight.std().item() - 0.01) < 0.002
        assert abs(conv.weight.mean().item()) < 0.002
    assert torch.all(linears[0].bias == 1) and torch.all(linears[1].bias == 1)
    assert torch.all(linears[2].bias == 0)
    assert abs(linears[0].weight.std().item() - 0.01) < 0.0005


def test_paper_has_lrn_after_conv1_and_conv2_and_overlapping_pools():
    kinds = [type(m).__name__ for m in get_model("paper").features]
    assert kinds[:4] == ["Conv2d", "ReLU", "FastLRN", "MaxPool2d"]
    assert kinds[4:8] == ["Conv2d", "ReLU", "FastLRN", "MaxPool2d"]
    pools = [m for m in get_model("paper").features if isinstance(m, nn.MaxPool2d)]
    assert all(p.kernel_size == 3 and p.stride == 2 for p in pools)


def test_layered_is_the_survey_posts_network():
    model = get_model("layered", 3, 1000)
    assert _count(model) == 62_071_144
    kinds = [type(m).__name__ for m in model.features]
    assert kinds[:4] == ["Conv2d", "ReLU", "MaxPool2d", "FastLRN"]  # LRN after the pool
    assert kinds[4:8] == ["Conv2d", "ReLU", "MaxPool2d", "FastLRN"]
    lrns = [m for m in model.features if isinstance(m, FastLRN)]
    assert all((m.size, m.alpha, m.beta, m.k) == (5, 1e-4, 0.75, 1.0) for m in lrns)  # the post's hand-written LRN
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 1, 1]  # conv2 alone in two groups
    assert [type(m).__name__ for m in model.classifier] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]  # dropout after FC + ReLU
    assert model(torch.randn(1, 3, 227, 227)).shape == (1, 1000)


def test_every_variant_takes_a_posts_dropout_and_linear_initialisation():
    for name in list_models():
        model = get_model(name, dropout=0.0, linear_init="default")
        assert all(m.p == 0 for m in model.modules() if isinstance(m, nn.Dropout)), name
    default = [m for m in get_model("paper", 3, 10, linear_init="default").classifier if isinstance(m, nn.Linear)]
    assert not torch.all(default[0].bias == 1)  # PyTorch's own init, not the paper's bias 1
    assert _count(get_model("paper", 3, 1000, dropout=0.2)) == 62_378_344
    with pytest.raises(ValueError, match="dropout must be a probability"):
        get_model("mnist", dropout=1.0)
    with pytest.raises(ValueError, match="linear_init must be one of default, paper, kaiming"):
        get_model("mnist", linear_init="xavier")


def test_no_inplace_dropout_after_relu():
    for name in list_models():
        for module in get_model(name).modules():
            if isinstance(module, nn.Dropout):
                assert not module.inplace, name


def test_mnist_has_relu_after_every_conv_and_hidden_linear():
    model = get_model("mnist", 1, 10)
    for seq in (model.features, model.classifier):
        layers = list(seq)
        for i, layer in enumerate(layers):
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and layer is not layers[-1]:
                assert isinstance(layers[i + 1], nn.ReLU), f"no ReLU after {layer}"


def test_bn_has_batchnorm_after_every_conv_and_no_lrn():
    layers = list(get_model("bn").features)
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d):
            assert isinstance(layers[i + 1], nn.BatchNorm2d)
    assert not any(isinstance(m, FastLRN) for m in layers)


def test_lrn_variant_is_torchvision_layout_with_lrn():
    lrn = get_model("lrn", 3, 10)
    tv = get_model("torchvision", 3, 10)
    widths = lambda m: [c.out_channels for c in m.features if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert widths(lrn) == widths(tv) == [64, 192, 384, 256, 256]
    assert sum(isinstance(m, FastLRN) for m in lrn.features) == 2


@pytest.mark.parametrize("size,channels", [(5, 3), (4, 8), (3, 1), (5, 96)])
def test_fast_lrn_equals_pytorch_lrn(size, channels):
    x = (torch.randn(2, channels, 5, 6, dtype=torch.double) * 20).requires_grad_()
    ours = FastLRN(size, alpha=1e-3, beta=0.75, k=2.0)
    theirs = nn.LocalResponseNorm(size, alpha=1e-3, beta=0.75, k=2.0)
    torch.testing.assert_close(ours(x), theirs(x))
    grad = torch.randn(2, channels, 5, 6, dtype=torch.double)
    (g1,) = torch.autograd.grad(ours(x), x, grad)
    (g2,) = torch.autograd.grad(theirs(x), x, grad)
    torch.testing.assert_close(g1, g2)
    assert torch.autograd.gradcheck(FastLRN(size, 1e-1, 0.75, 2.0), (x[:1, :, :2, :2].detach().requires_grad_(),))


def test_fast_lrn_in_channels_last():
    x = torch.randn(2, 16, 7, 7).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(FastLRN()(x), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_fast_lrn_under_cuda_autocast_runs_in_float32():
    # CUDA steps run under bf16 autocast: a bf16 activation goes through the
    # LRN in float32 and its gradient comes back as bf16, close to float32's
    x = (torch.randn(4, 16, 9, 9, device="cuda") * 20).relu().bfloat16().requires_grad_()
    grad = torch.randn(4, 16, 9, 9, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = FastLRN()(x)
    (g,) = torch.autograd.grad(out, x, grad)
    assert out.dtype == torch.float32 and g.dtype == torch.bfloat16
    x32 = x.detach().float().requires_grad_()
    ref = nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(x32)
    (g32,) = torch.autograd.grad(ref, x32, grad)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(g.float(), g32, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("name", list_models())
def test_input_below_minimum_is_refused_with_the_minimum_named(name):
    minimum = min_input_size(name)
    get_model(name, input_size=minimum)
    with pytest.raises(ValueError, match=f"{name} needs at least {minimum}x{minimum} input, got"):
        get_model(name, input_size=minimum - 1)


def test_torchvision_minimum_is_63():
    assert min_input_size("torchvision") == 63
    with pytest.raises(ValueError, match="torchvision needs at least 63x63 input, got 32x32"):
        get_model("torchvision", input_size=32)
