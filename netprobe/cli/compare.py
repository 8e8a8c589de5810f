"""`netprobe compare`: variants trained side by side, with the paper's figures beside ours."""

from __future__ import annotations

from typing import Annotated

import typer

from netprobe.cli import options as opt
from netprobe.cli.app import command, interrupt_code
from netprobe.cli.output import Output, note, progress_bar
from netprobe.cli.plots import write_compare_plot, write_roofline
from netprobe.cli.saving import DbOption, NoSaveOption, check_database, record_run
from netprobe.errors import InputError, quote
from netprobe.render import Column, Format, Report, TableBlock, TextBlock, fmt_float, fmt_mb, fmt_pct, fmt_si, plural
from netprobe.runtimes import REGISTRY, check_precisions, parse_precisions, precision_help


def _speed(value: object) -> str:
    return f"{float(value):.2f}×"  # type: ignore[arg-type]


def _signed_pct(value: object) -> str:
    return f"{100 * float(value):+.1f}%"  # type: ignore[arg-type]


COMPARE_COLUMNS = [
    Column("label", "Variant", justify="left", ident=True), Column("params", "Params", fmt_si),
    Column("macs_base", "MACs @base size", fmt_si), Column("macs", "MACs @run size", fmt_si),
    Column("status", "Status", justify="left", ident=True), Column("train_imgs_per_s", "Train imgs/s", fmt_float(2)),
    Column("spread", "min–max"), Column("speedup", "Speed vs first", _speed),
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
    Column("infer_imgs_per_s", "Infer imgs/s", fmt_float(2)), Column("spread", "min–max"),
    Column("speedup", "Speed vs first", _speed), Column("vs_torch", "vs torch", _speed),
    Column("peak_mem_mb", "Peak MB", fmt_mb),
]
TABLE2_COLUMNS = [Column("paper_v100", "Paper V100 imgs/s (16 GB)")]


def _compare_record(row) -> dict:
    rec = row.to_dict()
    rec["precision_text"] = row.precision + (f" → {row.precision_ran}" if row.precision_ran
                                             and row.precision_ran != row.precision else "")
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


def _one(option: str, values: list, experiment: str) -> object:
    """The single value an option takes outside batch-imgsz; a list there is an error, not its first item."""
    if len(values) > 1:
        raise InputError(f"{option} {','.join(map(str, values))}: {experiment} takes one value; a comma list is "
                         "only for batch-imgsz (or run compare once per value)")
    return values[0] if values else None


