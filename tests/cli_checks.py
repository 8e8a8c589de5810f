"""Running a command in this process (`run_cli`, which the `cli` fixture of conftest.py wraps), and what every
test of bad input checks through the CLI: exit code 2, one line on stderr, no traceback; and how many runs
and rows a results database holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def one_error_line(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.output


def run_cli(*args: object, columns: int | None = None, **env: str):
    """`netprobe ARGS` in this process: click's Result (exit_code, stdout, stderr). `columns` sets COLUMNS;
    other keywords are environment variables for the run. Tests take the `cli` fixture; helpers outside a
    test call this."""
    from typer.testing import CliRunner

    from netprobe.cli import app

    if columns is not None:
        env.setdefault("COLUMNS", str(columns))
    return CliRunner().invoke(app, [str(a) for a in args], env=env or None)


def counts(path: Path) -> tuple[int, int]:
    """(runs, rows) in the results database at `path`."""
    with sqlite3.connect(path) as conn:
        return (conn.execute("SELECT count(*) FROM runs").fetchone()[0],
                conn.execute("SELECT count(*) FROM results").fetchone()[0])
