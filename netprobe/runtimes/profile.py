"""ONNX Runtime's own profiler, read back into netprobe's terms: every kernel's time given to the module
it came from (the exporter's node names carry the module path) and to netprobe's op kinds, so that the
breakdown table reads as it does for eager torch.

ONNX Runtime fuses: batch norms fold into convs, activations into the conv before them, and a fused
kernel is named after the last node it swallowed (`.../dw/dw.2/Relu`). A conv kernel named after a
module that is no conv is given back to the conv with the same weight in that module's parent.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from netprobe.breakdown import OpTime
from netprobe.runtimes.base import Exported, Runtime
from netprobe.runtimes.onnx_export import module_path

# ONNX op types (ONNX Runtime's fused ones too) -> the counter's op kinds.
ONNX_KINDS = {
    **dict.fromkeys(("Conv", "FusedConv", "ConvTranspose", "NhwcFusedConv", "QLinearConv"), "conv"),
    **dict.fromkeys(("Gemm", "FusedGemm", "MatMul", "FusedMatMul"), "linear"),
    "BatchNormalization": "norm", "LayerNormalization": "norm",
    **dict.fromkeys(("Relu", "Sigmoid", "HardSigmoid", "HardSwish", "Clip", "Tanh", "LeakyRelu", "Softmax",
                     "Erf", "Gelu", "FastGelu", "QuickGelu", "Elu", "Softplus"), "act"),
    **dict.fromkeys(("Mul", "Div"), "mul"), **dict.fromkeys(("Add", "Sub", "Sum"), "add"),
    **dict.fromkeys(("GlobalAveragePool", "AveragePool", "MaxPool", "GlobalMaxPool", "ReduceMean"), "pool"),
    **dict.fromkeys(("Resize", "Upsample"), "resize"), **dict.fromkeys(("Concat", "Pad"), "concat"),
    # the quantized kernels of an int8 model
    "ConvInteger": "conv", **dict.fromkeys(("QGemm", "QLinearMatMul", "MatMulInteger"), "linear"),
    **dict.fromkeys(("QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax"), "act"), "QLinearMul": "mul",
    "QLinearAdd": "add", **dict.fromkeys(("QLinearGlobalAveragePool", "QLinearAveragePool"), "pool"),
    "QLinearConcat": "concat",
}
_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)
KERNEL = "_kernel_time"


def profile_runtime(runtime: Runtime, onnx_file: Path, model: nn.Module, x: torch.Tensor, device: str,
                    threads: int, folder: Path, steps: int = 3) -> list[OpTime]:
    """Run the ONNX file in a profiling session of `runtime` (one warm-up run, `steps` profiled) and give
    each kernel's time per step to a module of `model` and an op kind."""
    session = runtime.load(Exported([onnx_file], 0.0, ""), device, threads, profile_prefix=str(folder / "profile"))
    inputs = runtime.prepare_input(x)
    for _ in range(1 + steps):
        runtime.run(session, inputs)
    trace = Path(session.end_profiling())
    try:
        events = json.loads(trace.read_text())
    finally:
        trace.unlink(missing_ok=True)
    return kernel_times(events, dict(model.named_modules()), steps)


def kernel_times(events: list[dict], modules: dict[str, nn.Module], steps: int) -> list[OpTime]:
    """Per-step time of the kernels in the last `steps` runs of a profile, by (module, op kind)."""
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session"
                  and e.get("name") == "model_run")[-steps:]
    names = set(modules)
    totals: dict[tuple[str, str | None], float] = defaultdict(float)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith(KERNEL):
            continue
        if runs and not any(a <= e["ts"] <= b for a, b in runs):
            continue  # the warm-up run, or session set-up
        op = e.get("args", {}).get("op_name", "")
        path = _owner(module_path(e["name"][:-len(KERNEL)], names), op, e.get("args", {}), modules)
        totals[(path, ONNX_KINDS.get(op))] += e["dur"]
    count = max(len(runs), 1) if runs else steps
    return [OpTime(path, "fwd", kind, us / 1e3 / count) for (path, kind), us in totals.items()]


def _owner(path: str, op: str, args: dict, modules: dict[str, nn.Module]) -> str:
    """The module a kernel belongs to; a conv or matmul kernel named after another module (a fused
    activation) goes to the conv or linear of its parent whose weight has the kernel's weight's size."""
    if ONNX_KINDS.get(op) not in ("conv", "linear") or isinstance(modules.get(path), _WEIGHTED):
        return path
    shapes = args.get("input_type_shape", [])
    weight = math.prod(next(iter(shapes[1].values()))) if len(shapes) > 1 and shapes[1] else None
    parent = path.rpartition(".")[0]  # "" for a top-level module: the whole model
    for name, module in modules.items():
        inside = not parent or name == parent or name.startswith(parent + ".")
        if inside and isinstance(module, _WEIGHTED) and module.weight.numel() == weight:
            return name
    return path


# OpenVINO CPU plugin layer types -> the counter's op kinds (Eltwise and Subgraph hold fused element-wise ops).
OPENVINO_KINDS = {"Convolution": "conv", "GroupConvolution": "conv", "Deconvolution": "conv",
                  "FullyConnected": "linear", "MatMul": "linear", "Pooling": "pool", "Reduce": "pool",
                  "Interpolate": "resize", "Concatenation": "concat", "MVN": "norm"}


def openvino_times(compiled: object, inputs: object, model: nn.Module, steps: int = 3) -> list[OpTime]:
    """Run a model compiled with PERF_COUNT (one warm-up run, `steps` counted) and give each executed layer's
    time per step (OpenVINO's per-layer counters) to a module of `model` and an op kind."""
    request = compiled.create_infer_request()
    request.infer(inputs)
    totals: dict[tuple[str, str | None], float] = defaultdict(float)
    names = set(dict(model.named_modules()))
    for _ in range(steps):
        request.infer(inputs)
        for layer in request.get_profiling_info():
            if str(layer.status).endswith("EXECUTED") and not str(layer.status).endswith("NOT_RUN"):
                key = (module_path(layer.node_name, names), OPENVINO_KINDS.get(layer.node_type))
                totals[key] += layer.real_time.total_seconds() * 1e3
    return [OpTime(path, "fwd", kind, ms / steps) for (path, kind), ms in totals.items()]
