"""The run store: real detached processes, real files, real kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alexnet_core import runfiles, runlogs, runs, training, variants
from alexnet_core.checkpoints import CheckpointError
from alexnet_core.config import ConfigError
from alexnet_core.runs import RunError
from tests.fixtures import tiny_config as tiny

TIMEOUT = 240  # seconds; generous: the test machine's two cores are shared


@pytest.fixture(scope="module", autouse=True)
def _env(tmp_path_factory):
    """A shared dataset cache, and one training process at a time (the default)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALEXNET_LAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.delenv("ALEXNET_LAB_MAX_RUNS", raising=False)
        yield


@pytest.fixture
def runs_dir(tmp_path):
    yield tmp_path / "runs"
    # never leave a training process behind
    for run in runs.list_runs(tmp_path / "runs")["id"]:
        st = runs.status(run, tmp_path / "runs")
        if st["state"] in ("queued", "running") and st.get("pid"):
            os.kill(st["pid"], signal.SIGKILL)


def wait_until(predicate, timeout=TIMEOUT, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_launch_runs_in_the_background_to_finished(runs_dir):
    config = tiny()
    started = time.monotonic()
    run_id = runs.launch(config, runs_dir)
    assert time.monotonic() - started < 5  # returns at once
    assert runs.status(run_id, runs_dir)["state"] in ("queued", "running")

    final = runs.wait(run_id, timeout=TIMEOUT, runs_dir=runs_dir)
    assert final["state"] == "finished", runs.log_tail(run_id, runs_dir=runs_dir)
    assert final["epoch"] == 1 and final["test_acc"] is not None

    listed = runs.list_runs(runs_dir)
    assert list(listed["id"]) == [run_id]
    row = listed.iloc[0]
    assert (row["variant"], row["dataset"], row["state"], row["epochs"]) == ("mnist", "digits", "finished", 1)

    steps, epochs = runs.metrics_frames(run_id, runs_dir)
    assert list(epochs["epoch"]) == [1] and len(steps) >= 1
    assert runs.read_config(run_id, runs_dir) == config
    assert runs.prediction_epochs(run_id, runs_dir) == [1]
    predictions = runs.read_predictions(run_id, runs_dir=runs_dir)
    assert list(predictions.columns) == ["index", "label", "pred", "p_pred", "p_true", "loss"] and len(predictions) == 360

    model, loaded = runs.load_model(run_id, "best", runs_dir)
    assert not model.training and loaded == config
    assert model(torch.zeros(2, 1, 12, 12)).shape == (2, 10)
    info = runs.checkpoint_info(run_id, "last", runs_dir)
    assert info["classes"] == [str(i) for i in range(10)] and info["model_args"]["input_size"] == 12
    assert "finished" in runs.log_tail(run_id, runs_dir=runs_dir)

    with pytest.raises(RunError, match="already finished"):
        runs.resume(run_id, runs_dir)
    runs.delete_run(run_id, runs_dir)
    assert runs.list_runs(runs_dir).empty


@pytest.mark.parametrize("bad", ["", "..", "../etc", "a/b", ".hidden", "run id", "x\\y", "a\x00b", None])
def test_run_ids_are_validated(runs_dir, bad):
    with pytest.raises(RunError, match="Invalid run id"):
        runs.status(bad, runs_dir)


def test_unknown_run_is_a_clear_error(runs_dir):
    with pytest.raises(RunError, match="No run"):
        runs.status("20260101-000000-mnist-digits-0000", runs_dir)


def test_launch_refuses_a_bad_config_before_starting(runs_dir):
    with pytest.raises(ConfigError, match="at least 12x12"):
        runs.launch(tiny(input_size=4), runs_dir)
    with pytest.raises(ConfigError, match="not available"):  # a torchvision dataset downloads: test_download.py
        runs.launch(tiny(dataset="folder", folder="absent", data_root=str(runs_dir.parent / "empty")), runs_dir)
    assert runs.list_runs(runs_dir).empty


def test_two_quick_launches_make_two_runs_and_the_second_waits(runs_dir):
    slow = tiny(epochs=20, batch_size=16)
    first = runs.launch(slow, runs_dir)
    second = runs.launch(slow, runs_dir)
    assert first != second
    assert runs.run_path(first, runs_dir) != runs.run_path(second, runs_dir)

    wait_until(lambda: runs.status(first, runs_dir)["state"] == "running", what="the first run to start")
    time.sleep(1.5)  # the second worker has had time to look for a slot
    queued = runs.status(second, runs_dir)
    assert queued["state"] == "queued" and queued["pid"]
    if Path(f"/proc/{queued['pid']}/status").exists():  # a waiting worker has not loaded torch
        rss_kb = next(int(line.split()[1]) for line in Path(f"/proc/{queued['pid']}/status").read_text().splitlines()
                      if line.startswith("VmRSS:"))
        assert rss_kb < 150_000

    runs.stop(second, runs_dir)  # cancelling a queued run takes effect at once
    assert runs.status(second, runs_dir)["state"] == "stopped"
    runs.stop(first, runs_dir)
    assert runs.wait(first, timeout=TIMEOUT, runs_dir=runs_dir)["state"] == "stopped"
    assert (runs.run_path(first, runs_dir) / "last.pt").exists()
    assert runs.wait(second, timeout=30, runs_dir=runs_dir)["state"] == "stopped"
    assert not (runs.run_path(second, runs_dir) / "last.pt").exists()


def test_kill_9_mid_epoch_reads_interrupted_and_resume_continues(runs_dir):
    run_id = runs.launch(tiny(epochs=3, batch_size=16), runs_dir)  # 80 steps per epoch
    run_dir = runs.run_path(run_id, runs_dir)

    def in_epoch_two():
        events, _ = runs.read_metrics(run_id, 0, runs_dir)
        return any(e["type"] == "step" and e["epoch"] == 2 and e["batch"] >= 2 for e in events)

    def epoch_one_saved():  # checkpoints land from a thread of their own, after the epoch's event
        try:
            return runs.checkpoint_info(run_id, "last", runs_dir)["epoch"] == 1
        except Exception:
            return False

    wait_until(in_epoch_two, what="a step of epoch 2")
    wait_until(epoch_one_saved, what="epoch 1's last.pt")
    pid = runs.status(run_id, runs_dir)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: runs.status(run_id, runs_dir)["state"] == "interrupted", timeout=20, what="interrupted")

    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        json.loads(line)  # only whole lines
    model, _ = runs.load_model(run_id, "last", runs_dir)
    assert runs.checkpoint_info(run_id, "last", runs_dir)["epoch"] == 1

    runs.resume(run_id, runs_dir)
    final = runs.wait(run_id, timeout=TIMEOUT, runs_dir=runs_dir)
    assert final["state"] == "finished", runs.log_tail(run_id, runs_dir=runs_dir)
    steps, epochs = runs.metrics_frames(run_id, runs_dir)
    assert list(epochs["epoch"]) == [1, 2, 3]
    assert steps["step"].is_monotonic_increasing  # epoch 2's lost steps are superseded by the resume
    events, _ = runs.read_metrics(run_id, 0, runs_dir)
    assert [e["type"] for e in events].count("resume") == 1


