"""Memory probes: a fresh peak before a measurement, the peak it reached, memory given back between
measurements, and whether a failure was running out of memory.

CUDA: the caching allocator's peak allocated bytes (and its peak reserved bytes beside), from the
second step on (`PeakAfterFirstStep`: the first step's autotuning workspaces are not the step's).
CPU: growth of the process's peak resident set (VmHWM, reset through /proc/self/clear_refs) over the
resident set when the peak was reset.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re

import torch

from netprobe.timing.system import read_proc

CUDA_PEAK, CPU_PEAK = "cuda peak allocated", "cpu peak RSS growth"  # what a peak in MB measures


def _rss_kb(field_name: str) -> int | None:
    match = re.search(rf"{field_name}:\s+(\d+)", read_proc("/proc/self/status"))
    return int(match.group(1)) if match else None


def reset_peak(device: str) -> int | None:
    """Start a fresh peak; returns the CPU baseline RSS (kB) that peak growth is measured from."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return None
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: reset VmHWM to the current RSS
    return _rss_kb("VmRSS")


def peak_mb(device: str, baseline_kb: int | None) -> tuple[float | None, str]:
    """(peak MB since `reset_peak`, what it measures); (None, '') where the system does not say."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20, CUDA_PEAK
    peak = _rss_kb("VmHWM")
    if peak is None or baseline_kb is None:
        return None, ""
    return (peak - baseline_kb) / 1024, CPU_PEAK


def peak_reserved_mb(device: str) -> float | None:
    """CUDA: the most memory the caching allocator held from the device since `reset_peak`, MB (what
    allocations plus the allocator's fragmentation and cache cost); None elsewhere."""
    return torch.cuda.max_memory_reserved() / 2**20 if device == "cuda" else None


class PeakAfterFirstStep:
    """A step whose CUDA memory peak is reset once its first run has finished, so that the peak read
    after timing is the steady steps' own, not cudnn.benchmark's or inductor's autotuning workspace.
    On the CPU nothing changes: peak RSS growth is counted from the baseline taken before the first run."""

    def __init__(self, step, device: str) -> None:
        self.step, self.device, self.runs = step, device, 0
        self.phases = getattr(step, "phases", ())

    def __call__(self, clock) -> None:
        if self.runs == 1 and self.device == "cuda":
            torch.cuda.synchronize()  # the first step's kernels (and their workspaces) have finished
            torch.cuda.reset_peak_memory_stats()
        self.runs += 1
        self.step(clock)

    def release(self) -> None:
        self.step.release()


def rss_mb() -> float | None:
    """The process's resident set now, MB."""
    rss = _rss_kb("VmRSS")
    return None if rss is None else rss / 1024


def release_memory(device: str) -> None:
    """Give freed memory back (collect garbage, empty the CUDA cache, trim the C heap) before the next measurement."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    else:
        _trim_heap()


def _trim_heap() -> None:
    # glibc keeps freed heap memory for reuse; without giving it back, the next configuration's
    # peak RSS growth would hide inside what the previous one left.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


_OOM_ERRORS = tuple({getattr(torch, "OutOfMemoryError", MemoryError), torch.cuda.OutOfMemoryError, MemoryError})


# What a RuntimeError says when memory ran out without torch's own OutOfMemoryError: CUDA itself, the
# CPU allocator, and cuBLAS / cuDNN failing to allocate their workspaces.
OOM_TEXTS = ("out of memory", "can't allocate memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` means the device ran out of memory (a result, not a crash)."""
    if isinstance(exc, _OOM_ERRORS):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(needle in text for needle in OOM_TEXTS)
