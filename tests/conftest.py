"""Test-wide settings: netprobe's count cache and results database go to a temporary folder, never the
user's own; the `cli` fixture runs a command in this process; the `slow` marker names the tests that
start other processes, ranks or a browser, or export, quantize or compile (`pytest -m "not slow"` is the quick
inner loop)."""

import os
import tempfile
from pathlib import Path

import pytest


def pytest_configure(config):
    os.environ.setdefault("NETPROBE_CACHE_DIR", tempfile.mkdtemp(prefix="netprobe-test-cache-"))
    # set, not defaulted: a NETPROBE_DB of the developer's own must not receive test runs
    os.environ["NETPROBE_DB"] = os.path.join(tempfile.mkdtemp(prefix="netprobe-test-db-"), "results.sqlite")
    _share_the_cores()
    config.addinivalue_line("markers", "slow: starts processes, ranks or a browser; exports, quantizes or compiles; "
                                        "times whole bench/compare runs; or runs the largest zoo models for real "
                                        "(deselect with -m 'not slow')")


def _share_the_cores() -> None:
    """Under pytest-xdist, each worker's torch (and the processes it starts) takes its share of the cores
    rather than all of them: two workers of two threads each on two cores spin against each other."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if "PYTEST_XDIST_WORKER" not in os.environ or workers < 2:
        return
    share = str(max(1, (os.cpu_count() or 1) // workers))
    os.environ.setdefault("OMP_NUM_THREADS", share)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture
def cli(request):
    """`netprobe ARGS` run in this process: `cli("summary", "efficientnet_b0", columns=80)` is click's Result
    (exit_code, stdout, stderr). COLUMNS comes from `columns=`, else the test module's CLI_COLUMNS, else
    stays unset; other keywords are environment variables for the run (`cli(..., NETPROBE_DB=path)`)."""
    from cli_checks import run_cli

    default = getattr(request.module, "CLI_COLUMNS", None)

    def invoke(*args: object, columns: int | None = default, **env: str):
        return run_cli(*args, columns=columns, **env)

    return invoke


@pytest.fixture
def db(tmp_path) -> Path:
    """Where a test's own results database goes (created by the first run recorded)."""
    return tmp_path / "results.sqlite"
