"""Measuring one configuration: count it on meta, then time it through `netprobe.timing` (an eager-torch
step, warmed up until steady, each phase timed). Out of memory is a result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from netprobe.bench.config import BenchConfig, BenchResult, Measurement, fill_times, validate
from netprobe.bench.deployed import measure_deployed
from netprobe.counting import Count, count, count_train
from netprobe.errors import InputError, one_line
from netprobe.runtimes import get_runtime
from netprobe.sizes import size_text
from netprobe.target import Target, ZooTarget, module_to_time
from netprobe.timing import (
    AMP_DTYPES,
    DTYPE_NAMES,
    OPTIMIZERS,
    PeakAfterFirstStep,
    TorchStep,
    check_roof,
    device_roof,
    is_oom,
    loss_name,
    measure_steps,
    memory_bandwidth_gbs,
    peak_mb,
    peak_reserved_mb,
    release_memory,
    reset_peak,
    resolve_device,
    roof_dtype,
    stage_times,
    tf32_mode,
)


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
    if config.weights is not None:
        from netprobe.weights import with_weights

        target = with_weights(target, config.weights)
    device = resolve_device(config.device)
    config = replace(config, device=device)
    size = target.input_size(config.imgsz)
    dtype = AMP_DTYPES[config.amp]
    result = BenchResult(target.label, device, DTYPE_NAMES[dtype], config.batch, size_text(size), config.mode, "ok")
    result.runtime, result.threads = config.runtime, torch.get_num_threads()
    try:
        counted, countable = count_forward(target, size)
    except Exception as exc:  # it fails on a real forward too: it cannot be timed either; the row says why
        result.status, result.error = "error", exc.args[0] if isinstance(exc, InputError) else one_line(exc)
        return result
    classes = output_classes(target, counted)
    train = config.mode == "train"
    result.macs_per_img, result.channels_last, result.compiled = counted.macs, config.channels_last, config.compile
    result.optimizer, result.iters = (config.optimizer if train else ""), config.iters
    result.loss = loss_name(classes) if train else ""
    result.runtime, result.threads = config.runtime, torch.get_num_threads()
    result.precision, result.weights = config.precision, config.weights or ""
    if config.runtime == "torch":
        result.precision_ran = result.dtype  # eager torch: fp32, or its autocast dtype
    step_count = _count_step(countable, target, config, size, dtype, classes)
    result.fwd_macs = step_count.fwd_macs // config.batch if step_count and train else counted.macs
    result.bwd_macs = step_count.bwd_macs // config.batch if step_count and train else None
    with tf32_mode(None if config.tf32 is None else config.tf32 == "on"):
        _measure_in_math_mode(target, config, size, dtype, result, classes, counted, step_count, on_step, on_status)
    return result


def _measure_in_math_mode(target: Target, config: BenchConfig, size: tuple[int, int], dtype: torch.dtype,
                          result: BenchResult, classes: int, counted: Count, step_count, on_step, on_status) -> None:
    """The roofs, then the measurement, then the roof checked against the rate achieved (see `check_roof`)."""
    device = config.device
    # the roofs first: their buffers (the copy's are 2 x 256 MB on CPU) must not count in the model's peak memory
    result.peak_tflops, result.peak_measured_tflops = device_roof(device, dtype)
    result.roof_dtype = roof_dtype(device, dtype)
    if config.breakdown:
        memory_bandwidth_gbs(device, dtype)  # measured once per process, kept for the breakdown
    release_memory(device)
    baseline = reset_peak(device)
    measure = measure_eager if config.runtime == "torch" else measure_deployed
    try:
        baseline = measure(Measurement(target, config, size, dtype, result, classes, counted, step_count,
                                       on_step or (lambda: None), on_status)) or baseline
        result.peak_mem_mb, result.mem_kind = peak_mb(device, baseline)
        result.peak_reserved_mb = peak_reserved_mb(device)
        if device.startswith("cuda") and config.runtime != "torch" and not get_runtime(config.runtime).torch_memory:
            # torch's CUDA allocator never sees this runtime's own device memory: no figure rather than a wrong one
            result.peak_mem_mb, result.mem_kind = None, f"{config.runtime} allocates its own CUDA memory: not read"
            result.peak_reserved_mb = None
    except Exception as exc:
        if not is_oom(exc):
            result.status, result.error = "error", one_line(exc)
        else:
            result.status, result.error = "oom", "out of memory"
            result.peak_mem_mb, result.mem_kind = peak_mb(device, baseline)
            result.peak_reserved_mb = peak_reserved_mb(device)
    finally:
        release_memory(device)
    if result.tflops:
        result.peak_tflops, result.roof_suspect = check_roof(result.tflops, device, dtype, result.peak_tflops)
        result.peak_fraction = result.tflops / result.peak_tflops


def output_classes(target: Target, counted: Count) -> int:
    """How many classes the model's logits have; 0 when its output is no [N, classes] tensor."""
    if isinstance(target, ZooTarget):
        return target.spec.table.classes
    outs = counted.modules[""].out_shapes
    return outs[0][1] if len(outs) == 1 and len(outs[0]) == 2 and outs[0][1] > 1 else 0


