"""Is `netprobe predict` as cheap as `netprobe summary`? Measured side by side in one run.

Wall time of `netprobe predict SPEC --gpu v100` (default settings: a train step, fp32, batch 24)
against `netprobe summary SPEC`, whole processes as a user runs them (imports included), interleaved
(A B A B ...) so that a busy machine slows both alike; per spec, the medians and their ratio:
goal at most 1.2x. Run from a checkout's root: it times that checkout's netprobe. One untimed run of
each command first, with Python allowed to write its bytecode cache (PYTHONDONTWRITEBYTECODE unset), as
a user's first run does: otherwise every module edited since its cache was written is compiled again in
every timed run, and the command that imports more of them pays more.

    python benchmarks/predict_speed.py [--specs efficientnet_b4,efficientnetv2_s,resnet50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

NETPROBE = [sys.executable, "-m", "netprobe"]


def wall_s(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds of `cmd`, and the CPU seconds (user + system) it used: on a busy machine the CPU
    time moves far less than the wall time, so it is printed beside it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
    cpu: dict[str, list[float]] = {k: [] for k in commands}
    with tempfile.TemporaryDirectory() as folder:  # predict records its run (as by default), not in your database
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["NETPROBE_DB"] = os.path.join(folder, "results.sqlite")
        for cmd in commands.values():
            wall_s(cmd, env)  # untimed: writes the bytecode cache a user's first run writes
        for _ in range(rounds):
            for name, cmd in commands.items():
                wall, used = wall_s(cmd, env)
                times[name].append(wall)
                cpu[name].append(used)
    medians = {k: statistics.median(v) for k, v in times.items()}
    for name, cmd in commands.items():
        print(f"{' '.join(cmd[2:]):50s} median {medians[name]:.2f} s over {rounds} "
              f"(min {min(times[name]):.2f}, max {max(times[name]):.2f}); CPU {statistics.median(cpu[name]):.2f} s")
    ratio = medians["predict"] / medians["summary"]
    cpu_ratio = statistics.median(cpu["predict"]) / statistics.median(cpu["summary"])
    print(f"{spec}: predict / summary {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU (goal <= 1.2x): "
          f"{'met' if ratio <= 1.2 else 'missed'}")
    return ratio


if __name__ == "__main__":
    main()
