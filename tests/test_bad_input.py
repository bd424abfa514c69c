"""A catalogue of bad input, across every entry point.

Each case checks three things: the error is the documented kind (never a
bare traceback), its message says which input and what to do, and nothing
already saved changed.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet_core import datasets, predict, runfiles, runs, training
from alexnet_core.checkpoints import CheckpointError
from alexnet_core.config import ConfigError
from alexnet_core.runs import RunError
from alexnet_core.variants import get_model
from tests import fixtures
from tests.fixtures import tiny_config as tiny

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real finished run, trained in-process; cases copy it before spoiling it."""
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALEXNET_LAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        config = tiny()
        run_id = runs.create_run(config, root)
        assert training.train(config, runs.run_path(run_id, root))["state"] == "finished"
    return root, run_id


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- #
# Config and CLI


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(variant="vgg16"), ["variant", "paper, torchvision, lrn, bn, cifar, mnist"]),
        (dict(dataset="imagenet"), ["dataset", "digits"]),
        (dict(optimizer="rmsprop"), ["optimizer", "sgd", "adam"]),
        (dict(lr=0), ["learning rate", "greater than 0"]),
        (dict(lr=-0.1), ["learning rate", "greater than 0"]),
        (dict(lr=float("nan")), ["lr"]),
        (dict(batch_size=0), ["batch_size"]),
        (dict(epochs=0), ["epochs"]),
        (dict(input_size=8), ["at least 12x12", "got 8x8"]),
        (dict(variant="torchvision", input_size=32), ["at least 63x63"]),
        (dict(val_fraction=-0.1), ["val_fraction"]),
        (dict(val_fraction=1.0), ["val_fraction"]),
    ],
)
def test_bad_config_is_refused_with_a_sentence(changes, words):
    with pytest.raises(ConfigError) as info:
        tiny(**changes).validate()
    for word in words:
        assert word in str(info.value), (changes, str(info.value))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_device_that_is_not_there():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        tiny(device="cuda").validate()


def test_batch_larger_than_the_training_split(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_LAB_CACHE", str(tmp_path))
    digits = datasets.load_dataset("digits")
    with pytest.raises(ConfigError, match="batch size .* larger than the training split"):
        tiny(batch_size=2000).validate(dataset=digits)


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "alexnet_core", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--variant", "vgg16"], ["vgg16"]),
        (["train", "--dataset", "imagenet"], ["imagenet"]),
        (["train", "--lr", "0"], ["learning rate"]),
        (["train", "--lr", "nan"], ["lr"]),
        (["train", "--epochs", "0"], ["epochs"]),
        (["train", "--batch-size", "0"], ["batch_size"]),
        (["train", "--variant", "torchvision", "--input-size", "32"], ["63x63"]),
        (["train", "--optimizer", "rmsprop"], ["rmsprop"]),
        (["summary", "--variant", "nope"], ["nope"]),
        (["stop", "../etc"], ["Invalid run id"]),
        (["eval", "no-such-run"], ["no-such-run"]),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    result = _cli(*args, env={"ALEXNET_LAB_RUNS": str(tmp_path / "runs")})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# --------------------------------------------------------------------------- #
# Uploads


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"", ["empty"]),
        (b"hello, I am a text file pretending to be a PNG\n", ["not an image"]),
        (_png(Image.new("RGB", (64, 64), "red"))[:60], ["damaged", "incomplete"]),
        (_png(Image.new("RGB", (64, 64), "red"), "JPEG")[:200], ["damaged", "incomplete"]),
    ],
)
def test_bad_uploads_get_a_clear_message(payload, words):
    with pytest.raises(predict.ImageError) as info:
        predict.load_image(payload)
    assert any(w in str(info.value) for w in words), str(info.value)


def test_decompression_bomb_is_refused_as_too_large():
    bomb = _png(Image.new("L", (4000, 4000)))  # 16 Mpx, a few KB compressed
    with pytest.raises(predict.ImageError, match="too large"):
        predict.load_image(bomb, max_pixels=1_000_000)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _png(Image.fromarray(np.full((9, 7), 40000, np.uint16))),  # 16-bit grey
        lambda: _png(Image.new("CMYK", (9, 7), (0, 255, 255, 0)), "JPEG"),
        lambda: _png(Image.new("RGB", (9, 7), "blue").convert("P", palette=Image.Palette.ADAPTIVE)),
        lambda: _png(Image.new("RGBA", (9, 7), (255, 0, 0, 128))),
        lambda: _png(Image.new("RGB", (1, 1), "white")),
        lambda: _png(
            Image.new("P", (9, 7), 1), "GIF", save_all=True,
            append_images=[Image.new("P", (9, 7), 2)], duration=50, loop=0,
        ),
    ],
    ids=["16-bit", "cmyk-jpeg", "palette", "rgba", "1x1", "animated-gif"],
)
def test_unusual_but_valid_images_are_classified(make):
    image = predict.load_image(make())
    assert image.mode in ("RGB", "L") and image.width >= 1
    net = get_model("mnist", 1, 10).eval()
    top = predict.classify_image(
        net, image, classes=[str(i) for i in range(10)], channels=1, image_size=8, input_size=28,
        mean=(0.3,), std=(0.4,), k=5,
    )
    assert len(top) == 5
    assert 0 < top["probability"].sum() <= 1.0 + 1e-6


