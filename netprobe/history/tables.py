"""A run as a document (plain JSON: the run, its machine, its rows) and as table rows, both ways.

Recording and importing both insert documents; `show` and `export` read them back. The columns a
query filters or sorts on are taken from each row's JSON here, in one place, so that a row recorded
on this machine and one imported from another are stored alike.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator

HARDWARE = ("cpu", "cpus", "memory_mb", "arch", "board", "gpus")  # what identifies a machine (see record.machine_id)
RUN_COLUMNS = ("run_uid", "created", "duration_s", "command", "experiment", "argv", "machine_id", "device",
               "device_name", "device_memory_mb", "threads", "usable_cores", "netprobe", "torch", "cuda", "cudnn",
               "python", "os", "driver", "peak_tflops", "bandwidth_gbs", "note", "envelope", "n_results")
RESULT_COLUMNS = ("run_id", "position", "label", "spec", "canonical", "status", "mode", "dtype", "batch", "imgsz",
                  "imgs_per_s", "step_ms", "macs", "params", "tflops", "peak_mem_mb", "explained", "data")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, waiting: Callable[[], None] | None = None) -> Iterator[sqlite3.Connection]:
    """One write transaction: everything in it is kept, or (on any exception, an interrupt too) nothing.
    `waiting` is called once if another process holds the write lock, before waiting for it."""
    _begin(conn, waiting)  # the write lock now, so that a busy database waits here, not mid-way
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # SQLite itself may have rolled back (a full disk, an I/O error): keep its error
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _begin(conn: sqlite3.Connection, waiting: Callable[[], None] | None) -> None:
    if waiting is None:
        conn.execute("BEGIN IMMEDIATE")
        return
    from netprobe.history.store import BUSY_TIMEOUT_MS

    conn.execute("PRAGMA busy_timeout = 100")
    try:
        conn.execute("BEGIN IMMEDIATE")
        return
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc) and "busy" not in str(exc):
            raise
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    waiting()
    conn.execute("BEGIN IMMEDIATE")


def insert_run(conn: sqlite3.Connection, doc: dict) -> int:
    """Insert a run document (inside a transaction); returns its id in this database."""
    machine = doc["machine"]
    conn.execute("INSERT OR IGNORE INTO machines (machine_id, cpu, cpus, memory_mb, arch, board, gpus, fingerprint) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (machine["machine_id"], *(_cell(machine.get(k)) for k in HARDWARE),
                  json.dumps({k: machine.get(k) for k in HARDWARE})))
    device = doc.get("device") or {}
    values = (doc["uid"], doc["created"], doc.get("duration_s"), doc["command"], doc.get("experiment"),
              json.dumps(doc.get("argv") or []), machine["machine_id"], device.get("device"), device.get("name"),
              device.get("memory_mb"), device.get("threads"), machine.get("usable_cores"), doc.get("netprobe"),
              device.get("torch"), _cell(device.get("cuda")), _cell(device.get("cudnn")), machine.get("python"),
              machine.get("os"), machine.get("driver"), json.dumps(doc.get("peak_tflops") or {}),
              doc.get("bandwidth_gbs"), doc.get("note"), json.dumps(doc.get("envelope") or {}), len(doc["results"]))
    cursor = conn.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(values))})",
                          values)
    run_id = cursor.lastrowid
    rows = [(run_id, i, *result_values(doc, r)) for i, r in enumerate(doc["results"])]
    conn.executemany(f"INSERT INTO results ({', '.join(RESULT_COLUMNS)}) "
                     f"VALUES ({', '.join('?' * len(RESULT_COLUMNS))})", rows)
    return run_id


def result_values(doc: dict, result: dict) -> tuple:
    """The columns of one result row (label ... explained, data), from its JSON and its run's settings."""
    data = result["data"]
    c = result_columns(doc["command"], doc.get("experiment"), data, doc.get("envelope") or {})
    explained = int(doc["command"] != "predict" and bool(data.get("breakdown") or data.get("roofline")))
    return (result.get("label"), result["spec"], result.get("canonical") or result["spec"], c.get("status"),
            c.get("mode"), c.get("dtype"), c.get("batch"), _cell(c.get("imgsz")), c.get("imgs_per_s"),
            c.get("step_ms"), c.get("macs"), c.get("params"), c.get("tflops"), c.get("peak_mem_mb"), explained,
            json.dumps(data))


