"""Side-by-side experiments: the paper's Fused-MBConv ablation (Table 3), its batch/size table
(Table 2), or any specs. Variants run interleaved in rounds (A B C D, A B C D, ...) so that
drift on a noisy machine hits all of them alike; each is built fresh and freed in between.
`run` returns a `Comparison`: the rows, the device, the settings and the busy-machine verdict,
everything `netprobe compare` prints (`Comparison.to_dict()` is its JSON).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace

from netprobe.archs.zoo import ARCHS
from netprobe.bench import LIMITS, BenchConfig, BenchResult, benchmark, validate
from netprobe.counting import count
from netprobe.errors import InputError, check_range
from netprobe.reference import PAPER_TABLE2_V100, PAPER_TABLE3
from netprobe.render import plural
from netprobe.spec import CUSTOM, parse_spec
from netprobe.target import resolve, size_text
from netprobe.timing import MAX_WARMUP_S, busy_line, device_info, resolve_device

EXPERIMENTS = ("fused-stages", "batch-imgsz")
FUSED_VARIANTS = (("No fused", "none"), ("Fused stage1-3", "1-3"), ("Fused stage1-5", "1-5"),
                  ("Fused stage1-7", "1-7"))


@dataclass
class Settings:
    device: str
    batch: int
    imgsz: int | str  # N or "HxW"
    amp: str = "off"
    channels_last: bool = False
    warmup: int = 1
    iters: int = 2
    rounds: int = 3
    breakdown: bool = False  # profile the last round: time by op kind, roofline per stage
    max_warmup_s: float = MAX_WARMUP_S  # the ceiling of each measurement's warm-up
    runtimes: tuple[str, ...] = ()  # empty: train steps in eager torch; else inference in each runtime (torch first)
    precisions: tuple[str, ...] = ("fp32",)  # with runtimes: each runtime other than torch in each of these
    calib: str | None = None  # int8's calibration (see netprobe.runtimes.calibration); None: synthetic


MAX_ROUNDS = 1000


@dataclass
class Variant:
    label: str
    spec: object  # anything netprobe.target.resolve takes: a spec string, a Target, an nn.Module
    batch: int
    imgsz: int | str | None
    paper: dict | None = None

    def config(self, settings: Settings, runtime: str | None = None, precision: str = "fp32") -> BenchConfig:
        """The measurement of this variant under `settings`: its train step, or with runtimes its inference
        in `runtime` at `precision`."""
        mode = "infer" if settings.runtimes else "train"
        return BenchConfig(self.spec, settings.device, self.batch, self.imgsz, mode, settings.amp,
                           settings.channels_last, warmup=settings.warmup, iters=settings.iters,
                           max_warmup_s=settings.max_warmup_s, runtime=runtime or "torch", precision=precision,
                           calib=settings.calib)

    def configs(self, settings: Settings) -> list[BenchConfig]:
        """One measurement per runtime and precision (eager torch: fp32; the train step alone without runtimes)."""
        return [self.config(settings, r, p) for r in settings.runtimes or (None,)
                for p in (settings.precisions if r not in (None, "torch") else ("fp32",))]


@dataclass
class CompareRow:
    """One variant's counts, its measured throughput over rounds (train steps; or inference in one
    runtime), and the paper's figures."""

    label: str
    spec: str
    batch: int
    imgsz: int | str
    params: int
    macs: int  # per image at the run size
    macs_base: int  # per image at the base arch's own image size (what the paper counts)
    status: str = "ok"
    train_imgs_per_s: float | None = None  # without runtimes: train steps per second x batch
    runtime: str = "torch"
    precision: str = "fp32"  # with runtimes: asked of the runtime
    precision_ran: str = ""  # ... and what it reports its layers ran in
    mode: str = "train"
    infer_imgs_per_s: float | None = None  # with runtimes: inference in `runtime`
    vs_torch: float | None = None  # with runtimes: this variant's speed here over its speed in eager torch
    imgs_per_s_min: float | None = None
    imgs_per_s_max: float | None = None
    rounds: int = 0
    speedup: float | None = None
    tflops: float | None = None
    peak_fraction: float | None = None
    peak_mem_mb: float | None = None
    paper: dict | None = None
    deviation: dict | None = None
    measurements: list[float] = field(default_factory=list)
    breakdown: list[dict] | None = None  # the last round's, with Settings.breakdown
    roofline: dict | None = None
    breakdown_note: str | None = None
    round_spread: float | None = None  # max / min of the rounds' imgs/s
    step_spread: float | None = None  # the largest p90 / p10 of step times in any round
    peak_tflops: list[float] = field(default_factory=list)  # the matmul peak each round measured
    steady: bool = True  # False: in some round the timed steps were still getting faster
    warmup_capped: bool = False  # in some round warm-up stopped at its ceiling before step times settled
    loss: str = ""  # what the timed train step's loss was (bench's wording: cross-entropy or a surrogate)

    def to_dict(self) -> dict:
        return asdict(self)


