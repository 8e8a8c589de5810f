"""Results that travel: runs exported as JSON (a format marker, a version, one document per run) or as
CSV (one line per row, for a spreadsheet), and a JSON export from another machine checked whole and
merged by run uid, so that importing a file twice adds nothing."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from netprobe.errors import one_line, quote
from netprobe.history import schema
from netprobe.history.query import Filters, list_results, list_runs
from netprobe.history.record import machine_id, utc_text
from netprobe.history.schema import MAX_DEPTH, utc_from_iso
from netprobe.history.store import HistoryError, shown
from netprobe.history.tables import insert_run, result_values, run_document, transaction
from netprobe.render import Column, to_csv

FORMAT = "netprobe-results"
VERSION = 1
CSV_KEYS = ("run_id", "run_uid", "created", "command", "experiment", "machine_id", "cpu", "gpus", "device",
            "device_name", "torch", "label", "spec", "canonical", "status", "mode", "dtype", "batch", "imgsz",
            "imgs_per_s", "step_ms", "macs", "params", "tflops", "peak_mem_mb", "note")


def export_json(conn: sqlite3.Connection, filters: Filters) -> dict:
    """The matching runs as one JSON document: what `history import` takes on another machine."""
    from netprobe.version import NETPROBE_VERSION

    runs, _ = list_runs(conn, filters, specs=False)
    return {"format": FORMAT, "version": VERSION, "netprobe": NETPROBE_VERSION, "exported": utc_text(time.time()),
            "runs": [run_document(conn, r["id"]) for r in reversed(runs)]}


def export_csv(conn: sqlite3.Connection, filters: Filters) -> str:
    """Every row of the matching runs, one line each, with its run's when, machine and device."""
    return to_csv([Column(k, k) for k in CSV_KEYS], list_results(conn, filters))


# ---- import ----------------------------------------------------------------------------------------

def read_export(path: Path | str) -> list[dict]:
    """The run documents of an export file, every one checked against the schema of a stored run
    before anything is merged."""
    path = Path(path).expanduser()
    where = f"{shown(path)} is not a netprobe results file"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"cannot read {shown(path)}: {getattr(exc, 'strerror', None) or exc}") from None
    if text.startswith(",".join(CSV_KEYS[:3])):
        raise HistoryError(f"{shown(path)} is a CSV export (one line per row, for a spreadsheet); history import "
                           "takes the JSON export: netprobe history export --format json FILE; nothing was imported")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"{where}: its JSON is broken or cut short (line {exc.lineno}, column {exc.colno}: "
                           f"{exc.msg}); nothing was imported") from None
    except RecursionError:
        raise HistoryError(f"{where}: its JSON is nested far too deep (more than {MAX_DEPTH} levels is not a run); "
                           "nothing was imported") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise HistoryError(f"{where} (no \"format\": \"{FORMAT}\" in it); write one with netprobe history export "
                           "--format json FILE; nothing was imported")
    if not isinstance(data.get("version"), int) or isinstance(data["version"], bool) or data["version"] > VERSION:
        raise HistoryError(f"{shown(path)} is of export version {quote(data.get('version'))}, not one this netprobe "
                           f"reads ({VERSION}); upgrade netprobe; nothing was imported")
    runs = data.get("runs")
    if not isinstance(runs, list):
        raise HistoryError(f"{where}: it has no list of runs; nothing was imported")
    first: dict[str, int] = {}
    for i, doc in enumerate(runs):
        problem = run_problem(doc)
        if problem:
            raise HistoryError(f"{where}: run {i + 1} of {len(runs)}{_uid_of(doc)} {problem}; nothing was imported")
        j = first.setdefault(doc["uid"].lower(), i)
        if j != i and runs[j] != doc:
            raise HistoryError(f"{where}: runs {j + 1} and {i + 1} have the same uid {doc['uid']} but different "
                               "data; nothing was imported")
    return runs


def _uid_of(doc: object) -> str:
    uid = doc.get("uid") if isinstance(doc, dict) else None
    return f" (uid {quote(uid, 40)})" if isinstance(uid, str) else ""


def run_problem(doc: object) -> str | None:
    """What is wrong with an imported run document, naming the field (None: nothing)."""
    problem = schema.run_problem(doc, imported=True)
    if problem:
        return problem
    try:
        machine_id(doc["machine"])  # type: ignore[index]
        for result in doc["results"]:  # type: ignore[index]
            result_values(doc, result)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, ZeroDivisionError, OverflowError, RecursionError) as exc:
        return f"has figures that cannot be stored ({one_line(exc)})"
    return None


def import_runs(conn: sqlite3.Connection, docs: list[dict],
                waiting: Callable[[], None] | None = None) -> tuple[int, int, int]:
    """Merge checked run documents in one transaction, skipping runs already here (same uid); `waiting`
    is called if another process holds the database's write lock. Returns (runs added, rows added,
    runs already present)."""
    added = rows = present = 0
    with transaction(conn, waiting):
        for doc in {d["uid"].lower(): d for d in docs}.values():  # a run twice in one file: once
            if conn.execute("SELECT 1 FROM runs WHERE run_uid = ?", (doc["uid"].lower(),)).fetchone():
                present += 1
                continue
            doc = {**doc, "uid": doc["uid"].lower(), "created": utc_from_iso(doc["created"]),
                   "machine": {**doc["machine"], "machine_id": machine_id(doc["machine"])}}
            insert_run(conn, doc)
            added += 1
            rows += len(doc["results"])
    return added, rows, present

