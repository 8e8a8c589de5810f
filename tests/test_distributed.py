"""Data-parallel bench: real gloo ranks on this CPU, failures that end the job in one line, no orphans."""

import json
import multiprocessing.forkserver
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist

from netprobe import build
from netprobe.bench import BenchConfig
from netprobe.distributed import (
    Launcher,
    in_external_job,
    plan_scaling,
    run_scaling,
    validate_nproc,
    validate_port,
)
from netprobe.distributed.checks import default_world_sizes, usable_cores
from netprobe.distributed.estimate import fused_stage_estimates
from netprobe.distributed.ring import bus_gb_s, ring_allreduce_ms
from netprobe.errors import DistError, InputError, NetprobeError

SPEC = "mobilenetv3_small:classes=10"
TINY = BenchConfig(SPEC, device="cpu", batch=2, imgsz=32, warmup=1, iters=3)
needs_two_cores = pytest.mark.skipif(len(usable_cores()) < 2, reason="two ranks need two CPU cores")


# ---- rank functions for the launcher tests (module level: ranks import them by name) -----------

def _sum_ranks(task, ctx):
    value = torch.tensor([float(ctx.rank + 1)])
    dist.all_reduce(value, group=ctx.group)
    return {"sum": value.item(), "pid": os.getpid(), "world": ctx.world_size}


def _fail_on_rank_1(task, ctx):
    dist.all_reduce(torch.zeros(1), group=ctx.group)  # both ranks are up and connected
    _report_pid(task, ctx)
    if ctx.rank == 1:
        raise task["exc"]
    dist.all_reduce(torch.zeros(1), group=ctx.group)  # rank 0 waits here for a rank that is gone


def _stall_on_rank_1(task, ctx):
    dist.all_reduce(torch.zeros(1), group=ctx.group)
    _report_pid(task, ctx)
    if ctx.rank == 1:
        time.sleep(600)
    dist.all_reduce(torch.zeros(1), group=ctx.group)


def _sleep(task, ctx):
    _report_pid(task, ctx)
    time.sleep(600)


def _report_pid(task, ctx):
    with open(os.path.join(task["dir"], f"rank{ctx.rank}.pid"), "w") as f:
        f.write(str(os.getpid()))
    ctx.heartbeat()


def _pids(directory) -> list[int]:
    return [int(open(os.path.join(directory, name)).read()) for name in os.listdir(directory)]


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def _no_rank_left() -> bool:
    server = multiprocessing.forkserver._forkserver._forkserver_pid  # ranks are the forkserver's children
    return server is None or not [p for p in _children_of(server) if _running(p)]


def _launcher(timeout_s=60):
    return Launcher("cpu", 2, 1, "gloo", timeout_s=timeout_s)


# ---- a real two-rank run -----------------------------------------------------------------------

@pytest.mark.slow
@needs_two_cores
def test_two_gloo_ranks_train_all_reduce_and_rank_0_reports():
    delivered = []
    rows = run_scaling(TINY, 2, bucket_mb=1, on_row=delivered.append)
    assert delivered == rows
    assert [(r.world_size, r.ddp, r.backend, r.status) for r in rows] == [
        (1, False, "none", "ok"), (1, True, "gloo", "ok"), (2, True, "gloo", "ok")]
    params = sum(p.numel() for p in build(SPEC, device="meta").parameters())
    base, one, two = rows
    for r in rows:
        assert r.params == params and r.threads_per_rank == 1 and r.imgsz == 32
        assert r.step_p10_ms <= r.step_ms <= r.step_p90_ms
        assert r.imgs_per_s == pytest.approx(r.global_batch / (r.step_ms / 1e3))
        assert r.scaling_efficiency == pytest.approx(r.imgs_per_s / (r.world_size * base.imgs_per_s))
        assert r.peak_mem_mb > 0
    assert base.grad_mb is None and base.allreduce_ms is None and base.scaling_efficiency == 1
    for r in (one, two):
        assert r.grad_mb == params * 4 / 2**20  # every fp32 gradient, counted in the hook, once a step
        assert r.buckets >= 5  # 5.8 MB of gradients in 1 MB buckets
        assert r.grads_in_sync  # ranks saw different data, yet got the same gradients: the all-reduce averaged
        assert r.method == "comm_hook" and 0 < r.allreduce_ms <= r.allreduce_max_ms
        assert r.allreduce_share == pytest.approx(r.allreduce_ms / r.step_ms)
        assert r.comm_exposed_ms == pytest.approx(r.step_ms - r.no_sync_step_ms)
    assert one.bus_gb_s is None  # nothing crosses a link
    assert two.bus_gb_s == pytest.approx(1 * two.grad_mb * 2**20 / (two.allreduce_ms / 1e3) / 1e9)  # 2 (2-1)/2 = 1
    assert (two.batch_per_rank, two.global_batch) == (2, 4)
    assert json.loads(json.dumps(two.to_dict()))["world_size"] == 2
    assert _no_rank_left()


