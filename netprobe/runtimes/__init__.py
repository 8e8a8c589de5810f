"""Runtimes a model is deployed to, each behind the same small interface (`base.Runtime`: export, convert,
load, run, version). Eager torch is the reference.

`REGISTRY` is the one place that knows a runtime: its module, devices, precisions, whether netprobe reads
its profiler, and the pip extra that installs it. Help texts, did-you-mean lists and refusals are made from
it. A new runtime (TensorRT, ExecuTorch) is its module plus one entry. This module imports no torch (the
CLI's --help reads it); the runtimes themselves load on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from netprobe.errors import InputError, closest, quote

PRECISIONS = ("auto", "fp32", "fp16", "bf16", "int8")  # auto: the runtime's own default


@dataclass(frozen=True)
class RuntimeEntry:
    """What netprobe knows of a runtime before importing it."""

    name: str
    module: str  # "package.module:Class" of its `base.Runtime`
    devices: tuple[str, ...]  # cpu, cuda
    precisions: dict[str, tuple[str, ...]]  # per device, the precisions netprobe runs it in
    profiles: bool = False  # netprobe reads its profiler (--breakdown)
    extra: str | None = "deploy"  # pip install 'netprobe[extra]'; None: always there


_TORCH = {"cpu": ("fp32",), "cuda": ("fp32",)}  # PyTorch's own runtimes: fp32 (--amp is eager torch's own)
REGISTRY: dict[str, RuntimeEntry] = {e.name: e for e in (
    RuntimeEntry("torch", "netprobe.runtimes.eager:EAGER", ("cpu", "cuda"), _TORCH, profiles=True, extra=None),
    RuntimeEntry("torchscript", "netprobe.runtimes.eager:TORCHSCRIPT", ("cpu", "cuda"), _TORCH, extra=None),
    RuntimeEntry("export", "netprobe.runtimes.eager:EXPORT", ("cpu", "cuda"), _TORCH, extra=None),
    RuntimeEntry("onnxruntime", "netprobe.runtimes.onnxruntime:OnnxRuntime", ("cpu", "cuda"),
                 {"cpu": ("auto", "fp32", "int8"), "cuda": ("auto", "fp32", "fp16", "int8")}, profiles=True),
    RuntimeEntry("openvino", "netprobe.runtimes.openvino:OpenVino", ("cpu",),
                 {"cpu": ("auto", "fp32", "bf16", "fp16", "int8")}, profiles=True),
)}
REFERENCE = "torch"
# Asked for by users, not here yet: why, in one line.
NOT_YET = {"tensorrt": "TensorRT needs a CUDA machine to build and test it on, which this project has not had yet"}
# imported on first use (they need torch); the parity check itself: netprobe.runtimes.parity.parity (the submodule's
# own name would shadow a function of that name here)
_LAZY = {"Exported": "base", "Runtime": "base", "RuntimeStep": "base", "PARITY_TOLERANCE": "parity", "Parity": "parity"}

__all__ = ["PARITY_TOLERANCE", "PRECISIONS", "REFERENCE", "REGISTRY", "RUNTIMES", "Exported", "Parity", "Runtime",
           "RuntimeEntry", "RuntimeStep", "check_precisions", "check_runtimes", "get_runtime",
           "parse_precisions", "parse_runtimes", "runtime_help"]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f"netprobe.runtimes.{_LAZY[name]}"), name)
    if name == "RUNTIMES":
        return _instances()
    raise AttributeError(f"module 'netprobe.runtimes' has no attribute {name!r}")


_LOADED: dict[str, object] = {}


def _instances() -> dict[str, object]:
    """Every registered runtime's object, imported once."""
    for name, entry in REGISTRY.items():
        if name not in _LOADED:
            module, _, attr = entry.module.partition(":")
            found = getattr(importlib.import_module(module), attr)
            _LOADED[name] = found() if isinstance(found, type) else found
    return _LOADED


def get_runtime(name: str) -> object:
    """The `base.Runtime` registered under `name`."""
    return _instances()[name]


def runtime_help() -> str:
    """The --runtime help: every registered runtime, from the registry."""
    return (f"Where to run the model: {', '.join(REGISTRY)} (torch: eager, the default), or a comma list "
            "(one row each; inference).")


def precision_help() -> str:
    """The --precision help, from the registry."""
    per = "; ".join(f"{e.name} {','.join(p for p in e.precisions['cpu'])}" for e in REGISTRY.values()
                    if e.precisions.get("cpu", ()) != ("fp32",))
    return (f"With a --runtime other than torch: {', '.join(PRECISIONS)} or a comma list (one row per runtime × "
            f"precision; auto: the runtime's own default; CPU: {per}). Default fp32.")


