"""ONNX Runtime: the ONNX export (`onnx_export`) in an InferenceSession with every graph optimisation,
`threads` intra-op threads (one inter-op), on the CPU provider or, on CUDA, the CUDA provider.

On CUDA the input stays on the device and the outputs are written there (IO binding, `BoundInput`), as
eager torch's are: a timed run holds no copies to or from the host, and ends when its outputs are ready.
A session whose CUDA provider did not load (ONNX Runtime then runs on the CPU, warning only) is refused.
"""

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

        session = onnxruntime.InferenceSession(str(exported.files[0]), self.session_options(threads, profile_prefix),
                                               providers=[self.provider(device)])
        check_provider(session, self.provider(device))
        return session

    def prepare_input(self, x: torch.Tensor) -> object:
        if x.device.type == "cuda":
            return BoundInput(x)
        return x.detach().cpu().numpy()

    def run(self, session: object, inputs: object) -> list:
        if isinstance(inputs, BoundInput):
            return inputs.run(session)
        return session.run(None, {"input": inputs})


def check_provider(session: object, provider: str) -> None:
    """Refuse a session that does not run on `provider`: ONNX Runtime falls back to the CPU when the CUDA
    provider fails to load (its CUDA or cuDNN libraries missing), saying so only in a warning."""
    got = session.get_providers()
    if provider not in got:
        raise RuntimeError(f"onnxruntime's session has no {provider} (it runs on {', '.join(got)}): the provider "
                           "did not load, most often a CUDA or cuDNN library that onnxruntime-gpu's build needs is "
                           "missing; ONNX Runtime's CUDA requirements page lists them")


class BoundInput:
    """An input tensor bound in place to a session's IO binding, with outputs bound to tensors on the same
    device: a run copies nothing to or from the host and returns when its outputs are complete. The
    outputs are allocated after the first run (when their shapes are known) and overwritten by each run."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.detach().contiguous()
        if self.x.device.type == "cuda":
            torch.cuda.synchronize()  # ONNX Runtime reads the input on its own stream: torch's writes must be done
        self.session: object | None = None
        self.binding = None
        self.outputs: list[torch.Tensor] = []

    def run(self, session: object) -> list[torch.Tensor]:
        if self.session is not session:
            self._bind(session)
        session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()
        return self.outputs

    def _bind(self, session: object) -> None:
        device, index = self.x.device.type, self.x.device.index or 0
        self.session, self.binding = session, session.io_binding()
        self.binding.bind_input("input", device, index, _numpy_dtype(self.x.dtype), list(self.x.shape),
                                self.x.data_ptr())
        names = [o.name for o in session.get_outputs()]
        for name in names:  # first run: ONNX Runtime allocates the outputs, which gives their shapes and dtypes
            self.binding.bind_output(name, device)
        session.run_with_iobinding(self.binding)
        self.binding.synchronize_outputs()
        self.outputs = [torch.from_numpy(v.numpy()).to(self.x.device) for v in self.binding.get_outputs()]
        self.binding.clear_binding_outputs()
        for name, out in zip(names, self.outputs, strict=True):
            self.binding.bind_output(name, device, index, _numpy_dtype(out.dtype), list(out.shape), out.data_ptr())


def _numpy_dtype(dtype: torch.dtype) -> object:
    return torch.empty((), dtype=dtype).numpy().dtype
