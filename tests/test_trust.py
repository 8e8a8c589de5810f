"""No wrong number, no lost result, no traceback: one test per class of failure found by hostile input."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_checks import one_error_line
from zoo_cases import ZOO

import netprobe
import netprobe.bench.measure
import netprobe.bench.runs
from netprobe import timing
from netprobe.bench import BenchConfig, BenchResult, benchmark, busy_note

ROOT = Path(__file__).resolve().parents[1]
TINY_BENCH = ["bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "32",
              "--warmup", "0", "--iters", "1"]



# ---- wrong numbers: P-levels ----------------------------------------------------------------------

@pytest.mark.parametrize("arch", ZOO)
def test_p_level_is_log2_of_the_cumulative_stride_at_any_size(arch):
    table = netprobe.parse_spec(arch).table
    strides = table.stage_strides()  # stem, stage1..N, from the table
    for size in (table.imgsz, 225, strides[-1] + 1, 97 if strides[-1] <= 97 else strides[-1] * 3 + 1):
        s = netprobe.summarize(arch, imgsz=size, depth="stage")
        assert [r.p_level for r in s.stages[:-1]] == [int(math.log2(v)) for v in strides], (arch, size)
        assert [r.cum_stride for r in s.stages[:-1]] == strides
        assert s.stages[-1].p_level is None  # the pooled head has no spatial map
        taps = {f["name"]: f for f in s.features}
        assert all(taps[r.name]["level"] == f"P{r.p_level}" for r in s.stages[:-1])


def test_rows_without_a_spatial_map_have_no_p_level(cli):
    s = netprobe.summarize("efficientnet_b4:fused=1-3", imgsz=225, depth="layer")
    se = [r for r in s.rows if ".se." in r.name]
    assert se and all(r.p_level is None for r in se)  # the SE's pooled branch
    head = {r.name: r.p_level for r in s.rows if r.name.startswith("head.")}
    assert [head.pop(f"head.conv.{i}") for i in range(3)] == [5, 5, 5]  # the 1x1 conv, BN, act: before pooling
    assert head == {"head.pool": None, "head.classifier.1": None}
    assert next(r for r in s.rows if r.name == "stem.0").p_level == 1  # not P0 at 225 px
    data = json.loads(cli("summary", "efficientnet_b0", "--imgsz", "225", "--format", "json").stdout)
    assert data["stages"][-1]["p_level"] is None and data["stages"][3]["p_level"] == 3


# ---- wrong numbers: compare's options --------------------------------------------------------------

@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--batch", "0", "--batch must be from 1 to 65,536"),
    ("--iters", "0", "iters must be from 1 to 100,000"),
    ("--rounds", "0", "rounds must be from 1 to 1,000"),
    ("--imgsz", "0", "each side must be at least 32"),
    ("--batch", "4,16", "fused-stages takes one value"),
    ("--imgsz", "128,160", "fused-stages takes one value"),
    ("--batch", "99999999999999999999", "--batch must be from 1 to 65,536"),
])
def test_compare_validates_its_options_like_bench(cli, option, value, needle):
    one_error_line(cli("compare", "fused-stages", "--device", "cpu", option, value), needle)


# ---- steady state ---------------------------------------------------------------------------------

def test_warm_up_runs_until_step_times_stop_falling():
    times = iter([50, 40, 32, 26, 21, 17, 14, 12, 11, 10.2, 10, 10.1, 10, 9.9, 10, 10, 10, 10, 10, 10, 10])

    class Clock:
        def phases_ms(self):
            return [next(times)]

    steps, _, capped = timing.warm_up(lambda clock: None, Clock(), 3, 0.0, 30.0, lambda: None)
    assert 9 <= steps <= 15 and not capped  # not 3: the first steps were still getting faster


def test_timed_steps_still_falling_are_detected():
    assert timing.loop.trending_down([30, 28, 26, 20, 15, 14, 14, 14])
    assert not timing.loop.trending_down([14, 15, 14, 13, 14, 15, 14, 14])


def test_a_busy_machine_is_named_under_the_table():
    calm = BenchResult("a", "cpu", "fp32", 2, 32, "train", "ok", step_ms=10, step_p10_ms=9.5, step_p90_ms=10.5,
                         peak_tflops=1.0)
    noisy = BenchResult("b", "cpu", "fp32", 2, 32, "train", "ok", step_ms=10, step_p10_ms=8, step_p90_ms=14,
                          peak_tflops=1.0)
    moved = BenchResult("c", "cpu", "fp32", 2, 32, "train", "ok", step_ms=10, step_p10_ms=9.5, step_p90_ms=10.5,
                          peak_tflops=0.6)
    assert busy_note([calm, calm]) == ""
    assert "p90/p10 up to 1.75" in busy_note([calm, noisy])
    assert "peak moved" in busy_note([calm, moved]) and "busy machine" in busy_note([calm, moved])
    # the roof stays at the best seen; the measurement that dropped still names the busy machine
    dropped = BenchResult("d", "cpu", "fp32", 2, 32, "train", "ok", step_ms=10, step_p10_ms=9.5,
                            step_p90_ms=10.5, peak_tflops=1.0, peak_measured_tflops=0.6)
    assert "peak moved between configurations (0.60–1.00" in busy_note([calm, dropped])


def test_the_roof_is_the_best_rate_measured_so_far(monkeypatch):
    rates = iter([0.2, 0.1, 0.25])
    monkeypatch.setattr(timing.device, "peak_tflops", lambda device, dtype: next(rates))
    monkeypatch.setattr(timing.device, "_BEST_PEAK", {})
    assert [timing.device_roof("cpu", torch.float32) for _ in range(3)] == [(0.2, 0.2), (0.2, 0.1), (0.25, 0.25)]


@pytest.mark.slow
def test_bench_result_says_how_warm_up_went():
    r = benchmark(BenchConfig("mobilenetv3_small:classes=10", device="cpu", batch=2, imgsz=32, warmup=1,
                                  iters=2))
    assert r.status == "ok" and r.warmup_steps >= 1 and r.warmup_s >= timing.MIN_WARMUP_S["cpu"]


# ---- lost results ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "needle"), [
    ("/nonexistent-folder/r.json", "does not exist"),
    ("/proc/x.json", "cannot write in '/proc'"),
    ("/tmp", "give a file name ending in .json or .csv"),
    ("r.txt", "give a file name ending in .json or .csv"),
])
def test_unwritable_destinations_are_refused_before_any_work(cli, monkeypatch, path, needle):
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", lambda *a, **k: pytest.fail("measured before checking --out"))
    one_error_line(cli(*TINY_BENCH, "--out", path), needle)


def test_unwritable_plot_is_refused_before_any_work(cli, monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr("netprobe.compare.benchmark", lambda *a, **k: pytest.fail("measured before checking --plot"))
    one_error_line(cli("compare", "efficientnet_b0", "--device", "cpu", "--plot", str(tmp_path / "no" / "p.png")),
                   "does not exist")


def test_a_write_that_fails_at_the_end_prints_the_results_first(cli, monkeypatch, tmp_path):
    from netprobe.cli import output

    def broken(path, content):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output, "write_atomic", broken)
    result = cli(*TINY_BENCH, "--format", "json", "--out", str(tmp_path / "r.json"))
    assert result.exit_code == 2
    assert json.loads(result.stdout)["results"][0]["status"] == "ok"  # the results came first
    assert result.stderr.strip().splitlines() == [
        f"error: could not write the results to '{tmp_path / 'r.json'}': No space left on device; they were "
        "printed above"]


@pytest.mark.slow
def test_output_files_get_the_mode_a_plain_write_would(cli, tmp_path):
    old = os.umask(0o022)
    try:
        result = cli(*TINY_BENCH, "--out", str(tmp_path / "r.json"))
    finally:
        os.umask(old)
    assert result.exit_code == 0
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.slow
def test_sigterm_prints_and_writes_what_finished(tmp_path):
    # A real signal to a real process: the second configuration sends SIGTERM to its own process.
    script = f"""
