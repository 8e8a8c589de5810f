"""Does writing the optimised graph (`SessionOptions.optimized_model_filepath`, which netprobe's ONNX Runtime
load sets to read which kernels ran) slow the session it is set on? Two sessions on the same INT8 file, the
same options otherwise (2 intra-op threads, 1 inter-op, every graph optimisation, the CPU provider), timed
in rounds with the order alternating; the ratio with / without per round and its median.

    python benchmarks/ort_saved_graph.py [--rounds 8] [--model efficientnet_b0] [--precision int8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from netprobe.runtimes import get_runtime
from netprobe.runtimes.calibration import calibration
from netprobe.target import resolve


def session(path: Path, saved: Path | None) -> object:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if saved:
        options.optimized_model_filepath = str(saved)
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def median_ms(run, warmup: int = 20, iters: int = 40) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--precision", default="int8", choices=("fp32", "int8"))
    args = parser.parse_args()
    target = resolve(args.model)
    size = target.input_size(None)
    runtime = get_runtime("onnxruntime")
    x = np.random.default_rng(0).standard_normal((1, 3, *size), dtype=np.float32)
    print(f"{args.model} {args.precision} b1 {size}; ONNX Runtime {onnxruntime.__version__}; load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory() as temp:
        exported = runtime.export(target.real_model().eval(), torch.from_numpy(x), Path(temp), "m")
        exported = runtime.convert(exported, args.precision, calibration(None, 1, 3, size).batches, Path(temp))
        path, ratios = exported.files[0], []
        for r in range(args.rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            ms = {}
            for saved in order:
                s = session(path, Path(temp) / "saved.onnx" if saved else None)
                ms[saved] = median_ms(lambda s=s: s.run(None, {"input": x}))
                del s
            ratios.append(ms[True] / ms[False])
            print(f"round {r + 1} ({'with' if order[0] else 'without'} first): with {ms[True]:.2f} ms, without "
                  f"{ms[False]:.2f} ms, ratio {ratios[-1]:.3f}", flush=True)
    print(f"median ratio with / without {statistics.median(ratios):.3f}; load average at the end "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
