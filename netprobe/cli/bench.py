"""`netprobe bench`: time forward, backward and optimizer steps of any model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from netprobe.cli.app import command, interrupt_code, say_error
from netprobe.cli.dryrun import show_plan, warn_if_long
from netprobe.cli.options import (
    DEFAULT_MODEL_NOTE,
    DeviceChoice,
    InChansOption,
    MeasureOptions,
    ModeChoice,
    ModelOptions,
    OptimizerChoice,
    ParallelOptions,
    check_in_chans,
    check_threads,
    takes,
)
from netprobe.cli.output import Output, note, note_aliases, progress_bar
from netprobe.cli.plots import write_roofline
from netprobe.cli.saving import ResultsDatabase, SaveOptions, record_run
from netprobe.defaults import BATCH, DEFAULT_MODEL, ITERS, LIMITS, WARMUP_STEPS
from netprobe.errors import InputError, check_range
from netprobe.intervals import INTERVAL_NOTE, figure_text
from netprobe.render import Column, Format, Report, TableBlock, TextBlock, fmt_float, fmt_mb, fmt_pct, fmt_si, plural
from netprobe.sizes import size_text


def _bench_record(result) -> dict:
    rec = result.to_dict()
    if result.step_p10_ms is not None:
        rec["spread"] = f"{result.step_p10_ms:.1f}–{result.step_p90_ms:.1f}"
        rec["steps"] = f"{result.warmup_steps}+{result.iters}" + ("!" if result.warmup_capped else "")
    if result.status not in ("ok", "drift"):  # drift: said in full under the table
        rec["status"] = result.status.upper() if result.status == "oom" else f"{result.status}: {result.error}"
    rec["runtime_text"] = f"{result.runtime} {result.runtime_version}".strip()
    if result.imgs_per_s is not None:
        rec["imgs_text"] = figure_text(result.imgs_per_s, result.imgs_per_s_ci90)
    if result.vs_torch is not None:
        rec["vs_torch_text"] = figure_text(result.vs_torch, result.vs_torch_ci90, 2, "×")
    from netprobe.render import of_peak_cell

    rec["peak_fraction"] = of_peak_cell(result.peak_fraction, result.roof_suspect)
    rec["precision_text"] = result.precision + (f" → {result.precision_ran}" if result.precision_ran
                                                 and result.precision_ran != result.precision else "")
    if result.total_layers:
        rec["layers_text"] = f"{result.quantized_layers}/{result.total_layers}"
    if result.head_agreement:
        rec["head_text"] = lowest_head(result.head_agreement)
    return rec


def lowest_head(agreement: dict[str, float | None]) -> str:
    """The head whose candidates agree least, as 'P4 93%' ('-': no head had a candidate)."""
    known = {name: v for name, v in agreement.items() if v is not None}
    if not known:
        return "-"
    name = min(known, key=known.__getitem__)
    return f"{name} {known[name]:.0%}"


BENCH_COLUMNS = [
    Column("spec", "Spec", justify="left", ident=True), Column("batch", "Batch", ident=True),
    Column("imgsz", "Size", ident=True), Column("mode", "Mode", justify="left", ident=True),
    Column("dtype", "dtype", justify="left"), Column("status", "Status", justify="left", ident=True),
    Column("imgs_text", "imgs/s"), Column("step_ms", "Step ms", fmt_float(1)),
    Column("spread", "p10–p90 ms"), Column("steps", "Warm-up+timed"), Column("fwd_ms", "Fwd ms", fmt_float(1)),
    Column("bwd_ms", "Bwd ms", fmt_float(1)), Column("opt_ms", "Opt ms", fmt_float(1)),
    Column("peak_mem_mb", "Peak MB", fmt_mb), Column("tflops", "TFLOP/s", fmt_float(3)),
    Column("peak_fraction", "of peak", fmt_pct),
]
STAGE_TIME_COLUMNS = [
    Column("config", "Config", justify="left", ident=True), Column("name", "Stage", justify="left", ident=True),
    Column("in_shape", "Input C×H×W", lambda v: "×".join(map(str, v))),  # type: ignore[arg-type]
    Column("fwd_ms", "Fwd ms", fmt_float(1)), Column("bwd_ms", "Bwd ms", fmt_float(1)),
    Column("macs", "MACs", fmt_si), Column("fwd_gflops", "Fwd GFLOP/s", fmt_float(1)),
    Column("bwd_macs", "Bwd MACs", fmt_si), Column("bwd_gflops", "Bwd GFLOP/s", fmt_float(1)),
]
BENCH_RESULT_CSV = [Column(k, k) for k in (
    "spec", "device", "dtype", "batch", "imgsz", "mode", "status", "imgs_per_s", "fwd_ms", "bwd_ms", "opt_ms",
    "step_ms", "step_p10_ms", "step_p90_ms", "peak_mem_mb", "peak_reserved_mb", "mem_kind", "tflops", "peak_tflops",
    "roof_dtype", "roof_suspect", "peak_fraction", "compile_s", "compile_note", "macs_per_img", "params",
    "channels_last", "compiled", "optimizer", "iters", "warmup_steps",
    "steady", "loss", "error", "runtime", "runtime_version", "provider", "threads", "export_s", "first_run_s",
    "file_mb", "max_abs_err", "max_rel_err", "parity_ok", "vs_torch", "precision", "precision_ran", "quantize_s",
    "cosine_min", "top1_agreement", "quantized_layers", "total_layers", "vs_fp32", "calibration")]
RUNTIME_COLUMNS = [
    Column("spec", "Spec", justify="left", ident=True), Column("batch", "Batch", ident=True),
    Column("imgsz", "Size", ident=True), Column("runtime_text", "Runtime", justify="left", ident=True),
    Column("provider", "Provider", justify="left"), Column("threads", "Threads"),
    Column("status", "Status", justify="left", ident=True), Column("step_ms", "p50 ms", fmt_float(2)),
    Column("step_p90_ms", "p90 ms", fmt_float(2)), Column("imgs_text", "imgs/s"),
    Column("vs_torch_text", "vs torch"), Column("steps", "Warm-up+timed"),
    Column("file_mb", "File MB", fmt_float(1)), Column("export_s", "Export s", fmt_float(2)),
    Column("first_run_s", "First run s", fmt_float(2)), Column("peak_mem_mb", "Peak MB", fmt_mb),
    Column("max_abs_err", "Max abs err", lambda v: f"{float(v):.1e}"),
    Column("max_rel_err", "Max rel err", lambda v: f"{float(v):.1e}"),
]
PRECISION_COLUMNS = [  # where a row runs another precision than fp32
    Column("precision_text", "Precision", justify="left", ident=True),
    Column("vs_fp32", "vs fp32", lambda v: f"{float(v):.2f}×"), Column("quantize_s", "Quant s", fmt_float(1)),
    Column("cosine_min", "Cos min", lambda v: f"{float(v):.4f}"),
    Column("top1_agreement", "Top-1 agree", fmt_pct), Column("head_text", "Head agree"),
    Column("layers_text", "Low-prec layers"),
]
SECTIONS = ("results", "stages", "breakdown", "roofline")


@dataclass
class BaselineOptions:
    """bench against a recorded run: the diff after the table, and the exit code a CI job reads."""

    baseline: Annotated[str | None, typer.Option(help="After measuring, compare with this recorded run (its ID in "
                                                      "netprobe history), as netprobe history diff does.")] = None
    fail_if_slower: Annotated[str | None, typer.Option("--fail-if-slower", help="With --baseline: exit 1 when a row "
                                                       "is slower by more than this (e.g. 5%), with 90% confidence.")] \
        = None


@command("bench", "Time train or inference steps: phases, memory.")
@takes(model=ModelOptions, measure=MeasureOptions, parallel=ParallelOptions, save=SaveOptions,
       against=BaselineOptions)
def bench(
    specs: Annotated[list[str] | None, typer.Argument(help="Models to measure (any spec summary takes); default "
                                                           "efficientnetv2_s.")] = None,
    mode: Annotated[ModeChoice | None, typer.Option(help="train step, inference, or both (default: train; with "
                                                          "a --runtime other than torch, infer).")] = None,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile; compile time reported apart.")]
    = False,
    optimizer: Annotated[OptimizerChoice, typer.Option(help="Optimizer of the train step.")] = OptimizerChoice.sgd,
    warmup: Annotated[int, typer.Option(help="Untimed steps first, at least (0-10,000); warm-up also lasts until "
                                             "step times are steady.")] = WARMUP_STEPS,
    threads: Annotated[int | None, typer.Option(help="CPU threads (torch.set_num_threads), at most the cores.")]
    = None,
    in_chans: InChansOption = None,
    per_stage: Annotated[bool, typer.Option("--per-stage", help="Time of each stage alone (forward, and backward "
                                                                "when training).")] = False,
    find_max_batch: Annotated[bool, typer.Option("--find-max-batch", help="Search the largest batch that fits "
                                                                          "(CUDA).")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format (csv: see --section).")]
    = Format.table,
    section: Annotated[str | None, typer.Option(help=f"The table --format csv prints: {', '.join(SECTIONS)}.")]
    = None,
    out: Annotated[str | None, typer.Option(help="Also write the results to FILE (.json or .csv), atomically.")]
    = None,
    keep_exports: Annotated[str | None, typer.Option("--keep-exports", help="Keep the exported files in this "
                                                                            "folder.")] = None,
    *, model: ModelOptions, measure: MeasureOptions, parallel: ParallelOptions, save: SaveOptions,
    against: BaselineOptions,
) -> None:
    """Time forward, backward and optimizer steps; memory, achieved TFLOP/s, OOM as a result."""
    output = Output(fmt.value, SECTIONS, section, {"out": (out, (".json", ".csv")), "plot": (measure.plot, (".png",))})
    database = save.database("bench")
    _check_own_options(measure, warmup, in_chans, threads)
    dev = measure.resolved_device()
    configs = _configs(specs, model, measure, dev, mode, in_chans, warmup=warmup, compile=compile_model,
                       optimizer=optimizer.value, per_stage=per_stage, keep_exports=keep_exports)
    reference = _baseline(against.baseline, against.fail_if_slower, configs, save.db,
                          parallel.nproc is not None or find_max_batch)
    if measure.dry_run:
        return show_plan(output, configs, "netprobe bench")
    if parallel.nproc is not None:
        _bench_parallel(output, database, configs, measure, parallel, out)
        return
    parallel.check_alone()
    if find_max_batch and dev != "cuda":
        raise InputError("--find-max-batch needs --device cuda: on the CPU, memory is shared with the system and "
                         "swaps rather than failing cleanly")
    _say_what_runs(specs, measure, dev, [] if find_max_batch else configs)
    from netprobe.bench import BenchRun

    session, stopped = measure_all(BenchRun(dev), configs, find_max_batch)
    failed = bool(session.results) and _report(output, database, session, out, measure.plot, reference)
    if not session.results:
        note("nothing finished: interrupted before the first configuration was measured")
    if stopped is not None:
        note(f"interrupted: {len(session.results)} of {plural(len(configs), 'configuration')} finished")
        raise typer.Exit(stopped)
    if failed:
        raise typer.Exit(1)  # slower than --baseline by more than --fail-if-slower


def _baseline(run: str | None, fail_if_slower: str | None, configs: list, db: str | None, other: bool) -> dict | None:
    """--baseline's run, checked before measuring (it exists and has a row like a planned one), with the
    --fail-if-slower fraction; None without --baseline."""
    if run is None:
        if fail_if_slower is not None:
            raise InputError("--fail-if-slower compares with a --baseline run; add --baseline ID")
        return None
    if other:
        raise InputError("--baseline compares bench's rows with a recorded run's; leave out --nproc and "
                         "--find-max-batch")
    from pathlib import Path

    from netprobe.bench import planned_result
    from netprobe.cli.saving import canonical_spec
    from netprobe.history.diff import check_matches, load_run, parse_percent
    from netprobe.history.store import default_path

    limit = parse_percent(fail_if_slower) if fail_if_slower is not None else None
    doc = load_run(Path(db).expanduser() if db is not None else default_path(), run)
    planned = [planned_result(c) for c in configs]
    check_matches(doc, [{"spec": r.spec, "canonical": canonical_spec(r.spec), "data": r.to_dict()} for r in planned],
                  run)
    return {"run": run, "doc": doc, "fail_if_slower": limit}


def _check_own_options(measure: MeasureOptions, warmup: int, in_chans: int | None, threads: int | None) -> None:
    if measure.plot and not measure.breakdown:
        raise InputError("--plot draws the roofline that --breakdown measures; add --breakdown")
    check_range("--warmup", warmup, *LIMITS["warmup"])
    check_in_chans(in_chans)
    check_threads(threads)


def _say_what_runs(specs: list[str] | None, measure: MeasureOptions, dev: str, configs: list) -> None:
    """What the command chose where the user did not say (the model, eager torch beside runtimes, the device),
    and a run of `configs` expected to take over ten minutes."""

    if not specs:
        note(DEFAULT_MODEL_NOTE)
    if measure.deployed and measure.torch_added:
        note("eager torch is measured too: the reference for every runtime's speed and outputs")
    if measure.device is DeviceChoice.auto:
        note(f"device: auto → {dev}" + ("" if dev == "cuda" else " (no CUDA available)"))
    if configs:
        warn_if_long(configs)


def _configs(specs: list[str] | None, model: ModelOptions, measure: MeasureOptions, dev: str, mode: ModeChoice | None,
             in_chans: int | None, keep_exports: str | None, **options) -> list:
    """Every configuration the command line asks for, each checked (one line, exit 2) before any is measured."""
    modes = ["train", "infer"] if mode is ModeChoice.both else [mode.value if mode else
                                                                 "infer" if measure.deployed else "train"]
    from netprobe.bench import cpu_friendly, grid, validate
    from netprobe.runtimes import check_precisions, check_runtimes
    from netprobe.target import resolve

    check_runtimes(measure.runtimes, dev, modes)
    check_precisions(measure.precisions, measure.runtimes, dev, modes)
    if keep_exports is not None and not measure.deployed:
        raise InputError("--keep-exports keeps the files a --runtime other than torch exports; add --runtime")
    targets = [resolve(s, in_chans, model.scale, model.modules) for s in specs or [DEFAULT_MODEL]]
    note_aliases(specs or [])
    configs = grid(targets, measure.batches or [BATCH], measure.sizes or [None], modes, measure.runtimes,
                   measure.precisions, calib=measure.calib, weights=model.weights, keep_exports=keep_exports,
                   device=dev, amp=measure.amp.value, channels_last=measure.channels_last,
                   iters=ITERS if measure.iters is None else measure.iters, in_chans=in_chans,
                   breakdown=measure.breakdown, max_warmup_s=measure.max_warmup_s, tf32=measure.tf32_mode, **options)
    configs, small = cpu_friendly(configs)
    if small:
        from netprobe.detect.builtin import cpu_size_note

        note(cpu_size_note(small))
    for config in configs:
        validate(config)
    return configs


def _bench_parallel(output: Output, database: ResultsDatabase | None, configs: list, measure: MeasureOptions,
                    parallel: ParallelOptions, out: str | None) -> None:
    from netprobe.cli.distributed import check_plans, run_all

    if measure.deployed:
        raise InputError("--nproc measures data-parallel training in eager torch; leave --runtime out")
    options = parallel.dist_options()
    check_plans(configs, options)
    run_all(output, database, [(getattr(c.spec, "label", str(c.spec)), c) for c in configs], options,
            f"netprobe bench --nproc {parallel.nproc}", out=out)


def measure_all(session, configs: list, find_max: bool) -> tuple[object, int | None]:
    """Measure every configuration (or search each one's largest batch); an interrupt keeps what finished."""
    with progress_bar() as progress:
        task = progress.add_task("bench", total=len(configs) * (1 if find_max else configs[0].warmup
                                                                 + configs[0].iters + 1))
        try:
            for config in configs:
                name = getattr(config.spec, "label", config.spec)
                size = "" if config.imgsz is None else size_text(config.imgsz)
                label = f"{name} b{config.batch} {size} {config.mode}"
                progress.update(task, description=label)

                def status(text: str, label: str = label) -> None:
                    progress.update(task, description=f"{label}: {text}")

                for _ in session.measure([config], lambda: progress.advance(task), find_max, status):
                    pass
                if find_max:
                    progress.advance(task)
        except KeyboardInterrupt as exc:
            return session, interrupt_code(exc)
    return session, None


def _report(output: Output, database: ResultsDatabase | None, session, out: str | None, plot: str | None = None,
            reference: dict | None = None) -> bool:
    """Show and write the results and record the run; True where a row is slower than --baseline allows."""
    from netprobe.render import to_csv, to_json

    data = session.to_dict()
    results = session.results
    report = bench_report(results, data["device"], data["note"] or "")
    if reference is not None:
        data["baseline"] = _against_baseline(report, data, reference)
    output.show(report, data)
    ok = True
    if out:
        text = to_json(data) if out.lower().endswith(".json") else to_csv(BENCH_RESULT_CSV, data["results"])
        ok = output.write(out, text)
    if plot:
        ok = write_roofline(output, [(_config_label(r), r) for r in results], plot, "netprobe bench --breakdown") and ok
    for r in results:
        if r.failed_in or r.status == "error":  # one line naming what failed; the exit says it too (2)
            precision = f" --precision {r.precision}" if r.precision != "fp32" else ""
            where = f", --runtime {r.runtime}{precision}" if r.runtime != "torch" else f" {r.mode}"
            say_error(f"{r.spec} b{r.batch} {r.imgsz}px{where}: {r.error}")
            ok = False
    ok = record_run(database, data) and ok
    output.finish(ok)
    return bool(data.get("baseline", {}).get("failed"))


def _against_baseline(report: Report, data: dict, reference: dict) -> dict:
    """This run's rows against --baseline's (B = this run): the diff's blocks added to `report`, its JSON returned."""
    from netprobe.cli.history import diff_report
    from netprobe.cli.saving import canonical_spec
    from netprobe.history.diff import diff_runs
    from netprobe.history.record import run_document

    found = diff_runs(reference["doc"], run_document(data, [], "bench", canonical=canonical_spec),
                      reference["fail_if_slower"])
    report.blocks += diff_report(found, f"Against --baseline run {reference['run']} (A; this run is B)").blocks
    return {"run": reference["run"], **found.to_dict()}


def _config_label(r) -> str:
    return f"{r.spec} b{r.batch} {r.imgsz}px {r.dtype} {r.mode}" + (f" {r.runtime}" if r.runtime != "torch" else "")


def bench_report(results: list, info: dict, busy: str) -> Report:
    records = [_bench_record(r) for r in results]
    mem = next((r.mem_kind for r in results if r.mem_kind), "")
    peaks = {r.roof_dtype or r.dtype: f"{r.peak_tflops:.2f} TFLOP/s" + (" (suspect: measured during a stall)"
                                                                         if r.roof_suspect else "")
             for r in results if r.peak_tflops}
    losses = sorted({r.loss for r in results if r.loss})
    caption = (f"{info['name']} · torch {info['torch']} · {plural(info['threads'], 'thread')} · peak (dense "
               "matmul, best measured so far in this run): "
               + ", ".join(f"{k} {v}" for k, v in peaks.items())
               + (" (tf32: fp32 whose convolutions cuDNN ran in TF32, the roof measured so too)" if "tf32" in peaks
                  else "")
               + f" · Peak MB: {mem} · TFLOP/s counts 2 FLOPs per MAC of the step as counted (backward op by op)"
               + f" · imgs/s: {INTERVAL_NOTE}"
               + " · Warm-up+timed: untimed steps until step times settled (! = stopped at --max-warmup-s), then "
               "the timed ones"
               + (f" · train loss: {'; '.join(losses)}" if losses else "")
               + (" (a stand-in: no label assignment or real detection loss is timed)"
                  if any(r.loss.startswith("surrogate") for r in results) else ""))
    columns = BENCH_COLUMNS + ([Column("compile_s", "Compile s", fmt_float(1))]
                               if any(r.compiled for r in results) else [])
    if any(r.peak_reserved_mb is not None for r in results):
        columns = [*columns, Column("peak_reserved_mb", "Reserved MB", fmt_mb)]
    if any(r.runtime != "torch" for r in results):
        columns, caption = RUNTIME_COLUMNS, runtime_caption(results, info)
        if any(r.precision != "fp32" for r in results):
            extra = [c for c in PRECISION_COLUMNS[1:] if c.key != "head_text" or any(r.head_agreement for r in results)]
            columns = columns[:4] + PRECISION_COLUMNS[:1] + columns[4:11] + extra + columns[11:]
    report = Report([TableBlock("results", columns, records, "netprobe bench", caption)])
    ran = [f"{r.spec} b{r.batch} {r.runtime} {r.precision}: {r.layers_ran}"
           + (f" ({r.calibration})" if r.calibration else "") + _heads_note(r)
           + (f"; drift: {r.error}" if r.status == "drift" else "")
           for r in results if r.layers_ran and r.runtime != "torch"]
    if ran:
        report.add(TextBlock("What ran, as each runtime reports it: " + "; ".join(ran) + "."))
    stage_recs = [{**s.__dict__, "config": f"{r.spec} b{r.batch} {r.imgsz}px {r.dtype} {r.mode}"}
                  for r in results for s in r.stages]
    if stage_recs:
        report.add(TableBlock("stages", STAGE_TIME_COLUMNS, stage_recs, "Per stage, each stage alone",
                              "Bwd GFLOP/s: 2 × the stage's backward MACs as counted op by op in the train "
                              "step (grad inputs and grad weights) ÷ Bwd ms; alone, the first stage also "
                              "computes its input's gradient, which the step does not"))
    for line in cuda_notes(results):
        report.add(TextBlock(line))
    if busy:
        report.add(TextBlock(busy, "yellow"))
    from netprobe.cli.explain import explain_blocks

    for block in explain_blocks([(_config_label(r), r) for r in results]):
        report.add(block)
    return report


def _heads_note(result) -> str:
    if not result.head_agreement:
        return ""
    from netprobe.runtimes.drift import heads_text

    counts = ", ".join(f"{n} {c}" for n, c in (result.head_candidates or {}).items())
    return f"; head agreement {heads_text(result.head_agreement)} (candidates {counts})"


def cuda_notes(results: list) -> list[str]:
    """What the CUDA paths need said under the table: fp16's synchronising optimizer phase, peak memory from
    the second step on, a --compile that ran eager."""
    lines = []
    if any(r.device == "cuda" and r.dtype == "fp16" and r.mode == "train" and r.status == "ok" for r in results):
        lines.append("Opt ms with fp16: GradScaler.step reads whether the gradients hold inf/NaN, a synchronize "
                     "inside the optimizer phase, so Opt ms also holds the launch of the optimizer's kernels after it")
    if any(r.peak_reserved_mb is not None for r in results):
        lines.append("Peak MB and Reserved MB (CUDA): the caching allocator's peak allocated and reserved memory from "
                     "the second step on (the first step's autotuning workspaces left out)")
    lines += [f"{r.spec} b{r.batch} {r.imgsz}px --compile: {r.compile_note}" for r in results
              if r.compile_note.startswith("ran eager")]
    return lines


def _head_caption(minimum: float, threshold: float) -> str:
    return (f"· Head agree: detectors, the lowest head's (all in the notes and json head_agreement): of the anchors "
            f"either model keeps before NMS (confidence, best class score x objectness where the head has one, >= "
            f"{threshold:g}), the share both keep with the same class; meaningful only with --weights (trained) and "
            f"--calib DIR (real images), and only then under {minimum:g} the row says drift: untrained scores sit "
            "at the head's prior, where no anchor passes (-), or near-uniform, where the class is a coin toss ")


def runtime_caption(results: list, info: dict) -> str:
    """What a table of runtimes needs said: the machine and threads, how each runtime got its model, how
    the outputs were checked and what the columns mean."""
    from netprobe.runtimes import PARITY_TOLERANCE
    from netprobe.runtimes.drift import DRIFT_COSINE, HEAD_AGREEMENT_MIN, SCORE_THRESHOLD, TOP1_AGREEMENT_MIN

    exporters = {f"{r.runtime} {r.precision}": r.exporter for r in results if r.exporter and r.runtime != "torch"}
    mem = next((r.mem_kind for r in results if r.mem_kind), "")
    weights = next((r.weights for r in results if r.weights), "")
    return (f"{info['name']} · {plural(info['threads'], 'intra-op thread')} for every runtime · inference, "
            "same input, same warm-up rule (until steady) · "
            + (f"weights: {weights} · " if weights else "weights: as initialised (untrained) · ")
            + " · ".join(f"{name}: {how}" for name, how in exporters.items())
            + " · Max abs/rel err: each runtime's outputs against eager torch's, leaf by leaf, on a copy of the model "
            "re-initialised (fixed seed) to outputs of unit scale (rel: of each output's largest magnitude); beyond "
            f"{PARITY_TOLERANCE:g} the row says mismatch · vs torch: eager "
            f"torch's p50 over this one's · imgs/s, vs torch: {INTERVAL_NOTE} · First run s: loading (session "
            "creation, compilation) and the first run "
            f"· Peak MB: {mem} while loading and running (not exporting) · Precision: asked → what the runtime "
            "reports its conv/linear layers ran in (auto: the runtime's own default) · Cos min: the lowest cosine of "
            "an output against eager fp32's on held-out inputs the calibration did not see (Max abs err too, "
            f"below fp32); under {DRIFT_COSINE:g} the row says drift · Top-1 agree: classifiers, same top-1 class "
            f"(with trained weights and real held-out images --calib, under {TOP1_AGREEMENT_MIN:g} the row says drift) "
            + (_head_caption(HEAD_AGREEMENT_MIN, SCORE_THRESHOLD) if any(r.head_agreement for r in results) else "")
            + "· Low-prec layers: conv/linear layers below fp32 / all · vs fp32: the same runtime's fp32 p50 over "
            "this one's · Quant s: quantization (int8) or conversion, apart from Export s")
