"""TrainConfig: every training setting declared once, validated in one place.

Public API::

    TrainConfig                 one typed config; validate(), to_dict/from_dict, to_json/from_json, replace
    Setting                     what a form widget and a CLI flag need to know about one field
    SETTINGS, get_setting(name) one Setting per TrainConfig field, in field order
    setting_field(default, **declaration), settings_of(config_class)   how a field declares its Setting
    ConfigError(ValueError)     a config a student can fix; the message says how
    OPTIMIZERS, SCHEDULES, MAX_INPUT_SIZE, PHOTO_FITS
    split_sizes(config, n) -> (train, validation)

A field is declared once, in the dataclass: its default and type, and through
``setting_field`` its label, help, bounds or choices, and where a form shows it.
The Train page's form and the CLI's ``train`` flags are made from ``SETTINGS``;
``TrainConfig.validate`` checks each field with its ``Setting.check``, then the
rules that join fields. ``runs.create_run`` validates a launch.

Importing this module does not import torch: the CLI builds its parser, and a
queued training process reads its config.json, without it. The variant,
dataset and device registries are asked when a check needs them.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import numbers
import os
import re
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from alexnet_core.device import DEVICE_SYNTAX, PRECISIONS, device_choices
from alexnet_core.runfiles import write_json_atomic

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine", "onecycle")
MAX_INPUT_SIZE = 1024
# How a photo (flowers102, folder) becomes the network's input: (stored squashed, training
# window, evaluation window), the windows as batches.WINDOWS names them.
PHOTO_FITS = {
    "crop": (False, "random", "centre"),  # the 2012 paper's
    "resized-crop": (False, "resized", "centre"),  # torchvision's RandomResizedCrop
    "centre": (False, "whole", "whole"),  # runs made before photo_fit existed
    "squash": (True, "whole", "whole"),  # the cats-vs-dogs post's Resize((227, 227))
}
# A config.json written before image_size and photo_fit existed stored its photos this way.
_PHOTOS_BEFORE = {"flowers102": 64, "folder": 128}


class ConfigError(ValueError):
    """A training configuration that cannot run; the message says what to change."""


# --------------------------------------------------------------------------- #
# Settings


@dataclass(frozen=True)
class Setting:
    """One TrainConfig field as a form and a CLI flag see it.

    ``kind`` is int, float, bool, str (or dict for variant_options);
    ``optional``: None is allowed. ``section`` places it on the Train form
    ("main" or "more"; None: not a form widget). ``active_when=(field, values)``:
    the form disables it unless that field has one of those values.
    ``syntax=(regex, in words)``: a text value is checked against the regex, and
    ``choices`` are then only what a form offers on this machine (the devices).
    """

    name: str
    label: str
    help: str
    kind: type
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple | Callable[[], Sequence[str]] | None = None
    optional: bool = False
    section: str | None = None
    step: float | None = None
    format: str | None = None
    active_when: tuple[str, tuple] | None = None
    hint: str = ""
    flag: bool = True
    syntax: tuple[str, str] | None = None

    def choice_list(self) -> list:
        """The allowed values ([] when any value of the kind goes); a registry is asked now."""
        if self.choices is None:
            return []
        return list(self.choices() if callable(self.choices) else self.choices)

    @property
    def flag_name(self) -> str:
        """The train command's flag: ``--batch-size`` for ``batch_size``."""
        return "--" + self.name.replace("_", "-")

    def bounds_text(self) -> str:
        """The allowed range in words, e.g. "at least 0 and below 1"; "" when unbounded."""
        parts = []
        if self.minimum is not None:
            parts.append(f"{'greater than' if self.min_exclusive else 'at least'} {_number(self.minimum)}")
        if self.maximum is not None:
            parts.append(f"{'below' if self.max_exclusive else 'at most'} {_number(self.maximum)}")
        return " and ".join(parts)

    def check(self, value):
        """``value`` as this setting's kind; ``ConfigError`` with a sentence a student understands.

        Checks the kind, the choices and the bounds of this field alone; the
        rules that join fields are ``TrainConfig.validate``'s.
        """
        if value is None:
            if self.optional:
                return None
            self._refuse(f"needs a value, got {value!r}")
        if self.kind is bool:
            if not isinstance(value, bool):
                self._refuse(f"must be true or false{' (or empty)' if self.optional else ''}, got {value!r}")
            return value
        if self.kind is dict:
            if not isinstance(value, dict):
                self._refuse(f"must be a mapping such as {{'groups': 2}}, got {value!r}")
            return value
        if self.kind is str:
            if not isinstance(value, str):
                self._refuse(f"must be text, got {value!r}")
            if self.syntax is not None:
                if not re.fullmatch(self.syntax[0], value):
                    raise ConfigError(f"Unknown {self.name} {value!r}; choose one of: {self.syntax[1]}.")
                return value
            choices = self.choice_list()
            if choices and value not in choices:
                raise ConfigError(f"Unknown {self.name} {value!r}; choose one of: {', '.join(choices)}.")
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self._refuse(f"must be {'a whole number' if self.kind is int else 'a number'}, got {value!r}")
        if self.kind is int and not isinstance(value, numbers.Integral):
            self._refuse(f"must be a whole number, got {value!r}")
        number = int(value) if self.kind is int else float(value)
        if not math.isfinite(number):
            self._refuse(f"must be a finite number, got {value}")
        too_low = self.minimum is not None and (number <= self.minimum if self.min_exclusive else number < self.minimum)
        too_high = self.maximum is not None and (number >= self.maximum if self.max_exclusive else number > self.maximum)
        if too_low or too_high:
            self._refuse(f"must be {self.bounds_text()}, got {value}")
        return number

    def _refuse(self, what: str):
        sentence = f"{self._subject()} {what}" + (f"; {self.hint}" if self.hint else "") + "."
        raise ConfigError(sentence[0].upper() + sentence[1:] if sentence.startswith("the ") else sentence)

    def _subject(self) -> str:
        """How a message names the field: its name, after the form's label when that says more."""
        words = re.sub(r"\s*\(.*\)$", "", self.label)  # "Random rotation (degrees)" -> "Random rotation"
        if words[1:2].islower():
            words = words[:1].lower() + words[1:]
        if words.replace(" ", "_") == self.name or not re.fullmatch(r"[A-Za-z][A-Za-z -]*", words):
            return self.name
        return f"the {words} ({self.name})"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def setting_field(default=dataclasses.MISSING, *, default_factory=dataclasses.MISSING, **declaration):
    """A TrainConfig field with its Setting: ``declaration`` holds Setting's arguments
    except ``name``, ``kind`` and ``optional``, which come from the field itself."""
    return field(default=default, default_factory=default_factory, metadata={"setting": declaration})


