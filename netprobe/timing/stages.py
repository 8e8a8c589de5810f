"""Each stage of a sequential backbone timed alone, at the input it really gets: forward, and backward
when training. The stages are a model's top-level children, run one after the other."""

from __future__ import annotations

import contextlib
import statistics
from dataclasses import dataclass

import torch
from torch import nn

from netprobe.timing.clock import Clock, PhaseClock


@dataclass
class StageTime:
    name: str
    in_shape: list[int]
    fwd_ms: float
    bwd_ms: float | None  # None when inferring
    macs: int  # for the whole batch
    fwd_gflops: float
    bwd_gflops: float | None  # 2 x the stage's counted backward MACs / its backward time; None when not counted
    bwd_macs: int | None = None  # for the whole batch, counted op by op in the train step (grad inputs and weights)


def stage_times(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, train: bool, warmup: int, iters: int,
                macs: dict[str, int], bwd_macs: dict[str, int] | None = None) -> list[StageTime]:
    """Time of each top-level child of `model` alone (at least one warm-up run, then `iters` timed),
    its input the previous stage's output; `macs` holds each stage's MACs for the whole batch, `bwd_macs`
    its backward's as counted (no backward rate where it is not given: none is assumed)."""
    device = x.device.type
    autocast = (lambda: torch.autocast(device, dtype=dtype)) if dtype != torch.float32 else contextlib.nullcontext
    out: list[StageTime] = []
    inp = x
    model.train(train)
    for name, stage in model.named_children():
        fwd, bwd = [], []
        clock = PhaseClock(device)
        for i in range(max(1, warmup) + iters):
            f, b = _time_stage(stage, inp, clock, autocast, train)
            if i >= max(1, warmup):
                fwd.append(f)
                bwd.append(b)
        stage.zero_grad(set_to_none=True)
        stage_macs = macs.get(name, 0)
        f_ms = statistics.median(fwd)
        b_ms = statistics.median(bwd) if train else None
        stage_bwd = (bwd_macs or {}).get(name) if train else None
        out.append(StageTime(name, list(inp.shape[1:]), f_ms, b_ms, stage_macs, 2 * stage_macs / (f_ms / 1e3) / 1e9,
                             2 * stage_bwd / (b_ms / 1e3) / 1e9 if b_ms and stage_bwd else None, stage_bwd))
        with torch.no_grad(), autocast():
            inp = stage(inp.detach())
    return out


def _time_stage(stage: nn.Module, inp: torch.Tensor, clock: Clock, autocast, train: bool) -> tuple:
    if not train:
        clock.mark()
        with torch.inference_mode(), autocast():
            stage(inp)
        clock.mark()
        return clock.phases_ms()[0], None
    inp = inp.detach().requires_grad_(True)
    clock.mark()
    with autocast():
        y = stage(inp)
    clock.mark()
    y.float().sum().backward()
    clock.mark()
    return tuple(clock.phases_ms())
