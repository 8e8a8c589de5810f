"""Is `netprobe summary` cheap enough to use casually? Measured side by side in one run.

1. Wall time of `netprobe summary efficientnetv2_s` against `python -c "import torch"`,
   interleaved (A B A B ...), medians: goal at most 1.5x.
2. Peak resident memory of `netprobe summary efficientnetv2_xl --imgsz 1024`: goal under 1 GB.

    python benchmarks/summary_speed.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

NETPROBE = [sys.executable, "-m", "netprobe"]


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
    summary = [*NETPROBE, "summary", "efficientnetv2_s"]
    torch_only = [sys.executable, "-c", "import torch"]
    wall_s(summary)  # warm the file cache for both
    wall_s(torch_only)
    a, b = [], []
    for _ in range(args.rounds):
        a.append(wall_s(summary))
        b.append(wall_s(torch_only))
    ratio = statistics.median(a) / statistics.median(b)
    print(f"netprobe summary efficientnetv2_s : median {statistics.median(a):.3f} s "
          f"(min {min(a):.3f}, max {max(a):.3f}) over {args.rounds} runs")
    print(f"python -c 'import torch'          : median {statistics.median(b):.3f} s "
          f"(min {min(b):.3f}, max {max(b):.3f})")
    print(f"ratio                             : {ratio:.2f}x   (goal <= 1.5x: {'met' if ratio <= 1.5 else 'MISSED'})")
    xl = [*NETPROBE, "summary", "efficientnetv2_xl", "--imgsz", "1024"]
    t0 = time.perf_counter()
    peak = peak_rss_mb(xl)
    print(f"netprobe summary efficientnetv2_xl --imgsz 1024: peak RSS {peak:.0f} MB, "
          f"{time.perf_counter() - t0:.2f} s   (goal < 1024 MB: {'met' if peak < 1024 else 'MISSED'})")
    print(f"import torch alone: peak RSS {peak_rss_mb(torch_only):.0f} MB")


if __name__ == "__main__":
    main()
