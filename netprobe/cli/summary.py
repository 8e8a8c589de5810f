"""`netprobe summary` and `netprobe list`."""

from __future__ import annotations

from typing import Annotated

import typer

from netprobe.cli.app import command
from netprobe.cli.options import DEFAULT_MODEL_NOTE, InChansOption, ModelOptions, check_in_chans, choices, takes
from netprobe.cli.output import Output, note, note_aliases
from netprobe.cli.saving import DbOption, SaveOption, check_database, record_run
from netprobe.defaults import COUNTED_KINDS, DEFAULT_MODEL
from netprobe.frozen import frozen_note
from netprobe.render import (
    CodeBlock,
    Column,
    Format,
    Report,
    TableBlock,
    TextBlock,
    fmt_float,
    fmt_int,
    fmt_pct,
    fmt_si,
)

FORMAT_HELP = "Output format: table, json, csv (one table: see --section) or markdown."


Depth = choices("Depth", ("stage", "block", "layer"))
Staging = choices("Staging", ("children", "auto"))
CounterChoice = choices("CounterChoice", ("native", "fvcore", "thop", "torchinfo", "all"))  # counters.CHOICES


def shape_text(value: object) -> str:
    return "×".join(str(v) for v in value)  # type: ignore[union-attr]


MACS_CAPTION = ("MACs = multiply-accumulates of conv, linear and matmul ops (what the EfficientNet papers call "
                "FLOPs); FLOPs = 2 × MACs. P = log2 of the cumulative stride (P3 = stride 8), '-' without a "
                "spatial map. Act. MB: fp32 outputs of the row's leaf layers (what backward keeps), MB = 2^20 bytes.")

ROW_COLUMNS = [
    Column("name", "Stage", justify="left", ident=True), Column("op", "Operator", justify="left"),
    Column("stride", "Stride"), Column("channels", "Channels"), Column("repeats", "Layers"),
    Column("out", "Output C×H×W", shape_text), Column("p", "P"), Column("params", "Params", fmt_int),
    Column("macs", "MACs", fmt_si), Column("share", "MACs %", fmt_pct), Column("act_mb", "Act. MB", fmt_float(1)),
]
FEATURE_COLUMNS = [Column("level", "Tap", justify="left", ident=True), Column("name", "Stage", justify="left"),
                   Column("channels", "Channels"), Column("stride", "Stride"), Column("shape", "C×H×W", shape_text)]
TOTAL_COLUMNS = [Column(k, k) for k in ("spec", "input", "params", "trainable", "macs", "flops", "other_ops",
                                        "act_mb", "canonical")]
SECTIONS = ("rows", "features", "counters", "totals")


@command("summary", "Stage table: shapes, P-levels, params, MACs.")
@takes(model=ModelOptions)
def summary(
    spec: Annotated[str | None, typer.Argument(help="What to count: a backbone spec (efficientnet_b4:fused=1-3), a "
                                             "detector (yolov8n, yolov8n-pose:backbone=efficientnetv2_s, "
                                             "path/model.yaml), module:pkg.mod:factory, path/to/file.py:factory "
                                             "or timm:NAME; default efficientnetv2_s.")] = None,
    imgsz: Annotated[str | None, typer.Option(help="Image size N or HxW; default: the model's own.")] = None,
    batch: Annotated[int, typer.Option(help="Batch size of the counted input (1-65,536).")] = 1,
    depth: Annotated[Depth, typer.Option(help="Rows per stage (a detector: per YAML row), block or leaf layer.")]
    = Depth.stage,
    stages: Annotated[Staging, typer.Option(help="Stage rows: the model's top-level children, or its stages found "
                                                 "by structure, then stride (auto: stem, stages, head).")]
    = Staging.children,
    in_chans: InChansOption = None,
    counter: Annotated[list[CounterChoice] | None, typer.Option(
        help="Also count with these libraries and reconcile (repeatable; 'all' for every one).")] = None,
    features: Annotated[bool, typer.Option("--features", help="Show the multi-scale feature taps (P-levels).")]
    = False,
    train: Annotated[bool, typer.Option("--train", help="Also count a train step's backward op by op (and show "
                                                        "what torch's FlopCounterMode says).")] = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help=FORMAT_HELP)] = Format.table,
    section: Annotated[str | None, typer.Option(help=f"The table --format csv prints: {', '.join(SECTIONS)}.")]
    = None,
    save: SaveOption = False,
    db: DbOption = None,
    *, model: ModelOptions,
) -> None:
    """The paper-style stage table: operator, stride, channels, layers, shapes, params and MACs per stage."""
    from netprobe.cli.detector import SECTIONS as DETECTOR_SECTIONS
    from netprobe.cli.detector import detector_report
    from netprobe.summary import summarize
    from netprobe.target import DetectorTarget, resolve

    check_in_chans(in_chans)
    target = resolve(spec or DEFAULT_MODEL, in_chans, model.scale, model.modules)
    note_aliases([spec])
    detector = isinstance(target, DetectorTarget) and stages is Staging.children
    output = Output(fmt.value, DETECTOR_SECTIONS if detector else SECTIONS, section)
    if spec is None:
        note(DEFAULT_MODEL_NOTE)
    database = check_database("summary", db, save=save)
    result = summarize(target, imgsz, batch, depth.value, stages.value, in_chans, train=train,
                       counters=[c.value for c in counter or []])
    result.spec = target.label  # as the user wrote it; the canonical form is shown apart
    report = detector_report(result) if detector else summary_report(result, features)
    if result.train:
        for line in train_lines(result.train):
            report.add(line)
    if result.counter_details:
        report.add(_counter_table(result.counter_details))
    output.show(report, result.to_dict())
    output.finish(record_run(database, result.to_dict()))


