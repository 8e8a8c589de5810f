"""`netprobe bench`: time forward, backward and optimizer steps of any model."""

from __future__ import annotations

from typing import Annotated

import typer

from netprobe.cli.app import command, interrupt_code, say_error
from netprobe.cli.options import (
    DEFAULT_BUILD_TIMEOUT_S,
    DEFAULT_MAX_WARMUP_S,
    DEFAULT_MODEL,
    DEFAULT_MODEL_NOTE,
    AmpChoice,
    BucketOption,
    BuildTimeoutOption,
    ChannelsLastOption,
    DeviceChoice,
    DeviceOption,
    GlobalBatchOption,
    MaxWarmupOption,
    ModeChoice,
    ModulesOption,
    OptimizerChoice,
    ScaleOption,
    WorldSizesOption,
    check_threads,
    int_list,
    require_matplotlib,
    runtime_list,
    runtime_names,
    set_build_timeout,
    size_list,
)
from netprobe.cli.output import Output, note, progress_bar
from netprobe.cli.plots import write_roofline
from netprobe.cli.saving import DbOption, NoSaveOption, check_database, record_run
from netprobe.errors import InputError, check_range
from netprobe.render import Column, Format, Report, TableBlock, TextBlock, fmt_float, fmt_mb, fmt_pct, fmt_si, plural
from netprobe.runtimes import precision_help, runtime_help


def _bench_record(result) -> dict:
    rec = result.to_dict()
    if result.step_p10_ms is not None:
        rec["spread"] = f"{result.step_p10_ms:.1f}–{result.step_p90_ms:.1f}"
        rec["steps"] = f"{result.warmup_steps}+{result.iters}" + ("!" if result.warmup_capped else "")
    if result.status not in ("ok", "drift"):  # drift: said in full under the table
        rec["status"] = result.status.upper() if result.status == "oom" else f"{result.status}: {result.error}"
    rec["runtime_text"] = f"{result.runtime} {result.runtime_version}".strip()
    rec["precision_text"] = result.precision + (f" → {result.precision_ran}" if result.precision_ran
                                                 and result.precision_ran != result.precision else "")
    if result.total_layers:
        rec["layers_text"] = f"{result.quantized_layers}/{result.total_layers}"
    return rec


BENCH_COLUMNS = [
    Column("spec", "Spec", justify="left", ident=True), Column("batch", "Batch", ident=True),
    Column("imgsz", "Size", ident=True), Column("mode", "Mode", justify="left", ident=True),
    Column("dtype", "dtype", justify="left"), Column("status", "Status", justify="left", ident=True),
    Column("imgs_per_s", "imgs/s", fmt_float(1)), Column("step_ms", "Step ms", fmt_float(1)),
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
    Column("bwd_gflops", "Bwd GFLOP/s", fmt_float(1)),
]
BENCH_RESULT_CSV = [Column(k, k) for k in (
    "spec", "device", "dtype", "batch", "imgsz", "mode", "status", "imgs_per_s", "fwd_ms", "bwd_ms", "opt_ms",
    "step_ms", "step_p10_ms", "step_p90_ms", "peak_mem_mb", "mem_kind", "tflops", "peak_tflops", "peak_fraction",
    "compile_s", "macs_per_img", "params", "channels_last", "compiled", "optimizer", "iters", "warmup_steps",
    "steady", "loss", "error", "runtime", "runtime_version", "provider", "threads", "export_s", "first_run_s",
    "file_mb", "max_abs_err", "max_rel_err", "parity_ok", "vs_torch", "precision", "precision_ran", "quantize_s",
    "cosine_min", "top1_agreement", "quantized_layers", "total_layers", "vs_fp32", "calibration")]
