"""Timing: the clock, the steady-state loop, device facts and roofs, memory probes, and the steps to time.

    step = TorchStep(model, x, y, mode="train")          # or any object with phases, __call__(clock), release()
    times = measure_steps(step, "cpu", warmup=3, iters=10)
    times.step_ms, times.percentile_ms(90), times.phase_ms(1)

bench, compare, breakdown and the data-parallel ranks all measure through these names.
"""

from netprobe.timing.clock import Clock, PhaseClock, fastest_ms, synchronize
from netprobe.timing.device import (
    DEVICES,
    best_peaks,
    check_roof,
    device_info,
    device_roof,
    memory_bandwidth_gbs,
    peak_tflops,
    resolve_device,
    roof_dtype,
    roof_math,
    tf32_mode,
)
from netprobe.timing.loop import (
    MIN_WARMUP_S,
    StepTimes,
    measure_steps,
    percentile,
    timed,
    warm_up,
)
from netprobe.timing.memory import (
    PeakAfterFirstStep,
    is_oom,
    peak_mb,
    peak_reserved_mb,
    release_memory,
    reset_peak,
    rss_mb,
)
from netprobe.timing.stages import StageTime, stage_times
from netprobe.timing.step import INFER_PHASES, TRAIN_PHASES, Step
from netprobe.timing.system import cpu_name, usable_cores
from netprobe.timing.torch_step import AMP_DTYPES, DTYPE_NAMES, OPTIMIZERS, TorchStep, loss_name
from netprobe.timing.verdict import BUSY_SPREAD, busy_line

__all__ = [
    "AMP_DTYPES", "BUSY_SPREAD", "DEVICES", "DTYPE_NAMES", "INFER_PHASES",
    "MIN_WARMUP_S", "OPTIMIZERS", "TRAIN_PHASES", "Clock", "PeakAfterFirstStep", "PhaseClock", "StageTime", "Step",
    "StepTimes", "TorchStep", "best_peaks", "busy_line", "check_roof", "cpu_name", "device_info", "device_roof",
    "fastest_ms", "is_oom", "loss_name", "measure_steps", "memory_bandwidth_gbs", "peak_mb", "peak_reserved_mb",
    "peak_tflops", "percentile", "release_memory", "reset_peak", "resolve_device", "roof_dtype", "roof_math", "rss_mb",
    "stage_times", "synchronize", "tf32_mode", "timed", "usable_cores", "warm_up",
]
