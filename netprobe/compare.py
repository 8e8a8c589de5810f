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

from netprobe import defaults
from netprobe.bench import BenchConfig, BenchResult, benchmark, validate
from netprobe.bench.measure import count_forward
from netprobe.counting import count
from netprobe.detect.builtin import cpu_friendly_size
from netprobe.errors import InputError, check_range
from netprobe.intervals import kept_steps, median_rate, speed_ratio
from netprobe.reference import PAPER_TABLE2, PAPER_TABLE2_V100, PAPER_TABLE3
from netprobe.render import plural
from netprobe.sizes import Size, as_size, size_text
from netprobe.spec import parse_spec
from netprobe.target import resolve
from netprobe.timing import busy_line, device_info, resolve_device

EXPERIMENTS = ("fused-stages", "batch-imgsz")
FUSED_VARIANTS = (("No fused", "none"), ("Fused stage1-3", "1-3"), ("Fused stage1-5", "1-5"),
                  ("Fused stage1-7", "1-7"))


@dataclass
class Settings:
    device: str
    batch: int
    imgsz: Size
    amp: str = "off"
    channels_last: bool = False
    warmup: int = 1
    iters: int = 2
    rounds: int = 3
    breakdown: bool = False  # profile the last round: time by op kind, roofline per stage
    max_warmup_s: float = defaults.MAX_WARMUP_S  # the ceiling of each measurement's warm-up
    runtimes: tuple[str, ...] = ()  # empty: train steps in eager torch; else inference in each runtime (torch first)
    tf32: str | None = None  # on | off (CUDA); None: PyTorch's settings
    precisions: tuple[str, ...] = ("fp32",)  # with runtimes: each runtime other than torch in each of these
    calib: str | None = None  # int8's calibration (see netprobe.runtimes.calibration); None: synthetic

    def __post_init__(self) -> None:
        self.imgsz = as_size(self.imgsz)  # N, "HxW" or (H, W) given in Python: parsed once, here


@dataclass
class Variant:
    label: str
    spec: object  # anything netprobe.target.resolve takes: a spec string, a Target, an nn.Module
    batch: int
    imgsz: Size | None  # None: the model's own
    paper: dict | None = None

    def __post_init__(self) -> None:
        self.imgsz = as_size(self.imgsz)

    def config(self, settings: Settings, runtime: str | None = None, precision: str = "fp32") -> BenchConfig:
        """The measurement of this variant under `settings`: its train step, or with runtimes its inference
        in `runtime` at `precision`."""
        mode = "infer" if settings.runtimes else "train"
        return BenchConfig(self.spec, settings.device, self.batch, self.imgsz, mode, settings.amp,
                           settings.channels_last, warmup=settings.warmup, iters=settings.iters,
                           max_warmup_s=settings.max_warmup_s, runtime=runtime or "torch", tf32=settings.tf32,
                           precision=precision, calib=settings.calib)

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
    imgs_per_s_ci90: list[float] | None = None  # [low, high]: 90% interval, bootstrap over every round's steps
    imgs_per_s_wide: bool = False  # that interval reaches more than 10% from the median: a noisy figure
    rounds: int = 0
    speedup: float | None = None
    speedup_ci90: list[float] | None = None  # bootstrap over this row's steps and the first row's
    vs_torch_ci90: list[float] | None = None
    tflops: float | None = None
    peak_fraction: float | None = None
    roof_suspect: bool = False  # some round's matmul roof stayed below the rate it achieved (see bench)
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
    step_times_ms: list[float] = field(default_factory=list)  # every timed step of every round, in order
    failed_in: str = ""  # export | load | run | parity: where a runtime failed this variant (the command exits 2)

    def to_dict(self) -> dict:
        return asdict(self)


