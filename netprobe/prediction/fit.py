"""Fit the time model's efficiencies on third-party measurements: `python -m netprobe.prediction.fit`.

Reads `benchmarks/data/timm-gpu-calibration.csv` (timm's published RTX 3090 / 4090 rows for the
zoo's models), counts each row's step on meta, and fits per GPU generation and memory layout one
(compute, memory) efficiency per op key and one launch cost, minimising the squared log error of
the step times. The parameters are physical (shared by every model and size), never per model.
A key no row exercises (the backward on a GPU measured only in inference) keeps the value it
started from: the generation it was initialised from, which the table then says.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from netprobe.prediction.gpus import GPU, gpu_table
from netprobe.prediction.model import EFFICIENCY_FILE, KEYS, LAYOUTS, Efficiency, Work

CALIBRATION_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "timm-gpu-calibration.csv"
ZOO_OF_TIMM = {**{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
               **{f"efficientnetv2_{s}": f"efficientnetv2_{s}" for s in ("s", "m", "l", "xl")},
               "mobilenetv3_large_100": "mobilenetv3_large", "mobilenetv3_small_100": "mobilenetv3_small",
               **{f"resnet{n}": f"resnet{n}" for n in (18, 34, 50, 101)}}
GPU_OF_DEVICE = {"rtx3090": "rtx3090", "rtx4090": "rtx4090", "4090": "rtx4090"}
MAX_MEMORY_EFFICIENCY = 1.5  # counted bytes are "nothing fused": caches can make real traffic smaller
MIN_EFFICIENCY = 0.05  # below it an efficiency stops being physical and only absorbs other costs


@dataclass
class Row:
    """One third-party measurement: a zoo model's step on a GPU, and what it took."""

    source_file: str
    model: str  # zoo name
    mode: str
    batch: int
    imgsz: int
    layout: str
    gpu: str
    step_s: float  # batch / timm's samples_per_sec

    @property
    def torch(self) -> str:
        return self.source_file.split("-pt")[1].split("-")[0] if "-pt" in self.source_file else "?"


def calibration_rows(path: Path = CALIBRATION_FILE) -> list[Row]:
    """The calibration file's rows for models the zoo builds, on GPUs the table knows."""
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["model"] in ZOO_OF_TIMM and r["device"] in GPU_OF_DEVICE:
                batch = int(r["batch"])
                rows.append(Row(r["source_file"], ZOO_OF_TIMM[r["model"]], r["mode"], batch, int(r["img_size"]),
                                r["layout"], GPU_OF_DEVICE[r["device"]], batch / float(r["samples_per_sec"])))
    return rows


_counted: dict[tuple, tuple[Work, ...]] = {}


def row_work(model: str, mode: str, batch: int, imgsz: int) -> tuple[Work, ...]:
    """The counted work of a row's step (AMP fp16 as timm ran; SGD with momentum for training)."""
    from netprobe.prediction.counted import counted_work
    from netprobe.target import resolve

    key = (model, mode, batch, imgsz)
    if key not in _counted:
        _counted[key] = tuple(counted_work(resolve(model).meta_model(), batch, (imgsz, imgsz), mode, "fp16"))
    return _counted[key]


def keep_counts(path: str | None) -> None:
    """Load the counted work of earlier runs from `path` (a pickle this function writes), and save it
    there at exit: counting every row takes minutes on a busy machine, the counts never change."""
    import atexit
    import pickle

    if path is None:
        return
    file = Path(path)
    if file.is_file():
        _counted.update(pickle.loads(file.read_bytes()))
    atexit.register(lambda: file.write_bytes(pickle.dumps(_counted)))


@dataclass
class Sample:
    """One measured time the fit matches: pieces of work on a device at a precision, the seconds they
    took, and how much the sample counts (`weight`) beside the others."""

    work: tuple[Work, ...]
    device: GPU
    seconds: float
    amp: str = "fp16"
    weight: float = 1.0


