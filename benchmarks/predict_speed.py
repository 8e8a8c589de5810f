"""Is `netprobe predict` as cheap as `netprobe summary`? Measured side by side in one run.

Wall time of `netprobe predict SPEC --gpu v100` against `netprobe summary SPEC`, interleaved
(A B A B ...), medians and their ratio: goal at most 1.2x.

    python benchmarks/predict_speed.py [--spec efficientnetv2_s] [--rounds 5]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="efficientnetv2_s")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    commands = {"summary": [*NETPROBE, "summary", args.spec],
                "predict": [*NETPROBE, "predict", args.spec, "--gpu", "v100"]}
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.rounds):
        for name, cmd in commands.items():
            times[name].append(wall_s(cmd))
    medians = {k: statistics.median(v) for k, v in times.items()}
    for name, cmd in commands.items():
        print(f"{' '.join(cmd[2:]):60s} median {medians[name]:.2f} s over {args.rounds} "
              f"(min {min(times[name]):.2f}, max {max(times[name]):.2f})")
    ratio = medians["predict"] / medians["summary"]
    print(f"predict / summary: {ratio:.2f}x (goal <= 1.2x): {'met' if ratio <= 1.2 else 'missed'}")


if __name__ == "__main__":
    main()
