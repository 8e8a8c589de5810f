"""How far `netprobe predict --device cpu` is from `bench` on this CPU, once calibrated on other models.

    python benchmarks/predict_cpu_accuracy.py [--batch 4] [--sizes 128,192] [--iters 5] [--write]

In one run: `predict --calibrate` on three models (resnet18, mobilenetv3_large, efficientnetv2_s:
dense, depthwise with SE, fused), stored in a temporary results database; then for six other models
at two sizes each, interleaved: the calibrated prediction (the public `netprobe.predict(...,
device="cpu")`), the uncalibrated one (the same counted step, default efficiencies, the same roofs)
and `bench` measured with the calibration's settings (train, fp32, same batch, warm-up and timed
steps). Prints per row predicted vs measured, the median |error| and the worst, with the machine's
load (1-minute load average) before and after: timings on a busy machine move. `--write` keeps the
figures in netprobe/prediction/accuracy-cpu.json, which every `--device` prediction prints beside it.
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
    cal = fit_here(targets, device, [args.batch], [args.calibration_imgsz], warmup=args.warmup, iters=args.iters,
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

    rows = []
    for spec in args.held_out.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            predicted = netprobe.predict(spec, device="cpu", batch=args.batch, imgsz=size, db=db)
            measured = benchmark(BenchConfig(spec, device="cpu", batch=args.batch, imgsz=size, warmup=args.warmup,
                                             iters=args.iters))
            row = {"model": spec, "imgsz": size, "batch": args.batch, "predicted_ms": predicted.step_ms,
                   "uncalibrated_ms": uncalibrated_ms(spec, args.batch, size, cal), "measured_ms": measured.step_ms}
            row["error"] = row["predicted_ms"] / row["measured_ms"] - 1
            row["uncalibrated_error"] = row["uncalibrated_ms"] / row["measured_ms"] - 1
            rows.append(row)
            print(f"  {spec:<20} {size:>4}  predicted {row['predicted_ms']:8.1f} ms  measured "
                  f"{row['measured_ms']:8.1f} ms  {row['error']:+6.0%}  "
                  f"(uncalibrated {row['uncalibrated_error']:+.0%})",
                  flush=True)
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
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--sizes", default="128,192", help="the held-out models' image sizes")
    parser.add_argument("--calibration-imgsz", type=int, default=160)
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
        print(f"held out: {args.held_out} at {args.sizes} px, batch {args.batch} (predict, then bench, per row)")
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
