"""`netprobe history`: the runs kept in the results database — list, show, diff, rm, export, import."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from netprobe.cli.app import app, command, one_line_errors
from netprobe.cli.options import takes
from netprobe.cli.output import Output, note
from netprobe.render import CodeBlock, Column, Format, Report, TableBlock, TextBlock, fmt_float, fmt_int, plural

history_app = typer.Typer(help="The runs kept in the results database: list, show, diff, rm, export, import.",
                          rich_markup_mode=None, add_completion=False)
app.add_typer(history_app, name="history", invoke_without_command=True,
              short_help="Recorded runs: list, show, rm, export, import.")

DbPath = Annotated[str | None, typer.Option("--db", help="The results database (default: $NETPROBE_DB, else "
                                                         "results.sqlite in your user data folder).")]
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
    Column("imgs_text", "imgs/s"), Column("step_ms", "Step ms", fmt_float(1)),
    Column("macs", "MACs/img", fmt_int), Column("params", "Params", fmt_int), Column("tflops", "TFLOP/s", fmt_float(3)),
    Column("peak_mem_mb", "Peak MB", fmt_float(0)),
]
LIST_LIMIT = 30  # runs listed when no --last or --all says otherwise


@dataclass
class RunFilters:
    """Which recorded runs a command reads: history's listing, export and report alike."""

    spec: Annotated[str | None, typer.Option("--spec", help="Runs with a row whose spec, label or canonical spec "
                                                            "contains this (any case).")] = None
    command_: Annotated[str | None, typer.Option("--command", help="Runs of this command: bench, compare, "
                                                                   "summary or predict.")] = None
    device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, meta, or part of the device's "
                                                                "name.")] = None
    machine: Annotated[str | None, typer.Option("--machine", help="The start of a machine id, or part of its CPU "
                                                                  "or GPU name.")] = None
    since: Annotated[str | None, typer.Option("--since", help="Runs since a date (2026-11-24, UTC) or for an age "
                                                              "(12h, 7d, 2w).")] = None
    last: Annotated[int | None, typer.Option("--last", help="Only the N most recent matching runs.")] = None

    @property
    def given(self) -> bool:
        return any(v is not None for v in dataclasses.astuple(self))

    def query(self, ids: list[str] | None = None):
        """The query filters, checked (one line, exit 2, for a bad one)."""
        from netprobe.errors import check_range
        from netprobe.history.query import Filters

        if self.last is not None:
            check_range("--last", self.last, 1, 10**9)
        f = Filters(list(ids or []), self.spec, self.command_, self.device, self.machine, self.since, self.last)
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


def leave_out_damaged(conn: sqlite3.Connection, chosen, what: str, rows: bool = True) -> bool:
    """Leave the damaged runs among those `chosen` selects out of them, one error line for each; False if
    any (`rows`: check every row's JSON whole, not only that it is JSON)."""
    from netprobe.history.query import list_runs
    from netprobe.history.tables import damaged_runs

    damaged = damaged_runs(conn, [r["id"] for r in reversed(list_runs(conn, chosen, specs=False)[0])], rows)
    say_damaged(damaged, what)
    chosen.skip = list(damaged)
    return not damaged


def say_damaged(damaged: dict[int, str], what: str) -> None:
    from netprobe.cli.app import say_error
    from netprobe.history.tables import damaged_line

    for run_id, problem in damaged.items():
        say_error(damaged_line(run_id, problem, f" and left out of the {what}"))


@history_app.callback()
@takes(runs=RunFilters)
def history_list(
    ctx: typer.Context,
    all_runs: Annotated[bool, typer.Option("--all", help=f"List every matching run (default: the newest "
                                                         f"{LIST_LIMIT}).")] = False,
    db: DbPath = None, fmt: FormatOption = Format.table, *, runs: RunFilters,
) -> None:
    """List the recorded runs, newest first (see the subcommands for one run, removing, export, import)."""
    one_line_errors(_list, needs_torch=False)(ctx, runs, all_runs, db, fmt)


