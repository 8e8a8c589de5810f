"""How fast does the `netprobe` command answer? Measured side by side in one run, as ratios.

1. `netprobe --help`, `netprobe bench --help`, `netprobe summary --help`, `netprobe --version`: wall
   seconds (goal: under 0.3 s each) and whether torch was imported (goal: never).
2. `netprobe summary efficientnet_b0` against `python -c "import torch"`, interleaved (A B A B ...),
   medians: goal at most 1.15x.
3. `netprobe list` (its counts cached after the first run) against `import torch`: goal at most 1.5x;
   the first, uncached run is shown beside it.

Every command is a fresh process, as a user runs it. The machine's own bytecode setting is kept
(PYTHONDONTWRITEBYTECODE is shown): with it set, every run compiles netprobe's sources again.

    python benchmarks/cli_speed.py [--rounds 7]
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
TORCH = [sys.executable, "-c", "import torch"]
# Runs the CLI in-process and says whether torch got imported (stdout of the command is discarded).
IMPORTS_TORCH = ("import contextlib, io, sys; sys.argv = ['netprobe', *sys.argv[1:]]\n"
                 "from netprobe.cli import main\n"
                 "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
                 "    main()\n"
                 "print('torch' in sys.modules, file=sys.stderr)")


def wall_s(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def imports_torch(args: list[str]) -> bool:
    out = subprocess.run([sys.executable, "-c", IMPORTS_TORCH, *args], capture_output=True, text=True, check=True)
    return out.stderr.strip().splitlines()[-1] == "True"


def interleaved(cases: dict[str, list[str]], rounds: int, env: dict | None = None) -> dict[str, list[float]]:
    for cmd in cases.values():
        wall_s(cmd, env)  # warm the file cache (and netprobe's own count cache)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, cmd in cases.items():
            times[name].append(wall_s(cmd, env))
    return times


def line(name: str, values: list[float], extra: str = "") -> str:
    return (f"{name:36}: median {statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"
            f"{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '(unset)')}, "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    helps = {"netprobe --help": ["--help"], "netprobe bench --help": ["bench", "--help"],
             "netprobe summary --help": ["summary", "--help"], "netprobe --version": ["--version"]}
    times = interleaved({name: [*NETPROBE, *a] for name, a in helps.items()}, args.rounds)
    for name, a in helps.items():
        torch_seen = imports_torch(a)
        verdict = "met" if statistics.median(times[name]) < 0.3 and not torch_seen else "MISSED"
        print(line(name, times[name], f"   imports torch: {torch_seen}   (goal < 0.3 s, no torch: {verdict})"))

    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NETPROBE_CACHE_DIR": cache}
        cold = wall_s([*NETPROBE, "list"], env)
        cases = {"netprobe summary efficientnet_b0": [*NETPROBE, "summary", "efficientnet_b0"],
                 "netprobe list (counts cached)": [*NETPROBE, "list"], "import torch": TORCH}
        times = interleaved(cases, args.rounds, env)
    base = statistics.median(times["import torch"])
    goals = {"netprobe summary efficientnet_b0": 1.15, "netprobe list (counts cached)": 1.5}
    for name, values in times.items():
        extra = ""
        if name in goals:
            ratio = statistics.median(values) / base
            extra = f"   ratio {ratio:.2f}x (goal <= {goals[name]}x: {'met' if ratio <= goals[name] else 'MISSED'})"
        print(line(name, values, extra))
    print(f"netprobe list, first run (counting every arch and detector): {cold:.2f} s, "
          f"{cold / base:.2f}x import torch")


if __name__ == "__main__":
    main()
