"""The clock every measurement in netprobe reads: phase marks inside a step, one synchronisation per step.

On CUDA a mark is an event recorded on the stream (no stall inside the step) and the durations are
read once, when the step's last mark has completed; on CPU a mark is `time.perf_counter()`.
"""

from __future__ import annotations

import time
from typing import Protocol

import torch


def synchronize(device: str) -> None:
    """Wait until the device has finished what was queued (a no-op on CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


class Clock(Protocol):
    """What a step marks its phases on: `PhaseClock`, or the profiler's stand-in in `breakdown`."""

    def mark(self) -> None: ...

    def phases_ms(self) -> list[float]: ...


class PhaseClock:
    """Marks phase boundaries: CUDA events on GPU (no sync inside a step), perf_counter on CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def phases_ms(self) -> list[float]:
        """Durations between consecutive marks; synchronises once on CUDA."""
        if self.cuda:
            self.marks[-1].synchronize()
            out = [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:], strict=False)]
        else:
            out = [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:], strict=False)]
        self.marks = []
        return out


def fastest_ms(run, device: str, min_reps: int, min_s: float) -> float:
    """The fastest of at least `min_reps` runs of `run()` lasting at least `min_s` seconds together:
    how a roof is measured, since noise only ever slows a run down."""
    clock = PhaseClock(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_s:
        clock.mark()
        run()
        clock.mark()
        times.append(clock.phases_ms()[0])
    return min(times)