def summary_report(result, features: bool) -> Report:
    """Everything `summary` shows, as blocks every format renders alike."""
    records = [_row_record(r) for r in result.rows]
    columns = [c for c in ROW_COLUMNS if c.key != "repeats" or any(r.repeats is not None for r in result.rows)]
    if result.train:
        at = next(i for i, c in enumerate(columns) if c.key == "macs") + 1
        columns.insert(at, Column("bwd_macs", "Bwd MACs", fmt_si))
    n, c, h, w = result.input
    report = Report([TableBlock("rows", columns, records, f"{result.spec} — input {n}×{c}×{h}×{w}", MACS_CAPTION)])
    report.add(TextBlock(f"Params {result.params:,} (trainable {result.trainable:,})   MACs {fmt_si(result.macs)}   "
                         f"FLOPs {fmt_si(result.flops)}   Act. {result.act_mb:.1f} MB", "bold"))
    if getattr(result, "changed", None):
        report.add(TextBlock("note: " + result.changed, "yellow"))
    if getattr(result, "real_forward", None):
        report.add(TextBlock("note: " + result.real_forward, "yellow"))
    if result.frozen:
        report.add(TextBlock("note: " + frozen_note(result.frozen), "dim"))
    other = ", ".join(f"{k} {fmt_si(v)}" for k, v in result.other_by_kind.items() if v)
    report.add(TextBlock(f"Not in MACs: {fmt_si(result.other_ops)} element ops ({other or 'none'})"))
    if result.unsupported:
        ops = ", ".join(f"{op} ×{n}" for op, n in result.unsupported.items())
        report.add(TextBlock(f"ops with no counting rule (not in any count): {ops}", "yellow"))
    if result.outputs and result.kind != "zoo":
        report.add(TextBlock("Outputs: " + ", ".join(shape_text(s) for s in result.outputs)))
    ref = result.reference
    if ref:
        report.add(TextBlock(f"Published ({ref['source']}): {ref['params']:,} params, {ref['gmacs']} GMACs at "
                             f"{ref['imgsz']} px"))
    if result.canonical:
        report.add(CodeBlock("canonical: ", result.canonical))
    report.add(TableBlock("totals", TOTAL_COLUMNS, [_totals_record(result)], csv_only=True))
    if features:
        report.add(TableBlock("features", FEATURE_COLUMNS, result.features, "Feature taps for a detection neck"))
    return report


def train_lines(train: dict) -> list[TextBlock]:
    """The train step as counted, and beside it, labelled, what torch's FlopCounterMode reports."""
    ref = train["flop_counter"]
    ratio = ref["step_macs"] / train["step_macs"] if train["step_macs"] else 0
    return [
        TextBlock(f"Train step, counted op by op ({train['loss'].replace('_', '-')} loss): forward "
                  f"{fmt_si(train['fwd_macs'])} MACs, backward {fmt_si(train['bwd_macs'])} (grad input "
                  f"{fmt_si(train['bwd_input_macs'])}, grad weight {fmt_si(train['bwd_weight_macs'])}), step "
                  f"{fmt_si(train['step_macs'])} MACs = {fmt_si(2 * train['step_macs'])} FLOPs; bytes moved: "
                  f"forward {train['fwd_bytes'] / 2**20:,.0f} MB, backward {train['bwd_bytes'] / 2**20:,.0f} MB "
                  "(fp32)", "bold"),
        TextBlock(f"torch FlopCounterMode on the same step: {fmt_si(ref['step_flops'])} FLOPs = "
                  f"{fmt_si(ref['step_macs'])} MACs ({ratio:.2f}× ours); it counts a grouped conv's weight "
                  "gradient 'groups' times over, so depthwise nets differ most"),
    ]


