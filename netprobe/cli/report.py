"""`netprobe report`: the recorded runs across machines — tables on stdout in any format, and with
`--html` one self-contained page with the charts."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from netprobe.cli.app import command
from netprobe.cli.history import DbPath, RunFilters, leave_out_damaged, open_db, say_damaged
from netprobe.cli.options import takes
from netprobe.cli.output import Output, note
from netprobe.render import Format

SECTIONS = ("fused_stages", "speeds", "machines", "runs")


@command("report", "Recorded runs across machines: HTML, markdown.", needs_torch=False)
@takes(chosen_by=RunFilters)
def report(
    runs: Annotated[list[str] | None, typer.Argument(help="Runs to report on (IDs, or 6+ characters of uids); "
                                                          "default: every run the filters select.")] = None,
    html: Annotated[str | None, typer.Option("--html", help="Write the report as one self-contained HTML page "
                                                            "(tables and charts inline, nothing fetched).")] = None,
    db: DbPath = None,
    fmt: Annotated[Format | None, typer.Option("--format", "-f", help="Print the tables: table, json, csv (see "
                                                                       "--section) or markdown (default: table, "
                                                                       "or nothing with --html).")] = None,
    section: Annotated[str | None, typer.Option(help=f"The table --format csv prints: {', '.join(SECTIONS)}.")]
    = None,
    *, chosen_by: RunFilters,
) -> None:
    """The fused-stages table across machines (paper figures beside), speed against MACs for every spec,
    rooflines and time by op kind, and each machine's fingerprint, from the recorded runs."""
    from netprobe.errors import InputError
    from netprobe.history.page import html_page
    from netprobe.history.query import find_run
    from netprobe.history.record import utc_text
    from netprobe.history.report import build_whole
    from netprobe.version import NETPROBE_VERSION

    output = Output((fmt or Format.table).value, SECTIONS, section, {"html": (html, (".html", ".htm"))})
    chosen = chosen_by.query(runs)
    with open_db(db) as (conn, path):
        for ident in runs or []:
            find_run(conn, ident)  # a run asked for by name must exist
        whole = leave_out_damaged(conn, chosen, "report", rows=False)  # the rows the report reads: as it reads
        cross, damaged = build_whole(conn, chosen)
    say_damaged(damaged, "report")
    whole = whole and not damaged
    if not cross.data["runs"]:
        raise InputError("no recorded run matches" + ("" if whole else " but the damaged ones above") + "; netprobe "
                         "history lists the runs (and --db picks another database)")
    printed = fmt is not None or html is None
    if printed:
        output.show(cross.report, cross.data)
    ok = True
    if html is not None:
        meta = [f"{path} · generated {utc_text(time.time())} by netprobe {NETPROBE_VERSION}",
                "Every figure was measured by netprobe on the machine named, except the columns marked paper."]
        ok = output.write(html, html_page(cross, meta), "report", printed)
        if ok:
            note(f"report written to {html}")
    output.finish(ok and whole)