def known_archs() -> list[str]:
    return [*ARCHS, CUSTOM]


def default_settings(device: str, base_imgsz: int, batch: int | None, imgsz: int | str | None,
                     iters: int | None, rounds: int | None, **options) -> Settings:
    """CUDA: batch 24 at the base's own size (the paper's setting); CPU: small enough for minutes.

    Only what is not given (None) takes a default; a value given is checked like bench's.
    """
    cuda = device == "cuda"

    def given(value: int | None, default: int) -> int:
        return default if value is None else value

    s = Settings(device, given(batch, 24 if cuda else 8), given(imgsz, base_imgsz if cuda else 128),
                 warmup=3 if cuda else 1, iters=given(iters, 10 if cuda else 2), rounds=given(rounds, 3), **options)
    for name in ("batch", "iters"):
        check_range(name, getattr(s, name), *LIMITS[name])
    check_range("rounds", s.rounds, 1, MAX_ROUNDS)
    return s


def fused_stage_variants(base: str, fused_kernel: str, batch: int, imgsz: int) -> list[Variant]:
    """The paper's Table 3 rows for `base`, with its figures beside when the base is EfficientNet-B4."""
    parse_spec(base)
    if ":" in base:
        raise InputError(f"--base {base!r}: give a plain arch name; the experiment sets the fused stages itself")
    n_stages = len(parse_spec(base).table.stages)
    variants = []
    for label, fused in FUSED_VARIANTS:
        last = 0 if fused == "none" else int(fused.split("-")[1])
        if last > n_stages:
            continue
        spec = f"{base}:fused={fused}" + (f",fused_kernel={fused_kernel}" if fused_kernel != "keep" else "")
        paper = None
        if base == "efficientnet_b4":
            p, flops, top1, tpu, v100 = PAPER_TABLE3[fused]
            paper = {"params_m": p, "macs_b": flops, "top1": top1, "tpu_imgs_per_s": tpu, "v100_imgs_per_s": v100}
        variants.append(Variant(label, spec, batch, imgsz, paper))
    return variants


def batch_imgsz_variants(base: str, batches: list[int], sizes: list[int]) -> list[Variant]:
    """The paper's Table 2 grid: each (image size, batch) cell, with the V100 figure where it has one."""
    parse_spec(base)
    variants = []
    for size in sizes:
        for batch in batches:
            paper = None
            if base == "efficientnet_b6" and (size, batch) in PAPER_TABLE2_V100:
                v100 = PAPER_TABLE2_V100[(size, batch)]
                paper = {"v100_imgs_per_s": v100, "v100_oom": v100 is None}
            variants.append(Variant(f"{size}px b{batch}", base, batch, size, paper))
    return variants


def spec_variants(specs: list, batch: int, imgsz: int | str | None) -> list[Variant]:
    """Any models side by side, each at `imgsz` or its own size."""
    variants = []
    for s in specs:
        target = resolve(s)
        variants.append(Variant(target.label, target, batch, imgsz))
    return variants