def channels(row) -> int | None:
    """C of a C×H×W map; of a token sequence (L×D, no spatial map: a transformer's) its width D."""
    if not row.out:
        return None
    return row.out[-1] if len(row.out) == 2 and row.cum_stride is None else row.out[0]


def _row_record(row) -> dict:
    rec = dict(row.__dict__)
    rec["channels"] = channels(row)
    rec["stride"] = row.stride if row.stride is not None else "-"
    rec["p"] = f"P{row.p_level}" if row.p_level is not None else "-"
    rec["out"] = row.out if row.out else "-"
    return rec


def _totals_record(result) -> dict:
    return {"spec": result.spec, "input": result.input, "params": result.params, "trainable": result.trainable,
            "macs": result.macs, "flops": result.flops, "other_ops": result.other_ops, "act_mb": result.act_mb,
            "canonical": result.canonical}


def _counter_table(counters: dict[str, dict]) -> TableBlock:
    native = counters["native"]
    records = []
    for name, c in counters.items():
        rec = {"name": name, "macs": c["macs"], "convention": c["error"] or c["convention"],
               "ratio": f"{c['macs'] / native['macs']:.3f}×" if c["macs"] and native["macs"] else "-"}
        for kind in COUNTED_KINDS:
            value = c["by_kind"].get(kind, 0)
            ref = native["by_kind"].get(kind, 0)
            mark = "" if name == "native" or value == ref else (" ▲" if value > ref else " ▼")
            rec[kind] = (fmt_si(value) if value else "0") + mark if c["macs"] is not None else "-"
        records.append(rec)
    kinds = [k for k in COUNTED_KINDS if any(c["by_kind"].get(k) for c in counters.values())]
    columns = [Column("name", "Counter", justify="left", ident=True), Column("macs", "Total", fmt_si),
               Column("ratio", "vs native"), *[Column(k, k) for k in kinds],
               Column("convention", "What it counts", justify="left")]
    return TableBlock("counters", columns, records, "Counters reconciled (per op kind; ▲/▼ = more/less than native)",
                      "native conv/linear/matmul are MACs; its other kinds are element ops, not in its total.")


@command("list", "The built-in backbones and detectors, counted.")
def list_command(
    fmt: Annotated[Format, typer.Option("--format", "-f", help=FORMAT_HELP)] = Format.table,
    section: Annotated[str | None, typer.Option(help="The table --format csv prints: archs or detectors.")] = None,
) -> None:
    """The built-in backbones and detectors: parameters (counted), default image size, layout."""
    from netprobe.archs.block_kinds import layout_legend
    from netprobe.catalog import arch_records, detector_records

    output = Output(fmt.value, ("archs", "detectors"), section)
    archs, detectors = arch_records(), detector_records()
    arch_columns = [Column("name", "Arch", justify="left", ident=True), Column("family", "Family", justify="left"),
                    Column("params", "Params", fmt_int), Column("imgsz", "Image size"), Column("stages", "Stages"),
                    Column("layout", f"Layout ({layout_legend()})", justify="left"),
                    Column("paper", "Paper", justify="left")]
    detector_columns = [Column("name", "Detector", justify="left", ident=True), Column("params", "Params", fmt_int),
                        Column("nc", "Classes"), Column("imgsz", "Image size"), Column("rows", "Rows"),
                        Column("origin", "Layout from", justify="left")]
    report = Report([
        TableBlock("archs", arch_columns, archs, "netprobe backbones",
                   "Spec: ARCH[:key=value,...], e.g. efficientnet_b4:fused=1-3"),
        TableBlock("detectors", detector_columns, detectors, "netprobe detectors",
                   "Spec: NAME[:nc=N,imgsz=N,backbone=(SPEC)], e.g. yolov8n-pose:backbone=(efficientnet_b4:fused=1-3); "
                   "any ultralytics-format YAML file works too. Params counted at the default classes."),
    ])
    output.show(report, {"archs": archs, "detectors": detectors})
    output.finish()
