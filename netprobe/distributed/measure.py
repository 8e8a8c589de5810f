"""What every rank of a row measures: single-device bench's train step, with the model in DDP.

The step is single-device bench's `timing.TorchStep` (forward, loss, backward, optimizer, each phase marked), on a
model wrapped in DistributedDataParallel whose gradient all-reduce goes through a communication
hook that does what DDP's default does (average each bucket over the ranks) and notes when each
bucket's all-reduce starts and completes. Per step, every figure is taken from the slowest rank
(an all-reduce MAX over the ranks once the steps are done, so timing adds no collective to a step).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from netprobe.bench import BenchConfig, output_classes
from netprobe.counting import count
from netprobe.defaults import BUCKET_MB
from netprobe.distributed.launch import RankContext
from netprobe.target import resolve
from netprobe.timing import AMP_DTYPES, PhaseClock, Step, TorchStep, peak_mb, percentile, release_memory, reset_peak

ALLREDUCE_METHOD = "comm_hook"  # how allreduce_ms is measured; see AllReduceTimer


@dataclass(frozen=True)
class RowTask:
    """What each rank of a row runs: the bench configuration (batch per rank), with or without DDP."""

    config: BenchConfig  # device: cpu | cuda
    ddp: bool
    bucket_mb: float = BUCKET_MB
    sync_bn: bool = False
    exposed_comm: bool = True  # also time steps under no_sync(), to see what the all-reduce adds to a step
    seed: int = 0


class AllReduceTimer:
    """DDP's default gradient all-reduce (each bucket summed over the ranks, divided by their number),
    noting when each bucket's all-reduce is launched and when it completes.

    Per step it gives the time during which at least one bucket was in flight on this rank (the union
    of the buckets' spans: buckets overlap each other and the backward), the bytes and the buckets
    reduced. A span starts when the bucket is ready on this rank, so it includes waiting for slower
    ranks; the rank that gets there last waits least.
    """

    def __init__(self, group: Any, cuda: bool) -> None:
        self.group, self.cuda = group, cuda
        self.world_size = dist.get_world_size(group)
        self.checksums: dict[int, torch.Tensor] | None = None  # bucket index -> sum of its averaged gradients
        self.begin()

    def begin(self) -> None:
        """Start a step: forget the previous step's spans."""
        self.spans: list[tuple[Any, Any]] = []
        self.bytes = self.buckets = 0
        self.origin = self._now()

    # No annotations on purpose: DDP compares them with the real classes, and this module's are strings.
    def hook(self, state, bucket):
        buffer = bucket.buffer()
        buffer.div_(self.world_size)
        self.bytes += buffer.numel() * buffer.element_size()
        self.buckets += 1
        start, index = self._now(), bucket.index()
        future = dist.all_reduce(buffer, group=self.group, async_op=True).get_future()

        def done(fut):
            self.spans.append((start, self._now()))
            averaged = fut.value()[0]
            if self.checksums is not None:
                self.checksums[index] = averaged.double().sum()
            return averaged

        return future.then(done)

    def step_ms(self) -> float:
        """Milliseconds of the step just run during which some bucket's all-reduce was in flight."""
        spans = [(self._ms(a), self._ms(b)) for a, b in self.spans]
        total, covered_to = 0.0, -math.inf
        for start, end in sorted(spans):
            if end > covered_to:
                total += end - max(start, covered_to)
                covered_to = end
        return total

    def _now(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()  # in the done callback, the current stream already waits for the all-reduce
        return event

    def _ms(self, mark: Any) -> float:
        if not self.cuda:
            return (mark - self.origin) * 1e3
        mark.synchronize()
        return self.origin.elapsed_time(mark)


def measure_row(task: RowTask, ctx: RankContext) -> dict | None:
    """Build, wrap, warm up and time the train step on this rank; rank 0 returns the row's figures."""
    config = task.config
    target = resolve(config.spec, config.in_chans)  # each rank its own: a spec, an object path, a module sent over
    size = target.input_size(config.imgsz)
    classes = output_classes(target, count(target.meta_model(), (1, target.in_chans, *size)))
    cuda = config.device == "cuda"
    torch.manual_seed(task.seed + ctx.rank)  # each rank its own data; DDP starts every rank from rank 0's weights
    if cuda:
        torch.backends.cudnn.benchmark = True
    if cuda and config.tf32 is not None:  # --tf32: this rank's process computes in that math mode throughout
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = config.tf32 == "on"
    release_memory(config.device)
    baseline = reset_peak(config.device)
    model = target.make(ctx.device)
    params = sum(p.numel() for p in model.parameters())
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    timer = None
    if task.ddp:
        model, timer = _wrap(model, task, ctx, cuda)
    x = torch.randn(config.batch, target.in_chans, *size, device=ctx.device).contiguous(memory_format=fmt)
    y = torch.randint(0, max(classes, 1), (config.batch,), device=ctx.device)
    step = TorchStep(model, x, y, mode="train", dtype=AMP_DTYPES[config.amp], optimizer=config.optimizer,
                     classes=classes)

    unsynced = model if task.ddp and task.exposed_comm else None
    steps = _timed_steps(step, config, ctx, timer, unsynced)
    rows = _slowest([[*row, -row[4]] for row in steps], ctx)  # the negated copy gives the fastest rank's all-reduce
    figures: dict[str, Any] = {"params": params, "threads": torch.get_num_threads(), **_summary(rows, task)}
    if timer is not None:
        figures.update(grad_bytes=timer.bytes, buckets=timer.buckets)  # of the last timed step
        figures["grads_in_sync"] = _gradients_agree(step, config, ctx, timer)
    peak, figures["mem_kind"] = peak_mb(config.device, baseline)
    figures["peak_mem_mb"] = _slowest([[math.nan if peak is None else peak]], ctx)[0][0]
    if math.isnan(figures["peak_mem_mb"]):
        figures["peak_mem_mb"] = None
    return figures if ctx.rank == 0 else None


def _wrap(model: nn.Module, task: RowTask, ctx: RankContext, cuda: bool) -> tuple[nn.Module, AllReduceTimer]:
    if task.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group=ctx.group)
    device_ids = [torch.device(ctx.device).index] if cuda else None
    # DDP's default (None) is 25 MB buckets after a 1 MB first one; an explicit 25 would make the first 25 MB too
    cap_mb = None if task.bucket_mb == BUCKET_MB else task.bucket_mb
    ddp = DistributedDataParallel(model, device_ids=device_ids, process_group=ctx.group, bucket_cap_mb=cap_mb)
    timer = AllReduceTimer(ctx.group, cuda)
    ddp.register_comm_hook(None, timer.hook)
    return ddp, timer


def _timed_steps(step: Step, config: BenchConfig, ctx: RankContext, timer: AllReduceTimer | None,
                 unsynced: DistributedDataParallel | None) -> list[list[float]]:
    """Per timed step: [step, forward, backward, optimizer, all-reduce in flight, no_sync step] in ms (NaN: none).

    With `unsynced`, each step is paired with the same step under `no_sync()` (no all-reduce), in
    alternating order, so that the pair sees the same noise and neither always goes first.
    """
    clock = PhaseClock(config.device)
    rows = []
    untimed = 1 + config.warmup  # one step always apart, even with --warmup 0: cudnn.benchmark autotunes in it
    for i in range(untimed + config.iters):
        alone = math.nan
        if unsynced is not None and i % 2:
            alone = _no_sync_step_ms(step, clock, unsynced)
        if timer:
            timer.begin()
        step(clock)
        phases = clock.phases_ms()
        comm = timer.step_ms() if timer else math.nan
        if unsynced is not None and not i % 2:
            alone = _no_sync_step_ms(step, clock, unsynced)
        ctx.heartbeat()
        if i >= untimed:
            rows.append([sum(phases), *phases, comm, alone])
    return rows


def _no_sync_step_ms(step: Step, clock: PhaseClock, model: DistributedDataParallel) -> float:
    with model.no_sync():  # local gradients only: the same step without its all-reduce
        step(clock)
    return sum(clock.phases_ms())


def _slowest(rows: list[list[float]], ctx: RankContext) -> list[list[float]]:
    """Each figure of each step from the slowest rank (MAX over the row's ranks); a rank alone: its own."""
    if ctx.group is None:
        return rows
    values = torch.tensor(rows, dtype=torch.float64, device=ctx.device).nan_to_num(nan=-math.inf)
    dist.all_reduce(values, op=dist.ReduceOp.MAX, group=ctx.group)
    return [[math.nan if v == -math.inf else v for v in row] for row in values.tolist()]


def _summary(rows: list[list[float]], task: RowTask) -> dict[str, float | list[float] | None]:
    steps = [row[0] for row in rows]
    return {
        "step_ms": statistics.median(steps), "step_times_ms": steps, "step_p10_ms": percentile(steps, 10),
        "step_p90_ms": percentile(steps, 90), "fwd_ms": statistics.median(row[1] for row in rows),
        "bwd_ms": statistics.median(row[2] for row in rows), "opt_ms": statistics.median(row[3] for row in rows),
        "allreduce_ms": statistics.median(-row[6] for row in rows) if task.ddp else None,
        "allreduce_max_ms": statistics.median(row[4] for row in rows) if task.ddp else None,
        "no_sync_step_ms": statistics.median(row[5] for row in rows) if task.ddp and task.exposed_comm else None,
    }


def _gradients_agree(step: Step, config: BenchConfig, ctx: RankContext, timer: AllReduceTimer) -> bool:
    """One more synced step, untimed: every rank must get the same averaged gradients (ranks saw different data).

    Weights cannot show it: the no_sync steps let each rank's weights drift on purpose.
    """
    clock = PhaseClock(config.device)
    timer.begin()
    timer.checksums = {}
    step(clock)
    clock.phases_ms()
    sums = torch.stack([timer.checksums[i] for i in sorted(timer.checksums)]).to(ctx.device)
    timer.checksums = None
    high, low = sums.clone(), -sums
    dist.all_reduce(high, op=dist.ReduceOp.MAX, group=ctx.group)
    dist.all_reduce(low, op=dist.ReduceOp.MAX, group=ctx.group)
    return bool(torch.equal(high, -low))
