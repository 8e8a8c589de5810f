"""Finding runs and rows: filters (spec, command, device, machine, since, ids, the last N) turned into
SQL made only of fixed fragments, the user's text always a parameter, never part of the statement."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass, field

from netprobe.errors import InputError, quote
from netprobe.history.record import utc_text
from netprobe.history.schema import utc_from_iso

COMMANDS = ("bench", "compare", "summary", "predict")
_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


@dataclass
class Filters:
    """Which runs: every field given must hold (text matches are case-insensitive parts)."""

    ids: list[str] = field(default_factory=list)  # run ids, or the start of run uids (6+ hex digits)
    spec: str | None = None  # part of a row's spec, label or canonical spec
    command: str | None = None  # bench | compare | summary | predict
    device: str | None = None  # cpu | cuda | meta, or part of the device's name
    machine: str | None = None  # the start of a machine id, or part of its CPU or GPU name
    since: str | None = None  # a date, a date and time (UTC), or an age: 30m, 12h, 7d, 2w
    last: int | None = None  # only the N most recent of the runs that match
    skip: list[int] = field(default_factory=list)  # run ids left out (damaged ones)

    def where(self) -> tuple[str, list]:
        """The WHERE clause over `runs` (joined with `machines` as m) and its parameters."""
        if self.command is not None and self.command not in COMMANDS:
            raise InputError(f"--command {quote(self.command)} is not one; use {', '.join(COMMANDS)}")
        clauses, params = [], []
        if self.ids:
            clauses.append("(" + " OR ".join(_ID_CLAUSE for _ in self.ids) + ")")
            for ident in self.ids:
                params += _id_params(ident)
        values = {"spec": self.spec, "command": self.command, "device": self.device, "machine": self.machine,
                  "since": None if self.since is None else since_text(self.since)}
        for name, value in values.items():
            if value is not None:
                sql = _CLAUSES[name]
                clauses.append(sql)
                params += [value] * sql.count("?")
        if self.skip:
            clauses.append("runs.id NOT IN (SELECT value FROM json_each(?))")
            params.append(json.dumps(self.skip))
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        if self.last is None:
            return where, params
        # the newest N of the runs that match: the conditions inside, the limit on them
        return (f" WHERE runs.id IN (SELECT runs.id FROM runs JOIN machines m USING (machine_id){where} "
                "ORDER BY runs.created DESC, runs.id DESC LIMIT ?)"), [*params, self.last]


def _contains(column: str) -> str:
    return f"instr(lower(coalesce({column}, '')), lower(?))"


# Each filter's condition: fixed SQL, its value passed for every '?'.
_CLAUSES = {
    "spec": "EXISTS (SELECT 1 FROM results r WHERE r.run_id = runs.id AND (" + " OR ".join(
        _contains(c) for c in ("r.spec", "r.label", "r.canonical")) + "))",
    "command": "runs.command = ?",
    "device": f"(runs.device = lower(?) OR {_contains('runs.device_name')})",
    "machine": "(substr(runs.machine_id, 1, length(?)) = lower(?) OR " + " OR ".join(
        _contains(c) for c in ("m.cpu", "m.gpus", "runs.device_name")) + ")",
    "since": "runs.created >= ?",
}
_ID_CLAUSE = "(runs.id = ? OR (length(?) >= 6 AND substr(runs.run_uid, 1, length(?)) = lower(?)))"


def _id_params(ident: str) -> list:
    """An id clause's parameters: the run id (when `ident` is a number), then the uid prefix three times."""
    return [int(ident) if ident.isdigit() and len(ident) < 19 else None, ident, ident, ident]


def since_text(text: str) -> str:
    """A --since value as the database's UTC text: 2026-11-24, 2026-11-24T10:30 (UTC) or an age (7d, 12h)."""
    match = _RELATIVE.match(text.strip().lower())
    if match:
        start = time.time() - int(match.group(1)) * _UNIT_S[match.group(2)]
        if start < 0:
            raise InputError(f"--since {quote(text)} reaches back before 1970, before any run; give a shorter age, "
                             "or leave --since out for every run")
        return utc_text(start)
    try:
        return utc_from_iso(text)
    except (ValueError, OverflowError, OSError):
        raise InputError(f"--since {quote(text)} is not a date or an age; give e.g. 2026-11-24, "
                         "2026-11-24T10:30 (UTC), 12h or 7d") from None


RUN_LIST = ("SELECT runs.id, runs.run_uid, runs.created, runs.duration_s, runs.command, runs.experiment, "
            "runs.device, runs.device_name, runs.machine_id, m.cpu, m.gpus, runs.n_results, runs.note, "
            "runs.netprobe, runs.torch{specs} FROM runs JOIN machines m USING (machine_id)")
SPECS = (", (SELECT group_concat(spec, ' | ') FROM (SELECT DISTINCT coalesce(label, spec) AS spec FROM results "
         "WHERE results.run_id = runs.id LIMIT 4)) AS specs")