def default_settings(device: str, base_imgsz: Size, batch: int | None, imgsz: Size | int | str | None,
                     iters: int | None, rounds: int | None, **options) -> Settings:
    """CUDA: batch 24 at the base's own size (the paper's setting); CPU: small enough for minutes
    (netprobe.defaults.COMPARE_CUDA / COMPARE_CPU).

    Only what is not given (None) takes a default; a value given is checked like bench's.
    """
    cuda = device == "cuda"
    own = {**defaults.COMPARE_CUDA, "imgsz": base_imgsz} if cuda else defaults.COMPARE_CPU

    def given(value: object, default: object) -> object:
        return default if value is None else value

    s = Settings(device, given(batch, own["batch"]), given(imgsz, own["imgsz"]), warmup=own["warmup"],
                 iters=given(iters, own["iters"]), rounds=given(rounds, defaults.COMPARE_ROUNDS), **options)
    for name in ("batch", "iters", "rounds"):
        check_range(name, getattr(s, name), *defaults.LIMITS[name])
    return s


def fused_stage_variants(base: str, fused_kernel: str, batch: int, imgsz: Size) -> list[Variant]:
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


def batch_imgsz_variants(base: str, batches: list[int], sizes: list[Size]) -> list[Variant]:
    """The paper's Table 2 grid: each (image size, batch) cell, with the V100 figure where it has one."""
    parse_spec(base)
    variants = []
    for size in map(as_size, sizes):
        for batch in batches:
            paper = None
            if base == "efficientnet_b6" and (size_text(size), batch) in PAPER_TABLE2_V100:
                v100 = PAPER_TABLE2_V100[(size_text(size), batch)]
                paper = {"v100_imgs_per_s": v100, "v100_oom": v100 is None}
            variants.append(Variant(f"{size_text(size)}px b{batch}", base, batch, size, paper))
    return variants


def spec_variants(specs: list, batch: int, imgsz: Size | None, device: str = "cuda") -> list[Variant]:
    """Any models side by side, each at `imgsz` or its own size (a detector on the CPU: CPU_IMGSZ)."""
    variants = []
    for s in specs:
        target = resolve(s)
        size = imgsz if imgsz is not None else cpu_friendly_size(target, device) or target.imgsz
        variants.append(Variant(target.label, target, batch, size))
    return variants


def check_variants(variants: list[Variant], settings: Settings) -> None:
    """Refuse, before any work, a variant that bench would refuse."""
    for v in variants:
        for config in v.configs(settings):
            validate(config)


