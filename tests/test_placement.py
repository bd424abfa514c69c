"""The run queue over the devices: one run per GPU, ALEXNET_LAB_MAX_RUNS as a cap, the CPU as before.

The GPU count is monkeypatched (``placement.gpu_ids``): the queue never loads
PyTorch, so this is what it sees on a GPU server. Runs are real run folders
(``runs.create_run``); slots are the real flock files.
"""

from __future__ import annotations

import sys

import pytest

from alexnet_core import placement, runfiles, runs
from tests.fixtures import tiny_config as tiny


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ALEXNET_LAB_MAX_RUNS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return tmp_path / "runs"


def gpus(monkeypatch, ids):
    monkeypatch.setattr(placement, "gpu_ids", lambda: list(ids))


def queued(store, **changes):
    return runs.run_path(runs.create_run(tiny(**changes), store), store)


def test_on_the_cpu_one_run_at_a_time_unless_the_setting_says(store, monkeypatch):
    gpus(monkeypatch, [])
    assert placement.max_concurrent_runs() == 1
    monkeypatch.setenv("ALEXNET_LAB_MAX_RUNS", "3")
    assert placement.max_concurrent_runs() == 3
    first, second = queued(store), queued(store)
    monkeypatch.setenv("ALEXNET_LAB_MAX_RUNS", "1")
    a = placement.take_slots(first)
    assert (a.slots, a.gpus, a.gpu_for_this_process()) == ([0], [], None)
    assert placement._try_slots(store, [], 1, None) is None  # the one slot is taken
    a.release()
    assert runfiles.read_json(first / "status.json")["state"] == "running"
    assert "device" not in runfiles.read_json(first / "status.json")  # the trainer writes "cpu" itself
    b = placement.take_slots(second)
    assert b.slots == [0]
    b.release()


def test_one_run_per_gpu_each_on_its_own(store, monkeypatch):
    gpus(monkeypatch, ["0", "1"])
    assert placement.max_concurrent_runs() == 2
    first, second, third = queued(store), queued(store), queued(store)
    a = placement.take_slots(first)
    b = placement.take_slots(second)
    assert (a.slots, a.gpus, b.slots, b.gpus) == ([0], ["0"], [1], ["1"])
    assert runfiles.read_json(second / "status.json")["device"] == "cuda:1"
    assert placement._try_slots(store, ["0", "1"], 1, None) is None  # both GPUs busy: the third waits
    a.release()
    c = placement.take_slots(third)
    assert (c.slots, c.gpus) == ([0], ["0"])
    b.release()
    c.release()


def test_max_runs_caps_the_gpus(store, monkeypatch):
    gpus(monkeypatch, ["0", "1", "2"])
    monkeypatch.setenv("ALEXNET_LAB_MAX_RUNS", "1")
    assert placement.max_concurrent_runs() == 1
    a = placement.take_slots(queued(store))
    assert placement._try_slots(store, ["0", "1", "2"], 1, None) is None  # GPU 1 is free, the cap is not
    monkeypatch.setenv("ALEXNET_LAB_MAX_RUNS", "9")
    assert placement.max_concurrent_runs() == 3
    a.release()


def test_a_run_for_one_gpu_waits_for_that_gpu(store, monkeypatch):
    gpus(monkeypatch, ["0", "1"])
    monkeypatch.setattr(runs.TrainConfig, "check_machine", lambda self, processes=None: self)  # no GPU here
    pinned = queued(store, device="cuda:1")
    other = placement.take_slots(queued(store, device="cuda:1"))
    assert (other.slots, other.gpus) == ([1], ["1"])
    assert placement._try_slots(store, ["0", "1"], 1, 1) is None  # GPU 0 is free, but it asked for GPU 1
    other.release()
    mine = placement.take_slots(pinned)
    assert (mine.slots, mine.gpus) == ([1], ["1"])
    mine.release()


