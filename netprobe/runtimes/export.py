"""torch.export: the module captured as an ExportedProgram, saved (.pt2), loaded back and run as its
graph module (eager execution of the captured graph; no compilation)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from netprobe.runtimes.base import Exported, TorchRuntime, timed_export


class TorchExport(TorchRuntime):
    name = "export"
    file_kind = "ExportedProgram (.pt2)"

    def export(self, model: nn.Module, example: torch.Tensor, folder: Path, stem: str) -> Exported:
        path = folder / f"{stem}.pt2"

        def write() -> None:
            torch.export.save(torch.export.export(model, (example,)), str(path))

        return timed_export([path], "torch.export.export (strict=False), saved with torch.export.save", write)

    def load(self, exported: Exported, device: str, threads: int) -> object:
        return torch.export.load(str(exported.files[0])).module()
