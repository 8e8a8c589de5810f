"""The CUDA branches, run without a GPU: the few torch.cuda functions each branch calls are stubbed
(events, synchronize, memory stats, availability), and each test checks what the branch computes from
them. fp16 with a gradient scaler and --compile run for real on the CPU. Roofs measured during a stall
are caught (issue 28)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from cli_checks import one_error_line
from torch import nn

from netprobe import timing
from netprobe.bench import (
    BenchConfig,
    BenchResult,
    benchmark,
    busy_note,
    find_max_batch,
    grid,
    run_grid,
    runs,
    validate,
)
from netprobe.breakdown import OpTime, attribute, breakdown_step, event_tree
from netprobe.cli.bench import cuda_notes
from netprobe.errors import InputError
from netprobe.runtimes import get_runtime
from netprobe.runtimes.onnxruntime import CUDA, BoundInput, check_provider

TINY = "mobilenetv3_small:classes=10"


class FakeEvents:
    """torch.cuda.Event stand-ins on a scripted GPU timeline: each record() takes the next time (ms)."""

    def __init__(self, times_ms: list[float]) -> None:
        self.times = iter(times_ms)
        self.synced: list[float] = []
        fake = self

        class Event:
            def __init__(self, enable_timing: bool = False) -> None:
                assert enable_timing, "events must be created with enable_timing=True to be timed"

            def record(self) -> None:
                self.t = next(fake.times)

            def synchronize(self) -> None:
                fake.synced.append(self.t)

            def elapsed_time(self, end: Event) -> float:
                return end.t - self.t

        self.Event = Event


# ---- the clock -------------------------------------------------------------------------------------

def test_cuda_clock_reads_event_pairs_and_waits_once_on_the_last_mark(monkeypatch):
    events = FakeEvents([0.0, 2.5, 7.5, 8.0])
    monkeypatch.setattr(torch.cuda, "Event", events.Event)
    clock = timing.PhaseClock("cuda")
    for _ in range(4):
        clock.mark()
    assert clock.phases_ms() == [2.5, 5.0, 0.5]
    assert events.synced == [8.0]  # one wait, on the step's last mark, none inside the step
    assert clock.marks == []


def test_synchronize_waits_for_cuda_only(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: calls.append("sync"))
    timing.synchronize("cpu")
    assert calls == []
    timing.synchronize("cuda")
    assert calls == ["sync"]


def test_fastest_ms_on_cuda_is_the_fastest_event_pair(monkeypatch):
    events = FakeEvents([0, 4, 10, 13, 20, 26, 30, 35, 40, 47])
    monkeypatch.setattr(torch.cuda, "Event", events.Event)
    assert timing.fastest_ms(lambda: None, "cuda", min_reps=5, min_s=0.0) == 3


# ---- memory ----------------------------------------------------------------------------------------

@pytest.fixture
def cuda_memory(monkeypatch):
    """The caching allocator's statistics as a dict the stubs read and reset."""
    stats = {"allocated": 300 * 2**20, "reserved": 512 * 2**20, "resets": 0, "log": []}

    def reset() -> None:
        stats["resets"] += 1
        stats["log"].append("reset")

    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: stats["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: stats["reserved"])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: stats["log"].append("sync"))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: stats["log"].append("empty_cache"))
    return stats


def test_cuda_memory_probes_read_the_allocator(cuda_memory):
    assert timing.reset_peak("cuda") is None and cuda_memory["resets"] == 1
    assert timing.peak_mb("cuda", None) == (300.0, "cuda peak allocated")
    assert timing.peak_reserved_mb("cuda") == 512.0
    assert timing.peak_reserved_mb("cpu") is None
    timing.release_memory("cuda")
    assert cuda_memory["log"][-1] == "empty_cache"


def test_cuda_peak_is_reset_once_after_the_first_step_has_finished(cuda_memory):
    ran = []

    class Step:
        phases = ("forward",)

        def __call__(self, clock) -> None:
            ran.append(len(ran))
            cuda_memory["log"].append(f"step {len(ran)}")

        def release(self) -> None:
            ran.append("released")

    step = timing.PeakAfterFirstStep(Step(), "cuda")
    assert step.phases == ("forward",)
    for _ in range(4):
        step(None)
    step.release()
    assert cuda_memory["log"] == ["step 1", "sync", "reset", "step 2", "step 3", "step 4"]
    assert ran[-1] == "released"


def test_cpu_peak_is_never_reset_between_steps(cuda_memory):
    step = timing.PeakAfterFirstStep(lambda clock: None, "cpu")
    for _ in range(3):
        step(None)
    assert cuda_memory["resets"] == 0


# ---- out of memory ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("exc", "oom"), [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA error: out of memory"), True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
    (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False),
    (RuntimeError("CUDNN_STATUS_NOT_SUPPORTED"), False),
    (ValueError("out of memory"), False),  # only a runtime error's text counts
])
def test_oom_classification(exc, oom):
    assert timing.is_oom(exc) is oom


