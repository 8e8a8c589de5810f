"""`netprobe compare`: variants trained side by side, with the paper's figures beside ours."""

from __future__ import annotations

from typing import Annotated

import typer

from netprobe.cli.app import command, interrupt_code, say_error
from netprobe.cli.options import MeasureOptions, ModelOptions, ParallelOptions, takes
from netprobe.cli.output import Output, note, note_aliases, progress_bar
from netprobe.cli.plots import write_compare_plot, write_roofline
from netprobe.cli.saving import ResultsDatabase, SaveOptions, record_run
from netprobe.defaults import BATCH_IMGSZ_BASE, BATCH_IMGSZ_GRID, FUSED_STAGES_BASE
from netprobe.errors import InputError, quote
from netprobe.intervals import figure_text
from netprobe.render import Column, Format, Report, TableBlock, TextBlock, fmt_float, fmt_mb, fmt_pct, fmt_si, plural

INTERVAL_TEXT = ("half the 90% interval, by bootstrap over every round's timed steps (a speed ratio: over both "
                 "rows' steps); ? = wide: the interval reaches more than 10% from the figure")


def _speed(value: object) -> str:
    return f"{float(value):.2f}×"  # type: ignore[arg-type]


def _signed_pct(value: object) -> str:
    return f"{100 * float(value):+.1f}%"  # type: ignore[arg-type]


COMPARE_COLUMNS = [
    Column("label", "Variant", justify="left", ident=True), Column("params", "Params", fmt_si),
    Column("macs_base", "MACs @base size", fmt_si), Column("macs", "MACs @run size", fmt_si),
    Column("status", "Status", justify="left", ident=True), Column("train_imgs_text", "Train imgs/s"),
    Column("spread", "min–max"), Column("speedup_text", "Speed vs first"),
    Column("tflops", "TFLOP/s", fmt_float(3)), Column("peak_fraction", "of peak", fmt_pct),
    Column("peak_mem_mb", "Peak MB", fmt_mb),
]
PAPER_COLUMNS = [
    Column("paper_params", "Paper params", lambda v: f"{v}M"), Column("dev_params", "Δ params", _signed_pct),
    Column("paper_macs", "Paper FLOPs (MACs)", lambda v: f"{v}B"), Column("dev_macs", "Δ MACs", _signed_pct),
    Column("paper_v100", "Paper V100 imgs/s"), Column("paper_tpu", "Paper TPUv3 imgs/s"),
    Column("paper_speedup", "Paper V100 speed", _speed),
]
RUNTIME_COMPARE_COLUMNS = [
    Column("label", "Variant", justify="left", ident=True), Column("runtime", "Runtime", justify="left", ident=True),
    Column("precision_text", "Precision", justify="left", ident=True),
    Column("params", "Params", fmt_si), Column("macs_base", "MACs @base size", fmt_si),
    Column("macs", "MACs @run size", fmt_si), Column("status", "Status", justify="left", ident=True),
    Column("infer_imgs_text", "Infer imgs/s"), Column("spread", "min–max"),
    Column("speedup_text", "Speed vs first"), Column("vs_torch_text", "vs torch"),
    Column("peak_mem_mb", "Peak MB", fmt_mb),
]
TABLE2_COLUMNS = [Column("paper_v100", "Paper V100 imgs/s (16 GB)")]
PAPER_TABLE2_COLUMNS = [
    Column("imgsz", "Train size", ident=True), Column("top1", "Top-1 %"), Column("tpu_b32", "TPUv3 b32"),
    Column("tpu_b128", "TPUv3 b128"), Column("v100_b12", "V100 b12"), Column("v100_b24", "V100 b24"),
]


