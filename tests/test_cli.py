"""python -m alexnet_core, run as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alexnet_core import runs

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 300  # the test machine's two cores are shared


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


def cli_env(workdir) -> dict:
    """This process's environment with the repository importable and the lab's folders in ``workdir``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["ALEXNET_LAB_CACHE"] = str(workdir / "cache")
    env["ALEXNET_LAB_RUNS"] = str(workdir / "runs")
    env["ALEXNET_LAB_DATA"] = str(workdir / "data")
    env.pop("ALEXNET_LAB_MAX_RUNS", None)
    return env


def cli(*args, workdir, check=True):
    done = subprocess.run(
        [sys.executable, "-m", "alexnet_core", *args], cwd=workdir, env=cli_env(workdir), capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


TINY = ["--variant", "mnist", "--dataset", "digits", "--input-size", "12", "--epochs", "1", "--batch-size", "64",
        "--optimizer", "adamw", "--lr", "0.003", "--threads", "1"]


def test_variants_datasets_and_recipes_list_the_registries(workdir):
    out = cli("variants", workdir=workdir).stdout
    for name in ("paper", "torchvision", "lrn", "bn", "cifar", "mnist", "layered"):
        assert f"\n{name} " in out
    assert "3x227x227" in out and "1x28x28" in out

    out = cli("datasets", workdir=workdir).stdout
    digits = next(line for line in out.splitlines() if line.startswith("digits "))
    assert " yes " in digits and "scikit-learn" in digits
    cifar = next(line for line in out.splitlines() if line.startswith("cifar10 "))
    assert " no " in cifar and "cifar-10-batches-py" in cifar  # says where the files go

    out = cli("recipes", workdir=workdir).stdout
    assert out.startswith("quick ") and "\nmnist " in out and "fashion-mnist" in out


def test_summary_prints_layer_table_and_shape_trace(workdir):
    out = cli("summary", "--variant", "cifar", "--dataset", "digits", workdir=workdir).stdout
    assert "features.0" in out and "Conv2d" in out and "totals: params" in out
    assert "floor((32 - 3 + 2*1) / 2) + 1 = 16" in out
    assert "adapted" in out  # digits are 1x8x8, the cifar net takes 3x32x32


def test_train_in_the_foreground_then_runs_and_eval(workdir):
    done = cli("train", *TINY, workdir=workdir)
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("finished: test accuracy")
    assert any(line.startswith("epoch 1/1") for line in lines)
    run_id = lines[-1].split("Run ")[-1]

    out = cli("runs", workdir=workdir).stdout
    assert run_id in out and "finished" in out

    out = cli("eval", run_id, workdir=workdir).stdout
    assert "test accuracy" in out and "360 digits test images" in out

    done = cli("resume", run_id, workdir=workdir, check=False)
    assert done.returncode == 2 and "already finished" in done.stderr


def test_foreground_train_finishes_when_its_reader_goes_away(workdir):
    """The output pipe closes after the first line (a parent that died): the run still finishes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "alexnet_core", "train", *TINY, "--epochs", "2"], cwd=workdir, env=cli_env(workdir),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    first = proc.stdout.readline()  # "run <id> in <folder>"
    proc.stdout.close()
    try:
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read()
    run_id = first.split()[1]
    status = runs.status(run_id, workdir / "runs")
    assert status["state"] == "finished", (status, stderr)
    assert proc.returncode == 0, stderr
    assert "BrokenPipeError" not in stderr


def test_train_detach_prints_the_run_id_and_stop_cancels(workdir):
    env_runs = workdir / "runs"
    done = cli("train", *TINY, "--detach", workdir=workdir)
    run_id = done.stdout.strip()
    assert runs.run_path(run_id, env_runs).is_dir()
    final = runs.wait(run_id, timeout=TIMEOUT, runs_dir=env_runs)
    assert final["state"] == "finished", runs.log_tail(run_id, runs_dir=env_runs)
    out = cli("stop", run_id, workdir=workdir).stdout
    assert "nothing to stop" in out


def test_recipe_with_overrides_builds_one_config(workdir):
    from alexnet_core.__main__ import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--recipe", "quick", "--epochs", "2", "--no-flip", "--option", "groups=2"])
    with pytest.raises(ValueError, match="no option groups"):
        config_from_args(args).validate()  # runs.create_run validates a launch
    args = build_parser().parse_args(["train", "--recipe", "paper", "--option", "groups=2", "--lr", "0.02"])
    config = config_from_args(args)
    assert (config.recipe, config.variant, config.lr, config.variant_options) == ("paper", "paper", 0.02, {"groups": 2})


def test_a_launch_is_validated_once(workdir, monkeypatch):
    """From the flags to the last epoch, the config is checked once: by runs.create_run."""
    from alexnet_core.__main__ import main
    from alexnet_core.config import TrainConfig

    calls = []
    validate = TrainConfig.validate

    def counted(self, **kwargs):
        calls.append(kwargs)
        return validate(self, **kwargs)

    monkeypatch.setattr(TrainConfig, "validate", counted)
    for key, value in cli_env(workdir).items():
        if key.startswith("ALEXNET_LAB_"):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("ALEXNET_LAB_MAX_RUNS", raising=False)
    assert main(["train", *TINY]) == 0
    assert calls == [{"check_data": True}]


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--variant", "mnist", "--lr", "0"], ["learning rate"]),
        (["train", "--variant", "vgg16"], ["Unknown variant", "torchvision"]),
        (["train", "--recipe", "nope"], ["Unknown recipe", "quick"]),
        (["train", "--epochs", "three"], ["invalid int value"]),
        (["summary", "--variant", "torchvision", "--input-size", "32"], ["at least 63x63"]),
        (["stop", "../../etc"], ["Invalid run id"]),
        (["eval", "20260101-000000-none-0000"], ["No run"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(workdir, args, words):
    done = cli(*args, workdir=workdir, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for word in words:
        assert word in done.stderr
