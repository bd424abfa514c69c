"""The training loop, checkpoints and evaluation, in-process on the real digits dataset."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet_core import checkpoints, datasets, evaluation, runlogs, training, variants
from alexnet_core.checkpoints import CheckpointError
from alexnet_core.config import ConfigError
from tests.fixtures import tiny_config as tiny


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """Decoded datasets cached in one temporary folder for the module, never in the repo."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALEXNET_LAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def events(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]  # every line must be whole JSON


def of_type(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in events(run_dir) if e["type"] == kind]


# --------------------------------------------------------------------------- #
# The loop


def test_batch_larger_than_the_training_split_is_refused(tmp_path):
    dataset = datasets.load_dataset("digits")
    with pytest.raises(ConfigError, match="at most 1293"):
        tiny(batch_size=2000).validate(dataset=dataset)
    result = training.train(tiny(batch_size=2000), tmp_path)
    assert result["state"] == "failed" and "larger than the training split" in result["error"]
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "failed"


def test_two_epochs_end_to_end(tmp_path):
    seen = []
    result = training.train(tiny(epochs=2), tmp_path, progress=seen.append)
    assert result["state"] == "finished", result["error"]
    assert result["epoch"] == 2 and result["test_acc"] > 0.2  # well above chance (0.1) after 40 steps

    epochs = of_type(tmp_path, "epoch")
    assert [e["epoch"] for e in epochs] == [1, 2]
    for e in epochs:
        for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc", "epoch_time", "lr"):
            assert math.isfinite(e[key])
    # best.pt follows the validation split (accuracy, then loss), never the test split
    best = max(epochs, key=lambda e: (e["val_acc"], -e["val_loss"]))
    assert result["best_epoch"] == best["epoch"] and result["test_acc"] == best["test_acc"]
    steps = of_type(tmp_path, "step")
    assert steps and all(s["images_per_s"] > 0 and s["lr"] > 0 for s in steps)
    assert [e["type"] for e in seen] == [e["type"] for e in events(tmp_path)]

    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "finished" and status["epoch"] == 2 and status["pid"] == os.getpid()

    for name in ("last.pt", "best.pt"):
        checkpoint = torch.load(tmp_path / name, weights_only=True)
        assert checkpoint["config"] == tiny(epochs=2).to_dict()
        assert checkpoint["classes"] == [str(i) for i in range(10)]
    last = checkpoints.load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 2 and last["step"] == 40 and "optimizer" in last and "rng" in last
    model = checkpoints.model_from_checkpoint(last)
    assert not model.training

    for epoch in (1, 2):
        with np.load(tmp_path / "predictions" / f"epoch-{epoch:03d}.npz", allow_pickle=False) as arrays:
            assert set(arrays.files) == {"index", "label", "pred", "p_pred", "p_true", "loss"}
            assert len(arrays["index"]) == 360
            accuracy = float((arrays["label"] == arrays["pred"]).mean())
            assert accuracy == pytest.approx(epochs[epoch - 1]["test_acc"])
            assert np.all(arrays["p_pred"] >= arrays["p_true"] - 1e-6)
    assert not list(tmp_path.glob(".*.tmp"))


def test_same_seed_repeats_exactly(tmp_path):
    def losses(folder, seed):
        folder.mkdir()
        assert training.train(tiny(seed=seed), folder)["state"] == "finished"
        epoch = of_type(folder, "epoch")[0]  # step events are grouped by time, epoch events are not
        return epoch["train_loss"], epoch["val_loss"], epoch["test_loss"], epoch["test_acc"]

    first = losses(tmp_path / "a", 0)
    assert losses(tmp_path / "b", 0) == first
    assert losses(tmp_path / "c", 1) != first


def test_initial_model_is_the_weights_a_run_starts_from(tmp_path):
    config = tiny(seed=3)
    trainer = training._Trainer(config, tmp_path, resume=False, progress=None)
    trainer.setup()  # what train() does before its first step
    rng = torch.get_rng_state()
    start = training.initial_model(config, num_classes=10)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's random state is untouched
    assert not start.training
    started = trainer.model.state_dict()
    assert start.state_dict().keys() == started.keys()
    assert all(torch.equal(value, started[name].cpu()) for name, value in start.state_dict().items())
    other = training.initial_model(tiny(seed=4), num_classes=10).state_dict()
    assert not all(torch.equal(value, other[name]) for name, value in start.state_dict().items())