class TinyNet(torch.nn.Sequential):
    """Any nn.Module, not a netprobe spec: it is pickled to every rank."""

    def __init__(self):
        super().__init__(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                         torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5))


@pytest.mark.slow
@needs_two_cores
def test_any_module_runs_data_parallel_and_a_global_batch_is_split():
    model = TinyNet()
    rows = run_scaling(BenchConfig(model, batch=99, imgsz=16, warmup=1, iters=2), 2, world_sizes=[2],
                       global_batch=4, exposed_comm=False)
    assert [(r.spec, r.world_size, r.status) for r in rows] == [("TinyNet", 1, "ok"), ("TinyNet", 2, "ok")]
    assert [(r.batch_per_rank, r.global_batch) for r in rows] == [(4, 4), (2, 4)]
    assert rows[1].grad_mb == sum(p.numel() for p in model.parameters()) * 4 / 2**20 and rows[1].grads_in_sync
    assert rows[1].no_sync_step_ms is None and rows[1].comm_exposed_ms is None


def test_a_module_that_cannot_reach_the_ranks_is_refused():
    model = TinyNet()
    model.hook = lambda x: x  # a lambda does not pickle
    with pytest.raises(InputError) as info:
        run_scaling(BenchConfig(model, batch=2, imgsz=16), 1)
    assert _one_line(info).startswith("TinyNet cannot be sent to the ranks (")


@needs_two_cores
def test_launcher_returns_rank_0s_result_and_reaps_every_rank():
    with _launcher() as launcher:
        out = launcher.run(_sum_ranks, None, 2)
    assert out["sum"] == 3.0 and out["world"] == 2  # 1 + 2: the all-reduce saw both ranks
    assert len(launcher.pids) == 2 and not any(_running(p) for p in launcher.pids)


# ---- a rank that fails ends the job, in one line, and leaves nothing running ------------------

@needs_two_cores
@pytest.mark.parametrize("exc,kind,line", [
    (ValueError("bad shape\nsecond line"), "error", "rank 1 failed: ValueError: bad shape"),
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom",
     "rank 1 failed: OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"),
])
def test_a_rank_that_raises_ends_the_job_naming_it(tmp_path, exc, kind, line):
    started = time.monotonic()
    with _launcher() as launcher, pytest.raises(DistError) as info:
        launcher.run(_fail_on_rank_1, {"exc": exc, "dir": str(tmp_path)}, 2)
    assert str(info.value) == line and (info.value.rank, info.value.kind) == (1, kind)
    assert time.monotonic() - started < 30  # ended by the failure, not by the 60 s timeout
    assert len(_pids(tmp_path)) == 2 and not any(_running(p) for p in _pids(tmp_path))


@needs_two_cores
def test_a_rank_killed_from_outside_is_named(tmp_path):
    with _launcher() as launcher, pytest.raises(DistError) as info:
        launcher.run(_kill_on_rank_1, {"dir": str(tmp_path)}, 2)
    assert str(info.value) == "rank 1 died: killed by SIGKILL" and info.value.kind == "died"
    assert not any(_running(p) for p in _pids(tmp_path))


def _kill_on_rank_1(task, ctx):
    dist.all_reduce(torch.zeros(1), group=ctx.group)
    _report_pid(task, ctx)
    if ctx.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    dist.all_reduce(torch.zeros(1), group=ctx.group)


