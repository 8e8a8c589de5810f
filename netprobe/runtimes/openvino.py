"""OpenVINO: the ONNX export converted with `openvino.convert_model`, saved as IR (.xml + .bin), and
compiled for the CPU with `threads` inference threads, the latency hint, and fp32 inference precision
(OpenVINO would otherwise run bf16 on CPUs that have it: the rows would not compare like for like)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from netprobe.runtimes.base import Exported, Runtime, quiet
from netprobe.runtimes.onnx_export import EXPORTER, export_onnx


class OpenVino(Runtime):
    name = "openvino"
    packages = ("onnx", "openvino")
    cuda = False  # its GPU plugin drives Intel GPUs, not CUDA devices
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
                # save_model stores weights as fp16 unless told not to: the fp32 row would run rounded weights
                openvino.save_model(openvino.convert_model(str(onnx.files[0])), str(xml), compress_to_fp16=False)
        finally:
            onnx.files[0].unlink()  # the IR is what OpenVINO loads (and a failed conversion leaves no half)
        return Exported([xml, weights], onnx.seconds + time.perf_counter() - t0,
                        f"{EXPORTER}, then openvino.convert_model to IR")

    def load(self, exported: Exported, device: str, threads: int) -> object:
        import openvino

        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        return openvino.Core().compile_model(str(exported.files[0]), "CPU", config)

    def prepare_input(self, x: torch.Tensor) -> object:
        return x.detach().cpu().numpy()

    def run(self, session: object, inputs: object) -> list:
        # The compiled model called as OpenVINO's own examples call it: one infer request it keeps,
        # the input array shared, not copied (the array is contiguous and lives as long as the step)
        return list(session(inputs).values())
