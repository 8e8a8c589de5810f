"""How far `netprobe predict --device cpu` is from `bench` on this CPU, once calibrated on other models.

    python benchmarks/predict_cpu_accuracy.py [--batch 2] [--sizes 64,96] [--rounds 3] [--iters 5] [--write]

In one run: `predict --calibrate` on three models (resnet18, mobilenetv3_large, efficientnetv2_s:
dense, depthwise with SE, fused) at the held-out sizes, every configuration benched in `--rounds`
interleaved rounds, stored in a temporary results database; then six other models at two sizes each,
benched with the calibration's settings (train, fp32, same batch, warm-up and timed steps) in `--rounds`
interleaved rounds (order alternating), the median kept; then the calibrated prediction (the public
`netprobe.predict(..., device="cpu")`) and the uncalibrated one (the same counted step, default
efficiencies, the same roofs). Prints per row predicted vs measured (with each round's figure), the
median |error| and the worst, with the machine's load (1-minute load average) before and after: this
shared VM's speed drifts by 15-20% from minute to minute even when nothing else runs, which is why the
rounds. `--write` keeps the figures in netprobe/prediction/accuracy-cpu.json, which every `--device`
prediction prints beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

CALIBRATION = ("resnet18", "mobilenetv3_large", "efficientnetv2_s")
HELD_OUT = ("efficientnet_b0", "efficientnet_b2", "mobilenetv3_small", "resnet34", "resnet50", "efficientnetv2_m")
OUT = Path(__file__).resolve().parents[1] / "netprobe" / "prediction" / "accuracy-cpu.json"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def calibrate(args, db: str):
    from netprobe.prediction.calibration import calibrate as fit_here
    from netprobe.prediction.calibration import check_calibration, store_calibration

    targets, device, path = check_calibration(list(args.calibrate_on.split(",")), "cpu", db)
    t0 = time.perf_counter()
    sizes = [int(s) for s in (args.calibration_imgsz or args.sizes).split(",")]
    cal = fit_here(targets, device, [args.batch], sizes, warmup=args.warmup, iters=args.iters, rounds=args.rounds,
                   on_config=lambda label, i, n: print(f"  calibrating {i + 1}/{n}: {label}", flush=True))
    store_calibration(path, cal)
    print(f"calibrated in {time.perf_counter() - t0:.0f} s: {cal.note}")
    for r in cal.residuals:
        print(f"  {r['model']:<20} b{r['batch']} {r['imgsz']:>4}  measured {r['measured_ms']:8.1f} ms  "
              f"fitted {r['fitted_ms']:8.1f} ms  {r['error']:+.0%}")
    return cal


def uncalibrated_ms(spec: str, batch: int, size: int, cal) -> float:
    """The same step with the default efficiencies against the calibration's roofs: what calibrating changed."""
    from netprobe.prediction.calibration import local_device
    from netprobe.prediction.counted import counted_work
    from netprobe.prediction.fit import DEFAULT_START
    from netprobe.prediction.model import time_work
    from netprobe.target import resolve

    target = resolve(spec)
    work = counted_work(target.meta_model(), batch, (size, size), "train", "off")
    here = local_device("cpu", "off", cal.peak_tflops, cal.bandwidth_gbs)
    return sum(t.seconds for t in time_work(work, here, DEFAULT_START, "off")) * 1e3


