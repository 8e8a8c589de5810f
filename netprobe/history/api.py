"""`netprobe.history.open(path)`: the results database from Python, runs and rows as plain records
(and a pandas DataFrame where pandas is importable)."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from netprobe.history.query import Filters, find_run, list_results, list_runs, remove_runs
from netprobe.history.store import HistoryError, connect, default_path
from netprobe.history.tables import checked_document, damaged_line, transaction
from netprobe.history.transfer import import_runs, read_export


@dataclass
class Run:
    """One recorded run: when, what, where, how many rows."""

    id: int
    run_uid: str
    created: str  # UTC, ISO 8601
    command: str  # bench | compare | summary
    experiment: str | None  # fused-stages, batch-imgsz, specs, data-parallel
    device: str | None
    device_name: str | None
    machine_id: str
    cpu: str | None
    n_results: int
    note: str | None  # the busy-machine verdict
    specs: str | None = None  # its first few rows' specs
    duration_s: float | None = None
    netprobe: str | None = None
    torch: str | None = None


@dataclass
class Result:
    """One recorded row with its run's when, machine and device; `data` is the row's JSON as printed."""

    run_id: int
    run_uid: str
    created: str
    command: str
    experiment: str | None
    machine_id: str
    cpu: str | None
    device: str | None
    device_name: str | None
    torch: str | None
    label: str | None
    spec: str
    canonical: str | None
    status: str | None
    mode: str | None
    dtype: str | None
    batch: int | None
    imgsz: str | None
    imgs_per_s: float | None
    step_ms: float | None
    macs: int | None  # per image
    params: int | None
    tflops: float | None
    peak_mem_mb: float | None
    data: dict | None = None


def _record(cls: type, row: dict) -> object:
    return cls(**{f.name: row.get(f.name) for f in fields(cls)})


class History:
    """The results database at `path`. Filters (`spec`, `command`, `device`, `machine`, `since`, `last`,
    `ids`) are those of `netprobe history`."""

    def __init__(self, path: Path | str | None = None, create: bool = True) -> None:
        self.path = Path(path).expanduser() if path is not None else default_path()
        self.conn = connect(self.path, create=create)

    def runs(self, **filters) -> list[Run]:
        """The matching runs, newest first."""
        return [_record(Run, r) for r in list_runs(self.conn, Filters(**filters))[0]]  # type: ignore[misc]

    def results(self, with_data: bool = False, **filters) -> list[Result]:
        """Every row of the matching runs, oldest run first; `with_data`: each row's whole JSON too."""
        rows = list_results(self.conn, Filters(**filters), with_data)
        for row in rows:
            if with_data:
                try:
                    row["data"] = json.loads(row["data"])
                except (ValueError, RecursionError):
                    raise HistoryError(damaged_line(row["run_id"], "holds JSON that cannot be read")) from None
        return [_record(Result, r) for r in rows]  # type: ignore[misc]

    def run(self, ident: str | int) -> dict:
        """One run as the document it was recorded from: machine, versions, envelope, rows (a
        `HistoryError` naming it if it is damaged)."""
        return checked_document(self.conn, find_run(self.conn, str(ident)))

    def dataframe(self, **filters):
        """The rows as a pandas DataFrame (one line per row, its run's columns beside); needs pandas."""
        try:
            import pandas
        except ImportError:
            raise ImportError("History.dataframe needs pandas: pip install pandas (History.results gives the "
                              "same rows as plain records)") from None
        return pandas.DataFrame([r.__dict__ for r in self.results(**filters)])

    def import_file(self, path: Path | str) -> tuple[int, int, int]:
        """Merge an export from another machine: (runs added, rows added, runs already here)."""
        return import_runs(self.conn, read_export(path))

    def remove(self, *idents: str | int) -> int:
        """Delete runs by id or uid prefix; returns the rows removed."""
        run_ids = [find_run(self.conn, str(i)) for i in idents]
        with transaction(self.conn):
            return remove_runs(self.conn, run_ids)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(path: Path | str | None = None, create: bool = True) -> History:
    """The results database at `path` (default: $NETPROBE_DB, else the user data folder's)."""
    return History(path, create)
