"""TorchScript: the module traced with `torch.jit.trace` on the example input, saved and loaded back."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from netprobe.runtimes.base import Exported, TorchRuntime, timed_export


class TorchScript(TorchRuntime):
    name = "torchscript"
    file_kind = "TorchScript (.pt)"

    def export(self, model: nn.Module, example: torch.Tensor, folder: Path, stem: str) -> Exported:
        path = folder / f"{stem}.pt"

        def write() -> None:
            with torch.no_grad():
                torch.jit.save(torch.jit.trace(model, example, check_trace=False), str(path))

        return timed_export([path], "torch.jit.trace, saved with torch.jit.save (not frozen)", write)

    def load(self, exported: Exported, device: str, threads: int) -> object:
        with warnings.catch_warnings():  # torch 2.13 calls TorchScript deprecated: the warning is not a result
            warnings.simplefilter("ignore")
            return torch.jit.load(str(exported.files[0]), map_location=device).eval()