def test_read_metrics_reads_increments_and_ignores_a_torn_line(runs_dir):
    run_id = runs.create_run(tiny(), runs_dir)
    path = runs.run_path(run_id, runs_dir) / "metrics.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"type": "step", "step": 1}\n{"type": "step", "st')
    events, offset = runs.read_metrics(run_id, 0, runs_dir)
    assert events == [{"type": "step", "step": 1}] and offset == len(b'{"type": "step", "step": 1}\n')
    assert runs.read_metrics(run_id, offset, runs_dir) == ([], offset)
    with open(path, "ab") as f:
        f.write(b'ep": 2}\n')
    events, end = runs.read_metrics(run_id, offset, runs_dir)
    assert events == [{"type": "step", "step": 2}] and end == path.stat().st_size


def test_dead_zombie_and_reused_pids_read_interrupted(runs_dir):
    run_id = runs.create_run(tiny(), runs_dir)
    run_dir = runs.run_path(run_id, runs_dir)

    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    runfiles.update_status(run_dir, state="running", pid=finished.pid, proc_start=None)
    assert runs.status(run_id, runs_dir)["state"] == "interrupted"

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_until(lambda: not runfiles.pid_alive(zombie.pid), timeout=30, what="a zombie")
    assert zombie.returncode is None  # not reaped: a zombie, which os.kill(pid, 0) alone calls alive
    runfiles.update_status(run_dir, pid=zombie.pid)
    assert runs.status(run_id, runs_dir)["state"] == "interrupted"
    zombie.wait()

    me = os.getpid()
    runfiles.update_status(run_dir, pid=me, proc_start=runfiles.process_start_time(me))
    assert runs.status(run_id, runs_dir)["state"] == "running"
    runfiles.update_status(run_dir, proc_start=1.0)  # the pid now belongs to another process
    assert runs.status(run_id, runs_dir)["state"] == "interrupted"


