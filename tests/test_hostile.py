"""Hostile inputs on the newer surfaces (issue 21): YAML files, model paths, detector specs.

Each case through the CLI: one line on stderr saying what was wrong and what would be right, exit
code 2, no traceback, and refused before long work. Cases that once hung run in a subprocess under
`timeout -k`, so a hang fails the test instead of the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import one_error_line

LAYOUTS = Path(__file__).resolve().parents[1] / "netprobe" / "detect" / "layouts"
YOLOV8 = (LAYOUTS / "yolov8.yaml").read_text()
HANG_S = 60  # a subprocess that has not ended by then is a hang



def run_bounded(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`netprobe ARGS` in a subprocess, killed by `timeout -k` if it runs past HANG_S (exit 124 or 137)."""
    prefix = ["timeout", "-k", "5", str(HANG_S)] if shutil.which("timeout") else []
    done = subprocess.run([*prefix, sys.executable, "-m", "netprobe", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "COLUMNS": "200"}, timeout=HANG_S + 30)
    assert done.returncode not in (124, 137), f"netprobe {' '.join(args)} hung: {done.stderr[-400:]}"
    return done


def one_error_line_of(done: subprocess.CompletedProcess, needle: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def yaml_with(tmp_path: Path, name: str, old: str, new: str) -> str:
    assert old in YOLOV8
    path = tmp_path / name
    path.write_text(YOLOV8.replace(old, new, 1))
    return str(path)


# ---- YAML files -----------------------------------------------------------------------------------

def test_random_bytes_are_not_a_yaml_file(cli, tmp_path):
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes([0x94, 0xff, 0x00, 0x81]) * 1024)
    one_error_line(cli("summary", str(garbage), "--scale", "s"), "is not a text file (byte 0 is not UTF-8)")


