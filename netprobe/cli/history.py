"""`netprobe history`: the runs kept in the results database — list, show, rm, export, import."""

from __future__ import annotations

import contextlib
import shlex
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from netprobe.cli.app import app, command, one_line_errors
from netprobe.cli.output import Output, note
from netprobe.render import CodeBlock, Column, Format, Report, TableBlock, TextBlock, fmt_float, fmt_int, plural

history_app = typer.Typer(help="The runs kept in the results database: list, show, rm, export, import.",
                          rich_markup_mode=None, add_completion=False)
app.add_typer(history_app, name="history", invoke_without_command=True,
              short_help="Recorded runs: list, show, rm, export, import.")

DbPath = Annotated[str | None, typer.Option("--db", help="The results database (default: $NETPROBE_DB, else "
                                                         "results.sqlite in your user data folder).")]
SpecFilter = Annotated[str | None, typer.Option("--spec", help="Runs with a row whose spec, label or canonical spec "
                                                               "contains this (any case).")]
CommandFilter = Annotated[str | None, typer.Option("--command", help="Runs of this command: bench, compare or "
                                                                     "summary.")]
DeviceFilter = Annotated[str | None, typer.Option("--device", help="cpu, cuda, meta, or part of the device's name.")]
MachineFilter = Annotated[str | None, typer.Option("--machine", help="The start of a machine id, or part of its CPU "
                                                                     "or GPU name.")]
SinceFilter = Annotated[str | None, typer.Option("--since", help="Runs since a date (2026-11-24, UTC) or for an age "
                                                                 "(12h, 7d, 2w).")]
LastOption = Annotated[int | None, typer.Option("--last", help="Only the N most recent matching runs.")]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]

RUN_COLUMNS = [
    Column("id", "ID", ident=True), Column("when", "When (UTC)", justify="left"),
    Column("what", "Command", justify="left"), Column("device_text", "Device", justify="left"),
    Column("machine", "Machine", justify="left"), Column("n_results", "Rows"),
    Column("specs_text", "Specs", justify="left"), Column("busy", "Busy", justify="left"),
]
ROW_COLUMNS = [
    Column("position", "#", ident=True), Column("name", "Row", justify="left", ident=True),
    Column("status", "Status", justify="left"), Column("mode", "Mode", justify="left"),
    Column("dtype", "dtype", justify="left"), Column("batch", "Batch"), Column("imgsz", "Size"),
    Column("imgs_per_s", "imgs/s", fmt_float(2)), Column("step_ms", "Step ms", fmt_float(1)),
    Column("macs", "MACs/img", fmt_int), Column("params", "Params", fmt_int), Column("tflops", "TFLOP/s", fmt_float(3)),
    Column("peak_mem_mb", "Peak MB", fmt_float(0)),
]
LIST_LIMIT = 30  # runs listed when no --last or --all says otherwise


def filters(ids=None, spec=None, command_=None, device=None, machine=None, since=None, last=None):
    """The query filters from the options, checked (one line, exit 2, for a bad one)."""
    from netprobe.errors import check_range
    from netprobe.history.query import Filters

    if last is not None:
        check_range("--last", last, 1, 10**9)
    f = Filters(list(ids or []), spec, command_, device, machine, since, last)
    f.where()  # checks --command and --since now
    return f


@contextlib.contextmanager
def open_db(db: str | None, create: bool = False) -> Iterator[tuple[sqlite3.Connection, Path]]:
    """The results database (--db, else the default one) and its path; closed afterwards."""
    from netprobe.history.store import HistoryError, connect, default_path, shown

    path = Path(db).expanduser() if db is not None else default_path()
    conn = connect(path, create=create)
    try:
        yield conn, path
    except sqlite3.DatabaseError as exc:  # damaged, or full while importing (nothing was merged then)
        raise HistoryError(f"results database {shown(path)}: {exc}; nothing was changed") from None
    finally:
        conn.close()


@history_app.callback()
def history_list(
    ctx: typer.Context,
    spec: SpecFilter = None, command_: CommandFilter = None, device: DeviceFilter = None,
    machine: MachineFilter = None, since: SinceFilter = None, last: LastOption = None,
    all_runs: Annotated[bool, typer.Option("--all", help=f"List every matching run (default: the newest "
                                                         f"{LIST_LIMIT}).")] = False,
    db: DbPath = None, fmt: FormatOption = Format.table,
) -> None:
    """List the recorded runs, newest first (see the subcommands for one run, removing, export, import)."""
    one_line_errors(_list, needs_torch=False)(ctx, spec, command_, device, machine, since, last, all_runs, db, fmt)


