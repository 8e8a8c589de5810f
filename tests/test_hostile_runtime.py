"""Hostile inputs, round three (issue 25's runtime and model cases, issue 28's parity): models the meta
device cannot count, outputs of any nesting, exports broken on purpose, failed runtime rows that must
fail the command, tiny build limits, models that change themselves, and specs past the channel cap.

Each case through the CLI, on model files the test writes; a case that could hang runs in a subprocess
under `timeout -k`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_checks import one_error_line

from netprobe.runtimes.parity import parity
from netprobe.spec import parse_spec

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

pytestmark = pytest.mark.slow  # every test exports to another runtime (sessions, quantization)
CLI_COLUMNS = 200  # the `cli` fixture runs every command of this file at 200 columns
HANG_S = 120
QUICK = ["--device", "cpu", "--batch", "2", "--imgsz", "16", "--iters", "2", "--max-warmup-s", "1", "--no-save"]
MODELS = '''import torch
from torch import nn


class Dyn(nn.Module):  # .item(): the meta device cannot run it
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.conv(x)
        gain = 1.0 + 0.0 * float(y.abs().mean().item())
        return self.fc(y.mean((2, 3))) * gain


class DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        f = self.conv(x)
        return {"logits": self.fc(f.mean((2, 3))), "feat": f}


class Nested(DictOut):
    def forward(self, x):
        f = self.conv(x)
        return self.fc(f.mean((2, 3))), (f, [f * 2])


def exporting():
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


class ZeroedOnExport(DictOut):  # an export gone wrong: its output all zeros
    def forward(self, x):
        out = self.fc(self.conv(x).mean((2, 3)))
        return out * 0 if exporting() else out


class SwappedOnExport(DictOut):  # an export gone wrong: the input's first two channels swapped
    def forward(self, x):
        if exporting():
            x = torch.cat([x[:, 1:2], x[:, :1], x[:, 2:]], 1)
        return self.fc(self.conv(x).mean((2, 3)))


class Grower(nn.Module):  # adds a child in forward
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        if not hasattr(self, "extra"):
            self.extra = nn.Conv2d(8, 8, 1)
        return self.extra(self.conv(x))


class Gray(nn.Module):  # takes one channel and does not say so
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class Res(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(x)))


class Flat(nn.Module):  # a stem of two convs, then a block, all top-level children
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 2, 1)
        self.conv2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.block = Res(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block(torch.relu(self.conv2(torch.relu(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


def slow(seconds=3):
    import time

    time.sleep(seconds)
    return nn.Conv2d(3, 8, 3)
'''


@pytest.fixture
def models(tmp_path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def run_bounded(*args: str) -> subprocess.CompletedProcess:
    """`netprobe ARGS` in a subprocess, killed by `timeout -k` if it runs past HANG_S (exit 124 or 137)."""
    prefix = ["timeout", "-k", "5", str(HANG_S)] if shutil.which("timeout") else []
    done = subprocess.run([*prefix, sys.executable, "-m", "netprobe", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=HANG_S + 30)
    assert done.returncode not in (124, 137), f"netprobe {' '.join(args)} hung: {done.stderr[-400:]}"
    return done


def bench_rows(result) -> list[dict]:
    return json.loads(result.stdout)["results"]


# ---- a model the meta device cannot count is still counted and timed ----------------------------------

def test_a_model_meta_cannot_count_is_counted_on_a_real_forward_and_timed(cli, models):
    result = cli("bench", f"{models}:Dyn", *QUICK, "--runtime", "onnxruntime,openvino,torchscript,export",
                 "--format", "json")
    rows = bench_rows(result)
    assert [r["runtime"] for r in rows] == ["torch", "onnxruntime", "openvino", "torchscript", "export"]
    macs = 3 * 8 * 9 * 16 * 16 + 8 * 10  # the conv and the linear, per image at 16 px
    assert all(r["macs_per_img"] == macs for r in rows), [r["macs_per_img"] for r in rows]
    timed = [r for r in rows if r["status"] == "ok"]
    assert [r["runtime"] for r in timed] == ["torch", "onnxruntime", "openvino", "torchscript"]
    assert all(r["imgs_per_s"] > 0 and r["parity_ok"] is not False for r in timed)
    export = rows[-1]  # torch.export refuses the data-dependent .item(): a row naming the stage
    assert export["status"] == "error" and export["failed_in"] == "export" and export["error"].startswith(
        "export failed: ")
    assert result.exit_code == 2, result.output  # a failed runtime row fails the command, after printing
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "--runtime export: export failed" in errors[0]


def test_compare_with_a_failed_runtime_exits_2_after_printing(cli, models):
    result = cli("compare", f"{models}:Dyn", f"{models}:DictOut", "--device", "cpu", "--batch", "2", "--imgsz",
                 "16", "--iters", "2", "--rounds", "1", "--max-warmup-s", "1", "--no-save", "--runtime", "export",
                 "--format", "json")
    assert result.exit_code == 2, result.output
    rows = {(r["label"], r["runtime"]): r for r in json.loads(result.stdout)["rows"]}
    assert rows[(f"{models}:Dyn", "export")]["failed_in"] == "export"
    assert rows[(f"{models}:DictOut", "export")]["status"] == "ok"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Dyn, --runtime export: export failed" in errors[0], result.stderr


# ---- outputs of any nesting, compared leaf by leaf ----------------------------------------------------

@pytest.mark.parametrize("model", ["DictOut", "Nested"])
def test_nested_outputs_are_compared_leaf_by_leaf_in_every_runtime(cli, models, model):
    result = cli("bench", f"{models}:{model}", *QUICK, "--runtime", "torchscript,export,onnxruntime,openvino",
                 "--format", "json")
    assert result.exit_code == 0, result.output
    rows = bench_rows(result)
    for r in rows[1:]:
        assert r["status"] == "ok" and r["parity_ok"] and r["max_rel_err"] < 1e-4, (r["runtime"], r["error"])


def test_parity_compares_nested_outputs_and_fails_zeros_at_any_scale():
    ref = (torch.ones(2, 3), {"a": torch.arange(4.0), "b": [torch.zeros(1)]})
    assert parity(ref, [torch.ones(2, 3), torch.arange(4.0), torch.zeros(1)]).ok
    tiny = torch.randn(2, 10) * 1e-14  # an untrained net's logits: zeros must not pass
    assert not parity([tiny], [torch.zeros(2, 10)]).ok
    assert parity([tiny], [tiny * (1 + 1e-6)]).ok
    off = parity(ref, [torch.ones(2, 3), torch.arange(4.0) * 1.01, torch.zeros(1)])
    assert not off.ok and off.max_rel == pytest.approx(0.01, rel=1e-3) and "output 1 of 3" in off.note


@pytest.mark.parametrize("model", ["ZeroedOnExport", "SwappedOnExport"])
def test_an_export_broken_on_purpose_is_a_mismatch(cli, models, model):
    result = cli("bench", f"{models}:{model}", *QUICK, "--runtime", "onnxruntime,openvino,torchscript,export",
                 "--format", "json")
    assert result.exit_code == 2, result.output
    rows = bench_rows(result)
    for r in rows[1:]:
        assert r["status"] == "mismatch" and r["failed_in"] == "parity" and not r["parity_ok"], r
        assert r["max_rel_err"] > 0.1 and "unit-scale copy" in r["error"]
    assert sum(line.startswith("error: ") for line in result.stderr.splitlines()) == 4


def test_the_caption_states_the_tolerance(cli, models):
    from netprobe.runtimes import PARITY_TOLERANCE

    shown = cli("bench", f"{models}:DictOut", *QUICK, "--runtime", "onnxruntime").stdout
    assert f"beyond {PARITY_TOLERANCE:g} the row says mismatch" in " ".join(shown.split())


# ---- the build limit, models that change themselves, the first layer's channels ----------------------

@pytest.mark.parametrize("limit", ["1e-9", "1e-7", "1e-6"])
def test_a_tiny_build_timeout_is_one_line(models, limit):
    done = run_bounded("summary", f"{models}:slow(seconds=3)", "--build-timeout", limit)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "took longer than" in lines[0] and "Traceback" not in done.stderr


def test_a_model_that_adds_a_child_in_forward_is_counted_as_built_and_said(cli, models):
    result = cli("summary", f"{models}:Grower", "--imgsz", "16", "--stages", "auto", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["params"] == data["trainable"] == 8 * 3 * 9 + 8
    assert "changed itself during its forward" in data["changed"] and "296 after" in data["changed"]
    shown = cli("summary", f"{models}:Grower", "--imgsz", "16", "--stages", "auto").stdout
    assert "Params 224 (trainable 224)" in shown and "changed itself" in shown


def test_a_one_channel_model_says_add_in_chans(cli, models):
    one_error_line(cli("summary", f"{models}:Gray", "--imgsz", "16"), "add --in-chans 1")
    assert cli("summary", f"{models}:Gray", "--imgsz", "16", "--in-chans", "1").exit_code == 0
    rows = bench_rows(cli("bench", f"{models}:Gray", *QUICK, "--format", "json"))
    assert "add --in-chans 1" in rows[0]["error"] and "meta device" not in rows[0]["error"]


# ---- kept exports, spec titles, channel caps, the stem row --------------------------------------------

def test_keep_exports_refuses_to_overwrite_a_file(cli, models, tmp_path):
    kept = tmp_path / "kept"
    kept.mkdir()
    first = cli("bench", f"{models}:DictOut", *QUICK, "--runtime", "onnxruntime", "--keep-exports", str(kept))
    assert first.exit_code == 0, first.output
    (onnx,) = kept.iterdir()
    before = onnx.read_bytes()
    one_error_line(cli("bench", f"{models}:DictOut", *QUICK, "--runtime", "onnxruntime", "--keep-exports",
                       str(kept)), "which this run would overwrite")
    assert onnx.read_bytes() == before and len(list(kept.iterdir())) == 1


def test_a_spec_with_stem_pool_shows_a_spec_that_parses_back(cli):
    text = "custom:stem=16,stem_pool=1,stages=bottleneck_r1_k3_s2_e4_c32,head=0,classes=10"
    shown = str(parse_spec(text))
    assert "stem_pool=1" in shown and parse_spec(shown).table == parse_spec(text).table
    result = cli("summary", text, "--imgsz", "64")
    assert result.exit_code == 0 and f"{shown} — input" in result.stdout


@pytest.mark.parametrize(("spec", "inner"), [
    ("custom:stem=32,stages=bottleneck_e16_c8192,head=0", "131,072"),
    ("custom:stem=32,stages=mb_e16_c4096/mb_e16_c8192,head=0", "131,072"),
])
def test_a_block_past_the_channel_cap_is_refused_before_building(spec, inner):
    done = run_bounded("summary", spec, "--imgsz", "32")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"{inner} channels inside" in done.stderr and "65,536" in done.stderr


def test_auto_stages_give_the_stem_its_own_row(cli, models):
    data = json.loads(cli("summary", f"{models}:Flat", "--imgsz", "32", "--stages", "auto", "--format",
                          "json").stdout)
    assert [r["name"] for r in data["stages"]] == ["stem", "block", "head"]
    stem = data["stages"][0]
    assert stem["params"] == (3 * 16 * 9 + 16) + (16 * 16 * 9 + 16) and stem["stride"] == 2
