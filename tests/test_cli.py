"""The command line: output formats, exit codes, and one clear line for bad input."""

import csv
import io
import json
import subprocess
import sys

import pytest

import netprobe.bench.runs


def test_list_shows_every_arch_and_detector(cli):
    result = cli("list", "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    archs = {a["name"]: a for a in data["archs"]}
    assert archs["efficientnetv2_s"]["params"] == 21_458_488
    assert archs["efficientnetv2_s"]["layout"] == "FFFMMM"
    assert len(archs) == 18 and archs["resnet50"]["params"] == 25_557_032 and archs["resnet50"]["layout"] == "BBBB"
    detectors = {d["name"]: d for d in data["detectors"]}
    assert detectors["yolov8n"]["params"] == 3_157_200 and detectors["yolov3-fpn"]["imgsz"] == 416
    assert len(detectors) == 20


def test_summary_json_has_the_documented_fields(cli):
    result = cli("summary", "efficientnetv2_s", "--format", "json", "--features")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["input"] == [1, 3, 384, 384] and data["params"] == 21_458_488
    assert data["flops"] == 2 * data["macs"]
    assert data["canonical"].startswith("custom:stem=24,stages=fmb_r2_k3_s1_e1_c24/")
    stage = data["stages"][2]
    assert {k: stage[k] for k in ("name", "op", "repeats", "kernel", "stride", "expand", "se", "out")} == {
        "name": "stage2", "op": "Fused-MBConv4, k3x3", "repeats": 4, "kernel": 3, "stride": 2, "expand": 4,
        "se": 0, "out": [48, 96, 96]}
    assert sum(s["params"] for s in data["stages"]) == data["params"]


def test_summary_counters_in_json(cli):
    result = cli("summary", "mobilenetv3_small", "--imgsz", "64", "--counter", "all", "--format", "json")
    assert result.exit_code == 0, result.output
    counters = json.loads(result.stdout)["counters"]
    assert set(counters) == {"native", "fvcore", "thop", "torchinfo"}
    assert all(isinstance(v, int) for v in counters.values())


@pytest.mark.parametrize("fmt", ["csv", "markdown", "table"])
def test_summary_other_formats_carry_the_stage_table(cli, fmt):
    # wide enough that the table keeps its operator column whole (at 80 it splits into column groups)
    result = cli("summary", "efficientnet_b0", "--format", fmt, "--depth", "stage", columns=200)
    assert result.exit_code == 0
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert [r["name"] for r in rows][:2] == ["stem", "stage1"] and rows[1]["op"] == "MBConv1, k3x3, SE0.25"
    else:
        assert "MBConv6, k5x5, SE0.25" in result.stdout and "FLOPs = 2 × MACs" in result.stdout


@pytest.mark.parametrize("args,needle", [
    (["summary", "efficientnetv2_z"], "did you mean efficientnetv2_s"),
    (["summary", "efficientnet_b4:fused=9-12"], "stages 1-7"),
    (["summary", "efficientnet_b0:width=-1"], "width"),
    (["summary", "efficientnet_b0", "--imgsz", "0"], "at least 32"),
    (["bench", "--device", "cpu", "--batch", "0"], "--batch must be from 1 to 65,536"),
    (["bench", "--device", "cpu", "--iters", "0"], "--iters must be from 1 to 100,000"),
    (["bench", "--device", "cpu", "--warmup", "-1"], "--warmup must be from 0 to 10,000"),
    (["bench", "--device", "cpu", "--imgsz", "-4"], "at least 32"),
    (["bench", "--device", "cpu", "--batch", "8,x"], "comma list of integers"),
    (["bench", "--device", "cpu", "--batch", "1", "--imgsz", "32"], "use batch >= 2"),
    (["compare", "fused-stagez", "--device", "cpu"], "unknown experiment"),
    (["compare", "fusedstages", "--device", "cpu"], "unknown experiment"),
    (["compare", "efficientnet_b0", "nope_net", "--device", "cpu"], "unknown arch"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, needle):
    result = cli(*args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_cuda_absent_is_one_line_and_exit_2(cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = cli("bench", "--device", "cuda")
    assert result.exit_code == 2 and "CUDA is not available" in result.stderr


@pytest.mark.parametrize("args", [["summary", "--format", "yaml"], ["summary", "--counter", "flopz"]])
def test_unknown_choices_are_typer_usage_errors(cli, args):
    result = cli(*args)
    assert result.exit_code == 2 and "Invalid value" in result.output


@pytest.mark.slow
def test_bench_json_and_out_file(cli, tmp_path):
    out = tmp_path / "r.json"
    result = cli("bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "1,2", "--imgsz", "64",
                 "--warmup", "0", "--iters", "2", "--mode", "both", "--format", "json", "--out", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["device"]["device"] == "cpu" and data["device"]["torch"]
    assert len(data["results"]) == 4
    required = {"spec", "device", "dtype", "batch", "imgsz", "mode", "status", "imgs_per_s", "fwd_ms", "bwd_ms",
                "opt_ms", "step_ms", "peak_mem_mb", "tflops"}
    assert all(required <= set(r) and r["status"] == "ok" for r in data["results"])
    assert json.loads(out.read_text())["results"] == data["results"]


def test_bench_csv_out(cli, tmp_path):
    out = tmp_path / "r.csv"
    result = cli("bench", "mobilenetv3_small", "--device", "cpu", "--batch", "2", "--imgsz", "32", "--warmup", "0",
                 "--iters", "1", "--out", str(out))
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows[0]["status"] == "ok" and float(rows[0]["step_ms"]) > 0


@pytest.mark.slow
def test_ctrl_c_keeps_what_finished(cli, monkeypatch, tmp_path):
    real = netprobe.bench.runs.benchmark
    done = []

    def benchmark(config, *args):
        if done:
            raise KeyboardInterrupt
        done.append(config)
        return real(config, *args)

    monkeypatch.setattr(netprobe.bench.runs, "benchmark", benchmark)
    out = tmp_path / "partial.json"
    result = cli("bench", "mobilenetv3_small", "--device", "cpu", "--batch", "2,3,4", "--imgsz", "32", "--warmup",
                 "0", "--iters", "1", "--format", "json", "--out", str(out))
    assert result.exit_code == 130
    assert [r["batch"] for r in json.loads(out.read_text())["results"]] == [2]
    assert "1 of 3 configurations finished" in result.stderr


@pytest.mark.slow
def test_compare_specs_json_and_plot(cli, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "c.png"
    result = cli("compare", "mobilenetv3_small:classes=10", "efficientnet_b0:classes=10", "--device", "cpu",
                 "--batch", "2", "--imgsz", "32", "--rounds", "2", "--iters", "1", "--format", "json",
                 "--plot", str(png))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["experiment"] == "specs" and data["batch"] == 2 and data["imgsz"] == 32
    assert [r["label"] for r in data["rows"]] == ["mobilenetv3_small:classes=10", "efficientnet_b0:classes=10"]
    assert data["rows"][0]["speedup"] == 1.0 and data["rows"][1]["paper"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_compare_fused_stages_table_has_the_papers_columns(cli):
    result = cli("compare", "fused-stages", "--base", "efficientnet_b0", "--device", "cpu", "--batch", "2",
                 "--imgsz", "32", "--rounds", "1", "--iters", "1", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("Fused stage1-") == 3 and "No fused" in result.stdout


@pytest.mark.slow
def test_the_console_script_prints_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "netprobe", "summary", "efficientnetv2_z"], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown arch 'efficientnetv2_z'") and "Traceback" not in proc.stderr


# ---- start-up: help and version never import torch; list's counts are cached -----------------------

@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["bench", "--help"], ["summary", "--help"], ["compare", "--help"],
                                  ["list", "--help"], ["--version"]])
def test_help_and_version_do_not_import_torch(args):
    probe = ("import contextlib, io, sys; sys.argv = ['netprobe', *sys.argv[1:]]\n"
             "from netprobe.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
             "    main()\n"
             "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3], out.getvalue()[:20])")
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[] ") and ("Usage" in done.stdout or "netprobe 0." in done.stdout)


def test_list_counts_are_cached_by_code_fingerprint(tmp_path, monkeypatch):
    from netprobe import cache, catalog

    monkeypatch.setenv("NETPROBE_CACHE_DIR", str(tmp_path))
    counted = []
    monkeypatch.setattr(catalog, "arch_params", lambda canonical: counted.append(canonical) or len(canonical))
    first = catalog.arch_records()
    assert len(counted) == len(first) == 18 and (tmp_path / "arch-params.json").exists()
    assert catalog.arch_records() == first and len(counted) == 18  # read back, not counted again
    monkeypatch.setattr(cache, "code_fingerprint", lambda: "another version of the code")
    assert catalog.arch_records() == first and len(counted) == 36  # other code: counted afresh
    (tmp_path / "arch-params.json").write_text("{not json")
    assert catalog.arch_records() == first  # a broken cache is counted again, not an error


def test_an_unwritable_cache_is_no_error(tmp_path, monkeypatch):
    from netprobe.catalog import arch_records

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("NETPROBE_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot be created
    records = {r["name"]: r["params"] for r in arch_records()}
    assert records["resnet50"] == 25_557_032 and records["efficientnet_b0"] == 5_288_548
