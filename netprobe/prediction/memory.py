"""The peak memory of a step of any target (a spec, a Target or an nn.Module), counted on the meta
device by netprobe.counting.memory, and the largest batch that fits a device: the entry points that
resolve what the user named (counting itself knows modules only)."""

from __future__ import annotations

import torch
from torch import nn

from netprobe.counting.memory import CUDA_ALLOWANCE_BYTES, MemoryCount, check_choices, step_memory
from netprobe.errors import InputError
from netprobe.target import resolve


def count_memory(target: object, batch: int, imgsz: tuple[int, int] | int, mode: str = "train", amp: str = "off",
                 channels_last: bool = False, optimizer: str = "sgd",
                 meta_model: nn.Module | None = None) -> MemoryCount:
    """Count the peak memory of one step of `target` (a spec, a `Target` or an nn.Module) on the meta
    device: a train step (forward, loss, backward, with the optimizer's state resident) or an
    inference forward. Nothing is allocated; the model given is not changed. See the module's doc
    for what is counted; the CUDA context and workspaces are `CUDA_ALLOWANCE_BYTES`, not counted here.
    `meta_model`: the target's `meta_model()` when the caller has built it already (not built again).
    """
    from netprobe.sizes import check_batch, parse_imgsz

    check_choices(mode, amp, optimizer)
    check_batch(batch)
    size = parse_imgsz(imgsz)
    resolved = resolve(target)
    resolved.check_input(size, batch)
    model = _meta_model(resolved, meta_model)
    example = torch.empty((batch, resolved.in_chans, *size), device="meta")
    return step_memory(model, example, mode, amp, channels_last, optimizer)


def _meta_model(resolved, model: nn.Module | None = None) -> nn.Module:
    model = resolved.meta_model() if model is None else model
    if any(t.device.type != "meta" for t in [*model.parameters(), *model.buffers()]):
        raise InputError(f"{resolved.label} cannot run on the meta device (its forward needs real data), so its "
                         "memory cannot be counted without allocating it")
    return model


def predicted_max_batch(target: object, imgsz: tuple[int, int] | int, memory_bytes: int, mode: str = "train",
                        amp: str = "off", channels_last: bool = False, optimizer: str = "sgd",
                        limit: int = 65536) -> int:
    """The largest batch (at most `limit`) whose steps fit in `memory_bytes` beside `CUDA_ALLOWANCE_BYTES`
    (`MemoryCount.fits`: the caching allocator replayed at that capacity); 0 when not even one image
    fits. Memory grows by about the same bytes per image (the activations), so two counts give a first
    guess; counts around it then find the edge.
    """
    from netprobe.sizes import parse_imgsz

    check_choices(mode, amp, optimizer)
    size = parse_imgsz(imgsz)
    resolved = resolve(target)
    resolved.check_input(size, 1)
    model = _meta_model(resolved)
    counts: dict[int, MemoryCount] = {}

    def fits(batch: int) -> bool:
        if batch not in counts:
            example = torch.empty((batch, resolved.in_chans, *size), device="meta")
            counts[batch] = step_memory(model, example, mode, amp, channels_last, optimizer)
        return counts[batch].fits(memory_bytes)

    if not fits(1):
        return 0
    if limit == 1 or not fits(2):
        return 1
    per_image = max(1, counts[2].total_bytes - counts[1].total_bytes)
    guess = min(limit, max(2, 1 + (memory_bytes - CUDA_ALLOWANCE_BYTES - counts[1].total_bytes) // per_image))
    return _edge(fits, guess, limit)


def _edge(fits, guess: int, limit: int) -> int:
    """The largest batch that fits, searching out from `guess` (2 fits, limit + 1 is out of reach)."""
    lo, hi = 2, limit + 1
    step = 1
    if fits(guess):
        lo = guess
        while lo + step <= limit and fits(lo + step):
            lo, step = lo + step, step * 2
        hi = min(lo + step, limit + 1)
    else:
        hi = guess
        while hi - step > lo and not fits(hi - step):
            hi, step = hi - step, step * 2
        lo = max(lo, hi - step)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo
