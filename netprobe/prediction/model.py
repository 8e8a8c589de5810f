"""The time model: a counted step's ops against a GPU's datasheet roofs and fitted efficiencies.

Every op of a counted step (`counting.count_train`: MACs and bytes per op kind, forward and
backward, per module) becomes a piece of work of one *key* (its op kind and direction: a depthwise
conv's forward, backward-data or backward-weight; a batch norm; the optimizer's update). Its time:

    max(FLOPs / (peak × compute efficiency of the key), bytes / (bandwidth × memory efficiency of the key))
      + kernels × launch cost

(one launch cost per GPU generation; a calibration of a CPU fits one per key).

The peak follows the precision and the op (see `GPU.conv_peak_tflops`); the efficiencies and
the launch cost are a small table per GPU generation and memory layout (`efficiency.json`),
fitted by `netprobe.prediction.fit` on third-party measurements, never per model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from netprobe.prediction.gpus import GPU

if TYPE_CHECKING:  # the counting code imports torch; the GPU table and `netprobe report` do not need it
    from netprobe.counting import TrainCount

EFFICIENCY_FILE = Path(__file__).with_name("efficiency.json")
MAC_OP_KINDS = ("depthwise_conv", "dense_conv", "pointwise_conv", "linear")
MAC_DIRECTIONS = ("fwd", "bwd_data", "bwd_weight")
ELEMENT_KINDS = ("batch_norm", "activation", "squeeze_excite", "residual", "pooling", "loss", "other", "optimizer")
KEYS = (*(f"{k}.{d}" for k in MAC_OP_KINDS for d in MAC_DIRECTIONS), *ELEMENT_KINDS)
LAYOUTS = ("nchw", "nhwc")


@dataclass(slots=True)  # thousands per step
class Work:
    """One op's work in a step: which key times it, where it belongs, what it costs."""

    key: str
    stage: str | None
    phase: str  # fwd | bwd | opt
    flops: float
    bytes: float
    kernels: int
    peak: str  # conv | matmul | vector: which of the GPU's peaks it runs at


def step_work(count: TrainCount, classify: Callable[[str, str], str], stage_of: Callable[[str], str | None],
              train: bool) -> list[Work]:
    """Every op of a counted step as work: forward always; backward and optimizer when `train`."""
    from netprobe.counting import MAC_KINDS

    out: list[Work] = []
    for record in count.records():
        stage = stage_of(record.path)
        for kind, tally in record.fwd.items():
            out.append(_work(classify(record.path, kind), kind, "fwd", stage, tally.ops, tally.bytes, tally.calls))
        if not train:
            continue
        for kind, tally in record.bwd.items():
            op_kind = classify(record.path, kind)
            if kind not in MAC_KINDS or op_kind not in MAC_OP_KINDS:
                out.append(_work(op_kind, kind, "bwd", stage, tally.ops, tally.bytes, tally.calls))
                continue
            total = (record.bwd_input_macs + record.bwd_weight_macs) or tally.ops
            for direction, macs in (("bwd_data", record.bwd_input_macs), ("bwd_weight", record.bwd_weight_macs)):
                if macs:
                    share = macs / total
                    out.append(Work(f"{op_kind}.{direction}", stage, "bwd", 2.0 * tally.ops * share,
                                    tally.bytes * share, max(1, round(tally.calls * share)), _peak(op_kind)))
    if train:
        for tally in count.optimizer.values():
            out.append(Work("optimizer", None, "opt", float(tally.ops), float(tally.bytes), tally.calls, "vector"))
    return out


def _work(op_kind: str, counted_kind: str, direction: str, stage: str | None, ops: int, moved: int,
          calls: int) -> Work:
    from netprobe.counting import MAC_KINDS

    if counted_kind in MAC_KINDS and op_kind in MAC_OP_KINDS:
        return Work(f"{op_kind}.fwd" if direction == "fwd" else f"{op_kind}.bwd_data", stage, direction,
                    2.0 * ops, float(moved), calls, _peak(op_kind))
    key = op_kind if op_kind in ELEMENT_KINDS else "other"
    flops = 2.0 * ops if counted_kind in MAC_KINDS else float(ops)
    return Work(key, stage, direction, flops, float(moved), calls, "vector")


