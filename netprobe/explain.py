"""Why a measured step takes the time it does: the breakdown by op kind and the roofline per stage,
from one call after bench's timed steps. Everything here is optional: what fails becomes a
one-line note, and the timing results stand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from netprobe.breakdown import Breakdown, OpTime, StageOf, breakdown, breakdown_step
from netprobe.counting import TrainCount, count_train
from netprobe.errors import one_line
from netprobe.op_kinds import first_component
from netprobe.roofline import Roofline, roofline, stage_families
from netprobe.timing import OPTIMIZERS, memory_bandwidth_gbs, roof_dtype


@dataclass
class Explanation:
    """What `explain_step` found: the breakdown, the roofline, the train count behind both, one note."""

    breakdown: Breakdown
    roofline: Roofline | None
    count: TrainCount | None
    note: str | None


def explain_step(model: nn.Module, step: Callable, x: torch.Tensor, device: str, dtype: torch.dtype,
                 mode: str = "train", optimizer: str = "sgd", step_ms: float | None = None,
                 peak_tflops: float | None = None, stage_of: StageOf = first_component,
                 steps: int = 3, count: TrainCount | None = None) -> Explanation:
    """Count the step of `model` on `x` (meta device; or take `count`, the same step counted already),
    profile `steps` more runs of `step(clock)` (a timing `Step`) under torch's profiler, and set the two
    beside each other and against the device's roofs."""
    notes: list[str] = []
    count = count or _count(model, x, dtype, mode, optimizer, notes)
    found = breakdown_step(model, step, device, mode, count, stage_of, step_ms, steps)
    return _explained(model, found, count, device, dtype, mode, peak_tflops, stage_of, notes)


def explain_profiled(model: nn.Module, times: list[OpTime], x: torch.Tensor, device: str, dtype: torch.dtype,
                     step_ms: float | None = None, peak_tflops: float | None = None,
                     stage_of: StageOf = first_component, count: TrainCount | None = None) -> Explanation:
    """The same for an inference step profiled by a runtime's own profiler: its op times (given to
    modules of `model`) beside the counted forward, and against the device's roofs."""
    notes: list[str] = []
    count = count or _count(model, x, dtype, "infer", "sgd", notes)
    found = breakdown(times, model, count, stage_of, step_ms, "infer")
    if not found.records:
        found.note = "no breakdown: the runtime's profiler recorded no ops"
    return _explained(model, found, count, device, dtype, "infer", peak_tflops, stage_of, notes)


def _count(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, mode: str, optimizer: str,
           notes: list[str]) -> TrainCount | None:
    try:
        return count_train(model, tuple(x.shape), dtype=dtype,
                           optimizer=OPTIMIZERS.get(optimizer) if mode == "train" else None,
                           forward_only=mode != "train")
    except Exception as exc:  # a module the meta counter cannot run still gets its times
        notes.append(f"no MAC or byte shares: counting the train step failed ({one_line(exc)})")
        return None


def _explained(model: nn.Module, found: Breakdown, count: TrainCount | None, device: str, dtype: torch.dtype,
               mode: str, peak_tflops: float | None, stage_of: StageOf, notes: list[str]) -> Explanation:
    if found.note:
        notes.append(found.note)
    roof = None
    if count is not None and peak_tflops and found.records:
        bandwidth = memory_bandwidth_gbs(device, dtype)
        roof = roofline(count, peak_tflops, bandwidth, roof_dtype(device, dtype), stage_of,
                        found.stage_ms(), stage_families(model, count, stage_of), backward=mode == "train")
    return Explanation(found, roof, count, "; ".join(notes) or None)