def count_forward(target: Target, size: tuple[int, int]) -> tuple[Count, Callable[[], nn.Module]]:
    """The forward counted at batch 1 and `size`: on meta, or where the model's code needs real values
    (`.item()`, data-dependent shapes) on a real CPU copy; with the maker of the module it was counted on.
    A model that fails on a real forward too raises InputError saying where and why."""
    shape = (1, target.in_chans, *size)
    try:
        return count(target.meta_model(), shape), target.meta_model
    except Exception:  # data-dependent code the meta device cannot run: count a real forward instead
        pass
    from netprobe.summary.core import count_failure

    model = target.real_model()
    try:
        return count(model, shape), target.real_model
    except Exception as exc:
        raise InputError(count_failure(target.label, model, exc, shape)) from None


def _count_step(countable: Callable[[], nn.Module], target: Target, config: BenchConfig, size: tuple[int, int],
                dtype: torch.dtype, classes: int):
    """The step as timed, counted op by op (on meta where the forward could be; a train step with its
    optimizer; an inference step's forward only when a breakdown needs its bytes); None where it is not
    needed or cannot be counted: no TFLOP/s then, rather than a guessed one."""
    train = config.mode == "train"
    if not (train or config.breakdown):
        return None
    try:
        return counted_step(target, countable, config, size, dtype, classes)
    except Exception:
        return None


_STEPS: dict[tuple, object] = {}  # steps counted for a spec (zoo, detector): a run's plan and its run count once
_STEPS_KEPT = 16


def counted_step(target: Target, countable: Callable[[], nn.Module], config: BenchConfig, size: tuple[int, int],
                 dtype: torch.dtype, classes: int):
    """The step of `config` counted op by op on `countable()` (a train step with its optimizer, or a
    forward): counted once per process for a target a spec fully describes (the long-run estimate counts
    the step a moment before the run does); a user's module is counted every time (it may change)."""
    train = config.mode == "train"
    shape = (config.batch, target.in_chans, *size)
    key = ((target.canonical, shape, train, dtype, config.optimizer, classes > 0)
           if target.canonical and target.user_module is None else None)
    if key in _STEPS:
        return _STEPS[key]
    step = count_train(countable(), shape, loss="cross_entropy" if classes else "sum", dtype=dtype,
                       optimizer=OPTIMIZERS[config.optimizer] if train else None, forward_only=not train)
    if key is not None:
        while len(_STEPS) >= _STEPS_KEPT:
            del _STEPS[next(iter(_STEPS))]
        _STEPS[key] = step
    return step


def measure_eager(m: Measurement) -> None:
    """Time the configuration in eager torch (train step or inference), then its breakdown or stages if asked."""
    target, config, size, dtype, result = m.target, m.config, m.size, m.dtype, m.result
    device = config.device
    result.runtime_version, result.provider = torch.__version__, device
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    if config.compile:  # a fresh dynamo per configuration: no recompile limit reached over a grid, no stale guards
        torch._dynamo.reset()
    graphs_before = _compiled_graphs()
    with module_to_time(target, config.device, config.copy) as model:
        result.params = sum(p.numel() for p in model.parameters())
        fmt = torch.channels_last if config.channels_last else torch.contiguous_format
        model = model.to(memory_format=fmt)
        x = torch.randn(config.batch, target.in_chans, *size, device=device).contiguous(memory_format=fmt)
        y = torch.randint(0, max(m.classes, 1), (config.batch,), device=device)
        step = TorchStep(model, x, y, mode=config.mode, dtype=dtype, optimizer=config.optimizer, classes=m.classes,
                         compile=config.compile)
        # CUDA: the peak from the second step on (cudnn.benchmark's and inductor's autotuning are not the step's)
        times = measure_steps(PeakAfterFirstStep(step, device), device, config.warmup, config.iters, m.on_step,
                              config.max_warmup_s, on_status=m.on_status)
        fill_times(result, times, config)
        if config.compile:
            result.compile_note = compile_note(_compiled_graphs() - graphs_before)
        if config.breakdown:
            _explain(result, target, model, step, x, config, dtype, m.step_count)
        if config.per_stage:
            names = [name for name, _ in model.named_children()]
            macs = {name: sum(c.macs for c in m.counted.under(name)) * config.batch for name in names}
            bwd = {name: sum(r.bwd_macs for path, r in m.step_count.modules.items() if path == name
                             or path.startswith(name + ".")) for name in names} if m.step_count else None
            result.stages = stage_times(model, x, dtype, config.mode == "train", config.warmup, config.iters, macs,
                                        bwd)
        step.release()


def _compiled_graphs() -> int:
    """Graphs torch.compile has compiled in this process so far (dynamo's own count)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def compile_note(graphs: int) -> str:
    """What --compile did for one configuration: the graphs compiled, or that the step ran eager."""
    if graphs == 0:
        return "ran eager: torch.compile compiled no graph (its recompile limit was reached, or it fell back)"
    return f"{graphs} graph{'s' * (graphs != 1)} compiled"


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

