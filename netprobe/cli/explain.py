"""`--breakdown`: why a step takes its time — time by op kind beside MACs and bytes, a roofline per
stage, and one sentence per configuration saying what the two show."""

from __future__ import annotations

from netprobe.op_kinds import KIND_LABELS
from netprobe.render import Column, TableBlock, TextBlock, fmt_float, fmt_pct, fmt_si

KIND_COLUMNS = [
    Column("config", "Config", justify="left", ident=True), Column("label", "Op kind", justify="left", ident=True),
    Column("fwd_ms", "Fwd ms", fmt_float(1)), Column("bwd_ms", "Bwd ms", fmt_float(1)),
    Column("opt_ms", "Opt ms", fmt_float(1)), Column("time_share", "Time %", fmt_pct),
    Column("macs_share", "MACs %", fmt_pct), Column("bytes_share", "Bytes %", fmt_pct),
    Column("gflops", "GFLOP/s", fmt_float(1)),
]
ROOF_COLUMNS = [
    Column("config", "Config", justify="left", ident=True), Column("name", "Stage", justify="left", ident=True),
    Column("family", "Blocks", justify="left"), Column("macs", "MACs", fmt_si),
    Column("mb", "MB moved", fmt_float(1)), Column("intensity", "FLOPs/byte", fmt_float(1)),
    Column("predicted_ms", "Roofline ms", fmt_float(1)), Column("measured_ms", "Measured ms", fmt_float(1)),
    Column("bound", "Bound", justify="left"), Column("achieved_gflops", "GFLOP/s", fmt_float(1)),
    Column("of_roof", "of roof", fmt_pct),
]
KIND_CAPTION = ("Time by op kind from a few profiled steps after the timed ones (CPU: op time; CUDA: kernel time); "
                "MACs and bytes counted op by op for the same step ({what}; bytes: what each op reads "
                "and writes, nothing fused). GFLOP/s = 2 × MACs ÷ time.")
TRAIN_ONLY = ("bwd_ms", "opt_ms")  # columns an inference-only breakdown leaves out, with the loss row


def ridge_text(roof: dict) -> str:
    """The ridge of `roof` as every line shows it (one source, one rounding)."""
    return f"ridge {roof['peak_tflops'] * 1e3 / roof['bandwidth_gbs']:.1f}"


def best_roof(rooflines: list[dict]) -> dict:
    """The roof of a report: the highest matmul rate measured in the run, as `timing.device_roof` keeps
    it (a slow moment lowers a measurement, not the device's roof); each config's own may be lower."""
    return max(rooflines, key=lambda r: r["peak_tflops"])


def roof_caption(roof: dict, infer_only: bool = False, lowest_peak: float | None = None, above: bool = False) -> str:
    text = (f"Roofs measured in the same run, {roof['dtype']}, the best of each: dense matmul "
            f"{roof['peak_tflops'] * 1e3:.1f} GFLOP/s, large copy {roof['bandwidth_gbs']:.1f} GB/s "
            f"({ridge_text(roof)} FLOPs/byte). Roofline ms: "
            "sum over the stage's layers of max(FLOPs ÷ peak, bytes ÷ bandwidth); Bound: the roof behind most of it. "
            f"Measured ms: {'the forward' if infer_only else 'forward + backward'} in the profiled steps. "
            "of roof: GFLOP/s ÷ that matmul rate.")
    if lowest_peak is not None and lowest_peak < roof["peak_tflops"]:
        text += (f" Each config's Roofline ms uses the roof known when it was profiled (as low as "
                 f"{lowest_peak * 1e3:.1f} GFLOP/s).")
    if above:
        text += (" Over 100% of roof: the stage ran faster than the dense matmul measured here, so that roof is "
                 "no bound: one matmul size, measured while the machine may have been busy (its convs may also "
                 "use faster kernels); read it as a measurement.")
    return text


