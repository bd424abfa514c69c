"""Errors, numbers and tables as text a student reads on a projector."""

from __future__ import annotations

import html
import math
import re

import pandas as pd
import streamlit as st


# Every ASCII punctuation mark Markdown (CommonMark, and Streamlit's :colour[...] and
# :material/...: directives, $ for LaTeX) could read as syntax.
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:=&\"'@])")
# GitHub-flavoured Markdown links a bare https://..., www.... or name@host whatever is
# escaped: an invisible word joiner after the scheme, the "www" or the "@" stops it.
_AUTOLINK = re.compile(r"(?i)(https?(?=\\:)|ftp(?=\\:)|www(?=\\\.)|\\@)")


def md(value) -> str:
    """``value`` as plain text inside Markdown: a run id, a class or folder name, a link's
    value or an error message shows as typed, never as a link, an image, bold or colour."""
    escaped = _MARKDOWN.sub(r"\\\1", str(value)).replace("\n", " ")
    return _AUTOLINK.sub("\\1\u2060", escaped)


def error_ui(message: str, exc: BaseException | None = None) -> None:
    """A sentence a student understands, and the error's own text (never a traceback);
    both shown as plain text."""
    st.error(md(message), icon=":material/error:")
    if exc is not None and str(exc):
        st.caption(f"Details: {md(exc)}")


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_duration(seconds) -> str:
    """42 -> '42 s', 125 -> '2 min 05 s', 7300 -> '2 h 01 min'; a missing value '–'."""
    if missing(seconds):
        return "–"
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def human_count(n) -> str:
    """1234567 -> '1.23 M'."""
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f}"


def percent(value) -> str:
    """0.975 -> '97.5%'; a missing value '–'."""
    return "–" if missing(value) else f"{100 * float(value):.1f}%"


# st.table draws every cell as a Markdown element of its own (the paper net's layer
# table was 180 of them); one st.html element per table is one render.
_TABLE_CSS = """<style>
.lab-table-box { overflow-x: auto; margin: 0 0 0.5rem 0; }
.lab-table { border-collapse: collapse; width: 100%; font-size: 0.875rem; line-height: 1.45; }
.lab-table th { font-weight: 700; text-align: left; border-bottom: 2px solid var(--st-border-color, #8a94a6); }
.lab-table th, .lab-table td { padding: 0.3rem 0.6rem; vertical-align: top; }
.lab-table.nowrap th, .lab-table.nowrap td, .lab-table .num { white-space: nowrap; }
.lab-table td { border-bottom: 1px solid var(--st-border-color-light, #d5dae3); }
.lab-table .num { text-align: right; font-variant-numeric: tabular-nums; }
.lab-table tr.marked td { background: #ffd7cc; color: #7a1f00; font-weight: 700; }
</style>"""


def table_html(frame: pd.DataFrame, right: tuple[str, ...] = (), marked: set[int] = frozenset(), wrap: bool = False) -> str:
    """A frame as an HTML table (no index), every cell shown as its escaped text (a
    missing one empty), the ``right`` columns aligned right, the rows at the
    ``marked`` positions highlighted. Unless ``wrap``, a row is one line and a wide
    table scrolls sideways."""

    def cell(tag: str, column, value) -> str:
        text = html.escape("" if missing(value) else str(value))
        return f'<{tag} class="num">{text}</{tag}>' if column in right else f"<{tag}>{text}</{tag}>"

    head = "".join(cell("th", c, c) for c in frame.columns)
    rows = "".join(
        ('<tr class="marked">' if i in marked else "<tr>") + "".join(cell("td", c, v) for c, v in zip(frame.columns, r)) + "</tr>"
        for i, r in enumerate(frame.itertuples(index=False))
    )
    return (f'{_TABLE_CSS}<div class="lab-table-box"><table class="lab-table{"" if wrap else " nowrap"}">'
            f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>")


def table_ui(frame: pd.DataFrame, right: tuple[str, ...] = (), marked: set[int] = frozenset(), wrap: bool = False) -> None:
    """Draw ``table_html(...)``: a compact table in one element."""
    st.html(table_html(frame, right, marked, wrap))