def test_stop_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "STEP_EVENT_INTERVAL_S", 0.0)  # an event every step, however fast the device
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    straight.mkdir()
    stopped.mkdir()
    config = tiny(epochs=2)
    assert training.train(config, straight)["state"] == "finished"

    def stop_in_epoch_two(event):
        if event["type"] == "step" and event["epoch"] == 2 and event["batch"] >= 5:
            (stopped / "stop").touch()

    result = training.train(config, stopped, progress=stop_in_epoch_two)
    assert result["state"] == "stopped" and result["epoch"] == 1
    last = checkpoints.load_checkpoint(stopped / "last.pt")
    assert last["epoch"] == 1 and last["batch"] >= 5  # written mid-epoch, where it stopped
    (stopped / "stop").unlink()

    result = training.train(config, stopped, resume=True)
    assert result["state"] == "finished" and result["epoch"] == 2
    assert [e["epoch"] for e in of_type(stopped, "epoch")] == [1, 2]
    assert [e["type"] for e in events(stopped)].count("resume") == 1
    # The resumed run continues exactly: same weights, so the same test predictions.
    a, b = of_type(straight, "epoch")[-1], of_type(stopped, "epoch")[-1]
    assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-5)
    assert b["test_acc"] == a["test_acc"]


def test_nan_loss_fails_with_the_reason(tmp_path):
    result = training.train(tiny(optimizer="sgd", lr=1e30), tmp_path)
    assert result["state"] == "failed"
    assert "loss became" in result["error"] and "learning rate" in result["error"]
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["state"] == "failed" and status["error"] == result["error"]
    assert of_type(tmp_path, "end")[-1]["state"] == "failed"


def test_nan_in_epoch_two_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    forward = torch.nn.CrossEntropyLoss.forward

    def poisoned(self, logits, target):
        calls["n"] += 1
        loss = forward(self, logits, target)
        return loss * float("nan") if calls["n"] > 25 else loss  # epoch 1 has 20 steps

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)
    result = training.train(tiny(epochs=3), tmp_path)
    assert result["state"] == "failed" and "nan" in result["error"] and "last.pt, epoch 1" in result["error"]
    assert checkpoints.load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_failing_checkpoint_write_fails_the_run_and_keeps_the_previous_one(tmp_path, monkeypatch):
    real_save = torch.save
    writes = []

    def save(obj, f, *args, **kwargs):
        writes.append(obj.get("epoch"))
        if obj.get("epoch", 0) >= 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    result = training.train(tiny(epochs=2), tmp_path)
    assert result["state"] == "failed"
    assert "No space left on device" in result["error"] and "intact" in result["error"]
    monkeypatch.setattr(torch, "save", real_save)
    assert checkpoints.load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "failed"
    assert not list(tmp_path.glob(".*.tmp"))


def test_recent_rate_is_images_over_time_not_a_mean_of_rates():
    recent = training.RecentRate(window_s=10)
    for _ in range(32):
        recent.add(250, 0.25)  # 1,000 images/s
    slowed = recent.add(32, 0.7)  # one slow quarter: 46 images/s
    assert 900 < slowed < 1000  # an ETA off by a tenth, not by twenty times
    for _ in range(40):
        last = recent.add(100, 0.25)  # 400 images/s for 10 s: the old seconds leave the window
    assert last == pytest.approx(400)


