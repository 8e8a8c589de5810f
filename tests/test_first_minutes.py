"""What a new user meets in the first ten minutes: warm-up that shows itself and stops, defaults that
say so, output files without trailing spaces, notes that wrap, help lines that fit, frozen weights named.
Through the CLI, into a pipe or a file (CliRunner's output is not a terminal), at COLUMNS=80."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import netprobe
from netprobe import timing

CLI_COLUMNS = 80  # the `cli` fixture runs every command of this file at 80 columns
TINY = ["--device", "cpu", "--batch", "2", "--imgsz", "32", "--warmup", "1", "--iters", "3"]



# ---- warm-up: shown, bounded, counted -----------------------------------------------------------

class Steps:
    """A step marked on a scripted clock."""

    phases = ("forward",)

    def __call__(self, clock):
        clock.mark()
        time.sleep(0.002)
        clock.mark()


class FallingClock:
    """Step times that keep falling by 10% a step: they never settle."""

    def __init__(self):
        self.ms = 1000.0

    def mark(self):
        pass

    def phases_ms(self):
        self.ms *= 0.9
        return [self.ms]


def test_warm_up_stops_at_its_ceiling_and_says_so(monkeypatch):
    monkeypatch.setattr(timing.loop, "PhaseClock", lambda device: FallingClock())
    said = []
    times = timing.measure_steps(Steps(), "cpu", warmup=2, iters=4, max_warmup_s=0.05, min_warmup_s=0,
                                 on_status=said.append)
    assert times.warmup_capped and times.warmup_steps >= 2 and times.warmup_s >= 0.05
    assert said[0].startswith("first step") and "timing 4 steps" in said
    waits = [s for s in said if s.startswith("warm-up:")]
    assert waits and waits[-1].endswith("of at most 0.05 s, waiting for step times to settle")


@pytest.mark.slow
def test_the_table_counts_warm_up_and_timed_steps(cli):
    result = cli("bench", "mobilenetv3_small:classes=10", *TINY, "--format", "json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)["results"][0]
    assert r["warmup_steps"] >= 1 and r["iters"] == 3 and r["warmup_capped"] in (True, False)
    shown = cli("bench", "mobilenetv3_small:classes=10", *TINY, "--format", "markdown").stdout
    assert "Warm-up+timed" in shown and "+3 |" in shown.replace("!", "")


@pytest.mark.parametrize("value", ["0", "-1", "3601", "nan"])
def test_the_warm_up_ceiling_has_bounds(cli, value):
    result = cli("bench", "mobilenetv3_small", *TINY, "--max-warmup-s", value)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "--max-warmup-s" in result.stderr


# ---- defaults are named ---------------------------------------------------------------------------

def test_bench_without_a_model_names_the_one_it_uses(cli, monkeypatch):
    from netprobe.cli import bench as cli_bench

    monkeypatch.setattr(cli_bench, "measure_all", lambda session, configs, find_max: (session, None))
    result = cli("bench", *TINY)
    assert "no model given: efficientnetv2_s, the EfficientNetV2 paper's reference" in result.stderr


def test_summary_without_a_model_names_the_one_it_uses(cli):
    result = cli("summary")
    assert result.exit_code == 0 and result.stderr.startswith("no model given: efficientnetv2_s")


@pytest.mark.slow
@pytest.mark.parametrize(("what", "base"), [("fused-stages", "efficientnet_b4"), ("batch-imgsz", "efficientnet_b6")])
def test_compare_without_a_base_names_the_one_it_uses(cli, monkeypatch, what, base):
    from netprobe.cli import compare as cli_compare

    monkeypatch.setattr(cli_compare, "run_compare", lambda *a: None)
    result = cli("compare", what, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"no --base given: {base}, the base of the EfficientNetV2 paper's Table" in result.stderr
    assert "no --base" not in cli("compare", what, "--device", "cpu", "--base", base).stderr


# ---- files and pipes ------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("args", [["summary", "efficientnetv2_s"], ["summary", "yolov8n"], ["list"]])
def test_no_line_of_a_file_ends_in_spaces(cli, args, tmp_path):
    path = tmp_path / "out.txt"
    with path.open("w") as f:
        done = subprocess.run([sys.executable, "-m", "netprobe", *args], stdout=f, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = path.read_text().splitlines()
    assert lines and not [line for line in lines if line != line.rstrip()]
    assert not [line for line in cli(*args).stdout.splitlines() if line != line.rstrip()]


@pytest.mark.slow
def test_notes_wrap_at_the_terminal_width_and_at_100_columns_in_a_pipe(cli):
    spec = "yolov8n-pose:backbone=(efficientnet_b4:fused=1-3)"
    piped = subprocess.run([sys.executable, "-m", "netprobe", "summary", spec], capture_output=True, text=True,
                           env={**os.environ, "COLUMNS": ""}, timeout=300).stdout
    lines = piped.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ultralytics-style GFLOPs = 2 x"))
    note = lines[start:lines.index("What the head reads")]
    assert len(note) >= 4 and max(len(line) for line in note) <= 100  # ~470 characters, wrapped at 100
    narrow = cli("summary", spec).stdout
    assert max(len(line) for line in narrow.splitlines()) <= 80
    gflops = " ".join(line for line in narrow.splitlines() if line)
    assert "what ultralytics' model.info() prints" in gflops  # nothing lost to the wrapping


# ---- --help -----------------------------------------------------------------------------------------

def test_every_command_line_of_help_fits_whole_at_80_columns(cli):
    shown = cli("--help").stdout
    commands = shown.split("Commands:")[1].splitlines()
    described = {line.split()[0]: line.split(None, 1)[1] for line in commands if line.strip()}
    assert set(described) >= {"bench", "compare", "summary", "list"}
    for name, text in described.items():
        assert text.endswith(".") and "..." not in text and len(f"  {name}  {text}") <= 80, name


# ---- frozen parameters are named ------------------------------------------------------------------

def test_a_detectors_frozen_dfl_is_named_in_a_footnote(cli):
    summary = netprobe.summarize("yolov8n")
    assert summary.params - summary.trainable == 16
    assert [(f["module"], f["type"], f["params"]) for f in summary.frozen] == [("22.dfl.conv", "Conv2d", 16)]
    shown = " ".join(cli("summary", "yolov8n").stdout.split())
    assert "16 parameters are not trainable — 22.dfl.conv (Conv2d, 16): its 1x1 conv holds the fixed bin" in shown
    assert "frozen as in ultralytics" in shown


def test_a_users_frozen_layers_are_named_too():
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 1))
    model[0].requires_grad_(False)
    summary = netprobe.summarize(model, imgsz=16)
    assert summary.frozen == [{"module": "0", "type": "Conv2d", "params": 224,
                               "why": "requires_grad is False in the model as built"}]
    assert netprobe.summarize("efficientnet_b0").frozen == []
