"""Is `netprobe summary` cheap enough to use casually? Measured side by side in one run.

1. Wall time of `netprobe summary efficientnetv2_s` against `python -c "import torch"`,
   interleaved (A B A B ...), medians: goal at most 1.5x.
2. The same for a user's module of the same size given by object path
   (`module:user_models:v2s_sequential`, EfficientNetV2-S as a plain nn.Sequential): goal at most 1.5x.
3. Peak resident memory of `netprobe summary efficientnetv2_xl --imgsz 1024`: goal under 1 GB.

    python benchmarks/summary_speed.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

NETPROBE = [sys.executable, "-m", "netprobe"]
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))


def wall_s(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def peak_rss_mb(cmd: list[str]) -> float:
    # A fresh interpreter runs the command, so RUSAGE_CHILDREN holds that one child's peak alone.
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, *cmd], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch_only = [sys.executable, "-c", "import torch"]
    cases = {"netprobe summary efficientnetv2_s": [*NETPROBE, "summary", "efficientnetv2_s"],
             "netprobe summary module:user_models:v2s_sequential": [*NETPROBE, "summary",
                                                                     "module:user_models:v2s_sequential", "--imgsz",
                                                                     "384"]}
    for cmd in [*cases.values(), torch_only]:
        wall_s(cmd)  # warm the file cache
    times: dict[str, list[float]] = {name: [] for name in [*cases, "import torch"]}
    for _ in range(args.rounds):
        for name, cmd in [*cases.items(), ("import torch", torch_only)]:
            times[name].append(wall_s(cmd))
    base = statistics.median(times["import torch"])
    for name, values in times.items():
        ratio = statistics.median(values) / base
        verdict = "met" if ratio <= 1.5 else "MISSED"
        goal = "" if name == "import torch" else f"   ratio {ratio:.2f}x (goal <= 1.5x: {verdict})"
        print(f"{name:52}: median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"
              f"{goal}")
    xl = [*NETPROBE, "summary", "efficientnetv2_xl", "--imgsz", "1024"]
    t0 = time.perf_counter()
    peak = peak_rss_mb(xl)
    print(f"netprobe summary efficientnetv2_xl --imgsz 1024: peak RSS {peak:.0f} MB, "
          f"{time.perf_counter() - t0:.2f} s   (goal < 1024 MB: {'met' if peak < 1024 else 'MISSED'})")
    print(f"import torch alone: peak RSS {peak_rss_mb(torch_only):.0f} MB")


if __name__ == "__main__":
    main()
