"""Is `netprobe predict` as cheap as `netprobe summary`? Measured side by side in one run.

Wall time of `netprobe predict SPEC --gpu v100` (default settings: a train step, fp32, batch 24)
against `netprobe summary SPEC`, whole processes as a user runs them (imports included), interleaved
(A B A B ...) so that a busy machine slows both alike; per spec, the medians and their ratio:
goal at most 1.2x. Run from a checkout's root: it times that checkout's netprobe.

    python benchmarks/predict_speed.py [--specs efficientnet_b4,efficientnetv2_s,resnet50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

NETPROBE = [sys.executable, "-m", "netprobe"]


def wall_s(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", default="efficientnet_b4,efficientnetv2_s,resnet50")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    met = True
    for spec in args.specs.split(","):
        ratio = compare(spec, args.rounds)
        met = met and ratio <= 1.2
    print(f"every spec: {'met' if met else 'missed'}")


def compare(spec: str, rounds: int) -> float:
    """Summary and predict of `spec`, interleaved `rounds` times; prints and returns the ratio of medians."""
    commands = {"summary": [*NETPROBE, "summary", spec], "predict": [*NETPROBE, "predict", spec, "--gpu", "v100"]}
    times: dict[str, list[float]] = {k: [] for k in commands}
    with tempfile.TemporaryDirectory() as folder:  # predict records its run (as by default), not in your database
        env = {**os.environ, "NETPROBE_DB": os.path.join(folder, "results.sqlite")}
        for _ in range(rounds):
            for name, cmd in commands.items():
                times[name].append(wall_s(cmd, env))
    medians = {k: statistics.median(v) for k, v in times.items()}
    for name, cmd in commands.items():
        print(f"{' '.join(cmd[2:]):50s} median {medians[name]:.2f} s over {rounds} "
              f"(min {min(times[name]):.2f}, max {max(times[name]):.2f})")
    ratio = medians["predict"] / medians["summary"]
    print(f"{spec}: predict / summary {ratio:.2f}x (goal <= 1.2x): {'met' if ratio <= 1.2 else 'missed'}")
    return ratio


if __name__ == "__main__":
    main()
