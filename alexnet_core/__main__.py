"""Command line: ``python -m alexnet_core <command>``.

    variants                      the AlexNet variants
    datasets                      the datasets, and where each is available from right now
    summary --variant V --dataset D [--input-size N] [--num-classes K]   layer table and shape trace
    recipes                       the named training presets
    train [--recipe R] [--variant V --dataset D --epochs N ...] [--detach] [--runs-dir DIR]
                                  one flag per TrainConfig setting (config.SETTINGS): train --help
    runs                          every run with its state and accuracy
    stop ID | resume ID | eval ID [--which best|last]

``train ... --nproc-per-node N`` trains one run on N processes under torchrun
(DistributedDataParallel); with ``--nnodes M --rdzv-endpoint HOST:PORT`` the
same command on each of M machines makes one run (docs/distributed.md).

``train --run-dir DIR [--resume]`` is the worker mode that ``runs.launch``
starts in the background (``--torchrun``: one rank of a run, ``ranks``). Bad
input prints one line and exits with code 2.
"""

from __future__ import annotations

import os

# PyTorch's CPU allocator reads this when torch loads: 2 MiB pages, faster steps (NOTES.md).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

EXIT_BAD_INPUT = 2
EXIT_RUN_FAILED = 1


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input in one line (exit 2), without the usage block."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


class BadInput(Exception):
    """Input the user can fix; printed as one line, exit code 2."""


# --------------------------------------------------------------------------- #
# Formatting


def _pct(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def _duration(seconds) -> str:
    if seconds is None or (isinstance(seconds, float) and not math.isfinite(seconds)):
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


class ProgressLine:
    """One updating line (epoch, step, images/s, ETA) on a terminal; epoch summaries as lines.

    Not on a terminal (a log file), the step line is written as its own line
    every ``plain_interval`` seconds.
    """

    def __init__(self, stream=None, plain_interval: float = 30.0):
        self.stream = stream or sys.stdout
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.plain_interval = plain_interval
        self.last_plain = time.monotonic()
        self.epochs = None
        self.width = 0

    def _write(self, text: str) -> None:
        """Write and flush; once the reader is gone (a closed terminal, a dead parent's pipe),
        drop all further progress: the run goes on, and metrics.jsonl keeps the record."""
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            if self.stream is sys.stdout:  # so the interpreter's own flush at exit does not fail either
                with contextlib.suppress(OSError, ValueError):
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, sys.stdout.fileno())
            self.stream = None

    def _line(self, text: str) -> None:
        if self.live and self.width:
            self._write("\r" + " " * self.width + "\r")
            self.width = 0
        self._write(text + "\n")

    def __call__(self, event: dict) -> None:
        kind = event.get("type")
        if kind in ("start", "resume"):
            self.epochs = event.get("epochs")
            verb = "resuming after epoch %d" % event.get("epoch", 0) if kind == "resume" else "training"
            self._line(
                f"{verb}: {event['n_train']} train / {event['n_val']} validation / {event['n_test']} test images, "
                f"{event['steps_per_epoch']} steps per epoch, input {event['in_channels']}x{event['input_size']}"
                f"x{event['input_size']}, {event['parameters']:,} parameters on {event['device']}"
            )
            if event.get("storage"):  # photos: in memory or streamed from disk, and why
                self._line(event["storage"])
        elif kind == "queued":
            self._line(f"queued: {event['ahead']} run(s) ahead; at most {event['limit']} train at once (ALEXNET_LAB_MAX_RUNS)")
        elif kind == "step":
            text = (
                f"epoch {event['epoch']}/{self.epochs}  step {event['batch']}/{event['steps_per_epoch']}  "
                f"{event['images_per_s']:.0f} img/s  loss {event['loss']:.4f}  ETA {_duration(event.get('eta_s'))}"
            )
            if self.live:
                self._write("\r" + text.ljust(self.width))
                self.width = len(text)
            elif time.monotonic() - self.last_plain >= self.plain_interval:
                self.last_plain = time.monotonic()
                self._line(text)
        elif kind == "epoch":
            val = f"val {_pct(event.get('val_acc'))}  " if event.get("val_acc") is not None else ""
            self._line(
                f"epoch {event['epoch']}/{self.epochs}  train loss {event['train_loss']:.4f} acc {_pct(event['train_acc'])}  "
                f"{val}test {_pct(event['test_acc'])}  {event['epoch_time']:.1f} s" + ("  *best" if event.get("best") else "")
            )

    def close(self) -> None:
        if self.live and self.width:
            self._write("\n")
            self.width = 0


