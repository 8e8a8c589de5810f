"""What several commands take alike: choices, comma lists, thread counts, the plot extra, the
data-parallel options. Parsed and checked here, before any work."""

from __future__ import annotations

import os
from enum import Enum
from typing import Annotated

import typer

from netprobe.errors import InputError, check_range, quote


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum of `values` (each member named and valued as the value), for a typer option."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


DeviceChoice = choices("DeviceChoice", ("auto", "cpu", "cuda"))
ModeChoice = choices("ModeChoice", ("train", "infer", "both"))
AmpChoice = choices("AmpChoice", ("off", "bf16", "fp16"))
OptimizerChoice = choices("OptimizerChoice", ("sgd", "adamw"))
TF32Choice = choices("TF32Choice", ("on", "off"))

DeviceOption = Annotated[DeviceChoice, typer.Option(help="auto picks CUDA when present.")]
ChannelsLastOption = Annotated[bool, typer.Option("--channels-last", help="NHWC model and input.")]
TF32Option = Annotated[TF32Choice | None, typer.Option("--tf32", help="CUDA: TF32 for convolutions and matmuls "
                                                                      "(default: PyTorch's, convolutions only).")]
ScaleOption = Annotated[str | None, typer.Option(help="A detector YAML's scale letter; default: from the file name.")]
ModulesOption = Annotated[str | None, typer.Option(help="A .py file whose classes a detector YAML may name.")]
WorldSizesOption = Annotated[str | None, typer.Option("--world-sizes", help="With --nproc: the rank counts to "
                                                                           "measure, e.g. 1,2,4.")]
GlobalBatchOption = Annotated[int | None, typer.Option("--global-batch", help="With --nproc: hold the total batch "
                                                                             "(default: --batch per rank).")]
BucketOption = Annotated[float, typer.Option("--bucket-mb", help="With --nproc: DDP's gradient bucket size, MB "
                                                                 "(up to 1,024).")]
MaxWarmupOption = Annotated[float, typer.Option("--max-warmup-s", help="Ceiling of the warm-up in seconds, once "
                                                                      "its first steps are done (up to 3,600).")]
BuildTimeoutOption = Annotated[float, typer.Option("--build-timeout", help="Seconds your code (file.py:factory, "
                                                                       "module:..., --modules) may take to build "
                                                                       "a model (up to 86,400; 0: no limit).")]
DEFAULT_BUILD_TIMEOUT_S = 120.0  # building.DEFAULT_BUILD_TIMEOUT_S
DEFAULT_MAX_WARMUP_S = 10.0  # timing.MAX_WARMUP_S (not imported here: --help must not import torch)
DEFAULT_MODEL = "efficientnetv2_s"
DEFAULT_MODEL_NOTE = f"no model given: {DEFAULT_MODEL}, the EfficientNetV2 paper's reference"


def set_build_timeout(seconds: float) -> None:
    """Check --build-timeout and set it for every build of a user's model from now on."""
    from netprobe.building import MAX_BUILD_TIMEOUT_S
    from netprobe.building import set_build_timeout as set_limit

    if not 0 <= seconds <= MAX_BUILD_TIMEOUT_S:  # NaN too
        raise InputError(f"--build-timeout {seconds:g} is not allowed; give seconds from 0 (no limit) to "
                         f"{MAX_BUILD_TIMEOUT_S:,.0f}")
    set_limit(seconds)


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


def size_list(option: str, text: str | None) -> list[int | str]:
    """'128,160x128' -> [128, '160x128']: each a valid N (an int) or HxW (a string, H != W)."""
    from netprobe.target import parse_imgsz, size_text

    if text is None:
        return []
    values = [parse_imgsz(v.strip()) for v in text.split(",") if v.strip()]
    if not values:
        raise InputError(f"{option} {quote(text)} holds no size; give e.g. {option} 224 or {option} 224x160")
    return [size_text(v) for v in values]


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



def runtime_names(text: str) -> list[str]:
    """The runtimes a --runtime comma list names (checked: known, none twice)."""
    from netprobe.runtimes import parse_runtimes

    return parse_runtimes(text)


def runtime_list(text: str | None) -> list[str]:
    """The runtimes to measure: eager torch alone by default; with others, eager torch first as their
    reference (for speed and for the outputs every export is checked against)."""
    names = runtime_names(text) if text is not None else ["torch"]
    return names if names[0] == "torch" else ["torch", *[n for n in names if n != "torch"]]
