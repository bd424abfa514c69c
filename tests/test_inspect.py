"""alexnet_core.insight: filters, nearest training images, Grad-CAM, the test-set map and
what flipped, on small nets and data the tests make (and one tiny real run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from alexnet_core import checkpoints, datasets, insight, training, variants
from alexnet_core.predict import tile_image
from alexnet_core.runlogs import prediction_path, read_predictions_file
from tests.fixtures import tiny_config


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """Decoded datasets cached in one temporary folder for the module, never in the repo."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALEXNET_LAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def small_dataset(n_train: int = 40, n_test: int = 10, channels: int = 1, size: int = 12, seed: int = 0):
    """A Dataset of random uint8 images; test image 0 is also training image 7."""
    g = torch.Generator().manual_seed(seed)
    train_x = torch.randint(0, 256, (n_train, channels, size, size), generator=g, dtype=torch.uint8)
    test_x = torch.randint(0, 256, (n_test, channels, size, size), generator=g, dtype=torch.uint8)
    test_x[0] = train_x[7]
    return datasets.Dataset(
        name="tiny", classes=[str(i) for i in range(10)], train_x=train_x, train_y=torch.arange(n_train) % 10,
        test_x=test_x, test_y=torch.arange(n_test) % 10, mean=(0.5,) * channels, std=(0.25,) * channels, source="test",
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real two-epoch run of the mnist net on digits (in-process, a few seconds)."""
    run_dir = tmp_path_factory.mktemp("run")
    result = training.train(tiny_config(epochs=2), run_dir)
    assert result["state"] == "finished", result["error"]
    return run_dir


# --------------------------------------------------------------------------- every variant


@pytest.mark.parametrize("name", variants.list_models())
def test_shapes_for_every_variant_on_a_small_input(name):
    spec = variants.get_spec(name)
    size = variants.min_input_size(name)
    torch.manual_seed(0)
    model = variants.get_model(name, in_channels=spec.in_channels, num_classes=5, input_size=size).eval()
    x_uint8 = torch.randint(0, 256, (3, spec.in_channels, size, size), dtype=torch.uint8)
    mean, std = (0.5,) * spec.in_channels, (0.25,) * spec.in_channels

    kernels = insight.conv1_kernels(model)
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert kernels.shape == tuple(first.weight.shape) and kernels.dtype == np.float32
    grid = insight.kernel_grid(kernels, colour=spec.in_channels == 3)
    assert grid.ndim == 3 and grid.shape[2] == 3 and grid.dtype == np.uint8

    features = insight.hidden_features(model, x_uint8, mean=mean, std=std, batch_size=2)
    assert features.shape == (3, spec.hidden[-1]) and features.dtype == torch.float16
    assert torch.isfinite(features.float()).all() and (features >= 0).all()  # after the last hidden ReLU

    x = insight.model_input(model, x_uint8, mean=mean, std=std)
    cams = insight.grad_cam(model, x, torch.tensor([[0, 1], [2, 3], [4, 0]]))
    assert cams.ndim == 4 and cams.shape[:2] == (3, 2) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1
    assert insight.grad_cam(model, x, torch.tensor([0, 1, 2])).shape == (3, *cams.shape[2:])
    tile = insight.heat_tile(x_uint8[0], cams[0, 0], False, target=64)
    assert tile.shape == tile_image(x_uint8[0], False, target=64).shape


# --------------------------------------------------------------------------- conv1's filters


def test_kernel_grid_shares_one_scale_with_grey_at_zero():
    kernels = np.zeros((2, 3, 2, 2), np.float32)
    kernels[0, 0, 0, 0] = 2.0  # the largest weight: full red
    kernels[1, 2, 1, 1] = -1.0  # half as strong, negative blue: blue darker than grey
    grid = insight.kernel_grid(kernels, colour=True, cell=2, pad=1, columns=2)
    first, second = grid[1:3, 1:3], grid[1:3, 4:6]
    assert tuple(first[0, 0]) == (255, 128, 128) and tuple(first[1, 1]) == (128, 128, 128)
    assert tuple(second[1, 1]) == (128, 128, 64)  # -1 on the scale of 2: a quarter below grey
    first = insight.kernel_grid(kernels, colour=True, cell=2, pad=1, columns=2, count=1)[1:3, 1:3]
    assert first.shape == (2, 2, 3) and tuple(first[0, 0]) == (255, 128, 128)
    only_second = insight.kernel_grid(kernels[1:], colour=True, cell=2, pad=1, columns=2)
    assert tuple(only_second[2, 2]) == (128, 128, 0)  # alone it sets its own scale
    grey = insight.kernel_grid(kernels, colour=False, cell=2, pad=1, columns=2)
    assert tuple(grey[1, 1]) == (255, 255, 255) and tuple(grey[2, 5]) == (64, 64, 64)


def test_a_run_keeps_conv1_for_its_start_and_every_epoch(tiny_run):
    assert insight.kernel_epochs(tiny_run) == [0, 1, 2]
    start = training.initial_model(tiny_config(epochs=2), 10)
    np.testing.assert_array_equal(insight.load_kernels(tiny_run, 0), insight.conv1_kernels(start))
    final = checkpoints.model_from_checkpoint(checkpoints.load_checkpoint(tiny_run / "last.pt"))
    np.testing.assert_array_equal(insight.load_kernels(tiny_run, 2), insight.conv1_kernels(final))
    assert not np.array_equal(insight.load_kernels(tiny_run, 0), insight.load_kernels(tiny_run, 1))


def test_missing_or_damaged_kernels_say_so(tmp_path):
    assert insight.kernel_epochs(tmp_path) == []
    (tmp_path / "predictions").mkdir()
    insight.kernel_path(tmp_path, 3).write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="epoch 3"):
        insight.load_kernels(tmp_path, 3)
    with pytest.raises(ValueError, match="epoch 4"):
        insight.load_kernels(tmp_path, 4)


# --------------------------------------------------------------------------- nearest training images


def test_a_test_image_that_is_also_a_training_image_is_its_own_nearest_at_distance_0():
    ds = small_dataset()
    torch.manual_seed(0)
    model = variants.get_model("mnist", 1, 10, 12).eval()
    train = insight.hidden_features(model, ds.train_x, mean=ds.mean, std=ds.std, batch_size=16)
    test = insight.hidden_features(model, ds.test_x, mean=ds.mean, std=ds.std, batch_size=4)
    found = insight.nearest(train, test[0], k=3, labels=ds.train_y)
    assert list(found.columns) == ["index", "label", "distance"]
    assert found["index"][0] == 7 and found["label"][0] == 7 and found["distance"][0] == 0.0
    assert found["distance"].is_monotonic_increasing and found["distance"][1] > 0


def test_nearest_is_exact_and_sorted():
    train = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float16)
    found = insight.nearest(train, torch.tensor([0.0, 0.0]), k=10)
    assert found["index"].tolist() == [0, 2, 3, 1] and found["distance"].tolist() == [0.0, 1.0, 2.0, 5.0]


def test_nearest_among_many_rows_matches_every_difference():
    g = torch.Generator().manual_seed(1)
    train = torch.rand(3000, 64, generator=g).half()
    for query in (torch.rand(64, generator=g), train[1234].float()):
        found = insight.nearest(train, query, k=12)
        every = (train.float() - query).square().sum(dim=1).sqrt()
        values, index = torch.sort(every, stable=True)
        assert found["index"].tolist() == index[:12].tolist()
        np.testing.assert_allclose(found["distance"], values[:12].numpy(), rtol=1e-6)
    assert found["index"][0] == 1234 and found["distance"][0] == 0.0
    features = insight.Features(train, train[:5], 1, 0.1, "best", Path("."), (1, 2, 3))
    pd.testing.assert_frame_equal(features.closest(3, 4), insight.nearest(train, train[3], 4))


def test_run_features_are_computed_once_and_cached_in_the_run_folder(tiny_run, monkeypatch):
    ds = datasets.load_dataset("digits")
    assert not insight.features_ready(tiny_run, ds)
    seen = []
    features = insight.run_features(tiny_run, ds, progress=lambda fraction, text: seen.append((fraction, text)))
    assert features.train.shape == (len(ds.train_y), 512) and features.test.shape == (len(ds.test_y), 512)
    assert features.epoch in (1, 2) and features.seconds > 0
    assert seen and seen[-1][0] == pytest.approx(1.0) and "training images" in seen[-1][1]
    assert all(b >= a for (a, _), (b, _) in zip(seen, seen[1:]))
    assert insight.features_ready(tiny_run, ds) and insight.features_path(tiny_run).is_file()
    assert not list(tiny_run.glob(".*.tmp"))

    def never(*args, **kwargs):
        raise AssertionError("computed again")

    monkeypatch.setattr(insight, "hidden_features", never)
    again = insight.run_features(tiny_run, ds)
    assert torch.equal(again.train, features.train) and torch.equal(again.test, features.test)
    # another dataset's images (other sizes) are not taken for this one's
    assert not insight.features_ready(tiny_run, small_dataset())


def test_a_new_checkpoint_computes_the_features_again(tmp_path):
    ds = small_dataset()
    torch.manual_seed(0)
    model = variants.get_model("mnist", 1, 10, 12)
    state = {"model": model.state_dict(), "model_args": {"in_channels": 1, "num_classes": 10, "input_size": 12},
             "config": tiny_config().to_dict(), "mean": list(ds.mean), "std": list(ds.std), "epoch": 1}
    checkpoints.save_checkpoint(state, tmp_path / "best.pt")
    first = insight.run_features(tmp_path, ds)
    assert first.epoch == 1 and insight.features_ready(tmp_path, ds)
    with torch.no_grad():
        model.classifier[-3].bias.add_(1.0)  # the last hidden layer's bias
    checkpoints.save_checkpoint({**state, "model": model.state_dict(), "epoch": 2}, tmp_path / "best.pt")
    assert not insight.features_ready(tmp_path, ds)
    second = insight.run_features(tmp_path, ds)
    assert second.epoch == 2 and not torch.equal(first.train, second.train)


def test_features_of_a_run_without_weights_raise(tmp_path):
    with pytest.raises(FileNotFoundError):
        insight.run_features(tmp_path, small_dataset())


# --------------------------------------------------------------------------- Grad-CAM


class RegionNet(nn.Module):
    """features -> avgpool -> classifier, as the AlexNet family; class 1's score reads only
    the top-left quarter of the feature map (the bright-pixel channel), class 0 nothing."""

    def __init__(self, size: int = 8, pool: str = "region"):
        super().__init__()
        conv = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            conv.bias.zero_()
        self.features = nn.Sequential(conv, nn.ReLU(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1) if pool == "global" else nn.Identity()
        width = 2 if pool == "global" else 2 * size * size
        head = nn.Linear(width, 2)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            if pool == "global":
                head.weight[1, 0] = 1.0
            else:
                mask = torch.zeros(2, size, size)
                mask[0, : size // 2, : size // 2] = 1.0
                head.weight[1] = mask.flatten()
        self.classifier = nn.Sequential(head)


def test_grad_cam_highlights_the_region_the_output_depends_on():
    x = torch.full((1, 1, 8, 8), -1.0)
    x[0, 0, 1:3, 1:3] = 1.0  # the object, inside the region the head reads
    cam = insight.grad_cam(RegionNet(), x, torch.tensor([1]))[0]
    assert cam.shape == (8, 8) and cam[1:3, 1:3].min() == pytest.approx(1.0)
    outside = np.ones((8, 8), bool)
    outside[1:3, 1:3] = False
    assert cam[outside].max() == 0.0
    assert insight.grad_cam(RegionNet(), x, torch.tensor([0]))[0].max() == 0.0  # nothing speaks for class 0


def test_the_per_position_form_ignores_a_decoy_outside_the_region():
    x = torch.full((1, 1, 8, 8), -1.0)
    x[0, 0, 1:3, 1:3] = 1.0
    x[0, 0, 5:7, 5:7] = 1.0  # the same object where the head never looks
    per_position = insight.grad_cam(RegionNet(), x, torch.tensor([1]), average=False)[0]
    assert per_position[1:3, 1:3].min() == pytest.approx(1.0) and per_position[5:7, 5:7].max() == 0.0
    averaged = insight.grad_cam(RegionNet(), x, torch.tensor([1]))[0]
    assert averaged[5:7, 5:7].min() == pytest.approx(1.0)  # Grad-CAM's channel average cannot tell them apart


def test_with_a_global_average_head_both_forms_agree():
    x = torch.randn(3, 1, 8, 8)
    net = RegionNet(pool="global")
    np.testing.assert_allclose(insight.grad_cam(net, x, torch.tensor([1, 1, 1])),
                               insight.grad_cam(net, x, torch.tensor([1, 1, 1]), average=False), atol=1e-6)


def test_grad_cam_leaves_the_model_as_it_found_it():
    net = RegionNet().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    insight.grad_cam(net, torch.randn(2, 1, 8, 8), torch.tensor([1, 0]))
    assert net.training and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_heat_tile_keeps_the_frame_and_colours_the_picture():
    image = torch.zeros((1, 4, 4), dtype=torch.uint8)
    cam = np.zeros((2, 2), np.float32)
    cam[0, 0] = 1.0
    tile = insight.heat_tile(image, cam, True, target=40)
    plain = tile_image(image, True, target=40)
    assert tile.shape == plain.shape
    np.testing.assert_array_equal(tile[0], plain[0])  # the frame
    inner = tile[4:-4, 4:-4].astype(int)
    assert inner[0, 0, 0] > inner[-1, -1, 0]  # hot (red) top-left, cold (blue) bottom-right
    assert inner[-1, -1, 2] > inner[-1, -1, 0]


# --------------------------------------------------------------------------- the test-set map


def test_pca_map_separates_two_clusters_and_repeats():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20, 16, generator=g) * 0.1
    b = torch.randn(20, 16, generator=g) * 0.1 + 3.0
    features = torch.cat([a, b]).half()
    xy = insight.project(features, "pca")
    assert xy.shape == (40, 2) and xy.dtype == np.float32
    assert np.sign(xy[:20, 0]).tolist() == [np.sign(xy[0, 0])] * 20 and np.sign(xy[20:, 0]).tolist() == [-np.sign(xy[0, 0])] * 20
    np.testing.assert_array_equal(insight.project(features, "pca"), xy)


def test_tsne_map_reports_progress_and_is_kept_in_the_run_folder(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    test = torch.cat([torch.randn(15, 8, generator=g), torch.randn(15, 8, generator=g) + 6]).half()
    features = insight.Features(train=test, test=test, epoch=1, seconds=0.1, which="best", run_dir=tmp_path, stamp=(7, 1, 2))
    seen = []
    xy = insight.test_map(features, "tsne", progress=lambda fraction, text: seen.append((fraction, text)))
    assert xy.shape == (30, 2) and np.isfinite(xy).all()
    assert seen[0][0] == 0.0 and seen[-1] == (1.0, "t-SNE: done") and any("iteration" in t for _, t in seen)
    assert "[t-SNE]" not in capsys.readouterr().out  # its progress lines became calls, not output
    assert (tmp_path / "map-tsne-best.npz").is_file()
    np.testing.assert_array_equal(insight.test_map(features, "tsne"), xy)
    with pytest.raises(ValueError, match="pca or tsne"):
        insight.project(test, "umap")


def test_tiny_sets_project_without_error():
    assert insight.project(torch.zeros((1, 4)), "tsne").shape == (1, 2)
    assert insight.project(torch.zeros((0, 4)), "pca").shape == (0, 2)
    assert insight.project(torch.randn(3, 1), "pca").shape == (3, 2)


# --------------------------------------------------------------------------- what flipped


def test_flipped_between_two_epochs():
    def preds(pred):
        return pd.DataFrame({"index": range(4), "label": [0, 1, 2, 3], "pred": pred,
                             "p_pred": 0.9, "p_true": 0.5, "loss": [0.1, 0.2, 0.3, 0.4]})

    worse, better = insight.flipped(preds([0, 1, 0, 0]), preds([1, 0, 2, 0]))
    assert worse["index"].tolist() == [1, 0] and worse["pred_before"].tolist() == [1, 0]  # largest loss first
    assert better["index"].tolist() == [2] and better["pred"].tolist() == [2]


def test_flipped_on_a_real_run(tiny_run):
    first = read_predictions_file(prediction_path(tiny_run, 1))
    second = read_predictions_file(prediction_path(tiny_run, 2))
    worse, better = insight.flipped(first, second)
    right = lambda p: set(p["index"][p["label"] == p["pred"]])  # noqa: E731
    assert set(worse["index"]) == right(first) - right(second)
    assert set(better["index"]) == right(second) - right(first)
    assert len(right(second)) - len(right(first)) == len(better) - len(worse)
    assert insight.flipped(second, second)[0].empty