def held_out_rows(args, db: str, cal) -> list[dict]:
    import netprobe
    from netprobe.bench import BenchConfig, benchmark

    configs = [(spec, size) for spec in args.held_out.split(",") for size in (int(s) for s in args.sizes.split(","))]
    steps: dict[tuple, list[float]] = {c: [] for c in configs}
    for i in range(args.rounds):  # every row once per round: a drift of the machine's speed touches them all alike
        for spec, size in configs if i % 2 == 0 else configs[::-1]:
            measured = benchmark(BenchConfig(spec, device="cpu", batch=args.batch, imgsz=size, warmup=args.warmup,
                                             iters=args.iters))
            steps[(spec, size)].append(measured.step_ms)
        print(f"  round {i + 1}/{args.rounds} measured ({load()})", flush=True)
    rows = []
    for spec, size in configs:
        predicted = netprobe.predict(spec, device="cpu", batch=args.batch, imgsz=size, db=db)
        row = {"model": spec, "imgsz": size, "batch": args.batch, "predicted_ms": predicted.step_ms,
               "uncalibrated_ms": uncalibrated_ms(spec, args.batch, size, cal),
               "measured_ms": statistics.median(steps[(spec, size)]), "rounds_ms": steps[(spec, size)]}
        row["error"] = row["predicted_ms"] / row["measured_ms"] - 1
        row["uncalibrated_error"] = row["uncalibrated_ms"] / row["measured_ms"] - 1
        rows.append(row)
        print(f"  {spec:<20} {size:>4}  predicted {row['predicted_ms']:8.1f} ms  measured "
              f"{row['measured_ms']:8.1f} ms (median of {', '.join(f'{t:.0f}' for t in steps[(spec, size)])})  "
              f"{row['error']:+6.0%}  (uncalibrated {row['uncalibrated_error']:+.0%})", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| Model | Size | Batch | Predicted ms | Measured ms | Error | Uncalibrated ms | Error |",
             "|---|--:|--:|--:|--:|--:|--:|--:|"]
    lines += [f"| {r['model']} | {r['imgsz']} | {r['batch']} | {r['predicted_ms']:.1f} | {r['measured_ms']:.1f} | "
              f"{r['error']:+.1%} | {r['uncalibrated_ms']:.1f} | {r['uncalibrated_error']:+.1%} |" for r in rows]
    return "\n".join(lines)


def summary(rows: list[dict], key: str) -> tuple[float, dict]:
    worst = max(rows, key=lambda r: abs(r[key]))
    return statistics.median(abs(r[key]) for r in rows), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--sizes", default="64,96", help="the held-out models' image sizes")
    parser.add_argument("--calibration-imgsz", help="the calibration's image sizes, comma list (default: --sizes)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every bench; the median is kept")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--calibrate-on", default=",".join(CALIBRATION))
    parser.add_argument("--held-out", default=",".join(HELD_OUT))
    parser.add_argument("--write", action="store_true", help=f"keep the figures in {OUT.name}")
    parser.add_argument("--json", help="also write the calibration (with its residuals) and every row to this file")
    args = parser.parse_args()
    import torch

    from netprobe.timing.system import cpu_name

    started = time.time()
    print(f"machine: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads; before: {load()}")
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "calibration.sqlite")
        cal = calibrate(args, db)
        print(f"held out: {args.held_out} at {args.sizes} px, batch {args.batch}: bench in {args.rounds} interleaved "
              "rounds (median), then predict")
        rows = held_out_rows(args, db, cal)
    after = load()
    median, worst = summary(rows, "error")
    u_median, u_worst = summary(rows, "uncalibrated_error")
    print()
    print(table(rows))
    print()
    print(f"calibrated: median |error| {median:.1%} (goal <= 15%), worst {worst['error']:+.1%} "
          f"({worst['model']} {worst['imgsz']}); uncalibrated: median {u_median:.1%}, worst "
          f"{u_worst['uncalibrated_error']:+.1%}; {len(rows)} rows")
    print(f"after: {after}; {time.time() - started:.0f} s in all")
    if args.json:
        Path(args.json).write_text(json.dumps({"calibration": cal.to_dict(), "rows": rows, "after": after}, indent=1))
    if args.write:
        OUT.write_text(json.dumps({"median_abs_pct": median * 100, "worst_abs_pct": abs(worst["error"]) * 100,
                                   "rows": len(rows), "machine": f"{cpu_name()}, {os.cpu_count()} CPUs",
                                   "date": time.strftime("%Y-%m-%d", time.gmtime()), "calibrated_on": cal.models,
                                   "split": f"calibrated on {', '.join(cal.models)}; predicted {args.held_out}"},
                                  indent=1) + "\n")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