def _list(ctx, spec, command_, device, machine, since, last, all_runs, db, fmt) -> None:
    from netprobe.errors import InputError
    from netprobe.history.query import list_runs

    given = any(v is not None for v in (spec, command_, device, machine, since, last)) or all_runs
    if ctx.invoked_subcommand is not None:
        if given or db is not None or fmt is not Format.table:
            raise InputError(f"the listing's options (--spec, --db, --format, ...) belong to 'netprobe history' "
                             f"alone; give '{ctx.invoked_subcommand}' its own after it, e.g. netprobe history "
                             f"{ctx.invoked_subcommand} ... --db PATH")
        return
    output = Output(fmt.value, ("runs",))
    with open_db(db) as (conn, path):
        runs, total = list_runs(conn, filters(None, spec, command_, device, machine, since, last),
                                None if all_runs or last else LIST_LIMIT)
    shown = plural(total, "run") if len(runs) == total else f"the newest {len(runs)} of {total:,} runs (--all: all)"
    report = Report([TableBlock("runs", RUN_COLUMNS, [run_record(r) for r in runs], f"netprobe history: {path}",
                                f"{shown}; netprobe history show ID for a run, netprobe report for the tables and "
                                "plots across machines")])
    output.show(report, {"database": str(path), "total": total, "runs": runs})
    output.finish()


def run_record(run: dict) -> dict:
    """A listed run as its table row shows it."""
    what = run["command"] + (f" {run['experiment']}" if run["experiment"] else "")
    device = run["device_name"] or ""
    return {**run, "when": run["created"].replace("T", " ").rstrip("Z"), "what": what,
            "device_text": f"{device} ({run['device']})" if run["device"] else device, "machine": run["machine_id"][:8],
            "specs_text": run["specs"] + (" | …" if run["n_results"] > 4 else "") if run["specs"] else "",
            "busy": "busy" if run["note"] else ""}


@command("show", "One run: its machine, settings and every row.", group=history_app, needs_torch=False)
def show(run: Annotated[str, typer.Argument(help="The run: its ID, or 6+ characters of its uid.")],
         db: DbPath = None, fmt: FormatOption = Format.table) -> None:
    """One run: when, the command line, versions, the machine, the measured roofs, every row and how to re-run it."""
    from netprobe.history.query import find_run
    from netprobe.history.rerun import rerun_command
    from netprobe.history.tables import run_document

    output = Output(fmt.value, ("rows",))
    with open_db(db) as (conn, _):
        run_id = find_run(conn, run)
        doc = run_document(conn, run_id)
    reruns = [rerun_command(doc, r) for r in doc["results"]]
    output.show(run_report(run_id, doc, reruns), {**doc, "rerun": reruns})
    output.finish()


