"""The run store under faults (issue 16, items 1, 6, 15 and 16's temp files): a delete racing
a resume, hand-edited or half-deleted run folders, a full disk, writes killed midway."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from alexnet_core import __main__ as cli
from alexnet_core import checkpoints, runfiles, runs, training
from alexnet_core.checkpoints import CheckpointError, CheckpointWriteError
from alexnet_core.runs import RunError
from tests.fixtures import tiny_config as tiny

DiskUsage = namedtuple("DiskUsage", "total used free")
DISK_FULL = r"the disk is full \(3 MB free in .+\)"


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """The digits dataset decoded once for the module, never in the repo; no test here starts a process."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALEXNET_LAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"


@pytest.fixture
def no_processes(monkeypatch):
    """Resume "starts" the run as this test process, which stays alive: no training process is made."""
    started = []

    def spawn(run_dir, *, resume):
        started.append(run_dir.name)
        me = os.getpid()
        runfiles.update_status(run_dir, pid=me, proc_start=runfiles.process_start_time(me))

    monkeypatch.setattr(runs, "_spawn", spawn)
    return started


@pytest.fixture
def little_space(monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10**9, 10**9 - 3 * 10**6, 3 * 10**6))


def full_disk_open(real_open, allowed_bytes=0, only=lambda path: True):
    """An ``open`` whose files take ``allowed_bytes`` and then fail with ENOSPC, as a full disk does."""

    class FullFile(io.FileIO):
        written = 0

        def write(self, data):
            self.written += len(data)
            if self.written > allowed_bytes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    def fake_open(path, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax") and only(Path(path)):
            raw = FullFile(path, mode.replace("b", "").replace("t", "")[0])
            return raw if "b" in mode else io.TextIOWrapper(raw, encoding=kwargs.get("encoding") or "utf-8")
        return real_open(path, mode, *args, **kwargs)

    return fake_open


def stopped_run(runs_dir, **changes) -> str:
    run_id = runs.create_run(tiny(**changes), runs_dir)
    runfiles.update_status(runs.run_path(run_id, runs_dir), state="stopped", epoch=1, active_s=2.5)
    return run_id


def dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


# --------------------------------------------------------------------------- #
# Item 1: delete racing resume


def test_delete_racing_resume_leaves_the_run_whole_or_gone(runs_dir, no_processes):
    outcomes = {"deleted": 0, "resumed": 0}
    for trial in range(30):
        run_id = stopped_run(runs_dir)
        run_dir = runs.run_path(run_id, runs_dir)
        (run_dir / "predictions").mkdir()
        for k in range(1, 25):  # enough files that removing them takes a while
            (run_dir / "predictions" / f"epoch-{k:03d}.npz").write_bytes(b"x" * 1000)
        for name in ("last.pt", "best.pt", "log.txt"):
            (run_dir / name).write_bytes(b"x" * 10_000)
        files = {p.relative_to(run_dir) for p in run_dir.rglob("*")}
        start = threading.Barrier(2)
        results = {}

        def attempt(name, operation):
            start.wait()
            try:
                operation(run_id, runs_dir)
                results[name] = None
            except Exception as exc:  # noqa: BLE001 - the test looks at which exception
                results[name] = exc

        threads = [threading.Thread(target=attempt, args=("delete", runs.delete_run)),
                   threading.Thread(target=attempt, args=("resume", runs.resume))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        if results["delete"] is None:
            assert isinstance(results["resume"], RunError), (trial, results)
            assert not run_dir.exists(), (trial, sorted(p.name for p in run_dir.iterdir()))
            assert run_id not in set(runs.list_runs(runs_dir)["id"])
            outcomes["deleted"] += 1
        else:
            assert results["resume"] is None, (trial, results)
            assert isinstance(results["delete"], RunError) and "stop it before deleting" in str(results["delete"])
            assert files <= {p.relative_to(run_dir) for p in run_dir.rglob("*")}, trial
            assert runs.status(run_id, runs_dir)["state"] == "queued"
            outcomes["resumed"] += 1
        assert "damaged" not in set(runs.list_runs(runs_dir)["state"]), trial
    assert sum(outcomes.values()) == 30
    assert not list((runs_dir / ".trash").iterdir())  # every deleted run's files are gone too


def test_resume_and_stop_of_a_deleted_run_say_so(runs_dir, no_processes):
    run_id = stopped_run(runs_dir)
    runs.delete_run(run_id, runs_dir)
    for operation in (runs.resume, runs.stop, runs.delete_run, runs.status):
        with pytest.raises(RunError, match="No run"):
            operation(run_id, runs_dir)
    assert not no_processes


def test_a_half_deleted_folder_is_listed_as_damaged_and_can_be_deleted(runs_dir, no_processes):
    good = stopped_run(runs_dir)
    half = runs.run_path(stopped_run(runs_dir), runs_dir)
    for path in half.iterdir():  # what the old race left: status.json and log.txt, no config.json
        if path.name != "status.json":
            path.unlink()
    (half / "log.txt").write_text("not a run folder\n")

    listing = runs.list_runs(runs_dir).set_index("id")
    assert listing.loc[half.name, "state"] == "damaged"
    assert "config.json is missing" in listing.loc[half.name, "error"]
    assert listing.loc[good, "state"] == "stopped"
    assert runs.status(half.name, runs_dir)["state"] == "damaged"
    with pytest.raises(RunError, match="cannot be resumed.*config.json is missing"):
        runs.resume(half.name, runs_dir)
    assert not no_processes
    runs.delete_run(half.name, runs_dir)
    assert not half.exists() and list(runs.list_runs(runs_dir)["id"]) == [good]


def test_a_run_folder_appears_whole_or_not_at_all(runs_dir):
    run_id = runs.create_run(tiny(), runs_dir)
    assert sorted(p.name for p in runs.run_path(run_id, runs_dir).iterdir()) == ["config.json", "metrics.jsonl", "status.json"]
    assert [p.name for p in runs_dir.iterdir()] == [run_id]  # no hidden staging folder left


# --------------------------------------------------------------------------- #
# Item 6: one bad status.json or config.json


BAD_FILES = {
    "pid as a string": ("status.json", {"state": "stopped", "pid": "1234"}, "pid = '1234'"),
    "pid of 2**70": ("status.json", {"state": "running", "pid": 2**70, "proc_start": 1.0}, "pid = 1180591620717411303424"),
    "created as a string": ("status.json", {"state": "finished", "created": "yesterday"}, "created = 'yesterday'"),
    "epoch as a string": ("status.json", {"state": "stopped", "epoch": "3"}, "epoch = '3'"),
    "active_s as a string": ("status.json", {"state": "stopped", "active_s": "12 s"}, "active_s = '12 s'"),
    "created out of range": ("status.json", {"state": "stopped", "created": 1e300}, "created = 1e+300"),
    "an unknown state": ("status.json", {"state": "exploded"}, "state = 'exploded'"),
    "an accuracy of 7": ("status.json", {"state": "finished", "test_acc": 7}, "test_acc = 7"),
    "epochs in config as a string": ("config.json", {"epochs": "ten"}, "epochs = 'ten'"),
    "a variant that is a list": ("config.json", {"variant": ["mnist"]}, "variant = ['mnist']"),
    "config that is a list": ("config.json", [1, 2], "config.json cannot be read"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_a_bad_run_file_marks_that_run_damaged_and_no_other(runs_dir, no_processes, case):
    file, values, words = BAD_FILES[case]
    good = stopped_run(runs_dir)
    runfiles.update_status(runs.run_path(good, runs_dir), images_per_s=800.0, device="cpu")
    bad = stopped_run(runs_dir)
    path = runs.run_path(bad, runs_dir) / file
    recorded = json.loads(path.read_text())
    path.write_text(json.dumps({**recorded, **values} if isinstance(values, dict) else values))

    listing = runs.list_runs(runs_dir).set_index("id")  # must not raise
    assert listing.loc[bad, "state"] == "damaged"
    reason = listing.loc[bad, "error"]
    assert words in reason and reason.startswith("This run is damaged:") and reason.endswith("delete it.")
    assert (listing.loc[good, "state"], listing.loc[good, "epoch"], listing.loc[good, "duration_s"]) == ("stopped", 1, 2.5)
    status = runs.status(bad, runs_dir)
    assert status["state"] == "damaged" and status["error"] == reason
    assert list(runs.training_speeds(runs_dir)["run"]) == [good]
    with pytest.raises(RunError, match="cannot be resumed"):
        runs.resume(bad, runs_dir)
    runs.stop(bad, runs_dir)  # nothing to stop: not active
    assert not no_processes
    runs.delete_run(bad, runs_dir)
    assert list(runs.list_runs(runs_dir)["id"]) == [good]


def test_a_live_unrelated_pid_without_a_start_time_does_not_keep_a_run_running(runs_dir, no_processes):
    if runfiles.process_start_time(os.getpid()) is None:
        pytest.skip("no process start times on this system: a pid is all there is")
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_id = stopped_run(runs_dir)
        path = runs.run_path(run_id, runs_dir) / "status.json"
        recorded = json.loads(path.read_text())
        recorded.update(state="running", pid=stranger.pid)
        recorded.pop("proc_start")
        path.write_text(json.dumps(recorded))

        status = runs.status(run_id, runs_dir)
        assert status["state"] == "interrupted"
        assert f"process {stranger.pid} without that process's start time" in status["error"]
        assert runs.list_runs(runs_dir).set_index("id").loc[run_id, "state"] == "interrupted"
        runs.resume(run_id, runs_dir)  # neither stuck nor refused
        assert no_processes == [run_id]
        runs.stop(run_id, runs_dir)
        runs.delete_run(run_id, runs_dir)
        assert stranger.poll() is None  # the stranger is left alone
    finally:
        stranger.kill()
        stranger.wait()


def test_the_cli_lists_a_damaged_run_with_its_reason(runs_dir, capsys):
    bad = stopped_run(runs_dir)
    runfiles.update_status(runs.run_path(bad, runs_dir), pid="1234")
    assert cli.main(["runs", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "damaged" in out and f"{bad}: This run is damaged: status.json has pid = '1234'" in out
    assert cli.main(["delete", bad, "--runs-dir", str(runs_dir)]) == 0
    assert runs.list_runs(runs_dir).empty


# --------------------------------------------------------------------------- #
# Item 15: a full disk; item 16: temp files of killed writes


def test_a_checkpoint_write_on_a_full_disk_says_so(tmp_path, monkeypatch, little_space):
    checkpoints.save_checkpoint({"model": {"w": torch.ones(10)}, "model_args": {}, "epoch": 1}, tmp_path / "last.pt")
    monkeypatch.setattr(checkpoints, "open", full_disk_open(open, allowed_bytes=2000), raising=False)
    with pytest.raises(CheckpointWriteError) as raised:
        checkpoints.save_checkpoint({"model": {"w": torch.zeros(100_000)}, "model_args": {}, "epoch": 2}, tmp_path / "last.pt")
    message = str(raised.value.strerror)
    assert raised.value.errno == errno.ENOSPC
    assert f"the disk is full (3 MB free in {tmp_path})" in message
    assert "enforce fail" not in message and "unexpected pos" not in message
    monkeypatch.undo()
    assert checkpoints.load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_disk_that_fills_during_training_fails_the_run_with_a_sentence(tmp_path, monkeypatch, little_space):
    opened = []

    def only_after_epoch_one(path):
        opened.append(path.name)
        return len(opened) > 2  # epoch 1's best.pt and last.pt land

    monkeypatch.setattr(checkpoints, "open", full_disk_open(open, allowed_bytes=4096, only=only_after_epoch_one), raising=False)
    result = training.train(tiny(epochs=2), tmp_path)
    assert result["state"] == "failed"
    assert "Could not write checkpoint" in result["error"] and f"the disk is full (3 MB free in {tmp_path})" in result["error"]
    assert "unexpected pos" not in result["error"] and "intact" in result["error"]
    assert json.loads((tmp_path / "status.json").read_text())["error"] == result["error"]
    monkeypatch.undo()
    assert checkpoints.load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_a_launch_into_a_full_disk_is_refused_before_starting(runs_dir, monkeypatch, little_space):
    spawned = []
    monkeypatch.setattr(runs, "_spawn", lambda run_dir, resume: spawned.append(run_dir))
    inside = runs_dir.resolve()
    monkeypatch.setattr(runfiles, "open", full_disk_open(open, only=lambda path: inside in path.resolve().parents), raising=False)
    with pytest.raises(RunError, match=rf"Cannot create a run in {runs_dir}: {DISK_FULL}\."):
        runs.launch(tiny(), runs_dir)
    assert not spawned and runs.list_runs(runs_dir).empty
    assert not [p for p in runs_dir.iterdir() if p.name.startswith(".new-")]  # nothing half-made left


def test_temp_files_of_killed_writes_are_removed_when_a_run_starts(tmp_path):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = dead_pid()
        stale = [f".last.pt.{dead}.tmp", f".best.pt.{dead}.tmp", f".status.json.{dead}.140000000.tmp",
                 f".last.pt.{2**70}.tmp"]
        live = f".last.pt.{stranger.pid}.tmp"  # a process still writing
        for name in stale + [live, "notes.tmp"]:
            (tmp_path / name).write_bytes(b"half a checkpoint")
        assert training.train(tiny(), tmp_path)["state"] == "finished"
        left = {p.name for p in tmp_path.iterdir()}
        assert not set(stale) & left and {live, "notes.tmp"} <= left
        os.utime(tmp_path / live, (0, 0))  # an hour old: a leftover even if its pid lives again
        assert runfiles.remove_stale_temps(tmp_path) == [live]
    finally:
        stranger.kill()
        stranger.wait()


# --------------------------------------------------------------------------- #
# Item 5's last sentence: no advice to load unsafely


class _Code:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", ["pickled code", "a plain pickle"])
def test_checkpoint_errors_never_advise_weights_only_false(tmp_path, content):
    import pickle

    path = tmp_path / "last.pt"
    if content == "pickled code":
        torch.save({"model": _Code()}, path)
    else:
        path.write_bytes(pickle.dumps({"model": 1}, protocol=4))
    with pytest.raises(CheckpointError) as raised:
        checkpoints.load_checkpoint(path)
    message = str(raised.value)
    assert str(path) in message and "weights_only" not in message and "trusted source" not in message
    assert "never unpickled" in message
