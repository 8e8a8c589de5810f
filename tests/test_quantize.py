"""Deployed precisions for real: INT8 quantization in ONNX Runtime (static, QDQ) and OpenVINO (NNCF), bf16 in
OpenVINO, on a tiny CNN; the precision each layer ran in as the runtime reports it; drift against eager fp32
on held-out inputs; calibration and --weights; bad input refused before any export."""

from __future__ import annotations

import json

import fixtures_nets as fx
import numpy as np
import pytest
import torch
from cli_checks import one_error_line

import netprobe.bench
from netprobe.runtimes import REGISTRY, RUNTIMES
from netprobe.runtimes.calibration import calibration
from netprobe.runtimes.drift import DRIFT_COSINE, measure_drift
from netprobe.target import resolve
from netprobe.weights import with_weights

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

pytestmark = pytest.mark.slow  # every test exports to another runtime (sessions, quantization)
CLI_COLUMNS = 120  # the `cli` fixture runs every command of this file at 120 columns
TINY = "module:fixtures_nets:build_tiny"  # 4 convs and 1 linear: 5 layers that can run in int8
QUICK = dict(device="cpu", batch=2, imgsz=32, mode="infer", warmup=0, iters=1, max_warmup_s=1)
BASE = ["bench", TINY, "--device", "cpu", "--batch", "2", "--imgsz", "32", "--iters", "1", "--max-warmup-s", "1",
        "--no-save"]


def test_onnxruntime_int8_runs_every_conv_and_linear_quantized():
    fp32, int8 = netprobe.bench.run([netprobe.bench.BenchConfig(TINY, runtime="onnxruntime", precision=p, **QUICK)
                        for p in ("fp32", "int8")]).results
    assert fp32.status == "ok" and fp32.precision_ran == "fp32" and fp32.quantized_layers == 0
    assert fp32.total_layers == 5 and fp32.cosine_min > 0.9999 and fp32.top1_agreement == 1.0
    assert int8.status in ("ok", "drift"), int8.error
    assert (int8.precision, int8.precision_ran, int8.quantized_layers, int8.total_layers) == ("int8", "int8", 5, 5)
    assert int8.layers_ran == "all 4 convolutions ran in int8"
    assert {r["precision"] for r in int8.layer_precisions} == {"int8"} and len(int8.layer_precisions) == 5
    assert int8.quantize_s > 0 and "U8 activations" in int8.exporter and "synthetic: 32 images" in int8.calibration
    assert int8.file_mb < fp32.file_mb  # int8 weights
    assert int8.drift_images == 16 and 0 < int8.cosine_min <= 1 and int8.max_abs_err > 0
    assert int8.vs_fp32 == pytest.approx(fp32.step_ms / int8.step_ms) and fp32.vs_fp32 == 1.0


def test_openvino_int8_and_bf16_report_what_each_layer_ran_in():
    import openvino

    precisions = ["int8", "auto"] + (["bf16"] if "BF16" in openvino.Core().get_property(
        "CPU", "OPTIMIZATION_CAPABILITIES") else [])
    configs = [netprobe.bench.BenchConfig(TINY, runtime="openvino", precision=p, **QUICK) for p in precisions]
    results = netprobe.bench.run(configs).results
    by = {r.precision: r for r in results}
    assert (by["int8"].precision_ran, by["int8"].quantized_layers, by["int8"].total_layers) == ("int8", 5, 5)
    assert "nncf.quantize" in by["int8"].exporter and by["int8"].quantize_s > 0
    assert by["auto"].precision_ran in ("fp32", "bf16", "fp16")  # OpenVINO's own choice, as it reports it
    if "bf16" in by:
        assert by["bf16"].precision_ran == "bf16" and by["bf16"].layers_ran == "all 4 convolutions ran in bf16"
        assert by["bf16"].cosine_min > DRIFT_COSINE and by["bf16"].status == "ok"