@needs_two_cores
def test_a_stalled_rank_is_stopped_by_the_watchdog(tmp_path):
    started = time.monotonic()
    with Launcher("cpu", 2, 1, "gloo", timeout_s=2) as launcher, pytest.raises(DistError) as info:
        launcher.run(_stall_on_rank_1, {"dir": str(tmp_path)}, 2)
    assert "made no progress for 2 s" in str(info.value) and info.value.kind == "stalled"
    assert time.monotonic() - started < 20
    assert not any(_running(p) for p in _pids(tmp_path))


@needs_two_cores
def test_sigterm_stops_the_ranks_and_interrupts(tmp_path):
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    handler = signal.getsignal(signal.SIGTERM)
    with _launcher() as launcher, pytest.raises(KeyboardInterrupt):
        timer.start()
        launcher.run(_sleep, {"dir": str(tmp_path)}, 2)
    assert signal.getsignal(signal.SIGTERM) is handler  # restored
    assert len(_pids(tmp_path)) == 2 and not any(_running(p) for p in _pids(tmp_path))


ORPHAN = """
import os, sys, time
from netprobe.distributed import Launcher

def sleep(directory, ctx):
    with open(os.path.join(directory, f"rank{ctx.rank}.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)

if __name__ == "__main__":
    with Launcher("cpu", 2, 1, "gloo") as launcher:
        launcher.run(sleep, sys.argv[1], 2)
"""


@pytest.mark.slow
@needs_two_cores
def test_ranks_exit_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(ORPHAN)
    pids = tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(pids)])
    deadline = time.monotonic() + 60
    while len(os.listdir(pids)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)  # the pid files are complete
    ranks = _pids(pids)
    assert len(ranks) == 2 and all(_running(p) for p in ranks)
    parent.kill()  # SIGKILL: no handler, no finally in the parent runs
    parent.wait()
    deadline = time.monotonic() + 10
    while any(_running(p) for p in ranks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_running(p) for p in ranks)


def _measured_or(failure):
    """Launcher.run, replaced in the parent: figures for one rank, `failure` for two."""

    def run(self, fn, task, world_size, group=True):
        if world_size == 2:
            raise failure
        return {"params": 10, "threads": 1, "step_ms": 10.0, "step_p10_ms": 9.0, "step_p90_ms": 11.0, "fwd_ms": 3.0,
                "bwd_ms": 5.0, "opt_ms": 2.0, "peak_mem_mb": 1.0, "mem_kind": "cpu peak RSS growth",
                **({"allreduce_ms": 1.0, "grad_bytes": 40, "buckets": 1, "grads_in_sync": True} if task.ddp else {})}

    return run


@needs_two_cores
def test_out_of_memory_on_a_rank_is_a_row_and_the_run_goes_on(monkeypatch):
    monkeypatch.setattr(Launcher, "run", _measured_or(DistError("rank 1 failed: OutOfMemoryError: x", 1, "oom")))
    rows = run_scaling(TINY, 2)
    assert [(r.world_size, r.status, r.error) for r in rows] == [
        (1, "ok", None), (1, "ok", None), (2, "oom", "rank 1: out of memory")]
    assert rows[2].imgs_per_s is None and rows[2].scaling_efficiency is None


@needs_two_cores
def test_another_failure_delivers_the_failed_row_then_raises(monkeypatch):
    monkeypatch.setattr(Launcher, "run", _measured_or(DistError("rank 1 failed: ValueError: x", 1, "error")))
    delivered = []
    with pytest.raises(DistError, match=r"^rank 1 failed: ValueError: x$") as info:
        run_scaling(TINY, 2, on_row=delivered.append)
    assert [r.status for r in delivered] == ["ok", "ok", "error"] and info.value.rows == delivered
    assert delivered[2].error == "rank 1 failed: ValueError: x"


# ---- under torchrun: the same call joins the job --------------------------------------------

