"""`netprobe predict`: a step's time and memory on a GPU one does not have — labelled a prediction."""

from __future__ import annotations

from typing import Annotated

import typer

from netprobe import defaults
from netprobe.cli.app import command
from netprobe.cli.options import AmpChoice, ChannelsLastOption, OptimizerChoice, choices, int_list, size_list, takes
from netprobe.cli.output import Output, progress_bar
from netprobe.cli.saving import SaveOptions, record_run
from netprobe.defaults import CALIBRATION_BATCH, CALIBRATION_IMGSZ, CALIBRATION_ITERS, CALIBRATION_MODELS, LIMITS
from netprobe.errors import quote
from netprobe.render import Column, Format, Report, TableBlock, TextBlock, fmt_float, fmt_pct

FORMAT_HELP = "Output format: table, json, csv (one table: see --section) or markdown."
SECTIONS = ("predictions", "stages")
Mode = choices("PredictMode", ("train", "infer"))


def _mem_text(row: dict) -> str:
    if row["peak_mem_mb"] is None:
        return "-"
    return f"{row['peak_mem_mb']:,.0f}" + (" OOM" if row["fits"] is False else "")


PREDICTION_COLUMNS = [
    Column("target", "Model", justify="left", ident=True), Column("gpu", "GPU", justify="left", ident=True),
    Column("batch", "Batch", ident=True), Column("size", "Size", ident=True),
    Column("step_ms", "Step ms", fmt_float(1)), Column("imgs_per_s", "imgs/s", fmt_float(0)),
    Column("peak_tflops", "Peak TFLOPS", lambda v: f"{float(v):.3g}"), Column("mem", "Mem MB"),
    Column("max_batch", "Max batch"),
]
STAGE_COLUMNS = [
    Column("gpu", "GPU", justify="left", ident=True), Column("batch", "Batch", ident=True),
    Column("size", "Size", ident=True), Column("name", "Stage", justify="left", ident=True),
    Column("fwd_ms", "Fwd ms", fmt_float(2)), Column("bwd_ms", "Bwd ms", fmt_float(2)),
    Column("bound", "Bound", justify="left"), Column("share", "Share", fmt_pct),
]


