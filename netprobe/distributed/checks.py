"""What a data-parallel run may ask for: each bad value refused in one line before any rank starts."""

from __future__ import annotations

import math
import pickle
import socket
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
from torch import nn

from netprobe.bench import BenchConfig, validate
from netprobe.defaults import BUCKET_MB, DIST_TIMEOUT_S, MAX_BUCKET_MB, MAX_DIST_TIMEOUT_S
from netprobe.errors import InputError
from netprobe.sizes import size_text
from netprobe.spec import Spec
from netprobe.target import Target
from netprobe.timing import resolve_device, usable_cores


@dataclass(frozen=True)
class RowPlan:
    """One row of the scaling table: how many ranks, whether DDP wraps the model, the batch each rank takes."""

    world_size: int
    ddp: bool
    batch_per_rank: int


@dataclass(frozen=True)
class ScalingPlan:
    """Everything a scaling run will do, checked: the rows in order and how every rank is set up."""

    config: BenchConfig  # device resolved to cpu | cuda; spec as every rank resolves it (see `portable_model`)
    nproc: int
    rows: tuple[RowPlan, ...]
    backend: str  # gloo | nccl
    bucket_mb: float
    sync_bn: bool
    threads_per_rank: int
    timeout_s: float
    port: int | None = None
    exposed_comm: bool = True
    label: str = ""  # the model as shown
    imgsz: int | str = 0  # N, or "HxW" when not square


def portable_model(model: object) -> object:
    """The model as each rank can resolve it for itself: a spec string, or a module sent (pickled) to every rank."""
    if isinstance(model, Target):
        model = model.user_module if model.user_module is not None else (model.canonical or model.label)
    if isinstance(model, Spec):
        return model.canonical
    if isinstance(model, nn.Module):
        try:
            pickle.dumps(model)
        except Exception as exc:
            raise InputError(f"{type(model).__name__} cannot be sent to the ranks ({type(exc).__name__}: "
                             f"{str(exc)[:80]}); give it as 'module:pkg.mod:factory' or 'file.py:factory' so that "
                             f"each rank builds its own") from None
    return model


def validate_nproc(nproc: int, device: str) -> None:
    """`nproc` ranks fit on this machine: one GPU each on CUDA, at least one core each on CPU."""
    if nproc < 1:
        raise InputError(f"--nproc {nproc} is not allowed; give the number of ranks to run, 1 or more")
    if not dist.is_available():
        raise InputError(f"torch {torch.__version__} was built without torch.distributed; data-parallel bench "
                         f"needs a build with it (the pip wheels for Linux have it)")
    cuda = device == "cuda"
    slots = torch.cuda.device_count() if cuda else len(usable_cores())
    if nproc > slots:
        what = ("GPU(s) visible; on CUDA each rank needs its own GPU" if cuda else
                "CPU cores this process may use; on CPU each rank needs at least one core")
        raise InputError(f"--nproc {nproc} asks for more ranks than the {slots} {what}: use --nproc {slots} or fewer")
    backend, lacking = ((dist.is_nccl_available(), "no NCCL, which ranks on CUDA use; install a CUDA build of torch "
                                                   "or use --device cpu (gloo)") if cuda else
                        (dist.is_gloo_available(), "no gloo backend, which ranks on CPU use; install the standard "
                                                   "torch wheel"))
    if not backend:
        raise InputError(f"torch {torch.__version__} has {lacking}")


def default_world_sizes(nproc: int) -> list[int]:
    """Powers of two below `nproc`, then `nproc` itself: 1, 2, 4, 6 for 6."""
    sizes = [2**i for i in range(nproc.bit_length()) if 2**i < nproc]
    return [*sizes, nproc]


def validate_world_sizes(world_sizes: list[int] | None, nproc: int) -> list[int]:
    """The DDP rows to run, ascending; each between 1 and `nproc`, none twice."""
    if world_sizes is None:
        return default_world_sizes(nproc)
    if not world_sizes:
        raise InputError(f"--world-sizes is empty; give rank counts between 1 and {nproc}, e.g. 1,2")
    for size in world_sizes:
        if not 1 <= size <= nproc:
            raise InputError(f"--world-sizes entry {size} is outside 1..{nproc} (--nproc {nproc}); give rank "
                             f"counts between 1 and {nproc}, or raise --nproc")
    if len(set(world_sizes)) != len(world_sizes):
        raise InputError(f"--world-sizes {','.join(map(str, world_sizes))} names a size twice; give each once")
    return sorted(world_sizes)


