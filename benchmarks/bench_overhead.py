"""Does netprobe's measurement slow the model down? Measured side by side in one run.

Interleaves netprobe's train measurement of efficientnet_b0 (batch 8, 128 px, CPU, SGD) with
a minimal hand-written training loop over the same model and settings, round by round, and
prints the ratio of median throughputs: goal >= 0.95x.

    python benchmarks/bench_overhead.py [--rounds 5] [--iters 10] [--spec efficientnet_b0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import netprobe
from netprobe.bench import BenchConfig, benchmark


def hand_written(spec: str, batch: int, imgsz: int, warmup: int, iters: int) -> float:
    """The loop anyone would write: imgs/s over `iters` steps after `warmup`, median step."""
    model = netprobe.build(spec).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, imgsz, imgsz)
    y = torch.randint(0, 1000, (batch,))
    steps = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            steps.append(time.perf_counter() - t0)
    return batch / statistics.median(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="efficientnet_b0")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    ours, theirs = [], []
    for r in range(args.rounds):
        res = benchmark(BenchConfig(args.spec, "cpu", args.batch, args.imgsz, warmup=args.warmup, iters=args.iters))
        ours.append(res.imgs_per_s)
        theirs.append(hand_written(args.spec, args.batch, args.imgsz, args.warmup, args.iters))
        print(f"round {r + 1}: netprobe {ours[-1]:.2f} imgs/s   hand-written {theirs[-1]:.2f} imgs/s")
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"{args.spec} batch {args.batch} {args.imgsz}px CPU ({torch.get_num_threads()} threads), "
          f"{args.rounds} interleaved rounds x {args.iters} iters")
    print(f"median: netprobe {statistics.median(ours):.2f} imgs/s, hand-written {statistics.median(theirs):.2f} imgs/s")
    print(f"ratio netprobe / hand-written: {ratio:.3f}x   (goal >= 0.95x: {'met' if ratio >= 0.95 else 'MISSED'})")


if __name__ == "__main__":
    main()