@command("predict", "Predicted step time and memory on a GPU.")
@takes(save=SaveOptions)
def predict_command(
    spec: Annotated[str | None, typer.Argument(help="What to predict: a spec as summary takes "
                                                    "(efficientnet_b4:fused=1-3, module:pkg.mod:factory, "
                                                    "path/to/file.py:factory, timm:NAME). With "
                                                    "--calibrate: the models to calibrate on, comma list (default: "
                                                    f"{','.join(CALIBRATION_MODELS)}).")] = None,
    gpu: Annotated[str | None, typer.Option(help="GPU(s) from the table, comma list, or all (default v100).")] = None,
    gpu_spec: Annotated[str | None, typer.Option("--gpu-spec", help="A YAML file describing another GPU.")] = None,
    device: Annotated[str | None, typer.Option(help="Predict the device at hand (cpu, cuda, auto) from its measured "
                                                    "roofs and its newest calibration, instead of a --gpu.")] = None,
    batch: Annotated[str | None, typer.Option(help="Batch size(s), comma list (1-65,536); default 24 (--calibrate: "
                                                   f"{CALIBRATION_BATCH}).")] = None,
    imgsz: Annotated[str | None, typer.Option(help="Image size(s) N or HxW, comma list; default: the model's "
                                                   f"(--calibrate: {CALIBRATION_IMGSZ}).")] = None,
    mode: Annotated[Mode, typer.Option(help="train: forward, backward, optimizer; infer: forward.")] = Mode.train,
    amp: Annotated[AmpChoice, typer.Option(help="off: PyTorch's fp32 defaults (cuDNN convs in TF32 where the GPU has "
                                          "it); fp16/bf16: AMP on tensor cores.")] = AmpChoice.off,
    channels_last: ChannelsLastOption = False,
    optimizer: Annotated[OptimizerChoice, typer.Option(help="The optimizer whose update and state are counted.")]
    = OptimizerChoice.sgd,
    find_max_batch: Annotated[bool, typer.Option("--find-max-batch", help="Also the largest batch that fits.")]
    = False,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Fit the time model on --device (default auto): "
                                                                "bench the models with a breakdown, keep the fit in "
                                                                "the results database.")] = False,
    warmup: Annotated[int | None, typer.Option(help="--calibrate: untimed steps at least (default "
                                                    f"{defaults.WARMUP_STEPS}).")] = None,
    iters: Annotated[int | None, typer.Option(help="--calibrate: timed steps per model (default "
                                                   f"{CALIBRATION_ITERS}).")] = None,
    rounds: Annotated[int | None, typer.Option(help="--calibrate: interleaved rounds of every bench (1-1,000; default "
                                                    f"{defaults.CALIBRATION_ROUNDS}).")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help=FORMAT_HELP)] = Format.table,
    section: Annotated[str | None, typer.Option(help=f"The table --format csv prints: {', '.join(SECTIONS)}.")]
    = None,
    *, save: SaveOptions,
) -> None:
    """Predict a train or inference step on a GPU you do not have: time from a model fitted on
    third-party measurements (its measured error is printed beside it), memory counted on meta.
    With --device, the device at hand; --calibrate fits the model on it first. The run is kept in the
    results database as predictions, apart from measurements."""
    from netprobe.errors import InputError
    from netprobe.prediction.predict import check_request, predict_all

    if calibrate:
        if save.no_save:
            raise InputError("--calibrate keeps its fit in the results database: drop --no-save")
        if mode.value != "train":
            raise InputError("--calibrate fits on training steps, whose forward also times inference: drop "
                             "--mode infer")
        if find_max_batch:
            raise InputError("--find-max-batch is a prediction's: calibrate first, then run predict MODEL --device "
                             "... --find-max-batch")
        _calibrate(spec, gpu, gpu_spec, device, batch, imgsz, amp.value, channels_last, optimizer.value,
                   defaults.WARMUP_STEPS if warmup is None else warmup, CALIBRATION_ITERS if iters is None else iters,
                   defaults.CALIBRATION_ROUNDS if rounds is None else rounds, save.db, fmt)
        return
    given = [name for name, value in (("--warmup", warmup), ("--iters", iters), ("--rounds", rounds))
             if value is not None]
    if given:
        raise InputError(f"{', '.join(given)} set{'s' if len(given) == 1 else ''} how --calibrate measures; a "
                         "prediction measures nothing: drop it, or add --calibrate")
    if spec is None:
        raise InputError("give a model to predict (e.g. netprobe predict efficientnetv2_s --gpu v100), or "
                         "--calibrate to fit the time model on this device")
    output = Output(fmt.value, SECTIONS, section)
    database = save.database("predict")
    batches = int_list("--batch", batch or "24", *LIMITS["batch"])
    sizes = size_list("--imgsz", imgsz) or [None]
    check_request(gpu, mode.value, amp.value, optimizer.value, gpu_spec, device)
    results = [p for size in sizes for b in batches
               for p in predict_all(spec, gpu, b, size, mode.value, amp.value, channels_last, optimizer.value,
                                    find_max_batch, gpu_spec, device, save.db)]
    output.show(prediction_report(results), [p.to_dict() for p in results])
    output.finish(record_run(database, prediction_envelope(spec, results)))


def prediction_envelope(spec: str, results: list) -> dict:
    """What the results database keeps of a predict run: every prediction (its `kind` says so) with the
    spec as typed, and the held-out error that goes with them."""
    return {"kind": "prediction", "error_note": results[0].error_note,
            "predictions": [{**p.to_dict(), "spec": spec} for p in results]}