def test_a_yaml_file_over_the_size_limit_is_refused_unread(cli, tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(YOLOV8 + "# padding\n" * 200_000)  # 2 MB
    one_error_line(cli("summary", str(big), "--scale", "s"), "a model YAML is at most 1,048,576 bytes")


def test_a_yaml_path_that_is_a_folder_or_a_device_is_refused(cli, tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    one_error_line(cli("summary", str(tmp_path / "dir.yaml")), "is a folder; give a model .yaml file")
    if Path("/dev/zero").exists():
        (tmp_path / "zero.yaml").symlink_to("/dev/zero")
        one_error_line(cli("summary", str(tmp_path / "zero.yaml")), "is not a regular file")


def test_an_unknown_scale_is_one_line_naming_the_valid_ones(cli, tmp_path):
    path = yaml_with(tmp_path, "model.yaml", "nc: 80", "nc: 80")
    result = cli("summary", path, "--scale", "q")
    one_error_line(result, "scale 'q' is not in its scales; give --scale n, s, m, l or x")
    assert result.stderr.count(path) == 1 and "malformed" not in result.stderr


# ---- sizes out of range: refused before building --------------------------------------------------

def test_a_width_out_of_range_is_refused_stating_the_bound(cli, tmp_path):
    uncapped = yaml_with(tmp_path, "hugew.yaml", "s: [0.33, 0.50, 1024]", "s: [0.33, 0.50, 100000000000]")
    Path(uncapped).write_text(Path(uncapped).read_text().replace("[64, 3, 2]", "[100000000, 3, 2]", 1))
    one_error_line(cli("summary", uncapped, "--scale", "s"), "at most 65,536 per row after scaling")
    wide = yaml_with(tmp_path, "widem.yaml", "s: [0.33, 0.50, 1024]", "s: [0.33, 100000000, 1024]")
    one_error_line(cli("summary", wide, "--scale", "s"), "(x width 1e+08) is too many; at most 65,536")


@pytest.mark.slow
def test_repeats_out_of_range_are_refused_before_building(tmp_path):
    deep = yaml_with(tmp_path, "deep.yaml", "[-1, 3, C2f, [128, True]]", "[-1, 100000000, C2f, [128, True]]")
    one_error_line_of(run_bounded("summary", deep, "--scale", "s"),
                      "row 2 (C2f [128, True]): 100,000,000 repeats (x depth 0.33) is too many; at most 512")


def test_parameters_and_rows_out_of_range_are_refused(cli, tmp_path):
    huge = yaml_with(tmp_path, "huge.yaml", "[-1, 1, SPPF, [1024, 5]]", "[-1, 1, nn.Conv2d, [512, 1000000, 15]]")
    one_error_line(cli("summary", huge, "--scale", "s"), "at most 10,000,000,000 (10 G) in a detector")
    many = yaml_with(tmp_path, "many.yaml", "head:\n", "head:\n" + "  - [-1, 1, nn.Identity, []]\n" * 1000)
    one_error_line(cli("summary", many, "--scale", "s"), "1,023 rows; a detector has at most 1,000")


# ---- model paths and destinations -----------------------------------------------------------------

def test_a_folder_given_as_a_model_file_is_named_a_folder(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    one_error_line(cli("summary", "adir:ok"), "'adir' is a folder, not a model; give a .py file in it "
                                             "(adir/model.py:ok) or a module path (module:package.module:ok)")
    (tmp_path / "bdir.py").mkdir()
    one_error_line(cli("summary", "bdir.py:ok"), "'bdir.py' is a folder, not a file; give the path of a .py file")
    (tmp_path / "notes.txt").write_text("")
    one_error_line(cli("summary", "notes.txt:ok"), "'notes.txt' is not a .py file; give path/to/file.py:ok")
    one_error_line(cli("summary", "efficientnet_bx"), "unknown arch 'efficientnet_bx'")  # no folder: as before


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
@pytest.mark.parametrize("command", [["bench", "mobilenetv3_small", "--breakdown"], ["compare", "efficientnet_b0"]])
def test_a_plot_in_a_folder_that_takes_no_file_says_not_writable(cli, monkeypatch, command):
    pytest.importorskip("matplotlib")
    import netprobe.bench.runs

    never = lambda *a, **k: pytest.fail("measured before checking --plot")  # noqa: E731
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", never)  # bench measures through its runs ...
    monkeypatch.setattr("netprobe.compare.benchmark", never)  # ... compare through its own import
    one_error_line(cli(*command, "--device", "cpu", "--plot", "/proc/r.png"),
                   "cannot write in '/proc', the folder is not writable (it takes no new files)")


SHRINK = """
from torch import nn


class Shrink(nn.Module):  # declares c2 channels, returns them flattened
    def __init__(self, c1, c2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 1)

    def forward(self, x):
        return self.conv(x).flatten(1)
"""


def test_a_user_block_returning_the_wrong_shape_is_blamed_not_the_row_that_reads_it(cli, tmp_path):
    blocks = tmp_path / "blocks.py"
    blocks.write_text(SHRINK)
    path = yaml_with(tmp_path, "shrink.yaml", "[-1, 1, SPPF, [1024, 5]]", "[-1, 1, Shrink, [1024]]")
    result = cli("summary", path, "--scale", "s", "--modules", str(blocks))
    one_error_line(result, "row 9 (Shrink [512, 512]) returns a 1x2097152 tensor, which row 10 (nn.Upsample) reads; "
                           "a row that others read must return an N x C x H x W map")
    assert "IndexError" not in result.stderr and "NotImplementedError" not in result.stderr


# ---- the right error, then an exit at once (each in a subprocess under `timeout -k`) --------------

@pytest.mark.slow
@pytest.mark.parametrize(("src", "needle"), [
    ("16", "row 11 (Concat) reads from 16, but only rows 0-10 come before it"),  # pointing forward
    ("99", "row 11 (Concat) reads from 99, but only rows 0-10 come before it"),  # out of range
    ("-50", "row 11 (Concat) reads from -50, but only rows 0-10 come before it"),
])
def test_a_from_index_forward_or_out_of_range_exits_at_once(tmp_path, src, needle):
    path = yaml_with(tmp_path, "from.yaml", "[[-1, 6], 1, Concat, [1]]", f"[[-1, {src}], 1, Concat, [1]]")
    one_error_line_of(run_bounded("summary", path, "--scale", "s"), needle)


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "needle"), [
    ("yolov8n-pose:backbone=(yolov8n-pose:backbone=(efficientnet_b0))",
     "backbone 'yolov8n-pose:backbone=(efficientnet_b0)' is a detector, not a backbone; give a netprobe backbone"),
    ("yolov8n:backbone=(custom:stem=24,stages=mb_r2_k3_s2_e4_c48/mb_r2_k3_s2_e4_c64/mb_r2_k3_s2_e4_c96,head=256)",
     "has no stride-32 stage (its strides: 2, 4, 8, 16); a detector needs taps at strides 8, 16, 32"),
])
def test_a_backbone_no_detector_can_use_exits_at_once(spec, needle):
    one_error_line_of(run_bounded("summary", spec), needle)



# ---- meta counting refuses what a real forward refuses --------------------------------------------

WRONG_SHAPES = """
import torch
from torch import nn


class BadFwd(nn.Module):  # Linear(7, 3) on a 1x3x64x64 input: a real forward refuses it
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(7, 3)

    def forward(self, x):
        return self.fc(x)


class AddBad(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(7))

    def forward(self, x):
        return x + self.bias


class CatBad(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 4, 3, stride=2)

    def forward(self, x):
        return torch.cat([x, self.down(x)], 1)


class KernelBad(nn.Module):
    def __init__(self):
        super().__init__()
        self.big = nn.Conv2d(3, 4, 99)

    def forward(self, x):
        return self.big(x)


def badfwd():
    return BadFwd()


def addbad():
    return AddBad()


def catbad():
    return CatBad()


def kernelbad():
    return KernelBad()
"""


@pytest.mark.parametrize(("factory", "needle"), [
    ("badfwd", "fails on an input of 1×3×64×64 in fc (Linear): RuntimeError: mat1 and mat2 shapes cannot be "
               "multiplied (192x64 and 7x3); fc is Linear(in_features=7) and got 1×3×64×64 (last dim 64)"),
    ("addbad", "The size of tensor a (64) must match the size of tensor b (7) at non-singleton dimension 3"),
    ("catbad", "Sizes of tensors must match except in dimension 1. Expected size 64 but got size 31"),
    ("kernelbad", "in big (Conv2d): RuntimeError: Calculated padded input size per channel: (64 x 64). Kernel "
                  "size: (99 x 99)"),
])
def test_meta_counting_refuses_what_a_real_forward_refuses(cli, tmp_path, monkeypatch, factory, needle):
    import torch

    monkeypatch.chdir(tmp_path)
    (tmp_path / "wrong.py").write_text(WRONG_SHAPES)
    namespace: dict = {}
    exec(WRONG_SHAPES, namespace)
    with pytest.raises(RuntimeError):
        namespace[factory]()(torch.zeros(1, 3, 64, 64))  # the real forward refuses it ...
    one_error_line(cli("summary", f"wrong.py:{factory}", "--imgsz", "64"), needle)  # ... and so does summary


# ---- a factory that never returns -----------------------------------------------------------------

FACTORIES = """
import time

from torch import nn


def forever():
    while True:
        time.sleep(0.5)


def blocked():
    time.sleep(3600)  # one blocking call: the timer must interrupt it


def stubborn():
    while True:  # swallows every error, as careless retry loops do: the timeout must still get through
        try:
            time.sleep(0.5)
        except Exception:
            pass


def ok():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
"""


@pytest.mark.slow
@pytest.mark.parametrize("factory", ["forever", "blocked", "stubborn"])
def test_a_factory_that_never_returns_is_stopped_at_the_build_timeout(tmp_path, factory):
    (tmp_path / "fac.py").write_text(FACTORIES)
    done = run_bounded("summary", f"fac.py:{factory}", "--build-timeout", "1", cwd=tmp_path)
    one_error_line_of(done, f"building fac.py:{factory} took longer than 1 s (--build-timeout) and was stopped")


def test_build_timeout_is_checked_and_a_quick_factory_is_untouched(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fac.py").write_text(FACTORIES)
    one_error_line(cli("summary", "fac.py:ok", "--build-timeout", "-1"),
                   "--build-timeout -1 is not allowed; give seconds from 0 (no limit) to 86,400")
    result = cli("summary", "fac.py:ok", "--imgsz", "32", "--build-timeout", "5")
    assert result.exit_code == 0, result.output
    import signal

    if hasattr(signal, "getitimer"):
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no timer left running


def test_what_is_being_built_is_shown_on_a_terminal(monkeypatch):
    import io

    from netprobe.building import building

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    with building("fac.py:forever"):
        assert err.getvalue() == "building fac.py:forever …"
    assert err.getvalue().endswith("\r\033[K")  # cleared once built
