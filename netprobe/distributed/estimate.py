"""On paper: what the gradient all-reduce would cost per step on machines we do not have.

The ring model (`ring.py`) applied to gradient bytes counted from netprobe's own models and to
published link rates, one direction. The times are lower bounds: NCCL reaches part of a link's
rate, and small buckets pay latency too.

Run `python -m netprobe.distributed.estimate` for the tables in docs/distributed.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netprobe.api import build
from netprobe.distributed.ring import ring_allreduce_ms
from netprobe.reference import PAPER_TABLE3

MB = 2**20
FUSED_STAGES = (("No fused", "none"), ("Fused stage1-3", "1-3"), ("Fused stage1-5", "1-5"), ("Fused stage1-7", "1-7"))
ASSUMED_V100_BATCH = 24  # per GPU; the paper does not state Table 3's batch (24 is its Table 2 V100 setting)


@dataclass(frozen=True)
class Fabric:
    """A machine (or several) and the bus bandwidth its ring all-reduce gets: the slowest link, one direction."""

    name: str
    nodes: int
    gpus_per_node: int
    bus_gb_s: float  # 10^9 bytes/s
    source: str
    gpu: str = "any"  # the GPU the fabric comes with; "any": the link alone decides

    @property
    def ranks(self) -> int:
        return self.nodes * self.gpus_per_node


_NVLINK_V100 = "NVIDIA Tesla V100 datasheet: NVLink 300 GB/s (both directions) -> 150 GB/s each way"
_NVLINK_A100 = "NVIDIA A100 datasheet: NVLink 600 GB/s (both directions) -> 300 GB/s each way"
_NVLINK_H100 = "NVIDIA H100 datasheet: NVLink 900 GB/s (both directions) -> 450 GB/s each way"
_PCIE4 = "NVIDIA A100 PCIe datasheet: PCIe Gen4 64 GB/s (both directions) -> 32 GB/s each way"
_NDR = ("NVIDIA DGX H100 datasheet: 8x ConnectX-7 400 Gb/s per node -> 8 x 50 GB/s = 400 GB/s "
        "(below NVLink's 450, so the network is the slowest link)")
_ETH100 = "100 Gb/s Ethernet, one port per node -> 12.5 GB/s"

FABRICS = (
    Fabric("8x V100 NVLink (1 node)", 1, 8, 150, _NVLINK_V100, "V100"),
    Fabric("8x A100 NVLink (1 node)", 1, 8, 300, _NVLINK_A100, "A100"),
    Fabric("8x H100 NVLink (1 node)", 1, 8, 450, _NVLINK_H100, "H100"),
    Fabric("8 GPUs on PCIe 4.0 (1 node)", 1, 8, 32, _PCIE4),
    Fabric("2 nodes x 8 H100, 8x400G IB", 2, 8, 400, _NDR, "H100"),
    Fabric("16 nodes x 8 H100, 8x400G IB", 16, 8, 400, _NDR, "H100"),
    Fabric("2 nodes x 8 GPUs, 100 GbE", 2, 8, 12.5, _ETH100),
    Fabric("4 nodes x 8 GPUs, 100 GbE", 4, 8, 12.5, _ETH100),
)


@dataclass
class Estimate:
    """One model's gradient bytes per step and its ring all-reduce time on each fabric (ms)."""

    label: str
    spec: str
    params: int
    grad_bytes: int  # fp32 gradients: what DDP all-reduces by default, AMP or not
    allreduce_ms: dict[str, float] = field(default_factory=dict)
    paper_v100_imgs_per_s: float | None = None  # published (EfficientNetV2 paper, Table 3), not measured

    @property
    def grad_mb(self) -> float:
        return self.grad_bytes / MB


def estimate(label: str, spec: str, fabrics: tuple[Fabric, ...] = FABRICS) -> Estimate:
    """Count the model's trainable parameters (meta device) and put its all-reduce on every fabric."""
    model = build(spec, device="meta")
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    times = {f.name: ring_allreduce_ms(grad_bytes, f.ranks, f.bus_gb_s) for f in fabrics}
    return Estimate(label, spec, params, grad_bytes, times)


def fused_stage_estimates(base: str = "efficientnet_b4") -> list[Estimate]:
    """The EfficientNetV2 paper's Table 3 variants of `base`, with its V100 throughput beside (for B4)."""
    out = []
    for label, fused in FUSED_STAGES:
        row = estimate(label, f"{base}:fused={fused}")
        if base == "efficientnet_b4":
            row.paper_v100_imgs_per_s = PAPER_TABLE3[fused][4]
        out.append(row)
    return out


def markdown(rows: list[Estimate], fabrics: tuple[Fabric, ...] = FABRICS) -> str:
    """Two tables: all-reduce ms per step on each fabric; the same as a share of a V100 step (paper's speed)."""
    head = "| Variant | Params | Grad MB |" + "".join(f" {f.name} |" for f in fabrics)
    rule = "|---|---:|---:|" + "---:|" * len(fabrics)
    lines = ["All-reduce per step, ms (ring, fp32 gradients):", "", head, rule]
    for r in rows:
        cells = "".join(f" {r.allreduce_ms[f.name]:.1f} |" for f in fabrics)
        lines.append(f"| {r.label} | {r.params / 1e6:.2f}M | {r.grad_mb:.1f} |{cells}")
    with_paper = [r for r in rows if r.paper_v100_imgs_per_s]
    v100 = [f for f in fabrics if f.gpu in ("V100", "any")]  # a V100's step says nothing of an H100 node
    if with_paper and v100:
        lines += ["", f"The same, as a share of one V100 train step of batch {ASSUMED_V100_BATCH} at the paper's "
                      f"V100 speed (published, Table 3; batch assumed), on the fabrics a V100 can sit in:", "",
                  "| Variant | Paper V100 imgs/s | V100 step ms |" + "".join(f" {f.name} |" for f in v100),
                  "|---|---:|---:|" + "---:|" * len(v100)]
        for r in with_paper:
            step_ms = ASSUMED_V100_BATCH / r.paper_v100_imgs_per_s * 1e3
            cells = "".join(f" {r.allreduce_ms[f.name] / step_ms:.0%} |" for f in v100)
            lines.append(f"| {r.label} | {r.paper_v100_imgs_per_s:g} | {step_ms:.0f} |{cells}")
    lines += ["", "Bus bandwidths (one direction, published link rates):", ""]
    lines += [f"- {f.name}: {f.bus_gb_s:g} GB/s, {f.ranks} ranks. {f.source}" for f in fabrics]
    return "\n".join(lines)


def main() -> None:
    print(markdown(fused_stage_estimates()))


if __name__ == "__main__":
    main()
