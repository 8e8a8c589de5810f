"""Defaults and limits are declared once (netprobe.defaults): every CLI default equals the API's, the option
groups reach the commands as typed values, and messages state the same bounds."""

import dataclasses
import subprocess
import sys

import pytest
import typer
from cli_checks import one_error_line

from netprobe import defaults
from netprobe.bench import BenchConfig
from netprobe.cli import app
from netprobe.cli.options import MeasureOptions
from netprobe.compare import Settings


def cli_defaults(command: str) -> dict:
    """Each option of a command (by its parameter name) and its default, as the command line sees it."""
    click_app = typer.main.get_command(app)
    params = click_app.commands[command].params  # type: ignore[attr-defined]
    return {p.name: getattr(p.default, "value", p.default) for p in params}


@pytest.mark.parametrize("command", ["bench", "compare"])
def test_every_cli_default_equals_the_apis(command):
    api = {f.name: f.default for f in dataclasses.fields(BenchConfig if command == "bench" else Settings)
           if f.default is not dataclasses.MISSING}
    given = {name: value for name, value in cli_defaults(command).items() if value is not None and name in api}
    assert given, "no option shares a name with the API's config"
    assert {name: api[name] for name in given} == given
    assert cli_defaults(command)["max_warmup_s"] == defaults.MAX_WARMUP_S
    assert cli_defaults(command)["build_timeout"] == defaults.BUILD_TIMEOUT_S


def test_the_api_takes_its_defaults_from_the_one_module():
    config = BenchConfig("efficientnet_b0")
    assert (config.batch, config.warmup, config.iters, config.max_warmup_s) == (
        defaults.BATCH, defaults.WARMUP_STEPS, defaults.ITERS, defaults.MAX_WARMUP_S)
    assert cli_defaults("bench")["warmup"] == defaults.WARMUP_STEPS
    assert cli_defaults("summary")["build_timeout"] == defaults.BUILD_TIMEOUT_S


def test_sizes_are_parsed_once_into_height_and_width():
    measure = MeasureOptions(batch="8,16", imgsz="128,160x128", runtime="onnxruntime")
    assert measure.batches == [8, 16] and measure.sizes == [(128, 128), (160, 128)]
    assert measure.runtimes == ["torch", "onnxruntime"] and measure.torch_added
    assert BenchConfig("efficientnet_b0", imgsz="160x128").imgsz == (160, 128)
    assert BenchConfig("efficientnet_b0", imgsz=96).imgsz == (96, 96)
    assert Settings("cpu", 2, 64).imgsz == (64, 64)


@pytest.mark.parametrize(("args", "needle"), [
    (["--batch", "0"], f"must be from 1 to {defaults.LIMITS['batch'][1]:,}"),
    (["--iters", "0"], f"must be from 1 to {defaults.LIMITS['iters'][1]:,}"),
    (["--in-chans", "5000"], f"must be from 1 to {defaults.LIMITS['in_chans'][1]:,}"),
    (["--build-timeout", "-1"], f"{defaults.MAX_BUILD_TIMEOUT_S:,.0f}"),
    (["--bucket-mb", "2"], "go with --nproc"),
])
def test_bounds_in_messages_are_the_modules(cli, args, needle):
    one_error_line(cli("bench", "efficientnet_b0", "--device", "cpu", *args), needle)


@pytest.mark.slow
def test_the_defaults_module_imports_nothing_heavy():
    probe = ("import sys, netprobe.defaults, netprobe.sizes; "
             "print(sorted(m for m in sys.modules if m.startswith(('torch', 'typer', 'rich'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
