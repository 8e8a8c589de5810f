"""What keeping a run in the results database adds to it (goal: under 20 ms).

1. In process, the two steps a recorded command adds, each repeated: the check before the work
   (open the file, upgrade if needed, take and release the write lock) and the record after it
   (the machine's facts, the canonical specs, one transaction with every row). Envelopes: a
   one-row bench, and a real four-variant compare fused-stages with its breakdown (70 KB of JSON),
   written into a database that already holds 10,000 rows. Medians and p90 in ms.
2. Whole commands, as a user runs them, interleaved: `netprobe summary ... --save` against the
   same without (no timing loop, so the difference is mostly the record), and a tiny
   `netprobe bench` against `--no-save`. Medians, their difference and ratio; on a noisy machine the
   spread of single runs is shown beside, since it can exceed what recording adds.

    python benchmarks/record_overhead.py [--rounds 7] [--part 1|2|both]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUSED = json.loads((ROOT / "tests" / "data" / "compare-fused-stages-cpu.json").read_text())
NETPROBE = [sys.executable, "-m", "netprobe"]


def bench_envelope() -> dict:
    row = {"spec": "efficientnet_b0", "device": "cpu", "dtype": "fp32", "batch": 8, "imgsz": 128, "mode": "train",
           "status": "ok", "imgs_per_s": 21.4, "step_ms": 373.8, "step_p10_ms": 365.0, "step_p90_ms": 390.2,
           "macs_per_img": 127_000_000, "params": 5_288_548, "tflops": 0.031, "peak_tflops": 0.19, "iters": 10}
    return {"device": {"device": "cpu", "torch": "2.13.0+cpu", "threads": 2, "name": "AMD EPYC",
                       "peak_tflops_measured": {"fp32": 0.19}}, "results": [row], "note": None}


def in_process(rounds: int) -> None:
    from history_speed import fill  # the 10,000-row database of benchmarks/history_speed.py

    from netprobe.cli.saving import canonical_spec
    from netprobe.history.record import record, run_document
    from netprobe.history.store import check_writable, connect

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.sqlite"
        fill(path, 10_000)
        canonical_spec("efficientnet_b0")  # netprobe.spec imported once, as in a command that has counted
        checks, records = [], {"bench, 1 row": [], "compare fused-stages, 4 rows with breakdown": []}
        for _ in range(rounds * 5):
            t0 = time.perf_counter()
            conn = connect(path)
            check_writable(conn, path)
            conn.close()
            checks.append(time.perf_counter() - t0)
            for name, envelope in zip(records, (bench_envelope(), FUSED), strict=True):
                t0 = time.perf_counter()
                record(path, run_document(envelope, ["netprobe", "bench"], canonical=canonical_spec,
                                          started=time.time()))
                records[name].append(time.perf_counter() - t0)
    print(line("check before the run", checks))
    for name, times in records.items():
        print(line(f"record: {name}", times))
    worst = statistics.median(checks) + max(statistics.median(t) for t in records.values())
    print(f"check + record, the heavier envelope: {worst * 1e3:.1f} ms (goal < 20 ms: "
          f"{'met' if worst < 0.020 else 'MISSED'})")


def line(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1e3 for s in seconds)
    return (f"{name:48}: median {statistics.median(ms):6.2f} ms   p90 {ms[int(0.9 * (len(ms) - 1))]:6.2f} ms   "
            f"({len(ms)} times)")


def wall_s(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def whole_commands(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "NETPROBE_DB": str(Path(folder) / "results.sqlite"), "NETPROBE_CACHE_DIR": folder}
        pairs = {"summary": (["summary", "mobilenetv3_small", "--imgsz", "64", "--save"],
                             ["summary", "mobilenetv3_small", "--imgsz", "64"]),
                 "bench": (["bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz",
                            "32", "--warmup", "0", "--iters", "1"],
                           ["bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz",
                            "32", "--warmup", "0", "--iters", "1", "--no-save"])}
        for name, (saved, unsaved) in pairs.items():
            wall_s([*NETPROBE, *saved], env)  # the file cache warm, the database made
            times: dict[str, list[float]] = {"recorded": [], "--no-save" if name == "bench" else "not saved": []}
            for _ in range(rounds):
                for label, args in zip(times, (saved, unsaved), strict=True):
                    times[label].append(wall_s([*NETPROBE, *args], env))
            (a, at), (b, bt) = times.items()
            ma, mb = statistics.median(at), statistics.median(bt)
            print(f"netprobe {name} ({rounds} rounds, alternating): {a} median {ma:.3f} s "
                  f"(min {min(at):.3f}, max {max(at):.3f}), {b} median {mb:.3f} s (min {min(bt):.3f}, "
                  f"max {max(bt):.3f}); difference {1e3 * (ma - mb):+.0f} ms, ratio {ma / mb:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--part", choices=("1", "2", "both"), default="both", help="in process (1), whole commands (2)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    print(f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
    if args.part in ("1", "both"):
        in_process(args.rounds)
    if args.part in ("2", "both"):
        whole_commands(args.rounds)


if __name__ == "__main__":
    main()
