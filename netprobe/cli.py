"""The `netprobe` command: a thin layer of typer and rich over the Python API."""

from __future__ import annotations

import functools
import os
import sys
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console

from netprobe.errors import NetprobeError
from netprobe.render import Column, Format, fmt_int, fmt_pct, fmt_si, rich_table, to_csv, to_json, to_markdown

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="What a CNN backbone is made of, stage by stage, and how fast it trains and infers on your hardware.",
)


def _console(stderr: bool = False) -> Console:
    # Tables are wide: use the terminal's width, or 200 columns when output is piped.
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
    return Console(stderr=stderr, width=width, soft_wrap=False)


def _fail(message: str) -> None:
    Console(stderr=True, width=10_000).print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    raise typer.Exit(2)


def command(name: str):
    """Register a CLI command whose user errors become one line on stderr and exit code 2."""

    def register(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except NetprobeError as exc:
                _fail(str(exc))

        return app.command(name)(wrapper)

    return register


def emit(fmt: Format, *, table, columns: list[Column], records: list[dict], data: object, caption: str = "") -> None:
    """Print one result in the format asked for; `table` builds the rich rendering lazily."""
    out = _console()
    if fmt is Format.json:
        print(to_json(data))
    elif fmt is Format.csv:
        print(to_csv(columns, records), end="")
    elif fmt is Format.markdown:
        print(to_markdown(columns, records, caption), end="")
    else:
        table(out)


# ---- list ---------------------------------------------------------------------------------------

@command("list")
def list_archs(fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table) -> None:
    """The supported architectures: family, parameters, default image size and stage layout."""
    from netprobe.api import build, list_archs

    records = []
    for arch in list_archs():
        model = build(arch.name, device="meta")
        records.append({"name": arch.name, "family": arch.family, "params": sum(p.numel() for p in model.parameters()),
                        "imgsz": model.table.imgsz, "stages": len(model.table.stages),
                        "layout": model.table.layout(), "paper": arch.paper})
    columns = [Column("name", "Arch", justify="left"), Column("family", "Family", justify="left"),
               Column("params", "Params", fmt_int), Column("imgsz", "Image size"), Column("stages", "Stages"),
               Column("layout", "Layout (F fused, M MBConv)", justify="left"), Column("paper", "Paper", justify="left")]
    emit(fmt, columns=columns, records=records, data=records,
         table=lambda out: out.print(rich_table(columns, records, "netprobe archs",
                                                "Spec: ARCH[:key=value,...], e.g. efficientnet_b4:fused=1-3")))


# ---- summary ------------------------------------------------------------------------------------

class Depth(str, Enum):
    stage = "stage"
    block = "block"
    layer = "layer"


class CounterChoice(str, Enum):
    native = "native"
    fvcore = "fvcore"
    thop = "thop"
    torchinfo = "torchinfo"
    all = "all"


_MACS_CAPTION = ("MACs = multiply-accumulates of conv and linear layers (what the EfficientNet papers call "
                 "FLOPs); FLOPs = 2 × MACs. Act. MB: fp32 outputs of the stage's leaf layers (what backward "
                 "keeps), MB = 2^20 bytes.")

def _shape(value: object) -> str:
    return "×".join(str(v) for v in value)  # type: ignore[union-attr]


STAGE_COLUMNS = [
    Column("name", "Stage", justify="left"), Column("op", "Operator", justify="left"), Column("stride", "Stride"),
    Column("channels", "Channels"), Column("repeats", "Layers"), Column("out", "Output C×H×W", _shape),
    Column("p", "P"), Column("params", "Params", fmt_int), Column("macs", "MACs", fmt_si),
    Column("share", "MACs %", fmt_pct), Column("act_mb", "Act. MB", lambda v: f"{float(v):.1f}"),
]
COUNTER_KINDS = ("conv", "linear", "norm", "act", "mul", "add", "pool")


@command("summary")
def summary(
    spec: Annotated[str, typer.Argument(help="Backbone spec, e.g. efficientnetv2_s or efficientnet_b4:fused=1-3.")]
    = "efficientnetv2_s",
    imgsz: Annotated[str | None, typer.Option(help="Image size N or HxW; default: the arch's own.")] = None,
    batch: Annotated[int, typer.Option(help="Batch size of the counted input.")] = 1,
    depth: Annotated[Depth, typer.Option(help="Rows per stage, block or leaf layer.")] = Depth.stage,
    counter: Annotated[list[CounterChoice] | None, typer.Option(
        help="Also count with these libraries and reconcile (repeatable; 'all' for every one).")] = None,
    features: Annotated[bool, typer.Option("--features", help="Show the multi-scale feature taps (P-levels).")]
    = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
) -> None:
    """The paper-style stage table: operator, stride, channels, layers, shapes, params and MACs per stage."""
    from netprobe.summary import summarize

    result = summarize(spec, imgsz, batch, depth.value)
    names = _counter_names(counter or [])
    counters = _run_counters(result, names) if names else {}
    records = [_stage_record(r) for r in result.rows]
    data = result.to_dict()
    data["stages"] = [_stage_json(r) for r in result.stages]
    if counters:
        data["counters"] = {name: c.macs for name, c in counters.items()}
        data["counter_details"] = {name: c.to_dict() for name, c in counters.items()}
    caption = _MACS_CAPTION

    def table(out: Console) -> None:
        n, c, h, w = result.input
        out.print(rich_table(STAGE_COLUMNS, records, f"{result.spec} — input {n}×{c}×{h}×{w}", caption))
        out.print(_totals_text(result), highlight=False)
        if features:
            out.print(rich_table(FEATURE_COLUMNS, result.features, "Feature taps for a detection neck"))
        if counters:
            out.print(_counter_table(counters))

    emit(fmt, table=table, columns=STAGE_COLUMNS, records=records, data=data, caption=caption)


FEATURE_COLUMNS = [Column("level", "Tap", justify="left"), Column("name", "Stage", justify="left"),
                   Column("channels", "Channels"), Column("stride", "Stride"), Column("shape", "C×H×W", _shape)]


def _stage_record(row) -> dict:
    rec = dict(row.__dict__)
    rec["channels"] = row.out[0]
    rec["p"] = f"P{row.p_level}" if row.p_level >= 0 else "-"
    return rec


def _stage_json(row) -> dict:
    keys = ("name", "op", "repeats", "kernel", "stride", "expand", "se", "out", "p_level", "params", "macs",
            "share", "other_ops", "act_mb")
    return {k: getattr(row, k) for k in keys}


def _totals_text(result) -> str:
    other = ", ".join(f"{k} {fmt_si(v)}" for k, v in result.other_by_kind.items())
    unsupported = f"\n[yellow]ops with no counting rule:[/] {result.unsupported}" if result.unsupported else ""
    return (f"[bold]Params[/] {result.params:,} (trainable {result.trainable:,})   "
            f"[bold]MACs[/] {fmt_si(result.macs)}   [bold]FLOPs[/] {fmt_si(result.flops)}   "
            f"[bold]Act.[/] {result.act_mb:.1f} MB\n"
            f"Not in MACs: {fmt_si(result.other_ops)} element ops ({other}){unsupported}\n"
            f"[dim]canonical: {result.canonical}[/]")


def _counter_names(choices: list[CounterChoice]) -> list[str]:
    from netprobe.counters import EXTERNAL

    names = [c.value for c in choices]
    if "all" in names:
        return ["native", *EXTERNAL]
    return ["native", *[n for n in EXTERNAL if n in names]] if names else []


def _run_counters(result, names: list[str]) -> dict:
    from netprobe.api import build
    from netprobe.counters import native_result, run_counter
    from netprobe.counting import count

    counters = {"native": native_result(count(build(result.spec, device="meta"), tuple(result.input)))}
    external = [n for n in names if n != "native"]
    if external:
        model = build(result.spec)
        for name in external:
            counters[name] = run_counter(name, model, tuple(result.input))
    return counters


def _counter_table(counters: dict):
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
    columns = [Column("name", "Counter", justify="left"), Column("macs", "Total", fmt_si),
               Column("ratio", "vs native"), *[Column(k, k) for k in COUNTER_KINDS],
               Column("convention", "What it counts", justify="left")]
    return rich_table(columns, records, "Counters reconciled (per op kind; ▲/▼ = more/less than native)",
                      "native conv/linear are MACs; its norm/act/mul/add/pool are element ops, not in its total.")


def main() -> None:
    app()
