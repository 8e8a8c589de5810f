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

from netprobe.counting import _tensors, count, count_train, model_device
from netprobe.errors import InputError, check_range
from netprobe.target import Target, resolve

AMP_DTYPES = {"off": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass(frozen=True)
class BenchConfig:
    """One measurement: a model on a device at a batch and image size, training or inferring.

    `spec` is anything `netprobe.target.resolve` takes: a spec string, a `Target`, an `nn.Module`.
    """

    spec: object
    device: str = "cpu"
    batch: int = 8
    imgsz: int | str | tuple[int, int] | None = None  # N or "HxW"; None: the model's own
    mode: str = "train"  # train | infer
    amp: str = "off"  # off | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    optimizer: str = "sgd"  # sgd | adamw
    warmup: int = 3  # at least this many untimed steps (and at least MIN_WARMUP_S, until steady)
    iters: int = 10
    per_stage: bool = False
    in_chans: int | None = None  # None: the model's own, else 3
    copy: bool = True  # False: time the nn.Module passed in itself (restored afterwards)
    breakdown: bool = False  # after the timed steps, a few profiled ones: time by op kind, roofline per stage


@dataclass
class StageTime:
    name: str
    in_shape: list[int]
    fwd_ms: float
    bwd_ms: float | None  # None when inferring
    macs: int  # for the whole batch
    fwd_gflops: float
    bwd_gflops: float | None  # backward does about twice the forward's work


@dataclass
class BenchResult:
    """A flat record: one row of the bench table, one object of its JSON, one line of its CSV."""

    spec: str
    device: str
    dtype: str
    batch: int
    imgsz: int | str  # N, or "HxW" when not square
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
    peak_tflops: float | None = None  # the roof: the best matmul rate this process measured so far (device, dtype)
    peak_fraction: float | None = None
    peak_measured_tflops: float | None = None  # the rate measured for this configuration (moves on a busy machine)
    compile_s: float | None = None
    macs_per_img: int = 0
    params: int = 0
    channels_last: bool = False
    compiled: bool = False
    optimizer: str = ""
    iters: int = 0
    error: str | None = None
    stages: list[StageTime] = field(default_factory=list)
    loss: str = ""  # what the train step's loss is
    warmup_steps: int = 0  # untimed steps it took to reach steady state
    warmup_s: float = 0.0
    steady: bool = True  # False: the timed steps were still getting faster
    fwd_macs: int | None = None  # counted per image, forward (= macs_per_img)
    bwd_macs: int | None = None  # counted per image, backward (train only): grad inputs and grad weights;
    # TFLOP/s counts 2 FLOPs per MAC of fwd_macs + bwd_macs, not an assumed 3 x forward
    breakdown: list[dict] | None = None  # breakdown.KindTime records (config.breakdown)
    roofline: dict | None = None  # roofline.Roofline.to_dict() (config.breakdown)
    breakdown_note: str | None = None  # one line: why there is no breakdown, or how far it is off the step

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


def peak_tflops(device: str, dtype: torch.dtype) -> float:
    """The device's dense matmul rate in this dtype, measured now: the roof for TFLOP/s. A roof is
    what the device can do, so the fastest of the repetitions counts (noise only slows); they run
    for at least PEAK_MIN_S. Measured for every configuration, so that a roof that moves between
    them shows a busy machine."""
    n = 8192 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    clock = PhaseClock(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < PEAK_MIN_REPS or time.perf_counter() - start < PEAK_MIN_S:
        clock.mark()
        a @ b
        clock.mark()
        times.append(clock.phases_ms()[0])
    return 2 * n**3 / (min(times) / 1e3) / 1e12


PEAK_MIN_REPS, PEAK_MIN_S = 5, 0.2  # the matmul peak (and the copy bandwidth): at least this many, this long
_BEST_PEAK: dict[tuple[str, torch.dtype], float] = {}


def device_roof(device: str, dtype: torch.dtype) -> tuple[float, float]:
    """(roof, measured now): the matmul rate measured now, and the best one this process has seen
    for the device and dtype. A slow moment lowers the measurement, not the device's roof, so the
    roof (TFLOP/s fractions, the roofline) is the best; the measurements, compared, show a busy machine."""
    now = peak_tflops(device, dtype)
    key = (device, dtype)
    _BEST_PEAK[key] = max(_BEST_PEAK.get(key, 0.0), now)
    return _BEST_PEAK[key], now


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

LIMITS = {"batch": (1, 65_536), "iters": (1, 100_000), "warmup": (0, 10_000)}
MIN_WARMUP_S = {"cpu": 1.0, "cuda": 0.5}  # warm-up lasts at least this long as well as `warmup` steps
MAX_WARMUP_S = 30.0  # ... and gives up waiting for steady times after this long
STEADY_TOLERANCE = 0.05  # steady: the last warm-up steps within 5% of the ones before
TREND_LIMIT = 1.10  # timed steps whose first half is 10% slower than the second are still warming up
BUSY_SPREAD = 1.3  # p90 / p10 of the timed steps above this: the machine was busy


def validate(config: BenchConfig) -> Target:
    """Check a configuration before any work; returns its target."""
    target = resolve(config.spec, config.in_chans)
    for name, (lo, hi) in LIMITS.items():
        check_range(name, getattr(config, name), lo, hi)
    if config.mode not in ("train", "infer"):
        raise InputError(f"mode {config.mode!r} is not allowed; use train or infer")
    if config.amp not in AMP_DTYPES:
        raise InputError(f"amp {config.amp!r} is not allowed; use off, bf16 or fp16")
    if config.optimizer not in ("sgd", "adamw"):
        raise InputError(f"optimizer {config.optimizer!r} is not allowed; use sgd or adamw")
    size = target.input_size(config.imgsz)
    target.check_input(size, config.batch)
    stride = target.min_side
    if config.mode == "train" and stride > 1 and config.batch * -(-size[0] // stride) * -(-size[1] // stride) < 2:
        raise InputError(f"batch {config.batch} at {size[0]} px leaves batch norm one value per channel in the "
                         f"last stage, which cannot train; use batch >= 2 or an image of at least {stride + 1} px")
    if config.per_stage and target.kind != "zoo":
        raise InputError(f"--per-stage times the stages of a netprobe backbone one after another; {target.label} "
                         "is not one (its stages need not run in sequence): use --breakdown for per-stage times")
    if not config.copy and target.user_module is None:
        raise InputError("copy=False times the module you passed in; give an nn.Module, not a spec")
    if config.mode == "train" and not any(p.requires_grad for p in target.meta_model().parameters()):
        raise InputError(f"{target.label} has no trainable parameters, so a train step has nothing to update; "
                         "use --mode infer")
    return target


def benchmark(config: BenchConfig | object, on_step: Callable[[], None] | None = None, **options) -> BenchResult:
    """Measure one configuration. Out of memory is a result (`status='oom'`), not an exception.

    `config` is a `BenchConfig`, or a model (spec string, `nn.Module`, `Target`) with the config's
    fields as keywords: `benchmark(model, device="cpu", batch=8, imgsz=128)`. A module passed in is
    timed on a copy unless `copy=False`, and is left exactly as it was either way.
    """
    if not isinstance(config, BenchConfig):
        config = BenchConfig(config, **options)
    elif options:
        config = replace(config, **options)
    target = validate(config)
    device = resolve_device(config.device)
    config = replace(config, device=device)
    size = target.input_size(config.imgsz)
    dtype = AMP_DTYPES[config.amp]
    try:
        counted = count(target.meta_model(), (1, target.in_chans, *size))
    except Exception as exc:  # data-dependent code the meta device cannot run: a row that says so, not a traceback
        first_line = next(iter(str(exc).splitlines()), "")
        return BenchResult(target.label, device, DTYPE_NAMES[dtype], config.batch, _size_text(size), config.mode,
                           "error", error=f"cannot count it on the meta device ({type(exc).__name__}: {first_line})")
    result = BenchResult(target.label, device, DTYPE_NAMES[dtype], config.batch, _size_text(size), config.mode,
                         "ok", macs_per_img=counted.macs, channels_last=config.channels_last,
                         compiled=config.compile, optimizer=config.optimizer if config.mode == "train" else "",
                         iters=config.iters, loss=_loss_kind(target, counted) if config.mode == "train" else "")
    result.fwd_macs, result.bwd_macs = _counted_macs(target, config, size, counted)
    # the roofs first: their buffers (the copy's are 2 x 256 MB on CPU) must not count in the model's peak memory
    result.peak_tflops, result.peak_measured_tflops = device_roof(device, dtype)
    if config.breakdown:
        from netprobe.roofline import memory_bandwidth_gbs

        memory_bandwidth_gbs(device, dtype)  # measured once per process, cached for the breakdown
    _free(device)
    baseline = _reset_peak(device)
    try:
        _measure(target, config, size, dtype, result, on_step or (lambda: None))
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


def _size_text(size: tuple[int, int]) -> int | str:
    return size[0] if size[0] == size[1] else f"{size[0]}x{size[1]}"


def _loss_kind(target: Target, counted) -> str:
    """Cross-entropy on random labels for a classifier's logits; otherwise a surrogate over every output."""
    classes = _classes(target, counted)
    return "cross-entropy" if classes else "surrogate: mean of squares of every output"


def _classes(target: Target, counted) -> int:
    if target.spec is not None:
        return target.spec.table.classes
    outs = counted.modules[""].out_shapes
    return outs[0][1] if len(outs) == 1 and len(outs[0]) == 2 and outs[0][1] > 1 else 0


def _measure(target: Target, config: BenchConfig, size: tuple[int, int], dtype: torch.dtype, result: BenchResult,
             on_step: Callable[[], None]) -> None:
    device = config.device
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    with _model_for(target, config) as model:
        result.params = sum(p.numel() for p in model.parameters())
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        x = torch.randn(config.batch, target.in_chans, *size, device=device).contiguous(memory_format=fmt)
        classes = _classes(target, count(target.meta_model(), (1, target.in_chans, *size))) \
            if config.mode == "train" else 0
        y = torch.randint(0, max(classes, 1), (config.batch,), device=device)
        step = _make_step(model, x, y, config, dtype, classes)
        clock = PhaseClock(device)
        t0 = time.perf_counter()
        step(clock)
        clock.phases_ms()
        on_step()
        if config.compile:
            result.compile_s = time.perf_counter() - t0
        result.warmup_steps, result.warmup_s = _warm_up(step, clock, config, on_step)
        phases_per_step = _timed(step, clock, config.iters)
        for _ in range(2):  # still getting faster: those steps were warm-up too
            if not _trending_down([sum(p) for p in phases_per_step]):
                break
            result.warmup_steps += len(phases_per_step)
            phases_per_step = _timed(step, clock, config.iters)
        result.steady = not _trending_down([sum(p) for p in phases_per_step])
        for _ in phases_per_step:
            on_step()
        _summarise(result, phases_per_step, config)
        if config.breakdown:
            _explain(result, target, model, step, x, config, dtype)
        if config.per_stage:
            result.stages = stage_times(model, x, dtype, config, target)


@contextlib.contextmanager
def _model_for(target: Target, config: BenchConfig) -> Iterator[nn.Module]:
    """The module to time: a fresh one (or a copy of the user's), or the user's own with `copy=False`,
    which gets its parameters, buffers, gradients and training flag back afterwards."""
    if config.copy or target.user_module is None:
        yield target.make(config.device)
        return
    module = target.user_module
    if model_device(module).type != config.device:
        raise InputError(f"copy=False times your module where it is ({model_device(module)}); "
                         f"move it to {config.device} first, or let netprobe copy it")
    saved = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict(keep_vars=True).items()}
    # Clones: a backward adds into an existing .grad in place.
    grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in module.named_parameters()}
    training = module.training
    try:
        yield module
    finally:
        with torch.no_grad():
            for k, v in module.state_dict(keep_vars=True).items():
                v.copy_(saved[k])
        for name, p in module.named_parameters():
            p.grad = grads[name]
        module.train(training)


def _warm_up(step, clock: PhaseClock, config: BenchConfig, on_step: Callable[[], None]) -> tuple[int, float]:
    """Untimed steps until `warmup` are done, `MIN_WARMUP_S` has passed, and step times stopped
    falling (the last three within 5% of the three before); at most `MAX_WARMUP_S`."""
    if config.warmup == 0:
        return 0, 0.0
    times: list[float] = []
    start = time.perf_counter()
    min_s = MIN_WARMUP_S.get(config.device, 1.0)
    while True:
        step(clock)
        times.append(sum(clock.phases_ms()))
        if len(times) <= config.warmup:
            on_step()
        elapsed = time.perf_counter() - start
        if len(times) >= config.warmup and ((elapsed >= min_s and _steady(times)) or elapsed >= MAX_WARMUP_S):
            return len(times), elapsed


def _steady(times: list[float]) -> bool:
    if len(times) < 6:
        return len(times) >= 2 and abs(times[-1] - times[-2]) <= STEADY_TOLERANCE * times[-2]
    recent, before = statistics.median(times[-3:]), statistics.median(times[-6:-3])
    return recent >= before * (1 - STEADY_TOLERANCE)


def _trending_down(steps: list[float]) -> bool:
    """Timed steps whose first half is clearly slower than the second: not yet at steady state."""
    if len(steps) < 4:
        return False
    half = len(steps) // 2
    return statistics.median(steps[:half]) > TREND_LIMIT * statistics.median(steps[-half:])


def _timed(step, clock: PhaseClock, iters: int) -> list[list[float]]:
    phases = []
    for _ in range(iters):
        step(clock)
        phases.append(clock.phases_ms())
    return phases


def _summarise(result: BenchResult, phases_per_step: list[list[float]], config: BenchConfig) -> None:
    steps = [sum(p) for p in phases_per_step]
    result.step_ms = statistics.median(steps)
    result.step_p10_ms, result.step_p90_ms = _percentile(steps, 10), _percentile(steps, 90)
    result.fwd_ms = statistics.median(p[0] for p in phases_per_step)
    if config.mode == "train":
        result.bwd_ms = statistics.median(p[1] for p in phases_per_step)
        result.opt_ms = statistics.median(p[2] for p in phases_per_step)
    result.imgs_per_s = config.batch / (result.step_ms / 1e3)
    if config.mode == "train" and result.bwd_macs is None:
        return  # the backward could not be counted
    step_macs = result.fwd_macs + (result.bwd_macs or 0)  # counted, not 3 x forward
    result.tflops = 2 * step_macs * config.batch / (result.step_ms / 1e3) / 1e12
    result.peak_fraction = result.tflops / result.peak_tflops


def _counted_macs(target: Target, config: BenchConfig, size: tuple[int, int], counted) -> tuple[int, int | None]:
    """Forward and backward MACs per image of the configuration's step (backward: train only)."""
    if config.mode != "train":
        return counted.macs, None
    loss = "cross_entropy" if _classes(target, counted) else "sum"
    try:
        train = count_train(target.meta_model(), (config.batch, target.in_chans, *size), loss=loss)
    except Exception:  # a backward the counter cannot run: no TFLOP/s rather than a guessed one
        return counted.macs, None
    return train.fwd_macs // config.batch, train.bwd_macs // config.batch


def _explain(result: BenchResult, target: Target, model: nn.Module, step: Callable, x: torch.Tensor,
             config: BenchConfig, dtype: torch.dtype) -> None:
    """Profiled steps after the timed ones: time by op kind and the roofline, or a note saying why not."""
    if config.compile:
        result.breakdown_note = "no breakdown with compile: the compiled graph fuses ops across modules"
        return
    from netprobe.explain import explain_step
    from netprobe.summary import stage_function

    stage_of = stage_function(target, tuple(x.shape[2:]))
    found = explain_step(model, step, x, config.device, dtype, config.mode, config.optimizer, result.step_ms,
                         result.peak_tflops, stage_of)
    result.breakdown = found.breakdown.to_records() or None
    result.roofline = found.roofline.to_dict() if found.roofline else None
    result.breakdown_note = found.note


def _make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: BenchConfig, dtype: torch.dtype,
               classes: int) -> Callable[[PhaseClock], None]:
    """One step as a training loop (or an inference server) runs it, its phases marked on a clock.

    `classes` > 0: cross-entropy of the logits against random labels `y`; 0: a surrogate loss, the
    mean square of every floating-point output (detectors, feature extractors), so that backward
    reaches every parameter that produced an output.
    """
    device, amp = config.device, dtype != torch.float32
    autocast = (lambda: torch.autocast(device, dtype=dtype)) if amp else contextlib.nullcontext
    if config.compile:
        model = torch.compile(model)

    def loss_of(out: object) -> torch.Tensor:
        if classes:
            return F.cross_entropy(out.float(), y)  # type: ignore[union-attr]
        outs = [t for t in _tensors(out) if t.is_floating_point()]
        return sum(t.float().pow(2).mean() for t in outs)  # type: ignore[return-value]

    if config.mode == "infer":
        model.eval()

        def infer(clock: PhaseClock) -> None:
            clock.mark()
            with torch.inference_mode(), autocast():
                model(x)
            clock.mark()

        return infer

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
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
                target: Target) -> list[StageTime]:
    """Time of each stage alone at its real input shape: forward and backward when training, forward
    (under inference mode) when inferring. The stages are a netprobe backbone's, which run in sequence."""
    device, train = config.device, config.mode == "train"
    per_stage_macs = count(target.meta_model(), (config.batch, *x.shape[1:]))
    amp = dtype != torch.float32
    autocast = (lambda: torch.autocast(device, dtype=dtype)) if amp else contextlib.nullcontext
    out: list[StageTime] = []
    inp = x
    model.train(train)
    for name, stage in model.named_children():
        fwd, bwd = [], []
        clock = PhaseClock(device)
        for i in range(max(1, config.warmup) + config.iters):
            f, b = _time_stage(stage, inp, clock, autocast, train)
            if i >= max(1, config.warmup):
                fwd.append(f)
                bwd.append(b)
        stage.zero_grad(set_to_none=True)
        macs = sum(m.macs for m in per_stage_macs.under(name))
        f_ms = statistics.median(fwd)
        b_ms = statistics.median(bwd) if train else None
        out.append(StageTime(name, list(inp.shape[1:]), f_ms, b_ms, macs, 2 * macs / (f_ms / 1e3) / 1e9,
                             4 * macs / (b_ms / 1e3) / 1e9 if b_ms else None))
        with torch.no_grad(), autocast():
            inp = stage(inp.detach())
    return out


