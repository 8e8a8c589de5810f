"""Time by op kind: a few profiled train steps, each op's time given to its module, stage and kind.

The timed steps stay unprofiled; afterwards `profile_step` runs the same step function a few
more times under torch.profiler, with a range around every module's forward and (through its
autograd nodes, see `scopes`) its backward, and one around each phase the step marks on its
clock (forward, backward, optimizer). `attribute` then reads the event tree: every top-level
aten op belongs to the innermost module range around it, or, outside the model, to the loss
(forward and backward phases) or the optimizer. On CPU an op's time is its CPU time; on CUDA the
time of the GPU kernels it launched, not the CPU time of launching them.

`breakdown` puts each kind's time beside its share of the counted MACs and bytes of the same
step (`counting.count_train`) and its achieved GFLOP/s.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from netprobe.counting import LOSS_PATH, MAC_KINDS, TrainCount, train_rule
from netprobe.op_kinds import KINDS, OPTIMIZER_PATH, KindClassifier, first_component
from netprobe.scopes import module_scopes
from netprobe.timing import synchronize

PHASES = {"train": ("forward", "backward", "optimizer"), "infer": ("forward",)}
OFF_LIMIT = 0.15  # the profiled step may differ this much from the unprofiled one before a note says so
_PHASE, _FWD, _BWD = "np::phase::", "np::fwd::", "np::bwd::"

StageOf = Callable[[str], "str | None"]


@dataclass
class OpEvent:
    """One profiler event reduced to what attribution needs; `time_us` is CPU time or, on CUDA, the
    GPU time of the kernels it and its children launched."""

    name: str
    start_us: float
    end_us: float
    time_us: float
    children: list[OpEvent] = field(default_factory=list)


@dataclass
class OpTime:
    """Time per step of the ops one module (or the loss, or the optimizer) ran in one direction."""

    path: str
    direction: str  # fwd | bwd | opt
    counted_kind: str | None  # the counter's kind of the op (conv, norm, add, ...), None if it has no rule
    ms: float


@dataclass
class KindTime:
    """One row of the breakdown: an op kind in a stage (`stage` None: the whole step)."""

    kind: str
    stage: str | None
    fwd_ms: float = 0.0
    bwd_ms: float = 0.0
    opt_ms: float = 0.0
    time_share: float = 0.0  # of the profiled step's op time
    macs_share: float = 0.0  # of the step's counted MACs (forward and backward)
    bytes_share: float = 0.0  # of the step's counted bytes (forward, backward, optimizer)
    gflops: float | None = None  # 2 x MACs / (fwd_ms + bwd_ms), where there are MACs
    macs: int = 0
    bytes: int = 0

    @property
    def ms(self) -> float:
        return self.fwd_ms + self.bwd_ms + self.opt_ms


@dataclass
class Breakdown:
    """The profiled step by op kind, per stage and whole.

    `records`: first per stage (kinds that ran there), then the whole step (`stage` None) per kind.
    The whole-step records' time shares sum to 1, and so do the per-stage records together with
    the loss and optimizer records. `profiled_ms` is the op time of one profiled step, compared
    with the unprofiled `step_ms`; `note` says when they differ by more than 15%, or why there is
    no breakdown.
    """

    records: list[KindTime] = field(default_factory=list)
    profiled_ms: float = 0.0
    step_ms: float | None = None
    steps: int = 0
    timing: str = ""  # "cpu op time" | "cuda kernel time"
    note: str | None = None

    def whole_step(self) -> list[KindTime]:
        return [r for r in self.records if r.stage is None]

    def stage_ms(self) -> dict[str, float]:
        """Forward plus backward time of each stage."""
        out: dict[str, float] = defaultdict(float)
        for r in self.records:
            if r.stage is not None:
                out[r.stage] += r.fwd_ms + r.bwd_ms
        return dict(out)

    def to_records(self) -> list[dict]:
        """The JSON form: one dict per record."""
        return [asdict(r) for r in self.records]


class ProfilingClock:
    """Stands in for `timing.PhaseClock` in a step: each `mark()` closes the current phase's
    profiler range and opens the next (forward, backward, optimizer)."""

    def __init__(self, phases: Iterable[str]) -> None:
        self.phases = list(phases)
        self._open: object | None = None
        self._index = 0

    def mark(self) -> None:
        if self._open is not None:
            _exit_range(self._open)
            self._open = None
        if self._index < len(self.phases):
            self._open = _enter_range(_PHASE + self.phases[self._index])
        self._index += 1

    def phases_ms(self) -> list[float]:
        self._index = 0
        return []


def _enter_range(name: str) -> object:
    return torch.ops.profiler._record_function_enter_new(name, None)


def _exit_range(handle: object) -> None:
    torch.ops.profiler._record_function_exit._RecordFunction(handle)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Kineto logs 'profiler_start'/'profiler_stop' lines from C++ straight to fd 2: keep them out of the
    user's terminal and logs while the profiler runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def profile_step(model: nn.Module, step: Callable[[ProfilingClock], None], device: str, mode: str = "train",
                 steps: int = 3) -> list[OpTime]:
    """Run `step(clock)` once to warm up and `steps` times profiled, module ranges on; per-step op times.

    Raises whatever the profiler raises; `breakdown_step` turns that into a note.
    """
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    ranges = threading.local()  # backward hooks run on the autograd engine's threads

    def enter(path: str, direction: str) -> None:
        ranges.__dict__.setdefault("open", []).append(_enter_range(f"np::{direction}::{path}"))

    def exit(path: str, direction: str) -> None:
        _exit_range(ranges.open.pop())

    with _quiet_stderr(), module_scopes(model, enter, exit), \
            profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=steps), acc_events=True) as prof:
        for _ in range(steps + 1):
            step(ProfilingClock(PHASES[mode]))
            synchronize(device)
            prof.step()
    return attribute(event_tree(prof.events(), device == "cuda"), steps)


def event_tree(events, on_device: bool) -> list[OpEvent]:
    """The profiler's host-side events as trees of `OpEvent`, children in time order; each one's time its
    CPU time or (`on_device`) the device time of the kernels it and its children launched."""
    def convert(e) -> OpEvent:
        time_us = e.device_time_total if on_device else e.cpu_time_total
        children = sorted((convert(c) for c in e.cpu_children), key=lambda c: c.start_us)
        return OpEvent(e.name, e.time_range.start, e.time_range.end, time_us, children)

    host = [e for e in events if e.cpu_parent is None and e.device_type == torch.autograd.DeviceType.CPU]
    return sorted((convert(e) for e in host), key=lambda e: e.start_us)


def attribute(roots: list[OpEvent], steps: int = 1) -> list[OpTime]:
    """Give every top-level aten op's time to (module path, direction, counted kind); per step.

    An op inside a module's range belongs to that module. Outside every module: in the forward
    phase, the loss; in the optimizer phase, the optimizer; in the backward phase (or on an
    autograd thread during it), the module whose backward ran last in this step (the engine
    sums gradients between nodes), or the loss before any did. Ops outside every phase are not
    part of a step.
    """
    phases = sorted((e.start_us, e.end_us, e.name[len(_PHASE):]) for e in _walk(roots) if e.name.startswith(_PHASE))
    backward_scopes = sorted((e.end_us, e.start_us, e.name[len(_BWD):]) for e in _walk(roots)
                             if e.name.startswith(_BWD))
    totals: dict[tuple[str, str, str | None], float] = defaultdict(float)

    def phase_at(t: float) -> tuple[str, float] | None:
        i = bisect.bisect_right(phases, (t, float("inf"), "")) - 1
        if i >= 0 and phases[i][0] <= t <= phases[i][1]:
            return phases[i][2], phases[i][0]
        return None

    def owner(scope: tuple[str, str] | None, t: float) -> tuple[str, str] | None:
        phase = phase_at(t)
        if phase is None:
            return None
        name, began = phase
        if name == "optimizer":
            return OPTIMIZER_PATH, "opt"
        if scope is not None:
            return scope
        if name == "forward":
            return LOSS_PATH, "fwd"
        i = bisect.bisect_right(backward_scopes, (t, float("inf"), "")) - 1
        last = backward_scopes[i] if i >= 0 else None
        return (last[2], "bwd") if last is not None and last[1] >= began else (LOSS_PATH, "bwd")

    def visit(e: OpEvent, scope: tuple[str, str] | None) -> None:
        if e.name.startswith(_FWD):
            scope = (e.name[len(_FWD):], "fwd")
        elif e.name.startswith(_BWD):
            scope = (e.name[len(_BWD):], "bwd")
        elif e.name.startswith("aten::"):
            who = owner(scope, e.start_us)
            if who is not None:
                totals[(*who, _counted_kind(e))] += e.time_us
            return
        for child in e.children:
            visit(child, scope)

    for root in roots:
        visit(root, None)
    return [OpTime(path, direction, kind, us / 1e3 / max(steps, 1)) for (path, direction, kind), us in totals.items()]


def _walk(roots: list[OpEvent]) -> Iterable[OpEvent]:
    todo = list(roots)
    while todo:
        e = todo.pop()
        yield e
        todo.extend(e.children)


def _counted_kind(e: OpEvent) -> str | None:
    """The counter's kind of an op: its own rule's, else the first rule found among the ops it calls."""
    packet = getattr(torch.ops.aten, e.name[len("aten::"):], None) if e.name.startswith("aten::") else None
    rule = train_rule(packet) if packet is not None else None
    if rule is not None:
        return rule.kind
    return next((k for k in (_counted_kind(c) for c in e.children) if k is not None), None)


def breakdown(times: list[OpTime], model: nn.Module, count: TrainCount | None = None,
              stage_of: StageOf = first_component, step_ms: float | None = None, mode: str = "train") -> Breakdown:
    """Op times (from `profile_step`) by kind, per stage and whole, beside the counted MACs and bytes
    (of the forward alone when `mode` is "infer")."""
    classify = KindClassifier(model)
    rows: dict[tuple[str, str | None], KindTime] = {}

    def rows_for(path: str, counted_kind: str | None) -> list[KindTime]:
        kind, stage = classify.kind(path, counted_kind), stage_of(path)
        keys = [(kind, stage), (kind, None)] if stage is not None else [(kind, None)]
        return [rows.setdefault(key, KindTime(*key)) for key in keys]

    for t in times:
        for row in rows_for(t.path, t.counted_kind):
            setattr(row, f"{t.direction}_ms", getattr(row, f"{t.direction}_ms") + t.ms)
    if count is not None:
        _add_counts(count, rows_for, train=mode == "train")
    order = {stage: i for i, stage in enumerate(dict.fromkeys(stage_of(p) for p in classify.modules))}
    records = sorted(rows.values(), key=lambda r: (r.stage is None, order.get(r.stage, len(order)),
                                                   KINDS.index(r.kind)))
    total_ms = sum(r.ms for r in records if r.stage is None)
    total_macs = sum(r.macs for r in records if r.stage is None)
    total_bytes = sum(r.bytes for r in records if r.stage is None)
    for r in records:
        r.time_share = r.ms / total_ms if total_ms else 0.0
        r.macs_share = r.macs / total_macs if total_macs else 0.0
        r.bytes_share = r.bytes / total_bytes if total_bytes else 0.0
        busy_ms = r.fwd_ms + r.bwd_ms
        r.gflops = 2 * r.macs / (busy_ms / 1e3) / 1e9 if r.macs and busy_ms else None
    result = Breakdown(records, total_ms, step_ms)
    result.note = off_note(total_ms, step_ms)
    return result


def _add_counts(count: TrainCount, rows_for: Callable[[str, str | None], list[KindTime]], train: bool) -> None:
    for record in count.records():
        for tallies in (record.fwd, record.bwd) if train else (record.fwd,):
            for counted_kind, tally in tallies.items():
                for row in rows_for(record.path, counted_kind):
                    row.macs += tally.ops if counted_kind in MAC_KINDS else 0
                    row.bytes += tally.bytes
    for counted_kind, tally in count.optimizer.items() if train else ():
        for row in rows_for(OPTIMIZER_PATH, counted_kind):
            row.bytes += tally.bytes


def off_note(profiled_ms: float, step_ms: float | None) -> str | None:
    if not step_ms or not profiled_ms:
        return None
    off = profiled_ms / step_ms - 1
    if abs(off) <= OFF_LIMIT:
        return None
    return (f"the profiled ops add up to {profiled_ms:.1f} ms per step, the unprofiled step took {step_ms:.1f} ms "
            f"({off:+.0%}): shares are of the profiled time")


def breakdown_step(model: nn.Module, step: Callable, device: str, mode: str = "train", count: TrainCount | None = None,
                   stage_of: StageOf = first_component, step_ms: float | None = None, steps: int = 3) -> Breakdown:
    """Profile `steps` more steps of `step` and break them down; a profiler that is missing or fails
    gives an empty breakdown whose `note` says why, in one line."""
    try:
        times = profile_step(model, step, device, mode, steps)
    except Exception as exc:  # the profiler is optional: its failure must not cost the timing results
        first_line = next(iter(str(exc).splitlines()), "")
        return Breakdown(step_ms=step_ms, note=f"no breakdown: the profiler failed ({type(exc).__name__}: "
                                               f"{first_line})".replace(": )", ")"))
    result = breakdown(times, model, count, stage_of, step_ms, mode)
    result.steps, result.timing = steps, "cuda kernel time" if device == "cuda" else "cpu op time"
    if not result.records:
        result.note = "no breakdown: the profiler recorded no ops"
    elif device == "cuda" and not result.profiled_ms:
        result.records = []  # every op at 0 ms: no table rather than an all-zero one
        result.note = ("no breakdown: the profiler recorded the ops but no CUDA kernel ran in them (CUPTI, which "
                       "records kernels, is missing, or another profiler holds it)")
    return result