def _print_table(frame, empty: str) -> None:
    """Left-aligned columns, two spaces apart: long text stays readable."""
    if frame.empty:
        print(empty)
        return
    cells = [[str(c) for c in frame.columns]] + [["" if v is None else str(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


# --------------------------------------------------------------------------- #
# Commands


def cmd_variants(args) -> int:
    import pandas as pd

    from alexnet_core import variants

    rows = []
    for name in variants.list_models():
        spec = variants.get_spec(name)
        rows.append({
            "name": name, "input": f"{spec.in_channels}x{spec.input_size}x{spec.input_size}",
            "min input": variants.min_input_size(name), "description": spec.description, "source": spec.source,
        })
    _print_table(pd.DataFrame(rows), "no variants")
    return 0


def cmd_datasets(args) -> int:
    import pandas as pd

    from alexnet_core import datasets

    rows = []
    for name in datasets.list_datasets():
        info = datasets.get_info(name)
        ok, where = datasets.availability(name, args.data_root, folder=args.folder)
        rows.append({
            "name": name, "images": f"{info.channels}x{info.image_size}x{info.image_size}",
            "classes": info.num_classes if info.num_classes is not None else "-",
            "available": "yes" if ok else "no", "from / how to get it": where,
        })
    _print_table(pd.DataFrame(rows), "no datasets")
    return 0


def cmd_summary(args) -> int:
    import pandas as pd

    from alexnet_core import anatomy, datasets, variants

    try:
        spec = variants.get_spec(args.variant)
        info = datasets.get_info(args.dataset)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    size = args.input_size or spec.input_size
    minimum = variants.min_input_size(args.variant)
    if size < minimum:
        raise BadInput(f"The {args.variant} variant needs an input of at least {minimum}x{minimum} pixels; got {size}x{size}.")
    if args.num_classes is not None and args.num_classes < 1:
        raise BadInput(f"--num-classes must be at least 1, got {args.num_classes}.")
    num_classes = args.num_classes or info.num_classes or 2
    model = variants.get_model(args.variant, in_channels=spec.in_channels, num_classes=num_classes, input_size=size)
    table, totals = anatomy.layer_table(model, size, spec.in_channels)
    adapt = ""
    if (info.channels, info.image_size) != (spec.in_channels, size):
        adapt = f" ({info.title} images are {info.channels}x{info.image_size}x{info.image_size}: adapted to the input)"
    classes = f"{num_classes} classes" + (" (--num-classes)" if args.num_classes else "" if info.num_classes
                                          else " (a folder's own count when trained)")
    print(f"{spec.title} on {info.title}: input {spec.in_channels}x{size}x{size}{adapt}, {classes}")
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table.to_string(index=False))
        print("totals: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:,.2f}" for k, v in totals.items()))
        print()
        print(f"shape trace at {size}x{size}: floor((W - K + 2P) / S) + 1")
        print(anatomy.shape_trace(model, size).to_string(index=False))
    return 0


def cmd_recipes(args) -> int:
    import textwrap

    from alexnet_core.recipes import get_recipe, list_recipes

    for name in list_recipes():
        recipe = get_recipe(name)
        c = recipe.config
        print(f"{name}  [{recipe.kind}{': ' + recipe.reference if recipe.reference else ''}]  {c.variant} on "
              f"{c.dataset} at {c.resolved_input_size}px, {c.epochs} epochs, batch {c.batch_size}, "
              f"{c.optimizer} {c.lr:g}, schedule {c.schedule}")
        for line in recipe.text().splitlines():
            bullet = line.startswith("- ")
            print(textwrap.fill(line, 110, initial_indent="    " if bullet else "  ",
                                subsequent_indent="      " if bullet else "  "))
        print()
    return 0


def setting_flag_help(setting) -> str:
    """A setting's help with its range or choices, for ``--help``."""
    if setting.choices is not None:
        return f"{setting.help} One of: {', '.join(setting.choice_list())}."
    bounds = setting.bounds_text()
    return f"{setting.help} From {bounds}." if bounds else setting.help


class _SettingsHelp(argparse.HelpFormatter):
    """Writes a setting flag's help when help is shown: the variant and dataset
    choices come from their registries, which import torch (a queued worker,
    which parses its flags too, must not)."""

    def _get_help_string(self, action):
        setting = getattr(action, "setting", None)
        if setting is None:
            return super()._get_help_string(action)
        return setting_flag_help(setting).replace("%", "%%")


def add_setting_flags(parser: argparse.ArgumentParser, settings) -> None:
    """One flag per setting that has one (``Setting.flag``); each defaults to None: not given."""
    for setting in settings:
        if not setting.flag:
            continue
        if setting.kind is bool:
            action = parser.add_argument(
                setting.flag_name, dest=setting.name, action=argparse.BooleanOptionalAction, default=None,
                help=setting.help)
        else:
            action = parser.add_argument(
                setting.flag_name, dest=setting.name, type=setting.kind, default=None, help=setting.help,
                metavar=setting.name.upper())
        action.setting = setting


def _option_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def config_from_args(args, settings=None, config_class=None):
    """One TrainConfig from the parsed flags: the recipe's (or the defaults) with the given flags on top.

    Not validated here: ``runs.create_run`` validates a launch.
    """
    from alexnet_core.config import SETTINGS, TrainConfig
    from alexnet_core.recipes import get_recipe, recipe_for

    settings = SETTINGS if settings is None else settings
    config_class = config_class or TrainConfig
    recipe = getattr(args, "recipe", None)
    base = get_recipe(recipe).make_config() if recipe else config_class()
    variant, dataset = getattr(args, "variant", None), getattr(args, "dataset", None)
    if not recipe and (variant or dataset) and config_class is TrainConfig:  # a chosen pair: our recipe for it
        ours = recipe_for(variant or base.variant, dataset or base.dataset)
        base = ours.make_config() if ours else base
    changes = {s.name: getattr(args, s.name) for s in settings if s.flag and getattr(args, s.name) is not None}
    if getattr(args, "option", None):
        options = dict(base.variant_options)
        for item in args.option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise BadInput(f"--option takes KEY=VALUE (e.g. --option groups=2), got {item!r}.")
            options[key] = _option_value(value)
        changes["variant_options"] = options
    return dataclasses.replace(base, **changes)


def cmd_train(args) -> int:
    from alexnet_core import paths, runs

    if args.torchrun:
        return _rank(args)
    if args.run_dir:
        return _worker(args)
    if args.resume:
        raise BadInput("--resume goes with --run-dir; to resume a run by id use: python -m alexnet_core resume ID")
    config = config_from_args(args)
    if args.nnodes > 1 or args.rdzv_endpoint:
        return _on_machines(args, config)
    started_from = (f"settings from the {config.recipe} recipe, ours for {config.variant} on {config.dataset}; "
                    "the flags given change them") if config.recipe and not args.recipe else None
    if args.detach:
        run_id = runs.launch(config, args.runs_dir)
        print(run_id)  # alone on stdout, for scripts
        if started_from:
            print(started_from, file=sys.stderr)
        return 0
    run_id = runs.create_run(config, args.runs_dir)
    run_dir = runs.run_path(run_id, args.runs_dir)
    print(f"run {run_id} in {paths.runs_root(args.runs_dir)}")
    if started_from:
        print(started_from)
    display = ProgressLine()
    try:
        result = runs.run_worker(run_dir, progress=display)
    finally:
        display.close()
    return _report(result, run_id)


def _report(result: dict, run_id: str) -> int:
    state = result.get("state")
    if state == "finished":
        val = f", chosen by validation accuracy {_pct(result['best_val_acc'])}" if result.get("best_val_acc") is not None else ""
        print(
            f"finished: test accuracy {_pct(result.get('test_acc'))} (best.pt, epoch {result.get('best_epoch')}{val}); "
            f"last epoch {_pct(result.get('last_test_acc'))}. Run {run_id}"
        )
        return 0
    if state == "stopped":
        print(f"stopped after epoch {result.get('epoch', 0)}; continue with: python -m alexnet_core resume {run_id}")
        return 0
    print(f"{state}: {result.get('error')}", file=sys.stderr)
    return EXIT_RUN_FAILED


def _worker(args) -> int:
    """``train --run-dir DIR [--resume]``: the background process's body; its output goes to log.txt."""
    from alexnet_core import runs

    display = ProgressLine()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {'resume' if args.resume else 'train'} {args.run_dir}", flush=True)
    result = runs.run_worker(Path(args.run_dir), resume=args.resume, progress=display)
    display.close()
    return _report(result, Path(args.run_dir).name)


def _rank(args) -> int:
    """``train ... --torchrun``: one process of a run that torchrun started (``ranks``)."""
    from alexnet_core import ranks

    display = ProgressLine()  # rank 0's events only: the others train without a display
    result = ranks.rank_main(run_dir=args.run_dir, resume=args.resume, config_file=args.config_file,
                             runs_dir=args.runs_dir, claim=args.claim, progress=display)
    display.close()
    if result.get("made_here"):  # no run store process waits on this run: its rank 0 reports
        return _report(result, Path(result.get("run_dir") or "").name)
    return 0 if result.get("state") in ("finished", "stopped") else EXIT_RUN_FAILED


def _on_machines(args, config=None) -> int:
    """``train`` (or ``resume ID``) with ``--nnodes``/``--rdzv-endpoint``: this machine's part."""
    from alexnet_core import ranks

    if not args.rdzv_endpoint:
        raise BadInput("--nnodes goes with --rdzv-endpoint HOST:PORT, where the machines meet (docs/distributed.md).")
    where = dict(machines=args.nnodes, endpoint=args.rdzv_endpoint, rdzv_id=args.rdzv_id, runs_dir=args.runs_dir)
    if config is None:
        return ranks.resume_on_machines(args.id, **where)
    return ranks.train_on_machines(config, **where)


def cmd_runs(args) -> int:
    import pandas as pd

    from alexnet_core import paths, runs

    frame = runs.list_runs(args.runs_dir)
    if frame.empty:
        print(f"no runs in {paths.runs_root(args.runs_dir)}")
        return 0
    shown = pd.DataFrame({
        "id": frame["id"], "state": frame["state"], "variant": frame["variant"], "dataset": frame["dataset"],
        "epoch": [f"{e}/{n}" for e, n in zip(frame["epoch"], frame["epochs"])],
        "best val": frame["best_val_acc"].map(_pct), "test": frame["test_acc"].map(_pct),
        "time": frame["duration_s"].map(_duration),
    })
    _print_table(shown, "")
    damaged = frame[frame["state"] == "damaged"]
    for run_id, error in zip(damaged["id"], damaged["error"]):
        print(f"{run_id}: {error}")
    return 0


def cmd_stop(args) -> int:
    from alexnet_core import runs

    before = runs.status(args.id, args.runs_dir)["state"]
    runs.stop(args.id, args.runs_dir)
    if before == "running":
        print(f"stop requested: {args.id} stops at its next step and saves last.pt")
    elif before == "queued":
        print(f"cancelled: {args.id} was queued and will not start")
    else:
        print(f"{args.id} is {before}; nothing to stop")
    return 0


def cmd_resume(args) -> int:
    from alexnet_core import runs

    if args.nnodes > 1 or args.rdzv_endpoint:
        return _on_machines(args)
    runs.resume(args.id, args.runs_dir)
    print(f"resumed {args.id} in the background; follow it with: python -m alexnet_core runs")
    return 0


def cmd_delete(args) -> int:
    from alexnet_core import runs

    runs.delete_run(args.id, args.runs_dir)
    print(f"deleted {args.id}")
    return 0


def cmd_eval(args) -> int:
    from alexnet_core import runs

    result, info = runs.evaluate_run(args.id, args.which, args.runs_dir)
    print(
        f"{args.id} {args.which}.pt (epoch {info['epoch']}): test accuracy {_pct(result.accuracy)}, "
        f"loss {result.loss:.4f} on {len(result.labels)} {info['dataset']} test images"
    )
    return 0


# --------------------------------------------------------------------------- #
# Parser


def build_parser(settings=None) -> argparse.ArgumentParser:
    """The CLI's parser; ``settings`` (default ``config.SETTINGS``) make the train command's flags."""
    from alexnet_core.config import SETTINGS

    settings = SETTINGS if settings is None else settings
    parser = _Parser(prog="python -m alexnet_core", description="AlexNet Lab from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def runs_dir(p):
        p.add_argument("--runs-dir", help="the runs folder (default: ALEXNET_LAB_RUNS, else ./runs)")

    def machines(p):  # torchrun's rendezvous, for one run over several machines (docs/distributed.md)
        p.add_argument("--nnodes", type=int, default=1, metavar="N",
                       help="machines taking part, each running this same command (with --rdzv-endpoint)")
        p.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="where the machines meet: one of them, a free port")
        p.add_argument("--rdzv-id", help="a name the machines share for this run (default: alexnet-lab)")

    p = sub.add_parser("variants", help="list the AlexNet variants")
    p.set_defaults(func=cmd_variants)

    p = sub.add_parser("datasets", help="list the datasets and where each is available from")
    p.add_argument("--data-root", help="dataset root (default: ALEXNET_LAB_DATA, else ./data)")
    p.add_argument("--folder", help="an image folder, for the 'folder' dataset")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("summary", help="layer table and shape trace of a variant for a dataset")
    p.add_argument("--variant", required=True)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--input-size", type=int)
    p.add_argument("--num-classes", type=int, help="the output layer's width (default: the dataset's classes); "
                   "1000 gives the ImageNet-sized figures the posts print")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("recipes", help="list the training recipes")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("train", help="train in the foreground (or --detach)", formatter_class=_SettingsHelp, description=(
        "Train a model. Flags override the recipe's settings (or the defaults)."))
    p.add_argument("--recipe", help="start from a named recipe (see: recipes)")
    add_setting_flags(p, settings)
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="a variant option, e.g. groups=2 for paper")
    p.add_argument("--detach", action="store_true", help="start in the background and print the run id")
    runs_dir(p)
    machines(p)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)  # worker mode, started by runs.launch
    p.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--torchrun", action="store_true", help=argparse.SUPPRESS)  # a rank (ranks.rank_main)
    p.add_argument("--config-file", help=argparse.SUPPRESS)  # a new run on several machines
    p.add_argument("--claim", action="store_true", help=argparse.SUPPRESS)  # a resume on several machines
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("runs", help="list the runs")
    runs_dir(p)
    p.set_defaults(func=cmd_runs)

    for name, func, text in (("stop", cmd_stop, "stop a run (it saves last.pt)"),
                             ("resume", cmd_resume, "resume a stopped or interrupted run"),
                             ("delete", cmd_delete, "delete a run that is not active (a damaged one too)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("id")
        runs_dir(p)
        if name == "resume":
            machines(p)
        p.set_defaults(func=func)

    p = sub.add_parser("eval", help="evaluate a run's checkpoint on the test split")
    p.add_argument("id")
    p.add_argument("--which", choices=("best", "last"), default="best")
    runs_dir(p)
    p.set_defaults(func=cmd_eval)
    return parser


def _is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, (BadInput, ValueError)):  # ConfigError and RunError are ValueErrors
        return True
    # Imported only now: the worker mode must not load torch while it waits in the queue.
    from alexnet_core.checkpoints import CheckpointError
    from alexnet_core.datasets import DatasetUnavailable

    return isinstance(exc, (CheckpointError, DatasetUnavailable))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