def test_a_failed_quantization_is_a_row_and_the_other_rows_finish(cli, monkeypatch, tmp_path):
    def failing(*args, **kwargs):
        raise RuntimeError("no kernel for this op")

    monkeypatch.setattr(RUNTIMES["onnxruntime"], "convert", failing)
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((6, 3, 32, 32)).astype(np.float32))
    result = cli(*BASE, "--runtime", "onnxruntime,openvino", "--precision", "int8", "--calib", str(calib),
                 "--format", "json")
    rows = json.loads(result.stdout)["results"]
    assert [(r["runtime"], r["precision"]) for r in rows] == [("torch", "fp32"), ("onnxruntime", "int8"),
                                                              ("openvino", "int8")]
    ort, ov = rows[1], rows[2]
    assert (ort["status"], ort["failed_in"]) == ("error", "quantize") and "no kernel for this op" in ort["error"]
    assert ov["status"] in ("ok", "drift") and ov["precision_ran"] == "int8"
    for key in ("max_abs_err", "cosine_min", "top1_agreement", "quantized_layers", "total_layers"):
        assert ov[key] is not None, key
    assert ov["calibration"].endswith(": 5 images (array), 1 held out")
    assert ov["drift_images"] == 2  # the 1 held-out image twice: a batch of 2
    assert result.exit_code != 0 and (
        "--runtime onnxruntime --precision int8: quantize failed: RuntimeError: no kernel for this op" in result.stderr)


def test_drift_figures():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    same = measure_drift([[logits]], [[logits.numpy()]])
    assert (same.max_abs_err, same.cosines, same.top1_agreement, same.drifted) == (0.0, [pytest.approx(1.0)], 1.0,
                                                                                  False)
    flipped = measure_drift([[logits]], [[-logits.numpy()]])
    assert flipped.cosine_min == pytest.approx(-1.0) and flipped.drifted and flipped.top1_agreement == 0.0
    assert flipped.max_abs_err == 6.0
    with pytest.raises(ValueError, match="2 outputs where eager torch gives 1"):
        measure_drift([[logits]], [[logits, logits]])


def test_a_trained_classifiers_top1_flips_on_real_images_are_drift_though_its_cosine_holds():
    from netprobe.runtimes.drift import TOP1_AGREEMENT_MIN

    # close calls: a small move of the logits keeps the cosine near 1 and flips the top-1 class of 2 images in 10
    want = torch.tensor([[2.0, 1.99, 0.0]] * 8 + [[2.0, 0.0, 0.0]] * 2)
    got = want.clone()
    got[:2, 1] = 2.01
    drift = measure_drift([[want]], [[got.numpy()]])
    assert drift.cosine_min > 0.9999 and drift.top1_agreement == pytest.approx(0.8) and TOP1_AGREEMENT_MIN > 0.8
    assert not drift.drifted  # the cosine and the heads alone: as before
    assert drift.judged(trained=True, real_images=True) and "top-1 agreement 80% (below 0.9)" in drift.note()
    assert not drift.judged(trained=False, real_images=True)  # untrained logits: close calls everywhere
    assert not drift.judged(trained=True, real_images=False)  # noise images: no class means anything
    assert measure_drift([[want]], [[(-want).numpy()]]).judged(trained=False, real_images=False)  # the cosine always


def test_calibration_from_a_folder_holds_a_quarter_out(tmp_path):
    from PIL import Image

    for i in range(5):
        Image.new("RGB", (40, 20), (50 * i, 0, 0)).save(tmp_path / f"{i}.png")
    calib = calibration(str(tmp_path), 2, 3, (16, 24))
    assert [b.shape for b in calib.batches] == [(2, 3, 16, 24)] * 2  # 4 images calibrate
    assert [b.shape for b in calib.held_out] == [(2, 3, 16, 24)]  # 1 held out, its batch filled from itself
    assert calib.source.endswith(": 4 images resized to 16×24, ImageNet mean/std, 1 held out")
    red = (50 * 4 / 255 - 0.485) / 0.229  # the held-out image's red channel, normalised
    assert calib.held_out[0][0, 0, 0, 0] == pytest.approx(red, abs=1e-2)
    assert not calib.synthetic and calibration(None, 2, 3, (16, 24)).synthetic  # real images judge top-1; noise not


def test_weights_load_into_every_fresh_module(tmp_path):
    model = fx.build_tiny()
    with torch.no_grad():
        model.classifier.bias.fill_(7.0)
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model_state_dict": model.state_dict()}, path)
    loaded = with_weights(resolve(TINY), str(path)).make("cpu")
    assert torch.equal(loaded.classifier.bias, torch.full((10,), 7.0))


