"""How `netprobe summary` shows a detector: one row per YAML row, sections, the stride check."""

from __future__ import annotations

from netprobe.frozen import frozen_note
from netprobe.render import CodeBlock, Column, Report, TableBlock, TextBlock, fmt_int, fmt_pct, fmt_si


def _hw(value: object) -> str:
    return "×".join(map(str, value))  # type: ignore[call-overload]


def _shapes(value: object) -> str:
    return "\n".join("×".join(map(str, s)) for s in value)  # type: ignore[union-attr]


def _levels(value: object) -> str:
    return " ".join(f"P{v}" if v is not None else "-" for v in value)  # type: ignore[union-attr]


def _strides(value: object) -> str:
    return " ".join(f"{v:g}" if v is not None else "-" for v in value)  # type: ignore[union-attr]


ROW_COLUMNS = [
    Column("index", "#", ident=True), Column("src", "from"), Column("repeats", "n"),
    Column("module", "module", justify="left", ident=True), Column("args", "args", justify="left"),
    Column("out", "out C×H×W", _shapes), Column("stride", "stride"), Column("strides", "cum. stride", _strides),
    Column("p_levels", "P", _levels), Column("params", "params", fmt_int), Column("macs", "MACs", fmt_si),
    Column("share", "MACs %", fmt_pct),
]
SECTION_COLUMNS = [Column("section", "section", justify="left", ident=True), Column("params", "params", fmt_int),
                   Column("macs", "MACs", fmt_si), Column("share", "MACs %", fmt_pct)]
HEAD_COLUMNS = [
    Column("row", "row", ident=True), Column("channels", "channels"), Column("hw", "H×W", _hw),
    Column("stride", "stride received"), Column("level", "P", lambda v: f"P{v}"),
    Column("expected_stride", "stride expected"), Column("expected_level", "expected P", lambda v: f"P{v}"),
    Column("expected_from", "expected by", justify="left"),
]
DETAIL_COLUMNS = [
    Column("path", "path", justify="left", ident=True), Column("type", "type", justify="left"),
    Column("out", "out C×H×W", _hw), Column("stride", "stride"),
    Column("p_level", "P", lambda v: f"P{v}"), Column("params", "params", fmt_int), Column("macs", "MACs", fmt_si),
]
SECTIONS = ("rows", "sections", "head_inputs", "detail", "totals")
CAPTION = ("MACs = multiply-accumulates (the papers' 'FLOPs'); FLOPs = 2 × MACs. out: each output map (the head: "
           "its inference output, without the batch); stride: the row's own; cum. stride: input pixels per output "
           "cell; P = log2 of it.")


def detector_report(s) -> Report:
    """Everything `summary` shows for a detector, as blocks every format renders alike."""
    n, c, h, w = s.input
    rows = [{**r.__dict__, "src": r.src if not isinstance(r.src, list) else ",".join(map(str, r.src)),
             "stride": "-" if r.stride is None else r.stride} for r in s.rows]
    report = Report([TableBlock("rows", ROW_COLUMNS, rows, f"{s.spec} — input {n}×{c}×{h}×{w}", CAPTION)])
    sections = [{"section": k, **v} for k, v in s.sections.items()]
    report.add(TableBlock("sections", SECTION_COLUMNS, sections, "Backbone, neck and head"))
    report.add(TextBlock(f"Params {s.params:,} (trainable {s.trainable:,})   MACs {fmt_si(s.macs)}   "
                         f"FLOPs {fmt_si(s.flops)}   ultralytics-style {s.ultralytics_gflops:.1f} GFLOPs per image",
                         "bold"))
    if s.frozen:
        report.add(TextBlock("note: " + frozen_note(s.frozen), "dim"))
    report.add(TextBlock(s.gflops_note, "dim"))
    if s.published:
        p = s.published
        params = f"{p['params']:,} params" if p.get("params") else f"{p.get('params_m')}M params"
        report.add(TextBlock(f"Published ({p['source']}): {params}, {p['gflops']} GFLOPs at {p['imgsz']} px"
                             + (" — fused: BatchNorm folded into the convs, so fewer params and no BN ops"
                                if p.get("fused") else "")))
    heads = [hi.__dict__ if hasattr(hi, "__dict__") else hi for hi in s.head_inputs]
    report.add(TableBlock("head_inputs", HEAD_COLUMNS, heads, "What the head reads"))
    for line in s.warnings:
        report.add(TextBlock("warning: " + line, "yellow"))
    for line in s.notes:
        report.add(TextBlock("note: " + line, "dim"))
    if s.unsupported:
        report.add(TextBlock("ops with no counting rule (not in any count): " + ", ".join(s.unsupported), "yellow"))
    report.add(CodeBlock("canonical: ", s.canonical))
    if s.detail:
        report.add(TableBlock("detail", DETAIL_COLUMNS, [d.__dict__ for d in s.detail],
                              f"{'Blocks' if s.depth == 'block' else 'Layers'} inside the rows"))
    totals = {k: getattr(s, k) for k in ("spec", "input", "params", "trainable", "macs", "flops",
                                         "ultralytics_gflops", "canonical")}
    report.add(TableBlock("totals", [Column(k, k) for k in totals], [totals], csv_only=True))
    return report