def _unknown(kind: str, name: str, known) -> InputError:
    close = closest(name, known, n=1) or [n for n in known if n.startswith(name[:4])][:1]
    hint = f"did you mean {close[0]}? " if close else ""
    return InputError(f"unknown {kind} {quote(name)}: {hint}known: {', '.join(known)}")


def parse_runtimes(text: str | None) -> list[str]:
    """'onnxruntime,openvino' -> the runtime names, each known (did-you-mean otherwise), none twice."""
    if text is None:
        return [REFERENCE]
    names = [n.strip().lower() for n in text.split(",")]
    if not all(names):
        raise InputError(f"--runtime {quote(text)} holds an empty name; give a comma list such as "
                         f"torch,onnxruntime (known: {', '.join(REGISTRY)})")
    for name in names:
        if name in NOT_YET:
            raise InputError(f"--runtime {name} is not supported yet: {NOT_YET[name]}; known: {', '.join(REGISTRY)}")
        if name not in REGISTRY:
            raise _unknown("runtime", name, REGISTRY)
    if len(set(names)) != len(names):
        raise InputError(f"--runtime {quote(text)} names a runtime twice; give each once")
    return names


def parse_precisions(text: str | None) -> list[str]:
    """'fp32,int8' -> the precisions, each known (did-you-mean otherwise), none twice; None -> ['fp32']."""
    if text is None:
        return ["fp32"]
    names = [n.strip().lower() for n in text.split(",")]
    if not all(names):
        raise InputError(f"--precision {quote(text)} holds an empty name; give a comma list such as fp32,int8")
    for name in names:
        if name not in PRECISIONS:
            raise _unknown("precision", name, PRECISIONS)
    if len(set(names)) != len(names):
        raise InputError(f"--precision {quote(text)} names a precision twice; give each once")
    return names


def check_runtimes(names: list[str], device: str, modes: list[str]) -> None:
    """Refuse before any export: a runtime other than eager torch asked to train, one that is not
    installed (naming the extra), or one that cannot run on the device asked for."""
    deployed = [n for n in names if n != REFERENCE]
    if deployed and "train" in modes:
        raise InputError(f"--runtime {deployed[0]} times inference only (a deployed model does not train): use "
                         "--mode infer, or --runtime torch to time training")
    for name in deployed:
        entry = REGISTRY[name]
        if device not in entry.devices:
            raise InputError(f"--runtime {name} does not run on {device.upper()} devices (it runs on "
                             f"{', '.join(d.upper() for d in entry.devices)}); use --device {entry.devices[0]} for it")
        runtime = get_runtime(name)
        missing = runtime.missing()
        if missing:
            packages = ", ".join(dict.fromkeys(p for e in REGISTRY.values() if e.extra == entry.extra
                                               for p in get_runtime(e.name).packages))
            raise InputError(f"--runtime {name} is not installed here ({missing}): pip install "
                             f"'netprobe[{entry.extra}]' ({packages})")
        cannot = runtime.cuda_missing() if device == "cuda" else None
        if cannot:
            raise InputError(f"--runtime {name}: {cannot}")


def check_precisions(precisions: list[str], runtimes: list[str], device: str, modes: list[str]) -> None:
    """Refuse before any export a precision no runtime asked for runs: with eager torch alone, with
    training, or one a runtime cannot run on this device (and why)."""
    if precisions == ["fp32"]:
        return
    asked = ",".join(precisions)
    deployed = [n for n in runtimes if n != REFERENCE]
    if not deployed:
        raise InputError(f"--precision {asked} needs a --runtime that converts the model (onnxruntime, openvino); "
                         "eager torch runs fp32 here (--amp for autocast)")
    if "train" in modes:
        raise InputError(f"--precision {asked} deploys a model for inference; use --mode infer (or --amp to train "
                         "eager torch in half precision)")
    for name in deployed:
        entry = REGISTRY[name]
        for precision in precisions:
            why = get_runtime(name).precision_missing(precision, device)
            if why:
                raise InputError(f"--runtime {name} --precision {precision}: {why}")
            if precision not in entry.precisions.get(device, ()):
                raise InputError(f"--runtime {name} does not run {precision} on {device} here (it runs "
                                 f"{', '.join(entry.precisions.get(device, ()))}); leave {precision} out or use "
                                 "another runtime")
