"""`--dry-run` of bench and compare: what will run, its counted work and a time estimate, nothing measured."""

from __future__ import annotations

from netprobe.cli.output import Output, note
from netprobe.render import Column, Report, TableBlock, TextBlock, fmt_float, fmt_si

PLAN_COLUMNS = [
    Column("label", "Model", justify="left", ident=True), Column("batch", "Batch", ident=True),
    Column("imgsz", "Size", ident=True), Column("mode", "Mode", ident=True),
    Column("runtime", "Runtime", justify="left"), Column("macs_per_img", "MACs/img", fmt_si),
    Column("step_flops", "Step FLOPs", fmt_si), Column("memory_mb", "Mem MB", fmt_float(0)),
    Column("bound_ms", "Bound ms/step", fmt_float(1)),
    Column("steps", "Steps ≥"), Column("estimate_s", "Est. s ≥", fmt_float(1)),
    Column("error", "Not counted", justify="left"),
]


def show_plan(output: Output, configs: list, command: str, rounds: int = 1) -> None:
    """Count `configs`, predict their time, print it all; measure nothing."""
    from netprobe.estimate import ESTIMATE_KIND, plan

    estimate = plan(configs, rounds)
    records = [{**c.__dict__, "step_flops": 2 * c.step_macs if c.step_macs is not None else None,
                "estimate_s": c.estimate_s} for c in estimate.configs]
    shown = {"error": any(r["error"] for r in records), "runtime": any(r["runtime"] != "torch" for r in records)}
    columns = [c for c in PLAN_COLUMNS if shown.get(c.key, True)]
    caption = ("MACs/img: forward, counted. Step FLOPs: 2 per counted MAC of one step of the whole batch "
               "(forward, and backward when training). Mem MB: eager torch's peak memory for the step, counted on "
               "meta (parameters, gradients, optimizer state, saved activations, the largest backward transient; "
               "MB = 2^20 bytes; on CUDA add about 0.9 GB of context and workspaces). Bound ms/step and Est. s: "
               f"{ESTIMATE_KIND}. Roofs measured now on {estimate.device}: matmul {estimate.peak_tflops:.3f} "
               f"TFLOP/s, copy {estimate.bandwidth_gbs:.1f} GB/s.")
    total = f"Total: at least {estimate.estimate_s:,.0f} s (a prediction). Nothing was measured (--dry-run)."
    output = Output(output.fmt.value, ("plan",))
    output.show(Report([TableBlock("plan", columns, records, f"{command} --dry-run", caption), TextBlock(total)]),
                estimate.to_dict())
    output.finish()


def warn_if_long(configs: list, rounds: int = 1) -> None:
    """Say when a run is expected (lower bound) to take over ten minutes, before it starts."""
    from netprobe.estimate import LONG_RUN_S, ceiling_s, long_run_line, plan

    try:
        if ceiling_s(configs, rounds) <= LONG_RUN_S:  # not even the quick over-estimate is long: no plan
            return
        line = long_run_line(plan(configs, rounds, memory=False))
    except Exception:  # an estimate that cannot be made must not stop the run itself
        return
    if line:
        note(line)
