"""predict --calibrate: the fit recovers known efficiencies, a calibration is kept and read back, predictions
on the device at hand use the newest one and say so, bad input is refused before any measurement."""

import json
import sqlite3

import pytest

import netprobe
import netprobe.bench
from netprobe.history.record import fingerprint
from netprobe.prediction.calibration import Calibration, latest_calibration, local_device, store_calibration
from netprobe.prediction.counted import counted_work
from netprobe.prediction.fit import DEFAULT_START, Sample, fit_samples
from netprobe.prediction.model import KEYS, Efficiency, Work, time_work
from netprobe.target import resolve
from tests.cli_checks import one_error_line

TINY = ("--batch", "2", "--imgsz", "32")


def _calibration(peak_tflops: float = 0.05, dense_fwd: float = 0.8, created: str = "2026-12-01T10:00:00Z"):
    """A calibration of this machine's CPU as `predict --calibrate` keeps one, made by hand (no bench)."""
    eff = Efficiency({**DEFAULT_START.compute, "dense_conv.fwd": dense_fwd}, dict(DEFAULT_START.memory), 12.0,
                     "resnet18, mobilenetv3_large on this cpu")
    residuals = [{"model": "resnet18", "batch": 4, "imgsz": 160, "measured_ms": 100.0, "fitted_ms": 104.0,
                  "error": 0.04}]
    return Calibration(created, fingerprint()["machine_id"], "cpu", "Test CPU", "2.13.0", "off", "nchw",
                       ["resnet18", "mobilenetv3_large"], peak_tflops, 5.0, eff, residuals, {"note": "by hand"})


