"""Where a command's results go — stdout in the format asked for, files, stderr notes — all checked
before the work starts, and kept when something fails or interrupts at the end."""

from __future__ import annotations

import os
import sys

import typer

from netprobe.cli.app import say_error
from netprobe.errors import InputError, quote
from netprobe.files import PATH_LIMIT, check_destination, write_atomic
from netprobe.render import Format, Report, to_csv, to_json, to_markdown

UNLIMITED = 1_000_000  # the width of output that is not a terminal



def stdout_width() -> int | None:
    """COLUMNS when set; the terminal's width on a terminal (None: rich asks it); else unlimited."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    return None if sys.stdout.isatty() else UNLIMITED


class Output:
    """A command's output: the format, the sections CSV can pick, and the files it will write.

    Made before any work, so that a closed stdout, a CSV section that does not exist or a file that
    cannot be written is refused up front (one line, exit 2).
    """

    def __init__(self, fmt: str, sections: tuple[str, ...] = (), section: str | None = None,
                 files: dict[str, tuple[str | None, tuple[str, ...]]] | None = None) -> None:
        self.fmt = Format(fmt)
        self.broken = False  # stdout went away while printing
        files = files or {}
        self.stdout_closed = sys.stdout is None
        if self.stdout_closed and not any(path for path, _ in files.values()):
            raise InputError("standard output is closed, so the results could not be shown; run with stdout open, "
                             "or write them to a file with --out")
        if section is not None and section not in sections:
            raise InputError(f"--section {quote(section)} is not a section of this output; choose one of "
                             f"{', '.join(sections)}")
        if section is not None and self.fmt is not Format.csv:
            raise InputError("--section picks the table CSV prints (one table per file); use it with --format csv")
        self.section = section or (sections[0] if sections else None)
        for option, (path, suffixes) in files.items():
            if path is not None:
                check_destination(path, suffixes, option)

    def show(self, report: Report, data: object) -> None:
        """Print the results on stdout in the chosen format; a reader that went away is noted, not fatal."""
        if self.stdout_closed:
            return
        try:
            if self.fmt is Format.table:
                self._table(report)
            else:
                sys.stdout.write(self.text(report, data))
                sys.stdout.flush()
        except BrokenPipeError:
            self.broken = True
            _silence_stdout()

    def _table(self, report: Report) -> None:
        """On a terminal, rich draws the report at its width; into a pipe or file, plain text with no
        trailing spaces, tables at their natural width (or COLUMNS) and text wrapped at 100 columns."""
        from netprobe.terminal import TEXT_WIDTH, make_console, print_report, render_text

        width = stdout_width()
        if sys.stdout.isatty():
            print_report(make_console(width=width), report)
            return
        sys.stdout.write(render_text(report, TEXT_WIDTH if width == UNLIMITED else width, width or UNLIMITED))
        sys.stdout.flush()

    def text(self, report: Report, data: object) -> str:
        if self.fmt is Format.json:
            return to_json(data) + "\n"
        if self.fmt is Format.markdown:
            return to_markdown(report)
        tables = {t.name: t for t in report.tables}
        table = tables.get(self.section or "") or next(iter(tables.values()))
        return to_csv(table.columns, table.records)

    def write(self, path: str, content: str | bytes, what: str = "results", printed: bool = True) -> bool:
        """Write a file at the end of a run; a failure is one error line (saying whether the results were
        `printed` first)."""
        try:
            write_atomic(path, content)
        except OSError as exc:
            say_error(f"could not write the {what} to {quote(path, PATH_LIMIT)}: {exc.strerror or exc}; "
                      + ("they were printed above" if printed and not self.stdout_closed else "nothing was written"))
            return False
        return True

    def finish(self, ok: bool = True) -> None:
        """End the command: exit 141 if stdout's reader went away, 2 if a file could not be written."""
        if self.broken:
            raise typer.Exit(141)
        if not ok:
            raise typer.Exit(2)


def _silence_stdout() -> None:
    # Python flushes stdout again at exit, which would raise once more: point it at /dev/null.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def note_aliases(specs: list) -> None:
    """A note for each spec that names a zoo net by its timm or torchvision name, saying which it is."""
    from netprobe.spec import zoo_alias

    for spec in specs:
        alias = zoo_alias(spec.partition(":")[0]) if isinstance(spec, str) else None
        if alias:
            note(alias[1])


def note(text: str, style: str = "") -> None:
    """A line on stderr (literal text), for what is not a result: progress, device, interruptions."""
    from rich.text import Text

    from netprobe.terminal import make_console

    make_console(stderr=True).print(Text(text, style=style), soft_wrap=True)


def progress_bar():
    """A rich progress bar on stderr, so stdout stays clean for json and csv; descriptions are literal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from netprobe.terminal import make_console

    console = make_console(stderr=True)
    # Off when stderr is not a terminal: a log file gets no bar, and no stray empty line.
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal)
