"""Steady-state timing of any step: a first run apart (compiling, autotuning, creating a session), warm-up
until step times stop falling, then the timed steps, re-timed while they still trend down.

Works on anything that runs once per call and marks its phases on a clock (`Step`): eager torch,
a compiled model, an exported model in another runtime.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from netprobe.defaults import MAX_WARMUP_S
from netprobe.timing.clock import Clock, PhaseClock

MIN_WARMUP_S = {"cpu": 1.0, "cuda": 0.5}  # warm-up lasts at least this long as well as `warmup` steps
STEADY_TOLERANCE = 0.05  # steady: the last warm-up steps within 5% of the ones before
TREND_LIMIT = 1.10  # timed steps whose first half is 10% slower than the second are still warming up
RETIMES = 2  # timed steps still falling are taken again, at most this many times


@dataclass
class StepTimes:
    """What `measure_steps` found: each timed step's phases (ms), the first run, and how warm-up went."""

    per_step: list[list[float]]  # each timed step: the milliseconds of its phases, in order
    first_s: float = 0.0  # wall seconds of the first run (compile, autotune, session creation)
    warmup_steps: int = 0  # untimed steps after the first run, until steady (re-timed steps included)
    warmup_s: float = 0.0
    steady: bool = True  # False: the timed steps were still getting faster
    warmup_capped: bool = False  # warm-up stopped at its ceiling before step times settled
    phases: tuple[str, ...] = ()  # the step's phase names, where it says them

    @property
    def steps_ms(self) -> list[float]:
        return [sum(p) for p in self.per_step]

    @property
    def step_ms(self) -> float:
        """The median step."""
        return statistics.median(self.steps_ms)

    def percentile_ms(self, q: float) -> float:
        return percentile(self.steps_ms, q)

    def phase_ms(self, index: int) -> float:
        """The median of one phase over the timed steps."""
        return statistics.median(p[index] for p in self.per_step)


def measure_steps(step: Callable[[Clock], None], device: str, warmup: int, iters: int,
                  on_step: Callable[[], None] | None = None, max_warmup_s: float = MAX_WARMUP_S,
                  min_warmup_s: float | None = None, on_status: Callable[[str], None] | None = None) -> StepTimes:
    """Run `step(clock)` once (timed apart), warm it up until steady, then time `iters` steps.

    Warm-up lasts at least `warmup` steps and `min_warmup_s` (default by device), until step times
    stop falling, and at most `max_warmup_s` (once `warmup` steps are done). `on_step` is called after
    the first run, after each of the first `warmup` warm-up steps and once per timed step (1 + warmup
    + iters calls in all). `on_status(text)` says what it is doing, for a progress display: the first
    step, each warm-up step while it waits for steady times (against the ceiling), the timed steps.
    """
    tick = on_step or (lambda: None)
    say = on_status or (lambda text: None)
    clock = PhaseClock(device)
    say("first step (allocating, compiling, autotuning)")
    t0 = time.perf_counter()
    step(clock)
    clock.phases_ms()
    first_s = time.perf_counter() - t0
    tick()
    min_s = MIN_WARMUP_S.get(device, 1.0) if min_warmup_s is None else min_warmup_s

    def waiting(steps: int, seconds: float) -> None:
        say(f"warm-up: {steps} steps, {seconds:.1f} s of at most {max_warmup_s:g} s, waiting for step times to settle")

    warmup_steps, warmup_s, capped = warm_up(step, clock, warmup, min_s, max_warmup_s, tick, waiting)
    say(f"timing {iters} steps")
    per_step = timed(step, clock, iters)
    for _ in range(RETIMES):  # still getting faster: those steps were warm-up too
        if not trending_down([sum(p) for p in per_step]):
            break
        warmup_steps += len(per_step)
        warmup_s += sum(sum(p) for p in per_step) / 1e3
        say(f"timing {iters} steps again: they were still getting faster")
        per_step = timed(step, clock, iters)
    for _ in per_step:
        tick()
    return StepTimes(per_step, first_s, warmup_steps, warmup_s, not trending_down([sum(p) for p in per_step]),
                     capped, tuple(getattr(step, "phases", ())))


def warm_up(step: Callable[[Clock], None], clock: Clock, warmup: int, min_s: float, max_s: float,
            on_step: Callable[[], None], on_warmup: Callable[[int, float], None] | None = None,
            ) -> tuple[int, float, bool]:
    """Untimed steps until `warmup` are done, `min_s` has passed, and step times stopped falling (the
    last three within 5% of the three before); at most `max_s`. Returns (steps, seconds, capped)."""
    if warmup == 0:
        return 0, 0.0, False
    times: list[float] = []
    start = time.perf_counter()
    while True:
        step(clock)
        times.append(sum(clock.phases_ms()))
        if len(times) <= warmup:
            on_step()
        elapsed = time.perf_counter() - start
        if on_warmup:
            on_warmup(len(times), elapsed)
        if len(times) >= warmup and elapsed >= min_s and steady(times):
            return len(times), elapsed, False
        if len(times) >= warmup and elapsed >= max_s:
            return len(times), elapsed, True


def steady(times: list[float]) -> bool:
    """Step times that stopped falling: the median of the last three within 5% of the three before."""
    if len(times) < 6:
        return len(times) >= 2 and abs(times[-1] - times[-2]) <= STEADY_TOLERANCE * times[-2]
    recent, before = statistics.median(times[-3:]), statistics.median(times[-6:-3])
    return recent >= before * (1 - STEADY_TOLERANCE)


def trending_down(steps: list[float]) -> bool:
    """Timed steps whose first half is clearly slower than the second: not yet at steady state."""
    if len(steps) < 4:
        return False
    half = len(steps) // 2
    return statistics.median(steps[:half]) > TREND_LIMIT * statistics.median(steps[-half:])


def timed(step: Callable[[Clock], None], clock: Clock, iters: int) -> list[list[float]]:
    """`iters` steps, each one's phase durations (ms)."""
    phases = []
    for _ in range(iters):
        step(clock)
        phases.append(clock.phases_ms())
    return phases


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile, linearly interpolated between the nearest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
