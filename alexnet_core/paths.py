"""Every folder the project reads or writes, in one place.

``ALEXNET_LAB_DATA``  root of datasets in torchvision's layout (default ``./data``)
``ALEXNET_LAB_RUNS``  the run store (default ``./runs``)
``ALEXNET_LAB_CACHE`` decoded-tensor cache (default ``<data root>/.cache``)
"""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_ARCHIVES = {
    # Debian's dataset-fashion-mnist package: the four idx .gz files.
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],
}


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset root: the argument, else ``ALEXNET_LAB_DATA``, else ``./data``."""
    if root is not None:
        return Path(root).expanduser().resolve()
    env = os.environ.get("ALEXNET_LAB_DATA")
    return Path(env).expanduser().resolve() if env else Path("data").resolve()


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """The run store: the argument, else ``ALEXNET_LAB_RUNS``, else ``./runs``."""
    if runs_dir is not None:
        return Path(runs_dir).expanduser().resolve()
    env = os.environ.get("ALEXNET_LAB_RUNS")
    return Path(env).expanduser().resolve() if env else Path("runs").resolve()


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """Where decoded uint8 tensors are cached."""
    env = os.environ.get("ALEXNET_LAB_CACHE")
    return Path(env).expanduser().resolve() if env else data_root(root) / ".cache"


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """True when ``path`` (symlinks resolved) lies inside ``root``."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True


# Linux's NAME_MAX and PATH_MAX, in bytes.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def display(text: str | os.PathLike) -> str:
    """``text`` (a path or a name) as a string that always encodes to UTF-8.

    File names on Linux are bytes; the ones that are not UTF-8 arrive in Python
    as lone surrogates, which raise UnicodeEncodeError when printed or sent to a
    browser. Such bytes show as ``\\xNN`` instead (distinct names stay distinct).
    """
    text = os.fspath(text)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def name_problem(path: str | os.PathLike) -> str | None:
    """Why no file system can hold ``path`` (a NUL byte, a name or path too long), or None."""
    text = os.fspath(path)
    if "\x00" in text:
        return "it contains a NUL character (\\x00), which no file or folder name can hold"
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    longest = max((len(part) for part in raw.split(b"/")), default=0)
    if longest > MAX_NAME_BYTES:
        return f"one of its names is {longest:,} bytes long, too long for a file system ({MAX_NAME_BYTES} at most)"
    if len(raw) > MAX_PATH_BYTES:
        return f"it is {len(raw):,} bytes long, too long for a file system ({MAX_PATH_BYTES:,} at most)"
    return None


def shorten(text: str | os.PathLike, limit: int = 80) -> str:
    """``display(text)``, cut in the middle to at most about ``limit`` characters."""
    shown = display(text)
    if len(shown) <= limit:
        return shown
    half = limit // 2
    return f"{shown[:half]}...{shown[-half:]} ({len(shown):,} characters)"
