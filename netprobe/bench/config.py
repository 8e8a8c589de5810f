"""What to measure: a configuration (`BenchConfig`), its result record (`BenchResult`), and the checks
that refuse a configuration before any work (`validate`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from netprobe import defaults
from netprobe.defaults import MAX_WARMUP_LIMIT_S, MAX_WARMUP_S
from netprobe.errors import InputError, check_range, quote
from netprobe.intervals import kept_steps, median_rate
from netprobe.sizes import Size, as_size, size_text
from netprobe.target import Target, ZooTarget, resolve
from netprobe.timing import AMP_DTYPES, DTYPE_NAMES, OPTIMIZERS, StageTime, StepTimes

if TYPE_CHECKING:
    import torch

    from netprobe.counting import Count, TrainCount


@dataclass(frozen=True)
class BenchConfig:
    """One measurement: a model on a device at a batch and image size, training or inferring.

    `spec` is anything `netprobe.target.resolve` takes: a spec string, a `Target`, an `nn.Module`.
    `imgsz` may be given as N, "HxW" or (H, W): it is parsed once, here, and held as (H, W).
    """

    spec: object
    device: str = defaults.DEVICE  # auto: CUDA when present, else cpu
    batch: int = defaults.BATCH
    imgsz: Size | None = None  # (H, W); None: the model's own
    mode: str = "train"  # train | infer
    amp: str = "off"  # off | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    optimizer: str = "sgd"  # sgd | adamw
    warmup: int = defaults.WARMUP_STEPS  # at least this many untimed steps (and at least MIN_WARMUP_S, until steady)
    iters: int = defaults.ITERS
    max_warmup_s: float = MAX_WARMUP_S  # the ceiling of warm-up once `warmup` steps are done
    per_stage: bool = False
    in_chans: int | None = None  # None: the model's own, else 3
    copy: bool = True  # False: time the nn.Module passed in itself (restored afterwards)
    breakdown: bool = False  # after the timed steps, a few profiled ones: time by op kind, roofline per stage
    runtime: str = "torch"  # eager torch, or a runtime the model is exported to (netprobe.runtimes): infer only
    keep_exports: str | None = None  # a folder to keep the exported files in (default: a temporary one)
    tf32: str | None = None  # on | off: TF32 for cuDNN and cuBLAS alike (CUDA); None: PyTorch's settings as they are

    precision: str = "fp32"  # what the runtime runs: auto (its own default) | fp32 | fp16 | bf16 | int8
    calib: str | None = None  # int8's calibration: a folder of images or a .npy array; None: synthetic
    weights: str | None = None  # a state dict (or a checkpoint holding one) loaded into the model first

    def __post_init__(self) -> None:
        object.__setattr__(self, "imgsz", as_size(self.imgsz))  # the one parse of a size given in Python


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
    imgs_per_s_ci90: list[float] | None = None  # [low, high]: 90% interval, bootstrap over the timed steps
    imgs_per_s_wide: bool = False  # that interval reaches more than 10% from the median: a noisy figure
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
    runtime: str = "torch"
    runtime_version: str = ""
    provider: str = ""  # the runtime's execution provider or device
    threads: int = 0  # intra-op threads, the same for every runtime
    exporter: str = ""  # how the model was exported (the tool and its settings)
    export_s: float | None = None
    first_run_s: float | None = None  # loading the export (session creation, compilation) and its first run
    file_mb: float | None = None  # the exported file(s), MB
    export_files: list[str] = field(default_factory=list)  # where they were kept (--keep-exports)
    max_abs_err: float | None = None  # the runtime's outputs against eager torch's, same input
    max_rel_err: float | None = None  # ... over the largest magnitude of torch's output
    parity_ok: bool | None = None  # max_rel_err within runtimes.PARITY_TOLERANCE (on the unit-scale copy)
    vs_torch: float | None = None  # eager torch's step time over this one's (same model, batch, size)
    vs_torch_ci90: list[float] | None = None  # its 90% interval, bootstrap over both runtimes' timed steps
    failed_in: str = ""  # export | load | run | parity: where a deployed model failed (status error or mismatch)
    step_times_ms: list[float] = field(default_factory=list)  # every timed step, in order: later diffs resample them
    roof_dtype: str = ""  # the roof's math: the dtype's name, or tf32 where fp32 convolutions ran in TF32 (CUDA)
    roof_suspect: bool = False  # the roof stayed below the rate this run achieved: measured during a stall
    peak_reserved_mb: float | None = None  # CUDA: the caching allocator's peak reserved memory, MB
    compile_note: str = ""  # --compile: how many graphs were compiled, or that it ran eager
    precision: str = "fp32"  # asked of the runtime (auto: its own default)
    precision_ran: str = ""  # what the runtime reports its conv and linear layers ran in, most first ("int8+fp32")
    quantize_s: float | None = None  # converting the export to the precision (int8: with its calibration)
    calibration: str = ""  # int8: where the calibration came from, in words
    cosine_min: float | None = None  # lowest cosine of an output against eager fp32's, held-out inputs
    cosines: list[float] = field(default_factory=list)  # ... per output
    top1_agreement: float | None = None  # classifiers: share of held-out images with eager fp32's top-1
    head_agreement: dict[str, float | None] | None = None  # detectors, per head: candidates both keep, same class
    head_candidates: dict[str, int] | None = None  # ... of how many candidates (either model's; runtimes.drift)
    drift_images: int = 0  # held-out images the drift figures are over
    quantized_layers: int | None = None  # conv and linear layers that ran below fp32
    total_layers: int | None = None  # conv and linear layers the runtime reports
    layers_ran: str = ""  # "65 of 81 convolutions ran in int8 (16 in fp32)"
    layer_precisions: list[dict] = field(default_factory=list)  # per layer: name, kind, precision ran
    vs_fp32: float | None = None  # the same runtime's fp32 p50 over this one's (same model, batch, size)
    weights: str = ""  # the --weights file loaded

    def to_dict(self) -> dict:
        return asdict(self)



LIMITS = {name: defaults.LIMITS[name] for name in ("batch", "iters", "warmup")}  # the config's checked integers


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
    if config.tf32 not in (None, "on", "off"):
        raise InputError(f"tf32 {config.tf32!r} is not allowed; use on or off (or leave it out: PyTorch's settings)")
    if config.tf32 is not None and config.device == "cpu":
        raise InputError("--tf32 sets the math mode of CUDA's convolutions and matmuls; the CPU has no TF32: leave it "
                         "out, or use --device cuda")
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
    if config.per_stage and not isinstance(target, ZooTarget):
        raise InputError(f"--per-stage times the stages of a netprobe backbone one after another; {target.label} "
                         "is not one (its stages need not run in sequence): use --breakdown for per-stage times")
    if not config.copy and target.user_module is None:
        raise InputError("copy=False times the module you passed in; give an nn.Module, not a spec")
    if config.runtime != "torch" or config.precision != "fp32":
        _check_deployed(config, target)
    if config.weights is not None:
        from netprobe.weights import check_weights

        check_weights(target, config.weights)
    if config.mode == "train" and not any(p.requires_grad for p in target.meta_model().parameters()):
        raise InputError(f"{target.label} has no trainable parameters, so a train step has nothing to update; "
                         "use --mode infer")
    return target



def planned_result(config: BenchConfig) -> BenchResult:
    """The row a configuration will make, before any measuring: what identifies it (spec, batch, size,
    mode, dtype, runtime), with status 'planned'."""
    target = resolve(config.spec, config.in_chans)
    return BenchResult(target.label, config.device, DTYPE_NAMES[AMP_DTYPES[config.amp]], config.batch,
                       size_text(target.input_size(config.imgsz)), config.mode, "planned", runtime=config.runtime)


def _check_deployed(config: BenchConfig, target: Target) -> None:
    """What a runtime other than eager torch cannot do, refused before any export."""
    from netprobe.runtimes import check_precisions, check_runtimes, parse_precisions, parse_runtimes

    parse_runtimes(config.runtime)
    device = "cuda" if config.device == "cuda" else "cpu"
    check_runtimes([config.runtime], device, [config.mode])
    check_precisions(parse_precisions(config.precision), [config.runtime], device, [config.mode])
    if config.calib is not None:
        from netprobe.runtimes.calibration import check_calib

        check_calib(config.calib, target.in_chans, target.input_size(config.imgsz))
    for flag, value in (("--compile", config.compile), ("--per-stage", config.per_stage),
                        ("--channels-last", config.channels_last), ("--amp", config.amp != "off"),
                        ("--tf32", config.tf32 is not None)):
        if value:
            raise InputError(f"{flag} applies to eager torch; --runtime {config.runtime} runs the export of the model "
                             "in its --precision: leave it out, or use --runtime torch")
    if config.keep_exports is not None:
        from netprobe.files import make_folder

        folder = make_folder(config.keep_exports, "--keep-exports")  # created as mkdir -p would
        stem = export_stem(target.label, config.batch, size_text(target.input_size(config.imgsz)), config.runtime,
                           config.precision)
        taken = result_files(folder, stem) if config.runtime != "torch" else []
        if taken:  # refused rather than overwritten: it may be the only copy of an earlier run's export
            raise InputError(f"--keep-exports {quote(config.keep_exports)} already holds {quote(taken[0].name)}, "
                             "which this run would overwrite; remove it, or keep the exports in another folder")


def fill_times(result: BenchResult, times: StepTimes, config: BenchConfig) -> None:
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
    result.step_times_ms = kept_steps(times.steps_ms)
    rate = median_rate(times.steps_ms, config.batch)
    if rate is not None:
        result.imgs_per_s_ci90, result.imgs_per_s_wide = rate.bounds(), rate.wide
    if config.mode == "train" and result.bwd_macs is None:
        return  # the backward could not be counted
    step_macs = result.fwd_macs + (result.bwd_macs or 0)  # counted, not 3 x forward
    result.tflops = 2 * step_macs * config.batch / (result.step_ms / 1e3) / 1e12
    result.peak_fraction = result.tflops / result.peak_tflops if result.peak_tflops else None


@dataclass
class Measurement:
    """One configuration being measured: what it is, what was counted of it, where its figures go, and
    who hears of its progress. Eager torch (`measure_eager`) and the deployed runtimes
    (`netprobe.bench.deployed.measure_deployed`) take it alike."""

    target: Target
    config: BenchConfig
    size: Size
    dtype: torch.dtype
    result: BenchResult
    classes: int  # logits' classes; 0 when the output is no [N, classes] tensor
    counted: Count  # the forward of one image, counted on meta
    step_count: TrainCount | None  # the step as timed, counted op by op (None: not needed or not countable)
    on_step: Callable[[], None]  # ticks a progress bar
    on_status: Callable[[str], None] | None = None  # what is being done (warm-up, timing)


def export_stem(label: str, batch: int, imgsz: int | str, runtime: str, precision: str = "fp32") -> str:
    """A file name for the export: the model, batch, size, runtime and precision, in letters a file system takes."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{label}-b{batch}-{imgsz}-{runtime}-{precision}")[-120:]


def result_files(folder: Path, stem: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(stem + "."))
