"""bench: the measurement's arithmetic, OOM as a result, the search, and bad input."""

import pytest
import torch

import netprobe.bench.measure
from netprobe import timing
from netprobe.bench import BenchConfig, benchmark, grid, largest_fitting, run_grid, validate
from netprobe.errors import InputError

TINY = dict(device="cpu", batch=2, imgsz=64, warmup=1, iters=3, max_warmup_s=2)  # no test needs steady times


@pytest.mark.slow
def test_a_train_step_is_split_into_its_phases():
    r = benchmark(BenchConfig("mobilenetv3_small:classes=10", **TINY))
    assert r.status == "ok", r.error
    assert r.fwd_ms > 0 and r.bwd_ms > 0 and r.opt_ms > 0
    assert r.step_p10_ms <= r.step_ms <= r.step_p90_ms
    # each phase is part of its step, so its median is at most the steps' median (under any load)
    assert max(r.fwd_ms, r.bwd_ms, r.opt_ms) <= r.step_ms
    assert r.imgs_per_s == pytest.approx(2 / (r.step_ms / 1e3))
    # TFLOP/s from the counted step: forward and backward MACs, not 3 x forward
    assert r.fwd_macs == r.macs_per_img and r.macs_per_img < r.bwd_macs < 2 * r.macs_per_img
    assert r.tflops == pytest.approx(2 * (r.fwd_macs + r.bwd_macs) * 2 / (r.step_ms / 1e3) / 1e12)
    assert r.peak_fraction == pytest.approx(r.tflops / r.peak_tflops) and r.peak_tflops >= r.peak_measured_tflops > 0
    assert r.mem_kind == "cpu peak RSS growth" and r.peak_mem_mb is not None


@pytest.mark.slow
def test_breakdown_and_roofline_come_with_the_timing():
    r = benchmark(BenchConfig("efficientnet_b0:classes=10,depth=0.5", breakdown=True, **TINY))
    assert r.status == "ok", r.error
    whole = [row for row in r.breakdown if row["stage"] is None]
    assert sum(row["time_share"] for row in whole) == pytest.approx(1)
    assert {"kind", "stage", "fwd_ms", "bwd_ms", "time_share", "macs_share", "bytes_share", "gflops"} <= set(whole[0])
    roof = r.roofline
    assert roof["dtype"] == "fp32" and roof["peak_tflops"] == r.peak_tflops and roof["bandwidth_gbs"] > 0
    assert [s["name"] for s in roof["stages"]] == ["stem", *[f"stage{i}" for i in range(1, 8)], "head"]
    assert all(s["measured_ms"] > 0 and s["predicted_ms"] > 0 and s["bound"] in ("memory", "compute")
               for s in roof["stages"])
    assert {s["family"] for s in roof["stages"]} == {"MBConv", "other"}


def test_inference_has_no_backward_or_optimizer():
    r = benchmark(BenchConfig("efficientnet_b0", mode="infer", **TINY))
    assert r.status == "ok"
    assert r.bwd_ms is None and r.opt_ms is None
    assert r.fwd_ms == r.step_ms
    assert r.tflops == pytest.approx(2 * r.macs_per_img * 2 / (r.step_ms / 1e3) / 1e12)
    assert r.fwd_macs == r.macs_per_img and r.bwd_macs is None


@pytest.mark.slow
def test_amp_channels_last_and_adamw_run():
    r = benchmark(BenchConfig("mobilenetv3_small:classes=10", amp="bf16", channels_last=True,
                                  optimizer="adamw", **TINY))
    assert r.status == "ok", r.error
    assert r.dtype == "bf16" and r.channels_last


@pytest.mark.slow
def test_per_stage_times_cover_every_stage_at_its_real_input():
    r = benchmark(BenchConfig("efficientnet_b0:classes=10", per_stage=True, **TINY))
    names = [s.name for s in r.stages]
    assert names == ["stem", *[f"stage{i}" for i in range(1, 8)], "head"]
    assert r.stages[0].in_shape == [3, 64, 64] and r.stages[1].in_shape == [32, 32, 32]
    assert sum(s.macs for s in r.stages) == r.macs_per_img * 2
    assert all(s.fwd_ms > 0 and s.bwd_ms > 0 for s in r.stages)


