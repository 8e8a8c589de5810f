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
from netprobe.render import (
    Column,
    Format,
    fmt_float,
    fmt_int,
    fmt_mb,
    fmt_pct,
    fmt_si,
    rich_table,
    to_csv,
    to_json,
    to_markdown,
)

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
def list_command(fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table) -> None:
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
    Column("share", "MACs %", fmt_pct), Column("act_mb", "Act. MB", fmt_float(1)),
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
    rec["p"] = f"P{row.p_level}" if row.p_level is not None else "-"
    return rec


def _stage_json(row) -> dict:
    keys = ("name", "op", "repeats", "kernel", "stride", "expand", "se", "out", "p_level", "params", "macs",
            "share", "other_ops", "act_mb")
    return {k: getattr(row, k) for k in keys}


def _totals_text(result) -> str:
    other = ", ".join(f"{k} {fmt_si(v)}" for k, v in result.other_by_kind.items())
    unsupported = f"\n[yellow]ops with no counting rule:[/] {result.unsupported}" if result.unsupported else ""
    ref = result.reference
    if ref:
        unsupported += (f"\nPublished ({ref['source']}): {ref['params']:,} params, {ref['gmacs']} GMACs at "
                        f"{ref['imgsz']} px")
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


# ---- bench --------------------------------------------------------------------------------------

class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class ModeChoice(str, Enum):
    train = "train"
    infer = "infer"
    both = "both"


class AmpChoice(str, Enum):
    off = "off"
    bf16 = "bf16"
    fp16 = "fp16"


class OptimizerChoice(str, Enum):
    sgd = "sgd"
    adamw = "adamw"


def _int_list(name: str, text: str | None) -> list:
    if text is None:
        return [None]
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise NetprobeError(f"--{name} {text!r} is not a comma list of integers, e.g. --{name} 8,16") from None


BENCH_COLUMNS = [
    Column("spec", "Spec", justify="left"), Column("batch", "Batch"), Column("imgsz", "Size"),
    Column("mode", "Mode", justify="left"), Column("dtype", "dtype", justify="left"),
    Column("status", "Status", justify="left"), Column("imgs_per_s", "imgs/s", fmt_float(1)),
    Column("step_ms", "Step ms", fmt_float(1)), Column("spread", "p10–p90 ms", justify="right"),
    Column("fwd_ms", "Fwd ms", fmt_float(1)), Column("bwd_ms", "Bwd ms", fmt_float(1)),
    Column("opt_ms", "Opt ms", fmt_float(1)),
    Column("peak_mem_mb", "Peak MB", fmt_mb),
    Column("tflops", "TFLOP/s", fmt_float(3)), Column("peak_fraction", "of peak", fmt_pct),
]
STAGE_TIME_COLUMNS = [
    Column("name", "Stage", justify="left"), Column("in_shape", "Input C×H×W", _shape),
    Column("fwd_ms", "Fwd ms", fmt_float(1)), Column("bwd_ms", "Bwd ms", fmt_float(1)), Column("macs", "MACs", fmt_si),
    Column("fwd_gflops", "Fwd GFLOP/s", fmt_float(1)),
    Column("bwd_gflops", "Bwd GFLOP/s", fmt_float(1)),
]


def _bench_record(result) -> dict:
    rec = result.to_dict()
    if result.step_p10_ms is not None:
        rec["spread"] = f"{result.step_p10_ms:.1f}–{result.step_p90_ms:.1f}"
    if result.status != "ok":
        rec["status"] = result.status.upper() if result.status == "oom" else f"error: {result.error}"
    return rec


