"""Results that travel: runs exported as JSON (a format marker, a version, one document per run) or as
CSV (one line per row, for a spreadsheet), and a JSON export from another machine checked whole and
merged by run uid, so that importing a file twice adds nothing."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from netprobe.history.query import Filters, list_results, list_runs
from netprobe.history.record import machine_id, utc_from_iso, utc_text
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
    from netprobe import __version__

    runs, _ = list_runs(conn, filters, specs=False)
    return {"format": FORMAT, "version": VERSION, "netprobe": __version__, "exported": utc_text(time.time()),
            "runs": [run_document(conn, r["id"]) for r in reversed(runs)]}


def export_csv(conn: sqlite3.Connection, filters: Filters) -> str:
    """Every row of the matching runs, one line each, with its run's when, machine and device."""
    return to_csv([Column(k, k) for k in CSV_KEYS], list_results(conn, filters))


# ---- import ----------------------------------------------------------------------------------------

def read_export(path: Path | str) -> list[dict]:
    """The run documents of an export file, every one checked before anything is merged."""
    path = Path(path).expanduser()
    where = f"{shown(path)} is not a netprobe results file"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"cannot read {shown(path)}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"{where}: its JSON is broken or cut short (line {exc.lineno}, column {exc.colno}: "
                           f"{exc.msg}); nothing was imported") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise HistoryError(f"{where} (no \"format\": \"{FORMAT}\" in it); write one with netprobe history export "
                           "--format json FILE; nothing was imported")
    if not isinstance(data.get("version"), int) or data["version"] > VERSION:
        raise HistoryError(f"{shown(path)} is of export version {data.get('version')!r}, newer than this netprobe "
                           f"reads ({VERSION}); upgrade netprobe; nothing was imported")
    runs = data.get("runs")
    if not isinstance(runs, list):
        raise HistoryError(f"{where}: it has no list of runs; nothing was imported")
    for i, doc in enumerate(runs):
        problem = run_problem(doc)
        if problem:
            raise HistoryError(f"{where}: run {i + 1} of {len(runs)} {problem}; nothing was imported")
    return runs


_FIELDS = {"uid": str, "created": str, "command": str, "argv": list, "machine": dict, "device": dict,
           "results": list, "envelope": dict, "peak_tflops": dict}
_OPTIONAL = {"duration_s": (int, float), "experiment": str, "netprobe": str, "bandwidth_gbs": (int, float),
             "note": str}
_MACHINE = {"cpu": str, "cpus": int, "arch": str, "gpus": list}


def run_problem(doc: object) -> str | None:
    """What is wrong with a run document, in a few words ('' or None: nothing)."""
    if not isinstance(doc, dict):
        return "is not an object"
    for name, kind in _FIELDS.items():
        if not isinstance(doc.get(name), kind):
            return f"has no {name} of the right kind"
    for name, kinds in _OPTIONAL.items():
        if doc.get(name) is not None and not isinstance(doc[name], kinds):
            return f"has a {name} of the wrong kind"
    if not (0 < len(doc["uid"]) <= 64 and doc["uid"].isalnum()):
        return "has a malformed uid"
    if doc["command"] not in ("bench", "compare", "summary"):
        return f"is of an unknown command {doc['command'][:40]!r}"
    try:
        utc_from_iso(doc["created"])
    except ValueError:
        return "has a malformed time"
    if any(not isinstance(doc["machine"].get(k), t) for k, t in _MACHINE.items()):
        return "has an incomplete machine fingerprint"
    for j, result in enumerate(doc["results"]):
        if not isinstance(result, dict) or not isinstance(result.get("spec"), str) or \
                not isinstance(result.get("data"), dict):
            return f"has a malformed row {j + 1}"
        try:
            result_values(doc, result)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return f"has a row {j + 1} whose figures cannot be read"
    return None


def import_runs(conn: sqlite3.Connection, docs: list[dict]) -> tuple[int, int, int]:
    """Merge checked run documents in one transaction, skipping runs already here (same uid).
    Returns (runs added, rows added, runs already present)."""
    added = rows = present = 0
    with transaction(conn):
        for doc in docs:
            if conn.execute("SELECT 1 FROM runs WHERE run_uid = ?", (doc["uid"].lower(),)).fetchone():
                present += 1
                continue
            doc = {**doc, "uid": doc["uid"].lower(), "created": utc_from_iso(doc["created"]),
                   "machine": {**doc["machine"], "machine_id": machine_id(doc["machine"])}}
            insert_run(conn, doc)
            added += 1
            rows += len(doc["results"])
    return added, rows, present

