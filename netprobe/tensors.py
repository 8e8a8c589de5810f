"""The tensors inside an argument or output of any shape: what hooks, counters and timers walk."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def tensors(value: object) -> Iterator[torch.Tensor]:
    """The tensors inside an argument or output: itself, or those in (nested) tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors(v)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a module's tensors live: its first parameter's or buffer's device; meta for a module with none."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("meta")
