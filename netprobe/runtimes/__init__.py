"""Runtimes a model is deployed to, each behind the same small interface (`base.Runtime`: export, load,
run, version). Eager torch is the reference; a new runtime (TensorRT, ExecuTorch) is one more module
here and one entry in `RUNTIMES`."""

from __future__ import annotations

from netprobe.errors import InputError, closest, quote
from netprobe.runtimes.base import Exported, Runtime, RuntimeStep
from netprobe.runtimes.eager import EAGER, EXPORT, TORCHSCRIPT
from netprobe.runtimes.onnxruntime import OnnxRuntime
from netprobe.runtimes.openvino import OpenVino
from netprobe.runtimes.parity import PARITY_TOLERANCE, Parity, parity

RUNTIMES: dict[str, Runtime] = {r.name: r for r in (EAGER, TORCHSCRIPT, EXPORT, OnnxRuntime(), OpenVino())}
REFERENCE = "torch"
# Asked for by users, not here yet: why, in one line.
NOT_YET = {"tensorrt": "TensorRT needs a CUDA machine to build and test it on, which this project has not had yet"}

__all__ = ["PARITY_TOLERANCE", "REFERENCE", "RUNTIMES", "Exported", "Parity", "Runtime", "RuntimeStep",
           "check_runtimes", "get_runtime", "parity", "parse_runtimes"]


def parse_runtimes(text: str | None) -> list[str]:
    """'onnxruntime,openvino' -> the runtime names, each known (did-you-mean otherwise), none twice."""
    if text is None:
        return [REFERENCE]
    names = [n.strip().lower() for n in text.split(",")]
    if not all(names):
        raise InputError(f"--runtime {quote(text)} holds an empty name; give a comma list such as "
                         f"torch,onnxruntime (known: {', '.join(RUNTIMES)})")
    for name in names:
        if name in NOT_YET:
            raise InputError(f"--runtime {name} is not supported yet: {NOT_YET[name]}; known: {', '.join(RUNTIMES)}")
        if name not in RUNTIMES:
            close = closest(name, RUNTIMES, n=1) or [n for n in RUNTIMES if n.startswith(name[:4])][:1]
            hint = f"did you mean {close[0]}? " if close else ""
            raise InputError(f"unknown runtime {quote(name)}: {hint}known: {', '.join(RUNTIMES)}")
    if len(set(names)) != len(names):
        raise InputError(f"--runtime {quote(text)} names a runtime twice; give each once")
    return names


def get_runtime(name: str) -> Runtime:
    return RUNTIMES[name]


def check_runtimes(names: list[str], device: str, modes: list[str]) -> None:
    """Refuse before any export: a runtime other than eager torch asked to train, one that is not
    installed (naming the extra), or one that cannot run on the device asked for."""
    deployed = [n for n in names if n != REFERENCE]
    if deployed and "train" in modes:
        raise InputError(f"--runtime {deployed[0]} times inference only (a deployed model does not train): use "
                         "--mode infer, or --runtime torch to time training")
    for name in deployed:
        runtime = RUNTIMES[name]
        missing = runtime.missing()
        if missing:
            raise InputError(f"--runtime {name} is not installed here ({missing}): pip install "
                             f"'netprobe[{runtime.extra}]' (onnx, onnxruntime, openvino)")
        if device == "cuda" and not runtime.cuda:
            raise InputError(f"--runtime {name} does not run on CUDA devices (its GPU plugin drives Intel GPUs); "
                             "use --device cpu for it")
        if device == "cuda" and hasattr(runtime, "cuda_missing") and runtime.cuda_missing():
            raise InputError(f"--runtime {name}: {runtime.cuda_missing()}")