def progress_bar():
    """A rich progress bar on stderr, so stdout stays clean for json and csv."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)


@command("bench")
def bench(
    specs: Annotated[list[str] | None, typer.Argument(help="Specs to measure; default efficientnetv2_s.")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="auto picks CUDA when present.")] = DeviceChoice.auto,
    batch: Annotated[str, typer.Option(help="Batch size, or a comma list for a grid.")] = "8",
    imgsz: Annotated[str | None, typer.Option(help="Image size, or a comma list; default: the arch's own.")]
    = None,
    mode: Annotated[ModeChoice, typer.Option(help="train step, inference, or both.")] = ModeChoice.train,
    amp: Annotated[AmpChoice, typer.Option(help="Autocast dtype (fp16 adds a gradient scaler).")] = AmpChoice.off,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC model and input.")] = False,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile; compile time reported apart.")]
    = False,
    optimizer: Annotated[OptimizerChoice, typer.Option(help="Optimizer of the train step.")] = OptimizerChoice.sgd,
    warmup: Annotated[int, typer.Option(help="Untimed iterations first.")] = 3,
    iters: Annotated[int, typer.Option(help="Timed iterations.")] = 10,
    threads: Annotated[int | None, typer.Option(help="CPU threads (torch.set_num_threads).")] = None,
    per_stage: Annotated[bool, typer.Option("--per-stage", help="Forward/backward time of each stage.")] = False,
    find_max_batch: Annotated[bool, typer.Option("--find-max-batch", help="Search the largest batch that fits.")]
    = False,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    out: Annotated[str | None, typer.Option(help="Also write results to FILE (.json or .csv), atomically.")]
    = None,
) -> None:
    """Time forward, backward and optimizer steps; memory, achieved TFLOP/s, OOM as a result."""
    from netprobe import bench as B

    if threads is not None:
        if threads < 1:
            raise NetprobeError(f"--threads {threads} is not allowed; threads must be at least 1")
        import torch

        torch.set_num_threads(threads)
    if out and not out.endswith((".json", ".csv")):
        raise NetprobeError(f"--out {out!r}: use a file name ending in .json or .csv")
    dev = B.resolve_device(device.value)
    if device is DeviceChoice.auto:
        Console(stderr=True).print(f"device: auto → {dev}" + ("" if dev == "cuda" else " (no CUDA available)"))
    modes = ["train", "infer"] if mode is ModeChoice.both else [mode.value]
    configs = B.grid(specs or ["efficientnetv2_s"], _int_list("batch", batch), _int_list("imgsz", imgsz), modes,
                     device=dev, amp=amp.value, channels_last=channels_last, compile=compile_model,
                     optimizer=optimizer.value, warmup=warmup, iters=iters, per_stage=per_stage)
    for config in configs:
        B.validate(config)
    if find_max_batch:
        return _find_max_batch(B, configs, dev, fmt, out)
    results, interrupted = [], False
    with progress_bar() as progress:
        task = progress.add_task("bench", total=len(configs) * (warmup + iters))
        try:
            for config in configs:
                progress.update(task, description=f"{config.spec} b{config.batch} {config.imgsz or ''} {config.mode}")
                results.append(B.benchmark(config, lambda: progress.advance(task)))
        except KeyboardInterrupt:
            interrupted = True
    _report_bench(B, results, dev, fmt, out)
    if interrupted:
        Console(stderr=True).print(f"interrupted: {len(results)} of {len(configs)} configurations finished")
        raise typer.Exit(130)


def _report_bench(B, results: list, dev: str, fmt: Format, out: str | None) -> None:
    info = B.device_info(dev)
    peaks = {r.dtype: r.peak_tflops for r in results if r.peak_tflops}
    info["peak_tflops_measured"] = peaks
    data = {"device": info, "results": [r.to_dict() for r in results]}
    records = [_bench_record(r) for r in results]
    if out:
        from netprobe.render import write_atomic

        write_atomic(out, to_json(data) if out.endswith(".json") else to_csv(BENCH_RESULT_CSV, data["results"]))
    mem = next((r.mem_kind for r in results if r.mem_kind), "")
    caption = (f"{info['name']} · torch {info['torch']} · {info['threads']} threads · peak (dense matmul, measured): "
               + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in peaks.items())
               + f" · Peak MB: {mem} · TFLOP/s counts 2 FLOPs per MAC, train = 3 × forward")

    columns = BENCH_COLUMNS + ([Column("compile_s", "Compile s", fmt_float(1))]
                               if any(r.compiled for r in results) else [])

    def table(console: Console) -> None:
        console.print(rich_table(columns, records, "netprobe bench", caption))
        for r in results:
            if r.stages:
                stage_recs = [s.__dict__ for s in r.stages]
                console.print(rich_table(STAGE_TIME_COLUMNS, stage_recs, f"Per stage: {r.spec} b{r.batch} {r.imgsz}px "
                                         f"{r.dtype}", "backward GFLOP/s assumes 2 × the forward's work"))

    emit(fmt, table=table, columns=columns, records=records, data=data, caption=caption)


BENCH_RESULT_CSV = [Column(k, k) for k in (
    "spec", "device", "dtype", "batch", "imgsz", "mode", "status", "imgs_per_s", "fwd_ms", "bwd_ms", "opt_ms",
    "step_ms", "step_p10_ms", "step_p90_ms", "peak_mem_mb", "mem_kind", "tflops", "peak_tflops", "peak_fraction",
    "compile_s", "macs_per_img", "params", "channels_last", "compiled", "optimizer", "iters", "error")]


def _find_max_batch(B, configs: list, dev: str, fmt: Format, out: str | None) -> None:
    if dev != "cuda":
        raise NetprobeError("--find-max-batch needs --device cuda: on the CPU, memory is shared with the system "
                            "and swaps rather than failing cleanly")
    from dataclasses import replace

    results = []
    seen = set()
    for config in configs:
        key = (config.spec, config.imgsz, config.mode)
        if key in seen:
            continue
        seen.add(key)
        tried: dict[int, object] = {}

        def fits(b: int, config=config, tried=tried) -> bool:
            tried[b] = B.benchmark(replace(config, batch=b, warmup=1, iters=2, per_stage=False))
            return tried[b].status == "ok"

        best = B.find_max_batch(fits)
        if best:
            results.append(tried[best])
    _report_bench(B, results, dev, fmt, out)


# ---- compare ------------------------------------------------------------------------------------

def _speed(value: object) -> str:
    return f"{float(value):.2f}×"  # type: ignore[arg-type]


def _signed_pct(value: object) -> str:
    return f"{100 * float(value):+.1f}%"  # type: ignore[arg-type]


COMPARE_COLUMNS = [
    Column("label", "Variant", justify="left"), Column("params", "Params", fmt_si),
    Column("macs_base", "MACs @base size", fmt_si), Column("macs", "MACs @run size", fmt_si),
    Column("status", "Status", justify="left"), Column("train_imgs_per_s", "Train imgs/s", fmt_float(2)),
    Column("spread", "min–max", justify="right"), Column("speedup", "Speed vs first", _speed),
    Column("tflops", "TFLOP/s", fmt_float(3)), Column("peak_fraction", "of peak", fmt_pct),
    Column("peak_mem_mb", "Peak MB", fmt_mb),
]
PAPER_COLUMNS = [
    Column("paper_params", "Paper params", lambda v: f"{v}M"), Column("dev_params", "Δ params", _signed_pct),
    Column("paper_macs", "Paper FLOPs (MACs)", lambda v: f"{v}B"), Column("dev_macs", "Δ MACs", _signed_pct),
    Column("paper_v100", "Paper V100 imgs/s"), Column("paper_tpu", "Paper TPUv3 imgs/s"),
    Column("paper_speedup", "Paper V100 speed", _speed),
]
TABLE2_COLUMNS = [Column("paper_v100", "Paper V100 imgs/s (16 GB)")]


def _compare_record(row) -> dict:
    rec = row.to_dict()
    if row.imgs_per_s_min is not None:
        rec["spread"] = f"{row.imgs_per_s_min:.2f}–{row.imgs_per_s_max:.2f}"
    if row.status == "oom":
        rec["status"] = "OOM"
    paper, dev = row.paper or {}, row.deviation or {}
    rec.update(paper_params=paper.get("params_m"), paper_macs=paper.get("macs_b"),
               paper_v100=("OOM" if paper.get("v100_oom") else paper.get("v100_imgs_per_s")),
               paper_tpu=paper.get("tpu_imgs_per_s"), dev_params=dev.get("params"), dev_macs=dev.get("macs"),
               paper_speedup=dev.get("paper_v100_speedup"))
    return rec


@command("compare")
def compare(
    what: Annotated[list[str], typer.Argument(help="fused-stages, batch-imgsz, or specs to put side by side.")],
    base: Annotated[str | None, typer.Option(help="Base arch (fused-stages: efficientnet_b4; batch-imgsz: "
                                                  "efficientnet_b6).")] = None,
    device: Annotated[DeviceChoice, typer.Option(help="auto picks CUDA when present.")] = DeviceChoice.auto,
    batch: Annotated[str | None, typer.Option(help="Batch (batch-imgsz: a comma list). Default by device.")]
    = None,
    imgsz: Annotated[str | None, typer.Option(help="Image size (batch-imgsz: a comma list). Default by device.")]
    = None,
    amp: Annotated[AmpChoice, typer.Option(help="Autocast dtype.")] = AmpChoice.off,
    channels_last: Annotated[bool, typer.Option("--channels-last", help="NHWC model and input.")] = False,
    iters: Annotated[int | None, typer.Option(help="Timed iterations per variant per round.")] = None,
    rounds: Annotated[int | None, typer.Option(help="Interleaved rounds (A B C D, A B C D, ...).")] = None,
    fused_kernel: Annotated[str, typer.Option(help="Kernel of the fused stages: keep (each stage's own) or an "
                                                   "odd size such as 3.")] = "keep",
    plot: Annotated[str | None, typer.Option(help="Write a PNG of throughput and MACs per variant.")] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
) -> None:
    """Train the variants side by side (interleaved rounds), with the paper's figures beside ours."""
    from netprobe import compare as C
    from netprobe.bench import resolve_device

    experiment = what[0] if what[0] in C.EXPERIMENTS else "specs"
    if experiment == "specs" and len(what) == 1 and ":" not in what[0] and what[0] not in C.known_archs():
        raise NetprobeError(f"unknown experiment {what[0]!r}: use {' or '.join(C.EXPERIMENTS)}, or give specs "
                            "to put side by side ('netprobe list' shows the archs)")
    if experiment != "specs" and len(what) > 1:
        raise NetprobeError(f"{experiment} takes no specs; use --base to choose the arch")
    if plot and not plot.endswith(".png"):
        raise NetprobeError(f"--plot {plot!r}: give a file name ending in .png")
    if plot:
        _require_matplotlib()
    dev = resolve_device(device.value)
    base = base or ("efficientnet_b6" if experiment == "batch-imgsz" else "efficientnet_b4")
    from netprobe.spec import parse_spec

    base_size = parse_spec(base).table.imgsz
    batches = [b for b in _int_list("batch", batch) if b is not None]
    sizes = [s for s in _int_list("imgsz", imgsz) if s is not None]
    settings = C.default_settings(dev, base_size, batches[0] if batches else None, sizes[0] if sizes else None,
                                  iters, rounds, amp=amp.value, channels_last=channels_last)
    if experiment == "fused-stages":
        variants = C.fused_stage_variants(base, fused_kernel, settings.batch, settings.imgsz)
    elif experiment == "batch-imgsz":
        cuda = dev == "cuda"
        variants = C.batch_imgsz_variants(base, batches or ([12, 24] if cuda else [2, 4]),
                                          sizes or ([380, 512] if cuda else [128, 160]))
    else:
        variants = C.spec_variants(what, settings.batch, sizes[0] if sizes else None)
    from netprobe.bench import validate

    for v in variants:
        validate(BenchConfigFor(v, settings))
    _run_compare(C, experiment, variants, settings, plot, fmt)