JOB = """
import json, os, sys
from netprobe.bench import BenchConfig
from netprobe.distributed import run_scaling
from netprobe.distributed import scaling
from netprobe.errors import NetprobeError

def boom(task, ctx):
    raise ValueError("boom on purpose")

if __name__ == "__main__":
    if sys.argv[1] == "fail" and os.environ["RANK"] == "1":
        scaling.measure_row = boom
    config = BenchConfig("mobilenetv3_small:classes=10", device="cpu", batch=2, imgsz=32, warmup=1, iters=2)
    try:
        rows = run_scaling(config, 2, world_sizes=[2], timeout_s=60)
    except NetprobeError as exc:
        print("ERROR", os.environ["RANK"], exc, flush=True)
        sys.exit(2)
    # each rank's rows in a file of its own: two ranks printing into one pipe interleave a long line
    with open(os.path.join(sys.argv[2], "rows_" + os.environ["RANK"] + ".json"), "w") as f:
        json.dump(rows and [r.to_dict() for r in rows], f)
"""


def _torchrun(tmp_path, mode):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), mode, str(tmp_path)], capture_output=True, text=True, timeout=180, env=env)
    return done, time.monotonic() - started


@pytest.mark.slow
@needs_two_cores
def test_under_torchrun_every_rank_measures_and_rank_0_returns_the_rows(tmp_path):
    done, _ = _torchrun(tmp_path, "ok")
    assert done.returncode == 0, done.stderr[-2000:]
    printed = {rank: json.loads((tmp_path / f"rows_{rank}.json").read_text()) for rank in "01"}
    assert printed["1"] is None
    assert [(r["world_size"], r["ddp"], r["status"]) for r in printed["0"]] == [(1, False, "ok"), (2, True, "ok")]
    two = printed["0"][1]
    assert two["grads_in_sync"] and two["global_batch"] == 4
    assert two["grad_mb"] == sum(p.numel() for p in build(SPEC, device="meta").parameters()) * 4 / 2**20


@pytest.mark.slow
@needs_two_cores
def test_under_torchrun_a_failing_rank_ends_the_job_in_one_line(tmp_path):
    done, seconds = _torchrun(tmp_path, "fail")
    assert done.returncode != 0
    assert "ERROR 1 rank 1 failed: ValueError: boom on purpose" in done.stdout
    assert seconds < 120  # torchrun stopped rank 0, which was waiting for rank 1; no 60 s collective timeout x2


# ---- bad input: one line, before any rank starts -------------------------------------------

def _one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("nproc,kwargs,config,message", [
    (0, {}, {}, "--nproc 0 is not allowed; give the number of ranks to run, 1 or more"),
    (len(usable_cores()) + 1, {}, {}, f"--nproc {len(usable_cores()) + 1} asks for more ranks than the "
                                      f"{len(usable_cores())} CPU cores this process may use"),
    (1, {"world_sizes": [1, 2]}, {}, "--world-sizes entry 2 is outside 1..1 (--nproc 1)"),
    (1, {"world_sizes": []}, {}, "--world-sizes is empty"),
    (1, {"world_sizes": [1, 1]}, {}, "--world-sizes 1,1 names a size twice"),
    (1, {"global_batch": 0}, {}, "--global-batch 0 is not allowed"),
    (1, {"bucket_mb": 0}, {}, "--bucket-mb 0 is not allowed"),
    (1, {"bucket_mb": float("inf")}, {}, "--bucket-mb inf is not allowed; give a bucket size above 0 and at most"),
    (1, {"sync_bn": True}, {}, "--sync-bn needs CUDA"),
    (1, {"timeout_s": 0}, {}, "--timeout 0 is not allowed"),
    (1, {"timeout_s": float("inf")}, {}, "--timeout inf is not allowed; give a timeout above 0 and at most 86,400"),
    (1, {}, {"mode": "infer"}, "mode 'infer' is not measured data-parallel"),
    (1, {}, {"per_stage": True}, "--per-stage is not measured data-parallel"),
    (1, {}, {"copy": False}, "copy=False times your own module in place, but ranks are other processes"),
    (1, {}, {"batch": 1}, "batch 1 at 32 px leaves batch norm one value per channel"),
    (1, {}, {"spec": "efficientnet_b9"}, "unknown arch"),
])
def test_bad_input_is_one_line(nproc, kwargs, config, message):
    with pytest.raises(NetprobeError) as info:
        run_scaling(replace(TINY, **config), nproc, **kwargs)
    assert message in _one_line(info)


@needs_two_cores
def test_a_global_batch_that_does_not_split_is_refused():
    with pytest.raises(InputError) as info:
        run_scaling(TINY, 2, global_batch=5)
    assert _one_line(info) == "--global-batch 5 does not split evenly over 2 ranks; give a multiple of 2 (e.g. 4)"