def explain_blocks(items: list[tuple[str, object]]) -> list:
    """The breakdown and roofline tables for every (label, result) that has them, and what they show."""
    kinds, stages, lines = [], [], []
    for label, result in items:
        if result.breakdown_note:
            lines.append(TextBlock(f"{label}: {result.breakdown_note}", "yellow"))
        if not result.breakdown:
            continue
        kinds += [{**r, "config": label, "label": KIND_LABELS.get(r["kind"], r["kind"])}
                  for r in result.breakdown if r["stage"] is None]
        if result.roofline:
            stages += [{**s, "config": label, "mb": s["bytes"] / 2**20} for s in result.roofline["stages"]]
    roofs = [r.roofline for _, r in items if r.breakdown and r.roofline]
    roof = best_roof(roofs) if roofs else None
    for stage in stages:
        stage["of_roof"] = stage["achieved_gflops"] / (roof["peak_tflops"] * 1e3) if stage["achieved_gflops"] else None
    for label, result in items:
        if result.breakdown:
            lines.append(TextBlock(why(label, result.breakdown, result.roofline, roof)))
    # inference alone (bench --mode infer, any --runtime): no backward, optimizer or loss to show
    infer_only = all(getattr(r, "mode", "train") == "infer" for _, r in items if r.breakdown)
    columns = [c for c in KIND_COLUMNS if not (infer_only and c.key in TRAIN_ONLY)]
    if infer_only:
        kinds = [k for k in kinds if k["kind"] != "loss" or k["time_share"]]
    caption = KIND_CAPTION.format(what="the forward" if infer_only else "forward and backward")
    blocks: list = []
    if kinds:
        blocks.append(TableBlock("breakdown", columns, kinds, "Where the step's time goes", caption))
    if stages:
        above = any((s["of_roof"] or 0) > 1 for s in stages)
        blocks.append(TableBlock("roofline", ROOF_COLUMNS, stages, "Roofline per stage",
                                 roof_caption(roof, infer_only, min(r["peak_tflops"] for r in roofs), above)))
    return blocks + lines


def why(label: str, breakdown: list[dict], roofline: dict | None, roof: dict | None = None) -> str:
    """One sentence from the numbers: what depthwise convs cost against what they compute, and which
    stages the roofline calls memory-bound; `roof`: the report's roofs (default: this roofline's)."""
    whole = {r["kind"]: r for r in breakdown if r["stage"] is None}
    dw = whole.get("depthwise_conv")
    dense = [whole[k] for k in ("dense_conv", "pointwise_conv") if k in whole and whole[k]["gflops"]]
    dense_rate = max((r["gflops"] for r in dense), default=None)
    bound = [s["name"] for s in (roofline or {}).get("stages", []) if s["bound"] == "memory"]
    stages = (f"the roofline calls {len(bound)} of {len(roofline['stages'])} stages memory-bound "
              f"({', '.join(bound)})" if roofline and bound else "the roofline calls no stage memory-bound")
    if dw is None or not dw["time_share"]:
        top = max(whole.values(), key=lambda r: r["time_share"])
        return (f"{label}: no depthwise convs; {KIND_LABELS.get(top['kind'], top['kind'])} takes the most time "
                f"({_share(top['time_share'])} for {_share(top['macs_share'])} of the MACs), and {stages}.")
    ratio = dw["time_share"] / dw["macs_share"] if dw["macs_share"] else float("inf")
    rates = f", running at {dw['gflops']:.1f} GFLOP/s" + (f" against {dense_rate:.1f} in dense and 1×1 convs"
                                                         if dense_rate else "") if dw["gflops"] else ""
    roofs = roofline and (roof or roofline)
    return (f"{label}: depthwise convs take {_share(dw['time_share'])} of the step for {_share(dw['macs_share'])} "
            f"of its MACs ({ratio:.1f}× their share){rates}{_intensity(dw, roofs)}; {stages}.")


def _share(x: float) -> str:
    """A share as a sentence shows it: whole percents, one decimal under 10%."""
    return f"{x:.0%}" if x >= 0.095 else f"{100 * x:.1f}%"


def _intensity(dw: dict, roofline: dict | None) -> str:
    """What the depthwise convs' arithmetic per byte says, against the roofs measured in the run."""
    if not dw.get("bytes") or not roofline:
        return ""
    intensity = 2 * dw["macs"] / dw["bytes"]
    peak, bandwidth = roofline["peak_tflops"] * 1e3, roofline["bandwidth_gbs"]  # GFLOP/s, GB/s
    allowed = min(peak, intensity * bandwidth)
    text = (f"; at {intensity:.1f} FLOPs per byte ({ridge_text(roofline)}) the roofline calls them "
            f"{'memory' if intensity * bandwidth < peak else 'compute'}-bound and allows {allowed:.0f} GFLOP/s")
    if dw.get("gflops"):
        reach = dw["gflops"] / allowed
        text += f"; they reach {reach:.0%} of that" + (
            ", so the kernels, not the memory system, set their pace" if reach < 0.25 else "")
    if dw["fwd_ms"] and dw["bwd_ms"]:
        text += f" (their backward takes {dw['bwd_ms'] / dw['fwd_ms']:.1f}× their forward)"
    return text