RUNTIME_COLUMNS = [
    Column("spec", "Spec", justify="left", ident=True), Column("batch", "Batch", ident=True),
    Column("imgsz", "Size", ident=True), Column("runtime_text", "Runtime", justify="left", ident=True),
    Column("provider", "Provider", justify="left"), Column("threads", "Threads"),
    Column("status", "Status", justify="left", ident=True), Column("step_ms", "p50 ms", fmt_float(2)),
    Column("step_p90_ms", "p90 ms", fmt_float(2)), Column("imgs_per_s", "imgs/s", fmt_float(1)),
    Column("vs_torch", "vs torch", lambda v: f"{float(v):.2f}×"), Column("steps", "Warm-up+timed"),
    Column("file_mb", "File MB", fmt_float(1)), Column("export_s", "Export s", fmt_float(2)),
    Column("first_run_s", "First run s", fmt_float(2)), Column("peak_mem_mb", "Peak MB", fmt_mb),
    Column("max_abs_err", "Max abs err", lambda v: f"{float(v):.1e}"),
    Column("max_rel_err", "Max rel err", lambda v: f"{float(v):.1e}"),
]
PRECISION_COLUMNS = [  # where a row runs another precision than fp32
    Column("precision_text", "Precision", justify="left", ident=True),
    Column("vs_fp32", "vs fp32", lambda v: f"{float(v):.2f}×"), Column("quantize_s", "Quant s", fmt_float(1)),
    Column("cosine_min", "Cos min", lambda v: f"{float(v):.4f}"),
    Column("top1_agreement", "Top-1 agree", fmt_pct), Column("layers_text", "Low-prec layers"),
]
SECTIONS = ("results", "stages", "breakdown", "roofline")


