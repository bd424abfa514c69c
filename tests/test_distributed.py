"""One run on several processes: DistributedDataParallel under torchrun, gloo on the CPU.

Real torchrun process groups (``python -m torch.distributed.run``), real run
folders, real ``kill -9``. The net is the tiny one (mnist at 12x12 on digits)
without dropout: its masks are the one thing each process draws on its own, so
without them two processes of 32 images train as one process of 64 up to the
rounding of the gradients' sums (3.6e-7 apart after three steps, here). A
cosine schedule lets that rounding settle by the end of the epoch: with a
constant rate the same two runs ended 1.4 points apart on 360 test images.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from alexnet_core import checkpoints, runlogs, runs, training
from tests.fixtures import tiny_config
from tests.test_runs import _env, wait_until  # noqa: F401  (a shared dataset cache, the default queue)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 300  # seconds; the two cores are shared, and each process loads torch


def tiny(**changes):
    return tiny_config(**{"variant_options": {"dropout": 0.0}, "schedule": "cosine", **changes})


@pytest.fixture
def runs_dir(tmp_path):
    yield tmp_path / "runs"
    for pid in _processes_of(tmp_path):  # never leave a rank or a torchrun behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _processes_of(folder: Path) -> list[int]:
    """This user's processes whose command line names ``folder`` (workers, torchrun, ranks)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def events(run_dir: Path) -> list[dict]:
    text = (run_dir / "metrics.jsonl").read_text()
    assert text.endswith("\n"), "a torn last line"
    return [json.loads(line) for line in text.splitlines()]  # every line whole JSON


def of_type(run_dir: Path, kind: str) -> list[dict]:
    return [e for e in events(run_dir) if e["type"] == kind]


def store_files(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and p.name != "log.txt")


def ranks_of(run_dir: Path) -> dict[int, int]:
    """{rank: pid} of a run's live ranks (torchrun's children, RANK in their environment)."""
    found = {}
    for pid in _processes_of(run_dir):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = [v for v in environ if v.startswith(b"RANK=")]
        if rank and b"--torchrun" in Path(f"/proc/{pid}/cmdline").read_bytes():
            found[int(rank[0][5:])] = pid
    return found


