"""Eager PyTorch, the reference every other runtime is set against: no export, the module itself."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from netprobe.runtimes.base import Exported, TorchRuntime


class Eager(TorchRuntime):
    name = "torch"
    file_kind = "none (the module itself)"

    def export(self, model: nn.Module, example: torch.Tensor, folder: Path, stem: str) -> Exported:
        return Exported([], 0.0, "eager: no export", module=model)

    def load(self, exported: Exported, device: str, threads: int) -> object:
        return exported.module.eval()
