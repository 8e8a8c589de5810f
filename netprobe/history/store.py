"""The results database file: where it lives, how it is opened, its schema and the migrations to it.

One SQLite file, no server. WAL mode and a busy timeout let several processes (two commands, the
ranks of a data-parallel run) write at once; `PRAGMA user_version` is the schema version, and a
file of an older version is upgraded when opened, in one transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.request import pathname2url

from netprobe.defaults import PATH_LIMIT
from netprobe.errors import NetprobeError, quote

BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another to finish its transaction


class HistoryError(NetprobeError):
    """The results database cannot be used: not SQLite, another program's, a newer schema, read-only, full."""

    unwritable = False  # it could be read, were it opened read-only


def default_path() -> Path:
    """$NETPROBE_DB, else results.sqlite in the platform's per-user data folder (platformdirs):
    ~/.local/share/netprobe (or $XDG_DATA_HOME/netprobe) on Linux, ~/Library/Application Support/netprobe
    on macOS, %LOCALAPPDATA%\\netprobe on Windows."""
    if os.environ.get("NETPROBE_DB"):
        return Path(os.environ["NETPROBE_DB"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("netprobe", appauthor=False)) / "results.sqlite"


# ---- schema ----------------------------------------------------------------------------------------

V1 = """
CREATE TABLE machines (
    machine_id TEXT PRIMARY KEY,   -- a hash of the hardware fields: the same machine, the same id
    cpu TEXT, cpus INTEGER, memory_mb INTEGER, arch TEXT, board TEXT, gpus TEXT,
    fingerprint TEXT NOT NULL      -- every fact as JSON
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    run_uid TEXT NOT NULL UNIQUE,  -- made when the run was recorded: how imports recognise it
    created TEXT NOT NULL,         -- UTC, ISO 8601
    duration_s REAL,
    command TEXT NOT NULL,         -- bench | compare | summary
    experiment TEXT,               -- compare's (fused-stages, batch-imgsz, specs); data-parallel; NULL
    argv TEXT NOT NULL,            -- the command line, a JSON list
    machine_id TEXT NOT NULL REFERENCES machines(machine_id),
    device TEXT, device_name TEXT, device_memory_mb INTEGER, threads INTEGER, usable_cores INTEGER,
    netprobe TEXT, torch TEXT, cuda TEXT, cudnn TEXT, python TEXT, os TEXT, driver TEXT,
    peak_tflops TEXT,              -- the measured matmul roofs, JSON {dtype: TFLOP/s}
    bandwidth_gbs REAL,            -- the measured copy bandwidth, where the run measured it
    note TEXT,                     -- the busy-machine verdict
    envelope TEXT NOT NULL         -- the run's JSON without its rows
);
CREATE TABLE results (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    label TEXT, spec TEXT NOT NULL, status TEXT, mode TEXT, dtype TEXT, batch INTEGER, imgsz TEXT,
    imgs_per_s REAL, step_ms REAL, macs INTEGER, params INTEGER, tflops REAL, peak_mem_mb REAL,
    data TEXT NOT NULL             -- the row's whole JSON, as the command printed it
);
CREATE INDEX results_run ON results(run_id);
"""

# v2: the spec that re-runs each row exactly, and what `history` and `report` need without reading every
# row's JSON: a row count per run, a flag for rows with a breakdown, indexes for the filters.
V2 = """
ALTER TABLE results ADD COLUMN canonical TEXT;
ALTER TABLE results ADD COLUMN explained INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN n_results INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET n_results = (SELECT count(*) FROM results WHERE results.run_id = runs.id);
CREATE INDEX runs_created ON runs(created);
CREATE INDEX runs_machine ON runs(machine_id);
CREATE INDEX results_spec ON results(spec);
"""


def _fill_v2(conn: sqlite3.Connection) -> None:
    """v1 rows: the canonical spec is the one their JSON holds (summaries), else the spec as given."""
    rows = conn.execute("SELECT id, spec, data FROM results").fetchall()
    updates = []
    for row_id, spec, data in rows:
        row = json.loads(data)
        explained = bool(row.get("breakdown") or row.get("roofline"))
        updates.append((row.get("canonical") or spec, int(explained), row_id))
    conn.executemany("UPDATE results SET canonical = ?, explained = ? WHERE id = ?", updates)


# v3: `netprobe predict --calibrate`'s fits of the time model on a device at hand; not runs (nothing in them is a
# measurement a report should pool), so a table of their own.
V3 = """
CREATE TABLE calibrations (
    id INTEGER PRIMARY KEY,
    created TEXT NOT NULL,         -- UTC, ISO 8601
    machine_id TEXT NOT NULL,      -- record.machine_id of the machine it ran on
    device TEXT NOT NULL,          -- cpu | cuda
    device_name TEXT, torch TEXT NOT NULL, amp TEXT NOT NULL, layout TEXT NOT NULL,
    models TEXT NOT NULL,          -- the calibration models' specs, a JSON list
    peak_tflops REAL NOT NULL,     -- the roofs the efficiencies are fractions of, measured in the calibration
    bandwidth_gbs REAL NOT NULL,
    efficiency TEXT NOT NULL,      -- the fitted efficiencies and launch cost (prediction.model.Efficiency)
    residuals TEXT NOT NULL,       -- per calibration model: measured and fitted step ms
    fingerprint TEXT NOT NULL      -- the machine and device facts, JSON
);
CREATE INDEX calibrations_device ON calibrations(machine_id, device, amp, layout, created);
"""

# Each step takes the file from version i to i + 1: SQL, then (optionally) Python over the rows.
MIGRATIONS: list[tuple[str, Callable[[sqlite3.Connection], None] | None]] = [(V1, None), (V2, _fill_v2), (V3, None)]
SCHEMA_VERSION = len(MIGRATIONS)


# ---- opening ---------------------------------------------------------------------------------------

def shown(path: Path | str) -> str:
    return quote(str(path), PATH_LIMIT)


def connect(path: Path | str, create: bool = True) -> sqlite3.Connection:
    """Open the database at `path` (created, with its folder when `create`), upgraded to the current
    schema; anything that makes it unusable is a `HistoryError` with one line saying what and what to do.
    Without `create`, a database that cannot be written (a read-only file system or folder) is opened
    read-only."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise HistoryError(f"results database {shown(path)} is a folder; give a file name inside it")
    if path.exists() and not path.is_file():  # /dev/null: SQLite would make /dev/null-journal beside it
        raise HistoryError(f"results database {shown(path)} is not a regular file (a device, a pipe or a socket); "
                           "give a file name with --db, or run with --no-save")
    if not path.exists():
        if not create:
            raise HistoryError(f"no results database at {shown(path)} yet: netprobe bench and compare record "
                               "every run there (or give another with --db)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"cannot create the folder of the results database {shown(path)} "
                               f"({exc.strerror or exc}); give another path with --db, or run with --no-save") from None
    try:
        return _open(path, "")
    except HistoryError as exc:
        if create or not exc.unwritable:
            raise
    for mode in ("mode=ro", "immutable=1"):  # immutable: a WAL file whose folder takes no -shm file beside it
        try:
            return _open(path, mode)
        except HistoryError:
            if mode == "immutable=1":
                raise


def _open(path: Path, mode: str) -> sqlite3.Connection:
    """The database opened read-write (`mode` '') or read-only ('mode=ro', 'immutable=1'), prepared."""
    try:
        where = f"file:{pathname2url(str(path.absolute()))}?{mode}" if mode else path
        conn = sqlite3.connect(where, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, uri=bool(mode))
    except sqlite3.Error as exc:
        raise open_error(path, exc) from None
    try:
        _prepare(conn, path, read_only=bool(mode))
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path, read_only: bool = False) -> None:
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise open_error(path, exc) from None
    _check_version(conn, path, version)
    if read_only:
        if version < SCHEMA_VERSION:
            raise HistoryError(f"results database {shown(path)} is of an older schema ({version}) and read-only, so "
                               "it cannot be upgraded; copy it somewhere writable and give that with --db")
        return
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")  # readers never block the writer, nor it them
        conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: a crash loses at most the last run, never the file
        conn.execute("PRAGMA foreign_keys = ON")
        _upgrade(conn, path)
    except sqlite3.OperationalError as exc:
        raise write_error(path, exc) from None


def open_error(path: Path, exc: sqlite3.Error) -> HistoryError:
    """Why a database could not be opened, in words: not SQLite, locked, full, read-only, or what SQLite said."""
    text = str(exc)
    if "not a database" in text:
        return HistoryError(f"{shown(path)} is not a netprobe results database: {exc} (it is not SQLite); give "
                            "another path with --db, or move the file away")
    if "malformed" in text:
        return HistoryError(f"results database {shown(path)} is damaged: {exc}; restore it from a copy, or give "
                            "another path with --db")
    if "locked" in text or "busy" in text:
        return HistoryError(f"results database {shown(path)} is locked by another process (one that holds it "
                            f"exclusively, or a long write): {exc}; try again when it has finished")
    if not _why(exc):  # none of full, locked, read-only: what SQLite said
        return HistoryError(f"cannot open the results database {shown(path)}: {exc}; give another path with --db")
    return write_error(path, exc)


def _check_version(conn: sqlite3.Connection, path: Path, version: int) -> None:
    if version > SCHEMA_VERSION:
        raise HistoryError(f"results database {shown(path)} has schema version {version}, newer than this netprobe "
                           f"knows ({SCHEMA_VERSION}); upgrade netprobe, or give another path with --db")
    if version == 0:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables:
            raise HistoryError(f"{shown(path)} is an SQLite file of another program (tables: "
                               f"{', '.join(sorted(tables))[:120]}), not a netprobe results database; give another "
                               "path with --db")


def _upgrade(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the missing migrations in one transaction (another process may be doing the same: the
    version is read again once the write lock is held)."""
    if conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        _check_version(conn, path, version)
        for sql, fill in MIGRATIONS[version:]:
            for statement in statements(sql):
                conn.execute(statement)
            if fill is not None:
                fill(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back itself (a full disk): keep its error, not ours
            conn.execute("ROLLBACK")
        raise


def statements(sql: str) -> list[str]:
    """A script's statements, one by one (a semicolon inside a comment or a string does not end one)."""
    done, current = [], ""
    for line in sql.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            done.append(current.strip())
            current = ""
    return done


def check_writable(conn: sqlite3.Connection, path: Path | str) -> None:
    """Refuse, before any work, a database this process cannot write (a read-only file or folder):
    take the write lock and touch the header, then roll back."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    except sqlite3.OperationalError as exc:
        raise write_error(Path(path), exc) from None


def write_error(path: Path, exc: sqlite3.Error) -> HistoryError:
    """A failed write as one line: read-only, full, locked, or what SQLite said."""
    why = _why(exc)
    error = HistoryError(f"cannot write to the results database {shown(path)}: {exc}" + (f" ({why})" if why else "")
                         + "; give a writable path with --db, or run with --no-save")
    error.unwritable = "read-only" in why
    return error


def _why(exc: sqlite3.Error) -> str:
    """What a failed write means, in words ('' where SQLite's own words are all there is)."""
    text = str(exc)
    if "full" in text:
        return "the disk is full"
    if "locked" in text:
        return "another process holds it locked"
    if "readonly" in text or "unable to open" in text or "read-only" in text:
        return "it is read-only (the file, its folder or the file system)"
    return ""
