"""What several commands take alike, declared once: option groups (dataclasses whose fields are typer
options) that a command takes as one typed object, the choices, and the parsing of comma lists, sizes
and runtimes into typed values, checked here, before any work.

    @command("bench", ...)
    @takes(measure=MeasureOptions, parallel=ParallelOptions)
    def bench(specs: ..., measure: MeasureOptions, parallel: ParallelOptions) -> None:
        measure.batches, measure.sizes, measure.runtimes   # parsed once: ints, (H, W) tuples, names

A new shared option is a field of its group here (its default in `netprobe.defaults`) and the field of
the API's config that receives it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated

import typer

from netprobe import defaults
from netprobe.errors import InputError, check_range, quote
from netprobe.runtimes import parse_precisions, precision_help, runtime_help
from netprobe.sizes import Size, parse_imgsz

DEFAULT_MODEL_NOTE = f"no model given: {defaults.DEFAULT_MODEL}, the EfficientNetV2 paper's reference"


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of `values` (each member named and valued as the value), for a typer option."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


DeviceChoice = choices("DeviceChoice", ("auto", "cpu", "cuda"))
ModeChoice = choices("ModeChoice", ("train", "infer", "both"))
AmpChoice = choices("AmpChoice", ("off", "bf16", "fp16"))
OptimizerChoice = choices("OptimizerChoice", ("sgd", "adamw"))
TF32Choice = choices("TF32Choice", ("on", "off"))

ChannelsLastOption = Annotated[bool, typer.Option("--channels-last", help="NHWC model and input.")]
InChansOption = Annotated[int | None, typer.Option("--in-chans", help="Input channels (1-4,096); default: the "
                                                                       "model's own, else 3.")]
TF32Option = Annotated[TF32Choice | None, typer.Option("--tf32", help="CUDA: TF32 for convolutions and matmuls "
                                                                      "(default: PyTorch's, convolutions only).")]


# ---- groups -------------------------------------------------------------------------------------

def takes(**groups: type) -> typing.Callable:
    """A command decorator: each keyword `name=Group` replaces the command's parameter `name` by the
    options the dataclass `Group` declares (each field's Annotated type and default), and hands the
    command one `Group` made of the values given."""

    def decorate(fn: typing.Callable) -> typing.Callable:
        signature = inspect.signature(fn, eval_str=True)
        params = [p for p in signature.parameters.values() if p.name not in groups]
        for group in groups.values():
            hints = typing.get_type_hints(group, include_extras=True)
            params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                         annotation=hints[f.name]) for f in _options(group)]

        @functools.wraps(fn)
        def command(**given: object) -> object:
            for name, group in groups.items():
                given[name] = group(**{f.name: given.pop(f.name) for f in _options(group)})
            return fn(**given)

        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _options(group: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(group) if f.init]


@dataclass
class ModelOptions:
    """How a model named by the user is built: summary, bench and compare alike."""

    scale: Annotated[str | None, typer.Option(help="A detector YAML's scale letter (n, s, m, l, x); default: "
                                                   "from the file name.")] = None
    modules: Annotated[str | None, typer.Option(help="A .py file whose classes a detector YAML may name (looked "
                                                     "up first).")] = None
    build_timeout: Annotated[float, typer.Option("--build-timeout", help="Seconds your code (file.py:factory, "
                                                                         "module:..., --modules) may take to build "
                                                                         "a model (up to 86,400; 0: no limit).")] \
        = defaults.BUILD_TIMEOUT_S
    weights: Annotated[str | None, typer.Option(help="Load this state dict (or a checkpoint holding one) into the "
                                                     "model first, strictly (bench).")] = None

    def __post_init__(self) -> None:
        from netprobe.building import set_build_timeout

        set_build_timeout(self.build_timeout)  # checked, and in force for every build from now on


@dataclass
class MeasureOptions:
    """What bench and compare measure alike, parsed into typed values as the group is made."""

    # defaults.DEVICE (a test holds them equal: a member of an Enum made at import cannot be looked up here)
    device: Annotated[DeviceChoice, typer.Option(help="auto picks CUDA when present.")] = DeviceChoice.auto
    batch: Annotated[str | None, typer.Option(help="Batch size (1-65,536), or a comma list: a grid (compare: "
                                                   "batch-imgsz only). Default: bench 8, compare by device.")] = None
    imgsz: Annotated[str | None, typer.Option(help="Image size N or HxW, or a comma list as for --batch. "
                                                   "Default: the model's own (compare: by device).")] = None
    amp: Annotated[AmpChoice, typer.Option(help="Autocast dtype (fp16 adds a gradient scaler).")] = AmpChoice.off
    channels_last: ChannelsLastOption = False
    iters: Annotated[int | None, typer.Option(help="Timed steps (1-100,000); compare: per variant per round. "
                                                   "Default: bench 10, compare 10 on CUDA and 2 on CPU.")] = None
    max_warmup_s: Annotated[float, typer.Option("--max-warmup-s", help="Ceiling of the warm-up in seconds, once its "
                                                                       "first steps are done (up to 3,600).")] \
        = defaults.MAX_WARMUP_S
    breakdown: Annotated[bool, typer.Option("--breakdown", help="Profile after the timing (compare: each variant's "
                                                               "last round): time by op kind beside MACs and "
                                                               "bytes, a roofline per stage.")] = False
    plot: Annotated[str | None, typer.Option(help="Write a PNG: with --breakdown the roofline (a panel per "
                                                  "variant); compare without it: throughput and MACs per "
                                                  "variant.")] = None
    runtime: Annotated[str | None, typer.Option(help=runtime_help())] = None
    precision: Annotated[str | None, typer.Option(help=precision_help())] = None
    calib: Annotated[str | None, typer.Option(help="int8 calibration: a folder of images (resized to the input, "
                                                   "ImageNet mean/std) or a .npy (N,C,H,W); default synthetic.")] = None
    tf32: TF32Option = None
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would run: each configuration, its counted "
                                                            "MACs and a time estimate; measure nothing.")] = False
    batches: list[int] = field(init=False)  # parsed: [] when not given
    sizes: list[Size] = field(init=False)  # parsed (H, W): [] when not given
    runtimes: list[str] = field(init=False)  # parsed: eager torch first; ["torch"] when not given
    torch_added: bool = field(init=False)  # runtimes were named without eager torch, which is measured too
    precisions: list[str] = field(init=False)  # parsed: ["fp32"] when not given

    def __post_init__(self) -> None:
        self.batches = int_list("--batch", self.batch, *defaults.LIMITS["batch"])
        self.sizes = size_list("--imgsz", self.imgsz)
        named = runtime_names(self.runtime)
        self.runtimes = named if named[0] == "torch" else ["torch", *[n for n in named if n != "torch"]]
        self.torch_added = "torch" not in named
        self.precisions = parse_precisions(self.precision)
        if self.calib is not None and "int8" not in self.precisions:
            raise InputError("--calib gives int8 quantization its ranges; add --precision int8 (with a --runtime)")
        if self.iters is not None:
            check_range("--iters", self.iters, *defaults.LIMITS["iters"])
        if self.plot:
            require_matplotlib()

    @property
    def tf32_mode(self) -> str | None:
        """--tf32 as the API takes it: "on", "off", or None for PyTorch's own default."""
        return self.tf32.value if self.tf32 else None

    @property
    def deployed(self) -> bool:
        """Runtimes other than eager torch were asked for."""
        return self.runtimes != ["torch"]

    def resolved_device(self) -> str:
        from netprobe.timing import resolve_device

        return resolve_device(self.device.value)


@dataclass
class ParallelOptions:
    """Data-parallel training on N ranks of this machine (bench and compare alike)."""

    nproc: Annotated[int | None, typer.Option("--nproc", help="Data-parallel on N ranks of this machine (gloo on CPU, "
                                                             "NCCL on CUDA): 1 rank without DDP, then 1, 2, ... N "
                                                             "with DDP. Under torchrun: joins that job.")] = None
    world_sizes: Annotated[str | None, typer.Option("--world-sizes", help="With --nproc: the rank counts to "
                                                                           "measure, e.g. 1,2,4.")] = None
    global_batch: Annotated[int | None, typer.Option("--global-batch", help="With --nproc: hold the total batch "
                                                                             "(default: --batch per rank).")] = None
    bucket_mb: Annotated[float | None, typer.Option("--bucket-mb", help="With --nproc: DDP's gradient bucket size, "
                                                                        "MB (default 25, up to 1,024).")] = None
    sync_bn: Annotated[bool, typer.Option("--sync-bn", help="With --nproc: SyncBatchNorm (CUDA).")] = False
    port: Annotated[int | None, typer.Option(help="With --nproc: the rendezvous port (default: a free one).")] = None
    timeout: Annotated[float | None, typer.Option(help="With --nproc: seconds without progress before the ranks are "
                                                       "stopped (default 600, up to 86,400).")] = None

    def check_alone(self) -> None:
        """Without --nproc, none of the others may be given."""
        if self.nproc is None and (self.sync_bn or any(v is not None for v in (
                self.world_sizes, self.global_batch, self.bucket_mb, self.port, self.timeout))):
            raise InputError("--world-sizes, --global-batch, --bucket-mb, --sync-bn, --port and --timeout go with "
                             "--nproc")

    def dist_options(self):
        """The options as the data-parallel runner takes them (parsed, defaults filled in)."""
        from netprobe.cli.distributed import DistOptions

        sizes = int_list("--world-sizes", self.world_sizes, *defaults.LIMITS["world_sizes"]) or None
        return DistOptions(self.nproc, sizes, self.global_batch,
                           defaults.BUCKET_MB if self.bucket_mb is None else self.bucket_mb, self.sync_bn, self.port,
                           defaults.DIST_TIMEOUT_S if self.timeout is None else self.timeout)


# ---- parsing ------------------------------------------------------------------------------------

def int_list(option: str, text: str | None, lo: int, hi: int) -> list[int]:
    """'8,16' -> [8, 16], each checked against [lo, hi]."""
    if text is None:
        return []
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} {quote(text)} is not a comma list of integers, e.g. {option} 8,16") from None
    if not values:
        raise InputError(f"{option} {quote(text)} holds no value; give e.g. {option} 8")
    for v in values:
        check_range(option, v, lo, hi)
    return values


def size_list(option: str, text: str | None) -> list[Size]:
    """'128,160x128' -> [(128, 128), (160, 128)]: each a valid N or HxW."""
    if text is None:
        return []
    values = [parse_imgsz(v.strip()) for v in text.split(",") if v.strip()]
    if not values:
        raise InputError(f"{option} {quote(text)} holds no size; give e.g. {option} 224 or {option} 224x160")
    return values


def runtime_names(text: str | None) -> list[str]:
    """The runtimes a --runtime comma list names (checked: known, none twice); eager torch alone when not given.
    With others, the commands measure eager torch first as their reference (for speed and for the outputs
    every export is checked against)."""
    if text is None:
        return ["torch"]
    from netprobe.runtimes import parse_runtimes

    return parse_runtimes(text)


def check_in_chans(in_chans: int | None) -> None:
    if in_chans is not None:
        check_range("--in-chans", in_chans, *defaults.LIMITS["in_chans"])


def check_threads(threads: int | None) -> None:
    """Refuse more threads than usable cores; set torch's intra-op threads."""
    if threads is not None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        check_range("--threads", threads, 1, cores)
        import torch

        torch.set_num_threads(threads)


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install matplotlib (or pip install 'netprobe[plot]')") from None