@command("bench", "Time train or inference steps: phases, memory.")
def bench(
    specs: Annotated[list[str] | None, typer.Argument(help="Models to measure (any spec summary takes); default "
                                                           "efficientnetv2_s.")] = None,
    device: DeviceOption = DeviceChoice.auto,
    batch: Annotated[str, typer.Option(help="Batch size (1-65,536), or a comma list for a grid.")] = "8",
    imgsz: Annotated[str | None, typer.Option(help="Image size N or HxW, or a comma list; default: the model's "
                                                   "own.")] = None,
    mode: Annotated[ModeChoice | None, typer.Option(help="train step, inference, or both (default: train; with "
                                                          "a --runtime other than torch, infer).")] = None,
    amp: Annotated[AmpChoice, typer.Option(help="Autocast dtype (fp16 adds a gradient scaler).")] = AmpChoice.off,
    channels_last: ChannelsLastOption = False,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile; compile time reported apart.")]
    = False,
    optimizer: Annotated[OptimizerChoice, typer.Option(help="Optimizer of the train step.")] = OptimizerChoice.sgd,
    warmup: Annotated[int, typer.Option(help="Untimed steps first, at least (0-10,000); warm-up also lasts until "
                                             "step times are steady.")] = 3,
    iters: Annotated[int, typer.Option(help="Timed steps (1-100,000).")] = 10,
    max_warmup_s: MaxWarmupOption = DEFAULT_MAX_WARMUP_S,
    threads: Annotated[int | None, typer.Option(help="CPU threads (torch.set_num_threads), at most the cores.")]
    = None,
    in_chans: Annotated[int | None, typer.Option("--in-chans", help="Input channels; default: the model's own, "
                                                                     "else 3.")] = None,
    scale: ScaleOption = None,
    modules: ModulesOption = None,
    breakdown: Annotated[bool, typer.Option("--breakdown", help="After the timed steps, a few profiled ones: time "
                                                               "by op kind beside MACs and bytes, a roofline per "
                                                               "stage.")] = False,
    plot: Annotated[str | None, typer.Option(help="With --breakdown: write the roofline as a PNG.")] = None,
    per_stage: Annotated[bool, typer.Option("--per-stage", help="Time of each stage alone (forward, and backward "
                                                                "when training).")] = False,
    find_max_batch: Annotated[bool, typer.Option("--find-max-batch", help="Search the largest batch that fits "
                                                                          "(CUDA).")] = False,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Data-parallel on N ranks of this machine (gloo on CPU, "
                                                             "NCCL on CUDA): 1 rank without DDP, then 1, 2, ... N "
                                                             "with DDP. Under torchrun: joins that job.")] = None,
    world_sizes: WorldSizesOption = None,
    global_batch: GlobalBatchOption = None,
    bucket_mb: BucketOption = 25,
    sync_bn: Annotated[bool, typer.Option("--sync-bn", help="With --nproc: SyncBatchNorm (CUDA).")] = False,
    port: Annotated[int | None, typer.Option(help="With --nproc: the rendezvous port (default: a free one).")]
    = None,
    timeout: Annotated[float, typer.Option(help="With --nproc: seconds without progress before the ranks are "
                                                "stopped (up to 86,400).")] = 600,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format (csv: see --section).")]
    = Format.table,
    section: Annotated[str | None, typer.Option(help=f"The table --format csv prints: {', '.join(SECTIONS)}.")]
    = None,
    out: Annotated[str | None, typer.Option(help="Also write the results to FILE (.json or .csv), atomically.")]
    = None,
    runtime: Annotated[str | None, typer.Option(help=runtime_help())] = None,
    precision: Annotated[str | None, typer.Option(help=precision_help())] = None,
    calib: Annotated[str | None, typer.Option(help="int8 calibration: a folder of images (resized to the input, "
                                                   "ImageNet mean/std) or a .npy (N,C,H,W); default synthetic.")]
    = None,
    weights: Annotated[str | None, typer.Option(help="Load this state dict (or a checkpoint holding one) into "
                                                     "every model first, strictly.")] = None,
    keep_exports: Annotated[str | None, typer.Option("--keep-exports", help="Keep the exported files in this "
                                                                            "folder.")] = None,
    build_timeout: BuildTimeoutOption = DEFAULT_BUILD_TIMEOUT_S,
    db: DbOption = None,
    no_save: NoSaveOption = False,
) -> None:
    """Time forward, backward and optimizer steps; memory, achieved TFLOP/s, OOM as a result."""
    from netprobe import bench as B
    from netprobe.runtimes import check_precisions, check_runtimes, parse_precisions
    from netprobe.target import resolve
    from netprobe.timing import resolve_device

    output = Output(fmt.value, SECTIONS, section, {"out": (out, (".json", ".csv")), "plot": (plot, (".png",))})
    check_database(output, "bench", db, no_save)
    if plot and not breakdown:
        raise InputError("--plot draws the roofline that --breakdown measures; add --breakdown")
    if plot:
        require_matplotlib()
    check_range("--warmup", warmup, *B.LIMITS["warmup"])
    check_range("--iters", iters, *B.LIMITS["iters"])
    if in_chans is not None:
        check_range("--in-chans", in_chans, 1, 4096)
    check_threads(threads)
    set_build_timeout(build_timeout)
    dev = resolve_device(device.value)
    runtimes = runtime_list(runtime)
    deployed = runtimes != ["torch"]
    modes = ["train", "infer"] if mode is ModeChoice.both else [mode.value if mode else
                                                                 "infer" if deployed else "train"]
    check_runtimes(runtimes, dev, modes)
    precisions = parse_precisions(precision)
    check_precisions(precisions, runtimes, dev, modes)
    if calib is not None and "int8" not in precisions:
        raise InputError("--calib gives int8 quantization its ranges; add --precision int8 (with a --runtime)")
    if keep_exports is not None and not deployed:
        raise InputError("--keep-exports keeps the files a --runtime other than torch exports; add --runtime")
    targets = [resolve(s, in_chans, scale, modules) for s in specs or [DEFAULT_MODEL]]
    configs = B.grid(targets, int_list("--batch", batch, *B.LIMITS["batch"]),
                     size_list("--imgsz", imgsz) or [None], modes, runtimes, precisions, keep_exports=keep_exports,
                     calib=calib, weights=weights,
                     device=dev, amp=amp.value,
                     channels_last=channels_last, compile=compile_model, optimizer=optimizer.value, warmup=warmup,
                     iters=iters, per_stage=per_stage, in_chans=in_chans, breakdown=breakdown,
                     max_warmup_s=max_warmup_s)
    for config in configs:
        B.validate(config)
    if nproc is not None:
        from netprobe.cli.distributed import DistOptions, check_plans, run_all

        if deployed:
            raise InputError("--nproc measures data-parallel training in eager torch; leave --runtime out")
        options = DistOptions(nproc, int_list("--world-sizes", world_sizes, 1, 4096) or None, global_batch, bucket_mb,
                              sync_bn, port, timeout)
        check_plans(configs, options)
        run_all(output, [(getattr(c.spec, "label", str(c.spec)), c) for c in configs], options,
                f"netprobe bench --nproc {nproc}", out=out)
        return
    if any(v is not None for v in (world_sizes, global_batch, port)) or sync_bn or bucket_mb != 25 or timeout != 600:
        raise InputError("--world-sizes, --global-batch, --bucket-mb, --sync-bn, --port and --timeout go with --nproc")
    if find_max_batch and dev != "cuda":
        raise InputError("--find-max-batch needs --device cuda: on the CPU, memory is shared with the system and "
                         "swaps rather than failing cleanly")
    if not specs:
        note(DEFAULT_MODEL_NOTE)
    if deployed and runtime is not None and "torch" not in runtime_names(runtime):
        note("eager torch is measured too: the reference for every runtime's speed and outputs")
    if device is DeviceChoice.auto:
        note(f"device: auto → {dev}" + ("" if dev == "cuda" else " (no CUDA available)"))
    session, stopped = _measure_all(B.BenchRun(dev), configs, find_max_batch)
    if not session.results:
        note("nothing finished: interrupted before the first configuration was measured")
    else:
        _report(output, session, out, plot)
    if stopped is not None:
        note(f"interrupted: {len(session.results)} of {plural(len(configs), 'configuration')} finished")
        raise typer.Exit(stopped)