def _fake_benchmarks(monkeypatch, outcome):
    """find_max_batch with a stubbed GPU: each batch tried gets the status `outcome(batch)`."""
    tried = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)

    def fake(config, *args, **kwargs):
        tried.append(config.batch)
        status = outcome(config.batch)
        return BenchResult(TINY, "cuda", "fp32", config.batch, 32, "train", status,
                             error=None if status == "ok" else f"{status} at {config.batch}")

    monkeypatch.setattr(runs, "benchmark", fake)
    return tried


def test_find_max_batch_bisects_on_oom(monkeypatch):
    tried = _fake_benchmarks(monkeypatch, lambda b: "ok" if b <= 5 else "oom")
    found = find_max_batch(BenchConfig(TINY, device="cuda", imgsz=32))
    assert found.batch == 5 and found.status == "ok"
    assert tried == [1, 2, 4, 8, 6, 5]


def test_find_max_batch_stops_on_an_error_that_is_not_oom(monkeypatch):
    tried = _fake_benchmarks(monkeypatch, lambda b: "ok" if b < 4 else "error")
    found = find_max_batch(BenchConfig(TINY, device="cuda", imgsz=32))
    assert found.status == "error" and found.batch == 4 and found.error == "error at 4"
    assert tried == [1, 2, 4]  # no bisection below a batch that failed for another reason


# ---- roofs: the math mode, and a stall ------------------------------------------------------------

