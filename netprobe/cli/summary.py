"""`netprobe summary` and `netprobe list`."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from netprobe.cli.app import command
from netprobe.cli.output import Output
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


class Depth(str, Enum):
    stage = "stage"
    block = "block"
    layer = "layer"


class Staging(str, Enum):
    children = "children"
    auto = "auto"


class CounterChoice(str, Enum):
    native = "native"
    fvcore = "fvcore"
    thop = "thop"
    torchinfo = "torchinfo"
    all = "all"


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
COUNTER_KINDS = ("conv", "linear", "matmul", "norm", "act", "mul", "add", "pool", "resize", "concat")
SECTIONS = ("rows", "features", "counters", "totals")


@command("summary")
def summary(
    spec: Annotated[str, typer.Argument(help="What to count: a backbone spec (efficientnet_b4:fused=1-3), "
                                             "module:pkg.mod:factory, path/to/file.py:factory or timm:NAME.")]
    = "efficientnetv2_s",
    imgsz: Annotated[str | None, typer.Option(help="Image size N or HxW; default: the model's own.")] = None,
    batch: Annotated[int, typer.Option(help="Batch size of the counted input (1-65,536).")] = 1,
    depth: Annotated[Depth, typer.Option(help="Rows per stage, block or leaf layer.")] = Depth.stage,
    stages: Annotated[Staging, typer.Option(help="Stage rows: the model's own (children) or runs of layers at one "
                                                 "stride (auto).")] = Staging.children,
    in_chans: Annotated[int | None, typer.Option("--in-chans", help="Input channels; default: the model's own, "
                                                                     "else 3.")] = None,
    counter: Annotated[list[CounterChoice] | None, typer.Option(
        help="Also count with these libraries and reconcile (repeatable; 'all' for every one).")] = None,
    features: Annotated[bool, typer.Option("--features", help="Show the multi-scale feature taps (P-levels).")]
    = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help=FORMAT_HELP)] = Format.table,
    section: Annotated[str | None, typer.Option(help=f"The table --format csv prints: {', '.join(SECTIONS)}.")]
    = None,
) -> None:
    """The paper-style stage table: operator, stride, channels, layers, shapes, params and MACs per stage."""
    from netprobe.errors import check_range
    from netprobe.summary import summarize

    output = Output(fmt.value, SECTIONS, section)
    if in_chans is not None:
        check_range("--in-chans", in_chans, 1, 4096)
    result = summarize(spec, imgsz, batch, depth.value, stages.value, in_chans)
    names = _counter_names(counter or [])
    counters = _run_counters(spec, result, names, in_chans) if names else {}
    data = result.to_dict()
    if counters:
        data["counters"] = {name: c.macs for name, c in counters.items()}
        data["counter_details"] = {name: c.to_dict() for name, c in counters.items()}
    output.show(summary_report(result, counters, features), data)
    output.finish()


def summary_report(result, counters: dict, features: bool) -> Report:
    """Everything `summary` shows, as blocks every format renders alike."""
    records = [_row_record(r) for r in result.rows]
    columns = [c for c in ROW_COLUMNS if c.key != "repeats" or any(r.repeats is not None for r in result.rows)]
    n, c, h, w = result.input
    report = Report([TableBlock("rows", columns, records, f"{result.spec} — input {n}×{c}×{h}×{w}", MACS_CAPTION)])
    report.add(TextBlock(f"Params {result.params:,} (trainable {result.trainable:,})   MACs {fmt_si(result.macs)}   "
                         f"FLOPs {fmt_si(result.flops)}   Act. {result.act_mb:.1f} MB", "bold"))
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
    if counters:
        report.add(_counter_table(counters))
    return report


def _row_record(row) -> dict:
    rec = dict(row.__dict__)
    rec["channels"] = row.out[0] if row.out else None
    rec["stride"] = row.stride if row.stride is not None else "-"
    rec["p"] = f"P{row.p_level}" if row.p_level is not None else "-"
    rec["out"] = row.out if row.out else "-"
    return rec


def _totals_record(result) -> dict:
    return {"spec": result.spec, "input": result.input, "params": result.params, "trainable": result.trainable,
            "macs": result.macs, "flops": result.flops, "other_ops": result.other_ops, "act_mb": result.act_mb,
            "canonical": result.canonical}


def _counter_names(choices: list[CounterChoice]) -> list[str]:
    from netprobe.counters import EXTERNAL

    names = [c.value for c in choices]
    if "all" in names:
        return ["native", *EXTERNAL]
    return ["native", *[n for n in EXTERNAL if n in names]] if names else []


def _run_counters(spec: str, result, names: list[str], in_chans: int | None) -> dict:
    from netprobe.counters import native_result, run_counter
    from netprobe.counting import count
    from netprobe.target import resolve

    target = resolve(spec, in_chans)
    shape = tuple(result.input)
    counters = {"native": native_result(count(target.meta_model(), shape))}
    external = [n for n in names if n != "native"]
    if external:
        model = target.user_module if target.user_module is not None else target.make("cpu")
        for name in external:
            counters[name] = run_counter(name, model, shape)
    return counters


def _counter_table(counters: dict) -> TableBlock:
    native = counters["native"]
    records = []
    for name, c in counters.items():
        rec = {"name": name, "macs": c.macs, "convention": c.error or c.convention,
               "ratio": f"{c.macs / native.macs:.3f}×" if c.macs and native.macs else "-"}
        for kind in COUNTER_KINDS:
            value = c.by_kind.get(kind, 0)
            ref = native.by_kind.get(kind, 0)
            mark = "" if name == "native" or value == ref else (" ▲" if value > ref else " ▼")
            rec[kind] = (fmt_si(value) if value else "0") + mark if c.macs is not None else "-"
        records.append(rec)
    kinds = [k for k in COUNTER_KINDS if any(c.by_kind.get(k) for c in counters.values())]
    columns = [Column("name", "Counter", justify="left", ident=True), Column("macs", "Total", fmt_si),
               Column("ratio", "vs native"), *[Column(k, k) for k in kinds],
               Column("convention", "What it counts", justify="left")]
    return TableBlock("counters", columns, records, "Counters reconciled (per op kind; ▲/▼ = more/less than native)",
                      "native conv/linear/matmul are MACs; its other kinds are element ops, not in its total.")


@command("list")
def list_command(fmt: Annotated[Format, typer.Option("--format", "-f", help=FORMAT_HELP)] = Format.table) -> None:
    """The supported architectures: family, parameters, default image size and stage layout."""
    from netprobe.api import build, list_archs

    output = Output(fmt.value)
    records = []
    for arch in list_archs():
        model = build(arch.name, device="meta")
        records.append({"name": arch.name, "family": arch.family, "params": sum(p.numel() for p in model.parameters()),
                        "imgsz": model.table.imgsz, "stages": len(model.table.stages),
                        "layout": model.table.layout(), "paper": arch.paper})
    columns = [Column("name", "Arch", justify="left", ident=True), Column("family", "Family", justify="left"),
               Column("params", "Params", fmt_int), Column("imgsz", "Image size"), Column("stages", "Stages"),
               Column("layout", "Layout (F fused, M MBConv)", justify="left"), Column("paper", "Paper", justify="left")]
    report = Report([TableBlock("archs", columns, records, "netprobe archs",
                                "Spec: ARCH[:key=value,...], e.g. efficientnet_b4:fused=1-3")])
    output.show(report, records)
    output.finish()