def test_a_run_of_several_processes_takes_a_gpu_each(store, monkeypatch):
    gpus(monkeypatch, ["4", "5", "6"])
    monkeypatch.setattr(runs.TrainConfig, "check_machine", lambda self, processes=None: self)
    ddp = placement.take_slots(queued(store, nproc_per_node=2))
    assert (ddp.slots, ddp.gpus) == ([0, 1], ["4", "5"])
    assert placement.child_env(ddp.gpus)["CUDA_VISIBLE_DEVICES"] == "4,5"
    assert placement._try_slots(store, ["4", "5", "6"], 2, None) is None  # one GPU left: a second such run waits
    single = placement._try_slots(store, ["4", "5", "6"], 1, None)
    assert single[0] == [2]
    for lock in single[1]:
        lock.release()
    ddp.release()
    gpus(monkeypatch, [])  # on the CPU the processes share one slot
    cpu = placement.take_slots(queued(store, nproc_per_node=2))
    assert (cpu.slots, cpu.gpus) == ([0], [])
    cpu.release()


def test_a_cpu_run_on_a_gpu_server_is_not_given_a_gpu(store, monkeypatch):
    gpus(monkeypatch, ["0"])
    cpu = placement.take_slots(queued(store, device="cpu"))
    assert (cpu.slots, cpu.gpus, cpu.gpu_for_this_process()) == ([0], [], None)
    cpu.release()


def test_a_waiting_run_is_told_the_cap_in_gpus(store, monkeypatch):
    gpus(monkeypatch, ["0", "1"])
    held = [placement.take_slots(queued(store)), placement.take_slots(queued(store))]
    waiting = queued(store)
    seen = []

    def cancel_once_told(event):  # what a watcher would do: read it, then cancel
        seen.append(event)
        runs.stop(waiting.name, store)

    assert placement.take_slots(waiting, progress=cancel_once_told) is None
    assert seen == [{"type": "queued", "ahead": 0, "limit": 2}]
    assert runfiles.read_json(waiting / "status.json")["state"] == "stopped"
    for placed in held:
        placed.release()


def test_the_worker_narrows_itself_to_its_gpu_before_torch_loads(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    placed = placement.Placement([], [1], ["7"])
    assert placed.gpu_for_this_process() == 1  # torch is loaded in this test: the index, as torch numbers it
    monkeypatch.delitem(sys.modules, "torch")
    assert placed.gpu_for_this_process() == 0
    assert placement.os.environ["CUDA_VISIBLE_DEVICES"] == "7"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")


def test_a_worker_placed_on_a_gpu_trains_where_it_was_placed(store, monkeypatch):
    gpus(monkeypatch, ["0", "1"])
    seen = {}
    from alexnet_core import training

    monkeypatch.setattr(training, "train", lambda config, run_dir, **kw: seen.update(kw) or {"state": "finished"})
    busy = placement.take_slots(queued(store))
    assert runs.run_worker(queued(store))["state"] == "finished"
    assert seen["gpu"] == 1  # GPU 0 was busy
    busy.release()


def test_torchrun_commands():
    one = placement.torchrun_command(["--run-dir", "/r/x"], processes=2)
    assert one[1:5] == ["-m", "torch.distributed.run", "--nproc-per-node", "2"] and "--standalone" in one
    assert one[-5:] == ["alexnet_core", "train", "--run-dir", "/r/x", "--torchrun"]
    two = placement.torchrun_command([], processes=1, machines=2, endpoint="10.0.0.5:29400")
    assert "--standalone" not in two
    assert two[two.index("--nnodes") + 1] == "2" and two[two.index("--rdzv-endpoint") + 1] == "10.0.0.5:29400"


def test_the_runs_table_says_where_a_run_trains(store, monkeypatch):
    from tests.test_pages import no_errors, open_page

    monkeypatch.setenv("ALEXNET_LAB_RUNS", str(store))
    run_dir = queued(store)
    runfiles.update_status(run_dir, device="cuda:1")
    assert runs.list_runs(store)["device"].tolist() == ["cuda:1"]
    at = open_page("runs")
    no_errors(at)
    table = at.html[0].value
    assert "<th>device</th>" in table and "<td>cuda:1</td>" in table
