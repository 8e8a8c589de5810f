"""Honest timing of training and inference, any model: what to measure, and the measurement of it.

A configuration (`BenchConfig`) is checked before any work (`validate`), counted on the meta device
(MACs forward and, for a train step, backward op by op), then timed through `netprobe.timing`: an
eager-torch step (forward, cross-entropy on random labels, backward, optimizer step; or a forward
under inference mode), warmed up until steady, each phase timed. Out of memory is a result. A run
of configurations (`run`) returns everything `netprobe bench` prints: the device, each result, the
roofs measured and the busy-machine verdict (`BenchRun.to_dict()` is its JSON).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from netprobe.counting import Count, count, count_train, model_device
from netprobe.errors import InputError, check_range
from netprobe.target import Target, resolve, size_text
from netprobe.timing import (
    AMP_DTYPES,
    DTYPE_NAMES,
    MAX_WARMUP_LIMIT_S,
    MAX_WARMUP_S,
    OPTIMIZERS,
    StageTime,
    StepTimes,
    TorchStep,
    busy_line,
    device_info,
    device_roof,
    is_oom,
    loss_name,
    measure_steps,
    memory_bandwidth_gbs,
    peak_mb,
    release_memory,
    reset_peak,
    resolve_device,
    stage_times,
)

__all__ = ["BenchConfig", "BenchResult", "BenchRun", "StageTime", "benchmark", "find_max_batch", "grid", "run",
           "run_grid", "validate"]


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
    max_warmup_s: float = MAX_WARMUP_S  # the ceiling of warm-up once `warmup` steps are done
    per_stage: bool = False
    in_chans: int | None = None  # None: the model's own, else 3
    copy: bool = True  # False: time the nn.Module passed in itself (restored afterwards)
    breakdown: bool = False  # after the timed steps, a few profiled ones: time by op kind, roofline per stage


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
    warmup_capped: bool = False  # warm-up stopped at its ceiling (max_warmup_s) before step times settled
    fwd_macs: int | None = None  # counted per image, forward (= macs_per_img)
    bwd_macs: int | None = None  # counted per image, backward (train only): grad inputs and grad weights;
    # TFLOP/s counts 2 FLOPs per MAC of fwd_macs + bwd_macs, not an assumed 3 x forward
    breakdown: list[dict] | None = None  # breakdown.KindTime records (config.breakdown)
    roofline: dict | None = None  # roofline.Roofline.to_dict() (config.breakdown)
    breakdown_note: str | None = None  # one line: why there is no breakdown, or how far it is off the step

    def to_dict(self) -> dict:
        return asdict(self)


# ---- checking ----------------------------------------------------------------------------------

LIMITS = {"batch": (1, 65_536), "iters": (1, 100_000), "warmup": (0, 10_000)}


def validate(config: BenchConfig) -> Target:
    """Check a configuration before any work; returns its target."""
    target = resolve(config.spec, config.in_chans)
    for name, (lo, hi) in LIMITS.items():
        check_range(name, getattr(config, name), lo, hi)
    if not 0 < config.max_warmup_s <= MAX_WARMUP_LIMIT_S:
        raise InputError(f"--max-warmup-s {config.max_warmup_s:g} is not allowed; give a ceiling above 0 and at most "
                         f"{MAX_WARMUP_LIMIT_S:,.0f} seconds (default {MAX_WARMUP_S:g})")
    if config.mode not in ("train", "infer"):
        raise InputError(f"mode {config.mode!r} is not allowed; use train or infer")
    if config.amp not in AMP_DTYPES:
        raise InputError(f"amp {config.amp!r} is not allowed; use off, bf16 or fp16")
    if config.optimizer not in OPTIMIZERS:
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


# ---- one configuration -------------------------------------------------------------------------

def benchmark(config: BenchConfig | object, on_step: Callable[[], None] | None = None,
              on_status: Callable[[str], None] | None = None, **options) -> BenchResult:
    """Measure one configuration. Out of memory is a result (`status='oom'`), not an exception.

    `config` is a `BenchConfig`, or a model (spec string, `nn.Module`, `Target`) with the config's
    fields as keywords: `benchmark(model, device="cpu", batch=8, imgsz=128)`. A module passed in is
    timed on a copy unless `copy=False`, and is left exactly as it was either way. `on_step` ticks a
    progress bar (1 + warmup + iters times); `on_status(text)` says what is being done (warm-up, timing).
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
    result = BenchResult(target.label, device, DTYPE_NAMES[dtype], config.batch, size_text(size), config.mode, "ok")
    try:
        counted = count(target.meta_model(), (1, target.in_chans, *size))
    except Exception as exc:  # data-dependent code the meta device cannot run: a row that says so, not a traceback
        result.status, result.error = "error", f"cannot count it on the meta device ({_one_line(exc)})"
        return result
    classes = output_classes(target, counted)
    train = config.mode == "train"
    result.macs_per_img, result.channels_last, result.compiled = counted.macs, config.channels_last, config.compile
    result.optimizer, result.iters = (config.optimizer if train else ""), config.iters
    result.loss = loss_name(classes) if train else ""
    step_count = _count_step(target, config, size, dtype, classes)
    result.fwd_macs = step_count.fwd_macs // config.batch if step_count and train else counted.macs
    result.bwd_macs = step_count.bwd_macs // config.batch if step_count and train else None
    # the roofs first: their buffers (the copy's are 2 x 256 MB on CPU) must not count in the model's peak memory
    result.peak_tflops, result.peak_measured_tflops = device_roof(device, dtype)
    if config.breakdown:
        memory_bandwidth_gbs(device, dtype)  # measured once per process, kept for the breakdown
    release_memory(device)
    baseline = reset_peak(device)
    try:
        _measure(target, config, size, dtype, result, classes, counted, step_count, on_step or (lambda: None),
                 on_status)
        result.peak_mem_mb, result.mem_kind = peak_mb(device, baseline)
    except Exception as exc:
        if not is_oom(exc):
            result.status, result.error = "error", _one_line(exc)
        else:
            result.status, result.error = "oom", "out of memory"
            result.peak_mem_mb, result.mem_kind = peak_mb(device, baseline)
    finally:
        release_memory(device)
    return result