def _calibrate(spec: str | None, gpu: str | None, gpu_spec: str | None, device: str | None, batch: str | None,
               imgsz: str | None, amp: str, channels_last: bool, optimizer: str, warmup: int, iters: int,
               rounds: int, db: str | None, fmt: Format) -> None:
    """`predict --calibrate`: every input checked before the first bench; an interrupt keeps nothing."""
    from netprobe.cli.app import interrupt_code, say_error
    from netprobe.errors import InputError, check_range
    from netprobe.prediction.calibration import calibrate, check_calibration, store_calibration

    if gpu is not None or gpu_spec is not None:
        raise InputError("--calibrate measures the device at hand (--device cpu or cuda); a GPU from the table "
                         f"({quote(gpu or gpu_spec or '')}) cannot be calibrated here: drop --gpu/--gpu-spec")
    check_range("--warmup", warmup, *LIMITS["warmup"])
    check_range("--iters", iters, *LIMITS["iters"])
    check_range("--rounds", rounds, *LIMITS["rounds"])
    specs = [s.strip() for s in (spec or ",".join(CALIBRATION_MODELS)).split(",") if s.strip()]
    batches = int_list("--batch", batch or str(CALIBRATION_BATCH), *LIMITS["batch"])
    sizes = size_list("--imgsz", imgsz or str(CALIBRATION_IMGSZ))
    targets, dev, path = check_calibration(specs, device or "auto", db)
    output = Output(fmt.value)
    with progress_bar() as progress:
        task = progress.add_task("calibrating", total=rounds * len(targets) * len(batches) * len(sizes))

        def step(label: str, done: int, total: int) -> None:
            progress.update(task, description=f"calibrating on {dev}: {label} ({done + 1}/{total})", completed=done)

        try:
            cal = calibrate(targets, dev, batches, sizes, amp, channels_last, warmup, iters, step, optimizer, rounds)
        except KeyboardInterrupt as exc:
            say_error("interrupted: no calibration was kept")
            raise typer.Exit(interrupt_code(exc)) from None
    store_calibration(path, cal)
    output.show(calibration_report(cal, str(path)), cal.to_dict())


def prediction_report(results: list) -> Report:
    """The predictions and their stages as blocks every format renders, labelled as predictions."""
    rows, stages = [], []
    for p in results:
        d = p.to_dict()
        size = "x".join(map(str, p.imgsz)) if p.imgsz[0] != p.imgsz[1] else str(p.imgsz[0])
        rows.append({**d, "size": size, "mem": _mem_text(d), "max_batch": d["max_batch"] if d["max_batch"] is not None
                     else "-"})
        stages += [{**s, "gpu": p.gpu, "batch": p.batch, "size": size} for s in d["stages"]]
    first = results[0]
    title = f"PREDICTED {first.mode} step ({first.amp if first.amp != 'off' else 'fp32'}, "
    title += f"{'channels-last' if first.channels_last else 'channels-first'}) — a prediction, not a measurement"
    caption = (f"{first.precision_note}. Time: per op max(FLOPs ÷ (peak × efficiency), bytes ÷ (bandwidth × "
               f"efficiency)) + launches; {first.efficiency_note}. Mem MB: "
               + ("the peak counted on meta (on a CPU, no allowance nor limit)" if first.gpu == "cpu" else
                  "what the GPU holds at the step's peak, counted on meta and replayed through PyTorch's caching "
                  "allocator at its memory, plus the CUDA allowance (context, workspaces); OOM: it does not fit, "
                  "and a GPU with room would hold the MB shown")
               + f"; MB = 2^20 bytes. Error: {first.error_note}.")
    blocks: list = [TableBlock("predictions", PREDICTION_COLUMNS, rows, title, caption),
                    TableBlock("stages", STAGE_COLUMNS, stages, "Predicted time per stage",
                               "Bound: what limits most of the stage's predicted time (compute, memory, launch).")]
    blocks.append(TextBlock(f"Predicted, not measured: {first.error_note}.", "yellow"))
    return Report(blocks)


