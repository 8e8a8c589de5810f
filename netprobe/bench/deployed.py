"""Measuring a model where it will be deployed: exported with a runtime's own tools, loaded, checked
against eager torch on the same input, then timed by the same steady-state loop as eager torch.

A model the exporter or runtime cannot take is a row that says where it failed (export, load, run, or
parity: outputs that differ from eager torch's) and why, naming the op the exporter refused; the other
rows go on.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from netprobe.bench.config import BenchConfig, BenchResult, Measurement, export_stem, fill_times, result_files
from netprobe.detect.scores import ScoreLayout, watch_heads
from netprobe.errors import one_line
from netprobe.runtimes import REGISTRY, Runtime, RuntimeStep, get_runtime
from netprobe.runtimes.base import Exported
from netprobe.runtimes.calibration import Calibration, calibration
from netprobe.runtimes.drift import measure_drift
from netprobe.runtimes.parity import output_leaves, parity, parity_input, unit_scale_copy
from netprobe.target import Target, module_to_time
from netprobe.timing import measure_steps, release_memory, reset_peak, synchronize, tf32_mode


class DeployFailed(Exception):
    """A runtime could not export, load or run the model: a result to show, not a crash."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{stage} failed: {one_line(cause)}")
        self.stage = stage


def measure_deployed(m: Measurement) -> int | None:
    """Export, load, check and time the configuration in its runtime; fills its result. Returns the memory
    baseline taken once the model is exported (the peak is the runtime's, not the exporter's)."""
    target, config, size, dtype, result, on_status = m.target, m.config, m.size, m.dtype, m.result, m.on_status
    runtime = get_runtime(config.runtime)
    say = on_status or (lambda text: None)
    result.runtime_version, result.provider = runtime.version(), runtime.provider(config.device)
    with module_to_time(target, config.device, config.copy) as model, _folder(config.keep_exports) as folder:
        model.eval()
        result.params = sum(p.numel() for p in model.parameters())
        x = torch.randn(config.batch, target.in_chans, *size, device=config.device)
        calib = calibration(config.calib, config.batch, target.in_chans, size)
        with torch.inference_mode(), tf32_mode(False), watch_heads(model) as heads:  # full fp32: TF32 misses 1e-3
            reference = model(x)
            held_out = [output_leaves(model(torch.from_numpy(b).to(config.device))) for b in calib.held_out]
        say(f"exporting to {runtime.file_kind}")
        try:
            session, step, baseline = _deploy(runtime, model, x, folder, _stem(result), config, result, reference,
                                              calib)
            _check_drift(runtime, session, calib, held_out, result, heads)
        except DeployFailed as exc:
            result.status, result.error, result.failed_in = "error", str(exc), exc.stage
            return None
        try:
            times = measure_steps(step, config.device, config.warmup, config.iters, m.on_step, config.max_warmup_s,
                                  on_status=on_status)
            fill_times(result, times, config)
            if config.breakdown:
                _explain(result, target, runtime, session, model, x, config, dtype, m.step_count, folder)
        finally:
            step.release()
        if config.keep_exports:
            result.export_files = [str(f) for f in result_files(folder, _stem(result))]
    return baseline


def _deploy(runtime: Runtime, model, x: torch.Tensor, folder: Path, stem: str, config: BenchConfig,
            result: BenchResult, reference: object, calib: Calibration) -> tuple[object, RuntimeStep, int | None]:
    """Check the fp32 export on a unit-scale copy, then export, convert to the precision asked, load (timed
    with the first run) and check the model itself (fp32: against eager torch's within tolerance; another
    precision: the drift figures judge it); raises DeployFailed naming the stage where it fails."""
    check = _unit_scale_parity(runtime, model, x, stem, config, result.threads) if config.precision == "fp32" else None
    release_memory(config.device)
    exported = _stage("export", runtime.export, model, x, folder, stem)
    exported = _convert(runtime, exported, config.precision, calib, folder, result)
    result.exporter, result.export_s, result.file_mb = exported.how, exported.seconds, exported.size_mb
    release_memory(config.device)
    baseline = reset_peak(config.device)
    t0 = time.perf_counter()
    session = _stage("load", runtime.load, exported, config.device, result.threads)
    step = RuntimeStep(runtime, session, x)
    outputs = _stage("run", runtime.run, session, step.inputs)  # the first run: lazy allocations, kernel choices
    synchronize(config.device)  # the first run's kernels finished: CUDA runs return before they do
    result.first_run_s = time.perf_counter() - t0  # loading (session creation, compilation) and the first run
    _record_layers(runtime, session, exported, result)
    if check is None or exported.precision != "fp32":  # another precision moves the outputs by design: drift judges
        return session, step, baseline
    own = _stage("parity", parity, reference, outputs, OWN_TOLERANCE)
    result.max_abs_err, result.max_rel_err = check.max_abs, check.max_rel
    result.parity_ok = check.ok and own.ok
    if not result.parity_ok:
        result.status, result.failed_in = "mismatch", "parity"
        result.error = (f"on the unit-scale copy, {check.note}" if not check.ok else
                        f"with the model's own weights, {own.note}")
    return session, step, baseline