def _compare_record(row) -> dict:
    rec = row.to_dict()
    rec["precision_text"] = row.precision + (f" → {row.precision_ran}" if row.precision_ran
                                             and row.precision_ran != row.precision else "")
    if row.imgs_per_s_min is not None:
        rec["spread"] = f"{row.imgs_per_s_min:.2f}–{row.imgs_per_s_max:.2f}"
    if row.status == "oom":
        rec["status"] = "OOM"
    rate = row.train_imgs_per_s if row.mode == "train" else row.infer_imgs_per_s
    if rate is not None:
        rec[f"{row.mode}_imgs_text"] = figure_text(rate, row.imgs_per_s_ci90, 2)
    for key in ("speedup", "vs_torch"):
        if rec.get(key) is not None:
            rec[f"{key}_text"] = figure_text(rec[key], rec[f"{key}_ci90"], 2, "×")
    from netprobe.render import of_peak_cell

    rec["peak_fraction"] = of_peak_cell(row.peak_fraction, row.roof_suspect)
    paper, dev = row.paper or {}, row.deviation or {}
    rec.update(paper_params=paper.get("params_m"), paper_macs=paper.get("macs_b"),
               paper_v100=("OOM" if paper.get("v100_oom") else paper.get("v100_imgs_per_s")),
               paper_tpu=paper.get("tpu_imgs_per_s"), dev_params=dev.get("params"), dev_macs=dev.get("macs"),
               paper_speedup=dev.get("paper_v100_speedup"))
    return rec


def _one(option: str, values: list, experiment: str) -> object:
    """The single value an option takes outside batch-imgsz; a list there is an error, not its first item."""
    if len(values) > 1:
        raise InputError(f"{option} {','.join(map(str, values))}: {experiment} takes one value; a comma list is "
                         "only for batch-imgsz (or run compare once per value)")
    return values[0] if values else None


@command("compare", "Train variants side by side, the paper beside.")
@takes(model=ModelOptions, measure=MeasureOptions, parallel=ParallelOptions, save=SaveOptions)
def compare(
    what: Annotated[list[str], typer.Argument(help="fused-stages, batch-imgsz, or models to put side by side "
                                                   "(any spec summary takes).")],
    base: Annotated[str | None, typer.Option(help="Base arch (fused-stages: efficientnet_b4; batch-imgsz: "
                                                  "efficientnet_b6).")] = None,
    rounds: Annotated[int | None, typer.Option(help="Interleaved rounds, A B C D, A B C D, ... (1-1,000).")]
    = None,
    fused_kernel: Annotated[str, typer.Option(help="Kernel of the fused stages: keep (each stage's own) or an "
                                                   "odd size such as 3.")] = "keep",
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    predict: Annotated[str | None, typer.Option(help="Predict on these GPUs (v100,a100 or all) instead of "
                                                     "measuring: see netprobe predict.")] = None,
    *, model: ModelOptions, measure: MeasureOptions, parallel: ParallelOptions, save: SaveOptions,
) -> None:
    """Train the variants side by side (interleaved rounds), with the paper's figures beside ours."""
    from netprobe import compare as comparing

    output = Output(fmt.value, ("rows", "breakdown", "roofline", "paper"), None, {"plot": (measure.plot, (".png",))})
    database = save.database("compare")
    experiment = what[0] if what[0] in comparing.EXPERIMENTS else "specs"
    _check_experiment_options(experiment, what, model, fused_kernel)
    if experiment == "specs" and len(what) == 1:
        _check_word(what[0])
    note_aliases([*what, base])
    dev = "cuda" if predict else measure.resolved_device()  # predicting: the GPU defaults (batch 24, own size)
    base_arch, settings, variants = _variants(experiment, what, base, dev, measure, model, rounds, fused_kernel)
    if predict:
        from netprobe.cli.predict import show_compare_predictions
        from netprobe.compare import predicted_rows

        show_compare_predictions(output, experiment, predicted_rows(variants, predict, measure.amp.value,
                                                                    measure.channels_last))
        return
    if measure.dry_run:
        from netprobe.cli.dryrun import show_plan

        return show_plan(output, [c for v in variants for c in v.configs(settings)], f"netprobe compare {experiment}",
                         settings.rounds)
    if parallel.nproc is not None:
        _compare_parallel(output, database, experiment, variants, settings, measure, parallel)
        return
    parallel.check_alone()
    if experiment != "specs" and base is None:
        table = "Table 2 (batch x image size)" if experiment == "batch-imgsz" else "Table 3 (fused stages)"
        note(f"no --base given: {base_arch}, the base of the EfficientNetV2 paper's {table}")
    from netprobe.cli.dryrun import warn_if_long

    warn_if_long([c for v in variants for c in v.configs(settings)], settings.rounds)
    run_compare(output, database, experiment, variants, settings, measure.plot)


