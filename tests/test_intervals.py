"""Intervals on measured speeds: the 90% bootstrap intervals cover the truth on synthetic step times of
known spread; history diff and bench --baseline compare two runs row by row, with a verdict and exit
codes for CI; every measured row carries its interval and keeps its step times."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
from cli_checks import one_error_line, run_cli

import netprobe.bench.runs  # where bench's runs call benchmark: patched there
import netprobe.history
from netprobe.bench import BenchConfig, BenchResult
from netprobe.bench.config import fill_times
from netprobe.history.record import record, run_document
from netprobe.intervals import Interval, kept_steps, median_rate, slower_beyond, speed_ratio, verdict
from netprobe.timing import StepTimes

FACTS = {"cpu": "Test CPU 9000", "cpus": 8, "usable_cores": 8, "memory_mb": 32_000, "arch": "x86_64", "board": "",
         "gpus": [], "driver": "", "os": "Linux-test", "python": "3.11.7"}
SPEC = "mobilenetv3_small:classes=10"
TINY_BENCH = ["bench", SPEC, "--device", "cpu", "--batch", "2", "--imgsz", "32", "--warmup", "0", "--iters", "1"]


def steps_of(median_ms: float, spread: float, n: int, rng: random.Random) -> list[float]:
    """Step times whose true median is `median_ms` (log-normal: the median of exp(N(0, s)) is 1)."""
    return [median_ms * math.exp(rng.gauss(0, spread)) for _ in range(n)]


# ---- the intervals ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spread", [0.05, 0.3])
def test_the_rate_interval_covers_the_true_median_rate(spread):
    covered = 0
    for trial in range(100):
        steps = steps_of(50.0, spread, 20, random.Random(trial))
        rate = median_rate(steps, items_per_step=8)
        covered += rate.low <= 8 * 1e3 / 50.0 <= rate.high
    assert covered >= 85


@pytest.mark.parametrize("spread", [0.05, 0.3])
def test_the_ratio_interval_covers_the_true_ratio(spread):
    covered = 0
    for trial in range(100):
        rng = random.Random(1000 + trial)
        base, other = steps_of(50.0, spread, 20, rng), steps_of(40.0, spread, 20, rng)
        ratio = speed_ratio(base, other)
        covered += ratio.low <= 50.0 / 40.0 <= ratio.high
    assert covered >= 85


def test_equal_speeds_are_mostly_no_difference_and_a_clear_gap_is_a_verdict():
    same = sum(verdict(speed_ratio(steps_of(50, 0.1, 20, random.Random(t)), steps_of(50, 0.1, 20, random.Random(-t))))
               == "no difference" for t in range(1, 101))
    assert same >= 85  # a false verdict at most about as often as the 10% the interval allows
    rng = random.Random(7)
    faster = speed_ratio(steps_of(50, 0.05, 20, rng), steps_of(40, 0.05, 20, rng))
    assert verdict(faster) == "faster" and faster.value == pytest.approx(1.25, rel=0.05)
    assert verdict(speed_ratio(steps_of(40, 0.05, 20, rng), steps_of(50, 0.05, 20, rng))) == "slower"


def test_intervals_are_seeded_ordered_and_narrow_with_many_steps():
    steps = steps_of(20.0, 0.1, 30, random.Random(3))
    assert median_rate(steps, 4) == median_rate(list(steps), 4)  # the same steps: the same interval
    rate = median_rate(steps, 4)
    assert rate.low <= rate.value <= rate.high
    assert rate.value == pytest.approx(4e3 / sorted(steps)[14:16][0], rel=0.1)
    many = median_rate(steps_of(20.0, 0.1, 2000, random.Random(3)), 4)
    assert many.half_width < rate.half_width and not many.wide
    assert median_rate([20.0]) is None and speed_ratio([20.0, 21.0], [5.0]) is None  # one step: no spread


def test_a_wide_interval_is_flagged_and_the_limit_reads_as_step_time():
    assert Interval(100, 80, 120).wide and not Interval(100, 95, 105).wide
    assert slower_beyond(Interval(0.9, 0.88, 0.92), 0.05)  # 10% slower, surely more than 5%
    assert not slower_beyond(Interval(0.9, 0.7, 1.1), 0.05)  # maybe slower: not with confidence
    assert not slower_beyond(Interval(0.96, 0.955, 0.965), 0.05)  # slower, but within 5% of the step time
    assert slower_beyond(0.9, 0.05) and not slower_beyond(0.97, 0.05)  # no interval kept: the ratio alone


# ---- every measured row -----------------------------------------------------------------------------

def test_a_measured_row_has_its_interval_and_keeps_its_steps():
    steps = [[10.0 + i % 3, 20.0, 1.0] for i in range(12)]
    result = BenchResult("x", "cpu", "fp32", 4, 32, "train", "ok", fwd_macs=1, bwd_macs=2, peak_tflops=1.0)
    fill_times(result, StepTimes(steps), BenchConfig("mobilenetv3_small", batch=4))
    low, high = result.imgs_per_s_ci90
    assert low <= result.imgs_per_s <= high and low >= 4e3 / 34 and high <= 4e3 / 31
    assert result.step_times_ms == [31.0, 32.0, 33.0] * 4
    assert 0 < len(kept_steps([1e-9] * 250_001)) <= 100_000 and kept_steps([1e-9])[0] > 0  # what the database takes


# ---- history diff -----------------------------------------------------------------------------------

def bench_row(spec: str, median_ms: float, seed: int, batch: int = 2, kept: bool = True) -> dict:
    steps = steps_of(median_ms, 0.03, 20, random.Random(seed))
    rate = median_rate(steps, batch)
    row = BenchResult(spec, "cpu", "fp32", batch, 32, "train", "ok", step_ms=median_ms, imgs_per_s=rate.value,
                        imgs_per_s_ci90=rate.bounds() if kept else None, step_times_ms=steps if kept else [])
    return row.to_dict()


def keep(db: Path, *rows: dict) -> int:
    envelope = {"device": {"device": "cpu", "torch": "2.13.0+cpu", "threads": 2, "name": "Test CPU 9000"},
                "results": list(rows), "note": None}
    return record(db, run_document(envelope, ["netprobe", "bench"], facts=FACTS))


def diff(db: Path, *args: str, columns: str = "200"):
    return run_cli("history", "diff", *args, "--db", str(db), columns=int(columns))


def test_history_diff_gives_the_ratio_its_interval_and_a_verdict_per_row(db):
    a = keep(db, bench_row("resnet18", 100, 1), bench_row("efficientnet_b0", 100, 2))
    b = keep(db, bench_row("resnet18", 125, 3), bench_row("efficientnet_b0", 80, 4))
    shown = diff(db, str(a), str(b), "--format", "json")
    assert shown.exit_code == 0, shown.output
    rows = {r["spec"]: r for r in json.loads(shown.stdout)["rows"]}
    slower, faster = rows["resnet18"], rows["efficientnet_b0"]
    assert slower["verdict"] == "slower" and slower["ratio"] == pytest.approx(0.8, rel=0.03)
    assert faster["verdict"] == "faster" and faster["ratio"] == pytest.approx(1.25, rel=0.03)
    for row in rows.values():
        low, high = row["ratio_ci90"]
        assert low <= row["ratio"] <= high and high - low < 0.1


@pytest.mark.parametrize(("limit", "code"), [("5%", 1), ("10", 1), ("30%", 0), ("0.5%", 1)])
def test_fail_if_slower_exits_1_only_past_the_limit(db, limit, code):
    a = keep(db, bench_row("resnet18", 100, 1))
    b = keep(db, bench_row("resnet18", 120, 2))  # 20% longer steps
    shown = diff(db, str(a), str(b), "--fail-if-slower", limit)
    assert shown.exit_code == code, shown.output
    assert ("slower by more than that: resnet18" in shown.stdout) == (code == 1)
    assert diff(db, str(b), str(a), "--fail-if-slower", limit).exit_code == 0  # the other way round: faster


def test_a_difference_within_the_noise_never_fails(db):
    a = keep(db, bench_row("resnet18", 100, 1))
    b = keep(db, bench_row("resnet18", 100, 2))
    shown = diff(db, str(a), str(b), "--fail-if-slower", "0%", "--format", "json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["rows"][0]["verdict"] == "no difference"


def test_unmatched_rows_are_named_and_old_runs_give_the_bare_ratio(db):
    a = keep(db, bench_row("resnet18", 100, 1, kept=False), bench_row("resnet50", 100, 2))
    b = keep(db, bench_row("resnet18", 200, 3), bench_row("resnet50", 100, 4, batch=4))
    data = json.loads(diff(db, str(a), str(b), "--format", "json").stdout)
    (row,) = data["rows"]
    assert row["verdict"] == "no interval" and row["ratio_ci90"] is None and row["ratio"] == pytest.approx(0.5, 0.05)
    assert data["only_a"] == ["resnet50 b2 32px fp32 train"] and data["only_b"] == ["resnet50 b4 32px fp32 train"]
    shown = diff(db, str(a), str(b), "--fail-if-slower", "5%")
    assert shown.exit_code == 1  # without an interval, the ratio alone decides
    assert "only in A: resnet50 b2" in shown.stdout and "no interval" in shown.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["1", "99"], "no run '99'"),
    (["1", "2", "--fail-if-slower", "five"], "--fail-if-slower 'five' is not a percentage"),
    (["1", "2", "--fail-if-slower=-5%"], "is not a percentage"),
    (["1", "3"], "no row measured alike"),
])
def test_history_diff_refuses_bad_input_in_one_line(db, args, needle):
    keep(db, bench_row("resnet18", 100, 1))
    keep(db, bench_row("resnet18", 100, 2))
    keep(db, bench_row("resnet50", 100, 3))
    one_error_line(diff(db, *args), needle)


def test_history_diff_keeps_every_number_whole_at_80_columns(db):
    a = keep(db, bench_row("efficientnetv2_s:fused=1-3", 100, 1), bench_row("resnet18", 10, 2))
    b = keep(db, bench_row("efficientnetv2_s:fused=1-3", 300, 3), bench_row("resnet18", 10.5, 4))
    shown, full = diff(db, str(a), str(b), columns="80"), diff(db, str(a), str(b), "--format", "markdown")
    assert shown.exit_code == 0 and all(len(line) <= 80 for line in shown.stdout.splitlines())
    assert "…" not in shown.stdout
    for number in re.findall(r"\d[\d,]*\.\d+", full.stdout):
        assert number in shown.stdout, number


# ---- bench --baseline -------------------------------------------------------------------------------

def fake_benchmark(median_ms: float):
    calls = []

    def measure(config, on_step=None, on_status=None):
        calls.append(config)
        return BenchResult(**{k: v for k, v in bench_row(getattr(config.spec, "label", config.spec), median_ms,
                                                           len(calls), config.batch).items() if k != "stages"})

    return measure, calls


def test_bench_against_a_baseline_run_says_how_it_compares_and_fails_past_the_limit(cli, db, monkeypatch):
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", fake_benchmark(100)[0])
    assert cli(*TINY_BENCH, "--db", str(db)).exit_code == 0
    (base,) = netprobe.history.open(db).runs()
    measure, calls = fake_benchmark(150)
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", measure)
    shown = cli(*TINY_BENCH, "--db", str(db), "--baseline", str(base.id), "--fail-if-slower", "5%",
                                "--format", "json")
    assert shown.exit_code == 1 and len(calls) == 1
    data = json.loads(shown.stdout)
    (row,) = data["baseline"]["rows"]
    assert row["verdict"] == "slower" and row["ratio"] == pytest.approx(2 / 3, rel=0.03)
    assert data["baseline"]["failed"] == [f"{SPEC} b2 32px fp32 train"]
    assert data["results"][0]["imgs_per_s_ci90"] and len(data["results"][0]["step_times_ms"]) == 20
    kept = netprobe.history.open(db).results(with_data=True)[-1]
    assert kept.data["step_times_ms"] == data["results"][0]["step_times_ms"]  # kept for later diffs


@pytest.mark.parametrize(("extra", "needle"), [
    (["--baseline", "42"], "no run '42'"),
    (["--baseline", "1", "--batch", "4"], "has no row measured like these"),
    (["--baseline", "1", "--fail-if-slower", "5%%"], "is not a percentage"),
    (["--fail-if-slower", "5%"], "add --baseline"),
])
def test_bench_refuses_a_bad_baseline_before_measuring(cli, db, monkeypatch, extra, needle):
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", fake_benchmark(100)[0])
    assert cli(*TINY_BENCH, "--db", str(db)).exit_code == 0
    measure, calls = fake_benchmark(100)
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", measure)
    one_error_line(cli(*TINY_BENCH, "--db", str(db), *extra), needle)
    assert calls == []


def test_the_bench_table_keeps_intervals_whole_at_80_columns(cli, db, monkeypatch):
    args = [*TINY_BENCH, "--batch", "2,16", "--no-save"]
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", fake_benchmark(100)[0])
    shown = cli(*args, columns=80)
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", fake_benchmark(100)[0])  # the same steps again
    full = cli(*args, "--format", "markdown")
    assert shown.exit_code == 0 and all(len(line) <= 80 for line in shown.stdout.splitlines())
    assert re.search(r"\d+\.\d ±\d+\.\d", shown.stdout) and "…" not in shown.stdout
    for number in re.findall(r"\d[\d,]*\.\d+", full.stdout):
        assert number in shown.stdout, number


def test_compare_rows_carry_intervals_over_every_rounds_steps(cli, monkeypatch):
    import netprobe.compare

    medians = {"mobilenetv3_small:classes=10": 100.0, "efficientnet_b0:classes=10": 80.0}
    seeds = iter(range(100))

    def measure(config):  # each round of each variant: 20 steps around the variant's own median
        spec = getattr(config.spec, "label", config.spec)
        return BenchResult(**{k: v for k, v in bench_row(spec, medians[spec], next(seeds), config.batch).items()
                                if k != "stages"})

    monkeypatch.setattr(netprobe.compare, "benchmark", measure)
    variants = netprobe.compare.spec_variants(list(medians), 2, 64)
    rows = netprobe.compare.run(variants, netprobe.compare.Settings("cpu", 2, 64, warmup=0, iters=1, rounds=3)).rows
    first, second = rows
    assert len(second.step_times_ms) == 3 * 20 and first.speedup_ci90 is None  # the first against itself: 1
    low, high = second.speedup_ci90
    assert low < 1.25 < high and high - low < 0.1 and second.speedup == pytest.approx(1.25, rel=0.03)
    for row in rows:
        low, high = row.imgs_per_s_ci90
        assert low <= row.train_imgs_per_s <= high
    shown = cli("history", "--help")
    assert "diff" in shown.stdout


def test_speed_against_eager_torch_has_its_interval():
    eager, deployed = (BenchResult(**{k: v for k, v in bench_row("resnet18", ms, seed).items() if k != "stages"})
                       for ms, seed in ((100, 1), (50, 2)))
    eager.mode = deployed.mode = "infer"
    deployed.runtime = "onnxruntime"
    netprobe.bench.runs.relate_runtimes([eager, deployed])
    low, high = deployed.vs_torch_ci90
    assert low <= deployed.vs_torch <= high and deployed.vs_torch == pytest.approx(2.0, rel=0.05)
    assert eager.vs_torch == 1.0 and eager.vs_torch_ci90 is None  # itself: exactly 1