def _one_line(exc: BaseException) -> str:
    first_line = next(iter(str(exc).splitlines()), "")
    return f"{type(exc).__name__}: {first_line}".rstrip(": ")


def output_classes(target: Target, counted: Count) -> int:
    """How many classes the model's logits have; 0 when its output is no [N, classes] tensor."""
    if target.spec is not None:
        return target.spec.table.classes
    outs = counted.modules[""].out_shapes
    return outs[0][1] if len(outs) == 1 and len(outs[0]) == 2 and outs[0][1] > 1 else 0


def _count_step(target: Target, config: BenchConfig, size: tuple[int, int], dtype: torch.dtype, classes: int):
    """The step as timed, counted op by op on meta (a train step with its optimizer; an inference
    step's forward only when a breakdown needs its bytes); None where it is not needed or cannot be
    counted: no TFLOP/s then, rather than a guessed one."""
    train = config.mode == "train"
    if not (train or config.breakdown):
        return None
    try:
        return count_train(target.meta_model(), (config.batch, target.in_chans, *size),
                           loss="cross_entropy" if classes else "sum", dtype=dtype,
                           optimizer=OPTIMIZERS[config.optimizer] if train else None)
    except Exception:
        return None


def _measure(target: Target, config: BenchConfig, size: tuple[int, int], dtype: torch.dtype, result: BenchResult,
             classes: int, counted: Count, step_count, on_step: Callable[[], None],
             on_status: Callable[[str], None] | None = None) -> None:
    device = config.device
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    with _model_for(target, config) as model:
        result.params = sum(p.numel() for p in model.parameters())
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        x = torch.randn(config.batch, target.in_chans, *size, device=device).contiguous(memory_format=fmt)
        y = torch.randint(0, max(classes, 1), (config.batch,), device=device)
        step = TorchStep(model, x, y, mode=config.mode, dtype=dtype, optimizer=config.optimizer, classes=classes,
                         compile=config.compile)
        times = measure_steps(step, device, config.warmup, config.iters, on_step, config.max_warmup_s,
                              on_status=on_status)
        _fill(result, times, config)
        if config.breakdown:
            _explain(result, target, model, step, x, config, dtype, step_count)
        if config.per_stage:
            macs = {name: sum(m.macs for m in counted.under(name)) * config.batch for name, _ in model.named_children()}
            result.stages = stage_times(model, x, dtype, config.mode == "train", config.warmup, config.iters, macs)
        step.release()


def _fill(result: BenchResult, times: StepTimes, config: BenchConfig) -> None:
    """The result's timing fields from the timed steps, and the achieved TFLOP/s of the counted step."""
    if config.compile:
        result.compile_s = times.first_s
    result.warmup_steps, result.warmup_s, result.steady = times.warmup_steps, times.warmup_s, times.steady
    result.warmup_capped = times.warmup_capped
    result.step_ms = times.step_ms
    result.step_p10_ms, result.step_p90_ms = times.percentile_ms(10), times.percentile_ms(90)
    result.fwd_ms = times.phase_ms(0)
    if config.mode == "train":
        result.bwd_ms, result.opt_ms = times.phase_ms(1), times.phase_ms(2)
    result.imgs_per_s = config.batch / (result.step_ms / 1e3)
    if config.mode == "train" and result.bwd_macs is None:
        return  # the backward could not be counted
    step_macs = result.fwd_macs + (result.bwd_macs or 0)  # counted, not 3 x forward
    result.tflops = 2 * step_macs * config.batch / (result.step_ms / 1e3) / 1e12
    result.peak_fraction = result.tflops / result.peak_tflops


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


