"""Where a detector's class scores sit in its decoded output, head by head (P3, P4, P5...), so that a
deployed model's scores can be compared with eager fp32's per head.

In eval mode every netprobe head returns one decoded tensor with the anchors of all levels one after
another: YOLOv8's Detect (and Pose) as (B, 4 + nc [+ extra], anchors) with sigmoid class scores, the
anchor-based heads (YOLOv5, YOLOv3) as (B, anchors, 5 + nc) with objectness at 4. The confidence a YOLO user
thresholds before NMS is the class score (YOLOv8) or objectness x class score (YOLOv5, YOLOv3), as
ultralytics' non_max_suppression computes it. The anchors per level are read from the head's input maps
on a real forward (`watch_heads`), not assumed from the strides.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from netprobe.detect.heads import AnchorDetect, Detect


@dataclass(frozen=True)
class ScoreHead:
    """One detection level: its name and the anchor positions it owns in the decoded output."""

    name: str  # P3, P4, P5...: log2 of the level's stride
    start: int
    stop: int


@dataclass
class ScoreLayout:
    """How to read per-anchor class confidences out of a detector's decoded output."""

    heads: list[ScoreHead] = field(default_factory=list)  # filled by the first forward under `watch_heads`
    anchors_last: bool = True  # (B, C, anchors) as YOLOv8; else (B, anchors, C) as YOLOv5
    first_class: int = 4  # the channel of class 0
    classes: int = 0
    objectness: int | None = None  # the channel multiplied into every class score (anchor-based heads)

    def confidences(self, output: torch.Tensor) -> torch.Tensor:
        """(B, anchors, classes): the scores NMS thresholds, from one decoded output."""
        out = output.float()
        if self.anchors_last:
            out = out.transpose(1, 2)
        scores = out[..., self.first_class:self.first_class + self.classes]
        return scores * out[..., self.objectness:self.objectness + 1] if self.objectness is not None else scores


def detection_head(model: nn.Module) -> nn.Module | None:
    """The last YOLO detection head in the model (netprobe's Detect, Pose or anchor-based head), or None."""
    heads = [m for m in model.modules() if isinstance(m, Detect | AnchorDetect)]
    return heads[-1] if heads else None


@contextlib.contextmanager
def watch_heads(model: nn.Module) -> Iterator[ScoreLayout | None]:
    """The score layout of `model`'s detection head (None for a model without one); its heads are filled
    in from the head's input maps by the first forward run inside the block."""
    head = detection_head(model)
    if head is None:
        yield None
        return
    anchor_based = isinstance(head, AnchorDetect)
    layout = ScoreLayout(anchors_last=not anchor_based, first_class=5 if anchor_based else 4, classes=head.nc,
                         objectness=4 if anchor_based else None)
    per_cell = head.na if anchor_based else 1

    def record(module: nn.Module, args: tuple) -> None:
        if layout.heads:
            return
        start = 0
        for feat, stride in zip(args[0], module.stride, strict=True):
            count = per_cell * feat.shape[-2] * feat.shape[-1]
            layout.heads.append(ScoreHead(_level_name(stride), start, start + count))
            start += count

    handle = head.register_forward_pre_hook(record)
    try:
        yield layout
    finally:
        handle.remove()


def _level_name(stride: float) -> str:
    level = math.log2(stride) if stride > 0 else 0.5
    return f"P{int(level)}" if level.is_integer() else f"stride {stride:g}"
