"""Reports — tables, lines of text, unbreakable values — as data, and rendered as Markdown, CSV or
JSON (a terminal table: `netprobe.terminal`). Knows nothing about networks.

Nothing here interprets markup: every title, cell and message is shown as the literal text it is.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


@dataclass(frozen=True)
class Column:
    """A column: where its value comes from in a record, its header, how a cell reads, and whether
    it identifies a row (such a column is never dropped, and is repeated when a table is split)."""

    key: str
    header: str
    fmt: Callable[[object], str] = str
    justify: str = "right"
    ident: bool = False

    def cell(self, record: dict) -> str:
        value = record.get(self.key)
        return "" if value is None else self.fmt(value)

    @property
    def numeric(self) -> bool:
        return self.justify == "right" and not self.ident


@dataclass
class TableBlock:
    """A table with its title and caption; `name` is how `--section` picks it for CSV."""

    name: str
    columns: Sequence[Column]
    records: Sequence[dict]
    title: str = ""
    caption: str = ""
    csv_only: bool = False  # a table CSV can pick that the other formats show as text instead


@dataclass
class TextBlock:
    """Lines of text; `style` is a rich style name ('' plain, 'bold', 'yellow', 'dim')."""

    text: str
    style: str = ""


@dataclass
class CodeBlock:
    """A value that must never be broken across lines (a spec to copy and paste)."""

    label: str
    text: str


Block = TableBlock | TextBlock | CodeBlock


@dataclass
class Report:
    """What a command shows, in order; every format renders the same blocks."""

    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block) -> Report:
        self.blocks.append(block)
        return self

    @property
    def tables(self) -> list[TableBlock]:
        return [b for b in self.blocks if isinstance(b, TableBlock)]


def to_csv(columns: Sequence[Column], records: Sequence[dict]) -> str:
    """Raw values (not the human formatting) under machine-friendly headers (the record keys); text
    that starts like a formula (= + - @) is prefixed with ' so that a spreadsheet shows it as text."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for record in records:
        writer.writerow([_spreadsheet_safe(_raw(record.get(c.key))) for c in columns])
    return buf.getvalue()


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet reads as the start of a formula


def _spreadsheet_safe(value: object) -> object:
    """Text that a spreadsheet would run as a formula, prefixed with ' (numbers, and a lone '-' that
    stands for nothing, are left as they are)."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START) or value.strip() == "-":
        return value
    try:
        float(value)
        return value
    except ValueError:
        return f"'{value}"


def _md_escape(text: str) -> str:
    """Text that stays text in a table cell, also where a renderer allows HTML (<script>, onerror=)."""
    return _md_text(text).replace("|", "\\|").replace("\n", " ")


def _md_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md_code(text: str) -> str:
    """A code span holding `text` literally: a fence longer than any run of backticks inside it."""
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text.replace(chr(10), ' ')}{pad}{fence}"


def markdown_table(block: TableBlock) -> str:
    lines = ["| " + " | ".join(_md_escape(c.header) for c in block.columns) + " |",
             "|" + "|".join("---:" if c.justify == "right" else "---" for c in block.columns) + "|"]
    lines += ["| " + " | ".join(_md_escape(c.cell(r)) for c in block.columns) + " |" for r in block.records]
    return "\n".join(lines) + "\n"


def to_markdown(report: Report) -> str:
    """Every block of the report: tables with their titles and captions, text, and code spans."""
    parts = []
    for block in report.blocks:
        if isinstance(block, TableBlock) and block.csv_only:
            continue
        if isinstance(block, TableBlock):
            title = f"**{_md_escape(block.title)}**\n\n" if block.title else ""
            body = markdown_table(block) if block.records else "(nothing to show)\n"
            parts.append(title + body + (f"\n{_md_text(block.caption)}\n" if block.caption else ""))
        elif isinstance(block, CodeBlock):
            parts.append(f"{_md_text(block.label)}{_md_code(block.text)}\n")
        else:
            parts.append("  \n".join(_md_text(line) for line in block.text.splitlines()) + "\n")
    return "\n".join(parts)


def to_json(data: object) -> str:
    """JSON text; NaN and ±Infinity, which JSON has not, are written as null (a figure that was not
    measured reads the same)."""
    return json.dumps(finite_or_null(data), indent=2, default=_raw, allow_nan=False)


def finite_or_null(value: object) -> object:
    """`value` with every NaN and ±Infinity inside it replaced by None (containers copied, the rest as is)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(v) for v in value]
    return value


def _raw(value: object) -> object:
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, Enum):
        return value.value
    return "" if value is None else value


# ---- cells --------------------------------------------------------------------------------------

def fmt_int(value: object) -> str:
    return f"{int(value):,}"  # type: ignore[call-overload]


def fmt_si(value: object) -> str:
    """21458488 -> '21.46M', 8.37e9 -> '8.37G'."""
    n = float(value)  # type: ignore[arg-type]
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return f"{n:g}"


def fmt_float(digits: int) -> Callable[[object], str]:
    return lambda value: f"{float(value):.{digits}f}"  # type: ignore[arg-type]


def fmt_mb(value: object) -> str:
    return f"{float(value):,.0f}"  # type: ignore[arg-type]


def fmt_pct(value: object) -> str:
    if isinstance(value, str):  # a share already written and marked (`of_peak_cell`)
        return value
    return f"{100 * float(value):.1f}%"  # type: ignore[arg-type]


def of_peak_cell(fraction: float | None, suspect: bool) -> float | str | None:
    """What an "of peak" cell holds: the share, or marked '?' where the roof is suspect (see timing.check_roof)."""
    return f"{fmt_pct(fraction)}?" if suspect and fraction is not None else fraction


def plural(n: int, word: str) -> str:
    """'1 round', '3 rounds'."""
    return f"{n} {word}" + ("" if n == 1 else "s")
