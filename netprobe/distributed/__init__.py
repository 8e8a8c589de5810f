"""Data-parallel bench on torch.distributed: how a backbone's training scales past one device.

`run_scaling(config, nproc)` measures the train step of single-device bench on 1 rank without
DDP, then on 1, 2, ... N ranks with DistributedDataParallel (gloo on CPU, NCCL on CUDA),
started on this machine or joining an external `torchrun` job. Each row (`DistResult`) gives
global imgs/s, the slowest rank's step, scaling efficiency, the gradient bytes all-reduced and
the time the all-reduce takes. `estimate` puts the same all-reduce on paper for bigger machines.
"""

from netprobe.distributed.checks import (
    default_world_sizes,
    plan_scaling,
    validate_nproc,
    validate_port,
    validate_world_sizes,
)
from netprobe.distributed.launch import Launcher, RankContext
from netprobe.distributed.result import DistResult
from netprobe.distributed.scaling import external_world_size, in_external_job, run_scaling
from netprobe.errors import DistError

__all__ = [
    "DistError", "DistResult", "Launcher", "RankContext", "default_world_sizes", "external_world_size",
    "in_external_job", "plan_scaling", "run_scaling", "validate_nproc", "validate_port", "validate_world_sizes",
]
