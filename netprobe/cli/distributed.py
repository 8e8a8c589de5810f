"""`bench --nproc N` and `compare … --nproc N`: the train step data-parallel on torch.distributed."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from netprobe import defaults
from netprobe.cli.app import interrupt_code
from netprobe.cli.output import Output, note, progress_bar
from netprobe.cli.saving import ResultsDatabase, record_run
from netprobe.errors import InputError
from netprobe.intervals import figure_text
from netprobe.render import Column, Report, TableBlock, TextBlock, fmt_float, fmt_mb, fmt_pct, plural

DIST_COLUMNS = [
    Column("label", "Model", justify="left", ident=True), Column("ranks", "Ranks", justify="left", ident=True),
    Column("batch_per_rank", "Batch/rank"), Column("global_batch", "Global batch"),
    Column("status_text", "Status", justify="left", ident=True), Column("imgs_text", "imgs/s (global)"),
    Column("step_ms", "Step ms", fmt_float(1)), Column("step_p90_ms", "p90 ms", fmt_float(1)),
    Column("scaling_efficiency", "Scaling eff.", fmt_pct), Column("grad_mb", "Grad MB", fmt_float(1)),
    Column("allreduce_ms", "All-reduce ms", fmt_float(1)), Column("allreduce_share", "of step", fmt_pct),
    Column("bus_gb_s", "Bus GB/s", fmt_float(2)), Column("comm_exposed_ms", "Exposed ms", fmt_float(1)),
    Column("peak_mem_mb", "Peak MB/rank", fmt_mb),
]
CAPTION = ("Per step, the slowest rank's time; imgs/s ± half its 90% interval (bootstrap over those steps; ? = "
           "wide). Scaling eff. = imgs/s ÷ (ranks × imgs/s of 1 rank without DDP). "
           "All-reduce: timed by a DDP communication hook on the rank that joined last (the all-reduce itself); "
           "of step: its share of the step (it overlaps the backward). Exposed = step − the same step under "
           "no_sync(), timed in alternation: what the all-reduce adds. Grad MB: gradient bytes all-reduced per "
           "step (MB = 2^20 bytes). Bus GB/s = 2(N−1)/N × bytes ÷ all-reduce time.")


@dataclass
class DistOptions:
    """The data-parallel options of bench and compare, checked before any rank starts."""

    nproc: int
    world_sizes: list[int] | None = None
    global_batch: int | None = None
    bucket_mb: float = defaults.BUCKET_MB
    sync_bn: bool = False
    port: int | None = None
    timeout_s: float = defaults.DIST_TIMEOUT_S


def check_plans(configs: list, options: DistOptions) -> None:
    """Every rank count, batch split, port and model checked up front (one line, exit 2)."""
    from netprobe.distributed import in_external_job, plan_scaling

    for config in configs:
        plan_scaling(config, options.nproc, options.world_sizes, options.bucket_mb, options.sync_bn,
                     options.global_batch, options.port, options.timeout_s, check_machine=not in_external_job())


def run_all(output: Output, database: ResultsDatabase | None, jobs: list[tuple[str, object]], options: DistOptions,
            title: str, extra: str = "", out: str | None = None) -> None:
    """Measure each (label, BenchConfig) data-parallel, one after another, and report every row finished."""
    from netprobe.distributed import DistError, in_external_job, run_scaling

    done: list[tuple[str, object]] = []
    stopped, failure = None, None
    external = in_external_job()
    with progress_bar() as progress:
        task = progress.add_task("ranks", total=None)
        try:
            for label, config in jobs:
                progress.update(task, description=f"{label}: {options.nproc} ranks")
                rows = run_scaling(config, options.nproc, options.world_sizes, options.bucket_mb, options.sync_bn,
                                   options.global_batch, lambda row, label=label: done.append((label, row)),
                                   port=options.port, timeout_s=options.timeout_s,
                                   on_step=lambda: progress.advance(task))
                if rows is None:  # a rank other than 0 of an external job: rank 0 reports
                    return
        except DistError as exc:
            failure = exc
        except KeyboardInterrupt as exc:
            stopped = interrupt_code(exc)
    ok = True
    if done:
        report = dist_report(done, title, extra + (" Joined an external torchrun job." if external else ""))
        data = {"rows": [{"label": label, **row.to_dict()} for label, row in done]}
        output.show(report, data)
        if out:
            from netprobe.render import to_csv, to_json

            ok = output.write(out, to_json(data) if out.lower().endswith(".json") else
                              to_csv([Column(k, k) for k in data["rows"][0]], data["rows"]))
        ok = record_run(database, data) and ok
    if failure is not None:
        raise InputError(str(failure))
    if stopped is not None:
        note(f"interrupted: {plural(len(done), 'row')} finished")
        raise typer.Exit(stopped)
    output.finish(ok)


def dist_report(done: list, title: str, extra: str) -> Report:
    records = []
    for label, row in done:
        rec = row.to_dict()
        rec.update(label=label, ranks=f"{row.world_size}" + (" (DDP)" if row.ddp else " (no DDP)"),
                   status_text=row.status if row.status == "ok" else f"{row.status}: {row.error}",
                   imgs_text=None if row.imgs_per_s is None else figure_text(row.imgs_per_s, row.imgs_per_s_ci90, 2))
        records.append(rec)
    first = done[0][1]
    bucket = next((r.bucket_mb for _, r in done if r.bucket_mb), defaults.BUCKET_MB)  # the no-DDP row has none
    settings = (f"{first.device}, backend {first.backend if first.ddp else done[-1][1].backend}, "
                f"{plural(first.threads_per_rank or 1, 'thread')} per rank, {first.dtype}, "
                f"{plural(first.iters, 'timed step')}, bucket {bucket:g} MB.")
    return Report([TableBlock("rows", DIST_COLUMNS, records, title, CAPTION),
                   TextBlock(f"Settings: {settings}{extra}")])
