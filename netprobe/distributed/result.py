"""One row of the scaling table as a flat record: its JSON object, its CSV line."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from netprobe.distributed.checks import RowPlan, ScalingPlan
from netprobe.distributed.measure import ALLREDUCE_METHOD
from netprobe.distributed.ring import bus_gb_s
from netprobe.intervals import kept_steps, median_rate
from netprobe.timing import AMP_DTYPES, DTYPE_NAMES

MB = 2**20


@dataclass
class DistResult:
    """A world size measured data-parallel: throughput, the slowest rank's step, what the all-reduce costs.

    Times are per step and per rank in ms, each step's figure taken from the slowest rank.
    `imgs_per_s` is global (all ranks). `scaling_efficiency` = imgs_per_s / (world_size ×
    imgs_per_s of 1 rank without DDP). The all-reduce is timed by a DDP communication hook
    (`method`): on each rank, the time during which some gradient bucket's all-reduce was in
    flight (it overlaps the backward). A bucket's span starts when it is ready on that rank, so a
    rank that got there first also counts waiting for the others: `allreduce_ms` takes each step's
    shortest rank (the all-reduce itself, once the last rank joined), `allreduce_max_ms` its longest
    (waiting for the slowest rank included). `comm_exposed_ms` = step_ms - no_sync_step_ms: what
    the all-reduce adds to a step (the same step under DDP's `no_sync()`, timed in alternation
    with it). `grad_mb`: gradient bytes all-reduced per step, counted in the hook (MB = 2^20 bytes).
    """

    spec: str
    device: str
    world_size: int
    backend: str  # gloo | nccl | none (1 rank without DDP)
    ddp: bool
    batch_per_rank: int
    global_batch: int
    imgsz: int | str = 0  # N, or "HxW" when not square
    dtype: str = "fp32"
    status: str = "ok"  # ok | oom | error
    imgs_per_s: float | None = None
    imgs_per_s_ci90: list[float] | None = None  # [low, high]: 90% interval, bootstrap over the timed steps
    step_ms: float | None = None
    step_p10_ms: float | None = None
    step_p90_ms: float | None = None
    fwd_ms: float | None = None
    bwd_ms: float | None = None
    opt_ms: float | None = None
    scaling_efficiency: float | None = None
    allreduce_ms: float | None = None
    allreduce_max_ms: float | None = None
    allreduce_share: float | None = None  # allreduce_ms / step_ms
    bus_gb_s: float | None = None  # 2 (N-1)/N × gradient bytes / allreduce_ms, 10^9 B/s: comparable to a link's rate
    method: str = ""
    no_sync_step_ms: float | None = None
    comm_exposed_ms: float | None = None
    grad_mb: float | None = None
    buckets: int | None = None
    bucket_mb: float | None = None
    sync_bn: bool = False
    params: int | None = None
    peak_mem_mb: float | None = None  # per rank, the largest over ranks
    mem_kind: str = ""
    threads_per_rank: int | None = None
    grads_in_sync: bool | None = None  # every rank got the same averaged gradients (from different data)
    iters: int = 0
    error: str | None = None
    step_times_ms: list[float] = field(default_factory=list)  # every timed step (the slowest rank's), in order

    def to_dict(self) -> dict:
        return asdict(self)


def empty_row(plan: ScalingPlan, row: RowPlan) -> DistResult:
    """The row's identity before anything is measured."""
    config = plan.config
    return DistResult(plan.label, config.device, row.world_size, plan.backend if row.ddp else "none", row.ddp,
                      row.batch_per_rank, row.batch_per_rank * row.world_size, plan.imgsz,
                      DTYPE_NAMES[AMP_DTYPES[config.amp]], bucket_mb=plan.bucket_mb if row.ddp else None,
                      sync_bn=plan.sync_bn and row.ddp, iters=config.iters)


def measured_row(plan: ScalingPlan, row: RowPlan, figures: dict) -> DistResult:
    """A row from rank 0's figures (see `measure.measure_row`)."""
    result = empty_row(plan, row)
    for name in ("step_ms", "step_p10_ms", "step_p90_ms", "fwd_ms", "bwd_ms", "opt_ms", "allreduce_ms",
                 "allreduce_max_ms", "params", "no_sync_step_ms", "buckets", "peak_mem_mb", "mem_kind",
                 "grads_in_sync"):
        setattr(result, name, figures.get(name, getattr(result, name)))
    result.threads_per_rank = figures["threads"]
    result.imgs_per_s = result.global_batch / (result.step_ms / 1e3)
    result.step_times_ms = kept_steps(figures.get("step_times_ms") or [])  # the slowest rank's, step by step
    rate = median_rate(result.step_times_ms, result.global_batch)
    result.imgs_per_s_ci90 = rate.bounds() if rate else None
    if row.ddp:
        result.method = ALLREDUCE_METHOD
        result.grad_mb = figures["grad_bytes"] / MB
        result.allreduce_share = result.allreduce_ms / result.step_ms
        result.bus_gb_s = bus_gb_s(figures["grad_bytes"], row.world_size, result.allreduce_ms)
        if result.no_sync_step_ms is not None:
            result.comm_exposed_ms = result.step_ms - result.no_sync_step_ms
    return result


def failed_row(plan: ScalingPlan, row: RowPlan, status: str, error: str) -> DistResult:
    result = empty_row(plan, row)
    result.status, result.error = status, error
    return result


def relate(result: DistResult, baseline: DistResult | None) -> None:
    """Scaling efficiency against 1 rank without DDP: throughput(N) / (N × throughput(1))."""
    if result.imgs_per_s and baseline is not None and baseline.imgs_per_s:
        result.scaling_efficiency = result.imgs_per_s / (result.world_size * baseline.imgs_per_s)