def result_columns(command: str, experiment: str | None, data: dict, envelope: dict) -> dict:
    """What a row's JSON says in the columns every command shares: status, mode, dtype, batch, size,
    imgs/s, step ms, MACs per image, params, TFLOP/s, peak MB."""
    if command == "summary":
        n, _, h, w = (data.get("input") or [None, None, None, None])[:4]
        return {"status": "ok", "mode": "count", "batch": n, "imgsz": h if h == w else f"{h}x{w}",
                "macs": data["macs"] // n if n else data.get("macs"), "params": data.get("params")}
    if command == "predict":  # predicted, not measured: no figure in the columns the measured tables read
        h, w = (data.get("imgsz") or [None, None])[:2]
        amp = data.get("amp") or "off"
        return {"status": "predicted", "mode": data.get("mode"), "dtype": "fp32" if amp == "off" else amp,
                "batch": data.get("batch"), "imgsz": h if h == w else f"{h}x{w}"}
    if experiment == "data-parallel":
        return {**_common(data), "mode": "train", "batch": data.get("global_batch")}
    if command == "compare":
        amp = (envelope.get("settings") or {}).get("amp", "off")
        mode = data.get("mode") or "train"  # inference where compare ran --runtime
        return {**_common(data), "mode": mode, "dtype": "fp32" if amp == "off" else amp,  # compare's amp setting
                "imgs_per_s": data.get(f"{mode}_imgs_per_s"), "macs": data.get("macs")}
    return {**_common(data), "macs": data.get("macs_per_img")}


def _common(data: dict) -> dict:
    keys = ("status", "mode", "dtype", "batch", "imgsz", "imgs_per_s", "step_ms", "params", "tflops", "peak_mem_mb")
    return {k: data.get(k) for k in keys}


def _cell(value: object) -> object:
    """A value as a column holds it: lists as JSON, everything else as it is."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def run_document(conn: sqlite3.Connection, run_id: int, rows: bool = True) -> dict:
    """A stored run as the document it was recorded from (what `export` writes and `import` reads);
    without `rows`, its results are left out."""
    conn.row_factory = sqlite3.Row
    try:
        run = conn.execute("SELECT runs.*, machines.fingerprint FROM runs JOIN machines USING (machine_id) "
                           "WHERE runs.id = ?", (run_id,)).fetchone()
        results = conn.execute("SELECT label, spec, canonical, data FROM results WHERE run_id = ? ORDER BY position",
                               (run_id,)).fetchall() if rows else []
    finally:
        conn.row_factory = None
    machine = {"machine_id": run["machine_id"], **json.loads(run["fingerprint"]),
               **{k: run[k] for k in ("usable_cores", "os", "driver", "python")}}
    device = {"device": run["device"], "name": run["device_name"], "memory_mb": run["device_memory_mb"],
              "threads": run["threads"], "torch": run["torch"], "cuda": run["cuda"], "cudnn": run["cudnn"]}
    return {"uid": run["run_uid"], "created": run["created"], "duration_s": run["duration_s"],
            "command": run["command"], "experiment": run["experiment"], "argv": json.loads(run["argv"]),
            "netprobe": run["netprobe"], "machine": machine, "device": device,
            "peak_tflops": json.loads(run["peak_tflops"] or "{}"), "bandwidth_gbs": run["bandwidth_gbs"],
            "note": run["note"], "envelope": json.loads(run["envelope"]),
            "results": [{"label": r["label"], "spec": r["spec"], "canonical": r["canonical"],
                         "data": json.loads(r["data"])} for r in results]}


# rows changed by hand: JSON that is not JSON, text where the tables format numbers
_NUMBERS = ("batch", "imgs_per_s", "step_ms", "macs", "params", "tflops", "peak_mem_mb")
_BAD_ROWS = ("SELECT run_id, min(json_valid(data)) FROM results WHERE run_id IN (SELECT value FROM json_each(?)) AND "
             "NOT (json_valid(data) AND typeof(spec) = 'text' AND "
             + " AND ".join(f"typeof({c}) IN ('integer', 'real', 'null')" for c in _NUMBERS) + " AND "
             + " AND ".join(f"typeof({c}) IN ('text', 'null')" for c in ("label", "status", "mode", "dtype"))
             + ") GROUP BY run_id")


def stored_problem(conn: sqlite3.Connection, run_id: int, rows: bool = True) -> str | None:
    """What is damaged in a stored run (its JSON broken, a field that does not fit the schema), or None;
    without `rows`, its rows are only checked for JSON that is JSON and numbers where numbers belong
    (a reader that reads a row's JSON checks it with `row_problem`)."""
    return damaged_runs(conn, [run_id], rows).get(run_id)


def damaged_runs(conn: sqlite3.Connection, run_ids: list[int], rows: bool = True) -> dict[int, str]:
    """The damaged ones of these runs, each with what is wrong with it (see `stored_problem`)."""
    from netprobe.errors import one_line
    from netprobe.history.schema import run_problem

    found = {run_id: "holds a row whose JSON cannot be read" if not valid else
             "has a row whose columns hold text where numbers belong"
             for run_id, valid in conn.execute(_BAD_ROWS, (json.dumps(run_ids),))}
    for run_id in run_ids:
        if run_id in found:
            continue
        try:
            doc = run_document(conn, run_id, rows)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:  # JSON broken by hand, a column emptied
            found[run_id] = f"holds JSON that cannot be read ({one_line(exc)[:120]})"
            continue
        problem = run_problem(doc, stored=True)
        if problem:
            found[run_id] = problem
    return found


def row_problem(row: dict, data: object) -> str | None:
    """What is wrong with the JSON of a stored row (`row`: its run's command and experiment, its position)."""
    from netprobe.history.schema import Problem, check_result

    try:
        check_result({"spec": "", "data": data}, f"results[{row['position']}]", row["command"], row["experiment"])
    except Problem as exc:
        return f"has a malformed row {row['position'] + 1}: {exc}"
    return None


def checked_document(conn: sqlite3.Connection, run_id: int) -> dict:
    """A stored run's document, or a `HistoryError` naming the run and what is damaged in it."""
    from netprobe.history.store import HistoryError

    problem = stored_problem(conn, run_id)
    if problem:
        raise HistoryError(damaged_line(run_id, problem))
    return run_document(conn, run_id)


def damaged_line(run_id: int, problem: str, left_out: str = "") -> str:
    """One line about a damaged run: which, what is wrong, what to do."""
    return (f"run {run_id} in the results database is damaged{left_out}: it {problem}; netprobe history rm "
            f"{run_id} removes it")
