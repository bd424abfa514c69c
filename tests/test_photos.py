"""Photos at the resolution the setups use (issue 18 part 2): stored at 256 px (or as a run says),
random windows in training and the centre one in evaluation, squashed where a post squashed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_core import batches, datasets, predict, runs, streaming
from alexnet_core.__main__ import main
from alexnet_core.config import ConfigError, TrainConfig
from alexnet_core.recipes import get_recipe
from tests.fixtures import tiny_config, write_flowers102


def striped(path, size=(40, 20)):
    """A photo twice as wide as high: red left quarter, green middle half, blue right quarter."""
    w, h = size
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 4] = (255, 0, 0)
    a[:, w // 4: 3 * w // 4] = (0, 255, 0)
    a[:, 3 * w // 4:] = (0, 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)


# ------------------------------------------------------------- stored photos


def test_photos_keep_their_centre_square_at_256_unless_squashed(lab_data_root):
    for cls in ("wide", "other"):
        for i in range(3):
            striped(lab_data_root / "shapes" / cls / f"{i}.png")
    ds = datasets.load_dataset("folder", folder="shapes")
    assert ds.image_size == datasets.PHOTO_SIZE == 256
    centre = ds.train_x[0].float().mean(dim=(1, 2))
    assert centre[1] > 250 and centre[0] < 5 and centre[2] < 5  # the centre square is the green middle
    squashed = datasets.load_dataset("folder", folder="shapes", image_size=16, squash=True)
    row = squashed.train_x[0, :, 8]  # (3, 16): red, green, blue from left to right
    assert row[0, 0] > 250 and row[1, 8] > 250 and row[2, -1] > 250
    assert squashed.image_size == 16
    # a different decoding is cached apart: the centre-square copy is still the one read back
    assert datasets.load_dataset("folder", folder="shapes", image_size=16).train_x[0, 0, 8, 3] < 5


def test_the_in_memory_cost_of_256_px_photos_is_said():
    assert datasets.photo_bytes("flowers102", 8_189) == 8_189 * 3 * 256 * 256  # 1.5 GiB
    assert round(datasets.photo_bytes("folder", 25_000) / 2**30, 1) == 4.6
    assert datasets.photo_bytes("folder", 10, 64) == 10 * 3 * 64 * 64


# ------------------------------------------------------------------- windows


def numbered(n=4, c=3, h=10, w=10) -> torch.Tensor:
    return (torch.arange(n * c * h * w) % 251).to(torch.uint8).reshape(n, c, h, w)


def prepare(x, **kw):
    return batches.prepare_batch(x, in_channels=x.shape[1], mean=(0.0,) * x.shape[1], std=(1 / 255,) * x.shape[1],
                                 device="cpu", **kw)


def test_the_centre_window_is_torchvisions_center_crop():
    x = numbered()
    assert torch.equal(prepare(x, size=6, window="centre"), x[:, :, 2:8, 2:8].float())
    assert torch.equal(prepare(x, size=6, window="whole"), prepare(x, size=6))  # resized whole, as before
    # smaller than the input: the image is resized whole (an upsample), never padded
    assert torch.equal(prepare(x, size=12, window="centre"), prepare(x, size=12))


def test_random_windows_differ_per_image_and_repeat_with_the_seed():
    x = numbered(n=32)
    out = prepare(x, size=6, augment=batches.Augment(window="random"), generator=torch.Generator().manual_seed(1))
    again = prepare(x, size=6, augment=batches.Augment(window="random"), generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    corners = []
    for i in range(len(x)):
        found = [(t, l) for t in range(5) for l in range(5) if torch.equal(out[i], x[i, :, t: t + 6, l: l + 6].float())]
        assert len(found) == 1
        corners.append(found[0])
    assert len(set(corners)) > 8  # 25 possible windows, each image draws its own


def test_resized_crops_zoom_into_each_image_and_keep_its_colours():
    # one grey level per image: every box of it, resized, is that level
    levels = torch.arange(0, 256, 16, dtype=torch.uint8)
    x = levels.view(-1, 1, 1, 1).expand(-1, 3, 20, 20).contiguous()
    gen = torch.Generator().manual_seed(0)
    out = prepare(x, size=8, augment=batches.Augment(window="resized", flip=True), generator=gen)
    assert out.shape == (len(levels), 3, 8, 8)
    assert torch.allclose(out, levels.float().view(-1, 1, 1, 1).expand_as(out), atol=1e-3)
    # on a gradient the boxes differ: different scales and places per image
    ramp = torch.arange(20, dtype=torch.uint8).mul(12).view(1, 1, 1, 20).expand(16, 3, 20, 20).contiguous()
    zoomed = prepare(ramp, size=8, augment=batches.Augment(window="resized"), generator=gen)
    spans = (zoomed[:, 0, 0, -1] - zoomed[:, 0, 0, 0]).tolist()
    assert len({round(s) for s in spans}) > 4 and max(spans) <= 240


def test_an_unknown_window_is_refused():
    with pytest.raises(ValueError, match="Unknown window"):
        prepare(numbered(), size=6, window="middle")


# -------------------------------------------------------------------- config


def test_photo_fit_sets_how_photos_are_stored_and_windowed():
    crop = tiny_config(dataset="folder", folder="x")
    assert (crop.photo_fit, crop.windows, crop.squash, crop.augment.window) == ("crop", ("random", "centre"), False, "random")
    resized = crop.replace(photo_fit="resized-crop")
    assert resized.windows == ("resized", "centre")
    squash = crop.replace(photo_fit="squash", image_size=227)
    assert squash.windows == ("whole", "whole") and squash.squash and squash.augment is None
    digits = tiny_config()  # not photos: the whole image, as always
    assert digits.windows == ("whole", "whole") and not digits.squash and digits.augment is None
    with pytest.raises(ConfigError, match="image_size is the stored size of photos"):
        tiny_config(image_size=64).validate()
    with pytest.raises(ConfigError, match="photo_fit"):
        crop.replace(photo_fit="stretch").check_fields()


def test_an_old_config_keeps_its_old_photos():
    """A config.json written before photo_fit: its photos' centre square at 64 or 128 px, resized whole."""
    old = TrainConfig().to_dict()
    for key in ("photo_fit", "image_size"):
        del old[key]
    folder = TrainConfig.from_dict({**old, "dataset": "folder", "folder": "pets"})
    assert (folder.photo_fit, folder.image_size, folder.windows, folder.squash) == ("centre", 128, ("whole", "whole"), False)
    assert TrainConfig.from_dict({**old, "dataset": "flowers102"}).image_size == 64
    digits = TrainConfig.from_dict(old)
    assert (digits.photo_fit, digits.image_size) == ("crop", None)
    new = tiny_config(dataset="folder", folder="pets")
    assert TrainConfig.from_dict(new.to_dict()) == new