def show_compare_predictions(output: Output, experiment: str, rows: list[dict]) -> None:
    """`compare ... --predict`: predicted imgs/s (and memory) per GPU beside the paper's V100 figure."""
    gpus = [k[: -len("_imgs_per_s")] for k in rows[0] if k.endswith("_imgs_per_s")]
    records = [{**r, **{f"{g}_mem": _mem_text({"peak_mem_mb": r[f"{g}_mem_mb"], "fits": r[f"{g}_fits"]})
                        for g in gpus}} for r in rows]
    columns = [Column("label", "Variant", justify="left", ident=True), Column("batch", "Batch"),
               Column("imgsz", "Size")]
    for g in gpus:
        columns += [Column(f"{g}_imgs_per_s", f"{g} imgs/s (pred.)", fmt_float(0)), Column(f"{g}_mem", f"{g} MB")]
    columns.append(Column("paper_v100", "Paper V100 imgs/s"))
    caption = ("Predicted train imgs/s and memory (what the GPU holds at the peak, MB = 2^20 bytes; OOM: does not "
               "fit, and a GPU with room would hold the MB shown) from netprobe predict — "
               "predictions, not measurements. Paper: EfficientNetV2 paper (arXiv:2104.00298), published V100 "
               f"figures. Error: {rows[0].get('error_note', '')}.")
    if experiment == "batch-imgsz" and any(r.get("paper_v100") is not None for r in rows):
        from netprobe.reference import PAPER_CODE_DEFAULTS

        caption += (f" Why: {PAPER_CODE_DEFAULTS}, so its fits and OOMs compare with --amp fp16; --amp off shows what "
                    "PyTorch eager in fp32 would hold, with every saved activation at 4 bytes.")
    output.show(Report([TableBlock("rows", columns, records, f"netprobe compare {experiment} — PREDICTED",
                                   caption)]), records)


CALIBRATION_COLUMNS = [
    Column("model", "Model", justify="left", ident=True), Column("batch", "Batch", ident=True),
    Column("imgsz", "Size", ident=True), Column("measured_ms", "Measured ms", fmt_float(1)),
    Column("fitted_ms", "Fitted ms", fmt_float(1)), Column("error", "Error", fmt_pct),
]
EFFICIENCY_COLUMNS = [
    Column("key", "Op key", justify="left", ident=True), Column("compute", "Compute eff.", fmt_pct),
    Column("memory", "Memory eff.", fmt_pct), Column("launch", "Launch µs", fmt_float(1)),
]


def calibration_report(cal, db: str) -> Report:
    """A calibration: the fit against each bench it was fitted on, and the fitted efficiencies."""
    eff = cal.efficiency
    rows = [{"key": k, "compute": eff.compute[k], "memory": eff.memory[k], "launch": eff.launch(k)}
            for k in eff.compute]
    title = f"Calibration of this {cal.device} ({cal.device_name}) — fitted on measurements made now"
    caption = (f"Measured: bench --breakdown step ms (train, {cal.amp if cal.amp != 'off' else 'fp32'}, {cal.layout}); "
               "fitted: the time model's step with the efficiencies below. Roofs: "
               f"{cal.peak_tflops * 1e3:.1f} GFLOP/s matmul, {cal.bandwidth_gbs:.1f} GB/s copy; launch "
               f"{eff.launch_us:.1f} µs a kernel" + (" (median over kinds; each kind's below)." if eff.launch_by_key
                                                     else "."))
    return Report([TableBlock("calibration", CALIBRATION_COLUMNS, cal.residuals, title, caption),
                   TableBlock("efficiencies", EFFICIENCY_COLUMNS, rows, "Fitted efficiencies",
                              "Fractions of the measured matmul peak (compute) and copy bandwidth (memory); "
                              "launch: the fixed cost of one op of the kind, µs."),
                   TextBlock(f"Kept in {db} (calibration {cal.id}): predictions with --device {cal.device} now "
                             f"say {cal.note}.", "green")])
