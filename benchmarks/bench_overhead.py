"""Does netprobe's measurement agree with a hand-written loop? Measured side by side, in separate processes.

For train and for infer, each round starts two fresh processes, in alternating order: `netprobe bench`
(its defaults: warm-up until steady, then timed steps) and a minimal loop anyone would write over the
same model and settings (efficientnet_b0, batch 8, 128 px, CPU; SGD for train, inference_mode for
infer). Prints the ratio of median throughputs per mode: goal within 3% (0.97x to 1.03x). On a
virtual machine a fresh process can run 20% faster or slower than the last one whatever it runs,
so the script also prints a bootstrap 90% interval of the ratio and the spread of single runs:
many rounds are needed before the ratio means anything.

    python benchmarks/bench_overhead.py [--rounds 15] [--spec efficientnet_b0] [--batch 8] [--imgsz 128]
    python benchmarks/bench_overhead.py --bare train|infer ...     (one hand-written run; used by the above)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time

BARE_WARMUP_S = 3.0  # the hand-written loop warms up generously: it has no steadiness check
BARE_ITERS = 20


def bare(mode: str, spec: str, batch: int, imgsz: int) -> float:
    """The loop anyone would write: warm up, then the median of timed steps, as imgs/s."""
    import torch
    import torch.nn.functional as F

    import netprobe

    model = netprobe.build(spec)
    x = torch.randn(batch, 3, imgsz, imgsz)
    y = torch.randint(0, 1000, (batch,))
    if mode == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            F.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step() -> None:
            with torch.inference_mode():
                model(x)

    start = time.perf_counter()
    while time.perf_counter() - start < BARE_WARMUP_S:
        step()
    times = []
    for _ in range(BARE_ITERS):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def netprobe_run(mode: str, spec: str, batch: int, imgsz: int) -> float:
    cmd = [sys.executable, "-m", "netprobe", "bench", spec, "--device", "cpu", "--batch", str(batch), "--imgsz",
           str(imgsz), "--mode", mode, "--format", "json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["results"][0]["imgs_per_s"]


def bare_run(mode: str, spec: str, batch: int, imgsz: int) -> float:
    cmd = [sys.executable, __file__, "--bare", mode, "--spec", spec, "--batch", str(batch), "--imgsz", str(imgsz)]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def ratio_interval(ours: list[float], theirs: list[float], draws: int = 2000) -> tuple[float, float]:
    """A bootstrap 90% interval of median(ours) / median(theirs), resampling the runs of each side."""
    rng = random.Random(0)
    ratios = sorted(statistics.median(rng.choices(ours, k=len(ours))) /
                    statistics.median(rng.choices(theirs, k=len(theirs))) for _ in range(draws))
    return ratios[int(0.05 * draws)], ratios[int(0.95 * draws) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="efficientnet_b0")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--bare", choices=["train", "infer"])
    args = parser.parse_args()
    if args.bare:
        print(bare(args.bare, args.spec, args.batch, args.imgsz))
        return
    for mode in ("train", "infer"):
        ours, theirs = [], []
        for r in range(args.rounds):
            pair = [(ours, netprobe_run), (theirs, bare_run)]
            for sink, fn in (pair if r % 2 == 0 else pair[::-1]):  # alternate who goes first
                sink.append(fn(mode, args.spec, args.batch, args.imgsz))
            print(f"{mode} round {r + 1}: netprobe {ours[-1]:.2f} imgs/s   hand-written {theirs[-1]:.2f} imgs/s",
                  flush=True)
        ratio = statistics.median(ours) / statistics.median(theirs)
        low, high = ratio_interval(ours, theirs)
        verdict = "met" if 0.97 <= ratio <= 1.03 else "MISSED"
        spread = max(max(ours) / min(ours), max(theirs) / min(theirs))
        print(f"{mode}: median netprobe {statistics.median(ours):.2f} imgs/s, hand-written "
              f"{statistics.median(theirs):.2f} imgs/s, ratio {ratio:.3f}x, 90% interval {low:.3f}-{high:.3f}x   "
              f"(goal 0.97x-1.03x: {verdict}); single runs of one side differ by up to {spread:.2f}x")
    print(f"{args.spec} batch {args.batch} {args.imgsz}px CPU, {args.rounds} rounds per mode, every run a fresh "
          "process, order alternating")


if __name__ == "__main__":
    main()
