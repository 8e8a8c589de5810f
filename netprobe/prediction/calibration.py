"""Calibrating the time model on the device at hand (`netprobe predict --calibrate`).

The GPU tables are fitted on third-party step times; the device netprobe runs on can be measured
instead. A calibration benches a few models with `--breakdown` (time per op kind, profiled), counts
the same steps on meta, and fits the same time model (`fit.fit_samples`): the efficiencies per op
key and the launch cost, against this device's measured roofs (matmul peak, copy bandwidth). It is
kept in the results database (table `calibrations`) with the machine, device, torch version,
models, date and the fit's own residuals; predictions for that device (`--device cpu`) use the
newest one and say so, or say they are uncalibrated and use the fit's starting values.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netprobe import defaults
from netprobe.errors import InputError, quote
from netprobe.prediction.gpus import GPU
from netprobe.prediction.model import ELEMENT_KINDS, MAC_OP_KINDS, Efficiency, Work

LOCAL = "local"  # the generation of a device described by its measured roofs


@dataclass
class Calibration:
    """A fit of the time model on one device of one machine: what it was fitted on, and how well."""

    created: str  # UTC, ISO 8601
    machine_id: str
    device: str  # cpu | cuda
    device_name: str
    torch: str
    amp: str
    layout: str  # nchw | nhwc
    models: list[str]
    peak_tflops: float  # the roofs the efficiencies are fractions of
    bandwidth_gbs: float
    efficiency: Efficiency
    residuals: list[dict] = field(default_factory=list)  # per bench row: model, batch, imgsz, measured/fitted ms
    fingerprint: dict = field(default_factory=dict)
    id: int | None = None

    @property
    def median_error(self) -> float:
        """The fit's median |error| on its own calibration steps (a fraction)."""
        return statistics.median(abs(r["error"]) for r in self.residuals) if self.residuals else float("nan")

    @property
    def note(self) -> str:
        return (f"calibrated on {', '.join(self.models)} on {self.created[:10]} ({self.device_name}, torch "
                f"{self.torch}; fit residual {self.median_error:.0%} median)")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["efficiency"] = self.efficiency.to_dict()
        out["kind"] = "calibration"
        return out


def check_calibration(specs: list[str], device: str, db: str | None, create: bool = True) -> tuple[list, str, Path]:
    """Refuse, before any measurement, what cannot be calibrated: an unknown spec, a device that is not
    here, a database that cannot be written. Returns (targets, device, database path)."""
    from netprobe.history.store import check_writable, connect, default_path
    from netprobe.target import resolve
    from netprobe.timing import resolve_device

    if not specs:
        raise InputError("--calibrate needs at least one model (default: "
                         f"{','.join(defaults.CALIBRATION_MODELS)})")
    device = resolve_device(device)
    targets = [resolve(spec) for spec in specs]
    path = Path(db).expanduser() if db is not None else default_path()
    conn = connect(path, create=create)
    try:
        check_writable(conn, path)
    finally:
        conn.close()
    return targets, device, path


def calibrate(targets: list, device: str, batches: list[int], sizes: list, amp: str = "off",
              channels_last: bool = False, warmup: int = defaults.WARMUP_STEPS,
              iters: int = defaults.CALIBRATION_ITERS,
              on_config: Callable[[str, int, int], None] | None = None, optimizer: str = "sgd",
              rounds: int = 1) -> Calibration:
    """Bench each target at each batch and size with a breakdown on `device` (train steps with `optimizer`),
    and fit the time model's efficiencies on the time per op kind. `rounds` > 1 benches every configuration
    that many times, in interleaved rounds (a shared machine's speed drifts: each round is a sample of its
    own). `on_config(label, done, total)` is called before each bench; nothing is stored here
    (`store_calibration` does, once the fit is done)."""
    from netprobe.bench import BenchConfig, benchmark
    from netprobe.prediction.fit import fit_samples, predict_samples
    from netprobe.sizes import size_text

    configs = [BenchConfig(t, device=device, batch=b, imgsz=s, mode="train", amp=amp, channels_last=channels_last,
                           optimizer=optimizer, warmup=warmup, iters=iters, breakdown=True)
               for _ in range(rounds) for t in targets for b in batches for s in sizes or [None]]
    measured = []
    for i, config in enumerate(configs):
        if on_config is not None:
            size = "" if config.imgsz is None else f" {size_text(config.imgsz)} px"
            on_config(f"{config.spec.label} b{config.batch}{size}", i, len(configs))
        result = benchmark(config)
        if result.status != "ok" or not result.breakdown:
            raise InputError(f"cannot calibrate on {quote(config.spec.label)}: its bench gave no breakdown "
                             f"({result.error or result.breakdown_note or result.status})")
        measured.append((config, result))
    peak = max(r.peak_tflops for _, r in measured)
    bandwidth = next(r.roofline["bandwidth_gbs"] for _, r in measured if r.roofline)
    here = local_device(device, amp, peak, bandwidth)
    counted: dict[tuple, tuple[Work, ...]] = {}  # a configuration's step is counted once, whatever the rounds
    per_config = [breakdown_samples(r.breakdown, r.step_ms, _counted(c, r, counted), here, amp) for c, r in measured]
    # one launch cost per op kind: on a CPU an op's fixed cost depends on what it is (a oneDNN convolution's
    # set-up, autograd's per-node work), and at small sizes those costs are most of a step
    eff = fit_samples([s for samples in per_config for s in samples], label="", launch_per_key=True)
    whole = [samples[-1] for samples in per_config]
    fitted = predict_samples(whole, eff)
    residuals = [{"model": c.spec.label, "batch": c.batch, "imgsz": r.imgsz, "measured_ms": r.step_ms,
                  "fitted_ms": f * 1e3, "error": f * 1e3 / r.step_ms - 1}
                 for (c, r), f in zip(measured, fitted, strict=True)]
    return _record(measured, here, eff, residuals, amp, channels_last)