def _convert(runtime: Runtime, exported: Exported, precision: str, calib: Calibration, folder: Path,
             result: BenchResult) -> Exported:
    """The export in the precision asked (int8: quantized with the calibration); raises DeployFailed."""
    if precision == "int8":
        result.calibration = calib.source
    try:
        converted = runtime.convert(exported, precision, calib.batches, folder)
    except Exception as exc:
        raise DeployFailed("quantize" if precision == "int8" else f"convert to {precision}", exc) from None
    result.quantize_s = converted.quantize_s if converted.quantize_s else None
    return converted


def _record_layers(runtime: Runtime, session: object, exported: Exported, result: BenchResult) -> None:
    """The precision each conv and linear layer ran in, as the runtime reports it (proof of what ran)."""
    try:
        ran = runtime.layers_ran(session, exported, result.threads)
    except Exception as exc:  # the proof is missing, the measurement stands
        result.layers_ran = f"not read ({one_line(exc)})"
        return
    if ran is None:
        result.precision_ran = "fp32"
        return
    result.precision_ran, result.layers_ran = ran.precision_ran, ran.summary()
    result.quantized_layers, result.total_layers = ran.quantized, len(ran.layers)
    result.layer_precisions = ran.to_records()


def _check_drift(runtime: Runtime, session: object, calib: Calibration, held_out: list[list[torch.Tensor]],
                 result: BenchResult, heads: ScoreLayout | None) -> None:
    """The outputs on the held-out inputs against eager fp32's (a detector's: per head too); beyond the
    thresholds the row says drift."""
    try:
        runs = [output_leaves(runtime.run(session, runtime.prepare_input(torch.from_numpy(b)))) for b in calib.held_out]
        drift = measure_drift(held_out, runs, heads)
    except Exception as exc:
        raise DeployFailed("run", exc) from None
    result.cosines, result.top1_agreement, result.drift_images = drift.cosines, drift.top1_agreement, drift.images
    result.cosine_min = drift.cosine_min
    result.head_agreement, result.head_candidates = drift.head_agreement or None, drift.head_candidates or None
    if result.max_abs_err is None:  # no parity check (below fp32): the largest error on held-out inputs
        result.max_abs_err = drift.max_abs_err
    if drift.judged(bool(result.weights), not calib.synthetic) and result.status == "ok":
        result.status, result.error = "drift", drift.note()


OWN_TOLERANCE = 1e-2  # the model's own outputs: its scale may be 1e-14 (rounding dominates), yet zeros must fail


def _unit_scale_parity(runtime: Runtime, model, x: torch.Tensor, stem: str, config: BenchConfig, threads: int):
    """Export, load and run a copy of the model re-initialised to outputs of unit scale (never kept), and
    compare its outputs with eager torch's leaf by leaf; an export that fails here fails the row."""
    probe = parity_input(tuple(x.shape), config.device)
    twin = _stage("parity", unit_scale_copy, model, probe)  # eager torch's own forward: not the runtime's
    with torch.inference_mode():
        want = _stage("parity", twin, probe)
    with tempfile.TemporaryDirectory(prefix="netprobe-parity-") as temp:
        exported = _stage("export", runtime.export, twin, probe, Path(temp), stem)
        session = _stage("load", runtime.load, exported, config.device, threads)
        got = _stage("run", runtime.run, session, runtime.prepare_input(probe))
        del session
    return _stage("parity", parity, want, got)


def _stage(stage: str, job: Callable, *args):
    """Run one stage of deploying; any error becomes DeployFailed naming the stage."""
    try:
        return job(*args)
    except Exception as exc:
        raise DeployFailed(stage, exc) from None


def _explain(result: BenchResult, target: Target, runtime: Runtime, session: object, model, x: torch.Tensor,
             config: BenchConfig, dtype: torch.dtype, step_count, folder: Path) -> None:
    """Time by op kind and the roofline from the runtime's own profiler, where it has one netprobe reads."""
    if not REGISTRY[runtime.name].profiles:
        readable = ", ".join(n for n, e in REGISTRY.items() if e.profiles and n != "torch")
        result.breakdown_note = f"no breakdown for {runtime.name}: netprobe reads the profiler of {readable} only"
        return
    if config.device == "cuda":
        result.breakdown_note = (f"no breakdown for {runtime.name} on CUDA: its profiler times each node's launch on "
                                 "the host, not its kernels on the GPU, so per-stage times would be launch times")
        return
    from netprobe.explain import explain_profiled
    from netprobe.summary import stage_function

    stage_of = stage_function(target, tuple(x.shape[2:]))
    found = explain_profiled(model, runtime.profile_ops(folder, _stem(result), result.precision, model, x,
                                                        config.device, result.threads),
                             x, config.device, dtype, result.step_ms, result.peak_tflops, stage_of, count=step_count)
    result.breakdown = found.breakdown.to_records() or None
    result.roofline = found.roofline.to_dict() if found.roofline else None
    result.breakdown_note = found.note


def _stem(result: BenchResult) -> str:
    return export_stem(result.spec, result.batch, result.imgsz, result.runtime, result.precision)


@contextlib.contextmanager
def _folder(keep: str | None) -> Iterator[Path]:
    """The folder exports go to: the user's (--keep-exports), or a temporary one removed afterwards."""
    if keep:
        yield Path(keep).expanduser()
        return
    with tempfile.TemporaryDirectory(prefix="netprobe-export-") as temp:
        yield Path(temp)
