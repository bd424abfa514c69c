"""Devices and precision: cuda:N, auto/bf16/fp16/fp32, what a machine refuses, and the step each runs.

This machine has no GPU: the CUDA answers PyTorch gives (is_available,
device_count, is_bf16_supported, the capability) are monkeypatched, so the
validation is tested as a GPU server would run it; the steps themselves run
on the CPU (fp16 with its gradient scaler included).
"""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from torch import nn

from alexnet_core import device, engine, training
from alexnet_core.__main__ import build_parser, config_from_args
from alexnet_core.config import ConfigError, TrainConfig, get_setting
from tests.fixtures import tiny_config as tiny


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this machine has GPUs: ``gpus(count, bf16=True, name=...)``."""

    def pretend(count: int, bf16: bool = True, name: str = "Tesla V100-SXM2-16GB", capability=(7, 0)):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0) if bf16 else capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: name)

    return pretend


# --------------------------------------------------------------------------- #
# Devices


def test_cuda_with_an_index_is_that_gpu(gpus):
    gpus(2)
    assert device.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert device.resolve_device("cuda") == torch.device("cuda", 0)
    assert device.resolve_device("auto") == torch.device("cuda", 0)
    assert device.resolve_device("auto", gpu=1) == torch.device("cuda", 1)  # where the run queue placed it
    assert device.device_choices() == ["auto", "cpu", "cuda", "cuda:0", "cuda:1"]


def test_a_gpu_index_the_machine_lacks_is_refused_naming_those_it_has(gpus):
    gpus(2)
    with pytest.raises(ConfigError, match=r"has 2 CUDA GPUs \(cuda:0, cuda:1\)"):
        tiny(device="cuda:2").validate()
    gpus(0)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        tiny(device="cuda:0").validate()


@pytest.mark.parametrize("bad", ["cuda:", "cuda:x", "gpu", "cuda0", "cuda:1:2", "CPU"])
def test_a_device_that_is_no_device_name(bad):
    with pytest.raises(ConfigError, match=r"Unknown device .*cuda:N"):
        tiny(device=bad).check_fields()


def test_a_run_trained_on_another_gpu_still_reads_here():
    # The field check is the name's shape; whether this machine has the GPU is validate()'s.
    config = tiny(device="cuda:3")
    assert config.check_fields() is config
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError):
            config.validate()


def test_describe_names_the_gpu_as_the_machine_numbers_it(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert device.describe(torch.device("cuda", 0)) == "cuda:2"
    assert device.describe(torch.device("cuda", 0), 2) == "cuda:2,3 (2 processes)"
    assert device.describe(torch.device("cpu"), 4, 2) == "cpu (4 processes on 2 machines)"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert device.describe(torch.device("cuda", 1)) == "cuda:1"


def test_gpu_ids_count_without_torch(monkeypatch, tmp_path):
    monkeypatch.setattr(device, "NVIDIA_GPUS", str(tmp_path / "none"))
    assert device.gpu_ids() == []
    for bus in ("0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0"):
        (tmp_path / bus).mkdir()
    monkeypatch.setattr(device, "NVIDIA_GPUS", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert device.gpu_ids() == ["0", "1", "2"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert device.gpu_ids() == ["2", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device.gpu_ids() == []


# --------------------------------------------------------------------------- #
# Precision


def test_precision_auto_follows_the_device(gpus):
    assert device.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert device.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    gpus(1, bf16=True)
    assert device.resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    assert device.resolve_precision("fp16", torch.device("cuda", 0)) == "fp16"
    gpus(1, bf16=False)
    assert device.resolve_precision("auto", torch.device("cuda", 0)) == "fp16"
    assert device.resolve_precision("fp32", torch.device("cuda", 0)) == "fp32"


def test_precision_the_machine_cannot_do_is_refused_with_a_sentence(gpus):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU; on the CPU choose fp32"):
        tiny(device="cpu", precision="fp16").validate()
    gpus(1, bf16=False, name="Tesla V100-SXM2-16GB", capability=(7, 0))
    with pytest.raises(ConfigError, match=r"bf16 needs .*Tesla V100-SXM2-16GB is 7\.0: choose fp16"):
        tiny(device="cuda", precision="bf16").validate()
    with pytest.raises(ConfigError, match="Unknown precision 'fp8'"):
        tiny(precision="fp8").validate()


def test_a_config_json_written_before_precision_existed_still_loads(tmp_path):
    old = tiny().to_dict()
    for name in ("precision", "nproc_per_node", "compile"):
        old.pop(name)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(old))
    config = TrainConfig.from_json(path).check_fields()
    assert (config.precision, config.nproc_per_node, config.compile) == ("auto", 1, False)


def test_the_cli_and_the_form_get_the_new_settings():
    args = build_parser().parse_args(["train", "--precision", "fp32", "--device", "cuda:1", "--nproc-per-node", "2",
                                      "--compile"])
    config = config_from_args(args)
    assert (config.precision, config.device, config.nproc_per_node, config.compile) == ("fp32", "cuda:1", 2, True)
    for name in ("precision", "nproc_per_node", "compile"):
        assert get_setting(name).section == "more"  # the Train page's "More settings", not its first rows


# --------------------------------------------------------------------------- #
# The step


def _tiny_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_fp16_steps_go_through_a_gradient_scaler_whose_state_resumes():
    net = _tiny_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    fp16 = engine.Engine(torch.device("cpu"), "fp16")  # CPU autocast has float16 too: the scaler's path runs here
    before = [p.detach().clone() for p in net.parameters()]
    for _ in range(3):
        logits, loss = fp16.step(net, optimizer, nn.CrossEntropyLoss(), x, y)
    assert logits.dtype == torch.float16 and torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    state = fp16.state_dict()
    assert state["scale"] > 0 and state["_growth_tracker"] == 3
    again = engine.Engine(torch.device("cpu"), "fp16")
    again.load_state_dict(state)
    assert again.state_dict() == state
    assert engine.Engine(torch.device("cpu"), "fp32").state_dict() is None


def test_cudnn_autotuning_is_on_for_cuda_only(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    net = _tiny_net()
    assert engine.Engine(torch.device("cpu"), "fp32").prepare(net) is net
    assert torch.backends.cudnn.benchmark is False
    assert engine.Engine(torch.device("cuda", 0), "bf16").prepare(net) is net  # nothing runs on the GPU here
    assert torch.backends.cudnn.benchmark is True


def test_compile_wraps_the_training_module_and_checkpoints_keep_plain_names(tmp_path):
    trainer = training._Trainer(tiny(compile=True), tmp_path, resume=False, progress=None)
    trainer.setup()
    assert trainer.module is not trainer.model and trainer.module._orig_mod is trainer.model  # compiled lazily
    assert not any(name.startswith("_orig_mod") for name in trainer._checkpoint_state()["model"])


def test_compile_without_its_compiler_is_refused(monkeypatch):
    monkeypatch.setattr(device.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ConfigError, match="needs a C.. compiler"):
        tiny(device="cpu", compile=True).validate()


def test_a_bf16_run_on_the_cpu_trains_and_says_so(tmp_path):
    result = training.train(tiny(precision="bf16"), tmp_path)
    assert result["state"] == "finished", result
    start = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert (start["precision"], start["device"], start["processes"]) == ("bf16", "cpu", 1)
    assert json.loads((tmp_path / "status.json").read_text())["precision"] == "bf16"