def _counted(config, result, done: dict) -> tuple[Work, ...]:
    """The counted work of a calibration step, at the size the bench ran (kept in `done`)."""
    from netprobe.prediction.counted import counted_work
    from netprobe.sizes import as_size

    target = config.spec
    size = target.input_size(as_size(result.imgsz))
    key = (id(target), config.batch, size)
    if key not in done:
        done[key] = tuple(counted_work(target.meta_model(), config.batch, size, "train", config.amp, config.optimizer,
                                       target.in_chans))
    return done[key]


def _record(measured: list, here: GPU, eff: Efficiency, residuals: list[dict], amp: str,
            channels_last: bool) -> Calibration:
    import time

    from netprobe.history.record import fingerprint, utc_text
    from netprobe.timing import device_info

    machine = fingerprint()
    info = device_info(here.name)
    models = list(dict.fromkeys(c.spec.label for c, _ in measured))
    eff.fitted_on = f"{', '.join(models)} on this {here.name}"
    return Calibration(utc_text(time.time()), machine["machine_id"], here.name, info.get("name", here.name),
                       info["torch"], amp, "nhwc" if channels_last else "nchw", models, here.fp32_tflops
                       if amp == "off" else here.conv_peak_tflops(amp), here.mem_bw_gbs, eff, residuals,
                       {"machine": machine, "device": info})


def work_group(w: Work) -> str:
    """Which of a breakdown's figures times a piece of work: a MAC kind's forward, or its backward (the
    breakdown does not split backward-data from backward-weight), or an element kind whole."""
    return w.key.replace(".bwd_data", ".bwd").replace(".bwd_weight", ".bwd")


def _kind_groups(record: dict) -> list[tuple[str, float]]:
    """A breakdown record (one op kind, the whole step) as (group, ms) pairs."""
    kind = record["kind"]
    if kind in MAC_OP_KINDS:
        return [(f"{kind}.fwd", record["fwd_ms"]), (f"{kind}.bwd", record["bwd_ms"])]
    key = kind if kind in ELEMENT_KINDS else "other"
    return [(key, record["fwd_ms"] + record["bwd_ms"] + record["opt_ms"])]


def breakdown_samples(records: list[dict], step_ms: float, work: tuple[Work, ...], device: GPU, amp: str) -> list:
    """The fit's samples from one bench's breakdown: each op kind's measured time (scaled so that the kinds
    add up to the unprofiled step, as the profiler's overhead is not the step's), weighted by its share of
    the step, and last the whole step, weighted 1."""
    from netprobe.prediction.fit import Sample

    whole = [r for r in records if r["stage"] is None]
    profiled_ms = sum(r["fwd_ms"] + r["bwd_ms"] + r["opt_ms"] for r in whole)
    scale = step_ms / profiled_ms if profiled_ms else 1.0
    measured: dict[str, float] = defaultdict(float)
    for r in whole:
        for group, ms in _kind_groups(r):
            measured[group] += ms * scale / 1e3
    grouped: dict[str, list[Work]] = defaultdict(list)
    for w in work:
        grouped[work_group(w)].append(w)
    step_s = step_ms / 1e3
    samples = [Sample(tuple(grouped[g]), device, s, amp, s / step_s) for g, s in measured.items()
               if s > 0 and grouped.get(g)]
    return [*samples, Sample(work, device, step_s, amp, 1.0)]


