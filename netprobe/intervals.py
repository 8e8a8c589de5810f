"""How sure a measured speed is: the median rate of timed steps, and the ratio of two such rates, each
with a 90% interval by bootstrap over the steps.

The bootstrap is seeded, so the same steps always give the same interval; it imports nothing heavy
(`history diff` uses it without torch).

    rate = median_rate(steps_ms, items_per_step=8)      # imgs/s: value, low, high
    ratio = speed_ratio(base_steps_ms, steps_ms)         # > 1: the second is faster
    verdict(ratio)                                       # faster | slower | no difference
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.90
RESAMPLES = 2000
MIN_RESAMPLES = 200
MAX_DRAWS = 4_000_000  # resamples x steps: many steps get fewer resamples (at least MIN_RESAMPLES)
SEED = 20261206
WIDE = 0.10  # an interval reaching more than 10% of the figure away from it: a noisy measurement
MAX_KEPT_STEPS = 100_000  # step times a row keeps (what the results database accepts): more are thinned evenly
FASTER, SLOWER, SAME = "faster", "slower", "no difference"
INTERVAL_NOTE = ("median ± half its 90% interval (bootstrap over the timed steps); ? = wide: the interval reaches "
                 f"more than {WIDE:.0%} from the median, a noisy figure")


@dataclass(frozen=True)
class Interval:
    """A figure and its 90% interval (`low` <= `high`)."""

    value: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    @property
    def wide(self) -> bool:
        """The interval reaches further than `WIDE` of the figure on either side."""
        return self.value > 0 and max(self.value - self.low, self.high - self.value) > WIDE * self.value

    def bounds(self) -> list[float]:
        """[low, high], as JSON keeps it (`..._ci90`)."""
        return [self.low, self.high]


def median_rate(steps_ms: Sequence[float], items_per_step: float = 1.0, seed: int = SEED) -> Interval | None:
    """Items per second at the median step, with its 90% interval (percentile bootstrap of the median
    over the steps); None with fewer than two steps (no spread to resample)."""
    steps = _usable(steps_ms)
    if steps is None:
        return None
    rng = random.Random(seed)
    medians = [_resampled_median(steps, rng) for _ in range(_resamples(len(steps)))]
    rate = 1e3 * items_per_step
    low, high = _percentiles(medians)
    return Interval(rate / statistics.median(steps), rate / high, rate / low)


def speed_ratio(base_steps_ms: Sequence[float], steps_ms: Sequence[float], base_items: float = 1.0,
                items: float = 1.0, seed: int = SEED) -> Interval | None:
    """The speed of `steps_ms` over that of `base_steps_ms` (items per second, each at its median step;
    above 1: faster than the base), with its 90% interval by bootstrap over both sides' steps, each
    resampled on its own; None where either side has fewer than two steps."""
    base, steps = _usable(base_steps_ms), _usable(steps_ms)
    if base is None or steps is None:
        return None
    rng = random.Random(seed)
    scale = items / base_items
    ratios = [scale * _resampled_median(base, rng) / _resampled_median(steps, rng)
              for _ in range(_resamples(max(len(base), len(steps))))]
    low, high = _percentiles(ratios)
    return Interval(scale * statistics.median(base) / statistics.median(steps), low, high)


def verdict(ratio: Interval) -> str:
    """faster / slower where the whole interval of a speed ratio is above / below 1, else no difference."""
    if ratio.low > 1:
        return FASTER
    if ratio.high < 1:
        return SLOWER
    return SAME


def slower_beyond(ratio: Interval | float, fraction: float) -> bool:
    """Slower by more than `fraction` (0.05: step times 5% longer) with 90% confidence: the interval's
    top below 1 / (1 + fraction); a bare ratio (no interval kept) is taken as it is."""
    top = ratio.high if isinstance(ratio, Interval) else ratio
    return top < 1 / (1 + fraction)


def interval_text(interval: Interval, digits: int = 1, unit: str = "") -> str:
    """'123.4 ±2.1' (± half the interval), '1.21 ±0.04×' for a ratio; a '?' after a wide one."""
    return f"{interval.value:.{digits}f} ±{interval.half_width:.{digits}f}{unit}" + ("?" if interval.wide else "")


def figure_text(value: float, ci90: Sequence[float] | None, digits: int = 1, unit: str = "") -> str:
    """A figure as a cell shows it: with its interval where one was kept (JSON's `..._ci90`), else alone."""
    if not ci90:
        return f"{value:.{digits}f}{unit}"
    return interval_text(Interval(value, min(ci90), max(ci90)), digits, unit)


def kept_steps(steps_ms: Sequence[float]) -> list[float]:
    """Step times as a row keeps them: 6 significant digits, at most `MAX_KEPT_STEPS` (evenly thinned)."""
    stride = max(1, -(-len(steps_ms) // MAX_KEPT_STEPS))
    return [float(f"{t:.6g}") for t in list(steps_ms)[::stride]]


def _usable(steps_ms: Sequence[float]) -> list[float] | None:
    steps = [float(t) for t in steps_ms if math.isfinite(t) and t > 0]
    return steps if len(steps) >= 2 else None


def _resamples(n: int) -> int:
    return max(MIN_RESAMPLES, min(RESAMPLES, MAX_DRAWS // n))


def _resampled_median(steps: list[float], rng: random.Random) -> float:
    return statistics.median(rng.choices(steps, k=len(steps)))


def _percentiles(values: list[float]) -> tuple[float, float]:
    """The (5th, 95th) percentiles: the two ends of the 90% interval."""
    ordered = sorted(values)
    tail = (1 - CONFIDENCE) / 2

    def at(q: float) -> float:
        pos = (len(ordered) - 1) * q
        lo = int(pos)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)

    return at(tail), at(1 - tail)