def check_variants(variants: list[Variant], settings: Settings) -> None:
    """Refuse, before any work, a variant that bench would refuse."""
    for v in variants:
        for config in v.configs(settings):
            validate(config)


def _counted_row(v: Variant) -> CompareRow:
    target = resolve(v.spec)
    model = target.meta_model()
    size = target.input_size(v.imgsz)
    macs = count(model, (1, target.in_chans, *size)).macs
    base = target.imgsz or size
    macs_base = macs if base == size else count(model, (1, target.in_chans, *base)).macs
    return CompareRow(v.label, target.label, v.batch, size_text(size), sum(p.numel() for p in model.parameters()), macs,
                      macs_base, paper=v.paper)


@dataclass
class Comparison:
    """One comparison: its variants under one set of settings, and (after `rounds`) a row per variant.

    `to_dict()` is the JSON `netprobe compare --format json` prints; `settings_line` and `note` are the
    lines its table shows above and below.
    """

    experiment: str  # fused-stages | batch-imgsz | specs
    variants: list[Variant]
    settings: Settings
    rows: list[CompareRow] = field(default_factory=list)
    finished: int = 0  # rounds finished

    @property
    def info(self) -> dict:
        return device_info(self.settings.device)

    @property
    def batches(self) -> list[int]:
        return sorted({v.batch for v in self.variants})

    @property
    def sizes(self) -> list[str]:
        return list(dict.fromkeys(str(v.imgsz) for v in self.variants))

    @property
    def settings_line(self) -> str:
        s, info = self.settings, self.info
        return (f"{self.experiment} on {info['name']} ({s.device}, torch {info['torch']}, "
                f"{plural(info['threads'], 'thread')}): batch {','.join(map(str, self.batches))}, "
                f"{','.join(self.sizes)} px, amp {s.amp}, channels_last {s.channels_last}, "
                f"{plural(s.rounds, 'round')} × {plural(s.iters, 'iter')} (+{s.warmup} warm-up, until steady), "
                "variants interleaved" + ("; the last round also profiled (--breakdown)" if s.breakdown else "")
                + (f"; inference in {', '.join(s.runtimes)} ({', '.join(s.precisions)}; eager torch fp32), each "
                   "runtime's outputs checked against eager torch's" if s.runtimes else "")
                + (f"; int8 calibration {s.calib or 'synthetic'}" if "int8" in s.precisions and s.runtimes else ""))

    @property
    def note(self) -> str:
        return busy_note(self.rows)

    def to_dict(self) -> dict:
        grid = self.experiment == "batch-imgsz"
        return {"experiment": self.experiment, "device": self.info, "settings": self.settings.__dict__,
                "batch": self.batches if grid else self.settings.batch,
                "imgsz": self.sizes if grid else self.variants[0].imgsz,
                "rows": [r.to_dict() for r in self.rows], "note": self.note or None}

    def rounds(self, on_measure: Callable[[str, int], None] | None = None) -> Iterator[list[CompareRow]]:
        """Count every variant, then measure them interleaved; yields the rows after each round.

        A caller that stops early (Ctrl-C) keeps the rows of the rounds finished (`finished`).
        """
        jobs = [(v, config) for v in self.variants for config in v.configs(self.settings)]
        counted = {id(v): _counted_row(v) for v in self.variants}
        self.rows = [replace(counted[id(v)], runtime=c.runtime, precision=c.precision, mode=c.mode) for v, c in jobs]
        results: list[list[BenchResult]] = [[] for _ in jobs]
        rounds = self.settings.rounds
        for r in range(rounds):
            for i, (v, config) in enumerate(jobs):
                if on_measure:
                    on_measure(v.label + (f" ({config.runtime} {config.precision})" if self.settings.runtimes else ""),
                               r)
                if self.rows[i].status == "oom":
                    continue  # it will not fit in a later round either
                last = self.settings.breakdown and r == rounds - 1  # profiled steps add to the last round only
                results[i].append(benchmark(replace(config, breakdown=last)))
                _update(self.rows[i], results[i])
            _relate(self.rows)
            self.finished = r + 1
            yield self.rows