import os, signal, sys
import netprobe.bench.runs
from netprobe.cli import main
real, seen = netprobe.bench.runs.benchmark, []
def benchmark(config, *args):
    if seen:
        os.kill(os.getpid(), signal.SIGTERM)
    seen.append(config)
    return real(config, *args)
netprobe.bench.runs.benchmark = benchmark
sys.argv = ["netprobe", *{TINY_BENCH!r}, "--batch", "2,3,4", "--format", "json", "--out", {str(tmp_path / 'r.json')!r}]
main()
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 143, proc.stderr
    assert [r["batch"] for r in json.loads(proc.stdout)["results"]] == [2]
    assert [r["batch"] for r in json.loads((tmp_path / "r.json").read_text())["results"]] == [2]
    assert proc.stderr.strip() == "interrupted: 1 of 3 configurations finished"


# ---- tracebacks and hangs -------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["[/]", "[bold]red[/bold]", "[link=x]y", "efficientnet_b0:act=[red]"])
def test_user_text_is_never_markup(cli, spec):
    result = cli("summary", spec)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert spec.split(":")[-1].split("=")[-1] in result.stderr  # shown literally


def test_messages_with_brackets_are_shown_literally(cli, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib":
            raise ImportError("no matplotlib")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = cli("compare", "efficientnet_b0", "--device", "cpu", "--plot", "p.png")
    one_error_line(result, "pip install 'netprobe[plot]'")


@pytest.mark.parametrize(("args", "needle"), [
    (["bench", "--device", "cpu", "--threads", "10000"], "--threads must be from 1 to"),
    (["bench", "--device", "cpu", "--threads", "0"], "--threads must be from 1 to"),
    (["summary", "efficientnet_b0", "--batch", "99999999999999999999"], "batch must be from 1 to 65,536"),
    (["summary", "efficientnet_b0", "--batch", "0"], "batch must be from 1 to 65,536"),
    (["summary", "efficientnet_b0", "--imgsz", "99999999999999999999"], "at most 8192"),
    (["bench", "--device", "cpu", "--warmup", "100000000000000000000"], "--warmup must be from 0 to 10,000"),
    (["bench", "--device", "cpu", "--iters", "100000000000000000000"], "--iters must be from 1 to 100,000"),
    (["bench", "--device", "cpu", "--warmup", "1e20"], "Invalid value for '--warmup'"),
    (["bench", "--device", "cpu", "--batch", "1e20"], "not a comma list of integers"),
    (["bench", "--device", "cpu", "--batch", "100000000000000000000"], "--batch must be from 1 to 65,536"),
    (["summary", "efficientnet_b0", "--in-chans", "0"], "--in-chans must be from 1 to 4,096"),
    (["compare", "fused-stages", "--device", "cpu", "--rounds", "100000"], "rounds must be from 1 to 1,000"),
    (["summary", "--format", "yaml"], "'yaml' is not one of"),
    (["summary", "--bogus"], "No such option: --bogus"),
    (["summary", "efficientnet_b0", "--format", "json", "--section", "counters"], "use it with --format csv"),
    (["summary", "efficientnet_b0", "--format", "csv", "--section", "nope"], "choose one of rows, features"),
])
def test_every_number_has_a_bound_and_every_mistake_one_line(cli, args, needle):
    one_error_line(cli(*args), needle)


@pytest.mark.slow
def test_closed_stdout_is_one_line_not_a_traceback():
    proc = subprocess.run(["bash", "-c", f"'{sys.executable}' -m netprobe summary efficientnet_b0 >&-"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: standard output is closed") and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_reader_that_goes_away_is_not_a_traceback():
    proc = subprocess.run(["bash", "-c", f"'{sys.executable}' -m netprobe summary efficientnet_b0 --depth layer "
                                         "| head -2 > /dev/null; echo ${PIPESTATUS[0]}"],
                          capture_output=True, text=True)
    assert proc.stdout.strip() in ("0", "141") and "Traceback" not in proc.stderr


def test_help_shows_no_bool_metavar_and_version_exists(cli):
    result = cli("bench", "--help")
    assert result.exit_code == 0 and "<bool>" not in result.stdout and "--channels-last" in result.stdout
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"netprobe {netprobe.__version__}"


# ---- tables that hide data ------------------------------------------------------------------------

def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d[\d,]*\.?\d*[KMG%]?", text))


@pytest.mark.parametrize("columns", ["40", "80", "120", ""])
@pytest.mark.parametrize("args", [
    ["summary", "efficientnet_b4:fused=1-3", "--imgsz", "380", "--depth", "block", "--features"],
    ["summary", "mobilenetv3_large", "--depth", "layer"],
    ["list"],
])
def test_tables_keep_identifying_columns_and_whole_numbers_at_any_width(cli, columns, args):
    env = {"COLUMNS": columns} if columns else {}
    shown = cli(*args, **env)
    assert shown.exit_code == 0, shown.output
    full = cli(*args, "--format", "markdown")
    width = int(columns) if columns else 10**6
    # Every line fits: the canonical spec too, broken at its separators.
    assert all(len(line) <= width for line in shown.stdout.splitlines())
    assert "…" not in shown.stdout  # nothing cut
    for number in _numbers(full.stdout):
        assert number in shown.stdout, (columns, number)
    names = [line.split("|")[1].strip() for line in full.stdout.splitlines()
             if line.startswith("| ") and not line.startswith(("| Stage", "| Arch", "| Tap", "| Detector"))]
    flat = shown.stdout.replace("\n", "").replace("│", "").replace(" ", "")
    for name in names:
        assert name.replace(" ", "") in flat, (columns, name)


@pytest.mark.slow
def test_piped_output_is_not_width_limited():
    # bench's table (16 columns) is far wider than 80: piped, it stays one table with one header line
    proc = subprocess.run([sys.executable, "-m", "netprobe", "bench", "mobilenetv3_small:classes=10", "--device",
                           "cpu", "--batch", "2", "--imgsz", "32", "--warmup", "0", "--iters", "1", "--no-save"],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": ""}, timeout=600)
    assert proc.returncode == 0, proc.stderr
    header = next(line for line in proc.stdout.splitlines() if "Spec" in line)
    assert all(h in header for h in ("Spec", "Status", "imgs/s", "Warm-up+timed", "Peak MB", "of peak"))
    assert len(header) > 120 and "(columns 1/" not in proc.stdout


def test_the_canonical_spec_wraps_only_at_its_separators(cli):
    spec = netprobe.parse_spec("efficientnetv2_s").canonical
    for columns in ("40", "80"):
        lines = cli("summary", "efficientnetv2_s", COLUMNS=columns).stdout.splitlines()
        first = next(i for i, line in enumerate(lines) if line.startswith("canonical: "))
        block = [lines[first][len("canonical: "):]]
        block += [line.strip() for line in lines[first + 1:] if line.startswith("  ")]
        assert "".join(block) == spec and len(block) > 1  # the lines join back to the spec, character for character
        assert all(part[-1] in "/,+" for part in block[:-1]) and all(len(line) <= int(columns) for line in lines)


def test_markdown_carries_everything_the_table_shows(cli):
    md = cli("summary", "mobilenetv3_small", "--imgsz", "64", "--features", "--counter", "native",
             "--format", "markdown").stdout
    for needle in ("**mobilenetv3_small — input 1×3×64×64**", "Params 2,542,856", "Not in MACs:",
                   "canonical: `custom:stem=16,", "**Feature taps for a detection neck**",
                   "**Counters reconciled", "Published (torchvision)"):
        assert needle in md, needle


@pytest.mark.parametrize(("section", "first"), [(None, "name,op,"), ("features", "level,name,channels"),
                                                ("totals", "spec,input,params"), ("counters", "name,macs,ratio")])
def test_csv_prints_one_table_chosen_by_section(cli, section, first):
    args = ["summary", "mobilenetv3_small", "--imgsz", "64", "--features", "--counter", "native", "--format", "csv"]
    result = cli(*args, *(["--section", section] if section else []))
    assert result.exit_code == 0 and result.stdout.startswith(first), result.stdout[:80]


# ---- weak messages and small gaps -----------------------------------------------------------------

@pytest.mark.slow
def test_bench_takes_hxw_and_per_stage_inference(cli):
    r = benchmark(BenchConfig("efficientnet_b0:classes=10", device="cpu", batch=2, imgsz="64x48", mode="infer",
                                  warmup=0, iters=1, per_stage=True))
    assert r.status == "ok" and r.imgsz == "64x48"
    assert [s.name for s in r.stages][:2] == ["stem", "stage1"] and r.stages[0].in_shape == [3, 64, 48]
    assert all(s.fwd_ms > 0 and s.bwd_ms is None for s in r.stages)
    result = cli(*TINY_BENCH[:-6], "--batch", "2", "--imgsz", "64x48", "--warmup", "0", "--iters", "1",
                 "--format", "json")
    assert json.loads(result.stdout)["results"][0]["imgsz"] == "64x48"


@pytest.mark.slow
def test_compare_settings_line_counts_in_words(cli):
    result = cli("compare", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "32",
                 "--rounds", "1", "--iters", "1", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert "1 round × 1 iter " in result.stdout and "1 rounds" not in result.stdout


def test_nothing_finished_is_said_not_an_empty_table(cli, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(netprobe.bench.runs, "benchmark", interrupted)
    result = cli(*TINY_BENCH)
    assert result.exit_code == 130 and result.stdout == ""
    assert "nothing finished" in result.stderr


def test_a_model_the_meta_counter_cannot_run_is_counted_on_a_real_forward_and_timed(tmp_path):
    path = tmp_path / "nz.py"
    path.write_text("import torch\nfrom torch import nn\n\n\nclass NZ(nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.c = nn.Conv2d(3, 4, 3)\n\n    def forward(self, x):\n"
                    "        y = self.c(x)\n        return y[torch.nonzero(y > 0, as_tuple=True)].sum().expand(2, 3)\n")
    r = benchmark(BenchConfig(f"{path}:NZ", device="cpu", batch=2, imgsz=16, warmup=0, iters=1))
    # issue 25: never refuse to measure; the counts come from a real forward at the run's size
    assert r.status == "ok" and r.imgs_per_s > 0 and r.macs_per_img == 3 * 4 * 9 * 14 * 14


def test_summary_counts_a_model_the_meta_device_cannot_run_on_a_real_forward_and_says_so(cli, tmp_path):
    path = tmp_path / "dyn.py"
    path.write_text("from torch import nn\n\n\nclass Dyn(nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.c = nn.Conv2d(3, 4, 3)\n\n    def forward(self, x):\n"
                    "        y = self.c(x)\n        return y * (1.0 + 0.0 * float(y.mean().item()))\n")
    result = cli("summary", f"{path}:Dyn", "--imgsz", "16", "--train", "--format", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["macs"] == 3 * 4 * 9 * 14 * 14 and found["params"] == 4 * 27 + 4
    assert "Tensor.item() cannot be called on meta tensors" in found["real_forward"]
    assert found["train"]["flop_counter"]["fwd_macs"] == found["macs"]  # torch's counter ran on the real copy too
    shown = " ".join(cli("summary", f"{path}:Dyn", "--imgsz", "16").stdout.split())  # the note wraps at 80 columns
    assert "note: counted on a real CPU forward at 1×3×16×16: the meta device cannot run this model" in shown
    wrong = cli("summary", f"{path}:Dyn", "--imgsz", "16", "--in-chans", "1")  # fails for real too: that cause
    one_error_line(wrong, "add --in-chans 3")


def test_compare_keeps_rounds_whose_step_could_not_be_counted():
    from netprobe.compare import CompareRow, update_row

    ok = [BenchResult("a", "cpu", "fp32", 2, 32, "train", "ok", imgs_per_s=v, tflops=None, peak_fraction=None)
          for v in (10.0, 12.0)]
    row = CompareRow("v", "s", 2, 32, 1, 1, 1)
    update_row(row, ok)
    assert row.train_imgs_per_s == 11.0 and row.tflops is None and row.peak_fraction is None


@pytest.mark.slow
def test_roofs_do_not_count_in_the_models_peak_memory(monkeypatch):
    seen = []
    real = timing.reset_peak
    monkeypatch.setattr("netprobe.bench.measure.reset_peak",
                        lambda device: seen.append(len(timing.best_peaks())) or real(device))
    monkeypatch.setattr(timing.device, "_BEST_PEAK", {})
    benchmark(BenchConfig("mobilenetv3_small:classes=10", device="cpu", batch=2, imgsz=32, warmup=0, iters=1))
    assert seen == [1]  # the matmul roof was measured (and its buffers freed) before the peak was reset


@pytest.mark.slow
def test_a_row_that_fails_in_eager_torch_is_printed_and_exits_2(cli, tmp_path):
    path = tmp_path / "nograd.py"
    path.write_text("from torch import nn\n\n\nclass NoGrad(nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.c = nn.Conv2d(3, 4, 3)\n\n    def forward(self, x):\n"
                    "        return self.c(x).detach().mean((2, 3))\n")
    bench = cli("bench", f"{path}:NoGrad", "--device", "cpu", "--batch", "2", "--imgsz", "16", "--iters", "1",
                "--warmup", "0", "--mode", "both", "--no-save", "--format", "json")
    assert bench.exit_code == 2  # after printing every row: the train row failed, the inference row ran
    assert [r["status"] for r in json.loads(bench.stdout)["results"]] == ["error", "ok"]
    assert bench.stderr.strip() == (f"error: {path}:NoGrad b2 16px train: RuntimeError: element 0 of tensors does not "
                                    "require grad and does not have a grad_fn")
    compare = cli("compare", f"{path}:NoGrad", "resnet18:classes=4,width=0.25", "--device", "cpu", "--batch", "2",
                  "--imgsz", "32", "--rounds", "1", "--iters", "1", "--no-save", "--format", "json")
    assert compare.exit_code == 2 and json.loads(compare.stdout)["rows"][1]["status"] == "ok"
    assert compare.stderr.strip().splitlines()[-1].startswith(f"error: {path}:NoGrad: RuntimeError: element 0")