def _measure_all(session, configs: list, find_max: bool) -> tuple[object, int | None]:
    """Measure every configuration (or search each one's largest batch); an interrupt keeps what finished."""
    with progress_bar() as progress:
        task = progress.add_task("bench", total=len(configs) * (1 if find_max else configs[0].warmup
                                                                 + configs[0].iters + 1))
        try:
            for config in configs:
                name = getattr(config.spec, "label", config.spec)
                label = f"{name} b{config.batch} {config.imgsz or ''} {config.mode}"
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


def _report(output: Output, session, out: str | None, plot: str | None = None) -> None:
    from netprobe.render import to_csv, to_json

    data = session.to_dict()
    results = session.results
    output.show(bench_report(results, data["device"], data["note"] or ""), data)
    ok = True
    if out:
        text = to_json(data) if out.lower().endswith(".json") else to_csv(BENCH_RESULT_CSV, data["results"])
        ok = output.write(out, text)
    if plot:
        ok = write_roofline(output, [(_config_label(r), r) for r in results], plot, "netprobe bench --breakdown") and ok
    for r in results:
        if r.failed_in:  # a model the runtime cannot export, load or run: one line naming what it refused
            precision = f" --precision {r.precision}" if r.precision != "fp32" else ""
            say_error(f"{r.spec} b{r.batch} {r.imgsz}px, --runtime {r.runtime}{precision}: {r.error}")
            ok = False
    ok = record_run(output, data) and ok
    output.finish(ok)


def _config_label(r) -> str:
    return f"{r.spec} b{r.batch} {r.imgsz}px {r.dtype} {r.mode}" + (f" {r.runtime}" if r.runtime != "torch" else "")