def list_runs(conn: sqlite3.Connection, filters: Filters, limit: int | None = None,
              specs: bool = True) -> tuple[list[dict], int]:
    """The matching runs, newest first (at most `limit`), and how many match in all; with `specs`,
    each run's first few row names."""
    where, params = filters.where()
    total = conn.execute(f"SELECT count(*) FROM runs JOIN machines m USING (machine_id){where}", params).fetchone()[0]
    sql = (RUN_LIST.format(specs=SPECS if specs else "") + f"{where} ORDER BY runs.created DESC, runs.id DESC"
           + (" LIMIT ?" if limit is not None else ""))
    return _dicts(conn, sql, [*params, *([limit] if limit is not None else [])]), total


RESULT_LIST = ("SELECT results.id AS result_id, runs.id AS run_id, runs.run_uid, runs.created, runs.command, "
               "runs.experiment, runs.machine_id, m.cpu, m.gpus, m.memory_mb, runs.device, runs.device_name, "
               "runs.torch, runs.note, results.position, results.label, results.spec, results.canonical, "
               "results.status, results.mode, results.dtype, results.batch, results.imgsz, results.imgs_per_s, "
               "results.step_ms, results.macs, results.params, results.tflops, results.peak_mem_mb, "
               "results.explained FROM results JOIN runs ON results.run_id = runs.id JOIN machines m USING "
               "(machine_id)")


# what the report reads of every row (a third of the columns: it reads 10,000 rows in a fraction of a second)
LEAN_LIST = ("SELECT results.id AS result_id, results.run_id, runs.created, runs.command, runs.experiment, "
             "runs.machine_id, runs.device, runs.device_name, results.position, results.label, results.spec, "
             "results.canonical, results.status, results.mode, "
             "results.dtype, results.batch, results.imgsz, results.imgs_per_s, results.macs, "
             "json_extract(results.data, '$.runtime') AS runtime, json_extract(results.data, '$.world_size') AS "
             "world_size, json_extract(results.data, '$.ddp') AS ddp FROM results JOIN runs "
             "ON results.run_id = runs.id JOIN machines m USING (machine_id)")


def list_results(conn: sqlite3.Connection, filters: Filters, with_data: bool = False, only: str | None = None,
                 newest: int | None = None, lean: bool = False) -> list[dict]:
    """The rows of the matching runs (oldest run first; with `newest`, only that many, newest first),
    without their JSON unless `with_data` (`lean`: only the columns of `LEAN_LIST`). `only`:
    "explained" (rows with a breakdown), "fused-stages" (that experiment's rows) or "predictions"
    (the rows of predict runs)."""
    where, params = filters.where()
    measured = "runs.command != 'predict'"  # a prediction is never read as a measurement
    extra = {None: "", "explained": f"results.explained = 1 AND {measured}",
             "fused-stages": f"runs.experiment = 'fused-stages' AND {measured}",
             "predictions": "runs.command = 'predict'"}[only]
    if extra:
        where = f"{where} AND {extra}" if where else f" WHERE {extra}"
    sql = LEAN_LIST if lean else RESULT_LIST
    if with_data:
        sql = sql.replace(" FROM results", ", results.data FROM results")
    if newest is not None:
        return _dicts(conn, f"{sql}{where} ORDER BY runs.created DESC, runs.id DESC, results.position LIMIT ?",
                      [*params, newest])
    return _dicts(conn, f"{sql}{where} ORDER BY runs.created, runs.id, results.position", params)


def result_data(conn: sqlite3.Connection, result_ids: list[int]) -> dict[int, dict]:
    """The whole JSON of these rows, by row id."""
    found = {}
    for start in range(0, len(result_ids), 500):  # within SQLite's limit of parameters per statement
        chunk = result_ids[start:start + 500]
        sql = f"SELECT id, data FROM results WHERE id IN ({', '.join('?' * len(chunk))})"
        found.update((row_id, json.loads(data)) for row_id, data in conn.execute(sql, chunk))
    return found


def find_run(conn: sqlite3.Connection, ident: str) -> int:
    """The id of the one run that `ident` names (an id, or the start of a run uid)."""
    found = conn.execute(f"SELECT runs.id FROM runs WHERE {_ID_CLAUSE} LIMIT 2",
                         _id_params(ident)).fetchall()
    if not found:
        raise InputError(f"no run {quote(ident)} in the results database; netprobe history lists them (the ID "
                         "column, or 6+ characters of a uid)")
    if len(found) > 1:
        raise InputError(f"{quote(ident)} starts more than one run uid; give more of it, or the run's ID")
    return found[0][0]


def remove_runs(conn: sqlite3.Connection, run_ids: list[int]) -> int:
    """Delete runs and their rows (in the caller's transaction); machines left with no run go too. Rows removed."""
    removed = 0
    for run_id in run_ids:
        removed += conn.execute("DELETE FROM results WHERE run_id = ?", (run_id,)).rowcount
        conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))
    conn.execute("DELETE FROM machines WHERE machine_id NOT IN (SELECT machine_id FROM runs)")
    return removed


def _dicts(conn: sqlite3.Connection, sql: str, params: list) -> list[dict]:
    cursor = conn.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]