def test_the_photo_recipes_say_how_they_take_photos():
    as_written = get_recipe("bn-catsdogs-as-written").config
    assert (as_written.photo_fit, as_written.image_size, as_written.windows) == ("squash", 227, ("whole", "whole"))
    assert get_recipe("bn-catsdogs").config.windows == ("random", "centre")
    flowers = get_recipe("torchvision-flowers-as-written")
    assert flowers.config.windows == ("resized", "centre")
    assert any("RandomResizedCrop(224)" in d.what for d in flowers.differences)
    assert get_recipe("torchvision-flowers").config.windows == ("random", "centre")
    for name in ("bn-catsdogs-as-written", "bn-catsdogs", "torchvision-flowers-as-written", "torchvision-flowers"):
        assert not any("planned" in d.why or "64x64" in d.what or "128" in d.what
                       for d in get_recipe(name).differences), name


# ------------------------------------------------------------------ training


def test_a_run_trains_on_random_windows_and_is_tested_on_the_centre(lab_data_root, tmp_path):
    for name, colour in (("cats", (230, 40, 40)), ("dogs", (40, 40, 230))):
        (lab_data_root / "pets" / name).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (48, 36), colour).save(lab_data_root / "pets" / name / f"{i:03d}.png")
    config = tiny_config(variant="cifar", input_size=32, dataset="folder", folder="pets", image_size=40,
                         batch_size=4, val_fraction=0.2, flip=True)
    run_id = runs.create_run(config, tmp_path / "runs")
    result = runs.run_worker(runs.run_path(run_id, tmp_path / "runs"))
    assert result["state"] == "finished", result
    stored = TrainConfig.from_json(runs.run_path(run_id, tmp_path / "runs") / "config.json")
    assert (stored.photo_fit, stored.image_size) == ("crop", 40)
    # evaluating the checkpoint again takes the same centre windows: the same accuracy
    evaluated, _ = runs.evaluate_run(run_id, "best", tmp_path / "runs")
    assert evaluated.accuracy == pytest.approx(result["test_acc"])


# ----------------------------------------------------------------- streaming


def test_the_plan_says_which_path_and_why():
    streamed, why = streaming.plan(25_000, 256, available_mb=8 * 1024)
    assert streamed and why.startswith("Streamed from disk") and "4.6 GiB" in why and "8.0 GiB available" in why
    in_memory, why = streaming.plan(8_189, 256, available_mb=16 * 1024)
    assert not in_memory and why.startswith("In memory") and "1.5 GiB" in why
    assert streaming.plan(10, 256, stream=True)[0] and not streaming.plan(10, 256, stream=False)[0]
    assert datasets.storage_plan("digits") is None


@pytest.fixture
def pets(lab_data_root):
    for name, colour in (("cats", (230, 40, 40)), ("dogs", (40, 40, 230))):
        (lab_data_root / "pets" / name).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (48, 36), tuple(c + 2 * i for c in colour)).save(
                lab_data_root / "pets" / name / f"{i:03d}.png")
    return lab_data_root / "pets"


