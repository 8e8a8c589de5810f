"""Data-parallel scaling of a few backbones on this machine, printed as markdown (docs/results/distributed-*.md).

    python benchmarks/dist_scaling.py efficientnet_b0 efficientnet_b4:fused=1-7 --nproc 2 --batch 4 --imgsz 96

Until the CLI has `bench --nproc`, this is the way to run `netprobe.distributed.run_scaling` and
see its rows; every figure is measured by it, nothing is typed in.
"""

from __future__ import annotations

import argparse
import datetime
import os

import torch

from netprobe.bench import BenchConfig, device_info
from netprobe.distributed import DistResult, run_scaling

COLUMNS = (
    ("Ranks", lambda r: f"{r.world_size}" + ("" if r.ddp else " (no DDP)")),
    ("Batch/rank", lambda r: f"{r.batch_per_rank}"),
    ("Global batch", lambda r: f"{r.global_batch}"),
    ("Status", lambda r: r.status if r.status == "ok" else f"{r.status}: {r.error}"),
    ("imgs/s (global)", lambda r: _num(r.imgs_per_s, 2)),
    ("Step ms p50", lambda r: _num(r.step_ms, 0)),
    ("Step ms p90", lambda r: _num(r.step_p90_ms, 0)),
    ("Efficiency", lambda r: "" if r.scaling_efficiency is None else f"{r.scaling_efficiency:.0%}"),
    ("Grad MB", lambda r: _num(r.grad_mb, 1)),
    ("Buckets", lambda r: "" if r.buckets is None else f"{r.buckets}"),
    ("All-reduce ms (hook)", lambda r: _num(r.allreduce_ms, 0)),
    ("incl. wait", lambda r: _num(r.allreduce_max_ms, 0)),
    ("of step", lambda r: "" if r.allreduce_share is None else f"{r.allreduce_share:.0%}"),
    ("Bus GB/s", lambda r: _num(r.bus_gb_s, 2)),
    ("no_sync step ms", lambda r: _num(r.no_sync_step_ms, 0)),
    ("Exposed comm ms", lambda r: _num(r.comm_exposed_ms, 0)),
    ("Peak MB/rank", lambda r: _num(r.peak_mem_mb, 0)),
    ("Grads in sync", lambda r: {None: "", True: "yes", False: "NO"}[r.grads_in_sync]),
)


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def table(rows: list[DistResult]) -> str:
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |",
             "|---|" + "---:|" * (len(COLUMNS) - 2) + "---|"]
    lines += ["| " + " | ".join(cell(r) for _, cell in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--imgsz", type=int, default=96)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--bucket-mb", type=float, default=25)
    args = parser.parse_args()
    info = device_info(args.device if args.device != "auto" else "cpu")
    print(f"{datetime.date.today()}, {info['name']}, torch {torch.__version__}, {args.nproc} ranks "
          f"(gloo on CPU: cores split between ranks, each pinned), batch {args.batch} per rank, {args.imgsz} px, "
          f"{args.warmup} warm-up + {args.iters} timed steps, bucket {args.bucket_mb:g} MB")
    for spec in args.specs:
        config = BenchConfig(spec, device=args.device, batch=args.batch, imgsz=args.imgsz, warmup=args.warmup,
                             iters=args.iters)
        load_before = os.getloadavg()[0]
        rows = run_scaling(config, args.nproc, bucket_mb=args.bucket_mb)
        print(f"\n### `{rows[0].spec}`: {rows[0].params / 1e6:.2f}M params\n")
        print(table(rows))
        # other users' processes on the same cores show up here, and in the rows
        print(f"\nLoad average (1 min) before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
