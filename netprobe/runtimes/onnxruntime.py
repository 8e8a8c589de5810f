"""ONNX Runtime: the ONNX export (`onnx_export`) in an InferenceSession with every graph optimisation,
`threads` intra-op threads (one inter-op), on the CPU provider or, on CUDA, the CUDA provider.

On CUDA the input stays on the device and the outputs are written there (IO binding, `BoundInput`), as
eager torch's are: a timed run holds no copies to or from the host, and ends when its outputs are ready.
A session whose CUDA provider did not load (ONNX Runtime then runs on the CPU, warning only) is refused.
INT8: ONNX Runtime's static quantization after its pre-processing step (`quant_pre_process`), QDQ format,
per-channel int8 weights, uint8 activations (U8S8: what its documentation recommends on x86; signed
activations ran 3-4x slower than fp32 on this project's CPU). fp16 (CUDA only): the model's floats
converted to fp16, inputs and outputs kept fp32. What ran is read from the graph the session optimised.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from netprobe.runtimes.base import Exported, LayersRan, Runtime, quiet
from netprobe.runtimes.onnx_export import export_onnx

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
INT8_SETTINGS = ("onnxruntime.quantization: quant_pre_process, quantize_static, QDQ, per-channel S8 weights, "
                 "U8 activations")
FP16_SETTINGS = "onnxruntime.transformers.float16: weights and activations fp16, inputs and outputs fp32"
# Optimised-graph op types and the precision they compute in (others: the dtype of their weight).
INT8_OPS = {"QLinearConv": "conv", "ConvInteger": "conv", "QGemm": "linear", "QLinearMatMul": "linear",
            "MatMulInteger": "linear"}
FLOAT_OPS = {"Conv": "conv", "FusedConv": "conv", "NhwcFusedConv": "conv", "ConvTranspose": "conv",
             "Gemm": "linear", "FusedGemm": "linear", "MatMul": "linear", "FusedMatMul": "linear"}


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    packages = ("onnx", "onnxruntime")
    file_kind = "ONNX (.onnx)"

    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def precision_missing(self, precision: str, device: str) -> str | None:
        if precision == "fp16" and device == "cpu":
            return ("its CPU provider has no fp16 convolution kernels (it would cast back to fp32 around every "
                    "node and run slower than fp32); use --device cuda, or --runtime openvino for fp16 or bf16")
        return None

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

    def convert(self, exported: Exported, precision: str, calibration: list, folder: Path) -> Exported:
        if precision == "int8":
            return quantize_int8(exported, calibration)
        if precision == "fp16":
            return convert_fp16(exported)
        return super().convert(exported, precision, calibration, folder)

    def layers_ran(self, session: object, exported: Exported, threads: int) -> LayersRan | None:
        return LayersRan(optimized_layers(optimized_file(exported.files[0])))

    def profile_ops(self, folder: Path, stem: str, precision: str, model: nn.Module, x: torch.Tensor, device: str,
                    threads: int) -> list:
        from netprobe.runtimes.profile import profile_runtime

        return profile_runtime(self, folder / f"{stem}.onnx", model, x, device, threads, folder)

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

        options = self.session_options(threads, profile_prefix)
        if not profile_prefix:  # the graph as optimised, written as the session is made: what ran (`layers_ran`)
            options.optimized_model_filepath = str(optimized_file(exported.files[0]))
        session = onnxruntime.InferenceSession(str(exported.files[0]), options, providers=[self.provider(device)])
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


def quantize_int8(exported: Exported, calibration: list) -> Exported:
    """The ONNX export statically quantized in its place (see the module's docstring for the settings)."""
    import time

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = iter(calibration)

        def get_next(self) -> dict | None:
            batch = next(self.left, None)
            return None if batch is None else {"input": batch}

    path = exported.files[0]
    pre = path.with_name(path.stem + ".pre.onnx")
    t0 = time.perf_counter()
    try:
        with quiet():
            quant_pre_process(str(path), str(pre))
            quantize_static(str(pre), str(path), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        pre.unlink(missing_ok=True)
        for extra in path.parent.glob(pre.stem + "*"):  # the calibrator's augmented model
            extra.unlink(missing_ok=True)
    return Exported(exported.files, exported.seconds, f"{exported.how}; {INT8_SETTINGS}", precision="int8",
                    quantize_s=time.perf_counter() - t0)


def convert_fp16(exported: Exported) -> Exported:
    """The ONNX export with its floats in fp16, in its place (inputs and outputs stay fp32)."""
    import time

    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    path = exported.files[0]
    t0 = time.perf_counter()
    with quiet():
        onnx.save(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True), str(path))
    return Exported(exported.files, exported.seconds, f"{exported.how}; {FP16_SETTINGS}", precision="fp16",
                    quantize_s=time.perf_counter() - t0)


def optimized_file(onnx_file: Path) -> Path:
    return onnx_file.with_name(onnx_file.stem + ".optimized.onnx")


def optimized_layers(written: Path) -> list[tuple[str, str, str]]:
    """Each conv and linear node of the graph an InferenceSession optimised and wrote
    (`optimized_model_filepath`, removed once read), with the precision it computes in."""
    import onnx

    try:
        graph = onnx.load(str(written), load_external_data=False).graph
    finally:
        written.unlink(missing_ok=True)
    weights = {t.name: onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in graph.initializer}
    layers = []
    for node in graph.node:
        if node.op_type in INT8_OPS:
            layers.append((node.name, INT8_OPS[node.op_type], "int8"))
        elif node.op_type in FLOAT_OPS and len(node.input) > 1:
            dtype = weights.get(node.input[1], "float32")
            layers.append((node.name, FLOAT_OPS[node.op_type], "fp16" if dtype == "float16" else "fp32"))
    return layers