@pytest.mark.parametrize(("args", "needle"), [
    (["--precision", "int8"], "--precision int8 needs a --runtime that converts the model"),
    (["--runtime", "torchscript", "--precision", "int8"], "--runtime torchscript does not run int8 on cpu"),
    (["--runtime", "onnxruntime", "--precision", "int8", "--mode", "train"], "times inference only"),
    (["--runtime", "onnxruntime", "--precision", "fp16"], "--runtime onnxruntime --precision fp16: its CPU "
                                                          "provider has no fp16 convolution kernels"),
    (["--runtime", "openvino", "--precision", "in8"], "unknown precision 'in8': did you mean int8?"),
    (["--runtime", "openvino", "--precision", "int8,int8"], "names a precision twice"),
    (["--runtime", "openvino", "--calib", "x.npy"], "--calib gives int8 quantization its ranges"),
    (["--runtime", "openvino", "--precision", "int8", "--calib", "/no/such.npy"], "is neither a folder of images"),
])
def test_bad_precision_input_is_one_line_before_any_export(cli, monkeypatch, args, needle):
    for runtime in RUNTIMES.values():
        monkeypatch.setattr(runtime, "export", lambda *a: pytest.fail("exported before checking"))
    one_error_line(cli(*BASE, *args), needle)


def test_bad_calibration_and_weights_files_are_one_line(cli, monkeypatch, tmp_path):
    for runtime in RUNTIMES.values():
        monkeypatch.setattr(runtime, "export", lambda *a: pytest.fail("exported before checking"))
    int8 = ["--runtime", "onnxruntime", "--precision", "int8", "--calib"]
    one_error_line(cli(*BASE, *int8, str(tmp_path)), "holds 0 images")
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 3, 16, 16), np.float32))
    one_error_line(cli(*BASE, *int8, str(wrong)), "holds an array of shape [4, 3, 16, 16]; give (N, 3, 32, 32)")
    other = tmp_path / "other.pt"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    one_error_line(cli(*BASE, "--weights", str(other)), "does not fit module:fixtures_nets:build_tiny: 26 missing: "
                   "features.0.weight, features.1.weight, features.1.bias, ...; 1 unexpected: conv.weight")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    one_error_line(cli(*BASE, "--weights", str(junk)), "does not load as a state dict")


def test_the_registry_makes_the_help(cli):
    result = cli("bench", "--help")
    for name, entry in REGISTRY.items():
        assert name in result.stdout
        if entry.precisions["cpu"] != ("fp32",):
            assert f"{name} {','.join(entry.precisions['cpu'])}" in " ".join(result.stdout.split()).replace(
                "│", "").replace("  ", " ") or name in result.stdout


def test_compare_in_two_precisions(cli):
    result = cli("compare", TINY, "--device", "cpu", "--batch", "2", "--imgsz", "32", "--rounds", "1", "--iters", "1",
                 "--max-warmup-s", "1", "--runtime", "openvino", "--precision", "fp32,int8", "--format", "json",
                 "--no-save")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["runtime"], r["precision"], r["precision_ran"]) for r in rows] == [
        ("torch", "fp32", "fp32"), ("openvino", "fp32", "fp32"), ("openvino", "int8", "int8")]
    assert all(r["infer_imgs_per_s"] > 0 and r["speedup"] == 1.0 for r in rows)  # each first in its precision


def test_breakdown_of_an_int8_model_reads_its_quantized_kernels(cli):
    result = cli(*BASE, "--runtime", "onnxruntime,openvino", "--precision", "int8", "--breakdown", "--format", "json")
    assert result.exit_code == 0, result.output
    for int8, runtime in zip(json.loads(result.stdout)["results"][1:], ("onnxruntime", "openvino"), strict=True):
        assert (int8["runtime"], int8["precision_ran"]) == (runtime, "int8")
        kinds = {rec["kind"] for rec in int8["breakdown"]}
        # ONNX Runtime's profile (QLinearConv, QGemm) and OpenVINO's per-layer counters, given back to the
        # tiny CNN's convs and its classifier
        assert {"dense_conv", "depthwise_conv", "pointwise_conv", "linear"} <= kinds, (runtime, kinds)
