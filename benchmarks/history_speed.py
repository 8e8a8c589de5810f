"""`netprobe history` and `netprobe report` over a database of 10,000 rows (goal: under 1 s each).

The database is filled the way months of use would: bench runs of the zoo's archs at several
batches, sizes and modes (one to eight rows each), compare fused-stages runs with their breakdown
and roofline (a real envelope, tests/data, with its figures scaled per machine), and summaries, on
four machines over 120 days. Each command then runs as a user runs it (a fresh process), the
commands interleaved; medians, min and max of the wall time, and the median CPU time (user +
system), which moves less when others load the machine. `netprobe --version` is the floor of any
command; each median is also given as a multiple of it.

    python benchmarks/history_speed.py [--rows 10000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FUSED = json.loads((ROOT / "tests" / "data" / "compare-fused-stages-cpu.json").read_text())
NETPROBE = [sys.executable, "-m", "netprobe"]
ARCHS = ("efficientnet_b0", "efficientnet_b4", "efficientnetv2_s", "efficientnetv2_m", "mobilenetv3_large",
         "mobilenetv3_small", "resnet18", "resnet50", "yolov8n-pose", "efficientnet_b4:fused=1-3")
MACHINES = [
    {"cpu": "AMD EPYC", "cpus": 2, "memory_mb": 24_105, "arch": "x86_64", "board": "", "gpus": [], "device": "cpu",
     "name": "AMD EPYC", "speed": 1.0},
    {"cpu": "Intel(R) Core(TM) i7-1185G7", "cpus": 8, "memory_mb": 15_800, "arch": "x86_64", "board": "",
     "gpus": [], "device": "cpu", "name": "Intel(R) Core(TM) i7-1185G7", "speed": 2.5},
    {"cpu": "AMD EPYC 9654", "cpus": 192, "memory_mb": 1_548_000, "arch": "x86_64", "board": "",
     "gpus": ["NVIDIA H100 80GB HBM3"], "device": "cuda", "name": "NVIDIA H100 80GB HBM3", "speed": 400.0},
    {"cpu": "ARMv8 Processor rev 1 (v8l)", "cpus": 12, "memory_mb": 62_800, "arch": "aarch64",
     "board": "NVIDIA Jetson AGX Orin Developer Kit", "gpus": [], "device": "cuda", "name": "Orin", "speed": 40.0},
]


def _device(m: dict) -> dict:
    return {"device": m["device"], "torch": "2.13.0+cpu", "threads": min(m["cpus"], 16), "name": m["name"],
            "peak_tflops_measured": {"fp32": 0.2 * m["speed"]}}


def bench_envelope(m: dict, rng: random.Random) -> dict:
    rows = []
    spec = rng.choice(ARCHS)
    for batch in rng.sample([2, 4, 8, 16, 24, 32], rng.randint(1, 4)):
        for mode in rng.sample(["train", "infer"], rng.randint(1, 2)):
            imgsz = rng.choice([128, 224, 384])
            macs = int(1e9 * rng.uniform(0.05, 20))
            ips = m["speed"] * 2e10 / macs * (3 if mode == "infer" else 1) * rng.uniform(0.8, 1.2)
            rows.append({"spec": spec, "device": m["device"], "dtype": "fp32", "batch": batch, "imgsz": imgsz,
                         "mode": mode, "status": "ok", "imgs_per_s": ips, "step_ms": batch / ips * 1e3,
                         "step_p10_ms": batch / ips * 950, "step_p90_ms": batch / ips * 1100, "macs_per_img": macs,
                         "params": int(5e6 * rng.uniform(1, 20)), "tflops": 0.02 * m["speed"], "iters": 10,
                         "optimizer": "sgd" if mode == "train" else "", "peak_mem_mb": 100 * batch})
    return {"device": _device(m), "results": rows, "note": None}


def compare_envelope(m: dict, rng: random.Random) -> dict:
    factor = m["speed"] * rng.uniform(0.9, 1.1)
    rows = [{**r, "train_imgs_per_s": r["train_imgs_per_s"] * factor} for r in FUSED["rows"]]
    return {**FUSED, "rows": rows, "device": {**_device(m), "peak_tflops_measured": None}}


def summary_envelope(rng: random.Random) -> dict:
    return {"spec": rng.choice(ARCHS), "canonical": None, "input": [1, 3, 224, 224], "params": 5_288_548,
            "macs": 386_000_000, "stages": [], "rows": []}


def fill(path: Path, rows: int, seed: int = 0) -> int:
    """A database at `path` with `rows` result rows (and the runs and machines they belong to); its runs."""
    from netprobe.history.record import run_document, utc_text
    from netprobe.history.store import connect
    from netprobe.history.tables import insert_run, transaction

    rng = random.Random(seed)
    conn = connect(path)
    done = runs = 0
    start = time.time() - 120 * 86_400
    with transaction(conn):
        while done < rows:
            m = rng.choice(MACHINES)
            kind = rng.random()
            envelope = (compare_envelope(m, rng) if kind < 0.04 else summary_envelope(rng) if kind < 0.1
                        else bench_envelope(m, rng))
            facts = {k: m[k] for k in ("cpu", "cpus", "memory_mb", "arch", "board", "gpus")}
            doc = run_document(envelope, ["netprobe", "bench"], device=_device(m), facts=facts)
            doc["created"] = utc_text(start + 120 * 86_400 * done / rows)
            doc["results"] = doc["results"][: rows - done]
            insert_run(conn, doc)
            done += len(doc["results"])
            runs += 1
    conn.close()
    return runs


def wall_s(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one command; the CPU time moves less with the load of
    the machine's other users, the wall time is what a user waits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "results.sqlite"
        t0 = time.perf_counter()
        runs = fill(path, args.rows)
        print(f"{args.rows:,} rows in {runs:,} runs on {len(MACHINES)} machines, {path.stat().st_size / 2**20:.1f} MB "
              f"(filled in {time.perf_counter() - t0:.1f} s); {os.cpu_count()} CPUs, python "
              f"{sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
        env = {**os.environ, "NETPROBE_DB": str(path)}
        html = str(Path(folder) / "report.html")
        from netprobe.history import open as open_history

        matching = len(open_history(path).runs(spec="efficientnet_b4"))
        print(f"runs with an efficientnet_b4 row: {matching:,}; `netprobe history` lists the newest 30 unless --all")
        cases = {"netprobe --version": ["--version"], "netprobe history": ["history"],
                 "netprobe history --spec efficientnet_b4": ["history", "--spec", "efficientnet_b4"],
                 "netprobe history --spec efficientnet_b4 --all": ["history", "--spec", "efficientnet_b4", "--all"],
                 "netprobe history --all --format csv": ["history", "--all", "--format", "csv"],
                 "netprobe history show 100": ["history", "show", "100"],
                 "netprobe report --html report.html": ["report", "--html", html],
                 "netprobe report --format markdown": ["report", "--format", "markdown"]}
        for args_ in cases.values():
            wall_s([*NETPROBE, *args_], env)  # the file cache warm
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, args_ in cases.items():
                times[name].append(wall_s([*NETPROBE, *args_], env))
        floor = statistics.median(w for w, _ in times["netprobe --version"])
        for name, values in times.items():
            walls = [w for w, _ in values]
            median = statistics.median(walls)
            goal = "" if name.endswith("--version") else f"   goal < 1 s: {'met' if median < 1 else 'MISSED'}"
            print(f"{name:46}: median {median:.3f} s (min {min(walls):.3f}, max {max(walls):.3f}), "
                  f"{median / floor:.1f}x --version, CPU {statistics.median(c for _, c in values):.3f} s{goal}")
        print(f"report.html: {Path(html).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
