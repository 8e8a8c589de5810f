"""Reports on a terminal, through rich: tables that fit the width they are given without ever dropping
a column that identifies a row or cutting a number. Text columns wrap, and when that is not enough the
table is split into column groups (the identifying columns repeated in each), or at the narrowest into
one stacked block per row. Lines of text (notes, captions' neighbours) wrap at the width, or at 100
columns where the table is not width-limited (output that is not a terminal); the canonical spec wraps
only at its separators, so that no token of it is ever cut. Nothing is read as markup: every title,
cell and message is shown as the literal text it is.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from netprobe.render import CodeBlock, Report, TableBlock


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich would exit(1) here; a reader that went away (`| head`) is the caller's to handle.
        self.quiet = True
        raise BrokenPipeError


TEXT_WIDTH = 100  # lines of text wrap here when the tables are not width-limited
SEPARATORS = "/,+"  # where a canonical spec may break: between stages, options and rows


def make_console(stderr: bool = False, width: int | None = None, file: object = None) -> Console:
    """A console that never reads markup, emoji codes or 'highlights' numbers in user text."""
    return _Console(stderr=stderr, width=width, markup=False, highlight=False, emoji=False, soft_wrap=False,
                    file=file)


def render_text(report: Report, width: int, table_width: int) -> str:
    """The report as plain text for a file or a pipe: tables at `table_width`, lines of text wrapped at
    `width`, and no line ending in spaces (rich pads titles and captions to the table's width)."""
    buffer = io.StringIO()
    print_report(make_console(width=table_width, file=buffer), report, width)
    return "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())


def print_report(console: Console, report: Report, text_width: int | None = None) -> None:
    """Every block of `report` on `console`; lines of text and the canonical spec wrap at `text_width`
    (default: the console's width)."""
    width = min(text_width or console.width, console.width)
    for block in report.blocks:
        if isinstance(block, TableBlock) and block.csv_only:
            continue
        if isinstance(block, TableBlock):
            for part in fit_table(block, console.width):
                console.print(part)
        elif isinstance(block, CodeBlock):
            _print_code(console, block, width)
        elif width < console.width:
            console.print(Text(block.text, style=block.style or ""), width=width)
        else:
            console.print(Text(block.text, style=block.style or ""))


_PAD = 2  # a cell's left and right padding
_COMFORT = 16  # a text column first wraps down to this (or its longest word) ...
_SQUEEZE = 8  # ... and only if even column groups do not fit, down to this


def _widths(block: TableBlock, floor: int) -> tuple[list[int], list[int]]:
    """Each column's natural width, and the least it may take: a number column its longest cell (numbers
    are never cut), a text column `floor` or its longest word, and never less than a header word."""
    natural, least = [], []
    for col in block.columns:
        cells = [col.cell(r) for r in block.records]
        longest = max((len(line) for c in cells for line in c.splitlines() or [""]), default=0)
        header_word = max((len(w) for w in col.header.split()), default=1)
        nat = max(longest, len(col.header), 1)
        if col.numeric:
            low = max(longest, header_word)
        else:
            word = max((len(w) for c in cells for w in c.split()), default=0)
            low = max(min(max(word, floor), longest), header_word)
        natural.append(nat)
        least.append(min(low, nat))
    return natural, least


def _table_width(widths: Sequence[int]) -> int:
    return sum(w + _PAD for w in widths) + len(widths) + 1  # cells, their padding, the borders


def _allot(natural: list[int], least: list[int], room: int) -> list[int] | None:
    """Widths that fit `room`: text columns give way, widest first, down to their least; None if impossible."""
    widths = list(natural)
    excess = _table_width(widths) - room
    while excess > 0:
        give = [i for i, w in enumerate(widths) if w > least[i]]
        if not give:
            return None
        widest = max(give, key=lambda i: widths[i])
        cut = min(excess, widths[widest] - least[widest])
        widths[widest] -= cut
        excess -= cut
    return widths


def _groups(block: TableBlock, natural: list[int], least: list[int], room: int) -> list[list[int]] | None:
    """Column groups that each fit `room`, the identifying columns in every one; None if impossible."""
    keys = [i for i, c in enumerate(block.columns) if c.ident]
    groups: list[list[int]] = []
    for i in (i for i in range(len(block.columns)) if i not in keys):
        trial = sorted([*(groups[-1] if groups else keys), i])
        if groups and _allot([natural[j] for j in trial], [least[j] for j in trial], room) is not None:
            groups[-1] = trial
        else:
            groups.append(sorted([*keys, i]))
    if any(_allot([natural[j] for j in g], [least[j] for j in g], room) is None for g in groups):
        return None
    return groups


def fit_table(block: TableBlock, room: int) -> list:
    """The renderables that show `block` within `room` columns: one table, column groups, or stacks."""
    if not block.records:
        return [Text(f"{block.title}: nothing to show", style="dim")] if block.title else []
    every = list(range(len(block.columns)))
    for floor in (_COMFORT, _SQUEEZE):
        natural, least = _widths(block, floor)
        widths = _allot(natural, least, room)
        if widths is not None:
            return [_rich_table(block, every, widths, block.title, block.caption)]
        groups = _groups(block, natural, least, room)
        if groups is None:
            continue
        parts: list = []
        for n, group in enumerate(groups, start=1):
            title = f"{block.title} (columns {n}/{len(groups)})" if block.title else f"(columns {n}/{len(groups)})"
            parts.append(Text(title))
            w = _allot([natural[j] for j in group], [least[j] for j in group], room)
            parts.append(_rich_table(block, group, w, "", ""))
        return parts + ([Text(block.caption)] if block.caption else [])
    return _stacked(block, room)


def _rich_table(block: TableBlock, cols: list[int], widths: list[int], title: str, caption: str) -> Table:
    table = Table(title=Text(title) if title else None, caption=Text(caption) if caption else None,
                  caption_justify="left", title_justify="left")
    for i, w in zip(cols, widths, strict=True):
        col = block.columns[i]
        # Every width holds its column's longest number, so only text (and headers) ever wrap.
        table.add_column(Text(col.header), justify=col.justify, width=w, overflow="fold")
    for record in block.records:
        table.add_row(*(Text(block.columns[i].cell(record)) for i in cols))
    return table


def _stacked(block: TableBlock, room: int) -> list:
    """One block per record — its identifying values, then 'Header  value' lines — for very narrow terminals."""
    parts: list = [Text(block.title, style="bold")] if block.title else []
    keys = [c for c in block.columns if c.ident] or list(block.columns[:1])
    label_width = min(max(len(c.header) for c in block.columns), max(8, room // 3))
    for record in block.records:
        parts.append(Text(" · ".join(c.cell(record) for c in keys), style="bold"))
        grid = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False)
        grid.add_column(width=label_width, overflow="fold")
        grid.add_column(overflow="fold")
        for col in block.columns:
            if col not in keys:
                grid.add_row(Text(col.header, style="dim"), Text(col.cell(record)))
        parts.append(grid)
    if block.caption:
        parts.append(Text(block.caption))
    return parts


# ---- files and pipes ----------------------------------------------------------------------------


def _print_code(console: Console, block: CodeBlock, width: int) -> None:
    """A labelled code line (the canonical spec), wrapped at its separators; continuation lines are
    indented under the text, or by two spaces where the longest piece would not fit there."""
    indent = len(block.label)
    if max(map(len, wrap_at_separators(block.text, 1))) > width - indent:
        indent = 2
    for i, line in enumerate(wrap_at_separators(block.text, width - indent)):
        label = block.label if i == 0 else " " * indent
        console.print(Text(label, style="dim") + Text(line), soft_wrap=True)


def wrap_at_separators(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` characters, broken only after a separator ('/', ',' or '+'); a piece
    longer than the width stays whole. Joined back, the lines are `text`."""
    pieces, start = [], 0
    for i, ch in enumerate(text):
        if ch in SEPARATORS:
            pieces.append(text[start:i + 1])
            start = i + 1
    pieces.append(text[start:])
    lines = [""]
    for piece in (p for p in pieces if p):
        if lines[-1] and len(lines[-1]) + len(piece) > max(width, 1):
            lines.append("")
        lines[-1] += piece
    return lines