def _time_stage(stage: nn.Module, inp: torch.Tensor, clock: PhaseClock, autocast, train: bool) -> tuple:
    if not train:
        clock.mark()
        with torch.inference_mode(), autocast():
            stage(inp)
        clock.mark()
        return clock.phases_ms()[0], None
    inp = inp.detach().requires_grad_(True)
    clock.mark()
    with autocast():
        y = stage(inp)
    clock.mark()
    y.float().sum().backward()
    clock.mark()
    return tuple(clock.phases_ms())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def busy_note(results: list[BenchResult]) -> str:
    """A line for under the table when the numbers look taken on a busy machine, else ''."""
    ok = [r for r in results if r.status == "ok"]
    return busy_line([r.step_p90_ms / r.step_p10_ms for r in ok if r.step_p10_ms],
                     [r.peak_measured_tflops or r.peak_tflops for r in ok if r.peak_tflops], all(r.steady for r in ok))


def busy_line(step_spreads: list[float], peaks: list[float], steady: bool, round_spreads: list[float] = ()) -> str:
    """The busy-machine note from its evidence: each configuration's p90/p10 of step times, the
    matmul peaks measured, whether warm-up reached steady times, and (compare) each variant's
    max/min throughput over rounds."""
    reasons = []
    if step_spreads and max(step_spreads) > BUSY_SPREAD:
        reasons.append(f"step times spread widely (p90/p10 up to {max(step_spreads):.2f}, above {BUSY_SPREAD})")
    if round_spreads and max(round_spreads) > BUSY_SPREAD:
        reasons.append(f"a variant's throughput varied between rounds (max/min up to {max(round_spreads):.2f}, "
                       f"above {BUSY_SPREAD})")
    if len(peaks) > 1 and max(peaks) / min(peaks) > 1.15:
        reasons.append(f"the measured matmul peak moved between configurations ({min(peaks):.2f}–{max(peaks):.2f} "
                       "TFLOP/s)")
    if not steady:
        reasons.append("some timed steps were still getting faster after warm-up")
    return ("note: " + "; ".join(reasons) + " — the numbers were taken on a busy machine; run again on a quiet "
            "one") if reasons else ""


def grid(specs: list, batches: list[int], sizes: list, modes: list[str],
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
