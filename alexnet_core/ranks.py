"""A run on several processes or machines: what each process torchrun starts does, and the
command that starts them on each machine.

    rank_main(*, run_dir=None, resume=False, config_file=None, runs_dir=None, claim=False, progress=None) -> dict
    train_on_machines(config, *, machines, endpoint, rdzv_id=None, runs_dir=None) -> exit code
    resume_on_machines(run_id, *, machines, endpoint, rdzv_id=None, runs_dir=None) -> exit code

On one machine the run store makes the run folder, queues it and starts
torchrun (``placement.run_ranks``); each rank is ``python -m alexnet_core train
--run-dir DIR --torchrun``. On several machines the same command runs on each
(``--nnodes N --rdzv-endpoint HOST:PORT``): torchrun's ranks meet there, rank 0
makes the run (or, for a resume, claims it) in its runs folder and tells the
others where it is and what it trains. Every rank reads last.pt for a resume,
so that runs folder must be on storage every machine sees (docs/distributed.md).
Several machines do not wait in a runs folder's queue: whoever starts them
has chosen the machines.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from alexnet_core import paths, placement, runs, training
from alexnet_core.config import TrainConfig
from alexnet_core.device import resolve_device
from alexnet_core.distributed import Ranks


def _prepare(config: TrainConfig, run_dir: Path | None, runs_dir, world: int) -> tuple:
    """Rank 0 makes the run (``run_dir`` None) or claims it for a resume: ("ok", folder, config
    dict), or ("error", the sentence) for every rank to stop on."""
    try:
        if run_dir is None:
            config.check_machine(processes=world)
            run_id = runs.create_run(config, runs_dir)
            run_dir = runs.run_path(run_id, runs_dir)
            print(f"run {run_id} in {paths.runs_root(runs_dir)}", flush=True)
        else:
            config.check_machine(processes=world)
            runs.resume(run_dir.name, run_dir.parent, start=False)
        return "ok", str(run_dir), config.to_dict()
    except ValueError as exc:  # ConfigError, RunError: a sentence
        return "error", str(exc), None


def rank_main(*, run_dir: str | os.PathLike | None = None, resume: bool = False, config_file=None, runs_dir=None,
              claim: bool = False, progress=None) -> dict:
    """The body of one rank: join torchrun's group, learn the run folder (given, or from rank 0),
    and train its share (``training.train``). Returns the summary; ``made_here`` is True on
    rank 0 of a run it made or claimed itself, whose outcome no other process reports."""
    run_dir = Path(run_dir).resolve() if run_dir else None
    config = TrainConfig.from_json(run_dir / "config.json" if run_dir else config_file)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    group = Ranks.start(resolve_device(config.device, gpu=local_rank))
    try:
        made_here = run_dir is None or claim
        if made_here:
            answer = _prepare(config, run_dir, runs_dir, group.world) if group.is_main else None
            kind, where, values = group.share(answer)
            if kind == "error":
                return {"state": "failed", "error": where, "made_here": group.is_main}
            run_dir, config = Path(where), TrainConfig.from_dict(values)
        result = training.train(config, run_dir, resume=resume, progress=progress, group=group, gpu=local_rank)
        return {**result, "made_here": made_here and group.is_main}
    finally:
        group.close()


def _torchrun(worker_args: list[str], processes: int, machines: int, endpoint: str, rdzv_id: str | None) -> int:
    cmd = placement.torchrun_command(worker_args, processes=processes, machines=machines, endpoint=endpoint,
                                     rdzv_id=rdzv_id)
    return subprocess.run(cmd, env=placement.child_env(processes=processes)).returncode


def train_on_machines(config: TrainConfig, *, machines: int, endpoint: str, rdzv_id: str | None = None,
                      runs_dir=None) -> int:
    """This machine's part of a new run over ``machines`` machines: ``config.nproc_per_node``
    ranks here, meeting the others at ``endpoint``. Checked here first, so a machine that
    cannot take part says so before the others wait for it."""
    config.validate(check_data=True).check_machine(processes=config.nproc_per_node * machines)
    with tempfile.TemporaryDirectory(prefix="alexnet-lab-") as folder:
        path = Path(folder) / "config.json"
        config.to_json(path)
        args = ["--config-file", str(path)] + (["--runs-dir", str(runs_dir)] if runs_dir else [])
        return _torchrun(args, config.nproc_per_node, machines, endpoint, rdzv_id)


def resume_on_machines(run_id: str, *, machines: int, endpoint: str, rdzv_id: str | None = None, runs_dir=None) -> int:
    """This machine's part of resuming ``run_id`` over ``machines`` machines (its runs folder
    shared by all); rank 0 checks that it can be resumed."""
    run_dir = runs.run_path(run_id, runs_dir)
    config = runs.read_config(run_id, runs_dir)
    return _torchrun(["--run-dir", str(run_dir), "--resume", "--claim"], config.nproc_per_node, machines, endpoint,
                     rdzv_id)