@functools.cache
def settings_of(config_class: type) -> tuple[Setting, ...]:
    """The Settings of a config dataclass's fields, in field order (kind and optional from the type)."""
    hints = typing.get_type_hints(config_class)
    found = []
    for f in dataclasses.fields(config_class):
        kinds = [k for k in typing.get_args(hints[f.name]) or (hints[f.name],) if k is not type(None)]
        optional = type(None) in typing.get_args(hints[f.name])
        found.append(Setting(name=f.name, kind=kinds[0], optional=optional, **f.metadata["setting"]))
    return tuple(found)


def _variant_names() -> list[str]:
    from alexnet_core import variants

    return variants.list_models()


def _dataset_names() -> list[str]:
    from alexnet_core import datasets

    return datasets.list_datasets()


# --------------------------------------------------------------------------- #
# The config


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as ``config.json`` and in every checkpoint.

    Widgets and the CLI both build one of these. ``validate()`` checks every
    field and raises ``ConfigError`` with a sentence a student understands.
    """

    variant: str = setting_field(
        "mnist", label="Variant", help="The AlexNet variant to build.", choices=_variant_names)
    dataset: str = setting_field(
        "digits", label="Dataset", help="The images to train and test on.", choices=_dataset_names)
    input_size: int | None = setting_field(
        None, label="Input size", minimum=1, maximum=MAX_INPUT_SIZE,
        help="The side in pixels of the network's input; empty: the variant's own size.")
    epochs: int = setting_field(
        5, label="Epochs", help="How many passes over the training split.", minimum=1, maximum=500,
        section="main", step=1)
    batch_size: int = setting_field(
        128, label="Batch size", minimum=1, maximum=4096, section="main", step=1,
        help="Images per training step, over all processes together: the learning rate is for this batch, "
             "and each of N processes trains on batch/N of it.")
    optimizer: str = setting_field(
        "sgd", label="Optimizer", choices=OPTIMIZERS, section="main",
        help="The update rule: SGD with momentum, Adam, or AdamW (Adam with decoupled weight decay).")
    lr: float = setting_field(
        0.01, label="Learning rate", minimum=0, min_exclusive=True, section="main", step=0.001, format="%.5f",
        help="How far each step moves the weights (at the start, when a schedule changes it).",
        hint="try 0.01 for SGD or 0.001 for Adam")
    momentum: float = setting_field(
        0.9, label="Momentum (SGD)", minimum=0, maximum=1, max_exclusive=True, section="main", step=0.05,
        active_when=("optimizer", ("sgd",)), hint="0.9 is usual",
        help="The share of the previous step that SGD keeps moving with.")
    weight_decay: float = setting_field(
        5e-4, label="Weight decay", minimum=0, maximum=1, section="main", step=1e-4, format="%.5f",
        hint="5e-4 is usual", help="Pulls every weight towards zero a little at each step.")
    schedule: str = setting_field(
        "none", label="Rate schedule", choices=SCHEDULES, section="main",
        help="How the learning rate changes: kept, stepped down, cosine decay, or one cycle up and down.")
    flip: bool = setting_field(
        False, label="Random horizontal flip", section="more",
        help="Mirror each training image left to right with probability 0.5.")
    crop_padding: int = setting_field(
        0, label="Random crop padding (px)", minimum=0, maximum=64, section="more", step=1,
        help="Pad each training image by this many black pixels, then crop a random window of its size.")
    rotation: float = setting_field(
        0.0, label="Random rotation (degrees)", minimum=0, maximum=180, section="more", hint="10 is usual",
        help="Turn each training image by a random angle of up to this many degrees either way.")
    photo_fit: str = setting_field(
        "crop", label="Photos to input", choices=tuple(PHOTO_FITS), section="more",
        active_when=("dataset", tuple(_PHOTOS_BEFORE)),
        help="For photos (flowers102, folder): crop keeps each photo's centre square and trains on random "
             "input-size windows of it, evaluating the centre one (the 2012 paper); resized-crop trains on "
             "torchvision's RandomResizedCrop instead; centre resizes the centre square whole; squash resizes "
             "the whole photo to a square, its aspect ratio lost.")
    image_size: int | None = setting_field(
        None, label="Stored photo size", minimum=8, maximum=MAX_INPUT_SIZE,
        help="The side in pixels photos (flowers102, folder) are decoded at (their centre square, or the whole "
             "photo squashed); empty: 256, the 2012 paper's. Larger than the input leaves room for random crops.")
    label_smoothing: float = setting_field(
        0.0, label="Label smoothing", minimum=0, maximum=1, max_exclusive=True, section="more", step=0.05,
        hint="0.1 is usual", help="The share of each target spread over the other classes, against overconfidence.")
    step_size: int = setting_field(
        5, label="Step schedule: every N epochs", minimum=1, maximum=500, section="more", step=1,
        active_when=("schedule", ("step",)), help="The step schedule multiplies the rate by gamma every N epochs.")
    gamma: float = setting_field(
        0.5, label="… multiply the rate by", minimum=0, min_exclusive=True, maximum=1, section="more", step=0.05,
        active_when=("schedule", ("step",)), hint="0.5 halves the rate",
        help="The step schedule's factor (gamma): 0.5 halves the rate, 0.1 divides it by 10.")
    val_fraction: float = setting_field(
        0.1, label="Validation share", minimum=0, maximum=1, max_exclusive=True, section="main", step=0.05,
        hint="0.1 is usual", help="Held out of the training split to choose the best epoch; the test split never chooses.")
    seed: int = setting_field(
        0, label="Seed", minimum=0, maximum=2**31 - 1, section="more", step=1,
        help="Seeds the first weights, the validation split, the shuffling and the augmentation.")
    device: str = setting_field(
        "auto", label="Device", choices=device_choices, syntax=DEVICE_SYNTAX, section="more",
        help="Where to train: auto takes a CUDA GPU, then an Apple GPU, then the CPU; cuda:N is GPU N.")
    precision: str = setting_field(
        "auto", label="Precision", choices=PRECISIONS, section="more",
        help="Number format of the forward pass: auto is bf16 on GPUs that have it, fp16 (with a gradient "
             "scaler) on older GPUs, fp32 on the CPU.")
    nproc_per_node: int = setting_field(
        1, label="Processes (DDP)", minimum=1, maximum=64, section="more", step=1,
        help="Training processes on this machine, one per GPU, under torchrun (DistributedDataParallel); "
             "the batch size is shared between them.")
    compile: bool = setting_field(
        False, label="Compile (torch.compile)", section="more",
        help="Compile the network before training: slower to start, often faster per step on a GPU; measure it.")
    threads: int = setting_field(
        0, label="CPU threads", minimum=0, help="CPU threads for PyTorch; 0: PyTorch's default.")
    channels_last: bool | None = setting_field(
        None, label="Channels-last memory",
        help="Keep images channels-last in memory; empty: where it helps (CUDA, large inputs on the CPU).")
    data_root: str | None = setting_field(
        None, label="Data root",
        help="The folder that holds the datasets in torchvision's layout; empty: ALEXNET_LAB_DATA, else ./data.")
    folder: str | None = setting_field(
        None, label="Image folder",
        help="For the folder dataset: a folder inside the data root with one subfolder of images per class.")
    variant_options: dict = setting_field(
        default_factory=dict, label="Variant options", flag=False,
        help="The variant's own options, e.g. groups=2 for paper (the CLI's --option KEY=VALUE).")
    recipe: str | None = setting_field(
        None, label="Recipe", flag=False, help="The recipe this config was made from, for display.")

    # -- derived -------------------------------------------------------------

    @property
    def resolved_input_size(self) -> int:
        """The input side the model is built for: ``input_size`` or the variant's native size."""
        from alexnet_core import variants

        if self.input_size is not None:
            return int(self.input_size)
        return variants.get_spec(self.variant).input_size

    def resolved_channels_last(self, device=None) -> bool:
        """``channels_last`` or, when None, on where it helps: CUDA, and large inputs on the CPU."""
        import torch

        from alexnet_core import variants
        from alexnet_core.device import resolve_device

        if self.channels_last is not None:
            return bool(self.channels_last)
        kind = torch.device(device).type if device is not None else resolve_device(self.device).type
        if kind == "cuda":
            return True
        # It speeds up the 224/227 conv stacks on the CPU, not the 28/32-pixel nets, and
        # BatchNorm's CPU kernels are slower in it (bench --ablate: bench/README.md).
        if kind != "cpu" or self.resolved_input_size < 100:
            return False
        return not variants.get_spec(self.variant).batch_norm

    @property
    def augment(self):
        """The training augmentation (``batches.Augment``), or None when every option is off."""
        from alexnet_core.batches import Augment

        window = self.windows[0]
        if not (self.flip or self.crop_padding or self.rotation or window != "whole"):
            return None
        return Augment(flip=bool(self.flip), crop_padding=int(self.crop_padding), rotation=float(self.rotation),
                       window="" if window == "whole" else window)

    @property
    def is_photo(self) -> bool:
        """Whether the dataset is decoded from photos, so image_size and photo_fit apply."""
        return self.dataset in _PHOTOS_BEFORE

    @property
    def windows(self) -> tuple[str, str]:
        """(training, evaluation) window of a stored image (``batches.WINDOWS``): from
        ``photo_fit`` for photos, the whole image for the other datasets."""
        if not self.is_photo:
            return "whole", "whole"
        return PHOTO_FITS[self.photo_fit][1:]

    @property
    def squash(self) -> bool:
        """Whether photos are stored squashed whole (``photo_fit`` squash) rather than centre-cropped."""
        return self.is_photo and PHOTO_FITS[self.photo_fit][0]

    @property
    def stored_photos(self) -> dict:
        """``datasets.load_dataset``'s arguments that store the photos as this run does."""
        return {"image_size": self.image_size if self.is_photo else None, "squash": self.squash}

    # -- validation ----------------------------------------------------------

    def check_fields(self) -> "TrainConfig":
        """Check each field alone (its kind, choices and bounds); return self, or raise
        ``ConfigError``. What a config read from disk must pass before anything shows
        it, also where the rules that join fields (a device this machine has) do not hold."""
        for setting in settings_of(type(self)):
            setting.check(getattr(self, setting.name))
        return self

    def validate(self, *, check_data: bool = False, dataset=None) -> "TrainConfig":
        """Check every field, then the rules that join fields; return self, or raise
        ``ConfigError`` saying what to change.

        ``check_data`` also checks that the run can get the dataset's images: here
        now, or downloaded by torchvision on first load when online
        (``datasets.obtainable``; never downloads itself). With a loaded ``dataset``
        the batch size is checked against the training split too.
        """
        from alexnet_core import datasets, variants

        self.check_fields()
        allowed = variants.get_spec(self.variant).options
        unknown = sorted(set(self.variant_options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"The {self.variant} variant has no option {', '.join(unknown)}; "
                f"its options: {', '.join(allowed) or 'none'}."
            )
        size = self.resolved_input_size
        minimum = variants.min_input_size(self.variant)
        if size < minimum:
            raise ConfigError(
                f"The {self.variant} variant needs an input of at least {minimum}x{minimum} pixels; "
                f"got {size}x{size}. Choose an input size of {minimum} or more."
            )
        if self.dataset == "folder" and not self.folder:
            raise ConfigError(FOLDER_NEEDED)
        if self.image_size is not None and not self.is_photo:
            raise ConfigError(f"image_size is the stored size of photos (flowers102, folder); {self.dataset} "
                              "has one native size: leave it empty.")
        self.check_machine()
        if check_data:
            ok, where = datasets.obtainable(self.dataset, self.data_root, folder=self.folder)
            if not ok:
                raise ConfigError(f"Dataset {self.dataset!r} is not available: {where}")
        if dataset is not None:
            split_sizes(self, len(dataset.train_y))
        return self

    def check_machine(self, processes: int | None = None) -> "TrainConfig":
        """Check that this machine can train the config as asked: the device, the precision,
        compile and the processes; ``processes`` is the world size when torchrun runs it on
        several machines (default ``nproc_per_node``). Returns self, or raises ``ConfigError``."""
        import torch

        from alexnet_core.device import compile_problem, resolve_device, resolve_precision

        try:
            device = resolve_device(self.device)
            resolve_precision(self.precision, device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.compile and (problem := compile_problem(device)):
            raise ConfigError(problem[0].upper() + problem[1:])
        processes = processes or self.nproc_per_node
        if self.nproc_per_node > 1:
            if device.type not in ("cpu", "cuda"):
                raise ConfigError(f"Several processes (nproc_per_node) train on CUDA GPUs or the CPU, not on {device.type}.")
            if device.type == "cuda" and ":" in self.device:
                raise ConfigError(f"Device {self.device} names one GPU, and {self.nproc_per_node} processes need one "
                                  "GPU each: choose device cuda or auto.")
            if device.type == "cuda" and self.nproc_per_node > torch.cuda.device_count():
                raise ConfigError(f"{self.nproc_per_node} processes need one GPU each, and this machine has "
                                  f"{torch.cuda.device_count()}: lower nproc_per_node.")
        if self.batch_size % processes:
            raise ConfigError(f"The batch size ({self.batch_size}) is shared by {processes} processes: choose a "
                              f"multiple of {processes}, such as {max(processes, self.batch_size // processes * processes)}.")
        return self

    # -- serialisation -------------------------------------------------------

    def to_dict(self) -> dict:
        """A plain JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        out["variant_options"] = dict(self.variant_options)
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a dict such as ``to_dict()`` wrote; unknown keys raise ``ConfigError``."""
        if not isinstance(values, dict):
            raise ConfigError(f"A training config must be a mapping, got {type(values).__name__}.")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"Unknown config field(s): {', '.join(unknown)}; valid fields: {', '.join(sorted(names))}.")
        values = dict(values)
        if values.get("variant_options") is None:
            values["variant_options"] = {}
        if "photo_fit" not in values and values.get("dataset") in _PHOTOS_BEFORE:
            # written before photos were kept at 256: their centre square, at the size of then
            values["photo_fit"] = "centre"
            values.setdefault("image_size", _PHOTOS_BEFORE[values["dataset"]])
        return cls(**values)

    def to_json(self, path: str | os.PathLike) -> None:
        """Write ``config.json`` atomically."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "TrainConfig":
        """Read a ``config.json``; a missing or malformed file raises ``ConfigError`` naming it."""
        try:
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"Cannot read the training config {path}: {exc}") from None
        return cls.from_dict(values)

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(copy.deepcopy(self), **changes)


SETTINGS: tuple[Setting, ...] = settings_of(TrainConfig)


def get_setting(name: str) -> Setting:
    """The Setting of a TrainConfig field; an unknown name raises ``ConfigError`` listing the fields."""
    for setting in SETTINGS:
        if setting.name == name:
            return setting
    raise ConfigError(f"Unknown setting {name!r}; the settings: {', '.join(s.name for s in SETTINGS)}.")


# Named where each surface takes it: a CLI flag, a sidebar box.
FOLDER_NEEDED = (
    "The 'folder' dataset needs an image folder inside the data root, with one sub-folder of images per class: "
    "on the command line give it with --folder; in the dashboard choose the folder dataset in the sidebar and "
    "type it in its Image folder box."
)


def split_sizes(config: TrainConfig, n: int) -> tuple[int, int]:
    """(train, validation) sizes for a training split of ``n`` images; checks the batch size."""
    n_val = int(round(n * config.val_fraction))
    if config.val_fraction > 0:
        n_val = max(n_val, 1)
    n_train = n - n_val
    if n_train < 1:
        raise ConfigError(
            f"Holding out {config.val_fraction:.0%} of {n} training images for validation leaves none to train on; "
            f"lower val_fraction."
        )
    if config.batch_size > n_train:
        raise ConfigError(
            f"The batch size ({config.batch_size}) is larger than the training split: {n_train} images "
            f"after holding out {n_val} for validation. Choose a batch size of at most {n_train}."
        )
    return n_train, n_val
