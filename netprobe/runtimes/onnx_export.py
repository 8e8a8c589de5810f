"""The ONNX file ONNX Runtime and OpenVINO load: `torch.onnx.export` with the TorchScript-based exporter
(`dynamo=False`) at opset 17, static shapes (the run's batch and size), constant folding on.

Why that exporter: on torch 2.13 it exports an EfficientNet in about a quarter of the time the dynamo
exporter takes, and its node names carry the module path (`/stage1/stage1.0/body/dw/dw.0/Conv`),
which the breakdown maps back to netprobe's stages and op kinds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from netprobe.runtimes.base import Exported, timed_export

OPSET = 17
EXPORTER = f"torch.onnx.export (TorchScript exporter, dynamo=False), opset {OPSET}, static shapes"


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Exported:
    def write() -> None:
        with torch.no_grad():
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=OPSET,
                              do_constant_folding=True, input_names=["input"])

    return timed_export([path], EXPORTER, write)


def module_path(node_name: str, modules: set[str]) -> str:
    """The module an ONNX node (or an ONNX Runtime kernel named after it) came from, from its TorchScript
    scope name: '/stage1/stage1.0/body/dw/dw.0/Conv' -> 'stage1.0.body.dw.0'; '' where none matches."""
    scopes = [part for part in node_name.split("/") if part][:-1]
    parts: list[str] = []
    for scope in scopes:  # a child of a container is named "parent.index": it replaces the parent
        if parts and scope.startswith(parts[-1] + "."):
            parts[-1] = scope
        else:
            parts.append(scope)
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)