def test_damaged_checkpoints_give_checkpoint_error_naming_the_file(runs_dir):
    run_id = runs.create_run(tiny(), runs_dir)
    run_dir = runs.run_path(run_id, runs_dir)
    assert training.train(tiny(), run_dir)["state"] == "finished"
    blob = (run_dir / "best.pt").read_bytes()
    (run_dir / "best.pt").write_bytes(blob[: len(blob) // 3])
    (run_dir / "last.pt").write_bytes(b"\x00" * 100)
    for which in ("best", "last"):
        with pytest.raises(CheckpointError, match=f"{which}.pt"):
            runs.load_model(run_id, which, runs_dir)
    (run_dir / "best.pt").unlink()
    with pytest.raises(CheckpointError, match="no best.pt yet"):
        runs.load_model(run_id, "best", runs_dir)


def test_resume_of_a_run_with_a_missing_process_is_refused_while_active(runs_dir):
    run_id = runs.create_run(tiny(), runs_dir)
    run_dir = runs.run_path(run_id, runs_dir)
    me = os.getpid()
    runfiles.update_status(run_dir, state="running", pid=me, proc_start=runfiles.process_start_time(me))
    with pytest.raises(RunError, match="stop it first"):
        runs.resume(run_id, runs_dir)
    with pytest.raises(RunError, match="stop it before deleting"):
        runs.delete_run(run_id, runs_dir)
    runfiles.update_status(run_dir, state="stopped")
    runs.delete_run(run_id, runs_dir)


def test_frames_drop_the_steps_a_resume_superseded():
    events = [
        {"type": "start", "epoch": 0},
        {"type": "step", "epoch": 1, "step": 10, "loss": 2.0},
        {"type": "epoch", "epoch": 1, "step": 20, "test_acc": 0.5},
        {"type": "step", "epoch": 2, "step": 25, "loss": 1.5},  # lost when the process was killed
        {"type": "resume", "epoch": 1, "step": 20},
        {"type": "step", "epoch": 2, "step": 25, "loss": 1.4},
        {"type": "epoch", "epoch": 2, "step": 40, "test_acc": 0.7},
    ]
    steps, epochs = runlogs.frames_from_events(events)
    assert list(steps["step"]) == [10, 25] and list(steps["loss"]) == [2.0, 1.4]
    assert list(epochs["epoch"]) == [1, 2] and list(epochs["test_acc"]) == [0.5, 0.7]
    empty_steps, empty_epochs = runlogs.frames_from_events([])
    assert list(empty_steps.columns) == runlogs.STEP_COLUMNS and empty_epochs.empty


def test_training_speeds_take_each_variants_newest_run_at_its_native_size(runs_dir):
    def run(created, rate, **changes):
        run_id = runs.create_run(tiny(**changes), runs_dir)
        runfiles.update_status(runs.run_path(run_id, runs_dir), created=created, images_per_s=rate, device="cpu")
        return run_id

    native = variants.get_spec("mnist").input_size
    run(1.0, 500.0, input_size=native)  # mnist at 28: older, but at the native size
    newest_small = run(3.0, 1300.0, input_size=12)
    never_trained = run(4.0, None, input_size=native)  # queued, no rate yet
    cifar_old = run(1.0, 90.0, variant="cifar", input_size=32)
    cifar_new = run(2.0, 110.0, variant="cifar", input_size=32)
    damaged = run(5.0, 999.0, variant="paper", input_size=227)
    (runs.run_path(damaged, runs_dir) / "config.json").write_text('{"variant": "alexnet9000"}')

    speeds = runs.training_speeds(runs_dir).set_index("variant")
    assert sorted(speeds.index) == ["cifar", "mnist"]  # no paper: its config names no variant we know
    assert speeds.loc["mnist", "images_per_s"] == 500.0 and speeds.loc["mnist", "input_size"] == native
    assert speeds.loc["cifar", "images_per_s"] == 110.0 and speeds.loc["cifar", "run"] == cifar_new
    assert {newest_small, never_trained, cifar_old}.isdisjoint(speeds["run"])
    (runs.run_path(speeds.loc["mnist", "run"], runs_dir) / "status.json").unlink()
    assert runs.training_speeds(runs_dir).set_index("variant").loc["mnist", "run"] == newest_small  # the next best


def test_a_finished_training_process_is_reaped_at_once(tmp_path):
    """A finished run's process lingered as a zombie (<defunct>) under the server until
    the next launch reaped it."""
    from alexnet_core.recipes import get_recipe

    runs_dir = tmp_path / "runs"
    run_id = runs.launch(get_recipe("quick").make_config(epochs=1), runs_dir)
    pid = runs.wait(run_id, timeout=240, runs_dir=runs_dir)["pid"]

    def state() -> str | None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return None  # reaped: gone from the process table
        return fields[0]

    deadline = time.monotonic() + 30
    while state() is not None and time.monotonic() < deadline:  # the exiting process, then its reaper
        time.sleep(0.05)
    assert state() is None, f"pid {pid} is still in the process table as {state()!r} (Z: a zombie)"


def test_the_epochs_alone_are_read_without_parsing_the_steps(tmp_path, monkeypatch):
    """A 200 MB metrics.jsonl kept the Runs page 23 s, parsing every step line for a
    chart of epochs: the epochs are read alone, equal to the whole read's."""
    from alexnet_core import runlogs
    from tests.fixtures import tiny_config

    runs_dir = tmp_path / "runs"
    run_id = runs.launch(tiny_config(epochs=2), runs_dir)
    assert runs.wait(run_id, timeout=240, runs_dir=runs_dir)["state"] == "finished"
    steps, epochs = runs.metrics_frames(run_id, runs_dir)
    parsed = []
    real = runlogs.json.loads
    monkeypatch.setattr(runlogs.json, "loads", lambda text, *a, **k: parsed.append(text) or real(text, *a, **k))
    none, only = runs.metrics_frames(run_id, runs_dir, steps=False)
    assert none.empty and len(steps) > 0
    assert only.equals(epochs)
    assert len(parsed) <= len(epochs) + 1  # the epoch lines (and a resume's, had there been one), never a step's


def test_runs_have_short_names_numbered_per_variant_and_dataset_that_a_delete_does_not_reuse(runs_dir):
    # An old run made before numbers were recorded counts too (oldest first).
    old = runs_dir / "20200101-000000-mnist-digits-0a0a"
    old.mkdir(parents=True)
    tiny().to_json(old / "config.json")
    runfiles.write_json_atomic(old / "status.json", {"state": "finished", "created": 1.0})
    first, second = runs.create_run(tiny(), runs_dir), runs.create_run(tiny(), runs_dir)
    named = runs.list_runs(runs_dir).set_index("id")["name"]
    assert [named[old.name], named[first], named[second]] == ["mnist · digits #1", "mnist · digits #2", "mnist · digits #3"]
    for made in (first, second):
        runfiles.update_status(runs_dir / made, state="stopped")  # never started: nothing to wait for
    runs.delete_run(second, runs_dir)
    third = runs.create_run(tiny(), runs_dir)
    assert runs.list_runs(runs_dir).set_index("id")["name"][third] == "mnist · digits #3"  # #3 was deleted, not in use
    runs.delete_run(first, runs_dir)
    fourth = runs.create_run(tiny(), runs_dir)
    assert runs.list_runs(runs_dir).set_index("id")["name"][fourth] == "mnist · digits #4"  # #3 still exists
    # A copied folder keeps its number: both copies get their id, so a picker can tell them apart.
    shutil.copytree(runs_dir / fourth, runs_dir / "copied")
    named = runs.list_runs(runs_dir).set_index("id")["name"]
    assert [named[fourth], named["copied"]] == [f"mnist · digits #4 ({fourth})", "mnist · digits #4 (copied)"]
