"""Were the numbers taken on a busy machine? The evidence and the one-line verdict under a table."""

from __future__ import annotations

BUSY_SPREAD = 1.3  # p90 / p10 of the timed steps (or max / min over rounds) above this: the machine was busy
PEAK_DRIFT = 1.15  # matmul roofs measured per configuration that differ by more than this: the same


def busy_line(step_spreads: list[float], peaks: list[float], steady: bool, round_spreads: list[float] = (),
              capped: bool = False, suspect_roofs: list[str] = ()) -> str:
    """The busy-machine note from its evidence: each configuration's p90/p10 of step times, the
    matmul peaks measured, whether the timed steps were steady, whether warm-up stopped at its ceiling
    before they settled, (compare) each variant's max/min throughput over rounds, and the configurations
    whose matmul roof stayed below the rate they achieved. '' when nothing points to a busy machine."""
    reasons = []
    if step_spreads and max(step_spreads) > BUSY_SPREAD:
        reasons.append(f"step times spread widely (p90/p10 up to {_over(max(step_spreads))}; a quiet machine "
                       f"stays within {BUSY_SPREAD})")
    if round_spreads and max(round_spreads) > BUSY_SPREAD:
        limit = "" if reasons else f"; a quiet machine stays within {BUSY_SPREAD}"  # said once
        reasons.append(f"a variant's throughput varied between rounds (max/min up to {_over(max(round_spreads))}"
                       f"{limit})")
    if len(peaks) > 1 and max(peaks) / min(peaks) > PEAK_DRIFT:
        reasons.append(f"the measured matmul peak moved between configurations ({min(peaks):.2f}–{max(peaks):.2f} "
                       "TFLOP/s)")
    if not steady:
        reasons.append("some timed steps were still getting faster after warm-up")
    if suspect_roofs:
        reasons.append(f"the matmul roof measured for {', '.join(suspect_roofs)} stayed below the rate the run "
                       "achieved, even measured again: it was taken during a stall, so its 'of peak' (marked ?) is "
                       "not a fraction of what the device can do")
    if capped:
        reasons.append("warm-up reached its ceiling before step times settled (--max-warmup-s)")
    return ("note: " + "; ".join(reasons) + " — the numbers were taken on a busy machine; run again on a quiet "
            "one") if reasons else ""


def _over(ratio: float) -> str:
    """A ratio above BUSY_SPREAD written with the digits that show it is above (1.304, not 1.30)."""
    digits = 2
    while round(ratio, digits) <= BUSY_SPREAD and digits < 6:
        digits += 1
    return f"{ratio:.{digits}f}"
