"""Does netprobe time a deployed model as a bare loop would? Measured side by side in one run, as ratios.

For efficientnet_b0 and yolov8n at batch 1 and 8, the model is exported once with netprobe's own
exporter and loaded once per runtime; then, in interleaved rounds (order alternating), netprobe's
timing (`measure_steps` over the runtime step that `netprobe bench --runtime` uses: warm-up until steady,
p50 of the timed steps) and a bare loop over the runtime's own call on the same session and input
(ONNX Runtime: `InferenceSession.run`; OpenVINO: `compiled_model(x)`, the same compiled model) each
give a median latency.
The ratio netprobe / bare per round, and its median over rounds, is printed; the goal is within
+-5%. `onnxruntime_perf_test` is used too where it is on the PATH.

    python benchmarks/runtime_overhead.py [--rounds 7] [--models efficientnet_b0,yolov8n] [--batches 1,8]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from netprobe.runtimes import RuntimeStep, get_runtime
from netprobe.target import resolve
from netprobe.timing import measure_steps


def bare_ms(call, seconds: float, warmup: int = 3) -> float:
    """Median of back-to-back calls for about `seconds` (after `warmup` untimed ones)."""
    for _ in range(warmup):
        call()
    times, start = [], time.perf_counter()
    while not times or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def netprobe_ms(step, iters: int) -> float:
    return measure_steps(step, "cpu", warmup=3, iters=iters, max_warmup_s=10).step_ms


def compare(name: str, batch: int, runtime_name: str, rounds: int, folder: Path) -> list[float]:
    target = resolve(name)
    model = target.make("cpu").eval()
    x = torch.randn(batch, 3, *target.input_size(None))
    runtime = get_runtime(runtime_name)
    exported = runtime.export(model, x, folder, f"{name}-b{batch}-{runtime_name}")
    session = runtime.load(exported, "cpu", torch.get_num_threads())
    step = RuntimeStep(runtime, session, x)
    inputs = runtime.prepare_input(x)
    if runtime_name == "onnxruntime":
        def bare() -> None:
            session.run(None, {"input": inputs})
    else:  # the same compiled model (one thread pool), called as OpenVINO's examples call it
        def bare() -> None:
            session(inputs)
    one = bare_ms(bare, 0.5)
    iters = max(5, min(100, int(2000 / max(one, 1e-3))))  # about 2 s of timed steps
    ratios = []
    for r in range(rounds):
        order = [("netprobe", lambda: netprobe_ms(step, iters)), ("bare", lambda: bare_ms(bare, iters * one / 1e3))]
        got = dict((side, fn()) for side, fn in (order if r % 2 == 0 else order[::-1]))
        ratios.append(got["netprobe"] / got["bare"])
        print(f"  {name} b{batch} {runtime_name} round {r + 1}: netprobe {got['netprobe']:.2f} ms, "
              f"bare {got['bare']:.2f} ms, ratio {ratios[-1]:.3f}", flush=True)
    return ratios


def perf_test(onnx_file: Path) -> str:
    tool = shutil.which("onnxruntime_perf_test")
    return "onnxruntime_perf_test: not on the PATH (pip's onnxruntime does not ship it)" if tool is None else tool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--models", default="efficientnet_b0,yolov8n")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads for every runtime; "
          f"{perf_test(Path('model.onnx'))}")
    summary = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            for batch in map(int, args.batches.split(",")):
                for runtime in args.runtimes.split(","):
                    ratios = compare(name, batch, runtime, args.rounds, Path(folder))
                    median = statistics.median(ratios)
                    verdict = "met" if abs(median - 1) <= 0.05 else "MISSED"
                    summary.append(f"{name} b{batch} {runtime}: median ratio {median:.3f} (rounds {min(ratios):.3f}-"
                                   f"{max(ratios):.3f})   goal within +-5%: {verdict}")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