def test_checkpoint_writer_writes_what_was_submitted_not_what_came_after(tmp_path):
    writer = checkpoints.CheckpointWriter()
    weights = torch.zeros(1000)
    writer.submit([({"model": {"w": weights}, "model_args": {}, "epoch": 1}, tmp_path / "best.pt"), ({"model": {"w": weights}, "model_args": {}, "epoch": 1}, tmp_path / "last.pt")],
                  "last.pt, epoch 1")
    weights += 1  # training goes on changing the tensors in place while the thread writes
    writer.wait()
    for name in ("best.pt", "last.pt"):
        assert torch.count_nonzero(checkpoints.load_checkpoint(tmp_path / name)["model"]["w"]) == 0
    assert writer.written == "last.pt, epoch 1" and writer.cpu_seconds > 0
    writer.submit([({"model": {"w": weights}, "model_args": {}, "epoch": 2}, tmp_path / "last.pt")], "last.pt, epoch 2")
    writer.submit([({"model": {"w": weights}, "model_args": {}, "epoch": 3}, tmp_path / "last.pt")], "last.pt, epoch 3")  # waits for epoch 2's
    writer.wait()
    assert checkpoints.load_checkpoint(tmp_path / "last.pt")["epoch"] == 3 and writer.written == "last.pt, epoch 3"


def test_checkpoint_writer_raises_a_failed_write_once_and_keeps_the_file_before_it(tmp_path):
    writer = checkpoints.CheckpointWriter()
    writer.submit([({"model": {"w": torch.zeros(1)}, "model_args": {}, "epoch": 1}, tmp_path / "last.pt")], "last.pt, epoch 1")
    writer.wait()
    writer.submit([({"model": {"w": torch.zeros(1)}, "model_args": {}, "epoch": 2}, tmp_path / "missing-folder" / "last.pt")], "last.pt, epoch 2")
    with pytest.raises(checkpoints.CheckpointWriteError, match="last.pt"):
        writer.wait()
    writer.wait()  # raised once: the run's clean-up can wait again
    assert writer.written == "last.pt, epoch 1"
    assert checkpoints.load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_run_folder_fails_the_run_and_keeps_the_previous_checkpoint(tmp_path):
    def lock_after_epoch_one(event):
        if event["type"] == "step" and event["epoch"] == 2:
            tmp_path.chmod(0o555)

    try:
        result = training.train(tiny(epochs=2), tmp_path, progress=lock_after_epoch_one)
    finally:
        tmp_path.chmod(0o755)
    assert result["state"] == "failed" and "intact" in result["error"]
    assert checkpoints.load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_corrupt_and_truncated_checkpoints_raise_checkpoint_error(tmp_path):
    assert training.train(tiny(), tmp_path)["state"] == "finished"
    blob = (tmp_path / "last.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(blob[: len(blob) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path in (truncated, garbage, tmp_path / "missing.pt"):
        with pytest.raises(CheckpointError, match=path.name):
            checkpoints.load_checkpoint(path)
    # resuming from a damaged last.pt fails the run with the file named, it does not crash
    (tmp_path / "last.pt").write_bytes(blob[:1000])
    result = training.train(tiny(epochs=2), tmp_path, resume=True)
    assert result["state"] == "failed" and "last.pt" in result["error"]


def test_evaluate_restores_the_mode_even_on_error():
    dataset = datasets.load_dataset("digits")
    model = variants.get_model("mnist", in_channels=1, num_classes=10, input_size=12)
    model.train()
    result = evaluation.evaluate(model, dataset.test_x[:50], dataset.test_y[:50], mean=dataset.mean, std=dataset.std)
    assert model.training and 0 <= result.accuracy <= 1 and result.pred.shape == (50,)
    model.eval()
    with pytest.raises(ValueError):
        evaluation.evaluate(model, dataset.test_x[:50].float(), dataset.test_y[:50], mean=dataset.mean, std=dataset.std)
    assert not model.training


def test_estimate_epoch_seconds_times_real_steps():
    before = torch.get_rng_state()
    seconds = training.estimate_epoch_seconds(tiny(), steps=2)
    assert 0 < seconds < 600
    assert torch.equal(before, torch.get_rng_state())


def test_metrics_writer_cuts_a_torn_tail(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"type": "step", "step": 1}\n{"type": "st')
    writer = runlogs.MetricsWriter(path)
    writer.write({"type": "step", "step": 2, "loss": float("nan")})
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["step"] for e in lines] == [1, 2] and lines[1]["loss"] is None