def _three_steps(rank: int, world: int, port: int, out) -> None:
    """Three SGD steps of the mnist net on a fixed batch of 32: alone (world 1), or as one of
    two ranks (gloo), each on its share of the batch. Rank 0 puts the weights in ``out``."""
    import torch
    from torch import nn

    from alexnet_core import variants
    from alexnet_core.distributed import SOLO, Ranks
    from alexnet_core.engine import Engine

    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                          LOCAL_RANK=str(rank))
    group = Ranks.start(torch.device("cpu")) if world > 1 else SOLO
    torch.manual_seed(0)
    model = variants.get_model("mnist", in_channels=1, num_classes=10, input_size=12, dropout=0.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    engine = Engine(torch.device("cpu"), "fp32")
    module = engine.prepare(model, group=group)
    x = torch.randn(32, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(2))
    share = group.shard(torch.arange(32))
    for _ in range(3):
        engine.step(module, optimizer, nn.CrossEntropyLoss(), x[share], y[share])
    if group.is_main:
        out.put({name: value.numpy().copy() for name, value in model.state_dict().items()})  # plain arrays: the
        # queue would hand tensors over as shared memory, gone once this process has ended
    group.close()


def test_two_ranks_take_the_step_one_process_takes():
    import torch
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    out = context.Queue()
    _three_steps(0, 1, 0, out)
    alone = out.get()
    port = _free_port()
    ranks = [context.Process(target=_three_steps, args=(rank, 2, port, out)) for rank in range(2)]
    for process in ranks:
        process.start()
    together = out.get(timeout=TIMEOUT)
    for process in ranks:
        process.join(TIMEOUT)
    assert [process.exitcode for process in ranks] == [0, 0]
    for name, value in alone.items():
        assert torch.allclose(torch.from_numpy(together[name]).float(), torch.from_numpy(value).float(), atol=1e-5), name


def test_two_processes_leave_the_store_as_one_does_with_the_same_accuracy(runs_dir):
    single = runs.launch(tiny(), runs_dir)
    assert runs.wait(single, TIMEOUT, runs_dir)["state"] == "finished"
    pair = runs.launch(tiny(nproc_per_node=2), runs_dir)
    done = runs.wait(pair, TIMEOUT, runs_dir)
    assert done["state"] == "finished", runs.log_tail(pair, 40, runs_dir)
    assert (done["device"], done["processes"]) == ("cpu (2 processes)", 2)

    one, two = runs.run_path(single, runs_dir), runs.run_path(pair, runs_dir)
    assert store_files(two) == store_files(one)  # one metrics file, one last.pt, one best.pt, the predictions
    assert [e["type"] for e in events(two) if e["type"] != "step"] == ["start", "epoch", "end"]
    assert of_type(two, "start")[0]["processes"] == 2
    a, b = of_type(one, "epoch")[0], of_type(two, "epoch")[0]
    assert abs(a["test_acc"] - b["test_acc"]) <= 0.01  # within a point; in practice equal
    assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
    last = checkpoints.load_checkpoint(two / "last.pt")
    assert len(last["rng"]["ranks"]) == 2  # each rank's random state, for a resume
    model, config = runs.load_model(pair, "best", runs_dir)
    assert config.nproc_per_node == 2 and not model.training


def test_stop_then_resume_finishes_where_it_stopped(runs_dir):
    run_id = runs.launch(tiny(epochs=3, nproc_per_node=2), runs_dir)
    run_dir = runs.run_path(run_id, runs_dir)
    wait_until(lambda: any(e["type"] == "step" for e in runs.read_metrics(run_id, 0, runs_dir)[0]), what="a first step")
    runs.stop(run_id, runs_dir)
    stopped = runs.wait(run_id, TIMEOUT, runs_dir)
    assert stopped["state"] == "stopped", runs.log_tail(run_id, 40, runs_dir)
    last = checkpoints.load_checkpoint(run_dir / "last.pt")
    assert (last["epoch"], last["step"]) == (stopped["epoch"], stopped["step"]) and last["epoch"] < 3

    runs.resume(run_id, runs_dir)
    done = runs.wait(run_id, TIMEOUT, runs_dir)
    assert done["state"] == "finished", runs.log_tail(run_id, 40, runs_dir)
    assert runlogs.frames_from_events(events(run_dir))[1]["epoch"].tolist() == [1, 2, 3]
    assert len(of_type(run_dir, "resume")) == 1
    wait_until(lambda: not _processes_of(run_dir), what="every process of the run to exit once it finished")


@pytest.mark.parametrize("killed", [1, 0])
def test_kill_9_of_a_rank_leaves_the_run_interrupted_and_resumable(runs_dir, killed):
    run_id = runs.launch(tiny(epochs=3, nproc_per_node=2), runs_dir)
    run_dir = runs.run_path(run_id, runs_dir)
    wait_until(lambda: (run_dir / "last.pt").exists() and len(ranks_of(run_dir)) == 2, what="the first epoch's last.pt")
    os.kill(ranks_of(run_dir)[killed], signal.SIGKILL)
    ended = runs.wait(run_id, TIMEOUT, runs_dir)
    assert ended["state"] == "interrupted", runs.log_tail(run_id, 40, runs_dir)
    assert "resume continues from the last checkpoint" in ended["error"]
    wait_until(lambda: not _processes_of(run_dir), what="every process of the run to end")

    runs.resume(run_id, runs_dir)
    done = runs.wait(run_id, TIMEOUT, runs_dir)
    assert done["state"] == "finished", runs.log_tail(run_id, 40, runs_dir)
    assert runlogs.frames_from_events(events(run_dir))[1]["epoch"].tolist() == [1, 2, 3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_machines_meet_on_loopback_as_one_run(runs_dir, tmp_path):
    """torchrun's rendezvous (--nnodes 2 --rdzv-endpoint) with both "machines" on 127.0.0.1:
    the command docs/distributed.md gives, run twice, one run in the shared runs folder."""
    flags = ["--variant", "mnist", "--dataset", "digits", "--input-size", "12", "--epochs", "1", "--batch-size", "64",
             "--optimizer", "adamw", "--lr", "3e-3", "--threads", "1", "--option", "dropout=0", "--seed", "0",
             "--schedule", "cosine",
             "--nproc-per-node", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
             "--runs-dir", str(runs_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # On one computer both "machines" match the endpoint and race to host torchrun's store; about
    # one start in five, the loser's fallback crashed ("terminate called without an active
    # exception") and the pair failed or hung. Two real machines have one host: say which
    # (torchrun reads --rdzv-conf from PET_RDZV_CONF).
    machines = [subprocess.Popen([sys.executable, "-m", "alexnet_core", "train", *flags], cwd=tmp_path,
                                 env={**env, "PET_RDZV_CONF": f"is_host={int(host)}"},
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for host in (True, False)]
    try:
        outputs = [m.communicate(timeout=TIMEOUT)[0] for m in machines]
    except subprocess.TimeoutExpired:  # once in a CI run: keep what each machine said, for the next look
        for m in machines:
            m.kill()
        said = "\n----\n".join(m.communicate()[0][-4000:] for m in machines)
        pytest.fail(f"the two machines were not done after {TIMEOUT} s; they said:\n{said}")
    assert [m.returncode for m in machines] == [0, 0], outputs
    listed = runs.list_runs(runs_dir)
    assert len(listed) == 1 and listed["state"][0] == "finished"
    status = runs.status(listed["id"][0], runs_dir)
    assert status["device"] == "cpu (2 processes on 2 machines)"
    assert sum("finished: test accuracy" in out for out in outputs) == 1  # rank 0's machine reports

    alone = tmp_path / "alone"
    alone.mkdir()
    single = training.train(runs.read_config(listed["id"][0], runs_dir), alone)  # the same settings, one process
    assert abs(status["last_test_acc"] - single["last_test_acc"]) <= 0.01
