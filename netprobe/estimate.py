"""What a bench or compare will do and cost, before it runs (`--dry-run`, and the warning a long run
starts with): each configuration counted on meta, and a time estimate from the counted work and this
machine's two measured roofs (dense matmul rate, copy bandwidth). The estimate is a roofline bound —
per layer, the larger of FLOPs / peak and bytes / bandwidth, summed — times the steps the run takes at
least: a prediction, and a lower one (real steps are slower), never stored or shown as a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LONG_RUN_S = 600.0  # a run expected to take longer says so when it starts


@dataclass
class PlannedConfig:
    """One configuration as it will run: its counted work and its predicted time (a lower bound)."""

    label: str
    batch: int
    imgsz: int | str
    mode: str
    runtime: str
    steps: int  # the steps it takes at least: warm-up (its minimum) + timed, per round, all rounds
    macs_per_img: int | None = None  # forward, counted
    step_macs: int | None = None  # the whole batch's step: forward (+ backward when training), counted
    step_bytes: int | None = None  # what that step's ops move, nothing fused
    bound_ms: float | None = None  # one step at the roofs (per layer max of FLOPs / peak, bytes / bandwidth)
    memory_mb: float | None = None  # eager torch: the step's peak memory as the allocator holds it, counted on meta
    error: str | None = None  # why it could not be counted

    @property
    def estimate_s(self) -> float | None:
        return self.bound_ms * self.steps / 1e3 if self.bound_ms is not None else None


@dataclass
class Plan:
    """Every configuration of a run, the roofs the estimate used, and the total (a lower bound)."""

    device: str
    peak_tflops: float
    bandwidth_gbs: float
    configs: list[PlannedConfig] = field(default_factory=list)

    @property
    def estimate_s(self) -> float:
        return sum(c.estimate_s or 0.0 for c in self.configs)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {**{k: v for k, v in asdict(self).items() if k != "configs"},
                "configs": [{**asdict(c), "estimate_s": c.estimate_s} for c in self.configs],
                "estimate_s": self.estimate_s, "estimate_kind": ESTIMATE_KIND}


ESTIMATE_KIND = ("prediction, a lower bound: the counted step at this machine's measured roofs (per layer, the "
                 "larger of FLOPs / matmul peak and bytes / copy bandwidth) times the steps at least; real steps "
                 "are slower")


def plan(configs: list, rounds: int = 1, memory: bool = True) -> Plan:
    """Count each `BenchConfig` (on meta) and predict its time from the roofs measured now; runs nothing
    of the model. `rounds`: how many times each configuration is measured (compare's rounds); `memory`:
    count each step's peak memory too (what --dry-run shows; the long-run warning needs only the time)."""
    device, peak, bandwidth = _roofs(configs)
    return Plan(device, peak, bandwidth, [_planned(c, rounds, peak, bandwidth, memory) for c in configs])


def _planned(config, rounds: int, peak_tflops: float, bandwidth_gbs: float, memory: bool) -> PlannedConfig:
    from netprobe.bench import validate
    from netprobe.bench.measure import counted_step, output_classes
    from netprobe.counting import count
    from netprobe.errors import one_line
    from netprobe.prediction.memory import count_memory
    from netprobe.roofline import roofline
    from netprobe.sizes import size_text
    from netprobe.timing import AMP_DTYPES, DTYPE_NAMES

    target = validate(config)
    size = target.input_size(config.imgsz)
    steps = _steps(config, rounds)
    row = PlannedConfig(target.label, config.batch, size_text(size), config.mode, config.runtime, steps)
    train, dtype = config.mode == "train", AMP_DTYPES[config.amp]
    try:
        counted = count(target.meta_model(), (1, target.in_chans, *size))
        row.macs_per_img = counted.macs
        if memory and config.runtime == "torch":  # a deployed runtime's memory is its own
            row.memory_mb = count_memory(target, config.batch, size, config.mode, config.amp, config.channels_last,
                                         config.optimizer).total_mb()
        step = counted_step(target, target.meta_model, config, size, dtype, output_classes(target, counted))
    except Exception as exc:  # data-dependent code the meta device cannot run: said in the row
        row.error = f"cannot count it on the meta device ({one_line(exc)})"
        return row
    roof = roofline(step, peak_tflops, bandwidth_gbs, DTYPE_NAMES[dtype], lambda path: "step", backward=train)
    row.step_macs = sum(s.macs for s in roof.stages)
    row.step_bytes = sum(s.bytes for s in roof.stages)
    row.bound_ms = sum(s.predicted_ms for s in roof.stages)
    return row


def _roofs(configs: list) -> tuple[str, float, float]:
    """The device the configurations run on, and its matmul peak and copy bandwidth measured now."""
    from netprobe.timing import AMP_DTYPES, device_roof, memory_bandwidth_gbs, resolve_device

    device = resolve_device(configs[0].device) if configs else "cpu"
    dtype = AMP_DTYPES[configs[0].amp] if configs else AMP_DTYPES["off"]
    peak, _ = device_roof(device, dtype)
    return device, peak, memory_bandwidth_gbs(device, dtype)


def _steps(config, rounds: int) -> int:
    """The steps a configuration takes at least: warm-up (its minimum) and timed, per round, all rounds."""
    return (config.warmup + config.iters) * (2 if config.per_stage else 1) * rounds


CEILING_MARGIN = 3.0  # how far above the counted bound the quick ceiling is kept (tests check it is above)


def ceiling_s(configs: list, rounds: int = 1) -> float:
    """A quick over-estimate of `plan(configs).estimate_s`, from the forward counted at batch 1 alone (no
    train step counted): per step, a train step's work as four forwards' FLOPs at the matmul peak plus
    its bytes at the copy bandwidth (every element op reading two operands and writing one, every leaf
    output written and read, the weights, and for training the optimizer's eight passes over them),
    all times CEILING_MARGIN. Where even this is under LONG_RUN_S, the long-run warning needs no plan."""
    from netprobe.bench import validate
    from netprobe.counting import count

    if not configs:
        return 0.0
    _, peak, bandwidth = _roofs(configs)
    total = 0.0
    for config in configs:
        target = validate(config)
        size = target.input_size(config.imgsz)
        counted = count(target.meta_model(), (1, target.in_chans, *size))
        elems = 3 * counted.other_ops + 2 * sum(m.leaf_out_elems for m in counted.modules.values())
        train = config.mode == "train"
        per_img = (4 if train else 1) * (2 * counted.macs / (peak * 1e12) + 4 * elems / (bandwidth * 1e9))
        weights = 4 * counted.params * (1 + (8 if train else 0)) / (bandwidth * 1e9)
        total += _steps(config, rounds) * (config.batch * per_img + weights)
    return CEILING_MARGIN * total


def long_run_line(estimate: Plan) -> str | None:
    """The line a run starts with when even its lower-bound estimate is over LONG_RUN_S; else None."""
    if estimate.estimate_s <= LONG_RUN_S:
        return None
    return (f"this run is expected to take over {estimate.estimate_s / 60:.0f} min (a lower bound from the counted "
            "work at this machine's measured roofs; --dry-run shows each configuration)")