def _explain(result: BenchResult, target: Target, model: nn.Module, step: TorchStep, x: torch.Tensor,
             config: BenchConfig, dtype: torch.dtype, step_count) -> None:
    """Profiled steps after the timed ones: time by op kind and the roofline, or a note saying why not."""
    if config.compile:
        result.breakdown_note = "no breakdown with compile: the compiled graph fuses ops across modules"
        return
    from netprobe.explain import explain_step
    from netprobe.summary import stage_function

    stage_of = stage_function(target, tuple(x.shape[2:]))
    found = explain_step(model, step, x, config.device, dtype, config.mode, config.optimizer, result.step_ms,
                         result.peak_tflops, stage_of, count=step_count)
    result.breakdown = found.breakdown.to_records() or None
    result.roofline = found.roofline.to_dict() if found.roofline else None
    result.breakdown_note = found.note


# ---- many configurations -----------------------------------------------------------------------

def busy_note(results: list[BenchResult]) -> str:
    """A line for under the table when the numbers look taken on a busy machine, else ''."""
    ok = [r for r in results if r.status == "ok"]
    return busy_line([r.step_p90_ms / r.step_p10_ms for r in ok if r.step_p10_ms],
                     [r.peak_measured_tflops or r.peak_tflops for r in ok if r.peak_tflops], all(r.steady for r in ok),
                     capped=any(r.warmup_capped for r in ok))


def grid(specs: list, batches: list[int], sizes: list, modes: list[str],
         **options) -> list[BenchConfig]:
    """One configuration per (spec, batch, imgsz, mode), in that nesting order."""
    return [BenchConfig(spec, batch=b, imgsz=s, mode=m, **options)
            for spec in specs for s in sizes for b in batches for m in modes]


def run_grid(configs: list[BenchConfig], on_step: Callable[[], None] | None = None) -> Iterator[BenchResult]:
    """Measure each configuration in turn; stop early (Ctrl-C) and what was yielded is kept."""
    for config in configs:
        yield benchmark(config, on_step)


def largest_fitting(fits: Callable[[int], bool], start: int = 1, limit: int = 65536) -> int:
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


def find_max_batch(config: BenchConfig, limit: int = LIMITS["batch"][1]) -> BenchResult | None:
    """The largest batch of `config` that runs (a short measurement at each batch tried: 1 warm-up, 2
    timed steps), as that batch's result; None when not even batch 1 fits. CUDA only: on the CPU,
    memory is shared with the system and swaps rather than failing cleanly."""
    if resolve_device(config.device) != "cuda":
        raise InputError("--find-max-batch needs --device cuda: on the CPU, memory is shared with the system and "
                         "swaps rather than failing cleanly")
    tried: dict[int, BenchResult] = {}

    def fits(b: int) -> bool:
        tried[b] = benchmark(replace(config, batch=b, warmup=1, iters=2, per_stage=False))
        return tried[b].status == "ok"

    best = largest_fitting(fits, 1, limit)
    return tried[best] if best else None


@dataclass
class BenchRun:
    """Everything one bench run found: the device, each configuration's result, the roofs measured and
    the busy-machine verdict. `to_dict()` is the JSON `netprobe bench --format json` prints."""

    device: str
    results: list[BenchResult] = field(default_factory=list)
    planned: int = 0  # configurations asked for; fewer results: the run was interrupted

    @property
    def info(self) -> dict:
        """The device as measured: its facts and the matmul roof of each dtype run."""
        info = device_info(self.device)
        info["peak_tflops_measured"] = {r.dtype: r.peak_tflops for r in self.results if r.peak_tflops}
        return info

    @property
    def note(self) -> str:
        return busy_note(self.results)

    def to_dict(self) -> dict:
        return {"device": self.info, "results": [r.to_dict() for r in self.results], "note": self.note or None}

    def measure(self, configs: list[BenchConfig], on_step: Callable[[], None] | None = None,
                max_batch: bool = False, on_status: Callable[[str], None] | None = None) -> Iterator[BenchResult]:
        """Measure each configuration (or find each one's largest batch), keeping every result as it comes;
        an interrupt between configurations leaves the finished ones in `results`."""
        self.planned += len(configs)
        for config in configs:
            result = find_max_batch(config) if max_batch else benchmark(config, on_step, on_status)
            if result is not None:
                self.results.append(result)
                yield result


def run(configs: list[BenchConfig], on_step: Callable[[], None] | None = None, max_batch: bool = False) -> BenchRun:
    """Measure every configuration; the run's results, device and verdict (see `BenchRun`)."""
    if not configs:
        raise InputError("nothing to measure: give at least one configuration")
    devices = {resolve_device(c.device) for c in configs}
    if len(devices) > 1:
        raise InputError(f"one run measures one device; these configurations ask for {', '.join(sorted(devices))}")
    session = BenchRun(devices.pop())
    for _ in session.measure(configs, on_step, max_batch):
        pass
    return session
