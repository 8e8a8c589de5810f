"""A step to time: the one interface between what is timed and how it is timed.

`measure_steps` (and the profiler in `breakdown`, and the data-parallel ranks) call a step once per
timed iteration with a clock, and the step marks the boundaries of its phases on it: n phases, n + 1
marks. Eager torch is the first kind (`TorchStep`); a runtime that runs an exported model is another.
"""

from __future__ import annotations

from typing import Protocol

from netprobe.timing.clock import Clock

TRAIN_PHASES = ("forward", "backward", "optimizer")
INFER_PHASES = ("forward",)


class Step(Protocol):
    """Something to time, already prepared on its device: `step(clock)` runs it once, marking
    `len(phases) + 1` times; `release()` drops what it holds (models, sessions, buffers)."""

    phases: tuple[str, ...]

    def __call__(self, clock: Clock) -> None: ...

    def release(self) -> None: ...
