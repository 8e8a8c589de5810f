"""Honest timing of training and inference, any model: what to measure, and the measurement of it.

A configuration (`BenchConfig`) is checked before any work (`validate`), counted on the meta device
(MACs forward and, for a train step, backward op by op), then timed through `netprobe.timing`: an
eager-torch step (forward, cross-entropy on random labels, backward, optimizer step; or a forward
under inference mode), warmed up until steady, each phase timed. Out of memory is a result. A run
of configurations (`run`) returns everything `netprobe bench` prints: the device, each result, the
roofs measured and the busy-machine verdict (`BenchRun.to_dict()` is its JSON).
"""

from netprobe.bench.config import LIMITS, BenchConfig, BenchResult, planned_result, validate
from netprobe.bench.measure import benchmark, output_classes
from netprobe.bench.runs import BenchRun, busy_note, cpu_friendly, find_max_batch, grid, largest_fitting, run, run_grid
from netprobe.timing import StageTime

__all__ = ["LIMITS", "BenchConfig", "BenchResult", "BenchRun", "StageTime", "benchmark", "busy_note", "cpu_friendly",
           "find_max_batch", "grid", "largest_fitting", "output_classes", "planned_result", "run", "run_grid",
           "validate"]