def local_device(device: str, amp: str, peak_tflops: float, bandwidth_gbs: float) -> GPU:
    """The device at hand as the time model sees one: its measured matmul peak (in the precision `amp`)
    and copy bandwidth, its memory."""
    import torch

    from netprobe.timing.system import memory_mb

    if device == "cuda":
        mem_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
    else:
        mem_gb = (memory_mb() or 0) / 1024
    half = peak_tflops if amp != "off" else None
    return GPU(device, f"this {device.upper()}", LOCAL, False, 1, 0.0, mem_gb, bandwidth_gbs, peak_tflops, None,
               half if amp == "fp16" else None, half if amp == "bf16" else None, "measured here")


# ---- the results database -------------------------------------------------------------------------

_COLUMNS = ("created", "machine_id", "device", "device_name", "torch", "amp", "layout", "models", "peak_tflops",
            "bandwidth_gbs", "efficiency", "residuals", "fingerprint")


def store_calibration(path: Path | str, cal: Calibration) -> int:
    """Keep `cal` in the results database at `path` in one transaction; its id there."""
    from netprobe.history.store import connect, write_error
    from netprobe.history.tables import transaction

    values = (cal.created, cal.machine_id, cal.device, cal.device_name, cal.torch, cal.amp, cal.layout,
              json.dumps(cal.models), cal.peak_tflops, cal.bandwidth_gbs, json.dumps(cal.efficiency.to_dict()),
              json.dumps(cal.residuals), json.dumps(cal.fingerprint))
    conn = connect(path)
    try:
        with transaction(conn):
            cursor = conn.execute(f"INSERT INTO calibrations ({', '.join(_COLUMNS)}) "
                                  f"VALUES ({', '.join('?' * len(_COLUMNS))})", values)
        cal.id = cursor.lastrowid
        return cal.id
    except sqlite3.DatabaseError as exc:
        raise write_error(Path(path), exc) from None
    finally:
        conn.close()


def latest_calibration(path: Path | str, device: str, amp: str = "off", layout: str = "nchw") -> Calibration | None:
    """The newest calibration of `device` on this machine at this precision and layout; None if there is
    none (or no database yet)."""
    from netprobe.history.record import fingerprint
    from netprobe.history.store import connect

    if not Path(path).expanduser().is_file():
        return None
    conn = connect(path, create=False)
    try:
        row = conn.execute(f"SELECT id, {', '.join(_COLUMNS)} FROM calibrations WHERE machine_id = ? AND device = ? "
                           "AND amp = ? AND layout = ? ORDER BY created DESC, id DESC LIMIT 1",
                           (fingerprint()["machine_id"], device, amp, layout)).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    data = dict(zip(("id", *_COLUMNS), row, strict=True))
    for key in ("models", "residuals", "fingerprint"):
        data[key] = json.loads(data[key])
    data["efficiency"] = Efficiency.from_dict(json.loads(data["efficiency"]))
    return Calibration(**data)


def efficiency_here(device: str, amp: str = "off", channels_last: bool = False,
                    db: str | Path | None = None) -> tuple[GPU, Efficiency, str]:
    """The device at hand for a prediction, its efficiencies and where they come from: the newest
    calibration in the results database (with the roofs it measured), else the fit's starting values
    against roofs measured now — and the note says which."""
    import torch

    from netprobe.history.store import default_path
    from netprobe.prediction.fit import DEFAULT_START
    from netprobe.timing import AMP_DTYPES, memory_bandwidth_gbs, peak_tflops

    cal = latest_calibration(Path(db).expanduser() if db is not None else default_path(), device, amp,
                             "nhwc" if channels_last else "nchw")
    if cal is not None:
        note = cal.note + (f"; torch is {torch.__version__} now" if cal.torch != torch.__version__ else "")
        return local_device(device, amp, cal.peak_tflops, cal.bandwidth_gbs), cal.efficiency, note
    dtype = AMP_DTYPES[amp]
    here = local_device(device, amp, peak_tflops(device, dtype), memory_bandwidth_gbs(device, dtype))
    note = (f"uncalibrated: default efficiencies ({DEFAULT_START.compute['dense_conv.fwd']:.0%} of the matmul peak, "
            f"{DEFAULT_START.memory['batch_norm']:.0%} of the copy bandwidth measured now, "
            f"{DEFAULT_START.launch_us:g} µs a kernel); run netprobe predict --calibrate --device {device}")
    return here, DEFAULT_START, note
