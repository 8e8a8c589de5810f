"""`netprobe predict`: a step's time and memory on a GPU one does not have — labelled a prediction."""

from __future__ import annotations

from typing import Annotated

import typer

from netprobe.cli.app import command
from netprobe.cli.options import AmpChoice, ChannelsLastOption, OptimizerChoice, choices, int_list, size_list, takes
from netprobe.cli.output import Output
from netprobe.cli.saving import SaveOptions, record_run
from netprobe.defaults import LIMITS
from netprobe.render import Column, Format, Report, TableBlock, TextBlock, fmt_float, fmt_pct

FORMAT_HELP = "Output format: table, json, csv (one table: see --section) or markdown."
SECTIONS = ("predictions", "stages")
Mode = choices("PredictMode", ("train", "infer"))


def _mem_text(row: dict) -> str:
    if row["peak_mem_mb"] is None:
        return "-"
    return f"{row['peak_mem_mb']:,.0f}" + ("" if row["fits"] else " OOM")


PREDICTION_COLUMNS = [
    Column("target", "Model", justify="left", ident=True), Column("gpu", "GPU", justify="left", ident=True),
    Column("batch", "Batch", ident=True), Column("size", "Size", ident=True),
    Column("step_ms", "Step ms", fmt_float(1)), Column("imgs_per_s", "imgs/s", fmt_float(0)),
    Column("peak_tflops", "Peak TFLOPS", fmt_float(1)), Column("mem", "Mem MB"),
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
    spec: Annotated[str, typer.Argument(help="What to predict: a spec as summary takes (efficientnet_b4:fused=1-3, "
                                             "module:pkg.mod:factory, path/to/file.py:factory, timm:NAME).")],
    gpu: Annotated[str, typer.Option(help="GPU(s) from the table, comma list, or all.")] = "v100",
    gpu_spec: Annotated[str | None, typer.Option("--gpu-spec", help="A YAML file describing another GPU.")] = None,
    device: Annotated[str | None, typer.Option(help="Not for predict: a prediction names --gpu.")] = None,
    batch: Annotated[str, typer.Option(help="Batch size(s), comma list (1-65,536).")] = "24",
    imgsz: Annotated[str | None, typer.Option(help="Image size(s) N or HxW, comma list; default: the model's.")]
    = None,
    mode: Annotated[Mode, typer.Option(help="train: forward, backward, optimizer; infer: forward.")] = Mode.train,
    amp: Annotated[AmpChoice, typer.Option(help="off: PyTorch's fp32 defaults (cuDNN convs in TF32 where the GPU has "
                                          "it); fp16/bf16: AMP on tensor cores.")] = AmpChoice.off,
    channels_last: ChannelsLastOption = False,
    optimizer: Annotated[OptimizerChoice, typer.Option(help="The optimizer whose update and state are counted.")]
    = OptimizerChoice.sgd,
    find_max_batch: Annotated[bool, typer.Option("--find-max-batch", help="Also the largest batch that fits.")]
    = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help=FORMAT_HELP)] = Format.table,
    section: Annotated[str | None, typer.Option(help=f"The table --format csv prints: {', '.join(SECTIONS)}.")]
    = None,
    *, save: SaveOptions,
) -> None:
    """Predict a train or inference step on a GPU you do not have: time from a model fitted on
    third-party measurements (its measured error is printed beside it), memory counted on meta.
    The run is kept in the results database as predictions, apart from measurements."""
    from netprobe.errors import InputError
    from netprobe.prediction.predict import check_request, predict_all

    if device is not None:
        raise InputError("--device measures the machine at hand; predict names a GPU with --gpu (or --gpu-spec), "
                         "not both")
    output = Output(fmt.value, SECTIONS, section)
    database = save.database("predict")
    batches = int_list("--batch", batch, *LIMITS["batch"])
    sizes = size_list("--imgsz", imgsz) or [None]
    check_request(gpu, mode.value, amp.value, optimizer.value, gpu_spec)
    results = [p for size in sizes for b in batches
               for p in predict_all(spec, gpu, b, size, mode.value, amp.value, channels_last, optimizer.value,
                                    find_max_batch, gpu_spec)]
    output.show(prediction_report(results), [p.to_dict() for p in results])
    output.finish(record_run(database, prediction_envelope(spec, results)))


def prediction_envelope(spec: str, results: list) -> dict:
    """What the results database keeps of a predict run: every prediction (its `kind` says so) with the
    spec as typed, and the held-out error that goes with them."""
    return {"kind": "prediction", "error_note": results[0].error_note,
            "predictions": [{**p.to_dict(), "spec": spec} for p in results]}


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
               f"efficiency)) + launches; {first.efficiency_note}. Mem MB: peak counted on meta plus the CUDA "
               "allowance (context, workspaces), MB = 2^20 bytes; OOM: it does not fit. "
               f"Error: {first.error_note}.")
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
    caption = ("Predicted train imgs/s and memory (MB = 2^20 bytes, OOM: does not fit) from netprobe predict — "
               "predictions, not measurements. Paper: EfficientNetV2 paper (arXiv:2104.00298), published V100 "
               f"figures. Error: {rows[0].get('error_note', '')}.")
    output.show(Report([TableBlock("rows", columns, records, f"netprobe compare {experiment} — PREDICTED",
                                   caption)]), records)
