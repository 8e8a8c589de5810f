"""Deployment runtimes for real: exports with the real tools, real ONNX Runtime and OpenVINO sessions,
outputs checked against eager torch, the same timing loop; bad input refused before any export."""

from __future__ import annotations

import json
from pathlib import Path

import fixtures_nets as fx
import pytest
import torch
from cli_checks import one_error_line

from netprobe.bench import BenchConfig, run
from netprobe.runtimes import RUNTIMES
from netprobe.runtimes.onnx_export import module_path
from netprobe.runtimes.parity import parity
from netprobe.runtimes.profile import kernel_times

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

pytestmark = pytest.mark.slow  # every test exports to another runtime (sessions, quantization)
CLI_COLUMNS = 120  # the `cli` fixture runs every command of this file at 120 columns
QUICK = dict(device="cpu", batch=2, imgsz=32, mode="infer", warmup=0, iters=2, max_warmup_s=1)
FFT_MODEL = '''import torch
from torch import nn


class Spectral(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.fft.rfft2(self.conv(x)).abs().mean((2, 3))
'''



def measured(spec, runtimes=tuple(RUNTIMES), **options) -> list:
    return run([BenchConfig(spec, runtime=r, **{**QUICK, **options}) for r in runtimes]).results


def test_every_runtime_runs_a_zoo_net_with_the_same_outputs_and_keeps_its_exports_where_asked(tmp_path):
    results = measured("mobilenetv3_small:classes=10", keep_exports=str(tmp_path))  # one run serves both checks
    kept = {Path(f).suffix for r in results for f in r.export_files}
    assert kept == {".onnx", ".xml", ".bin", ".pt", ".pt2"}
    assert all(Path(f).exists() for r in results for f in r.export_files)
    assert [r.runtime for r in results] == list(RUNTIMES)
    for r in results:
        assert r.status == "ok", (r.runtime, r.error)
        assert r.step_ms > 0 and r.step_p10_ms <= r.step_ms <= r.step_p90_ms and r.threads == torch.get_num_threads()
        assert r.vs_torch == pytest.approx(results[0].step_ms / r.step_ms)
    eager, deployed = results[0], results[1:]
    assert eager.provider == "cpu" and eager.file_mb is None and eager.parity_ok is None
    for r in deployed:
        assert r.parity_ok and r.max_abs_err < 1e-4 and r.file_mb > 0.5 and r.export_s > 0 and r.first_run_s > 0
        assert r.runtime_version and r.exporter and r.peak_mem_mb is not None
    by_name = {r.runtime: r for r in results}
    assert by_name["onnxruntime"].provider == "CPUExecutionProvider" and by_name["openvino"].provider == "CPU"
    assert "opset 17" in by_name["onnxruntime"].exporter and "convert_model" in by_name["openvino"].exporter


def test_a_detector_and_its_backbone_taps_with_several_outputs():
    from netprobe.detect.taps import BackboneTaps

    taps = measured(BackboneTaps("mobilenetv3_small"), ("torch", "onnxruntime", "openvino"), imgsz=64)
    assert all(r.status == "ok" and r.parity_ok is not False for r in taps), [(r.runtime, r.error) for r in taps]
    detector = measured("yolov8n:nc=4", ("torch", "onnxruntime"), imgsz=64)
    assert detector[1].status == "ok" and detector[1].parity_ok, detector[1].error


def test_a_users_own_module_in_onnxruntime():
    r = measured(fx.TinyCNN(), ("torch", "onnxruntime"))[1]
    assert r.status == "ok" and r.parity_ok and r.spec == "TinyCNN", r.error


def test_parity_names_what_differs():
    ref = [torch.ones(2, 3), torch.zeros(4)]
    assert parity(ref, [torch.ones(2, 3), torch.zeros(4)]).ok
    off = parity(ref, [torch.ones(2, 3) * 1.01, torch.zeros(4)])
    assert not off.ok and off.max_abs == pytest.approx(0.01) and "differ from eager torch" in off.note
    assert parity(ref, [torch.ones(2, 3)]).note == "1 output where eager torch gives 2"
    assert "shape [3, 2]" in parity(ref, [torch.ones(3, 2), torch.zeros(4)]).note


