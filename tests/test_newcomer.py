"""What a newcomer tripped over (issue 28), each through the CLI: captions that say what ran, options
that exist where --help offers them, citations that resolve, one roof per report, argument mistakes
said as what happened, timm and torchvision names, re-run lines to paste, a report that names models,
the paper beside its tables, CPU-sized detectors and a dry run that measures nothing."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
from cli_checks import one_error_line

import netprobe
from netprobe.history.record import record, run_document
from netprobe.reference import TORCHVISION

CLI_COLUMNS = 80  # the `cli` fixture runs every command of this file at 80 columns
DATA = Path(__file__).parent / "data"
FUSED = json.loads((DATA / "compare-fused-stages-cpu.json").read_text())
MACHINE = {"cpu": "Test CPU 9000", "cpus": 8, "usable_cores": 8, "memory_mb": 32_000, "arch": "x86_64", "board": "",
           "gpus": [], "driver": "", "os": "Linux", "python": "3.11.7"}
TINY = ["mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "32"]


@pytest.fixture
def no_timing(monkeypatch):
    """compare and bench with every measurement refused: what they print before measuring is all there is."""
    import netprobe.bench.measure
    import netprobe.bench.runs
    import netprobe.compare

    def refused(*args, **kwargs):
        pytest.fail("measured although nothing should be")

    for module in (netprobe.compare, netprobe.bench.runs, netprobe.bench.measure):
        monkeypatch.setattr(module, "benchmark", refused, raising=False)


@pytest.fixture
def fake_timing(monkeypatch):
    """compare with every measurement a fixed result: counting, captions and paper columns are real."""
    import netprobe.compare
    from netprobe.bench import BenchResult
    from netprobe.sizes import size_text

    def measured(config, *args, **kwargs):
        size = size_text(config.imgsz) if config.imgsz else 0
        return BenchResult(str(config.spec), config.device, "fp32", config.batch, size, config.mode,
                           "ok", imgs_per_s=10.0, step_ms=100.0, step_p10_ms=99.0, step_p90_ms=101.0)

    monkeypatch.setattr(netprobe.compare, "benchmark", measured)


# ---- 1, 12: compare says each spec's size; detectors on the CPU run at a CPU-friendly size -------------

@pytest.mark.slow
def test_compare_of_detectors_says_their_size_and_runs_them_cpu_sized(cli, fake_timing):
    result = cli("compare", "yolov8n", "yolov8n:backbone=mobilenetv3_small", "--device", "cpu", "--rounds", "1",
                 "--iters", "1", "--no-save")
    assert result.exit_code == 0, result.output
    assert "None px" not in result.stdout and "320 px" in result.stdout
    assert "detectors run at 320 px when no --imgsz is given" in result.stderr
    assert "yolov8n 640 px" in result.stderr  # their own size, said


def test_a_size_given_or_a_gpu_keeps_the_detectors_own_size(cli, no_timing):
    result = cli("bench", "yolov8n", "--device", "cpu", "--imgsz", "640", "--dry-run", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["configs"][0]["imgsz"] == 640 and "320 px" not in result.stderr
    from netprobe.detect.builtin import cpu_friendly_size
    from netprobe.target import resolve

    assert cpu_friendly_size(resolve("yolov8n"), "cuda") is None
    assert cpu_friendly_size(resolve("efficientnet_b0"), "cpu") is None  # backbones: their own size


# ---- 2, 3: list --section; every citation resolves -----------------------------------------------------

@pytest.mark.parametrize("section, first", [("archs", "name,family,params"), ("detectors", "name,params,nc")])
def test_list_csv_prints_the_section_asked_for(cli, section, first):
    result = cli("list", "--format", "csv", "--section", section)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(first)


def test_list_refuses_a_section_it_does_not_have(cli):
    one_error_line(cli("list", "--format", "csv", "--section", "rows"), "--section 'rows' is not a section")


def test_every_detector_cites_a_layout_that_ships_or_a_source_by_name(cli):
    rows = list(csv.DictReader(io.StringIO(cli("list", "--format", "csv", "--section", "detectors").stdout)))
    package = Path(netprobe.__file__).parent
    for row in rows:
        assert "reference/" not in row["origin"], row
        local = re.search(r"netprobe (\S+\.yaml)", row["origin"])
        assert local is None or (package / local.group(1)).is_file(), row
    fpn = next(r for r in rows if r["name"] == "yolov3-fpn")
    assert "detect/layouts/yolov3-fpn.yaml" in fpn["origin"] and "arXiv:1804.02767" in fpn["origin"]


# ---- 4: one roof per report; counted backward per stage -----------------------------------------------

def _fused_rows(peaks: list[float], fast_stage: float | None = None) -> list:
    """The recorded fused-stages rows, with each variant's roof set to `peaks` and one stage, optionally, at
    `fast_stage` GFLOP/s."""
    from netprobe.compare import CompareRow

    rows = []
    for data, peak in zip(FUSED["rows"], peaks, strict=False):
        roof = {**data["roofline"], "peak_tflops": peak}
        roof["ridge"] = peak * 1e12 / (roof["bandwidth_gbs"] * 1e9)
        if fast_stage is not None:
            stage = dict(roof["stages"][-1])
            stage["measured_ms"] = 2 * stage["macs"] / (fast_stage * 1e9) * 1e3
            stage["achieved_gflops"] = fast_stage
            roof["stages"] = [*roof["stages"][:-1], stage]
        rows.append(CompareRow(**{**data, "roofline": roof}))
    return rows


def _text(report) -> str:
    from netprobe.terminal import render_text

    return " ".join(render_text(report, 100, 100).split())  # captions wrap: compare their words


def test_the_breakdown_uses_one_roof_and_one_ridge_everywhere():
    from netprobe.cli.compare import compare_report

    text = _text(compare_report("fused-stages", _fused_rows([0.190, 0.195, 0.193, 0.194]), "settings"))
    ridges = set(re.findall(r"ridge (\d+\.\d)", text))
    assert len(ridges) == 1, ridges  # caption and every sentence: the same figure
    assert "195.0 GFLOP/s" in text  # the best matmul measured in the run is the roof
    assert "as low as 190.0 GFLOP/s" in text  # and the rooflines made at a lower one say so
    assert "Over 100% of roof" not in text


def test_a_stage_above_the_roof_is_shown_and_explained():
    from netprobe.cli.compare import compare_report

    text = _text(compare_report("fused-stages", _fused_rows([0.1949] * 4, fast_stage=205.7), "settings"))
    assert "105.5%" in text  # 205.7 / 194.9, in the stage's row
    assert "Over 100% of roof: the stage ran faster than the dense matmul measured here" in text


@pytest.mark.slow
def test_per_stage_backward_rates_come_from_the_counted_backward(cli):
    result = cli("bench", *TINY, "--warmup", "0", "--iters", "1", "--per-stage", "--no-save", "--format", "json")
    assert result.exit_code == 0, result.output
    (r,) = json.loads(result.stdout)["results"]
    assert sum(s["bwd_macs"] for s in r["stages"]) == r["bwd_macs"] * 2  # the step's backward, every stage
    for s in r["stages"]:
        assert s["bwd_gflops"] == pytest.approx(2 * s["bwd_macs"] / (s["bwd_ms"] / 1e3) / 1e9)
    table = cli("bench", *TINY, "--warmup", "0", "--iters", "1", "--per-stage", "--no-save", COLUMNS="200")
    assert "backward MACs as counted op by op" in table.stdout and "assumes 2 ×" not in table.stdout


# ---- 5: the plot extra said; --keep-exports made as mkdir -p -------------------------------------------

def test_the_readme_says_plot_needs_the_plot_extra():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    first_plot = readme.index("--plot roofline.png")
    assert '".[plot]"' in readme[first_plot:first_plot + 400]


def test_keep_exports_makes_its_folder_with_parents(cli, no_timing, tmp_path):
    folder = tmp_path / "exports" / "today"
    result = cli("bench", *TINY, "--mode", "infer", "--runtime", "onnxruntime", "--keep-exports", str(folder),
                 "--dry-run")
    assert result.exit_code == 0, result.output
    assert folder.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("")
    one_error_line(cli("bench", *TINY, "--runtime", "onnxruntime", "--keep-exports", str(blocker / "x"),
                       "--dry-run"), "is not a folder (a file is in its way)")


# ---- 6: a package in the current folder ---------------------------------------------------------------

def test_a_module_spec_finds_a_package_in_the_current_folder(cli, tmp_path, monkeypatch):
    package = tmp_path / "newcomer_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(
        "from torch import nn\n\n\ndef build_net(width=1.0):\n    c = max(1, int(8 * width))\n"
        "    return nn.Sequential(nn.Conv2d(3, c, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(c, 10))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    result = cli("summary", "module:newcomer_pkg.models:build_net(width=0.5)", "--imgsz", "32", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["params"] == 3 * 4 * 9 + 4 + 4 * 10 + 10
    one_error_line(cli("summary", "module:no_such_pkg_here.models:build_net"), "No module named 'no_such_pkg_here'")


# ---- 7: argument mistakes; timm and torchvision names ------------------------------------------------

@pytest.mark.parametrize("args, needle", [
    (["summary", "--imgsz", "efficientnet_b0", "224"],
     "--imgsz took 'efficientnet_b0' as its value, and it wants a number; give the model, then the option with its "
     "value: netprobe summary efficientnet_b0 --imgsz 224"),
    (["bench", "efficientnet_b0", "--batch", "8", "16", "--dry-run"],
     "--batch takes one value and '16' was read as a model; for several give a comma list: --batch 8,16"),
    (["--imgsz", "224", "summary", "efficientnet_b0"],
     "No such option: --imgsz: options go after the command, e.g. netprobe summary --imgsz"),
])
def test_an_option_out_of_place_is_said_as_what_happened(cli, args, needle):
    one_error_line(cli(*args), needle)


@pytest.mark.parametrize("alias, zoo", [
    ("efficientnet_b0.ra_in1k", "efficientnet_b0"), ("tf_efficientnetv2_s", "efficientnetv2_s"),
    ("mobilenetv3_large_100", "mobilenetv3_large"), ("resnet50.a1_in1k", "resnet50"),
    ("efficientnet_v2_s", "efficientnetv2_s"), ("mobilenet_v3_large", "mobilenetv3_large"), ("resnet50", "resnet50"),
])
def test_timm_and_torchvision_names_are_the_zoo_nets_they_name(cli, alias, zoo):
    result = cli("summary", alias, "--imgsz", "64", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["params"] == TORCHVISION[zoo][0]
    if alias != zoo:
        assert f"{alias} is {zoo} in netprobe's zoo" in result.stderr
    assert ("PyTorch's symmetric padding" in result.stderr) == alias.startswith("tf_")


def test_an_unknown_timm_name_is_still_refused(cli):
    one_error_line(cli("summary", "efficientnet_b9.ra_in1k"), "unknown arch 'efficientnet_b9.ra_in1k'")


# ---- 8: history show gives lines to paste --------------------------------------------------------------

def test_history_show_gives_the_command_as_typed_and_short_re_runs(cli, tmp_path):
    db = tmp_path / "r.sqlite"
    argv = ["netprobe", "compare", "fused-stages", "--imgsz", "64", "--base", "efficientnet_b4", "--plot",
            "my plot.png"]
    record(db, run_document(FUSED, argv, facts=MACHINE, canonical=lambda spec: "custom:" + "stem=48," * 40))
    shown = cli("history", "show", "1", "--db", str(db), COLUMNS="300")
    assert shown.exit_code == 0, shown.output
    assert f"command: {shlex.join(argv)}" in shown.stdout  # quoted: pastes as it was typed
    reruns = [line for line in shown.stdout.splitlines() if line.startswith("re-run row")]
    assert len(reruns) == 4 and all("custom:" not in line for line in reruns)
    assert "netprobe compare efficientnet_b4:fused=1-3 " in reruns[1]


# ---- 9: the report names models, pools alike rows, colours one meaning once --------------------------

def _report_db(tmp_path) -> Path:
    db = tmp_path / "r.sqlite"
    record(db, run_document(FUSED, ["netprobe", "compare", "fused-stages"], facts=MACHINE))
    bench_row = {"spec": "efficientnet_b4:fused=none", "device": "cpu", "dtype": "fp32", "batch": 2, "imgsz": 64,
                 "mode": "train", "status": "ok", "imgs_per_s": 0.25, "macs_per_img": FUSED["rows"][0]["macs"]}
    record(db, run_document({"device": FUSED["device"], "results": [bench_row], "note": None},
                            ["netprobe", "bench"], facts=MACHINE))
    ranks = {"spec": "efficientnet_b4:fused=none", "label": "efficientnet_b4:fused=none", "world_size": 2,
             "ddp": True, "global_batch": 2, "batch_per_rank": 1, "imgsz": 64, "dtype": "fp32", "status": "ok",
             "imgs_per_s": 0.4}
    record(db, run_document({"rows": [ranks]}, ["netprobe", "bench", "--nproc", "2"], command="bench",
                            device=FUSED["device"], facts=MACHINE))
    return db


def test_the_report_speed_table_names_models_once_each(cli, tmp_path):
    result = cli("report", "--db", str(_report_db(tmp_path)), "--format", "json")
    assert result.exit_code == 0, result.output
    speeds = json.loads(result.stdout)["speeds"]
    names = [s["spec"] for s in speeds]
    assert not {"No fused", "Fused stage1-3"} & set(names)
    keys = [(s["spec"], s["batch"], s["imgsz"], s["mode"]) for s in speeds]
    assert len(keys) == len(set(keys))
    plain = next(s for s in speeds if s["spec"] == "efficientnet_b4:fused=none")
    assert plain["n"] == 2  # the compare row and the bench row of the same model, batch and size
    ranks = next(s for s in speeds if s["spec"] == "efficientnet_b4:fused=none ×2 DDP")
    assert ranks["macs"] == FUSED["rows"][0]["macs"]  # counted for the same spec and size


def test_the_report_charts_keep_one_colour_per_meaning_and_write_their_numbers(cli, tmp_path):
    page = tmp_path / "r.html"
    result = cli("report", "--db", str(_report_db(tmp_path)), "--html", str(page))
    assert result.exit_code == 0, result.output
    html = page.read_text()
    legend = re.findall(r'fill="(#[0-9a-f]{6})"[^>]*/?>(?:</circle>)?<text[^>]*>([^<]+)</text>', html)
    meanings: dict[str, set[str]] = {}
    for colour, text in legend:
        meanings.setdefault(colour, set()).add(text.replace("_", " "))
    for colour, texts in meanings.items():
        alike = {t.replace(" conv", "") for t in texts}  # 'depthwise conv' (op kind) is the 'depthwise' family
        assert len(alike) == 1, (colour, texts)
    assert re.search(r'fill="#fff">\d+</text>', html)  # a bar segment carries its share


def test_point_labels_do_not_cover_each_other():
    from netprobe.history.svg import Axis, Chart, Mark

    marks = [Mark(1.0 + i * 1e-3, 1.0, label=f"model-{i}") for i in range(6)]
    svg = Chart(Axis("x", 0.1, 10), Axis("y", 0.1, 10), marks).svg()
    labels = re.findall(r'<text x="([\d.]+)" y="([\d.]+)" font-size="9"( text-anchor="end")?>([^<]+)</text>', svg)
    assert 1 <= len(labels) <= 4  # four spots around a point; the rest keep only their tooltip
    boxes = []
    for x, y, end, text in labels:
        w = 5.0 * len(text)
        x0 = float(x) - (w if end else 0)
        boxes.append((x0, float(y) - 10, x0 + w, float(y)))
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


# ---- 10: the paper beside its tables --------------------------------------------------------------------

@pytest.mark.slow
def test_fused_stages_hints_the_kernel_that_matches_the_paper(cli, fake_timing):
    result = cli("compare", "fused-stages", "--device", "cpu", "--batch", "2", "--imgsz", "40", "--rounds", "1",
                 "--iters", "1", "--no-save", COLUMNS="200")
    assert result.exit_code == 0, result.output
    hint = re.search(r"hint: Fused stage1-3 is \+(\d+\.\d)% from the paper's MACs; with --fused-kernel 3 it counts "
                     r"(\d+\.\d\d)B, ([+-]\d+\.\d)%", result.stdout.replace("\n", " "))
    assert hint, result.stdout
    assert abs(float(hint.group(3))) < float(hint.group(1))


@pytest.mark.slow
def test_batch_imgsz_shows_the_papers_table_2_labelled(cli, fake_timing):
    result = cli("compare", "batch-imgsz", "--device", "cpu", "--batch", "2", "--imgsz", "40", "--rounds", "1",
                 "--iters", "1", "--no-save", "--format", "json")
    assert result.exit_code == 0, result.output
    paper = json.loads(result.stdout)["paper_table2"]
    assert "arXiv:2104.00298" in paper["source"] and "not measured here" in paper["source"]
    assert {r["imgsz"]: (r["v100_b12"], r["v100_b24"]) for r in paper["rows"]} == {512: (29, "OOM"), 380: (37, 52)}
    table = cli("compare", "batch-imgsz", "--device", "cpu", "--batch", "2", "--imgsz", "40", "--rounds", "1",
                "--iters", "1", "--no-save", COLUMNS="200")
    words = " ".join(table.stdout.split())  # the title wraps at the table's width
    assert "Table 2, EfficientNet-B6 training imgs/s: published figures, not measured here" in words


# ---- 11: the busy note says its limit once, with digits that show the value is over it -----------------

def test_the_busy_note_shows_a_spread_just_over_the_limit_as_over_it():
    from netprobe.bench import busy_note

    line = busy_note([_result(1.3004), _result(1.0)])
    assert "p90/p10 up to 1.3004" in line and line.count("1.3") == 2


def _result(spread: float):
    from netprobe.bench import BenchResult

    return BenchResult("m", "cpu", "fp32", 2, 32, "train", "ok", imgs_per_s=1.0, step_p10_ms=10.0,
                       step_p90_ms=10.0 * spread)


# ---- 13: --dry-run counts and estimates, measures nothing ---------------------------------------------

@pytest.mark.slow
def test_bench_dry_run_counts_and_estimates_without_measuring(cli, no_timing):
    result = cli("bench", "mobilenetv3_small:classes=10", "efficientnet_b0:classes=10", "--device", "cpu",
                 "--batch", "2,4", "--imgsz", "32", "--mode", "both", "--dry-run", "--format", "json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert len(plan["configs"]) == 8 and plan["peak_tflops"] > 0 and plan["bandwidth_gbs"] > 0
    summary = json.loads(cli("summary", "mobilenetv3_small:classes=10", "--imgsz", "32", "--format", "json").stdout)
    first = plan["configs"][0]
    assert (first["batch"], first["mode"], first["macs_per_img"]) == (2, "train", summary["macs"])
    infer = plan["configs"][1]
    assert infer["step_macs"] == 2 * summary["macs"]  # inference: the forward of the batch
    assert first["step_macs"] > 2 * infer["step_macs"]  # a train step adds its backward
    assert all(c["estimate_s"] > 0 for c in plan["configs"])
    assert plan["estimate_s"] == pytest.approx(sum(c["estimate_s"] for c in plan["configs"]))
    assert "prediction" in plan["estimate_kind"] and "lower bound" in plan["estimate_kind"]
    from netprobe.prediction.memory import count_memory  # the memory each needs: the counted step's peak

    assert first["memory_mb"] == count_memory("mobilenetv3_small:classes=10", 2, (32, 32), "train").total_mb()
    assert plan["configs"][2]["memory_mb"] > first["memory_mb"]  # batch 4 holds more than batch 2
    table = cli("bench", *TINY, "--dry-run")
    assert table.exit_code == 0 and "Nothing was measured (--dry-run)" in table.stdout


def test_compare_dry_run_counts_every_variant_every_round(cli, no_timing):
    result = cli("compare", "fused-stages", "--device", "cpu", "--batch", "2", "--imgsz", "40", "--rounds", "2",
                 "--dry-run", "--format", "json")
    assert result.exit_code == 0, result.output
    configs = json.loads(result.stdout)["configs"]
    assert [c["label"] for c in configs] == [f"efficientnet_b4:fused={f}" for f in ("none", "1-3", "1-5", "all")]
    assert all(c["steps"] == 2 * (1 + 2) for c in configs)  # rounds x (warm-up + iters) on the CPU


def test_a_run_expected_to_take_long_says_so_first(cli, monkeypatch):
    from netprobe import estimate

    monkeypatch.setattr(estimate, "LONG_RUN_S", 0.0)
    result = cli("bench", *TINY, "--warmup", "0", "--iters", "1", "--no-save")
    assert result.exit_code == 0, result.output
    assert "this run is expected to take over" in result.stderr and "a lower bound" in result.stderr


@pytest.mark.parametrize(("spec", "imgsz", "mode"), [
    ("mobilenetv3_small:classes=10", 64, "train"), ("efficientnet_b0", 96, "train"), ("resnet18", 64, "infer"),
    ("yolov8n", 128, "train"), (f"{Path(__file__).parent / 'fixtures_foreign.py'}:vit_b_16", 224, "train")])
def test_the_quick_ceiling_is_above_the_counted_estimate(spec, imgsz, mode):
    """The long-run warning skips counting the train step where a quick ceiling from the forward alone is
    short: that ceiling must stay above the estimate the counted step gives, or a long run goes unwarned."""
    from netprobe.bench import BenchConfig
    from netprobe.estimate import ceiling_s, plan

    configs = [BenchConfig(spec, device="cpu", batch=2, imgsz=imgsz, mode=mode, warmup=1, iters=2)]
    counted = plan(configs, rounds=2, memory=False).estimate_s
    assert counted > 0 and ceiling_s(configs, rounds=2) >= 1.5 * counted
