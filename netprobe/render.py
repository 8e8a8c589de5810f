"""Records to rich tables, JSON, CSV and Markdown. Knows nothing about networks."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from rich.table import Table


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


@dataclass(frozen=True)
class Column:
    """A column: where its value comes from in a record, its header, and how a cell reads."""

    key: str
    header: str
    fmt: Callable[[object], str] = str
    justify: str = "right"

    def cell(self, record: dict) -> str:
        value = record.get(self.key)
        return "" if value is None else self.fmt(value)


def rich_table(columns: Sequence[Column], records: Sequence[dict], title: str = "", caption: str = "") -> Table:
    table = Table(title=title or None, caption=caption or None, caption_justify="left", title_justify="left")
    for col in columns:
        table.add_column(col.header, justify=col.justify, no_wrap=col.justify == "right")
    for record in records:
        table.add_row(*(col.cell(record) for col in columns))
    return table


def to_csv(columns: Sequence[Column], records: Sequence[dict]) -> str:
    """Raw values (not the human formatting) under machine-friendly headers (the record keys)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in columns])
    for record in records:
        writer.writerow([_raw(record.get(c.key)) for c in columns])
    return buf.getvalue()


def to_markdown(columns: Sequence[Column], records: Sequence[dict], caption: str = "") -> str:
    lines = ["| " + " | ".join(c.header for c in columns) + " |",
             "|" + "|".join("---:" if c.justify == "right" else "---" for c in columns) + "|"]
    lines += ["| " + " | ".join(c.cell(r).replace("|", "\\|") for c in columns) + " |" for r in records]
    if caption:
        lines += ["", caption]
    return "\n".join(lines) + "\n"


def to_json(data: object) -> str:
    return json.dumps(data, indent=2, default=_raw)


def _raw(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    if isinstance(value, Enum):
        return value.value
    return "" if value is None else value


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    return f"{100 * float(value):.1f}%"  # type: ignore[arg-type]