def run(variants: list[Variant], settings: Settings, on_measure: Callable[[str, int], None] | None = None,
        experiment: str = "specs") -> Comparison:
    """Count every variant, measure them in interleaved rounds, and return the whole comparison."""
    comparison = Comparison(experiment, variants, replace(settings, device=resolve_device(settings.device)))
    for _ in comparison.rounds(on_measure):
        pass
    return comparison


def _update(row: CompareRow, results: list[BenchResult]) -> None:
    ok = [r for r in results if r.status in ("ok", "drift")]  # drift: timed, its outputs moved (said in status)
    last = results[-1]
    if last.status == "drift":
        row.status = f"drift: lowest cosine {last.cosine_min:.3f} (top-1 agreement {last.top1_agreement or 0:.0%})"
    if last.breakdown or last.breakdown_note:
        row.breakdown, row.roofline, row.breakdown_note = last.breakdown, last.roofline, last.breakdown_note
    if last.status != "ok" and not ok:
        row.status = last.status if last.status == "oom" else f"{last.status}: {last.error}"
        row.peak_mem_mb = last.peak_mem_mb
        return
    row.precision_ran = ok[-1].precision_ran if ok else ""
    row.measurements = [r.imgs_per_s for r in ok]
    row.rounds = len(ok)
    setattr(row, f"{row.mode}_imgs_per_s", statistics.median(row.measurements))
    row.imgs_per_s_min, row.imgs_per_s_max = min(row.measurements), max(row.measurements)
    row.tflops = _median([r.tflops for r in ok])  # None where the step could not be counted
    row.peak_fraction = _median([r.peak_fraction for r in ok])
    row.peak_mem_mb = max(r.peak_mem_mb or 0 for r in ok)
    row.round_spread = row.imgs_per_s_max / row.imgs_per_s_min if row.imgs_per_s_min else None
    row.step_spread = max((r.step_p90_ms / r.step_p10_ms for r in ok if r.step_p10_ms), default=None)
    row.peak_tflops = [r.peak_measured_tflops or r.peak_tflops for r in ok if r.peak_tflops]
    row.steady = all(r.steady for r in ok)
    row.warmup_capped = any(r.warmup_capped for r in ok)
    row.loss = ok[-1].loss


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def busy_note(rows: list[CompareRow]) -> str:
    """bench's busy-machine note, with the spread of each variant over rounds as further evidence."""
    return busy_line([r.step_spread for r in rows if r.step_spread], [p for r in rows for p in r.peak_tflops],
                     all(r.steady for r in rows), [r.round_spread for r in rows if r.round_spread],
                     capped=any(r.warmup_capped for r in rows))


def _relate(rows: list[CompareRow]) -> None:
    """Speed relative to the first variant in the same runtime, and to the same variant in eager torch;
    deviation from the paper's figures where it has them."""
    speed = {id(row): row.train_imgs_per_s if row.mode == "train" else row.infer_imgs_per_s for row in rows}
    first = {}
    for row in rows:
        first.setdefault((row.runtime, row.precision), speed[id(row)])
    eager = {row.label: speed[id(row)] for row in rows if row.runtime == "torch"}
    paper_ref = (rows[0].paper or {}).get("v100_imgs_per_s")
    for row in rows:
        ref, mine = first[(row.runtime, row.precision)], speed[id(row)]
        row.speedup = mine / ref if ref and mine else None
        if row.mode == "infer":
            row.vs_torch = mine / eager[row.label] if eager.get(row.label) and mine else None
        if row.paper and "params_m" in row.paper:
            row.deviation = {
                "params": row.params / 1e6 / row.paper["params_m"] - 1,
                "macs": row.macs_base / 1e9 / row.paper["macs_b"] - 1,
                "paper_v100_speedup": row.paper["v100_imgs_per_s"] / paper_ref if paper_ref else None,
            }