def test_a_streamed_folder_reads_as_the_same_images(pets, monkeypatch):
    held = datasets.load_dataset("folder", folder="pets", image_size=40)
    assert not held.streamed and held.storage.startswith("In memory")
    monkeypatch.setattr(streaming, "available_memory_mb", lambda: 0.01)  # 10 kB: streamed
    assert datasets.storage_plan("folder", folder="pets", image_size=40)[0]
    lazy = datasets.load_dataset("folder", folder="pets", image_size=40)
    assert lazy.streamed and lazy.storage.startswith("Streamed from disk") and lazy.image_size == 40
    assert isinstance(lazy.train_x, streaming.LazyImages) and len(lazy.train_x) == len(held.train_x)
    assert torch.equal(lazy.train_x[3], held.train_x[3])
    assert torch.equal(lazy.test_x[1:3], held.test_x[1:3])
    assert torch.equal(lazy.train_x.subset(torch.tensor([4, 0]))[0:2], held.train_x[[4, 0]])
    assert lazy.mean == pytest.approx(held.mean) and lazy.std == pytest.approx(held.std)
    # a streamed run's predictions are shown over the same test images as an in-memory one's
    assert predict.test_fingerprint(lazy) == predict.test_fingerprint(held)
    batches_ = list(streaming.epoch_batches(lazy.train_x, [torch.tensor([5, 1]), torch.tensor([2, 7])], workers=2))
    assert torch.equal(batches_[1], held.train_x[[2, 7]])


def test_a_streamed_run_trains_as_the_in_memory_one_does(pets, tmp_path, monkeypatch, capsys):
    config = tiny_config(variant="cifar", input_size=32, dataset="folder", folder="pets", image_size=40,
                         batch_size=4, val_fraction=0.2, flip=True)
    results = {}
    for way in ("in memory", "streamed"):
        if way == "streamed":
            monkeypatch.setattr(streaming, "available_memory_mb", lambda: 0.01)  # 10 kB: streamed
        run_id = runs.create_run(config, tmp_path / way)
        results[way] = runs.run_worker(runs.run_path(run_id, tmp_path / way))
        assert results[way]["state"] == "finished", results[way]
        lines = (runs.run_path(run_id, tmp_path / way) / "metrics.jsonl").read_text().splitlines()
        start = json.loads(lines[0])
        assert start["storage"].startswith("Streamed from disk" if way == "streamed" else "In memory")
    # the same batches in the same order, the same windows and flips: the same run
    assert results["streamed"]["test_acc"] == results["in memory"]["test_acc"]
    assert results["streamed"]["best_val_acc"] == results["in memory"]["best_val_acc"]
    code = main(["train", "--variant", "cifar", "--dataset", "folder", "--folder", "pets", "--image-size", "40",
                 "--epochs", "1", "--batch-size", "4", "--threads", "1", "--runs-dir", str(tmp_path / "cli")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "Streamed from disk" in out and "DataLoader workers" in out


def test_flowers_stream_from_torchvisions_layout(lab_data_root, no_md5_check):
    write_flowers102(lab_data_root)
    held = datasets.load_dataset("flowers102", download=False, image_size=16)
    lazy = datasets.load_dataset("flowers102", download=False, image_size=16, stream=True)
    assert lazy.streamed and not held.streamed and lazy.storage.startswith("Streamed from disk, as asked")
    assert torch.equal(lazy.train_y, held.train_y) and torch.equal(lazy.test_x[0:len(held.test_y)], held.test_x)
    assert predict.test_fingerprint(lazy) == predict.test_fingerprint(held)


def test_the_train_page_says_whether_photos_are_held_in_memory_or_streamed(ui_lab, pets, monkeypatch):
    from tests.test_pages import open_page

    at = open_page("train", dataset="folder", folder="pets")
    at.radio(key="quick:what").set_value("sidebar").run()
    assert not at.exception
    said = [c.value.replace("\\", "") for c in at.caption if "photos at 256x256" in c.value]
    assert len(said) == 1 and "In memory: 20 photos at 256x256 take 3.8 MiB decoded" in said[0], said
    monkeypatch.setattr(streaming, "available_memory_mb", lambda: 0.01)
    at.run()
    said = [c.value.replace("\\", "") for c in at.caption if "photos at 256x256" in c.value]
    assert len(said) == 1 and "Streamed from disk" in said[0] and "DataLoader workers" in said[0], said


def test_a_runs_pages_load_its_photos_as_it_stored_them(ui_lab, pets):
    """Predictions loaded the folder at the default 256 px, centre-cropped, and refused a run that
    squashed its photos to 40 px as 'not the images this run was tested on'."""
    from tests.test_pages import no_errors, open_page

    config = tiny_config(variant="cifar", input_size=32, dataset="folder", folder="pets", image_size=40,
                         photo_fit="squash", batch_size=4, val_fraction=0.2)
    run_id = runs.create_run(config)
    assert runs.run_worker(runs.run_path(run_id))["state"] == "finished"
    for page in ("predictions",):
        at = open_page(page, run=run_id)
        no_errors(at)
