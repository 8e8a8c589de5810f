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

