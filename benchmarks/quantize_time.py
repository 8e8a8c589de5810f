"""Where ONNX Runtime's static quantization of efficientnet_b0 at 224 spends its time (issue 27: under 60 s).

The same steps and settings as `netprobe bench --runtime onnxruntime --precision int8` (netprobe's export,
the default calibration: 32 synthetic images at batch 1, `quant_pre_process`, then `quantize_static`, QDQ,
per-channel S8 weights, U8 activations), each step timed, and quantize_static's profile (cProfile, which
slows its Python parts somewhat) cut to the calls that take the time: calibration runs, the QDQ rewrite.

    python benchmarks/quantize_time.py
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from netprobe.runtimes import get_runtime
from netprobe.runtimes.calibration import calibration
from netprobe.target import resolve

PARTS = ("quantize_static", "collect_data", "create_calibrator", "quantize_model", "_calc_initializer_quant_params",
         "_quantize_bias_tensors")


class Batches(CalibrationDataReader):
    def __init__(self, batches: list) -> None:
        self.left = iter(batches)

    def get_next(self) -> dict | None:
        batch = next(self.left, None)
        return None if batch is None else {"input": batch}


def main() -> None:
    print(f"load average {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs", flush=True)
    model = resolve("efficientnet_b0").real_model().eval()
    calib = calibration(None, 1, 3, (224, 224))
    with tempfile.TemporaryDirectory() as temp:
        t0 = time.perf_counter()
        exported = get_runtime("onnxruntime").export(model, torch.randn(1, 3, 224, 224), Path(temp), "b0")
        print(f"export {time.perf_counter() - t0:.1f} s; {len(calib.batches)} calibration batches", flush=True)
        path, pre = exported.files[0], Path(temp) / "b0.pre.onnx"
        t0 = time.perf_counter()
        quant_pre_process(str(path), str(pre))
        print(f"quant_pre_process {time.perf_counter() - t0:.1f} s", flush=True)
        profile = cProfile.Profile()
        t0 = time.perf_counter()
        profile.runcall(quantize_static, str(pre), str(Path(temp) / "b0.int8.onnx"), Batches(calib.batches),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        print(f"quantize_static {time.perf_counter() - t0:.1f} s (under cProfile), of which:")
    stats = pstats.Stats(profile, stream=io.StringIO())
    for (file, _, name), row in stats.stats.items():  # type: ignore[attr-defined]
        if name in PARTS:
            print(f"  {name:32s} {row[3]:6.1f} s  ({Path(file).name})")
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