def bench_report(results: list, info: dict, busy: str) -> Report:
    records = [_bench_record(r) for r in results]
    mem = next((r.mem_kind for r in results if r.mem_kind), "")
    peaks = {r.dtype: r.peak_tflops for r in results if r.peak_tflops}
    losses = sorted({r.loss for r in results if r.loss})
    caption = (f"{info['name']} · torch {info['torch']} · {plural(info['threads'], 'thread')} · peak (dense "
               "matmul, best measured so far in this run): "
               + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in peaks.items())
               + f" · Peak MB: {mem} · TFLOP/s counts 2 FLOPs per MAC of the step as counted (backward op by op)"
               + " · Warm-up+timed: untimed steps until step times settled (! = stopped at --max-warmup-s), then "
               "the timed ones"
               + (f" · train loss: {'; '.join(losses)}" if losses else "")
               + (" (a stand-in: no label assignment or real detection loss is timed)"
                  if any(r.loss.startswith("surrogate") for r in results) else ""))
    columns = BENCH_COLUMNS + ([Column("compile_s", "Compile s", fmt_float(1))]
                               if any(r.compiled for r in results) else [])
    if any(r.runtime != "torch" for r in results):
        columns, caption = RUNTIME_COLUMNS, runtime_caption(results, info)
        if any(r.precision != "fp32" for r in results):
            columns = columns[:4] + PRECISION_COLUMNS[:1] + columns[4:11] + PRECISION_COLUMNS[1:] + columns[11:]
    report = Report([TableBlock("results", columns, records, "netprobe bench", caption)])
    ran = [f"{r.spec} b{r.batch} {r.runtime} {r.precision}: {r.layers_ran}"
           + (f" ({r.calibration})" if r.calibration else "") + (f"; drift: {r.error}" if r.status == "drift" else "")
           for r in results if r.layers_ran and r.runtime != "torch"]
    if ran:
        report.add(TextBlock("What ran, as each runtime reports it: " + "; ".join(ran) + "."))
    stage_recs = [{**s.__dict__, "config": f"{r.spec} b{r.batch} {r.imgsz}px {r.dtype} {r.mode}"}
                  for r in results for s in r.stages]
    if stage_recs:
        report.add(TableBlock("stages", STAGE_TIME_COLUMNS, stage_recs, "Per stage, each stage alone",
                              "backward GFLOP/s assumes 2 × the forward's work"))
    if busy:
        report.add(TextBlock(busy, "yellow"))
    from netprobe.cli.explain import explain_blocks

    for block in explain_blocks([(_config_label(r), r) for r in results]):
        report.add(block)
    return report


def runtime_caption(results: list, info: dict) -> str:
    """What a table of runtimes needs said: the machine and threads, how each runtime got its model, how
    the outputs were checked and what the columns mean."""
    from netprobe.runtimes import PARITY_TOLERANCE
    from netprobe.runtimes.base import PARITY_FLOOR
    from netprobe.runtimes.drift import DRIFT_COSINE

    exporters = {f"{r.runtime} {r.precision}": r.exporter for r in results if r.exporter and r.runtime != "torch"}
    mem = next((r.mem_kind for r in results if r.mem_kind), "")
    weights = next((r.weights for r in results if r.weights), "")
    return (f"{info['name']} · {plural(info['threads'], 'intra-op thread')} for every runtime · inference, "
            "same input, same warm-up rule (until steady) · "
            + (f"weights: {weights} · " if weights else "weights: as initialised (untrained) · ")
            + " · ".join(f"{name}: {how}" for name, how in exporters.items())
            + f" · Max abs/rel err: each runtime's outputs against eager torch's (rel: of their largest magnitude); "
            f"beyond {PARITY_TOLERANCE:g} of the scale + {PARITY_FLOOR:g} the row says mismatch · vs torch: eager "
            f"torch's p50 over this one's · First run s: loading (session creation, compilation) and the first run "
            f"· Peak MB: {mem} while loading and running (not exporting) · Precision: asked → what the runtime "
            "reports its conv/linear layers ran in (auto: the runtime's own default) · Cos min: the lowest cosine of "
            "an output against eager fp32's on held-out inputs the calibration did not see (Max abs err too, "
            f"below fp32); under {DRIFT_COSINE:g} the row says drift · Top-1 agree: classifiers, same top-1 class "
            "· Low-prec layers: conv/linear layers below fp32 / all · vs fp32: the same runtime's fp32 p50 over "
            "this one's · Quant s: quantization (int8) or conversion, apart from Export s")