def count_variant(v: Variant) -> CompareRow:
    target = resolve(v.spec)
    size = target.input_size(v.imgsz)
    counted, countable = count_forward(target, size)  # on meta, or on a real copy where the code needs values
    model, macs = countable(), counted.macs
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
        return list(dict.fromkeys(str(size_text(v.imgsz)) for v in self.variants if v.imgsz is not None))

    @property
    def settings_line(self) -> str:
        s, info = self.settings, self.info
        sizes = ",".join(self.sizes) + " px" if self.sizes else "each model at its own size"
        return (f"{self.experiment} on {info['name']} ({s.device}, torch {info['torch']}, "
                f"{plural(info['threads'], 'thread')}): batch {','.join(map(str, self.batches))}, "
                f"{sizes}, amp {s.amp}, channels_last {s.channels_last}, "
                + (f"tf32 {s.tf32}, " if s.tf32 else "") +
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
        first = self.variants[0].imgsz
        paper = paper_table2(self.variants[0].spec) if grid and isinstance(self.variants[0].spec, str) else None
        return {"experiment": self.experiment, "device": self.info,
                "settings": {**self.settings.__dict__, "imgsz": size_text(self.settings.imgsz)},
                "batch": self.batches if grid else self.settings.batch,
                "imgsz": self.sizes if grid else None if first is None else size_text(first),
                "rows": [r.to_dict() for r in self.rows], "note": self.note or None,
                **({"paper_table2": {"source": TABLE2_SOURCE, "rows": paper}} if paper else {})}

    def rounds(self, on_measure: Callable[[str, int], None] | None = None) -> Iterator[list[CompareRow]]:
        """Count every variant, then measure them interleaved; yields the rows after each round.

        A caller that stops early (Ctrl-C) keeps the rows of the rounds finished (`finished`).
        """
        jobs = [(v, config) for v in self.variants for config in v.configs(self.settings)]
        counted = {id(v): count_variant(v) for v in self.variants}
        self.rows = [replace(counted[id(v)], runtime=c.runtime, precision=c.precision,
                             mode=c.mode) for v, c in jobs]
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
                update_row(self.rows[i], results[i])
            relate_rows(self.rows)
            self.finished = r + 1
            yield self.rows


def run(variants: list[Variant], settings: Settings, on_measure: Callable[[str, int], None] | None = None,
        experiment: str = "specs") -> Comparison:
    """Count every variant, measure them in interleaved rounds, and return the whole comparison."""
    comparison = Comparison(experiment, variants, replace(settings, device=resolve_device(settings.device)))
    for _ in comparison.rounds(on_measure):
        pass
    return comparison


def _agreement_text(result: BenchResult) -> str:
    if result.head_agreement:
        from netprobe.runtimes.drift import heads_text

        return f"head agreement {heads_text(result.head_agreement)}"
    return f"top-1 agreement {result.top1_agreement or 0:.0%}"


def update_row(row: CompareRow, results: list[BenchResult]) -> None:
    ok = [r for r in results if r.status in ("ok", "drift")]  # drift: timed, its outputs moved (said in status)
    last = results[-1]
    if last.status == "drift":
        row.status = f"drift: lowest cosine {last.cosine_min:.3f} ({_agreement_text(last)})"
    if last.breakdown or last.breakdown_note:
        row.breakdown, row.roofline, row.breakdown_note = last.breakdown, last.roofline, last.breakdown_note
    row.failed_in = next((r.failed_in for r in results if r.failed_in), "")
    if last.status != "ok" and not ok:
        row.status = last.status if last.status == "oom" else f"{last.status}: {last.error}"
        row.peak_mem_mb = last.peak_mem_mb
        return
    row.precision_ran = ok[-1].precision_ran if ok else ""
    row.measurements = [r.imgs_per_s for r in ok]
    row.rounds = len(ok)
    setattr(row, f"{row.mode}_imgs_per_s", statistics.median(row.measurements))
    row.imgs_per_s_min, row.imgs_per_s_max = min(row.measurements), max(row.measurements)
    row.step_times_ms = kept_steps([t for r in ok for t in r.step_times_ms])
    rate = median_rate(row.step_times_ms, row.batch)
    row.imgs_per_s_ci90, row.imgs_per_s_wide = (rate.bounds(), rate.wide) if rate else (None, False)
    row.tflops = _median([r.tflops for r in ok])  # None where the step could not be counted
    row.peak_fraction = _median([r.peak_fraction for r in ok])
    row.roof_suspect = any(r.roof_suspect for r in ok)
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
                     capped=any(r.warmup_capped for r in rows),
                     suspect_roofs=[r.label for r in rows if r.roof_suspect])


TABLE2_SOURCE = ("EfficientNetV2 paper (arXiv:2104.00298) Table 2, EfficientNet-B6 training imgs/s: published "
                 "figures, not measured here")


def paper_table2(base: str) -> list[dict] | None:
    """The paper's Table 2 as rows (for EfficientNet-B6, its base), to show beside a batch-imgsz run at any
    sizes; None for another base. OOM where the paper says out of memory."""
    if base != "efficientnet_b6":
        return None
    return [{"imgsz": size, "top1": top1, "tpu_b32": tpu32, "tpu_b128": tpu128 or "OOM", "v100_b12": v100_12 or "OOM",
             "v100_b24": v100_24 or "OOM"} for size, (top1, tpu32, tpu128, v100_12, v100_24) in PAPER_TABLE2.items()]


PAPER_MACS_CLOSE = 0.10  # a deviation from the paper's MACs beyond this is worth a hint, when one explains it


