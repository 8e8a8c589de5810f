"""Keeping a run in the results database: `--db` / `--no-save` (summary: `--save`) checked before the
work, like `--out`, and the run recorded after its results were shown and its files written. A
record that fails then is one error line and exit 2; the results stand."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from netprobe.cli.app import invoked_args, say_error
from netprobe.cli.output import check_destination
from netprobe.errors import InputError

DbOption = Annotated[str | None, typer.Option("--db", help="The results database to record the run in (default: "
                                                           "$NETPROBE_DB, else results.sqlite in your user data "
                                                           "folder; see netprobe history).")]
NoSaveOption = Annotated[bool, typer.Option("--no-save", help="Do not record this run in the results database.")]
SaveOption = Annotated[bool, typer.Option("--save", help="Record this summary in the results database.")]


@dataclass
class ResultsDatabase:
    """Where a command will record its run, checked writable; and when the run started."""

    path: Path
    command: str
    started: float


@dataclass
class SaveOptions:
    """Where bench and compare record their runs (`--db`, `--no-save`)."""

    db: DbOption = None
    no_save: NoSaveOption = False

    def database(self, command: str) -> ResultsDatabase | None:
        return check_database(command, self.db, self.no_save)


def check_database(command: str, db: str | None, no_save: bool = False, save: bool = True) -> ResultsDatabase | None:
    """The database the run will be recorded in, refused before any work if the run could not be recorded
    there (not SQLite, another program's, of a newer schema, read-only); None when the run is not kept.
    Pass it to `record_run` once the results are shown."""
    from netprobe.history.store import check_writable, connect, default_path

    if db is not None and no_save:
        raise InputError("--db says where to record the run and --no-save not to record it; give one of them")
    if db is not None and not save:
        raise InputError("--db says where --save records the summary; add --save")
    if no_save or not save:
        return None
    if db is not None:
        check_destination(db, (), "db")
    path = Path(db).expanduser() if db is not None else default_path()
    conn = connect(path)
    try:
        check_writable(conn, path)
    finally:
        conn.close()
    return ResultsDatabase(path, command, time.time())


def record_run(database: ResultsDatabase | None, data: dict) -> bool:
    """Record the run whose envelope is `data` in `database` (None: not kept); False (after one error line)
    if it could not be written. Call it after the results are shown and their files written."""
    if database is None:
        return True
    from netprobe.history.record import record, run_document
    from netprobe.history.store import HistoryError

    try:
        doc = run_document(data, invoked_args(), database.command, _device(data), canonical=canonical_spec,
                           started=database.started)
        record(database.path, doc)
    except HistoryError as exc:
        say_error(f"the run was not recorded: {exc}; its results were printed above")
        return False
    return True


def _device(data: dict) -> dict | None:
    """The device record of an envelope that has none of its own: a summary (counted on the meta
    device), the data-parallel rows (their device)."""
    if isinstance(data.get("device"), dict):
        return None
    from netprobe.timing import device_info

    rows = data.get("rows") if isinstance(data.get("rows"), list) and "params" not in data else None
    if rows:
        return device_info(rows[0].get("device", "cpu"))
    return {**device_info("cpu"), "device": "meta"}


def canonical_spec(spec: str) -> str:
    """The spec that builds the same model with any netprobe version: a zoo spec's canonical form; any
    other (a detector, an object path, a file) as given."""
    from netprobe.errors import NetprobeError
    from netprobe.spec import parse_spec

    try:
        return parse_spec(spec).canonical
    except (NetprobeError, ValueError):
        return spec