# --------------------------------------------------------------------------- #
# Image folders


@pytest.fixture
def data_root(lab_data_root):
    return lab_data_root


def test_missing_folder(data_root):
    with pytest.raises(datasets.DatasetUnavailable, match="nowhere"):
        datasets.load_dataset("folder", folder=data_root / "nowhere")


def test_empty_folder(data_root):
    (data_root / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        datasets.load_dataset("folder", folder=data_root / "empty")


def test_single_class_folder(data_root):
    fixtures.write_image_folder(data_root / "one", {"cats": 4})
    with pytest.raises(ValueError, match="one class|single class|only one"):
        datasets.load_dataset("folder", folder=data_root / "one")


def test_non_image_files_are_ignored(data_root):
    fixtures.write_image_folder(data_root / "mixed", {"cats": 5, "dogs": 5})
    (data_root / "mixed" / "cats" / "notes.txt").write_text("not an image")
    (data_root / "mixed" / "dogs" / "Thumbs.db").write_bytes(b"\x00\x01")
    ds = datasets.load_dataset("folder", folder=data_root / "mixed", cache=False)
    assert len(ds.train_y) + len(ds.test_y) == 10


def test_unreadable_image_is_named(data_root):
    fixtures.write_image_folder(data_root / "bad", {"cats": 4, "dogs": 4})
    broken = data_root / "bad" / "dogs" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ValueError, match="broken.png"):
        datasets.load_dataset("folder", folder=data_root / "bad", cache=False)


def test_symlink_outside_the_data_root_is_refused(data_root, tmp_path):
    outside = tmp_path / "outside"
    fixtures.write_image_folder(outside, {"cats": 3, "dogs": 3})
    (data_root / "sneaky").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="outside"):
        datasets.load_dataset("folder", folder=data_root / "sneaky")
    with pytest.raises(ValueError, match="outside"):
        datasets.load_dataset("folder", folder=outside)


# --------------------------------------------------------------------------- #
# Run folders


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "/etc", "a\\b", "", ".hidden", "x" * 300])
def test_run_ids_that_escape_are_refused(bad, tmp_path):
    with pytest.raises(RunError):
        runs.run_path(bad, tmp_path)
    with pytest.raises(RunError):
        runs.status(bad, tmp_path)


def _copy_run(finished_run, tmp_path) -> tuple[Path, str]:
    import shutil

    root, run_id = finished_run
    dest = tmp_path / "runs"
    shutil.copytree(root / run_id, dest / run_id)
    return dest, run_id


def test_hand_edited_config_with_unknown_variant(finished_run, tmp_path):
    root, run_id = _copy_run(finished_run, tmp_path)
    path = root / run_id / "config.json"
    config = json.loads(path.read_text())
    config["variant"] = "resnet50"
    path.write_text(json.dumps(config))
    before = _snapshot(root / run_id)
    with pytest.raises((ConfigError, RunError), match="resnet50"):
        runs.read_config(run_id, root)
    listing = runs.list_runs(root)  # the table still lists the run
    assert run_id in set(listing["id"])
    assert _snapshot(root / run_id) == before


def test_checkpoint_of_another_variant_or_class_count(finished_run, tmp_path):
    root, run_id = _copy_run(finished_run, tmp_path)
    state = torch.load(root / run_id / "best.pt", weights_only=True)
    other = get_model("cifar", 3, 7)
    state["model"] = other.state_dict()
    torch.save(state, root / run_id / "best.pt")
    with pytest.raises(CheckpointError, match="best.pt"):
        runs.load_model(run_id, "best", root)


def test_metrics_file_with_garbage_lines(finished_run, tmp_path):
    root, run_id = _copy_run(finished_run, tmp_path)
    metrics = root / run_id / "metrics.jsonl"
    good, _ = runs.read_metrics(run_id, 0, root)
    with open(metrics, "a") as f:
        f.write("this is not json\n{\"half\": \n\x00\x01\x02\n[1, 2, 3]\n")
    events, offset = runs.read_metrics(run_id, 0, root)
    assert events == good
    assert offset == metrics.stat().st_size
    steps, epochs = runs.metrics_frames(run_id, root)
    assert len(epochs) == 1


@pytest.mark.parametrize("content", [b"", b"{\"state\": \"runn", b"\x00\x00", b"[]", b"null"])
def test_status_json_empty_or_half_written(finished_run, tmp_path, content):
    root, run_id = _copy_run(finished_run, tmp_path)
    (root / run_id / "status.json").write_bytes(content)
    status = runs.status(run_id, root)
    assert status["state"] in runfiles.STATES
    assert run_id in set(runs.list_runs(root)["id"])


def test_checkpoints_are_only_read_with_weights_only(finished_run, tmp_path):
    """A checkpoint holding a pickled object (code) is refused, not executed."""
    root, run_id = _copy_run(finished_run, tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    torch.save({"model": Evil()}, root / run_id / "last.pt")
    with pytest.raises(CheckpointError, match="last.pt"):
        runs.load_model(run_id, "last", root)
    assert not (tmp_path / "pwned").exists()