def _calibrations(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM calibrations").fetchone()[0]


def test_the_fit_recovers_known_efficiencies_and_launch_cost_from_synthetic_timings():
    device = local_device("cpu", "off", 0.1, 10.0)  # 100 GFLOP/s, 10 GB/s
    truth = Efficiency({**DEFAULT_START.compute, "dense_conv.fwd": 0.8, "pointwise_conv.fwd": 0.3},
                       {**DEFAULT_START.memory, "depthwise_conv.fwd": 0.2, "batch_norm": 1.2}, 40.0, "truth")
    samples = []
    for key, flops, moved in (("dense_conv.fwd", 1e9, 1e6), ("pointwise_conv.fwd", 1e9, 1e6),
                              ("depthwise_conv.fwd", 1e6, 1e8), ("batch_norm", 1e5, 1e8)):
        for scale in (0.01, 0.1, 1.0):  # sizes apart, so that launches and work separate
            work = (Work(key, None, "fwd", flops * scale, moved * scale, 20, "vector" if key == "batch_norm"
                         else "conv"),)
            samples.append(Sample(work, device, sum(t.seconds for t in time_work(list(work), device, truth, "off")),
                                  "off"))
    fitted = fit_samples(samples, steps=300)
    assert fitted.compute["dense_conv.fwd"] == pytest.approx(0.8, rel=0.02)
    assert fitted.compute["pointwise_conv.fwd"] == pytest.approx(0.3, rel=0.02)
    assert fitted.memory["depthwise_conv.fwd"] == pytest.approx(0.2, rel=0.02)
    assert fitted.memory["batch_norm"] == pytest.approx(1.2, rel=0.02)
    assert fitted.launch_us == pytest.approx(40.0, rel=0.02)


def test_the_fit_recovers_a_launch_cost_per_kind_and_it_survives_a_json_round_trip():
    device = local_device("cpu", "off", 0.1, 10.0)
    launches = {**dict.fromkeys(KEYS, 5.0), "dense_conv.fwd": 80.0, "squeeze_excite": 20.0, "batch_norm": 3.0}
    truth = Efficiency(dict(DEFAULT_START.compute), dict(DEFAULT_START.memory), 5.0, "truth", launches)
    samples = []
    for key, flops, moved, peak in (("dense_conv.fwd", 1e9, 1e6, "conv"), ("squeeze_excite", 1e6, 1e7, "vector"),
                                    ("batch_norm", 1e5, 1e8, "vector")):
        for scale in (0.001, 0.1, 1.0):
            work = (Work(key, None, "fwd", flops * scale, moved * scale, 20, peak),)
            samples.append(Sample(work, device, sum(t.seconds for t in time_work(list(work), device, truth, "off")),
                                  "off"))
    fitted = fit_samples(samples, steps=400, launch_per_key=True)
    for key in ("dense_conv.fwd", "squeeze_excite", "batch_norm"):
        assert fitted.launch(key) == pytest.approx(launches[key], rel=0.05), key
    assert fitted.launch("linear.fwd") == pytest.approx(DEFAULT_START.launch_us)  # no sample: the start's
    again = Efficiency.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.launch("dense_conv.fwd") == pytest.approx(fitted.launch("dense_conv.fwd"), rel=1e-3)
    assert Efficiency.from_dict(DEFAULT_START.to_dict()).launch_by_key is None  # the GPU tables: one figure


def test_a_calibration_is_kept_and_the_newest_one_of_this_machine_is_read_back(db):
    assert latest_calibration(db, "cpu") is None  # no database yet
    store_calibration(db, _calibration(dense_fwd=0.6, created="2026-11-30T10:00:00Z"))
    kept = _calibration()
    assert store_calibration(db, kept) == 2
    back = latest_calibration(db, "cpu")
    assert back is not None and back.id == 2 and back.created == kept.created
    assert back.models == ["resnet18", "mobilenetv3_large"] and back.residuals == kept.residuals
    assert back.efficiency.compute == pytest.approx(kept.efficiency.compute, abs=1e-4)
    assert back.efficiency.launch_us == 12.0 and back.peak_tflops == 0.05 and back.bandwidth_gbs == 5.0
    assert back.note.startswith("calibrated on resnet18, mobilenetv3_large on 2026-12-01")
    assert latest_calibration(db, "cpu", layout="nhwc") is None and latest_calibration(db, "cuda") is None


def test_a_cpu_prediction_uses_the_calibration_and_says_so(cli, db):
    cal = _calibration()
    store_calibration(db, cal)
    result = cli("predict", "resnet18", "--device", "cpu", *TINY, "--db", db, "--format", "json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)[0]
    assert row["kind"] == "prediction" and row["gpu"] == "cpu"
    assert row["efficiency_note"].startswith("calibrated on resnet18, mobilenetv3_large on 2026-12-01")
    work = counted_work(resolve("resnet18").meta_model(), 2, (32, 32), "train", "off")
    here = local_device("cpu", "off", cal.peak_tflops, cal.bandwidth_gbs)
    expected_ms = sum(t.seconds for t in time_work(work, here, cal.efficiency, "off")) * 1e3
    assert row["step_ms"] == pytest.approx(expected_ms, rel=1e-6)  # the calibration's roofs and efficiencies
    table = cli("predict", "resnet18", "--device", "cpu", *TINY, "--db", db, columns=200)
    assert "calibrated on resnet18, mobilenetv3_large on 2026-12-01" in " ".join(table.stdout.split())


def test_an_uncalibrated_prediction_says_so_and_uses_the_default_efficiencies(tmp_path):
    p = netprobe.predict("resnet18", device="cpu", batch=2, imgsz=32, db=str(tmp_path / "none.sqlite"))
    assert p.efficiency_note.startswith("uncalibrated: default efficiencies")
    assert "predict --calibrate --device cpu" in p.efficiency_note
    assert not (tmp_path / "none.sqlite").exists()  # reading creates no database


@pytest.mark.parametrize(("args", "needle"), [
    (["nosuchmodel", "--device", "cpu"], "unknown arch 'nosuchmodel'"),
    (["resnet18", "--gpu", "v100"], "cannot be calibrated here"),
    (["--gpu-spec", "x.yaml"], "cannot be calibrated here"),
    (["resnet18", "--device", "tpu"], "device 'tpu' is not supported"),
    (["resnet18", "--device", "cpu", "--iters", "0"], "--iters"),
    (["resnet18", "--device", "cpu", "--batch", "0"], "--batch"),
    (["resnet18", "--device", "cpu", "--rounds", "0"], "--rounds"),
    (["resnet18", "--device", "cpu", "--mode", "infer"], "drop --mode infer"),
    (["resnet18", "--device", "cpu", "--find-max-batch"], "--find-max-batch is a prediction's"),
])
def test_bad_calibration_input_is_one_line_before_any_measurement(cli, db, args, needle, monkeypatch):
    monkeypatch.setattr(netprobe.bench, "benchmark", lambda *a, **k: pytest.fail("a bench started"))
    one_error_line(cli("predict", "--calibrate", *args, "--db", db), needle)


def test_a_database_that_cannot_be_used_is_refused_before_any_measurement(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(netprobe.bench, "benchmark", lambda *a, **k: pytest.fail("a bench started"))
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    for db, needle in ((text, "is not a netprobe results database"), (tmp_path, "is a folder")):
        one_error_line(cli("predict", "--calibrate", "resnet18", "--device", "cpu", "--db", db), needle)
    assert text.read_text() == "not a database\n" * 100


def test_calibration_options_without_calibrate_are_one_line(cli):
    one_error_line(cli("predict", "resnet18", "--gpu", "v100", "--iters", "3"), "--iters sets how --calibrate")
    one_error_line(cli("predict", "resnet18", "--gpu", "v100", "--warmup", "1", "--rounds", "2"),
                   "--warmup, --rounds set how --calibrate")


def test_predict_without_a_model_or_with_gpu_and_device_is_one_line(cli):
    one_error_line(cli("predict"), "give a model to predict")
    one_error_line(cli("predict", "resnet18", "--device", "cpu", "--gpu", "a100"), "give one of them")


def test_a_calibration_benches_with_the_optimizer_asked_for(cli, db, monkeypatch):
    seen = []

    def stop(config):
        seen.append(config.optimizer)
        raise KeyboardInterrupt

    monkeypatch.setattr(netprobe.bench, "benchmark", stop)
    cli("predict", "--calibrate", "resnet18", "--device", "cpu", *TINY, "--optimizer", "adamw", "--db", db)
    assert seen == ["adamw"]


def test_an_interrupted_calibration_keeps_nothing(cli, db, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(netprobe.bench, "benchmark", interrupted)
    result = cli("predict", "--calibrate", "resnet18", "--device", "cpu", *TINY, "--db", db)
    assert result.exit_code == 130 and "no calibration was kept" in result.stderr
    assert _calibrations(db) == 0


@pytest.mark.slow
def test_a_calibration_benches_fits_keeps_and_is_used(cli, db):
    result = cli("predict", "--calibrate", "resnet18,mobilenetv3_small", "--device", "cpu", *TINY, "--iters", "1",
                 "--warmup", "0", "--rounds", "2", "--db", db, "--format", "json")
    assert result.exit_code == 0, result.output
    cal = json.loads(result.stdout)
    assert cal["kind"] == "calibration" and cal["models"] == ["resnet18", "mobilenetv3_small"]
    assert [r["model"] for r in cal["residuals"]] == ["resnet18", "mobilenetv3_small"] * 2  # a row a bench, per round
    launch = cal["efficiency"]["launch_by_key"]  # a fixed cost per op kind, the median beside it
    assert set(launch) == set(cal["efficiency"]["kinds"]) and all(v > 0 for v in launch.values())
    assert all(r["measured_ms"] > 0 and r["fitted_ms"] > 0 for r in cal["residuals"])
    assert cal["device"] == "cpu" and cal["torch"] and cal["peak_tflops"] > 0 and cal["bandwidth_gbs"] > 0
    assert _calibrations(db) == 1
    p = netprobe.predict("efficientnet_b0", device="cpu", batch=2, imgsz=32, db=str(db))
    assert p.efficiency_note.startswith("calibrated on resnet18, mobilenetv3_small on " + cal["created"][:10])
