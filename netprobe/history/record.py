"""Recording a run: a command's JSON envelope (`BenchRun.to_dict()`, `Comparison.to_dict()`, the
data-parallel rows, `Summary.to_dict()`, predict's predictions), its command line and the machine it
ran on become one run document, inserted in one transaction (all its rows, or none)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from netprobe.history.schema import run_problem
from netprobe.history.store import HistoryError, connect, write_error
from netprobe.history.tables import HARDWARE, insert_run, transaction
from netprobe.render import finite_or_null


def machine_id(machine: dict) -> str:
    """A stable id of a machine: a hash of its hardware (CPU model, logical CPUs, memory in whole GB,
    architecture, board, NVIDIA GPUs), so that its runs line up whatever software it ran."""
    hardware = {k: machine.get(k) for k in HARDWARE}
    hardware["memory_mb"] = round((hardware["memory_mb"] or 0) / 1024)  # kernels report a few MB apart
    return hashlib.sha256(json.dumps(hardware, sort_keys=True).encode()).hexdigest()[:12]


def fingerprint(facts: dict | None = None) -> dict:
    """This machine (`timing.system.host_facts()` unless given) with its id."""
    if facts is None:
        from netprobe.timing.system import host_facts

        facts = host_facts()
    return {"machine_id": machine_id(facts), **facts}


def envelope_kind(data: dict) -> tuple[str, str | None]:
    """(command, experiment) of an envelope, from its shape."""
    if data.get("kind") == "prediction" and isinstance(data.get("predictions"), list):
        return "predict", None  # predicted, never measured: a command of its own
    if "results" in data:
        return "bench", None
    if "experiment" in data:
        return "compare", data["experiment"]
    if "params" in data and "input" in data:
        return "summary", None
    if isinstance(data.get("rows"), list):
        return "", "data-parallel"  # bench --nproc or compare --nproc: the caller says which
    raise ValueError("not a netprobe envelope: no results, rows or summary in it")


def run_document(data: dict, argv: list[str], command: str | None = None, device: dict | None = None,
                 facts: dict | None = None, canonical: Callable[[str], str] | None = None,
                 started: float | None = None) -> dict:
    """The document of a run that printed `data`: when, the command line, the versions, the machine,
    the measured roofs, the busy verdict and every row with the spec that re-runs it.

    `device` defaults to the envelope's own (bench, compare); `canonical` maps a spec to the one that
    re-runs it exactly (default: the spec as given); `started` is the run's start (time.time())."""
    kind, experiment = envelope_kind(data)
    command = kind or command or "bench"
    device = device if device is not None else data.get("device") or {}
    rows = [data] if kind == "summary" else data.get("results") or data.get("rows") or data.get("predictions") or []
    results = []
    for row in rows:
        spec = str(row.get("spec", ""))
        results.append({"label": _label(row, experiment, command), "spec": spec,
                        "canonical": row.get("canonical") or (canonical(spec) if canonical else spec), "data": row})
    now = time.time()
    from netprobe.version import NETPROBE_VERSION

    return {"uid": uuid.uuid4().hex, "created": utc_text(now), "duration_s": now - started if started else None,
            "command": command, "experiment": experiment, "argv": list(argv), "netprobe": NETPROBE_VERSION,
            "machine": fingerprint(facts), "device": device, "peak_tflops": _peaks(data, rows),
            "bandwidth_gbs": next((r["roofline"]["bandwidth_gbs"] for r in rows if r.get("roofline")), None),
            "note": data.get("note"),
            "envelope": {k: v for k, v in data.items() if k not in ("results", "rows", "predictions")}
            if kind != "summary" else {},
            "results": results}


def utc_text(seconds: float) -> str:
    """A moment as the database keeps it: UTC, ISO 8601, to the second (sorts as text)."""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _label(row: dict, experiment: str | None, command: str = "") -> str | None:
    if command == "predict":
        return f"{row.get('spec')} on {row.get('gpu_label')} (predicted)"
    if experiment == "data-parallel":
        return f"{row.get('label')} ×{row.get('world_size')} " + ("DDP" if row.get("ddp") else "no DDP")
    runtime = row.get("runtime")  # a deployed runtime's row is its own line, never pooled with eager torch's
    if runtime in (None, "torch"):
        return row.get("label")
    return f"{row.get('label') or row.get('spec')} ({runtime})"


def _peaks(data: dict, rows: list[dict]) -> dict:
    """The matmul roofs the run measured, by dtype: bench's device record, or compare's rounds."""
    measured = (data.get("device") or {}).get("peak_tflops_measured")
    if measured:
        return dict(measured)
    if "experiment" in data:
        amp = (data.get("settings") or {}).get("amp", "off")
        best = max((p for r in rows for p in r.get("peak_tflops") or []), default=None)
        return {"fp32" if amp == "off" else amp: best} if best else {}
    return {}


def record(path: Path | str, doc: dict) -> int:
    """Insert a run document into the database at `path` in one transaction; returns its id there.
    NaN and Infinity (not JSON) are kept as null; a document that does not fit the schema of a stored
    run (`history.schema`) is refused, naming the field, before the database is opened."""
    doc = finite_or_null(doc)  # type: ignore[assignment]
    problem = run_problem(doc)
    if problem:
        raise HistoryError(f"the run does not fit the results database: {problem}")
    conn = connect(path)
    try:
        with transaction(conn):
            return insert_run(conn, doc)
    except sqlite3.DatabaseError as exc:  # full disk, read-only file, locked past the busy timeout, damaged
        raise write_error(Path(path), exc) from None
    finally:
        conn.close()