def test_onnxruntime_breakdown_uses_its_own_profiler():
    r = measured("mobilenetv3_small:classes=10", ("torch", "onnxruntime"), breakdown=True, imgsz=64)[1]
    whole = {row["kind"]: row for row in r.breakdown if row["stage"] is None}
    assert sum(row["time_share"] for row in whole.values()) == pytest.approx(1)
    assert whole["depthwise_conv"]["fwd_ms"] > 0 and whole["pointwise_conv"]["fwd_ms"] > 0  # fused kernels given back
    stages = {row["stage"] for row in r.breakdown if row["stage"]}
    assert {"stem", "stage1", "head"} <= stages and r.roofline["stages"]


def test_onnx_node_names_lead_back_to_modules():
    modules = {"stage1", "stage1.0", "stage1.0.body", "stage1.0.body.dw", "stage1.0.body.dw.0", "stage1.0.body.dw.2"}
    assert module_path("/stage1/stage1.0/body/dw/dw.0/Conv", modules) == "stage1.0.body.dw.0"
    assert module_path("/stage1/stage1.0/body/dw/dw.2/Relu_output_0_nchwc", modules) == "stage1.0.body.dw.2"
    assert module_path("ReorderInput_token_3", modules) == ""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, groups=3), torch.nn.ReLU())
    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
              {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
              {"cat": "Node", "name": "/1/Relu_kernel_time", "ts": 10, "dur": 8,
               "args": {"op_name": "Conv", "input_type_shape": [{"float": [1, 3, 8, 8]}, {"float": [3, 1, 3, 3]}]}},
              {"cat": "Node", "name": "/1/Relu_kernel_time", "ts": 210, "dur": 12,
               "args": {"op_name": "Conv", "input_type_shape": [{"float": [1, 3, 8, 8]}, {"float": [3, 1, 3, 3]}]}}]
    times = kernel_times(events, dict(model.named_modules()), steps=2)
    assert [(t.path, t.counted_kind, t.ms) for t in times] == [("0", "conv", 0.01)]  # the fused conv, per step


# ---- the command line -------------------------------------------------------------------------------

def test_bench_runtime_table_and_json(cli):
    result = cli("bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "32",
                 "--iters", "2", "--max-warmup-s", "1", "--runtime", "onnxruntime", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert [r["runtime"] for r in rows] == ["torch", "onnxruntime"] and all(r["mode"] == "infer" for r in rows)
    assert "eager torch is measured too" in result.stderr
    shown = cli("bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "32",
                "--iters", "2", "--max-warmup-s", "1", "--runtime", "torch,openvino", "--format", "markdown").stdout
    assert "| Runtime |" in shown and "openvino 20" in shown and "Max rel err" in shown and "vs torch" in shown


def test_a_model_the_exporter_cannot_take_is_a_row_and_one_line(cli, tmp_path):
    path = tmp_path / "spectral.py"
    path.write_text(FFT_MODEL)
    result = cli("bench", f"{path}:Spectral", "--device", "cpu", "--batch", "2", "--imgsz", "16", "--iters", "2",
                 "--max-warmup-s", "1", "--runtime", "onnxruntime", "--format", "json")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "aten::fft_rfft2" in errors[0] and "Traceback" not in result.output
    rows = json.loads(result.stdout)["results"]  # printed first: the other rows finished
    assert [(r["runtime"], r["status"]) for r in rows] == [("torch", "ok"), ("onnxruntime", "error")]
    assert rows[1]["failed_in"] == "export" and "export failed" in rows[1]["error"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--runtime", "onnxrt"], "unknown runtime 'onnxrt': did you mean onnxruntime?"),
    (["--runtime", "tensorrt"], "--runtime tensorrt is not supported yet"),
    (["--runtime", "onnxruntime", "--mode", "train"], "--runtime onnxruntime times inference only"),
    (["--runtime", "onnxruntime", "--mode", "both"], "--runtime onnxruntime times inference only"),
    (["--runtime", "onnxruntime", "--amp", "bf16"], "--amp applies to eager torch"),
    (["--runtime", "openvino", "--compile"], "--compile applies to eager torch"),
    (["--keep-exports", "."], "--keep-exports keeps the files a --runtime other than torch exports"),
    (["--runtime", "onnxruntime", "--keep-exports", "/dev/null/folder"], "--keep-exports '/dev/null/folder' is not a"),
    (["--runtime", "onnxruntime,onnxruntime"], "names a runtime twice"),
])
def test_bad_runtime_input_is_one_line_before_any_export(cli, monkeypatch, args, needle):
    for runtime in RUNTIMES.values():  # each runtime's own export (subclasses override the base's)
        monkeypatch.setattr(runtime, "export", lambda *a: pytest.fail("exported before checking"))
    one_error_line(cli("bench", "mobilenetv3_small", "--device", "cpu", "--imgsz", "32", *args), needle)


