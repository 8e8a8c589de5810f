"""Honest timing of training and inference: warm-up, synchronised phases, medians with spread.

A train step is what a training loop does: forward, cross-entropy on random labels, backward,
optimizer step. Each phase is timed (CUDA events on GPU, a monotonic clock on CPU) and the
step is synchronised once at its end, so timing adds no stalls inside the step.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from netprobe.api import build
from netprobe.counting import count
from netprobe.errors import InputError
from netprobe.spec import Spec, parse_spec
from netprobe.summary import check_input, parse_imgsz

AMP_DTYPES = {"off": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class BenchConfig:
    """One measurement: a spec on a device at a batch and image size, training or inferring."""

    spec: str
    device: str = "cpu"
    batch: int = 8
    imgsz: int | None = None  # None: the arch's own
    mode: str = "train"  # train | infer
    amp: str = "off"  # off | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    optimizer: str = "sgd"  # sgd | adamw
    warmup: int = 3
    iters: int = 10
    per_stage: bool = False


@dataclass
class StageTime:
    name: str
    in_shape: list[int]
    fwd_ms: float
    bwd_ms: float
    macs: int  # for the whole batch
    fwd_gflops: float
    bwd_gflops: float  # backward does about twice the forward's work


@dataclass
class BenchResult:
    """A flat record: one row of the bench table, one object of its JSON, one line of its CSV."""

    spec: str
    device: str
    dtype: str
    batch: int
    imgsz: int
    mode: str
    status: str  # ok | oom | error
    imgs_per_s: float | None = None
    fwd_ms: float | None = None
    bwd_ms: float | None = None
    opt_ms: float | None = None
    step_ms: float | None = None
    step_p10_ms: float | None = None
    step_p90_ms: float | None = None
    peak_mem_mb: float | None = None
    mem_kind: str = ""
    tflops: float | None = None
    peak_tflops: float | None = None
    peak_fraction: float | None = None
    compile_s: float | None = None
    macs_per_img: int = 0
    params: int = 0
    channels_last: bool = False
    compiled: bool = False
    optimizer: str = ""
    iters: int = 0
    error: str | None = None
    stages: list[StageTime] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ---- device ------------------------------------------------------------------------------------

def resolve_device(name: str) -> str:
    """'auto' -> 'cuda' when present, else 'cpu'; 'cuda' without CUDA is a user error."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        build_kind = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise InputError(f"--device cuda asked for, but CUDA is not available (torch {torch.__version__} is "
                         f"{build_kind}, or no GPU is visible); available: cpu. Use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise InputError(f"device {name!r} is not supported; use auto, cpu or cuda")
    return name


def device_info(device: str) -> dict:
    info = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(name=props.name, memory_mb=round(props.total_memory / 2**20), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(), capability=f"{props.major}.{props.minor}")
    else:
        info["name"] = _cpu_name()
    return info


def _cpu_name() -> str:
    match = re.search(r"model name\s*:\s*(.+)", _read("/proc/cpuinfo"))
    if match:
        return match.group(1).strip()
    import platform

    return platform.processor() or platform.machine()


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


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


_PEAK_CACHE: dict[tuple[str, torch.dtype], float] = {}


def peak_tflops(device: str, dtype: torch.dtype) -> float:
    """The device's dense matmul rate in this dtype, measured (once per run): the roof for TFLOP/s."""
    key = (device, dtype)
    if key not in _PEAK_CACHE:
        n = 8192 if device == "cuda" else 1024
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        reps = 20 if device == "cuda" else 5
        for _ in range(2):
            a @ b
        clock = PhaseClock(device)
        times = []
        for _ in range(reps):
            clock.mark()
            a @ b
            clock.mark()
            times.append(clock.phases_ms()[0])
        _PEAK_CACHE[key] = 2 * n**3 / (statistics.median(times) / 1e3) / 1e12
    return _PEAK_CACHE[key]


# ---- memory ------------------------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _rss_kb(field_name: str) -> int | None:
    match = re.search(rf"{field_name}:\s+(\d+)", _read("/proc/self/status"))
    return int(match.group(1)) if match else None


def _reset_peak(device: str) -> int | None:
    """Start a fresh peak; returns the CPU baseline RSS (kB) that peak growth is measured from."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return None
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # Linux: reset VmHWM to the current RSS
    return _rss_kb("VmRSS")


def _peak_mb(device: str, baseline_kb: int | None) -> tuple[float | None, str]:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20, "cuda peak allocated"
    peak = _rss_kb("VmHWM")
    if peak is None or baseline_kb is None:
        return None, ""
    return (peak - baseline_kb) / 1024, "cpu peak RSS growth"


_OOM_ERRORS = tuple({getattr(torch, "OutOfMemoryError", MemoryError), torch.cuda.OutOfMemoryError, MemoryError})


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, _OOM_ERRORS):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _free(device: str) -> None:
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


# ---- measurement -------------------------------------------------------------------------------

def validate(config: BenchConfig) -> Spec:
    """Check a configuration before any work; returns the parsed spec."""
    spec = parse_spec(config.spec)
    if config.iters < 1:
        raise InputError(f"iters {config.iters} is not allowed; iters must be at least 1")
    if config.warmup < 0:
        raise InputError(f"warmup {config.warmup} is not allowed; warmup must be 0 or more")
    if config.mode not in ("train", "infer"):
        raise InputError(f"mode {config.mode!r} is not allowed; use train or infer")
    if config.amp not in AMP_DTYPES:
        raise InputError(f"amp {config.amp!r} is not allowed; use off, bf16 or fp16")
    if config.optimizer not in ("sgd", "adamw"):
        raise InputError(f"optimizer {config.optimizer!r} is not allowed; use sgd or adamw")
    size = parse_imgsz(config.imgsz, spec.table.imgsz)
    check_input(spec, size, config.batch)
    stride = spec.table.min_imgsz()
    if config.mode == "train" and config.batch * -(-size[0] // stride) * -(-size[1] // stride) < 2:
        raise InputError(f"batch {config.batch} at {size[0]} px leaves batch norm one value per channel in the "
                         f"last stage, which cannot train; use batch >= 2 or an image of at least {stride + 1} px")
    return spec


def benchmark(config: BenchConfig, on_step: Callable[[], None] | None = None) -> BenchResult:
    """Measure one configuration. Out of memory is a result (`status='oom'`), not an exception."""
    spec = validate(config)
    device = resolve_device(config.device)
    config = replace(config, device=device)
    imgsz = parse_imgsz(config.imgsz, spec.table.imgsz)[0]
    dtype = AMP_DTYPES[config.amp]
    macs = count(build(spec, device="meta"), (1, 3, imgsz, imgsz)).macs
    result = BenchResult(str(spec), device, DTYPE_NAMES[dtype], config.batch, imgsz, config.mode, "ok",
                         macs_per_img=macs, channels_last=config.channels_last, compiled=config.compile,
                         optimizer=config.optimizer if config.mode == "train" else "", iters=config.iters)
    _free(device)
    baseline = _reset_peak(device)
    try:
        _measure(spec, config, imgsz, dtype, result, on_step or (lambda: None))
        result.peak_mem_mb, result.mem_kind = _peak_mb(device, baseline)
    except Exception as exc:
        if not is_oom(exc):
            first_line = next(iter(str(exc).splitlines()), "")
            result.status, result.error = "error", f"{type(exc).__name__}: {first_line}".rstrip(": ")
        else:
            result.status, result.error = "oom", "out of memory"
            result.peak_mem_mb, result.mem_kind = _peak_mb(device, baseline)
    finally:
        _free(device)
    return result


def _measure(spec: Spec, config: BenchConfig, imgsz: int, dtype: torch.dtype, result: BenchResult,
             on_step: Callable[[], None]) -> None:
    device = config.device
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    model = build(spec, device=device)
    result.params = sum(p.numel() for p in model.parameters())
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(config.batch, 3, imgsz, imgsz, device=device).contiguous(memory_format=fmt)
    classes = spec.table.classes
    y = torch.randint(0, max(classes, 1), (config.batch,), device=device)
    step = _make_step(model, x, y, config, dtype, classes)

    phases_per_step: list[list[float]] = []
    clock = PhaseClock(device)
    for i in range(config.warmup + config.iters):
        t0 = time.perf_counter()
        step(clock)
        phases = clock.phases_ms()
        if i == 0 and config.compile:
            result.compile_s = time.perf_counter() - t0
        if i >= config.warmup:
            phases_per_step.append(phases)
        on_step()
    steps = [sum(p) for p in phases_per_step]
    result.step_ms = statistics.median(steps)
    result.step_p10_ms, result.step_p90_ms = _percentile(steps, 10), _percentile(steps, 90)
    result.fwd_ms = statistics.median(p[0] for p in phases_per_step)
    if config.mode == "train":
        result.bwd_ms = statistics.median(p[1] for p in phases_per_step)
        result.opt_ms = statistics.median(p[2] for p in phases_per_step)
    result.imgs_per_s = config.batch / (result.step_ms / 1e3)
    work = 3 if config.mode == "train" else 1  # backward is about twice the forward
    result.tflops = work * 2 * result.macs_per_img * config.batch / (result.step_ms / 1e3) / 1e12
    result.peak_tflops = peak_tflops(device, dtype)
    result.peak_fraction = result.tflops / result.peak_tflops
    if config.per_stage and config.mode == "train":
        result.stages = stage_times(model, x, dtype, config, spec)


def _make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: BenchConfig, dtype: torch.dtype,
               classes: int) -> Callable[[PhaseClock], None]:
    device, amp = config.device, dtype != torch.float32
    autocast = (lambda: torch.autocast(device, dtype=dtype)) if amp else contextlib.nullcontext
    if config.compile:
        model = torch.compile(model)

    def loss_of(out: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.float(), y) if classes else out.float().pow(2).mean()

    if config.mode == "infer":
        model.eval()

        def infer(clock: PhaseClock) -> None:
            clock.mark()
            with torch.inference_mode(), autocast():
                model(x)
            clock.mark()

        return infer

    model.train()
    params = list(model.parameters())
    opt = (torch.optim.SGD(params, lr=0.01, momentum=0.9) if config.optimizer == "sgd"
           else torch.optim.AdamW(params, lr=1e-3))
    scaler = torch.amp.GradScaler(device) if dtype == torch.float16 else None

    def train(clock: PhaseClock) -> None:
        clock.mark()
        with autocast():
            loss = loss_of(model(x))
        clock.mark()
        (scaler.scale(loss) if scaler else loss).backward()
        clock.mark()
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        clock.mark()

    return train


def stage_times(model: nn.Module, x: torch.Tensor, dtype: torch.dtype, config: BenchConfig,
                spec: Spec) -> list[StageTime]:
    """Forward and backward time of each stage alone, at its real input shape."""
    device = config.device
    per_stage_macs = count(build(spec, device="meta"), (config.batch, *x.shape[1:]))
    amp = dtype != torch.float32
    autocast = (lambda: torch.autocast(device, dtype=dtype)) if amp else contextlib.nullcontext
    out: list[StageTime] = []
    inp = x
    model.train()
    for name, stage in model.named_children():
        inp = inp.detach().requires_grad_(True)
        fwd, bwd = [], []
        clock = PhaseClock(device)
        for i in range(max(1, config.warmup) + config.iters):
            clock.mark()
            with autocast():
                y = stage(inp)
            clock.mark()
            y.float().sum().backward()
            clock.mark()
            f, b = clock.phases_ms()
            if i >= max(1, config.warmup):
                fwd.append(f)
                bwd.append(b)
        stage.zero_grad(set_to_none=True)
        macs = sum(m.macs for m in per_stage_macs.under(name))
        f_ms, b_ms = statistics.median(fwd), statistics.median(bwd)
        out.append(StageTime(name, list(inp.shape[1:]), f_ms, b_ms, macs, 2 * macs / (f_ms / 1e3) / 1e9,
                             4 * macs / (b_ms / 1e3) / 1e9))
        with torch.no_grad(), autocast():
            inp = stage(inp.detach())
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def grid(specs: list[str], batches: list[int], sizes: list[int | None], modes: list[str],
         **options) -> list[BenchConfig]:
    """One configuration per (spec, batch, imgsz, mode), in that nesting order."""
    return [BenchConfig(spec, batch=b, imgsz=s, mode=m, **options)
            for spec in specs for s in sizes for b in batches for m in modes]


def run_grid(configs: list[BenchConfig], on_step: Callable[[], None] | None = None) -> Iterator[BenchResult]:
    """Measure each configuration in turn; stop early (Ctrl-C) and what was yielded is kept."""
    for config in configs:
        yield benchmark(config, on_step)


def find_max_batch(fits: Callable[[int], bool], start: int = 1, limit: int = 65536) -> int:
    """The largest batch for which `fits(batch)` holds: doubling until it fails, then bisection.

    Returns 0 when not even `start` fits.
    """
    if not fits(start):
        return 0
    good, bad = start, None
    while bad is None:
        trial = good * 2
        if trial > limit:
            return good
        if fits(trial):
            good = trial
        else:
            bad = trial
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good
