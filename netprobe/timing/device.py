"""Device facts: which device a name means, what it is, and its two roofs measured now (the dense
matmul rate and the memory bandwidth of a large copy), in the run's dtype and math mode.

A roof is what the device can do, so the fastest of the repetitions counts (noise only slows), over a
few rounds of which a high percentile counts (a round caught in a stall does not set it) and, within a
process, the best measurement so far is the roof; each measurement is kept as well, since roofs that
move between configurations show a busy machine. A roof below the rate a run achieved was measured
during a stall: it is measured again, and if it stays below, it is suspect (`check_roof`).

On CUDA, fp32 convolutions run in TF32 where cuDNN allows it (PyTorch's default) while fp32 matmuls do
not (also the default): the matmul roof is measured in the convolutions' math mode and named after it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import torch

from netprobe.errors import InputError
from netprobe.timing.clock import fastest_ms
from netprobe.timing.loop import percentile
from netprobe.timing.system import cpu_name

DEVICES = ("auto", "cpu", "cuda")
ROOF_MIN_REPS, ROOF_MIN_S = 5, 0.2  # a roof: the fastest of at least this many repetitions, this long
ROOF_ROUNDS, ROOF_PERCENTILE = 3, 90  # ... in this many rounds, of whose rates this percentile counts
ROOF_SLOW_S = 0.1  # on CPU, one matmul of the peak measurement should take at most about this long
_BEST_PEAK: dict[tuple[str, str], float] = {}  # by (device, roof_dtype): a TF32 roof is no fp32 one
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


def tf32_convolutions(device: str, dtype: torch.dtype) -> bool:
    """Whether the run's convolutions compute in TF32: fp32 on CUDA with cuDNN's TF32 allowed."""
    return device == "cuda" and dtype == torch.float32 and bool(torch.backends.cudnn.allow_tf32)


def roof_dtype(device: str, dtype: torch.dtype) -> str:
    """What the roof's math is called: 'tf32' where the convolutions run in TF32, else the dtype's name."""
    if tf32_convolutions(device, dtype):
        return "tf32"
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


@contextlib.contextmanager
def roof_math(device: str, dtype: torch.dtype) -> Iterator[None]:
    """Matmuls in the math mode of the run's convolutions (TF32 or not) while the roof is measured;
    cuBLAS's own setting restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32_convolutions(device, dtype)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def tf32_mode(on: bool | None) -> Iterator[None]:
    """cuDNN and cuBLAS TF32 both on or both off (--tf32 on|off) for a measurement, restored afterwards;
    None: PyTorch's settings as they are (convolutions in TF32, matmuls not, by default)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if on is not None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def peak_tflops(device: str, dtype: torch.dtype) -> float:
    """The device's dense matmul rate in this dtype (and the convolutions' math mode), measured now: the
    fastest repetition of each of ROOF_ROUNDS rounds, and of those rates the ROOF_PERCENTILE-th."""
    n = 8192 if device == "cuda" else _cpu_matmul_size(dtype)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    with roof_math(device, dtype):
        for _ in range(2):
            a @ b
        rates = [2 * n**3 / (fastest_ms(lambda: a @ b, device, ROOF_MIN_REPS, ROOF_MIN_S / ROOF_ROUNDS) / 1e3) / 1e12
                 for _ in range(ROOF_ROUNDS)]
    return percentile(rates, ROOF_PERCENTILE)


def _cpu_matmul_size(dtype: torch.dtype) -> int:
    """1024, unless this CPU multiplies in `dtype` so slowly (bf16 or fp16 without native kernels: about
    1 GFLOP/s) that one 1024 product would take over ROOF_SLOW_S: then the largest of 512 and 256 that
    does not, judged from a 256 product. The rate is per FLOP either way; the measurement stays short. fp32
    always has native kernels: 1024, so that a stall while probing cannot shrink its product."""
    if dtype == torch.float32:
        return 1024
    a = torch.randn(256, 256, dtype=dtype)
    a @ a
    t0 = time.perf_counter()
    a @ a
    seconds_256 = time.perf_counter() - t0
    return next((n for n in (1024, 512) if seconds_256 * (n // 256) ** 3 <= ROOF_SLOW_S), 256)


def device_roof(device: str, dtype: torch.dtype) -> tuple[float, float]:
    """(roof, measured now): the matmul rate measured now, and the best one this process has seen for the
    device, dtype and math mode (`roof_dtype`). A slow moment lowers the measurement, not the device's roof,
    so the roof (TFLOP/s fractions, the roofline) is the best; the measurements, compared, show a busy machine."""
    now = peak_tflops(device, dtype)
    key = (device, roof_dtype(device, dtype))
    _BEST_PEAK[key] = max(_BEST_PEAK.get(key, 0.0), now)
    return _BEST_PEAK[key], now


def check_roof(achieved_tflops: float | None, device: str, dtype: torch.dtype, roof: float) -> tuple[float, bool]:
    """(roof, suspect) once a run achieved `achieved_tflops` under `roof`: a roof below the achieved rate
    was measured during a stall, so it is measured again; still below it, the roof is suspect (a run
    cannot beat the device's dense matmul rate by much) and "of peak" must say so."""
    if not achieved_tflops or achieved_tflops <= roof:
        return roof, False
    roof, _ = device_roof(device, dtype)
    return roof, achieved_tflops > roof


def best_peaks() -> dict[tuple[str, str], float]:
    """The roofs measured so far in this process, by (device, roof_dtype: fp32, tf32, bf16, fp16)."""
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