def test_an_unwritable_keep_exports_folder_is_refused(cli, tmp_path, monkeypatch):
    import tempfile

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)  # as root every folder is writable: make this one not
    one_error_line(cli("bench", "mobilenetv3_small", "--device", "cpu", "--imgsz", "32", "--runtime", "onnxruntime",
                       "--keep-exports", str(tmp_path)), "cannot write in it (Permission denied)")
    file = tmp_path / "f"
    file.write_text("")
    one_error_line(cli("bench", "mobilenetv3_small", "--device", "cpu", "--imgsz", "32", "--runtime", "onnxruntime",
                       "--keep-exports", str(file)), "is not a folder")


def test_a_runtime_not_installed_names_the_extra(cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` meets where it is absent
    one_error_line(cli("bench", "mobilenetv3_small", "--device", "cpu", "--imgsz", "32", "--runtime", "onnxruntime"),
                   "--runtime onnxruntime is not installed here (onnxruntime does not import (ModuleNotFoundError)): "
                   "pip install 'netprobe[deploy]'")


def test_cuda_for_a_runtime_without_a_cuda_provider_is_one_line(cli, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    one_error_line(cli("bench", "mobilenetv3_small", "--device", "cuda", "--imgsz", "32", "--runtime", "openvino"),
                   "--runtime openvino does not run on CUDA devices")
    one_error_line(cli("bench", "mobilenetv3_small", "--device", "cuda", "--imgsz", "32", "--runtime", "onnxruntime"),
                   "has no CUDA provider here")


def test_compare_in_runtimes(cli):
    result = cli("compare", "mobilenetv3_small:classes=10", "efficientnet_b0:classes=10", "--device", "cpu",
                 "--batch", "2", "--imgsz", "32", "--rounds", "1", "--iters", "2", "--max-warmup-s", "1",
                 "--runtime", "onnxruntime", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["label"], r["runtime"]) for r in rows] == [
        ("mobilenetv3_small:classes=10", "torch"), ("mobilenetv3_small:classes=10", "onnxruntime"),
        ("efficientnet_b0:classes=10", "torch"), ("efficientnet_b0:classes=10", "onnxruntime")]
    assert all(r["mode"] == "infer" and r["infer_imgs_per_s"] > 0 for r in rows)
    assert rows[0]["vs_torch"] == 1.0 and rows[1]["vs_torch"] == pytest.approx(
        rows[1]["infer_imgs_per_s"] / rows[0]["infer_imgs_per_s"])
    assert rows[2]["speedup"] == pytest.approx(rows[2]["infer_imgs_per_s"] / rows[0]["infer_imgs_per_s"])


def test_an_interrupt_during_an_export_keeps_the_rows_that_finished(cli, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(RUNTIMES["onnxruntime"], "export", interrupted)
    result = cli("bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "32",
                 "--iters", "1", "--max-warmup-s", "1", "--runtime", "onnxruntime", "--format", "json", "--no-save")
    assert result.exit_code == 130
    rows = json.loads(result.stdout)["results"]
    assert [(r["runtime"], r["status"]) for r in rows] == [("torch", "ok")]
    assert "interrupted: 1 of 2 configurations finished" in result.stderr
