"""INT8 and half precision against fp32 in the same runtime, on this CPU, measured side by side.

For each model and batch, in ONNX Runtime and OpenVINO: netprobe's export converted to each precision the
runtime runs here (ONNX Runtime: fp32, int8; OpenVINO: fp32, bf16 where the CPU has it, int8), the default
calibration (synthetic, see netprobe.runtimes.calibration), then interleaved rounds (order alternating)
of netprobe's timing of each. Printed per row: p50 (median over rounds), the speed-up over the same
runtime's fp32 (median of the per-round ratios), the drift against eager fp32 on the held-out inputs
(lowest cosine, top-1 agreement), the layers that ran below fp32 as the runtime reports them, and the
quantization seconds.

With --tool, each precision's file is also timed by the runtime's own tool, interleaved with netprobe:
OpenVINO's benchmark_app (one stream, sync API, the same threads and inference precision), and for ONNX Runtime a
bare InferenceSession.run loop on the same session; the median ratio netprobe / tool is printed (goal:
within 5%).

    python benchmarks/quantized.py [--models efficientnet_b0,...] [--batches 1,8] [--rounds 3] [--tool]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openvino
import torch

from netprobe.runtimes import REGISTRY, RuntimeStep, get_runtime
from netprobe.runtimes.calibration import calibration
from netprobe.runtimes.drift import measure_drift
from netprobe.target import resolve
from netprobe.tensors import tensors
from netprobe.timing import measure_steps

sys.path.insert(0, str(Path(__file__).parent))
from runtime_overhead import bare_ms  # the bare loop the runtime overhead benchmark uses

OV_HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def precisions(runtime: str) -> list[str]:
    found = [p for p in REGISTRY[runtime].precisions["cpu"] if p in ("fp32", "bf16", "int8")]
    return [p for p in found if not get_runtime(runtime).precision_missing(p, "cpu")]


def deploy(model, x, runtime_name: str, precision: str, calib, folder: Path) -> dict:
    """Export, convert, load; what ran and the drift on the held-out inputs."""
    runtime = get_runtime(runtime_name)
    sub = folder / precision
    sub.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    exported = runtime.convert(runtime.export(model, x, sub, "m"), precision, calib.batches, sub)
    prepare_s = time.perf_counter() - t0
    session = runtime.load(exported, "cpu", torch.get_num_threads())
    ran = runtime.layers_ran(session, exported, torch.get_num_threads())
    with torch.inference_mode():
        want = [list(tensors(model(torch.from_numpy(b)))) for b in calib.held_out]
    drift = measure_drift(want, [runtime.run(session, runtime.prepare_input(torch.from_numpy(b)))
                                 for b in calib.held_out])
    return {"precision": precision, "session": session, "step": RuntimeStep(runtime, session, x), "ran": ran,
            "drift": drift, "quantize_s": exported.quantize_s, "prepare_s": prepare_s, "file": exported.files[0],
            "ms": [], "tool_ratio": []}


def netprobe_ms(step) -> float:
    return measure_steps(step, "cpu", warmup=2, iters=20, max_warmup_s=5).step_ms


def tool_ms(runtime_name: str, row: dict, seconds: float) -> float:
    """The runtime's own measure of the same file and precision."""
    if runtime_name == "onnxruntime":
        session, inputs = row["session"], row["step"].inputs
        return bare_ms(lambda: session.run(None, {"input": inputs}), seconds)
    # one stream, synchronous, netprobe's threads: what the latency hint gives netprobe's session (benchmark_app
    # takes -nthreads only without a hint)
    out = subprocess.run(["benchmark_app", "-m", str(row["file"]), "-d", "CPU", "-hint", "none", "-nstreams", "1",
                          "-api", "sync", "-nthreads", str(torch.get_num_threads()), "-infer_precision",
                          OV_HINT[row["precision"]], "-t", str(max(2, round(seconds)))],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"Median:\s+([\d.]+) ms", out).group(1))


def measure(name: str, batch: int, runtime_name: str, rounds: int, tool: bool, folder: Path) -> list[str]:
    target = resolve(name)
    size = target.input_size(None)
    model = target.make("cpu").eval()
    x = torch.randn(batch, target.in_chans, *size)
    calib = calibration(None, batch, target.in_chans, size)
    rows = [deploy(model, x, runtime_name, p, calib, folder) for p in precisions(runtime_name)]
    for r in range(rounds):
        for row in rows if r % 2 == 0 else rows[::-1]:
            row["ms"].append(netprobe_ms(row["step"]))
            if tool:
                row["tool_ratio"].append(row["ms"][-1] / tool_ms(runtime_name, row, 3))
    lines = []
    for row in rows:
        speedup = statistics.median(f / m for f, m in zip(rows[0]["ms"], row["ms"], strict=True))
        ran, drift = row["ran"], row["drift"]
        top1 = f"{drift.top1_agreement:.0%}" if drift.top1_agreement is not None else "-"
        tool_text = (f"  vs {'benchmark_app' if runtime_name == 'openvino' else 'bare loop'} "
                     f"{statistics.median(row['tool_ratio']):.3f} ({', '.join(f'{t:.2f}' for t in row['tool_ratio'])})"
                     if row["tool_ratio"] else "")
        lines.append(f"{name:18s} b{batch} {runtime_name:11s} {row['precision']:5s} ran {ran.precision_ran:10s} "
                     f"p50 {statistics.median(row['ms']):7.2f} ms  x{speedup:.2f} vs fp32  cos {drift.cosine_min:.4f} "
                     f"top-1 {top1:>4s}  low-prec {ran.quantized}/{len(ran.layers)}  quant {row['quantize_s']:.1f} s "
                     f"(export+quant {row['prepare_s']:.1f} s){tool_text}")
        print(lines[-1], "|", ran.summary(), flush=True)
        row["step"].release()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_b0,mobilenetv3_large,resnet50,efficientnetv2_s,yolov8n")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tool", action="store_true", help="also time each file with the runtime's own tool")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; OpenVINO {openvino.__version__}, CPU "
          f"capabilities {openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')}; {args.rounds} rounds "
          "interleaved; weights untrained (as initialised), calibration synthetic", flush=True)
    summary = []
    for name in args.models.split(","):
        for batch in map(int, args.batches.split(",")):
            for runtime in args.runtimes.split(","):
                with tempfile.TemporaryDirectory() as folder:
                    summary += measure(name, batch, runtime, args.rounds, args.tool, Path(folder))
    print("\n".join(["", "summary:", *summary]))


if __name__ == "__main__":
    main()