DEFAULT_START = Efficiency(dict.fromkeys(KEYS, 0.5), dict.fromkeys(KEYS, 0.7), 5.0, "defaults (not fitted)")


def fit(rows: list[Row], start: Efficiency | None = None, steps: int = 800, label: str = "") -> Efficiency:
    """Efficiencies (one layout) minimising the squared log error of the rows' step times."""
    gpus = gpu_table()
    samples = [Sample(row_work(r.model, r.mode, r.batch, r.imgsz), gpus[r.gpu], r.step_s) for r in rows]
    return fit_samples(samples, start, steps, label)


def fit_samples(samples: list[Sample], start: Efficiency | None = None, steps: int = 800,
                label: str = "", launch_per_key: bool = False) -> Efficiency:
    """Efficiencies and launch cost minimising the weighted squared log error of the samples' times
    (the third-party step times above, or the time per op kind a device's breakdown measured).
    `launch_per_key`: one launch cost per key (a key no sample has keeps the start's), else one for all."""
    import torch

    t = _columns(samples)
    measured = torch.tensor([s.seconds for s in samples], dtype=torch.float64)
    weights = torch.tensor([s.weight for s in samples], dtype=torch.float64)
    start = start or DEFAULT_START
    theta_c = torch.tensor([_logit(_unit(start.compute[k], 1.0)) for k in KEYS], dtype=torch.float64,
                           requires_grad=True)
    theta_m = torch.tensor([_logit(_unit(start.memory[k], MAX_MEMORY_EFFICIENCY)) for k in KEYS],
                           dtype=torch.float64, requires_grad=True)
    launch_start = [math.log(start.launch(k)) for k in KEYS] if launch_per_key else math.log(start.launch_us)
    log_launch = torch.tensor(launch_start, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta_c, theta_m, log_launch], lr=0.08)
    for _ in range(steps):
        opt.zero_grad()
        predicted = _predict(t, theta_c, theta_m, log_launch, len(samples))
        loss = (weights * (predicted.log() - measured.log()) ** 2).sum() / weights.sum()
        loss.backward()
        opt.step()
    compute = _bounded(theta_c.detach(), 1.0).tolist()
    memory = _bounded(theta_m.detach(), MAX_MEMORY_EFFICIENCY).tolist()
    launches = log_launch.detach().exp()
    by_key = dict(zip(KEYS, launches.tolist(), strict=True)) if launch_per_key else None
    return Efficiency(dict(zip(KEYS, compute, strict=True)), dict(zip(KEYS, memory, strict=True)),
                      statistics.median(by_key.values()) if by_key else float(launches), label, by_key)


def _columns(samples: list[Sample]) -> dict:
    """The samples' distinct pieces of work as tensors: key, FLOPs, bytes, kernels, peak, bandwidth,
    which sample, how many times."""
    import torch

    keys = {k: i for i, k in enumerate(KEYS)}
    cols: dict[str, list] = {"key": [], "flops": [], "bytes": [], "kernels": [], "peak": [], "bw": [], "row": [],
                             "times": []}
    for i, sample in enumerate(samples):
        peaks = _peaks(sample.device, sample.amp)
        for (key, flops, moved, kernels, peak), times in _distinct(sample.work).items():
            for name, value in (("key", keys[key]), ("flops", flops), ("bytes", moved), ("kernels", kernels),
                                ("peak", peaks[peak]), ("bw", sample.device.mem_bw_gbs * 1e9), ("row", i),
                                ("times", times)):
                cols[name].append(value)
    return {k: torch.tensor(v, dtype=torch.int64 if k in ("key", "row") else torch.float64) for k, v in cols.items()}


def predict_samples(samples: list[Sample], eff: Efficiency) -> list[float]:
    """The time model's seconds for each sample with efficiencies `eff`."""
    from netprobe.prediction.model import time_work

    return [sum(t.seconds for t in time_work(list(s.work), s.device, eff, s.amp)) for s in samples]


