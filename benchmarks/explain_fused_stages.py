"""Why the fused-stages variants train at the speed they do, from the Python API (until the CLI has
`compare fused-stages --breakdown --plot`): per variant, the depthwise convs' share of train-step time
beside their share of MACs and bytes, and which stages are memory-bound; a roofline PNG.

    python benchmarks/explain_fused_stages.py [--base efficientnet_b4] [--batch 8] [--imgsz 128]
                                              [--rounds 2] [--plot roofline.png]

Each round measures every variant once (interleaved, as compare does); the breakdown shown is the
last round's, its profiled op time beside that round's unprofiled step.
"""

from __future__ import annotations

import argparse

from netprobe.bench import BenchConfig, benchmark, device_info
from netprobe.compare import FUSED_VARIANTS
from netprobe.roofline import Roofline, StageRoof, plot_roofline


def depthwise_line(result) -> str:
    rows = {r["kind"]: r for r in result.breakdown if r["stage"] is None}
    dw = rows.get("depthwise_conv")
    if dw is None:
        return "depthwise convs: none"
    return (f"depthwise convs: {dw['time_share']:.1%} of step time, {dw['macs_share']:.1%} of MACs, "
            f"{dw['bytes_share']:.1%} of bytes, {dw['gflops']:.1f} GFLOP/s")


def top_kinds(result, n: int = 5) -> str:
    rows = sorted((r for r in result.breakdown if r["stage"] is None), key=lambda r: -r["time_share"])[:n]
    return ", ".join(f"{r['kind']} {r['time_share']:.0%} (MACs {r['macs_share']:.0%})" for r in rows)


def stages_line(roof: dict) -> str:
    return "  ".join(f"{s['name']}:{s['bound'][0].upper()}{'' if s['family'] == 'other' else s['family'][0]}"
                     f" {s['measured_ms']:.0f}/{s['predicted_ms']:.0f}ms" for s in roof["stages"])


def as_roofline(data: dict) -> Roofline:
    stages = [StageRoof(**{k: v for k, v in s.items() if k != "achieved_gflops"}) for s in data["stages"]]
    return Roofline(data["peak_tflops"], data["bandwidth_gbs"], data["dtype"], stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="efficientnet_b4")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--plot", default="")
    args = parser.parse_args()
    variants = [(label, f"{args.base}:fused={fused}") for label, fused in FUSED_VARIANTS]
    results = {}
    for r in range(args.rounds):
        for label, spec in variants:
            config = BenchConfig(spec, "cpu", args.batch, args.imgsz, warmup=1, iters=2,
                                 breakdown=r == args.rounds - 1)
            results.setdefault(label, []).append(benchmark(config))
    info = device_info("cpu")
    print(f"{info['name']}, torch {info['torch']}, {info['threads']} threads; batch {args.batch}, {args.imgsz} px, "
          f"fp32, {args.rounds} rounds x 2 iters, breakdown from 3 profiled steps of the last round")
    panels = []
    for label, spec in variants:
        runs = results[label]
        last = runs[-1]
        if last.status != "ok":
            print(f"{label}: {last.status} {last.error}")
            continue
        roof = last.roofline
        print(f"\n{label} ({spec}): step {', '.join(f'{x.step_ms:.0f}' for x in runs)} ms, "
              f"{last.tflops:.3f} TFLOP/s = {last.peak_fraction:.1%} of the {last.peak_tflops:.3f} matmul peak; "
              f"copy {roof['bandwidth_gbs']:.1f} GB/s, ridge {roof['ridge']:.1f} FLOPs/B")
        print(f"  {depthwise_line(last)}")
        print(f"  most time: {top_kinds(last)}")
        memory = [s["name"] for s in roof["stages"] if s["bound"] == "memory"]
        print(f"  memory-bound stages: {', '.join(memory) or 'none'}")
        print(f"  per stage (M/C bound, family, measured/predicted): {stages_line(roof)}")
        if last.breakdown_note:
            print(f"  note: {last.breakdown_note}")
        panels.append((label, as_roofline(roof)))
    if args.plot and panels:
        plot_roofline(panels, args.plot, f"{args.base} fused stages, train step on CPU, batch {args.batch}, "
                                         f"{args.imgsz} px, fp32")
        print(f"\nroofline: {args.plot}")


if __name__ == "__main__":
    main()
