"""A roofline per stage: is each stage bound by arithmetic or by memory traffic on this device?

Two roofs, both measured on the device in the run's dtype: the dense matmul rate
(`timing.peak_tflops`) and the memory bandwidth of a large copy (`timing.memory_bandwidth_gbs`).
Every layer (module) of a counted train step (`counting.count_train`) gets its FLOPs (2 per MAC, forward and backward),
its bytes moved (what its ops read and write, nothing fused), its arithmetic intensity
(FLOPs / byte) and its roofline time max(FLOPs / peak, bytes / bandwidth); a stage sums its
layers, and is memory-bound when most of that predicted time is in layers limited by bytes.
Measured stage times come from the breakdown's profiled steps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from torch import nn

from netprobe.archs.block_kinds import BLOCK_KINDS
from netprobe.counting import TrainCount
from netprobe.op_kinds import KindClassifier, first_component

FAMILIES = (*dict.fromkeys(k.family for k in BLOCK_KINDS.values()), "depthwise", "dense", "other")


@dataclass
class StageRoof:
    """One stage of the roofline: counted work, predicted time from the two roofs, measured time."""

    name: str
    macs: int  # forward and backward (train), the whole batch
    bytes: int
    intensity: float  # FLOPs (2 per MAC) per byte moved
    predicted_ms: float  # sum over its layers of max(FLOPs / peak, bytes / bandwidth)
    measured_ms: float | None  # forward plus backward, from the profiled steps
    bound: str  # "memory" or "compute": which roof limits most of the predicted time
    memory_share: float  # of the predicted time, the part in memory-bound layers
    family: str = "other"  # MBConv | Fused-MBConv (zoo tables), depthwise | dense (any module), other

    @property
    def achieved_gflops(self) -> float | None:
        return 2 * self.macs / (self.measured_ms / 1e3) / 1e9 if self.measured_ms else None


@dataclass
class Roofline:
    """The two roofs of the device and every stage against them. `to_dict` is the JSON form."""

    peak_tflops: float
    bandwidth_gbs: float
    dtype: str
    stages: list[StageRoof] = field(default_factory=list)

    @property
    def ridge(self) -> float:
        """The intensity (FLOPs / byte) where the two roofs meet: below it, memory bounds."""
        return self.peak_tflops * 1e12 / (self.bandwidth_gbs * 1e9)

    @classmethod
    def from_dict(cls, data: dict) -> Roofline:
        """The inverse of `to_dict` (a result's JSON back into a plottable roofline)."""
        fields = {f for f in StageRoof.__dataclass_fields__}
        stages = [StageRoof(**{k: v for k, v in s.items() if k in fields}) for s in data["stages"]]
        return cls(data["peak_tflops"], data["bandwidth_gbs"], data["dtype"], stages)

    def to_dict(self) -> dict:
        out = asdict(self)
        for stage, roof in zip(out["stages"], self.stages, strict=True):
            stage["achieved_gflops"] = roof.achieved_gflops
        out["ridge"] = self.ridge
        return out


def roofline(count: TrainCount, peak_tflops: float, bandwidth_gbs: float, dtype: str,
             stage_of: Callable[[str], str | None] = first_component, measured_ms: dict[str, float] | None = None,
             families: dict[str, str] | None = None, backward: bool = True) -> Roofline:
    """Every stage of a counted step against the two roofs (per layer, summed per stage); forward and
    backward, or the forward alone (`backward=False`, an inference step)."""
    peak, bandwidth = peak_tflops * 1e12, bandwidth_gbs * 1e9
    sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for record in count.modules.values():
        stage = stage_of(record.path)
        macs = record.fwd_macs + (record.bwd_macs if backward else 0)
        moved = record.fwd_bytes + (record.bwd_bytes if backward else 0)
        if stage is None or not (macs or moved):
            continue
        compute_s, memory_s = 2 * macs / peak, moved / bandwidth
        s = sums[stage]
        s["macs"] += macs
        s["bytes"] += moved
        s["memory" if memory_s > compute_s else "compute"] += max(compute_s, memory_s) * 1e3
    stages = []
    for name, s in sums.items():
        predicted = s["memory"] + s["compute"]
        stages.append(StageRoof(
            name, int(s["macs"]), int(s["bytes"]), 2 * s["macs"] / s["bytes"] if s["bytes"] else 0.0, predicted,
            (measured_ms or {}).get(name), "memory" if s["memory"] >= s["compute"] else "compute",
            s["memory"] / predicted if predicted else 0.0, (families or {}).get(name, "other")))
    return Roofline(peak_tflops, bandwidth_gbs, dtype, stages)


def stage_families(model: nn.Module, count: TrainCount,
                   stage_of: Callable[[str], str | None] = first_component) -> dict[str, str]:
    """What kind of blocks each stage is made of. A zoo model's table says it: its block kind's family
    (MBConv, Fused-MBConv, BasicBlock, Bottleneck) for stages 1..N of one kind, "other" for the rest;
    for any other module, a stage with depthwise convs is "depthwise", one with dense k x k convs but
    none depthwise "dense", the rest "other"."""
    table = getattr(model, "table", None)
    if table is not None and hasattr(table, "stages"):
        out = {}
        for i, stage in enumerate(table.stages, start=1):
            families = {row.kind.family for row in stage}
            out[f"stage{i}"] = families.pop() if len(families) == 1 else "other"
        return out
    classify = KindClassifier(model)
    kinds: dict[str, set[str]] = defaultdict(set)
    for record in count.modules.values():
        stage = stage_of(record.path)
        if stage is not None and record.fwd_macs:
            kinds[stage].update(classify.kind(record.path, k) for k in record.fwd)
    return {stage: "depthwise" if "depthwise_conv" in ks else "dense" if "dense_conv" in ks else "other"
            for stage, ks in kinds.items()}


_DEPTHWISE, _DENSE = ("o", "#4c72b0"), ("s", "#dd8452")
_MARKERS = {"depthwise": _DEPTHWISE, "dense": _DENSE, "other": ("^", "#7f7f7f"),
            **{k.family: _DEPTHWISE if k.depthwise else _DENSE for k in BLOCK_KINDS.values()}}


def plot_roofline(panels: list[tuple[str, Roofline]], path: str, title: str = "") -> None:
    """Log-log roofline (intensity vs achieved GFLOP/s, both roofs drawn), one panel per variant, one
    point per stage: circles for depthwise stages (MBConv), squares for dense ones (Fused-MBConv, ResNet),
    triangles for the rest. Needs matplotlib (the `plot` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2 if len(panels) == 4 else min(len(panels), 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + 0.4, 3.4 * rows + 0.5), sharex=True, sharey=True,
                             squeeze=False)
    lo_x, hi_x, lo_y, hi_y = _limits([r for _, r in panels])
    for ax, (label, roof) in zip(axes.flat, panels, strict=False):
        _draw_panel(ax, label, roof, (lo_x, hi_x), (lo_y, hi_y))
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel("achieved GFLOP/s (2 per MAC)")
    handles = [plt.Line2D([], [], marker=_MARKERS[f][0], color=_MARKERS[f][1], linestyle="", label=f)
               for f in dict.fromkeys(s.family for _, r in panels for s in r.stages)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _limits(roofs: list[Roofline]) -> tuple[float, float, float, float]:
    xs = [s.intensity for r in roofs for s in r.stages if s.intensity > 0]
    ys = [s.achieved_gflops for r in roofs for s in r.stages if s.achieved_gflops]
    peaks = [r.peak_tflops * 1e3 for r in roofs]
    ridges = [r.ridge for r in roofs]
    lo_x, hi_x = min(xs + ridges) / 3, max(xs + ridges) * 3
    lo_y = min([*ys, min(r.bandwidth_gbs for r in roofs) * lo_x]) / 2
    return lo_x, hi_x, lo_y, max([*peaks, *ys]) * 2  # a stage above a (suspect) roof stays on the plot


def _draw_panel(ax, label: str, roof: Roofline, xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
    peak_gflops = roof.peak_tflops * 1e3
    xs = [xlim[0], roof.ridge, xlim[1]]
    ax.plot(xs, [min(peak_gflops, roof.bandwidth_gbs * x) for x in xs], color="black", linewidth=1)
    ax.axvline(roof.ridge, color="black", linewidth=0.5, linestyle=":")
    # the flat roof's label just right of the ridge, above the line: stages crowd the far right
    ax.text(roof.ridge * 1.15, peak_gflops * 1.12, f"matmul {peak_gflops:.0f} GFLOP/s", ha="left", fontsize=7)
    ax.text(roof.ridge / 1.1, ylim[0] * 1.15, f"memory-bound ← {roof.ridge:.1f} FLOPs/B", ha="right", fontsize=7)
    ax.text(roof.ridge / 1.3, roof.bandwidth_gbs * roof.ridge / 1.3 * 1.25, f"copy {roof.bandwidth_gbs:.1f} GB/s",
            ha="right", fontsize=7)
    for stage in roof.stages:
        if not stage.achieved_gflops or stage.intensity <= 0:
            continue
        marker, colour = _MARKERS.get(stage.family, _MARKERS["other"])
        ax.plot(stage.intensity, stage.achieved_gflops, marker=marker, color=colour, markersize=6, linestyle="")
        ax.annotate(stage.name.replace("stage", "s"), (stage.intensity, stage.achieved_gflops), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    if ax.get_subplotspec().is_last_row():
        ax.set_xlabel("FLOPs per byte moved")
    ax.set_title(label, fontsize=9)
    ax.grid(True, which="major", linewidth=0.3)
