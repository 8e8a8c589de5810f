"""`run_scaling`: the same train step on 1 rank without DDP, then on 1, 2, ... N ranks with DDP.

On its own, netprobe starts each row's ranks on this machine (a fresh set per row: gloo on
CPU with the cores split between ranks, NCCL on CUDA with one GPU per rank). Under an
external launcher (`torchrun --nnodes ... --nproc-per-node ...`), every process of the job
calls the same function and it joins that job instead: rows of k ranks run on ranks 0..k-1
while the others wait, and only rank 0 returns the rows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import torch
import torch.distributed as dist

from netprobe.bench import BenchConfig
from netprobe.defaults import BUCKET_MB, DIST_TIMEOUT_S
from netprobe.distributed.checks import RowPlan, ScalingPlan, plan_scaling
from netprobe.distributed.launch import Launcher, RankContext
from netprobe.distributed.measure import RowTask, measure_row
from netprobe.distributed.result import DistResult, failed_row, measured_row, relate
from netprobe.errors import DistError, InputError, one_line
from netprobe.timing import is_oom

JOB_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR")


def in_external_job() -> bool:
    """True when an external launcher (torchrun, or any env:// job) started this process as one rank."""
    return all(name in os.environ for name in JOB_VARIABLES)


def external_world_size() -> int | None:
    """The external job's number of ranks (WORLD_SIZE), or None outside one."""
    return int(os.environ["WORLD_SIZE"]) if in_external_job() else None


def run_scaling(config: BenchConfig, nproc: int, world_sizes: list[int] | None = None, bucket_mb: float = BUCKET_MB,
                sync_bn: bool = False, global_batch: int | None = None,
                on_row: Callable[[DistResult], None] | None = None, *, port: int | None = None,
                timeout_s: float = DIST_TIMEOUT_S, exposed_comm: bool = True,
                on_step: Callable[[], None] | None = None) -> list[DistResult] | None:
    """Measure data-parallel training of `config.spec`: 1 rank without DDP, then each world size with DDP.

    `config.batch` is the batch per rank (weak scaling) unless `global_batch` holds the total.
    World sizes default to the powers of two below `nproc`, then `nproc`. Each row is handed to
    `on_row` as soon as it is measured, and all rows are returned (under an external job: on rank 0;
    the other ranks return None). Out of memory on a rank is a row (`status='oom'`) and the run
    goes on. Any other failure of a rank (an exception, a crash, no progress for `timeout_s`) stops
    every rank and raises `DistError` naming it, after the failed row went to `on_row` (the rows so
    far are also on the error, `.rows`). Ctrl-C or SIGTERM stops every rank and raises
    KeyboardInterrupt; the finished rows were already delivered. `port`: the rendezvous port
    (default: a free one). `timeout_s`: the longest wait for any rank's next step (collectives time
    out after twice that; under torchrun, after `timeout_s`). A script calling this needs the
    `if __name__ == "__main__":` guard, as with any multiprocessing start method but fork.
    """
    if in_external_job():
        return _join_job(config, nproc, world_sizes, bucket_mb, sync_bn, global_batch, on_row, port, timeout_s,
                         exposed_comm, on_step)
    plan = plan_scaling(config, nproc, world_sizes, bucket_mb, sync_bn, global_batch, port, timeout_s, exposed_comm)
    rows = _Rows(on_row)
    with Launcher(plan.config.device, plan.nproc, plan.threads_per_rank, plan.backend, plan.timeout_s, plan.port,
                  on_step) as launcher:
        for row in plan.rows:
            try:
                figures = launcher.run(measure_row, _task(plan, row), row.world_size, group=row.ddp)
            except DistError as exc:
                if exc.kind != "oom":
                    rows.add(failed_row(plan, row, "error", str(exc)))
                    exc.rows = rows.done
                    raise
                rows.add(failed_row(plan, row, "oom", f"rank {exc.rank}: out of memory"))
                continue
            rows.add(measured_row(plan, row, figures))
    return rows.done


class _Rows:
    """The rows so far: each related to the 1-rank baseline and delivered the moment it is done."""

    def __init__(self, on_row: Callable[[DistResult], None] | None) -> None:
        self.on_row = on_row
        self.done: list[DistResult] = []

    def add(self, result: DistResult) -> None:
        relate(result, self.done[0] if self.done else result)
        self.done.append(result)
        if self.on_row:
            self.on_row(result)


def _task(plan: ScalingPlan, row: RowPlan) -> RowTask:
    return RowTask(replace(plan.config, batch=row.batch_per_rank), row.ddp, plan.bucket_mb, plan.sync_bn,
                   plan.exposed_comm)


# ---- under an external launcher ----------------------------------------------------------------

def _join_job(config: BenchConfig, nproc: int, world_sizes: list[int] | None, bucket_mb: float, sync_bn: bool,
              global_batch: int | None, on_row: Callable[[DistResult], None] | None, port: int | None,
              timeout_s: float, exposed_comm: bool, on_step: Callable[[], None] | None) -> list[DistResult] | None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if port is not None:
        raise InputError("--port is for ranks netprobe starts itself; under torchrun the job's MASTER_PORT is used: "
                         "leave --port out")
    if "MASTER_PORT" not in os.environ:
        raise InputError("MASTER_ADDR is set but MASTER_PORT is not; launch with torchrun, or set both")
    if nproc not in (world, per_node):
        raise InputError(f"--nproc {nproc} does not match this torchrun job ({world} ranks, {per_node} per node); "
                         f"give --nproc {world}")
    plan = plan_scaling(config, world, world_sizes, bucket_mb, sync_bn, global_batch, None, timeout_s,
                        exposed_comm, check_machine=False)
    cuda = plan.config.device == "cuda"
    if cuda and local_rank >= torch.cuda.device_count():
        raise InputError(f"rank {rank} is local rank {local_rank} but this node has {torch.cuda.device_count()} "
                         f"GPU(s); give torchrun --nproc-per-node {torch.cuda.device_count()} or fewer")
    if cuda:
        torch.cuda.set_device(local_rank)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(plan.backend, timeout=timedelta(seconds=timeout_s))
    results = _job_rows(plan, rank, f"cuda:{local_rank}" if cuda else "cpu", on_row, on_step)
    if owns_group:
        dist.destroy_process_group()
    return results


def _job_rows(plan: ScalingPlan, rank: int, device: str, on_row: Callable[[DistResult], None] | None,
              on_step: Callable[[], None] | None) -> list[DistResult] | None:
    rows = _Rows(on_row if rank == 0 else None)
    beat = on_step if rank == 0 and on_step else (lambda: None)
    for row in plan.rows:
        group = dist.new_group(list(range(row.world_size))) if row.ddp else None  # every rank takes part
        figures = None
        if rank < row.world_size:
            try:
                figures = measure_row(_task(plan, row), RankContext(rank, row.world_size, device, group, beat))
            except Exception as exc:
                error = DistError(f"rank {rank} failed: {one_line(exc)}", rank, "oom" if is_oom(exc) else "error")
                error.rows = rows.done
                raise error from exc  # torchrun's agent then stops the other ranks
        # ranks outside this row wait here, at most the job's timeout
        if device == "cpu":
            dist.barrier()
        else:
            dist.barrier(device_ids=[torch.device(device).index])
        if rank == 0:
            rows.add(measured_row(plan, row, figures))
    return rows.done if rank == 0 else None