def test_a_port_in_use_is_refused_and_a_port_out_of_range_too():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InputError) as info:
            run_scaling(TINY, 1, port=port)
        assert _one_line(info) == (f"port {port} is in use on this machine; give a free port, or leave --port out "
                                   f"to pick one")
    with pytest.raises(InputError, match="is not a TCP port"):
        validate_port(70000)


def test_more_ranks_than_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError) as info:
        validate_nproc(2, "cuda")
    assert _one_line(info) == ("--nproc 2 asks for more ranks than the 1 GPU(s) visible; on CUDA each rank needs "
                               "its own GPU: use --nproc 1 or fewer")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_asked_for_without_cuda_is_refused():
    with pytest.raises(InputError, match="CUDA is not available"):
        run_scaling(replace(TINY, device="cuda"), 1)


def test_a_torchrun_job_of_another_size_is_refused(monkeypatch):
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(name, value)
    assert in_external_job()
    with pytest.raises(InputError) as info:
        run_scaling(TINY, 3)
    assert _one_line(info) == "--nproc 3 does not match this torchrun job (2 ranks, 2 per node); give --nproc 2"
    with pytest.raises(InputError, match="under torchrun the job's MASTER_PORT is used"):
        run_scaling(TINY, 2, port=29501)


def test_default_world_sizes_are_powers_of_two_then_nproc():
    assert [default_world_sizes(n) for n in (1, 2, 6, 8)] == [[1], [1, 2], [1, 2, 4, 6], [1, 2, 4, 8]]
    plan = plan_scaling(TINY, 1)
    assert [(r.world_size, r.ddp) for r in plan.rows] == [(1, False), (1, True)]


# ---- on paper ------------------------------------------------------------------------------

def test_ring_all_reduce_moves_2_n_minus_1_over_n_of_the_bytes():
    assert ring_allreduce_ms(1e9, 1, 10) == 0
    assert ring_allreduce_ms(1e9, 2, 10) == pytest.approx(100)  # 1 GB at 10 GB/s, factor 1
    assert ring_allreduce_ms(1e9, 8, 10) == pytest.approx(175)
    assert bus_gb_s(1e9, 8, 175) == pytest.approx(10)  # the model read backwards
    assert bus_gb_s(1e9, 1, 5) is None


def test_fused_stage_estimates_count_the_gradient_bytes_of_each_variant():
    rows = {r.label: r for r in fused_stage_estimates()}
    assert rows["No fused"].params == 19_341_616  # torchvision's efficientnet_b4
    assert rows["Fused stage1-7"].grad_bytes == 4 * rows["Fused stage1-7"].params
    assert 132.0e6 <= rows["Fused stage1-7"].params <= 132.2e6  # paper: 132.0M
    h100 = "8x H100 NVLink (1 node)"
    assert rows["Fused stage1-7"].allreduce_ms[h100] == pytest.approx(
        2 * 7 / 8 * rows["Fused stage1-7"].grad_bytes / 450e9 * 1e3)


# ---- the command line -----------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_bench_nproc_runs_two_gloo_ranks_and_reports_every_row(cli, tmp_path):


    out = tmp_path / "dist.json"
    result = cli("bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2",
                                      "--imgsz", "32", "--warmup", "1", "--iters", "2", "--nproc", "2", "--format",
                                      "json", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert [(r["world_size"], r["ddp"]) for r in rows] == [(1, False), (1, True), (2, True)]
    assert rows[2]["global_batch"] == 4 and rows[2]["status"] == "ok" and rows[2]["grad_mb"] > 0
    assert json.loads(out.read_text())["rows"] == rows


@pytest.mark.parametrize(("args", "needle"), [
    (["--nproc", "0"], "--nproc"),
    (["--nproc", "64"], "cores"),
    (["--nproc", "2", "--world-sizes", "1,4"], "world"),
    (["--world-sizes", "1,2"], "go with --nproc"),
    (["--nproc", "2", "--mode", "infer"], "use mode train"),
])
def test_cli_nproc_bad_input_is_one_line(cli, args, needle):


    result = cli("bench", "mobilenetv3_small", "--device", "cpu", "--imgsz", "32", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
