"""PyTorch's own runtimes: eager (the reference every other runtime is set against: no export, the
module itself), TorchScript (traced with `torch.jit.trace`, saved and loaded back; not frozen) and
torch.export (captured as an ExportedProgram, saved as .pt2, loaded back and run as its graph module:
eager execution of the captured graph, no compilation)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from netprobe.runtimes.base import TorchRuntime


def _trace(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, example, check_trace=False, strict=False), str(path))


def _load_script(path: Path, device: str) -> object:
    with warnings.catch_warnings():  # torch 2.13 calls TorchScript deprecated: the warning is not a result
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location=device).eval()


def _capture(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.export.save(torch.export.export(model, (example,)), str(path))


EAGER = TorchRuntime("torch", "none (the module itself)", "eager: no export")
TORCHSCRIPT = TorchRuntime("torchscript", "TorchScript (.pt)",
                           "torch.jit.trace, saved with torch.jit.save (not frozen)", ".pt", _trace, _load_script)
EXPORT = TorchRuntime("export", "ExportedProgram (.pt2)",
                      "torch.export.export (strict=False), saved with torch.export.save", ".pt2", _capture,
                      lambda path, device: torch.export.load(str(path)).module())