@pytest.fixture
def tf32_flags():
    """cuDNN's and cuBLAS's TF32 switches (properties monkeypatch cannot restore), set by the test, restored after."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32

    def set_flags(cudnn: bool, matmul: bool) -> None:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = cudnn, matmul

    yield set_flags
    set_flags(*saved)


@pytest.mark.parametrize(("device", "dtype", "cudnn_tf32", "name", "matmul_tf32"), [
    ("cuda", torch.float32, True, "tf32", True),  # PyTorch's default: convs in TF32, so the roof too
    ("cuda", torch.float32, False, "fp32", False),
    ("cuda", torch.bfloat16, True, "bf16", False),
    ("cpu", torch.float32, True, "fp32", False),
])
def test_the_roof_is_measured_in_the_math_mode_of_the_convolutions(tf32_flags, device, dtype, cudnn_tf32, name,
                                                                   matmul_tf32):
    tf32_flags(cudnn_tf32, False)
    assert timing.roof_dtype(device, dtype) == name
    with timing.roof_math(device, dtype):
        assert torch.backends.cuda.matmul.allow_tf32 is matmul_tf32
    assert torch.backends.cuda.matmul.allow_tf32 is False  # cuBLAS's own setting back


@pytest.mark.parametrize(("on", "cudnn", "matmul"), [(True, True, True), (False, False, False), (None, True, False)])
def test_tf32_mode_sets_both_libraries_and_restores_them(tf32_flags, on, cudnn, matmul):
    tf32_flags(True, False)
    with timing.tf32_mode(on):
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (cudnn, matmul)
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == (True, False)


def test_a_tf32_roof_is_never_taken_for_an_fp32_one(monkeypatch, tf32_flags):
    monkeypatch.setattr(timing.device, "_BEST_PEAK", {})
    monkeypatch.setattr(timing.device, "peak_tflops",
                        lambda device, dtype: 400.0 if torch.backends.cudnn.allow_tf32 else 60.0)
    tf32_flags(True, False)
    assert timing.device_roof("cuda", torch.float32) == (400.0, 400.0)
    with timing.tf32_mode(False):  # --tf32 off afterwards, same process: the fp32 roof, not the best TF32 one
        assert timing.device_roof("cuda", torch.float32) == (60.0, 60.0)
    assert set(timing.best_peaks()) == {("cuda", "tf32"), ("cuda", "fp32")}


def test_one_stalled_round_does_not_set_the_roof(monkeypatch):
    def rounds(times_ms):
        it = iter(times_ms)
        monkeypatch.setattr(timing.device, "fastest_ms", lambda *a: next(it))
        return timing.peak_tflops("cpu", torch.float32)

    assert rounds([5000.0, 10.0, 10.0]) == rounds([10.0, 10.0, 10.0])
    assert rounds([5000.0, 5000.0, 10.0]) < rounds([10.0, 10.0, 10.0])  # a stall through most rounds shows


def test_a_roof_below_the_achieved_rate_is_measured_again(monkeypatch):
    monkeypatch.setattr(timing.device, "_BEST_PEAK", {})
    monkeypatch.setattr(timing.device, "peak_tflops", lambda device, dtype: 0.2)
    assert timing.check_roof(0.06, "cpu", torch.float32, 0.003) == (0.2, False)
    assert timing.check_roof(0.06, "cpu", torch.float32, 0.2) == (0.2, False)
    assert timing.check_roof(None, "cpu", torch.float32, 0.2) == (0.2, False)


def test_a_roof_that_stays_below_the_achieved_rate_is_suspect(monkeypatch):
    monkeypatch.setattr(timing.device, "_BEST_PEAK", {})
    monkeypatch.setattr(timing.device, "peak_tflops", lambda device, dtype: 0.004)
    assert timing.check_roof(0.06, "cpu", torch.float32, 0.003) == (0.004, True)


def test_of_peak_is_never_above_100_percent_without_saying_the_roof_is_suspect(cli, monkeypatch, tmp_path):
    """A machine whose matmul measurement always stalls (the issue's 'peak fp32 0.00 TFLOP/s')."""
    monkeypatch.setattr(timing.device, "_BEST_PEAK", {})
    monkeypatch.setattr(timing.device, "peak_tflops", lambda device, dtype: 1e-6)
    args = ["bench", TINY, "--device", "cpu", "--batch", "2", "--imgsz", "32", "--warmup", "0", "--iters", "2",
            "--no-save"]
    out = tmp_path / "r.json"
    result = cli(*args, "--out", str(out), "--format", "markdown")  # markdown: no cell or line wrapped
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["results"][0]
    assert row["peak_fraction"] > 1 and row["roof_suspect"] is True
    assert json.loads(out.read_text())["device"]["peak_tflops_measured"] == {}  # not kept as the device's roof
    table = " ".join(result.stdout.split())
    assert f"| {100 * row['peak_fraction']:.1f}%? |" in table
    assert "(suspect: measured during a stall)" in table
    assert "stayed below the rate the run achieved" in table


def test_a_sound_roof_gives_a_plain_share(monkeypatch):
    monkeypatch.setattr(timing.device, "_BEST_PEAK", {})
    monkeypatch.setattr(timing.device, "peak_tflops", lambda device, dtype: 1e3)
    r = benchmark(BenchConfig(TINY, device="cpu", batch=2, imgsz=32, warmup=0, iters=2))
    assert r.status == "ok" and not r.roof_suspect and 0 < r.peak_fraction < 1 and r.roof_dtype == "fp32"
    assert "stayed below" not in busy_note([r])


# ---- --tf32 ----------------------------------------------------------------------------------------

def test_tf32_is_refused_on_the_cpu(cli):
    one_error_line(cli("bench", TINY, "--device", "cpu", "--tf32", "on", "--no-save"), "the CPU has no TF32")
    one_error_line(cli("compare", TINY, TINY, "--device", "cpu", "--tf32", "off", "--no-save"),
                   "the CPU has no TF32")


def test_tf32_takes_on_or_off_only(cli):
    result = cli("bench", TINY, "--tf32", "maybe")
    assert result.exit_code == 2 and "maybe" in result.output


def test_tf32_is_refused_for_an_exported_runtime():
    with pytest.raises(InputError, match="--tf32 applies to eager"):
        validate(BenchConfig(TINY, device="auto", mode="infer", runtime="onnxruntime", tf32="on"))


# ---- the profiler's device-side tree ---------------------------------------------------------------

def _event(name, start, end, cpu_us, device_us, children=(), parent=None):
    return SimpleNamespace(name=name, time_range=SimpleNamespace(start=start, end=end), cpu_time_total=cpu_us,
                           device_time_total=device_us, cpu_children=list(children), cpu_parent=parent,
                           device_type=torch.autograd.DeviceType.CPU)


def _profile():
    conv = _event("aten::conv2d", 12, 18, cpu_us=40, device_us=900)
    module = _event("np::fwd::stem", 11, 19, cpu_us=50, device_us=900, children=[conv])
    conv.cpu_parent = module
    phase = _event("np::phase::forward", 10, 20, cpu_us=60, device_us=900, children=[module])
    module.cpu_parent = phase
    kernel = _event("void cudnn::conv_kernel", 13, 17, cpu_us=0, device_us=900)
    kernel.device_type = torch.autograd.DeviceType.CUDA
    return [phase, module, conv, kernel]


def test_the_device_tree_times_ops_by_their_kernels():
    roots = event_tree(_profile(), on_device=True)
    assert [r.name for r in roots] == ["np::phase::forward"]  # the kernel is no host root
    times = attribute(roots, steps=1)
    assert [(t.path, t.direction, t.ms) for t in times] == [("stem", "fwd", 0.9)]


def test_the_host_tree_times_ops_by_their_cpu_time():
    times = attribute(event_tree(_profile(), on_device=False), steps=2)
    assert [(t.path, t.direction, t.ms) for t in times] == [("stem", "fwd", 0.02)]


def test_a_cuda_profile_without_kernel_time_is_a_note_not_a_zero_table(monkeypatch):
    import netprobe.breakdown as breakdown_module

    monkeypatch.setattr(breakdown_module, "profile_step",
                        lambda *a, **k: [OpTime("0", "fwd", "conv", 0.0), OpTime("1", "fwd", "norm", 0.0)])
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    found = breakdown_step(model, lambda clock: None, "cuda", mode="infer")
    assert found.records == [] and "no CUDA kernel" in found.note
    found = breakdown_step(model, lambda clock: None, "cpu", mode="infer")
    assert found.records and "no CUDA kernel" not in (found.note or "")


# ---- ONNX Runtime on CUDA --------------------------------------------------------------------------

def test_a_session_that_fell_back_to_the_cpu_is_refused():
    fell_back = SimpleNamespace(get_providers=lambda: ["CPUExecutionProvider"])
    with pytest.raises(RuntimeError, match=r"has no CUDAExecutionProvider \(it runs on CPUExecutionProvider\)"):
        check_provider(fell_back, CUDA)
    check_provider(SimpleNamespace(get_providers=lambda: [CUDA, "CPUExecutionProvider"]), CUDA)


@pytest.fixture
def onnx_model(tmp_path):
    pytest.importorskip("onnxruntime")
    runtime = get_runtime("onnxruntime")
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    x = torch.randn(2, 3, 16, 16)
    return runtime, model, x, runtime.export(model, x, Path(tmp_path), "m")


def test_loading_on_cuda_where_the_provider_is_missing_fails_in_one_line(onnx_model):
    runtime, _, _, exported = onnx_model
    if runtime.cuda_missing() is None:
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(RuntimeError, match="has no CUDAExecutionProvider") as info:
        runtime.load(exported, "cuda", 1)
    assert "\n" not in str(info.value)


def test_io_binding_gives_the_outputs_of_a_plain_run_into_the_same_tensors(onnx_model):
    runtime, model, x, exported = onnx_model
    session = runtime.load(exported, "cpu", 1)
    plain = runtime.run(session, runtime.prepare_input(x))
    bound = BoundInput(x)
    first = runtime.run(session, bound)
    again = runtime.run(session, bound)
    assert torch.equal(first[0], torch.as_tensor(plain[0])) and first[0] is again[0]  # no new outputs per run
    with torch.inference_mode():
        assert torch.allclose(first[0], model(x), atol=1e-5)


# ---- fp16 with a gradient scaler, and the notes ---------------------------------------------------

def test_fp16_train_step_with_a_gradient_scaler_runs_for_real():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10))
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 10, (4,))
    step = timing.TorchStep(model, x, y, mode="train", dtype=torch.float16, classes=10)
    assert isinstance(step.scaler, torch.amp.GradScaler)
    times = timing.measure_steps(step, "cpu", warmup=0, iters=2, min_warmup_s=0)
    assert len(times.per_step) == 2 and all(len(p) == 3 for p in times.per_step)
    assert step.scaler.get_scale() > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # it stepped


def test_fp16_training_on_cuda_says_where_the_scaler_syncs():
    r = BenchResult(TINY, "cuda", "fp16", 2, 32, "train", "ok")
    assert any("GradScaler.step" in line and "Opt ms" in line for line in cuda_notes([r]))
    assert not any("GradScaler" in line for line in cuda_notes([BenchResult(TINY, "cuda", "bf16", 2, 32, "train",
                                                                               "ok")]))


# ---- --compile for real ----------------------------------------------------------------------------

@pytest.mark.slow  # inductor compiles C++: minutes on this machine
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None,
                    reason="torch.compile's inductor needs a C++ compiler on the CPU; none found")
def test_compile_over_a_grid_compiles_each_configuration():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 10))  # small: inductor compiles it in seconds, not minutes
    configs = grid([model], [2, 3], [16], ["train"], device="cpu", compile=True, warmup=0, iters=2)
    results = list(run_grid(configs))
    for r in results:
        assert r.status == "ok", r.error
        assert r.compile_s > 0 and r.compiled
        assert r.compile_note.endswith("compiled") and not r.compile_note.startswith("0")
