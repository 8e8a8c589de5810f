"""What a model holds that training does not change: its parameters with requires_grad=False, by the
module that owns them, and why (a module may say so in a `frozen_why` attribute; ultralytics' DFL does)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the note is written without torch (the CLI imports it before torch)
    from torch import nn

SHOWN = 3  # modules named in the one-line note; the rest are counted


def frozen_parameters(model: nn.Module) -> list[dict]:
    """One record per module owning frozen parameters: its path, type, how many, and why."""
    records = []
    for path, module in model.named_modules():
        frozen = sum(p.numel() for p in module.parameters(recurse=False) if not p.requires_grad)
        if frozen:
            records.append({"module": path or "(model)", "type": type(module).__name__, "params": frozen,
                            "why": _why(model, path)})
    return records


def _why(model: nn.Module, path: str) -> str:
    parts = path.split(".") if path else []
    for depth in range(len(parts), -1, -1):  # the module itself, then its ancestors
        reason = getattr(model.get_submodule(".".join(parts[:depth])), "frozen_why", None)
        if reason:
            return reason
    return "requires_grad is False in the model as built"


def frozen_note(records: list[dict]) -> str | None:
    """The footnote under a summary's totals: how many parameters are frozen, where and why; None if none."""
    if not records:
        return None
    total = sum(r["params"] for r in records)
    named = "; ".join(f"{r['module']} ({r['type']}, {r['params']:,}): {r['why']}" for r in records[:SHOWN])
    more = f"; and {len(records) - SHOWN} more modules" if len(records) > SHOWN else ""
    return f"{total:,} parameters are not trainable — {named}{more}"