def validate_port(port: int) -> None:
    """The rendezvous port is free on this machine (the parent will listen on it)."""
    if not 1 <= port <= 65535:
        raise InputError(f"port {port} is not a TCP port; give one between 1024 and 65535, or leave --port out "
                         f"to pick a free one")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the store does: TIME_WAIT is not "in use"
        try:
            sock.bind(("", port))
        except OSError:
            raise InputError(f"port {port} is in use on this machine; give a free port, or leave --port out "
                             f"to pick one") from None


def batches_per_rank(batch: int, global_batch: int | None, world_sizes: list[int]) -> dict[int, int]:
    """Per-rank batch of each world size: fixed (weak scaling), or the global batch split evenly."""
    if global_batch is None:
        return {w: batch for w in world_sizes}
    if global_batch < 1:
        raise InputError(f"--global-batch {global_batch} is not allowed; it must be at least 1")
    uneven = [w for w in world_sizes if global_batch % w]
    if uneven:
        multiple = math.lcm(*world_sizes)
        raise InputError(f"--global-batch {global_batch} does not split evenly over {uneven[0]} ranks; give a "
                         f"multiple of {multiple} (e.g. {multiple * max(1, round(global_batch / multiple))})")
    return {w: global_batch // w for w in world_sizes}


def plan_scaling(config: BenchConfig, nproc: int, world_sizes: list[int] | None = None, bucket_mb: float = BUCKET_MB,
                 sync_bn: bool = False, global_batch: int | None = None, port: int | None = None,
                 timeout_s: float = DIST_TIMEOUT_S, exposed_comm: bool = True,
                 check_machine: bool = True) -> ScalingPlan:
    """Check every input of a scaling run and lay out its rows: 1 rank without DDP, then each world size.

    `check_machine=False` skips the per-machine rank count (under torchrun the launcher placed the ranks).
    """
    device = resolve_device(config.device)
    config = replace(config, device=device, spec=portable_model(config.spec))
    if config.mode != "train":
        raise InputError(f"mode {config.mode!r} is not measured data-parallel: DDP only changes training "
                         f"(the gradient all-reduce); use mode train")
    if config.per_stage:
        raise InputError("--per-stage is not measured data-parallel; time the stages with single-device bench")
    if not config.copy:
        raise InputError("copy=False times your own module in place, but ranks are other processes that each "
                         "build their own copy; leave copy on")
    if check_machine:
        validate_nproc(nproc, device)
    sizes = validate_world_sizes(world_sizes, nproc)
    if not 0 < bucket_mb <= MAX_BUCKET_MB:
        raise InputError(f"--bucket-mb {bucket_mb:g} is not allowed; give a bucket size above 0 and at most "
                         f"{MAX_BUCKET_MB:,} MB (DDP's default: {BUCKET_MB})")
    if sync_bn and device != "cuda":
        raise InputError("--sync-bn needs CUDA: torch's SyncBatchNorm does not run on CPU; leave --sync-bn out "
                         "on CPU")
    if not 0 < timeout_s <= MAX_DIST_TIMEOUT_S:
        raise InputError(f"--timeout {timeout_s:g} is not allowed; give a timeout above 0 and at most "
                         f"{MAX_DIST_TIMEOUT_S:,} seconds")
    batches = batches_per_rank(config.batch, global_batch, [1, *sizes])
    targets = [validate(replace(config, batch=batch)) for batch in sorted(set(batches.values()))]
    if port is not None:
        validate_port(port)
    rows = (RowPlan(1, False, batches[1]), *(RowPlan(w, True, batches[w]) for w in sizes))
    threads = max(1, len(usable_cores()) // nproc)
    size = targets[0].input_size(config.imgsz)
    return ScalingPlan(config, nproc, rows, "nccl" if device == "cuda" else "gloo", bucket_mb, sync_bn, threads,
                       timeout_s, port, exposed_comm, targets[0].label, size_text(size))