def BenchConfigFor(variant, settings):
    from netprobe.bench import BenchConfig

    return BenchConfig(variant.spec, settings.device, variant.batch, variant.imgsz, "train", settings.amp,
                       settings.channels_last, warmup=settings.warmup, iters=settings.iters)


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NetprobeError("--plot needs matplotlib: pip install matplotlib (or netprobe[plot])") from None


def _run_compare(C, experiment: str, variants: list, settings, plot: str | None, fmt: Format) -> None:
    from netprobe.bench import device_info

    err = Console(stderr=True)
    info = device_info(settings.device)
    sizes = sorted({v.imgsz for v in variants})
    batches = sorted({v.batch for v in variants})
    settings_line = (f"{experiment} on {info['name']} ({settings.device}, torch {info['torch']}, {info['threads']} "
                     f"threads): batch {','.join(map(str, batches))}, {','.join(map(str, sizes))} px, "
                     f"amp {settings.amp}, channels_last {settings.channels_last}, {settings.rounds} rounds × "
                     f"{settings.iters} iters (+{settings.warmup} warm-up), variants interleaved")
    if fmt is Format.table:
        _console().print(settings_line, highlight=False)
    elif fmt is Format.markdown:
        print(f"Settings: {settings_line}.\n")
    rows, interrupted = [], False
    with progress_bar() as progress:
        task = progress.add_task("compare", total=settings.rounds * len(variants))

        def step(label: str, r: int) -> None:
            progress.update(task, description=f"round {r + 1}/{settings.rounds}: {label}")

        try:
            for rows in C.run(variants, settings, step):
                progress.update(task, completed=(rows[0].rounds or 0) * len(variants))
        except KeyboardInterrupt:
            interrupted = True
    if not rows:
        err.print("interrupted before the first round finished: nothing measured")
        raise typer.Exit(130)
    records = [_compare_record(r) for r in rows]
    has_table3 = any(r.paper and "params_m" in r.paper for r in rows)
    has_table2 = any(r.paper and "v100_oom" in r.paper for r in rows)
    columns = COMPARE_COLUMNS + (PAPER_COLUMNS if has_table3 else []) + (TABLE2_COLUMNS if has_table2 else [])
    caption = ("MACs = multiply-accumulates per image (the paper's 'FLOPs'). Train imgs/s: median over rounds. "
               "Paper columns: EfficientNetV2 paper (arXiv:2104.00298) " + ("Table 3" if has_table3 else "Table 2")
               + ", published figures, not measured here." if (has_table3 or has_table2) else
               "MACs = multiply-accumulates per image. Train imgs/s: median over rounds.")
    data = {"experiment": experiment, "device": info, "settings": settings.__dict__,
            "batch": settings.batch if experiment != "batch-imgsz" else batches,
            "imgsz": settings.imgsz if experiment != "batch-imgsz" else sizes,
            "rows": [r.to_dict() for r in rows]}
    if plot:
        from netprobe.plot import plot_compare

        plot_compare(rows, plot, settings_line)
        err.print(f"plot written to {plot}")
    emit(fmt, table=lambda out: out.print(rich_table(columns, records, f"netprobe compare {experiment}", caption)),
         columns=columns, records=records, data=data, caption=caption)
    if interrupted:
        err.print(f"interrupted: showing {rows[0].rounds} finished round(s)")
        raise typer.Exit(130)