@command("compare", "Train variants side by side, the paper beside.")
def compare(
    what: Annotated[list[str], typer.Argument(help="fused-stages, batch-imgsz, or models to put side by side "
                                                   "(any spec summary takes).")],
    base: Annotated[str | None, typer.Option(help="Base arch (fused-stages: efficientnet_b4; batch-imgsz: "
                                                  "efficientnet_b6).")] = None,
    device: opt.DeviceOption = opt.DeviceChoice.auto,
    batch: Annotated[str | None, typer.Option(help="Batch, 1-65,536 (batch-imgsz: a comma list). Default by "
                                                   "device.")] = None,
    imgsz: Annotated[str | None, typer.Option(help="Image size N or HxW (batch-imgsz: a comma list). Default by "
                                                   "device.")] = None,
    amp: Annotated[opt.AmpChoice, typer.Option(help="Autocast dtype.")] = opt.AmpChoice.off,
    channels_last: opt.ChannelsLastOption = False,
    iters: Annotated[int | None, typer.Option(help="Timed iterations per variant per round (1-100,000).")] = None,
    max_warmup_s: opt.MaxWarmupOption = opt.DEFAULT_MAX_WARMUP_S,
    rounds: Annotated[int | None, typer.Option(help="Interleaved rounds, A B C D, A B C D, ... (1-1,000).")]
    = None,
    fused_kernel: Annotated[str, typer.Option(help="Kernel of the fused stages: keep (each stage's own) or an "
                                                   "odd size such as 3.")] = "keep",
    breakdown: Annotated[bool, typer.Option("--breakdown", help="Profile each variant's last round: time by op kind, "
                                                               "a roofline per stage, what they show.")] = False,
    plot: Annotated[str | None, typer.Option(help="Write a PNG: throughput and MACs per variant, or with "
                                                  "--breakdown the roofline, one panel per variant.")] = None,
    scale: opt.ScaleOption = None,
    modules: opt.ModulesOption = None,
    nproc: Annotated[int | None, typer.Option("--nproc", help="Data-parallel on N ranks: each variant's scaling "
                                                             "rows (see bench --nproc).")] = None,
    world_sizes: opt.WorldSizesOption = None,
    global_batch: opt.GlobalBatchOption = None,
    bucket_mb: opt.BucketOption = 25,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.table,
    runtime: Annotated[str | None, typer.Option(help="Compare inference in these runtimes instead of training: "
                                                     f"a comma list of {', '.join(REGISTRY)} (eager torch always, "
                                                     "as the reference).")] = None,
    precision: Annotated[str | None, typer.Option(help=precision_help())] = None,
    calib: Annotated[str | None, typer.Option(help="int8 calibration (see bench --calib).")] = None,
    build_timeout: opt.BuildTimeoutOption = opt.DEFAULT_BUILD_TIMEOUT_S,
    db: DbOption = None,
    no_save: NoSaveOption = False,
) -> None:
    """Train the variants side by side (interleaved rounds), with the paper's figures beside ours."""
    from netprobe import compare as C
    from netprobe.bench import LIMITS
    from netprobe.timing import resolve_device

    output = Output(fmt.value, ("rows", "breakdown", "roofline"), None, {"plot": (plot, (".png",))})
    check_database(output, "compare", db, no_save)
    experiment = what[0] if what[0] in C.EXPERIMENTS else "specs"
    if experiment != "specs" and len(what) > 1:
        raise InputError(f"{experiment} takes no models; use --base to choose the arch")
    if plot:
        opt.require_matplotlib()
    if (scale or modules) and experiment != "specs":
        raise InputError(f"--scale and --modules are for detector YAML files given as models; {experiment} uses "
                         "--base")
    if fused_kernel != "keep" and experiment != "fused-stages":
        raise InputError("--fused-kernel applies to fused-stages only")
    batches = opt.int_list("--batch", batch, *LIMITS["batch"])
    sizes = opt.size_list("--imgsz", imgsz)
    opt.set_build_timeout(build_timeout)
    if experiment == "specs" and len(what) == 1:
        _check_word(C, what[0])
    dev = resolve_device(device.value)
    one_batch = _one("--batch", batches, experiment) if experiment != "batch-imgsz" else None
    one_size = _one("--imgsz", sizes, experiment) if experiment != "batch-imgsz" else None
    given_base = base
    base = base or ("efficientnet_b6" if experiment == "batch-imgsz" else "efficientnet_b4")
    from netprobe.target import resolve

    base_size = resolve(base).imgsz or (224, 224)
    runtimes = tuple(opt.runtime_list(runtime)) if runtime is not None else ()
    precisions = tuple(parse_precisions(precision))
    if calib is not None and "int8" not in precisions:
        raise InputError("--calib gives int8 quantization its ranges; add --precision int8 (with a --runtime)")
    check_precisions(list(precisions), list(runtimes) or ["torch"], dev, ["infer" if runtimes else "train"])
    settings = C.default_settings(dev, base_size[0], one_batch, one_size, iters, rounds, max_warmup_s=max_warmup_s,
                                  amp=amp.value, channels_last=channels_last, breakdown=breakdown,
                                  runtimes=runtimes, precisions=precisions, calib=calib)
    if experiment == "fused-stages":
        variants = C.fused_stage_variants(base, fused_kernel, settings.batch, settings.imgsz)
    elif experiment == "batch-imgsz":
        cuda = dev == "cuda"
        variants = C.batch_imgsz_variants(base, batches or ([12, 24] if cuda else [2, 4]),
                                          sizes or ([380, 512] if cuda else [128, 160]))
    else:
        variants = C.spec_variants([resolve(w, None, scale, modules) for w in what], settings.batch, one_size)
    C.check_variants(variants, settings)
    if nproc is not None:
        from netprobe.cli.distributed import DistOptions, check_plans, run_all

        if plot or breakdown or runtime:
            raise InputError("--plot, --breakdown and --runtime go with the single-device comparison; leave them "
                             "out with --nproc")
        sizes_asked = opt.int_list("--world-sizes", world_sizes, 1, 4096) or None
        options = DistOptions(nproc, sizes_asked, global_batch, bucket_mb)
        jobs = [(v.label, v.config(settings)) for v in variants]
        check_plans([c for _, c in jobs], options)
        run_all(output, jobs, options, f"netprobe compare {experiment} --nproc {nproc}",
                " Variants run one after another (not interleaved).")
        return
    if world_sizes is not None or global_batch is not None or bucket_mb != 25:
        raise InputError("--world-sizes, --global-batch and --bucket-mb go with --nproc")
    if experiment != "specs" and given_base is None:
        table = "Table 2 (batch x image size)" if experiment == "batch-imgsz" else "Table 3 (fused stages)"
        note(f"no --base given: {base}, the base of the EfficientNetV2 paper's {table}")
    _run_compare(C, output, experiment, variants, settings, plot)