def paper_kernel_hint(rows: list[CompareRow]) -> str | None:
    """For rows whose MACs are far from the paper's (Table 3), the other --fused-kernel choice counted
    at the same size: a line naming it where it comes closer to the paper. None where none does."""
    found = []
    seen = set()
    for row in rows:
        dev = (row.deviation or {}).get("macs")
        if dev is None or abs(dev) <= PAPER_MACS_CLOSE or not row.paper or row.spec in seen:
            continue  # a variant once, however many runtimes and precisions it ran in
        seen.add(row.spec)
        spec = parse_spec(row.spec)
        kernel = dict(spec.options).get("fused_kernel")
        rest = ",".join(f"{k}={v}" for k, v in spec.options if k != "fused_kernel")
        other = f"{row.spec},fused_kernel=3" if kernel is None else f"{spec.arch}:{rest}"
        target = resolve(other)
        macs = count(target.meta_model(), (1, target.in_chans, *target.imgsz)).macs
        other_dev = macs / 1e9 / row.paper["macs_b"] - 1
        if abs(other_dev) < abs(dev):
            option = "--fused-kernel 3" if kernel is None else "--fused-kernel keep"
            found.append(f"{row.label} is {100 * dev:+.1f}% from the paper's MACs; with {option} it counts "
                         f"{macs / 1e9:.2f}B, {100 * other_dev:+.1f}%")
    if not found:
        return None
    return "hint: " + "; ".join(found) + " (counted now, at the base's own size)."


def relate_rows(rows: list[CompareRow]) -> None:
    """Speed relative to the first variant in the same runtime, and to the same variant in eager torch;
    deviation from the paper's figures where it has them."""
    speed = {id(row): row.train_imgs_per_s if row.mode == "train" else row.infer_imgs_per_s for row in rows}
    first: dict[tuple[str, str], CompareRow] = {}
    for row in rows:
        first.setdefault((row.runtime, row.precision), row)
    eager = {row.label: row for row in rows if row.runtime == "torch"}
    paper_ref = (rows[0].paper or {}).get("v100_imgs_per_s")
    for row in rows:
        ref, mine = speed[id(first[(row.runtime, row.precision)])], speed[id(row)]
        row.speedup = mine / ref if ref and mine else None
        row.speedup_ci90 = _ratio_bounds(first[(row.runtime, row.precision)], row) if row.speedup else None
        if row.mode == "infer":
            torch_row = eager.get(row.label)
            row.vs_torch = mine / speed[id(torch_row)] if torch_row and speed[id(torch_row)] and mine else None
            row.vs_torch_ci90 = _ratio_bounds(torch_row, row) if row.vs_torch else None
        if row.paper and "params_m" in row.paper:
            row.deviation = {
                "params": row.params / 1e6 / row.paper["params_m"] - 1,
                "macs": row.macs_base / 1e9 / row.paper["macs_b"] - 1,
                "paper_v100_speedup": row.paper["v100_imgs_per_s"] / paper_ref if paper_ref else None,
            }


def _ratio_bounds(base: CompareRow, row: CompareRow) -> list[float] | None:
    """The 90% interval of `row`'s speed over `base`'s, by bootstrap over both rows' steps; None for a
    row against itself (exactly 1)."""
    if base is row:
        return None
    ratio = speed_ratio(base.step_times_ms, row.step_times_ms, base.batch, row.batch)
    return ratio.bounds() if ratio else None


def predicted_rows(variants: list[Variant], gpus: str, amp: str = "off", channels_last: bool = False) -> list[dict]:
    """Each variant's train step predicted on each GPU in `gpus` (netprobe.prediction: a prediction,
    never a measurement), with the paper's figures beside where the variant has them."""
    from netprobe.prediction import predict_all

    rows = []
    for v in variants:
        row: dict = {"label": v.label, "spec": v.spec if isinstance(v.spec, str) else str(v.spec), "batch": v.batch,
                     "imgsz": None if v.imgsz is None else size_text(v.imgsz), "paper_v100": None, "kind": "prediction"}
        if v.paper:
            row["paper_v100"] = "OOM" if v.paper.get("v100_oom") else v.paper.get("v100_imgs_per_s")
        for p in predict_all(v.spec, gpus, v.batch, v.imgsz, "train", amp, channels_last):
            row[f"{p.gpu}_imgs_per_s"] = p.imgs_per_s
            row[f"{p.gpu}_mem_mb"] = p.peak_mem_mb
            row[f"{p.gpu}_fits"] = p.fits
            row["error_note"] = p.error_note
        rows.append(row)
    return rows
