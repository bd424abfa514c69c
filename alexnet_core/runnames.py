"""Run ids and short run names.

An id (``20261205-030329-mnist-digits-d521``) is unique and sorts by creation;
a student reads the short name (``mnist · digits #3``): the variant, the
dataset and the run's number among their runs. The number is recorded in
status.json at creation, so deleting a run never renumbers the others.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

from alexnet_core.runfiles import check_status, read_json

_MADE_ID = re.compile(r"\d{8}-\d{6}-(.+)-[0-9a-f]{4}")


def new_run_id(variant: str, dataset: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{variant}-{dataset}").strip("-.") or "run"
    return f"{stamp}-{name}-{secrets.token_hex(2)}"


def short_name(variant: str | None, dataset: str | None, number: int) -> str:
    return f"{variant or '?'} · {dataset or '?'} #{number}"


def distinct(names: list[str], ids: list[str]) -> list[str]:
    """``names`` with the id added to each that is not unique (a copied run folder, or
    two runs numbered at the same instant): a picker tells runs apart by name."""
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [name if counts[name] == 1 else f"{name} ({run_id})" for name, run_id in zip(names, ids)]


def _pair(run_id: str) -> str:
    """The variant-dataset part of an id made by ``new_run_id`` (of another folder name: itself)."""
    made = _MADE_ID.fullmatch(run_id)
    return made.group(1) if made else run_id


def run_numbers(runs: list[tuple[str, int | None]]) -> dict[str, int]:
    """Each run's number among the runs of its variant and dataset, from (id, recorded
    number) pairs oldest first: the recorded one, else one past the highest so far,
    so that runs made before numbers were recorded count in order too."""
    highest: dict[str, int] = {}
    numbers = {}
    for run_id, recorded in runs:
        pair = _pair(run_id)
        numbers[run_id] = recorded or highest.get(pair, 0) + 1
        highest[pair] = max(highest.get(pair, 0), numbers[run_id])
    return numbers


def next_number(run_dirs: list[Path], run_id: str) -> int:
    """One past the highest number a run of ``run_id``'s variant and dataset has among
    ``run_dirs`` (oldest first): a deleted run's number is not given again while a
    later one exists."""
    pair = _pair(run_id)
    recorded = []
    for run_dir in run_dirs:
        if _pair(run_dir.name) == pair:
            number = check_status(read_json(run_dir / "status.json", default={}))[0].get("number")
            recorded.append((run_dir.name, number or None))
    return max(run_numbers(recorded).values(), default=0) + 1
