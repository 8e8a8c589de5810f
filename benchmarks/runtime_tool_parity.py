"""Does netprobe time a deployed model as the runtime's own tool does? The same file, the same precision,
interleaved rounds, median ratio netprobe / tool (goal: within 5% at fp32, bf16 and INT8; issue 27).

efficientnet_b0 at 224 px, batch 1. Each runtime x precision is first run through `netprobe bench` (the
API: export, convert or quantize with the default calibration, check, time) with its export kept
(`keep_exports`): that is the file both sides then time, and the bench's own p50 is printed too. Then, in
rounds (order of the two sides and of the rows alternating):

- netprobe: the kept file loaded by netprobe's runtime (`Runtime.load`: its session options, threads and
  precision hint) and timed by netprobe's steady-state loop (`measure_steps` over `RuntimeStep`, what bench
  runs after deploying): warm-up until steady, then `--iters` timed steps, p50;
- the tool: OpenVINO's `benchmark_app -m FILE.xml -d CPU -hint latency -load_config C -infer_precision
  f32|bf16 -niter N` (C: a file setting INFERENCE_NUM_THREADS to T, since benchmark_app refuses -nthreads
  beside a hint; N: netprobe's warm-up steps of that round + `--iters`; its own one warm-up run apart), its
  reported median over the N; ONNX Runtime (no tool ships with the pip package): a bare
  `onnxruntime.InferenceSession(FILE)` loop whose options are written out here (T intra-op threads, 1
  inter-op, every graph optimisation, the CPU provider), as many warm-up runs as netprobe took, then
  `--iters` timed `session.run` calls, median.

Same on both sides: the file, T (netprobe's thread count, which the bench row reports), batch and shape,
the latency hint (OpenVINO), one input array per row (ONNX Runtime; benchmark_app fills its own random
input: values do not change a CNN's latency). What differs is said in the output.

    python benchmarks/runtime_tool_parity.py [--rounds 14] [--iters 200] [--runtimes onnxruntime,openvino]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import netprobe.bench
from netprobe.runtimes import REGISTRY, RuntimeStep, get_runtime
from netprobe.runtimes.base import Exported
from netprobe.timing import measure_steps

MODEL, SIZE, BATCH = "efficientnet_b0", 224, 1
OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: what NNCF left in float runs in f32


def precisions(runtime: str) -> list[str]:
    found = [p for p in REGISTRY[runtime].precisions["cpu"] if p in ("fp32", "bf16", "int8")]
    return [p for p in found if not get_runtime(runtime).precision_missing(p, "cpu")]


def bench_row(runtime: str, precision: str, iters: int, folder: Path) -> dict:
    """netprobe bench on the row (its export kept): the file to time, its threads, and the bench's p50."""
    keep = folder / f"{runtime}-{precision}"
    keep.mkdir()
    t0 = time.perf_counter()
    result = netprobe.bench.run([netprobe.bench.BenchConfig(MODEL, device="cpu", batch=BATCH, imgsz=SIZE,
                                                            mode="infer", iters=iters, runtime=runtime,
                                                            precision=precision, keep_exports=str(keep))]).results[0]
    if result.status not in ("ok", "drift"):
        raise SystemExit(f"{runtime} {precision}: bench says {result.status}: {result.error}")
    kept = [Path(f) for f in result.export_files if not f.endswith(".optimized.onnx")]
    files = sorted(kept, key=lambda f: f.suffix not in (".onnx", ".xml"))  # the one to load first, as netprobe does
    print(f"{runtime} {precision}: bench p50 {result.step_ms:.2f} ms, {result.threads} threads, ran "
          f"{result.precision_ran}, quantize {result.quantize_s or 0:.1f} s, bench run "
          f"{time.perf_counter() - t0:.0f} s, file {files[0].name}", flush=True)
    x = np.random.default_rng(0).standard_normal((BATCH, 3, SIZE, SIZE), dtype=np.float32)
    return {"runtime": runtime, "precision": precision, "files": files, "threads": result.threads,
            "bench_ms": result.step_ms, "x": x, "netprobe": [], "tool": [], "tool_threads": set()}


def netprobe_ms(row: dict, iters: int) -> tuple[float, int]:
    """netprobe's load and steady-state loop on the kept file: (p50 ms, warm-up steps it took)."""
    runtime = get_runtime(row["runtime"])
    exported = Exported(row["files"], 0.0, "kept", precision=row["precision"])
    session = runtime.load(exported, "cpu", row["threads"])
    if row["runtime"] == "onnxruntime":  # the optimised graph netprobe's load writes to read what ran
        row["files"][0].with_name(row["files"][0].stem + ".optimized.onnx").unlink(missing_ok=True)
    times = measure_steps(RuntimeStep(runtime, session, torch.from_numpy(row["x"])), "cpu",
                          warmup=netprobe.bench.BenchConfig(MODEL).warmup, iters=iters)
    return times.step_ms, times.warmup_steps


