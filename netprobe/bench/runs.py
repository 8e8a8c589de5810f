"""Many configurations: a grid of them, a run that keeps every result with the device and the busy
verdict (`BenchRun`, whose `to_dict()` is `bench --format json`), and the largest batch that fits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from netprobe.bench.config import LIMITS, BenchConfig, BenchResult
from netprobe.bench.measure import benchmark
from netprobe.errors import InputError
from netprobe.intervals import speed_ratio
from netprobe.timing import busy_line, device_info, resolve_device


def busy_note(results: list[BenchResult]) -> str:
    """A line for under the table when the numbers look taken on a busy machine, else ''."""
    ok = [r for r in results if r.status == "ok"]
    return busy_line([r.step_p90_ms / r.step_p10_ms for r in ok if r.step_p10_ms],
                     [r.peak_measured_tflops or r.peak_tflops for r in ok if r.peak_tflops], all(r.steady for r in ok),
                     capped=any(r.warmup_capped for r in ok),
                     suspect_roofs=[f"{r.spec} b{r.batch} {r.imgsz}px" for r in ok if r.roof_suspect])


def grid(specs: list, batches: list[int], sizes: list, modes: list[str], runtimes: list[str] = ("torch",),
         precisions: list[str] = ("fp32",), **options) -> list[BenchConfig]:
    """One configuration per (spec, imgsz, batch, mode, runtime, precision), in that nesting order; eager
    torch, the reference, runs fp32 alone."""
    return [BenchConfig(spec, batch=b, imgsz=s, mode=m, runtime=r, precision=p, **options)
            for spec in specs for s in sizes for b in batches for m in modes for r in runtimes
            for p in (("fp32",) if r == "torch" else precisions)]


def cpu_friendly(configs: list[BenchConfig]) -> tuple[list[BenchConfig], list]:
    """The configurations with each detector given no size on a CPU at CPU_IMGSZ (its own size takes
    minutes per train step there), and the targets so changed."""
    from netprobe.detect.builtin import cpu_friendly_size

    changed, out = {}, []
    for c in configs:
        size = cpu_friendly_size(c.spec, c.device) if c.imgsz is None else None
        if size:
            changed[id(c.spec)] = c.spec
        out.append(replace(c, imgsz=size) if size else c)
    return out, list(changed.values())


def run_grid(configs: list[BenchConfig], on_step: Callable[[], None] | None = None) -> Iterator[BenchResult]:
    """Measure each configuration in turn; stop early (Ctrl-C) and what was yielded is kept."""
    for config in configs:
        yield benchmark(config, on_step)


def largest_fitting(fits: Callable[[int], bool], start: int = 1, limit: int = 65536) -> int:
    """The largest batch for which `fits(batch)` holds: doubling until it fails, then bisection.

    Returns 0 when not even `start` fits.
    """
    if not fits(start):
        return 0
    good, bad = start, None
    while bad is None:
        trial = good * 2
        if trial > limit:
            return good
        if fits(trial):
            good = trial
        else:
            bad = trial
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    return good


def find_max_batch(config: BenchConfig, limit: int = LIMITS["batch"][1]) -> BenchResult | None:
    """The largest batch of `config` that runs (a short measurement at each batch tried: 1 warm-up, 2
    timed steps), as that batch's result; None when not even batch 1 fits. Only running out of memory
    means a batch does not fit: any other failure stops the search, and its result (the error) is returned.
    CUDA only: on the CPU, memory is shared with the system and swaps rather than failing cleanly."""
    if resolve_device(config.device) != "cuda":
        raise InputError("--find-max-batch needs --device cuda: on the CPU, memory is shared with the system and "
                         "swaps rather than failing cleanly")
    tried: dict[int, BenchResult] = {}

    def fits(b: int) -> bool:
        tried[b] = benchmark(replace(config, batch=b, warmup=1, iters=2, per_stage=False))
        if tried[b].status not in ("ok", "oom"):
            raise SearchStopped(tried[b])
        return tried[b].status == "ok"

    try:
        best = largest_fitting(fits, 1, limit)
    except SearchStopped as stop:
        return stop.result
    return tried[best] if best else None


class SearchStopped(Exception):
    """A batch failed for a reason other than memory: the search cannot say what fits."""

    def __init__(self, result: BenchResult) -> None:
        super().__init__(result.error)
        self.result = result


@dataclass
class BenchRun:
    """Everything one bench run found: the device, each configuration's result, the roofs measured and
    the busy-machine verdict. `to_dict()` is the JSON `netprobe bench --format json` prints."""

    device: str
    results: list[BenchResult] = field(default_factory=list)
    planned: int = 0  # configurations asked for; fewer results: the run was interrupted

    @property
    def info(self) -> dict:
        """The device as measured: its facts and the matmul roof of each dtype run (tf32: fp32 whose
        convolutions ran in TF32), a roof measured during a stall apart (not kept as the device's)."""
        info = device_info(self.device)
        roofs = [r for r in self.results if r.peak_tflops]
        info["peak_tflops_measured"] = {r.roof_dtype or r.dtype: r.peak_tflops for r in roofs if not r.roof_suspect}
        suspect = {r.roof_dtype or r.dtype: r.peak_tflops for r in roofs if r.roof_suspect}
        if suspect:
            info["peak_tflops_suspect"] = suspect
        return info

    @property
    def note(self) -> str:
        return busy_note(self.results)

    def to_dict(self) -> dict:
        return {"device": self.info, "results": [r.to_dict() for r in self.results], "note": self.note or None}

    def measure(self, configs: list[BenchConfig], on_step: Callable[[], None] | None = None,
                max_batch: bool = False, on_status: Callable[[str], None] | None = None) -> Iterator[BenchResult]:
        """Measure each configuration (or find each one's largest batch), keeping every result as it comes;
        an interrupt between configurations leaves the finished ones in `results`."""
        self.planned += len(configs)
        for config in configs:
            result = find_max_batch(config) if max_batch else benchmark(config, on_step, on_status)
            if result is not None:
                self.results.append(result)
                relate_runtimes(self.results)
                yield result


def run(configs: list[BenchConfig], on_step: Callable[[], None] | None = None, max_batch: bool = False) -> BenchRun:
    """Measure every configuration; the run's results, device and verdict (see `BenchRun`)."""
    if not configs:
        raise InputError("nothing to measure: give at least one configuration")
    devices = {resolve_device(c.device) for c in configs}
    if len(devices) > 1:
        raise InputError(f"one run measures one device; these configurations ask for {', '.join(sorted(devices))}")
    session = BenchRun(devices.pop())
    for _ in session.measure(configs, on_step, max_batch):
        pass
    return session



def relate_runtimes(results: list[BenchResult]) -> None:
    """Each result's speed against eager torch's for the same model, batch, size and mode (eager torch
    itself: 1.0), where both were measured."""
    eager = {(r.spec, r.batch, r.imgsz, r.mode): r for r in results if r.runtime == "torch" and r.step_ms}
    for r in results:
        base = eager.get((r.spec, r.batch, r.imgsz, r.mode))
        r.vs_torch = base.step_ms / r.step_ms if base and r.step_ms else None
        if base and r.step_ms and r is not base and r.vs_torch_ci90 is None:  # eager torch itself: exactly 1
            ratio = speed_ratio(base.step_times_ms, r.step_times_ms)
            r.vs_torch_ci90 = ratio.bounds() if ratio else None
    fp32 = {(r.spec, r.batch, r.imgsz, r.mode, r.runtime): r.step_ms for r in results
            if r.precision == "fp32" and r.step_ms}
    for r in results:
        base = fp32.get((r.spec, r.batch, r.imgsz, r.mode, r.runtime))
        r.vs_fp32 = base / r.step_ms if base and r.step_ms and r.runtime != "torch" else None