def _check_experiment_options(experiment: str, what: list[str], model: ModelOptions, fused_kernel: str) -> None:
    if experiment != "specs" and len(what) > 1:
        raise InputError(f"{experiment} takes no models; use --base to choose the arch")
    if (model.scale or model.modules) and experiment != "specs":
        raise InputError(f"--scale and --modules are for detector YAML files given as models; {experiment} uses "
                         "--base")
    if model.weights is not None:
        raise InputError("--weights loads one state dict into one model; compare's variants are different models: "
                         "use bench --weights")
    if fused_kernel != "keep" and experiment != "fused-stages":
        raise InputError("--fused-kernel applies to fused-stages only")


def _variants(experiment: str, what: list[str], base: str | None, dev: str, measure: MeasureOptions,
              model: ModelOptions, rounds: int | None, fused_kernel: str) -> tuple:
    """The base arch, the settings and the variants to measure, every one checked as bench would before any work."""
    from netprobe import compare as comparing
    from netprobe.detect.builtin import cpu_friendly_size, cpu_size_note
    from netprobe.target import resolve

    grid = experiment == "batch-imgsz"
    one_batch = None if grid else _one("--batch", measure.batches, experiment)
    one_size = None if grid else _one("--imgsz", measure.sizes, experiment)
    base = base or (BATCH_IMGSZ_BASE if grid else FUSED_STAGES_BASE)
    base_size = resolve(base).imgsz or (224, 224)
    settings = comparing.default_settings(dev, base_size, one_batch, one_size, measure.iters, rounds,
                                          max_warmup_s=measure.max_warmup_s, amp=measure.amp.value,
                                          channels_last=measure.channels_last, breakdown=measure.breakdown,
                                          runtimes=tuple(measure.runtimes) if measure.runtime is not None else (),
                                          tf32=measure.tf32_mode, precisions=tuple(measure.precisions),
                                          calib=measure.calib)
    if experiment == "fused-stages":
        variants = comparing.fused_stage_variants(base, fused_kernel, settings.batch, settings.imgsz)
    elif grid:
        batches, sizes = BATCH_IMGSZ_GRID["cuda" if dev == "cuda" else "cpu"]
        variants = comparing.batch_imgsz_variants(base, measure.batches or batches, measure.sizes or sizes)
    else:
        targets = [resolve(w, None, model.scale, model.modules) for w in what]
        variants = comparing.spec_variants(targets, settings.batch, one_size, dev)
        if small := [t for t in targets if one_size is None and cpu_friendly_size(t, dev)]:
            note(cpu_size_note(small))
    from netprobe.runtimes import check_precisions

    check_precisions(measure.precisions, measure.runtimes if measure.runtime is not None else ["torch"], dev,
                     ["infer" if measure.runtime is not None else "train"])
    comparing.check_variants(variants, settings)
    return base, settings, variants


def _compare_parallel(output: Output, database: ResultsDatabase | None, experiment: str, variants: list, settings,
                      measure: MeasureOptions, parallel: ParallelOptions) -> None:
    from netprobe.cli.distributed import check_plans, run_all

    if measure.plot or measure.breakdown or measure.runtime:
        raise InputError("--plot, --breakdown and --runtime go with the single-device comparison; leave them "
                         "out with --nproc")
    options = parallel.dist_options()
    jobs = [(v.label, v.config(settings)) for v in variants]
    check_plans([c for _, c in jobs], options)
    run_all(output, database, jobs, options, f"netprobe compare {experiment} --nproc {parallel.nproc}",
            " Variants run one after another (not interleaved).")


def _check_word(word: str) -> None:
    """A single word that is no model: an experiment mistyped, or an unknown arch (its own message)."""
    from netprobe.compare import EXPERIMENTS
    from netprobe.errors import SpecError, closest
    from netprobe.target import resolve

    try:
        resolve(word)
    except SpecError as exc:
        close = closest(word, EXPERIMENTS, n=1)
        if close or ("_" not in word and ":" not in word and word.replace("-", "").isalpha()):
            hint = f"did you mean {close[0]}?" if close else f"use {' or '.join(EXPERIMENTS)}"
            raise InputError(f"unknown experiment {quote(word)}: {hint} Or give models to put side by side "
                             "('netprobe list' shows the archs)") from None
        raise exc from None