def _list(ctx, chosen: RunFilters, all_runs: bool, db: str | None, fmt: Format) -> None:
    from netprobe.errors import InputError
    from netprobe.history.query import list_runs

    given = chosen.given or all_runs
    if ctx.invoked_subcommand is not None:
        if given or db is not None or fmt is not Format.table:
            raise InputError(f"the listing's options (--spec, --db, --format, ...) belong to 'netprobe history' "
                             f"alone; give '{ctx.invoked_subcommand}' its own after it, e.g. netprobe history "
                             f"{ctx.invoked_subcommand} ... --db PATH")
        return
    output = Output(fmt.value, ("runs",))
    with open_db(db) as (conn, path):
        runs, total = list_runs(conn, chosen.query(), None if all_runs or chosen.last else LIST_LIMIT)
    shown = plural(total, "run") if len(runs) == total else f"the newest {len(runs)} of {total:,} runs (--all: all)"
    report = Report([TableBlock("runs", RUN_COLUMNS, [run_record(r) for r in runs], f"netprobe history: {path}",
                                f"{shown}; netprobe history show ID for a run, netprobe report for the tables and "
                                "plots across machines")])
    output.show(report, {"database": str(path), "total": total, "runs": runs})
    output.finish()


def run_record(run: dict) -> dict:
    """A listed run as its table row shows it."""
    what = run["command"] + (f" {run['experiment']}" if run["experiment"] else "")
    if run["command"] == "predict":
        what += " (predictions, not measured)"
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
    from netprobe.history.tables import checked_document

    output = Output(fmt.value, ("rows",))
    with open_db(db) as (conn, _):
        run_id = find_run(conn, run)
        doc = checked_document(conn, run_id)
    reruns = [rerun_command(doc, r) for r in doc["results"]]
    output.show(run_report(run_id, doc, reruns), {**doc, "rerun": reruns})
    output.finish()


def run_report(run_id: int, doc: dict, reruns: list[str]) -> Report:
    from netprobe.history.tables import result_columns
    from netprobe.intervals import figure_text

    m, d = doc["machine"], doc["device"]
    gpus = ", ".join(m.get("gpus") or []) or "none seen"
    peaks = ", ".join(f"{k} {v:.3f} TFLOP/s" for k, v in (doc["peak_tflops"] or {}).items() if v) or "not measured"
    bandwidth = f"{doc['bandwidth_gbs']:.1f} GB/s" if doc.get("bandwidth_gbs") else "not measured"
    records = []
    for i, r in enumerate(doc["results"]):
        cols = result_columns(doc["command"], doc.get("experiment"), r["data"], doc["envelope"])
        rate = cols.get("imgs_per_s")
        text = None if rate is None else figure_text(rate, r["data"].get("imgs_per_s_ci90"), 2)
        if doc["command"] == "predict":  # its figures are the prediction's, and the row says so
            text = f"{r['data']['imgs_per_s']:,.2f} predicted"
        records.append({**cols, "position": i + 1, "name": r.get("label") or r["spec"], "imgs_text": text})
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
@takes(runs=RunFilters)
def export(
    file: Annotated[str, typer.Argument(help="The file to write (.json: every run whole, for history import "
                                             "elsewhere; .csv: one line per row).")],
    fmt: Annotated[str | None, typer.Option("--format", "-f", help="json or csv (default: from the file name).")]
    = None,
    db: DbPath = None, *, runs: RunFilters,
) -> None:
    """Write the matching runs to a file: JSON for another machine's history import, or CSV."""
    from netprobe.errors import InputError, quote
    from netprobe.history.transfer import export_csv, export_json
    from netprobe.render import to_json

    if fmt is not None and fmt not in ("json", "csv"):
        raise InputError(f"--format {quote(fmt)} is not one; use json or csv")
    named = file.lower().rsplit(".", 1)[-1] if file.lower().endswith((".json", ".csv")) else None
    if fmt is not None and named is not None and named != fmt:
        raise InputError(f"--format {fmt} into {quote(file)}, a .{named} file: give a file name ending in .{fmt}, "
                         f"or --format {named}")
    output = Output("json", files={"FILE": (file, () if fmt else (".json", ".csv"))})
    kind = fmt or named
    f = runs.query()
    with open_db(db) as (conn, _):
        whole = leave_out_damaged(conn, f, "export")
        if kind == "json":
            data = export_json(conn, f)
            text, count = to_json(data) + "\n", plural(len(data["runs"]), "run")
        else:
            text = export_csv(conn, f)
            import csv
            import io

            count = plural(sum(1 for _ in csv.reader(io.StringIO(text))) - 1, "row")  # a field may hold a newline
    ok = output.write(file, text, "export", printed=False)
    if ok:
        note(f"exported {count} to {file}")
    output.finish(ok and whole)