def _check_word(C, word: str) -> None:
    """A single word that is no model: an experiment mistyped, or an unknown arch (its own message)."""
    from netprobe.errors import SpecError, closest
    from netprobe.target import resolve

    try:
        resolve(word)
    except SpecError as exc:
        close = closest(word, C.EXPERIMENTS, n=1)
        if close or ("_" not in word and ":" not in word and word.replace("-", "").isalpha()):
            hint = f"did you mean {close[0]}?" if close else f"use {' or '.join(C.EXPERIMENTS)}"
            raise InputError(f"unknown experiment {quote(word)}: {hint} Or give models to put side by side "
                             "('netprobe list' shows the archs)") from None
        raise exc from None


def _run_compare(C, output: Output, experiment: str, variants: list, settings, plot: str | None) -> None:
    comparison = C.Comparison(experiment, variants, settings)
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
    output.show(compare_report(experiment, rows, comparison.settings_line, data["note"]), data)
    ok = True
    if plot and settings.breakdown:
        ok = write_roofline(output, [(r.label, r) for r in rows], plot, f"netprobe compare {experiment} --breakdown")
    elif plot:
        ok = write_compare_plot(output, rows, plot, comparison.settings_line)
    ok = record_run(output, data) and ok
    if stopped is not None:
        note(f"interrupted: showing {plural(comparison.finished, 'finished round')}")
        output.finish(ok)
        raise typer.Exit(stopped)
    output.finish(ok)


def compare_report(experiment: str, rows: list, settings_line: str, busy: str | None = None) -> Report:
    records = [_compare_record(r) for r in rows]
    has_table3 = any(r.paper and "params_m" in r.paper for r in rows)
    has_table2 = any(r.paper and "v100_oom" in r.paper for r in rows)
    columns = COMPARE_COLUMNS + (PAPER_COLUMNS if has_table3 else []) + (TABLE2_COLUMNS if has_table2 else [])
    caption = "MACs = multiply-accumulates per image (the paper's 'FLOPs'). Train imgs/s: median over rounds."
    if any(r.mode == "infer" for r in rows):  # runtimes: inference, and the paper's train speeds do not apply
        columns = RUNTIME_COMPARE_COLUMNS + (PAPER_COLUMNS[:4] if has_table3 else [])
        caption = ("MACs = multiply-accumulates per image (the paper's 'FLOPs'). Infer imgs/s: median over rounds, "
                   "the same input in every runtime. Speed vs first: against the first variant in the same "
                   "runtime and precision; vs torch: against the same variant in eager torch.")
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

    return Report([TextBlock(f"Settings: {settings_line}."),
                   TableBlock("rows", columns, records, f"netprobe compare {experiment}", caption),
                   *([TextBlock(busy, "yellow")] if busy else []),
                   *explain_blocks([(r.label + (f" ({r.runtime} {r.precision})" if r.mode == "infer" else ""), r)
                                     for r in rows])])