def run_compare(output: Output, database: ResultsDatabase | None, experiment: str, variants: list, settings,
                 plot: str | None) -> None:
    from netprobe.compare import Comparison

    comparison = Comparison(experiment, variants, settings)
    stopped = None
    with progress_bar() as progress:
        task = progress.add_task("compare", total=settings.rounds * len(variants))

        def step(label: str, r: int) -> None:
            progress.update(task, description=f"round {r + 1}/{settings.rounds}: {label}")

        try:
            for _ in comparison.rounds(step):
                progress.update(task, completed=comparison.finished * len(variants))
        except KeyboardInterrupt as exc:
            stopped = interrupt_code(exc)
    if not comparison.finished:
        note("nothing finished: interrupted before the first round ended")
        raise typer.Exit(stopped or 130)
    data = comparison.to_dict()
    rows = comparison.rows
    output.show(compare_report(experiment, rows, comparison.settings_line, data["note"],
                               (data.get("paper_table2") or {}).get("rows")), data)
    ok = True
    if plot and settings.breakdown:
        ok = write_roofline(output, [(r.label, r) for r in rows], plot, f"netprobe compare {experiment} --breakdown")
    elif plot:
        ok = write_compare_plot(output, rows, plot, comparison.settings_line)
    for r in rows:  # a variant that failed in every round, or a runtime that could not export, load or run it
        if r.failed_in or r.status.startswith("error"):
            where = f", --runtime {r.runtime}" if r.runtime != "torch" else ""
            say_error(f"{r.label}{where}: {r.status.removeprefix('error: ')}")
            ok = False
    ok = record_run(database, data) and ok
    if stopped is not None:
        note(f"interrupted: showing {plural(comparison.finished, 'finished round')}")
        output.finish(ok)
        raise typer.Exit(stopped)
    output.finish(ok)


def compare_report(experiment: str, rows: list, settings_line: str, busy: str | None = None,
                   table2: list[dict] | None = None) -> Report:
    records = [_compare_record(r) for r in rows]
    has_table3 = any(r.paper and "params_m" in r.paper for r in rows)
    has_table2 = any(r.paper and "v100_oom" in r.paper for r in rows)
    columns = COMPARE_COLUMNS + (PAPER_COLUMNS if has_table3 else []) + (TABLE2_COLUMNS if has_table2 else [])
    caption = ("MACs = multiply-accumulates per image (the paper's 'FLOPs'). Train imgs/s: median over rounds, ± "
               f"{INTERVAL_TEXT}.")
    if any(r.mode == "infer" for r in rows):  # runtimes: inference, and the paper's train speeds do not apply
        columns = RUNTIME_COMPARE_COLUMNS + (PAPER_COLUMNS[:4] if has_table3 else [])
        caption = ("MACs = multiply-accumulates per image (the paper's 'FLOPs'). Infer imgs/s: median over rounds, "
                   "the same input in every runtime. Speed vs first: against the first variant in the same "
                   f"runtime and precision; vs torch: against the same variant in eager torch. ±: {INTERVAL_TEXT}.")
    losses = sorted({r.loss for r in rows if r.loss})
    if any(loss.startswith("surrogate") for loss in losses):
        caption += (f" Train loss: {'; '.join(losses)} (a stand-in: no label assignment or real detection loss is "
                    "timed).")
    if has_table3 or has_table2:
        caption += (" Paper columns: EfficientNetV2 paper (arXiv:2104.00298) " + ("Table 3" if has_table3 else
                    "Table 2") + ", published figures, not measured here"
                    + (" (its speeds are of training, so not shown beside inference)." if rows[0].mode == "infer"
                       else "."))
    from netprobe.cli.explain import explain_blocks
    from netprobe.compare import TABLE2_SOURCE, paper_kernel_hint

    hint = paper_kernel_hint(rows) if has_table3 else None
    return Report([TextBlock(f"Settings: {settings_line}."),
                   TableBlock("rows", columns, records, f"netprobe compare {experiment}", caption),
                   *([TextBlock(hint)] if hint else []),
                   *([TableBlock("paper", PAPER_TABLE2_COLUMNS, table2, TABLE2_SOURCE,
                                 "imgs/s per TPUv3 core and per 16 GB V100 at the batches named; OOM: out of memory "
                                 "in the paper. The paper's own sizes and batches: compare them with a run at those "
                                 "(--imgsz 380,512 --batch 12,24 on a GPU).")] if table2 else []),
                   *([TextBlock(busy, "yellow")] if busy else []),
                   *explain_blocks([(r.label + (f" ({r.runtime} {r.precision})" if r.mode == "infer" else ""), r)
                                     for r in rows])])
