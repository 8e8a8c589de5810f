"""Device facts: which device a name means, what it is, and its two roofs measured now (the dense
matmul rate and the memory bandwidth of a large copy), in the run's dtype.

A roof is what the device can do, so the fastest of the repetitions counts (noise only slows) and,
within a process, the best measurement so far is the roof; each measurement is kept as well, since
roofs that move between configurations show a busy machine.
"""

from __future__ import annotations

import time

import torch

from netprobe.errors import InputError
from netprobe.timing.clock import fastest_ms
from netprobe.timing.system import cpu_name

DEVICES = ("auto", "cpu", "cuda")
ROOF_MIN_REPS, ROOF_MIN_S = 5, 0.2  # a roof: the fastest of at least this many repetitions, this long
ROOF_SLOW_S = 0.1  # on CPU, one matmul of the peak measurement should take at most about this long
_BEST_PEAK: dict[tuple[str, torch.dtype], float] = {}
_BANDWIDTH: dict[tuple[str, torch.dtype], float] = {}


def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when present, else 'cpu'; 'cuda' without CUDA is a user error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        build_kind = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise InputError(f"--device cuda asked for, but CUDA is not available (torch {torch.__version__} is "
                         f"{build_kind}, or no GPU is visible); available: cpu. Use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise InputError(f"device {name!r} is not supported; use {', '.join(DEVICES)}")
    return name


def device_info(device: str) -> dict:
    """What the device is: its name, torch's version, threads; on CUDA its memory, CUDA and cuDNN versions."""
    info = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_mb=round(props.total_memory / 2**20), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), capability=f"{props.major}.{props.minor}")
    else:
        info["name"] = cpu_name()
    return info


def peak_tflops(device: str, dtype: torch.dtype) -> float:
    """The device's dense matmul rate in this dtype, measured now: the fastest of the repetitions."""
    n = 8192 if device == "cuda" else _cpu_matmul_size(dtype)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    return 2 * n**3 / (fastest_ms(lambda: a @ b, device, ROOF_MIN_REPS, ROOF_MIN_S) / 1e3) / 1e12


def _cpu_matmul_size(dtype: torch.dtype) -> int:
    """1024, unless this CPU multiplies in `dtype` so slowly (bf16 or fp16 without native kernels: about
    1 GFLOP/s) that one 1024 product would take over ROOF_SLOW_S: then the largest of 512 and 256 that
    does not, judged from a 256 product. The rate is per FLOP either way; the measurement stays short."""
    a = torch.randn(256, 256, dtype=dtype)
    a @ a
    t0 = time.perf_counter()
    a @ a
    seconds_256 = time.perf_counter() - t0
    return next((n for n in (1024, 512) if seconds_256 * (n // 256) ** 3 <= ROOF_SLOW_S), 256)


def device_roof(device: str, dtype: torch.dtype) -> tuple[float, float]:
    """(roof, measured now): the matmul rate measured now, and the best one this process has seen
    for the device and dtype. A slow moment lowers the measurement, not the device's roof, so the
    roof (TFLOP/s fractions, the roofline) is the best; the measurements, compared, show a busy machine."""
    now = peak_tflops(device, dtype)
    key = (device, dtype)
    _BEST_PEAK[key] = max(_BEST_PEAK.get(key, 0.0), now)
    return _BEST_PEAK[key], now


def best_peaks() -> dict[tuple[str, torch.dtype], float]:
    """The roofs measured so far in this process, by (device, dtype)."""
    return dict(_BEST_PEAK)


def memory_bandwidth_gbs(device: str, dtype: torch.dtype) -> float:
    """The device's memory bandwidth in GB/s (1e9 bytes), measured once per process by copying a tensor
    far larger than any cache: each copy reads and writes it once; the fastest copy counts."""
    key = (device, dtype)
    if key not in _BANDWIDTH:
        elems = (1 << 30 if device == "cuda" else 1 << 28) // torch.empty((), dtype=dtype).element_size()
        src = torch.ones(elems, device=device, dtype=dtype)
        dst = torch.empty_like(src)
        for _ in range(2):
            dst.copy_(src)
        moved = 2 * src.numel() * src.element_size()
        _BANDWIDTH[key] = moved / (fastest_ms(lambda: dst.copy_(src), device, ROOF_MIN_REPS, ROOF_MIN_S) / 1e3) / 1e9
        del src, dst
    return _BANDWIDTH[key]