def onnxruntime_loop_ms(row: dict, warmup: int, iters: int) -> float:
    """A bare InferenceSession loop on the file: options written out, not netprobe's."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = row["threads"]
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(row["files"][0]), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: row["x"]}
    for _ in range(max(1, warmup)):
        session.run(None, feed)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    row["tool_threads"].add(row["threads"])
    return statistics.median(times)


def benchmark_app_ms(row: dict, warmup: int, iters: int) -> float:
    """benchmark_app's median latency on the file, with the latency hint and netprobe's threads."""
    # benchmark_app refuses -nthreads beside a hint (its UI rule); a config file sets the threads as netprobe does
    config = row["files"][0].with_name("benchmark_app-config.json")
    config.write_text(json.dumps({"CPU": {"INFERENCE_NUM_THREADS": str(row["threads"])}}))
    command = [shutil.which("benchmark_app") or "benchmark_app", "-m", str(row["files"][0]), "-d", "CPU", "-hint",
               "latency", "-load_config", str(config), "-infer_precision", OV_PRECISION[row["precision"]],
               "-niter", str(warmup + iters)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"benchmark_app failed ({' '.join(command)}):\n{(done.stdout + done.stderr)[-3000:]}")
    out = done.stdout
    threads = re.search(r"INFERENCE_NUM_THREADS:\s*(\d+)", out)
    row["tool_threads"].add(int(threads.group(1)) if threads else "?")
    return float(re.search(r"Median:\s+([\d.]+) ms", out).group(1))


def one_round(rows: list[dict], r: int, iters: int) -> None:
    for row in rows if r % 2 == 0 else rows[::-1]:
        tool = onnxruntime_loop_ms if row["runtime"] == "onnxruntime" else benchmark_app_ms
        if r % 2 == 0:
            ours, warmup = netprobe_ms(row, iters)
            theirs = tool(row, warmup, iters)
        else:  # the tool first this round: warm-up as many runs as netprobe took in the round before
            theirs = tool(row, row["warmup"], iters)
            ours, warmup = netprobe_ms(row, iters)
        row["warmup"] = warmup
        row["netprobe"].append(ours)
        row["tool"].append(theirs)
        print(f"  round {r + 1} {row['runtime']:11s} {row['precision']:4s} netprobe {ours:8.2f} ms  tool "
              f"{theirs:8.2f} ms  ratio {ours / theirs:.3f}  (netprobe warm-up {warmup} steps)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=14,
                        help="interleaved rounds; a median of 7 moves about 6%% on a shared 2-core VM")
    parser.add_argument("--iters", type=int, default=200, help="timed runs per side per round (20 is too few on a "
                        "shared VM: each side's median then sees a fraction of a second of its swings)")
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    args = parser.parse_args()
    import onnxruntime
    import openvino

    print(f"{MODEL} {SIZE} px batch {BATCH}; torch {torch.__version__}, {torch.get_num_threads()} threads; ONNX "
          f"Runtime {onnxruntime.__version__}; OpenVINO {openvino.__version__}; load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs; {args.rounds} rounds "
          f"interleaved, {args.iters} timed runs per side", flush=True)
    with tempfile.TemporaryDirectory(prefix="netprobe-tool-parity-") as temp:
        rows = [bench_row(rt, p, args.iters, Path(temp)) for rt in args.runtimes.split(",") for p in precisions(rt)]
        for row in rows:
            row["warmup"] = 0
        for r in range(args.rounds):
            one_round(rows, r, args.iters)
    print("\nsummary (ratio = netprobe p50 / tool median, per round; goal within 5%):")
    for row in rows:
        ratios = [a / b for a, b in zip(row["netprobe"], row["tool"], strict=True)]
        tool = "benchmark_app" if row["runtime"] == "openvino" else "bare InferenceSession loop"
        print(f"{row['runtime']:11s} {row['precision']:4s} median ratio {statistics.median(ratios):.3f} "
              f"({', '.join(f'{v:.2f}' for v in ratios)}); netprobe {statistics.median(row['netprobe']):.2f} ms, "
              f"{tool} {statistics.median(row['tool']):.2f} ms, bench run {row['bench_ms']:.2f} ms; threads "
              f"netprobe {row['threads']}, tool {'/'.join(map(str, sorted(row['tool_threads'], key=str)))}")
    print(f"load average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