@command("import", "Merge runs from netprobe JSON, no duplicates.", group=history_app, needs_torch=False)
def import_(file: Annotated[str, typer.Argument(help="A JSON file that netprobe history export wrote (on any "
                                                     "machine).")],
            db: DbPath = None) -> None:
    """Merge runs exported on another machine; runs already here (the same uid) are skipped, so twice adds nothing."""
    from netprobe.history.transfer import import_runs, read_export

    docs = read_export(file)  # checked whole before the database is touched
    merged = None
    try:
        with open_db(db, create=True) as (conn, path):
            merged = import_runs(conn, docs, waiting=lambda: note(f"the results database {path} is locked by "
                                                                  "another process; waiting for it (up to 30 s)"))
        added, rows, present = merged
        note(f"imported {plural(added, 'run')} ({plural(rows, 'row')}) into {path}"
             + (f"; {present} already there" if present else ""))
    except KeyboardInterrupt:
        if merged is None:
            raise
        note(f"interrupted, after the import was committed: {plural(merged[0], 'run')} imported")
        raise typer.Exit(130) from None


DIFF_COLUMNS = [
    Column("name", "Row", justify="left", ident=True), Column("a_text", "A imgs/s"), Column("b_text", "B imgs/s"),
    Column("ratio_text", "B vs A"), Column("verdict", "Verdict", justify="left"),
]


@command("diff", "Two runs compared: speed ratio, interval, verdict.", group=history_app,
         needs_torch=False)
def diff(a: Annotated[str, typer.Argument(help="The first run (the baseline): its ID, or 6+ characters of its uid.")],
         b: Annotated[str, typer.Argument(help="The second run, compared with the first.")],
         fail_if_slower: Annotated[str | None, typer.Option("--fail-if-slower", help="Exit 1 when a row of B is "
                                                            "slower than A's by more than this (e.g. 5%: step times "
                                                            "5% longer), with 90% confidence.")] = None,
         db: DbPath = None, fmt: FormatOption = Format.table) -> None:
    """Rows of run B against the same rows of run A (spec, batch, size, mode, dtype, runtime): B's speed over
    A's with its 90% interval (bootstrap over both runs' step times) and a verdict."""
    from netprobe.history.diff import diff_runs, parse_percent
    from netprobe.history.query import find_run
    from netprobe.history.tables import run_document

    limit = parse_percent(fail_if_slower) if fail_if_slower is not None else None
    output = Output(fmt.value, ("rows",))
    with open_db(db) as (conn, _):
        ids = find_run(conn, a), find_run(conn, b)
        docs = [run_document(conn, i) for i in ids]
    found = diff_runs(*docs, fail_if_slower=limit)
    if not found.rows:
        from netprobe.errors import InputError

        raise InputError(f"runs {ids[0]} and {ids[1]} have no row measured alike (same spec, batch, size, mode, "
                         "dtype, runtime); netprobe history show ID lists each run's rows")
    output.show(diff_report(found, f"netprobe history diff: B = run {ids[1]} against A = run {ids[0]}"),
                {"a": ids[0], "b": ids[1], **found.to_dict()})
    output.finish()
    if found.failed:
        raise typer.Exit(1)


def _rate_text(rate: float | None) -> str | None:
    """imgs/s to one decimal, more below 10 (a busy CPU's 0.12 must not read 0.1)."""
    return None if rate is None else f"{rate:.{1 if rate >= 10 else 2 if rate >= 1 else 3}f}"


def diff_report(found, title: str) -> Report:
    """A diff as a table (one line per matched row) and the lines a reader needs under it."""
    from netprobe.history.diff import summary_lines
    from netprobe.intervals import WIDE, figure_text

    records = []
    for r in found.rows:
        records.append({"name": r.name, "verdict": r.verdict,
                        "a_text": _rate_text(r.a_imgs_per_s), "b_text": _rate_text(r.b_imgs_per_s),
                        "ratio_text": None if r.ratio is None else figure_text(r.ratio, r.ratio_ci90, 2, "×")})
    caption = ("B vs A: B's speed over A's (above 1: B is faster) ± half its 90% interval, by bootstrap over both "
               f"runs' timed steps; ? = wide: the interval reaches more than {WIDE:.0%} from the ratio · Verdict: "
               "faster or slower where the whole interval is above or below 1, else no difference at 90% confidence")
    return Report([TableBlock("rows", DIFF_COLUMNS, records, title, caption),
                   *[TextBlock(line, "yellow") for line in summary_lines(found)]])
