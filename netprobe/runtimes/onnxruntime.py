"""ONNX Runtime: the ONNX export (`onnx_export`) in an InferenceSession with every graph optimisation,
`threads` intra-op threads (one inter-op), on the CPU provider or, on CUDA, the CUDA provider."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from netprobe.runtimes.base import Exported, Runtime
from netprobe.runtimes.onnx_export import export_onnx

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    packages = ("onnx", "onnxruntime")
    cuda = True  # when its CUDA provider is installed (see `provider`)
    file_kind = "ONNX (.onnx)"

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def cuda_missing(self) -> str | None:
        """Why it cannot run on CUDA here, or None."""
        import onnxruntime

        providers = onnxruntime.get_available_providers()
        if CUDA not in providers:
            return (f"onnxruntime {onnxruntime.__version__} has no CUDA provider here (it has {', '.join(providers)}): "
                    "install onnxruntime-gpu, or use --device cpu")
        return None

    def provider(self, device: str) -> str:
        return CUDA if device == "cuda" else CPU

    def export(self, model: nn.Module, example: torch.Tensor, folder: Path, stem: str) -> Exported:
        return export_onnx(model, example, folder / f"{stem}.onnx")

    def session_options(self, threads: int, profile_prefix: str | None = None) -> object:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no warnings on the user's terminal
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        return options

    def load(self, exported: Exported, device: str, threads: int, profile_prefix: str | None = None) -> object:
        import onnxruntime

        return onnxruntime.InferenceSession(str(exported.files[0]), self.session_options(threads, profile_prefix),
                                            providers=[self.provider(device)])

    def prepare_input(self, x: torch.Tensor) -> object:
        return x.detach().cpu().numpy()

    def run(self, session: object, inputs: object) -> list:
        return session.run(None, {"input": inputs})