def _distinct(work: tuple[Work, ...]) -> dict[tuple, int]:
    """Identical pieces of work (a stage's repeated blocks) once each, with how many times they occur."""
    from collections import Counter

    return Counter((w.key, w.flops, w.bytes, w.kernels, w.peak) for w in work)


def _predict(t: dict, theta_c, theta_m, log_launch, n_rows: int):
    import torch

    compute_eff = _bounded(theta_c, 1.0)[t["key"]]
    memory_eff = _bounded(theta_m, MAX_MEMORY_EFFICIENCY)[t["key"]]
    seconds = torch.maximum(t["flops"] / (t["peak"] * compute_eff), t["bytes"] / (t["bw"] * memory_eff))
    launch = log_launch.exp()[t["key"]] if log_launch.ndim else log_launch.exp()
    seconds = (seconds + t["kernels"] * launch * 1e-6) * t["times"]
    return torch.zeros(n_rows, dtype=torch.float64).index_add(0, t["row"], seconds)


def _bounded(theta, top: float):
    """Free parameters -> efficiencies in [MIN_EFFICIENCY, top]."""
    import torch

    return MIN_EFFICIENCY + (top - MIN_EFFICIENCY) * torch.sigmoid(theta)


def _unit(value: float, top: float) -> float:
    """The inverse of `_bounded` before the sigmoid: an efficiency as a fraction of its range."""
    return (value - MIN_EFFICIENCY) / (top - MIN_EFFICIENCY)


def _peaks(gpu: GPU, amp: str) -> dict[str, float]:
    """The peaks `model.time_work` runs each piece of work at."""
    return {"conv": gpu.conv_peak_tflops(amp) * 1e12, "matmul": gpu.matmul_peak_tflops(amp) * 1e12,
            "vector": gpu.fp32_tflops * 1e12}


def _logit(p: float) -> float:
    import math

    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def predict_rows(rows: list[Row], eff: Efficiency) -> list[float]:
    """The model's step seconds for each row with efficiencies `eff` (each row on its own GPU)."""
    from netprobe.prediction.model import time_work

    gpus = gpu_table()
    return [sum(t.seconds for t in time_work(list(row_work(r.model, r.mode, r.batch, r.imgsz)), gpus[r.gpu], eff,
                                             "fp16")) for r in rows]


# The generations the calibration file measures, and the ones that borrow a fitted table.
FITTED = {"ampere": ("rtx3090",), "ada": ("rtx4090",)}
BORROWED = {"volta": "ampere", "turing": "ampere", "hopper": "ada", "blackwell": "ada"}


def fit_table(rows: list[Row]) -> dict:
    """The whole table: per fitted generation and layout; Ada starts from Ampere's values, so its
    backward keys (no Ada training rows) are Ampere's."""
    generations: dict[str, dict] = {}
    for generation, gpus in FITTED.items():
        generations[generation] = {}
        for layout in LAYOUTS:
            chosen = [r for r in rows if r.gpu in gpus and r.layout == layout]
            start = (Efficiency.from_dict(generations["ampere"][layout]) if generation != "ampere" else None)
            modes = "+".join(sorted({r.mode for r in chosen}))
            label = f"timm {'/'.join(gpus)} {modes} rows ({len(chosen)}, {layout}, AMP)"
            if start is not None:
                label += "; backward keys from ampere"
            generations[generation][layout] = fit(chosen, start, label=label).to_dict()
    return {"source": str(CALIBRATION_FILE.relative_to(CALIBRATION_FILE.parents[2])), "generations": generations,
            "use": BORROWED}


def main() -> None:
    """Refit `efficiency.json` from the calibration file (a few minutes: every row is counted)."""
    keep_counts(sys.argv[sys.argv.index("--cache") + 1] if "--cache" in sys.argv else None)
    table = fit_table(calibration_rows())
    EFFICIENCY_FILE.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {EFFICIENCY_FILE}", file=sys.stderr)


if __name__ == "__main__":
    main()
