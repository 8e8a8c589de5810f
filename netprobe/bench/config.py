"""What to measure: a configuration (`BenchConfig`), its result record (`BenchResult`), and the checks
that refuse a configuration before any work (`validate`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from netprobe.errors import InputError, check_range
from netprobe.target import Target, resolve
from netprobe.timing import AMP_DTYPES, MAX_WARMUP_LIMIT_S, MAX_WARMUP_S, OPTIMIZERS, StageTime, StepTimes


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
    runtime: str = "torch"  # eager torch, or a runtime the model is exported to (netprobe.runtimes): infer only
    keep_exports: str | None = None  # a folder to keep the exported files in (default: a temporary one)
    precision: str = "fp32"  # what the runtime runs: auto (its own default) | fp32 | fp16 | bf16 | int8
    calib: str | None = None  # int8's calibration: a folder of images or a .npy array; None: synthetic
    weights: str | None = None  # a state dict (or a checkpoint holding one) loaded into the model first


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
    parity_ok: bool | None = None  # max_rel_err within runtimes.PARITY_TOLERANCE
    vs_torch: float | None = None  # eager torch's step time over this one's (same model, batch, size)
    failed_in: str = ""  # export | load | run: where a deployed model failed (status "error")
    precision: str = "fp32"  # asked of the runtime (auto: its own default)
    precision_ran: str = ""  # what the runtime reports its conv and linear layers ran in, most first ("int8+fp32")
    quantize_s: float | None = None  # converting the export to the precision (int8: with its calibration)
    calibration: str = ""  # int8: where the calibration came from, in words
    cosine_min: float | None = None  # lowest cosine of an output against eager fp32's, held-out inputs
    cosines: list[float] = field(default_factory=list)  # ... per output
    top1_agreement: float | None = None  # classifiers: share of held-out images with eager fp32's top-1
    drift_images: int = 0  # held-out images the drift figures are over
    quantized_layers: int | None = None  # conv and linear layers that ran below fp32
    total_layers: int | None = None  # conv and linear layers the runtime reports
    layers_ran: str = ""  # "65 of 81 convolutions ran in int8 (16 in fp32)"
    layer_precisions: list[dict] = field(default_factory=list)  # per layer: name, kind, precision ran
    vs_fp32: float | None = None  # the same runtime's fp32 p50 over this one's (same model, batch, size)
    weights: str = ""  # the --weights file loaded

    def to_dict(self) -> dict:
        return asdict(self)



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
    if config.runtime != "torch" or config.precision != "fp32":
        _check_deployed(config, target)
    if config.weights is not None:
        from netprobe.weights import check_weights

        check_weights(target, config.weights)
    if config.mode == "train" and not any(p.requires_grad for p in target.meta_model().parameters()):
        raise InputError(f"{target.label} has no trainable parameters, so a train step has nothing to update; "
                         "use --mode infer")
    return target



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
                        ("--channels-last", config.channels_last), ("--amp", config.amp != "off")):
        if value:
            raise InputError(f"{flag} applies to eager torch; --runtime {config.runtime} runs the export of the model "
                             "in its --precision: leave it out, or use --runtime torch")
    if config.keep_exports is not None:
        from netprobe.files import check_folder

        check_folder(config.keep_exports, "--keep-exports")


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
    if config.mode == "train" and result.bwd_macs is None:
        return  # the backward could not be counted
    step_macs = result.fwd_macs + (result.bwd_macs or 0)  # counted, not 3 x forward
    result.tflops = 2 * step_macs * config.batch / (result.step_ms / 1e3) / 1e12
    result.peak_fraction = result.tflops / result.peak_tflops