def run_report(run_id: int, doc: dict, reruns: list[str]) -> Report:
    from netprobe.history.tables import result_columns

    m, d = doc["machine"], doc["device"]
    gpus = ", ".join(m.get("gpus") or []) or "none seen"
    peaks = ", ".join(f"{k} {v:.3f} TFLOP/s" for k, v in (doc["peak_tflops"] or {}).items() if v) or "not measured"
    bandwidth = f"{doc['bandwidth_gbs']:.1f} GB/s" if doc.get("bandwidth_gbs") else "not measured"
    records = []
    for i, r in enumerate(doc["results"]):
        cols = result_columns(doc["command"], doc.get("experiment"), r["data"], doc["envelope"])
        records.append({**cols, "position": i + 1, "name": r.get("label") or r["spec"]})
    lines = [
        f"Run {run_id} ({doc['uid']}): {doc['command']}" + (f" {doc['experiment']}" if doc.get("experiment") else "")
        + f", {doc['created']}" + (f", {doc['duration_s']:.1f} s" if doc.get("duration_s") else ""),
        f"Machine {m['machine_id']}: {m.get('cpu')}, {plural(m.get('cpus') or 0, 'CPU')} "
        f"({m.get('usable_cores', '?')} usable), {(m.get('memory_mb') or 0) / 1024:.1f} GB, {m.get('arch')}"
        + (f", {m['board']}" if m.get("board") else "") + f"; GPUs: {gpus}"
        + (f" (driver {m['driver']})" if m.get("driver") else "") + f"; {m.get('os')}",
        f"Device: {d.get('name')} ({d.get('device')}), {plural(d.get('threads') or 0, 'thread')}"
        + (f", {d['memory_mb']:,} MB" if d.get("memory_mb") else "") + f"; netprobe {doc.get('netprobe')}, torch "
        f"{d.get('torch')}, CUDA {d.get('cuda') or '-'}, cuDNN {d.get('cudnn') or '-'}, Python {m.get('python')}",
        f"Measured: matmul peak {peaks}; copy bandwidth {bandwidth}",
    ]
    report = Report([TextBlock(line) for line in lines])
    report.add(CodeBlock("command: ", shlex.join(doc["argv"])))  # as typed, quoted to paste into a shell
    report.add(TableBlock("rows", ROW_COLUMNS, records, "Rows"))
    if doc.get("note"):
        report.add(TextBlock(doc["note"], "yellow"))
    for i, line in enumerate(reruns, start=1):
        report.add(CodeBlock(f"re-run row {i}: ", line))
    return report


@command("rm", "Remove runs from the database.", group=history_app, needs_torch=False)
def remove(runs: Annotated[list[str], typer.Argument(help="The runs: IDs, or 6+ characters of uids.")],
           db: DbPath = None) -> None:
    """Delete runs and their rows from the results database."""
    from netprobe.history.query import find_run, remove_runs
    from netprobe.history.tables import transaction

    with open_db(db) as (conn, _):
        run_ids = list(dict.fromkeys(find_run(conn, r) for r in runs))  # every one found before any is deleted
        with transaction(conn):
            rows = remove_runs(conn, run_ids)
    note(f"removed {plural(len(run_ids), 'run')} ({plural(rows, 'row')})")


@command("export", "Write runs to a JSON or CSV file.", group=history_app, needs_torch=False)
def export(
    file: Annotated[str, typer.Argument(help="The file to write (.json: every run whole, for history import "
                                             "elsewhere; .csv: one line per row).")],
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="json or csv (default: from the file name).")]
    = None,
    spec: SpecFilter = None, command_: CommandFilter = None, device: DeviceFilter = None,
    machine: MachineFilter = None, since: SinceFilter = None, last: LastOption = None, db: DbPath = None,
) -> None:
    """Write the matching runs to a file: JSON for another machine's history import, or CSV."""
    from netprobe.errors import InputError, quote
    from netprobe.history.transfer import export_csv, export_json
    from netprobe.render import to_json

    if fmt is not None and fmt not in ("json", "csv"):
        raise InputError(f"--format {quote(fmt)} is not one; use json or csv")
    output = Output("json", files={"file": (file, () if fmt else (".json", ".csv"))})
    kind = fmt or file.lower().rsplit(".", 1)[-1]
    f = filters(None, spec, command_, device, machine, since, last)
    with open_db(db) as (conn, _):
        if kind == "json":
            data = export_json(conn, f)
            text, count = to_json(data) + "\n", plural(len(data["runs"]), "run")
        else:
            text = export_csv(conn, f)
            import csv
            import io

            count = plural(sum(1 for _ in csv.reader(io.StringIO(text))) - 1, "row")  # a field may hold a newline
    ok = output.write(file, text)
    if ok:
        note(f"exported {count} to {file}")
    output.finish(ok)


@command("import", "Merge runs from netprobe JSON, no duplicates.", group=history_app, needs_torch=False)
def import_(file: Annotated[str, typer.Argument(help="A JSON file that netprobe history export wrote (on any "
                                                     "machine).")],
            db: DbPath = None) -> None:
    """Merge runs exported on another machine; runs already here (the same uid) are skipped, so twice adds nothing."""
    from netprobe.history.transfer import import_runs, read_export

    docs = read_export(file)  # checked whole before the database is touched
    with open_db(db, create=True) as (conn, path):
        added, rows, present = import_runs(conn, docs)
    note(f"imported {plural(added, 'run')} ({plural(rows, 'row')}) into {path}"
         + (f"; {present} already there" if present else ""))