@pytest.mark.slow
def test_out_of_memory_is_a_result_and_the_grid_goes_on(monkeypatch):
    real = netprobe.bench.measure.measure_eager
    calls = []

    def measure(m):
        calls.append(m.config.batch)
        if m.config.batch == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(m)

    monkeypatch.setattr(netprobe.bench.measure, "measure_eager", measure)
    configs = grid(["mobilenetv3_small:classes=10"], [2, 4, 3], [64], ["train"], device="cpu", warmup=0, iters=1)
    results = list(run_grid(configs))
    assert [r.status for r in results] == ["ok", "oom", "ok"]
    assert results[1].imgs_per_s is None and results[1].error == "out of memory"


@pytest.mark.parametrize("exc,shown", [(RuntimeError("cuDNN went away\nmore"), "RuntimeError: cuDNN went away"),
                                       (AssertionError(), "AssertionError")])
def test_other_failures_are_errors_not_crashes(monkeypatch, exc, shown):
    monkeypatch.setattr(netprobe.bench.measure, "measure_eager", lambda *a: (_ for _ in ()).throw(exc))
    r = benchmark(BenchConfig("mobilenetv3_small", **TINY))
    assert r.status == "error" and r.error == shown


@pytest.mark.parametrize("limit", [1, 2, 37, 64, 1000])
def test_find_max_batch_searches_to_the_exact_limit(limit):
    tried = []

    def fits(b):
        tried.append(b)
        return b <= limit

    assert largest_fitting(fits) == limit
    assert len(tried) <= 2 * limit.bit_length() + 2  # doubling then bisection, not a scan


def test_find_max_batch_when_nothing_fits():
    assert largest_fitting(lambda b: False) == 0


def test_cuda_asked_for_but_absent_is_one_clear_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(InputError) as err:
        timing.resolve_device("cuda")
    assert "CUDA is not available" in str(err.value) and "cpu" in str(err.value)
    assert timing.resolve_device("auto") == "cpu"


@pytest.mark.parametrize("field,value,message", [
    ("batch", 0, "batch must be from 1 to 65,536"), ("batch", 10**20, "batch must be from 1 to 65,536"),
    ("iters", 0, "iters must be from 1 to 100,000"), ("iters", 10**20, "iters must be from 1 to 100,000"),
    ("warmup", -1, "warmup must be from 0 to 10,000"), ("warmup", 10**20, "warmup must be from 0 to 10,000"),
    ("imgsz", 16, "at least 32"), ("imgsz", -5, "at least 32"), ("imgsz", "64x16", "at least 32"),
    ("imgsz", 10**20, "at most 8192"),
])
def test_bad_settings_are_refused_before_any_work(field, value, message):
    with pytest.raises(InputError, match=message):
        validate(BenchConfig("efficientnet_b0", **{field: value}))


def test_grid_is_one_config_per_spec_batch_size_mode():
    configs = grid(["a", "b"], [1, 2], [32, 64], ["train", "infer"])
    assert len(configs) == 16
    assert {(c.spec, c.batch, c.imgsz, c.mode) for c in configs} == {
        (s, b, (i, i), m) for s in "ab" for b in (1, 2) for i in (32, 64) for m in ("train", "infer")}  # sizes: (H, W)


class FakeClock:
    """Phase times from a script: a step's n phases are the next n numbers."""

    def __init__(self, times):
        self.times, self.marks = iter(times), 0

    def mark(self):
        self.marks += 1

    def phases_ms(self):
        n, self.marks = self.marks - 1, 0
        return [next(self.times) for _ in range(n)]


def test_the_steady_state_loop_keeps_every_phase_of_every_timed_step(monkeypatch):
    class Step:
        phases = ("forward", "backward")

        def __call__(self, clock):
            for _ in range(3):
                clock.mark()

    warm = [10.0, 10.0, 8.0, 8.0, 6.0, 6.0, 5.0, 5.0, 5.0, 5.0]  # falling, then steady after the fifth step
    script = [9.0, 9.0, *warm, 1.0, 2.0, 1.5, 2.5, 1.0, 3.0, 2.0, 2.0]
    monkeypatch.setattr(timing.loop, "PhaseClock", lambda device: FakeClock(script))
    ticks = []
    times = timing.measure_steps(Step(), "cpu", warmup=2, iters=4, on_step=lambda: ticks.append(1), min_warmup_s=0)
    assert times.per_step == [[1.0, 2.0], [1.5, 2.5], [1.0, 3.0], [2.0, 2.0]] and times.phases == Step.phases
    assert times.steps_ms == [3.0, 4.0, 4.0, 4.0] and times.step_ms == 4.0 and times.phase_ms(1) == 2.25
    assert times.warmup_steps == 5 and not times.warmup_capped and times.steady
    assert len(ticks) == 1 + 2 + 4  # the first run, the first `warmup` warm-up steps, each timed step
