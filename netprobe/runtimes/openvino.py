"""OpenVINO: the ONNX export converted with `openvino.convert_model`, saved as IR (.xml + .bin), and
compiled for the CPU with `threads` inference threads, the latency hint, and the inference precision
asked: fp32, bf16 or fp16 as OpenVINO's INFERENCE_PRECISION_HINT (where the CPU has them), auto as OpenVINO
chooses (bf16 on CPUs that have it), int8 as NNCF's post-training quantization (`nncf.quantize`) of the IR
with the layers it leaves in float run in fp32. What ran is read per layer from the compiled model's
runtime graph."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from netprobe.runtimes.base import PRECISION_NAMES, Exported, LayersRan, Runtime, quiet
from netprobe.runtimes.onnx_export import EXPORTER, export_onnx

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}  # int8: what NNCF left in float runs fp32
CAPABILITY = {"bf16": "BF16", "fp16": "FP16", "int8": "INT8"}  # OPTIMIZATION_CAPABILITIES the CPU must list
INT8_SETTINGS = "nncf.quantize (post-training, default preset: symmetric int8 weights and activations)"
LAYER_KINDS = {"Convolution": "conv", "GroupConvolution": "conv", "Deconvolution": "conv",
               "FullyConnected": "linear", "MatMul": "linear"}


class OpenVino(Runtime):
    name = "openvino"
    packages = ("onnx", "openvino")
    file_kind = "OpenVINO IR (.xml + .bin)"

    def version(self) -> str:
        import openvino

        return openvino.__version__.split("-")[0]

    def provider(self, device: str) -> str:
        return "CPU"

    def export(self, model: nn.Module, example: torch.Tensor, folder: Path, stem: str) -> Exported:
        import openvino

        onnx = export_onnx(model, example, folder / f"{stem}.onnx")
        xml, weights = folder / f"{stem}.xml", folder / f"{stem}.bin"
        t0 = time.perf_counter()
        try:
            with quiet():
                # fp32 weights: compressed to fp16 (save_model's default), the CPU ran most convs in f16 under the
                # f32 hint, as its runtime model reported
                openvino.save_model(openvino.convert_model(str(onnx.files[0])), str(xml), compress_to_fp16=False)
        finally:
            onnx.files[0].unlink()  # the IR is what OpenVINO loads (and a failed conversion leaves no half)
        return Exported([xml, weights], onnx.seconds + time.perf_counter() - t0,
                        f"{EXPORTER}, then openvino.convert_model to IR (fp32 weights)")

    def precision_missing(self, precision: str, device: str) -> str | None:
        if precision not in CAPABILITY:
            return None
        import openvino

        capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if CAPABILITY[precision] not in capabilities:
            return (f"this CPU does not list {CAPABILITY[precision]} among OpenVINO's optimization capabilities "
                    f"({', '.join(capabilities)}); leave {precision} out")
        return None

    def convert(self, exported: Exported, precision: str, calibration: list, folder: Path) -> Exported:
        if precision != "int8":
            return super().convert(exported, precision, calibration, folder)
        import nncf
        import openvino

        xml, weights = exported.files
        staged = xml.with_name(xml.stem + ".int8.xml")
        t0 = time.perf_counter()
        with quiet():
            model = openvino.Core().read_model(str(xml))
            quantized = nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration))
            # written apart, then moved over: the model read maps the .bin, and rewriting it in place faults
            openvino.save_model(quantized, str(staged), compress_to_fp16=False)
        staged.replace(xml)
        staged.with_suffix(".bin").replace(weights)
        return Exported(exported.files, exported.seconds, f"{exported.how}; {INT8_SETTINGS}", precision="int8",
                        quantize_s=time.perf_counter() - t0)

    def load(self, exported: Exported, device: str, threads: int, perf_count: bool = False) -> object:
        import openvino

        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": perf_count}
        if exported.precision in HINTS:  # auto: OpenVINO's own choice
            config["INFERENCE_PRECISION_HINT"] = HINTS[exported.precision]
        return openvino.Core().compile_model(str(exported.files[0]), "CPU", config)

    def profile_ops(self, folder: Path, stem: str, precision: str, model: nn.Module, x: torch.Tensor, device: str,
                    threads: int) -> list:
        from netprobe.runtimes.profile import openvino_times

        exported = Exported([folder / f"{stem}.xml", folder / f"{stem}.bin"], 0.0, "", precision=precision)
        return openvino_times(self.load(exported, device, threads, perf_count=True), self.prepare_input(x), model)

    def layers_ran(self, session: object, exported: Exported, threads: int) -> LayersRan | None:
        layers = []
        for op in session.get_runtime_model().get_ops():
            info = op.get_rt_info()
            kind = LAYER_KINDS.get(info["layerType"].astype(str)) if "layerType" in info else None
            if kind and "runtimePrecision" in info:
                ran = info["runtimePrecision"].astype(str)
                layers.append((op.get_friendly_name(), kind, PRECISION_NAMES.get(ran, ran)))
        hint = session.get_property("INFERENCE_PRECISION_HINT").to_string()
        return LayersRan(layers, PRECISION_NAMES.get(hint, hint))

    def prepare_input(self, x: torch.Tensor) -> object:
        return x.detach().cpu().numpy()

    def run(self, session: object, inputs: object) -> list:
        # The compiled model called as OpenVINO's own examples call it: one infer request it keeps,
        # the input array shared, not copied (the array is contiguous and lives as long as the step)
        return list(session(inputs).values())