def _peak(op_kind: str) -> str:
    return "matmul" if op_kind == "linear" else "conv"


@dataclass
class Efficiency:
    """Fitted efficiencies of one GPU generation and layout: (compute, memory) per key, launch cost."""

    compute: dict[str, float]
    memory: dict[str, float]
    launch_us: float
    fitted_on: str  # what the numbers were fitted on, shown with every prediction
    # a launch cost per key instead of one (a device calibration on a CPU, where an op's fixed cost depends on
    # what it is: a oneDNN convolution's set-up is not an add's); None: `launch_us` for every key
    launch_by_key: dict[str, float] | None = None

    def launch(self, key: str) -> float:
        """The fixed cost of one kernel of `key`, in µs."""
        return self.launch_by_key[key] if self.launch_by_key is not None else self.launch_us

    def to_dict(self) -> dict:
        out = {"launch_us": self.launch_us, "fitted_on": self.fitted_on,
               "kinds": {k: [round(self.compute[k], 4), round(self.memory[k], 4)] for k in KEYS}}
        if self.launch_by_key is not None:
            out["launch_by_key"] = {k: round(self.launch_by_key[k], 3) for k in KEYS}
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Efficiency:
        kinds = data["kinds"]
        by_key = data.get("launch_by_key")
        return cls({k: kinds[k][0] for k in KEYS}, {k: kinds[k][1] for k in KEYS}, data["launch_us"],
                   data["fitted_on"], {k: by_key[k] for k in KEYS} if by_key is not None else None)


def load_efficiencies(path: Path = EFFICIENCY_FILE) -> dict:
    """The fitted table: {"generations": {gen: {layout: Efficiency dict}}, "use": {gen: fitted gen}}."""
    return json.loads(path.read_text())


def efficiency_for(gpu: GPU, channels_last: bool, table: dict | None = None) -> tuple[Efficiency, str]:
    """The efficiencies a GPU's predictions use and a note of where they come from (a generation
    without its own measurements borrows the nearest fitted one, and says so)."""
    table = table or load_efficiencies()
    fitted = table["use"].get(gpu.generation, gpu.generation)
    layout = "nhwc" if channels_last else "nchw"
    eff = Efficiency.from_dict(table["generations"][fitted][layout])
    note = f"efficiencies fitted on {eff.fitted_on}"
    if fitted != gpu.generation:
        note += f" ({fitted}; no {gpu.generation} measurements to fit on)"
    return eff, note


@dataclass(slots=True)  # thousands per step
class Timed:
    """One piece of work, timed: seconds, and what bounds it."""

    work: Work
    seconds: float
    bound: str  # compute | memory | launch


def time_work(work: list[Work], gpu: GPU, eff: Efficiency, amp: str) -> list[Timed]:
    """Each piece of work's time on `gpu` at precision `amp` with efficiencies `eff`."""
    peaks = {"conv": gpu.conv_peak_tflops(amp) * 1e12, "matmul": gpu.matmul_peak_tflops(amp) * 1e12,
             "vector": gpu.fp32_tflops * 1e12}
    bandwidth = gpu.mem_bw_gbs * 1e9
    out = []
    for w in work:
        compute = w.flops / (peaks[w.peak] * eff.compute[w.key])
        memory = w.bytes / (bandwidth * eff.memory[w.key])
        launches = w.kernels * eff.launch(w.key) * 1e-6
        body = max(compute, memory)
        bound = "launch" if launches > body else "compute" if compute >= memory else "memory"
        out.append(Timed(w, body + launches, bound))
    return out


def logit(p: float) -> float:
    return math.log(p / (1 - p))
