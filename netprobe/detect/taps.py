"""A netprobe backbone as one detector row that returns several feature maps (its taps).

The tap at a stride is the last feature of the backbone at that stride (`Net.feature_info`): the
last stage there, or for MobileNetV3 at stride 32 the head's 1x1 conv, as timm and torchvision
take it. Only the layers up to the deepest tap are kept: no pooling, no classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from netprobe.api import build
from netprobe.archs.builder import HEAD_CONV_TAP, FeatureInfo, feature_maps
from netprobe.errors import SpecError
from netprobe.spec import parse_spec

DETECTOR_TAP_STRIDES = (8, 16, 32)  # P3, P4, P5: what a YOLO neck reads
SEED2_TAP_STRIDES = (4, 8, 16, 32)  # seed 2's MobileNetV3 returns P2..P5


def select_taps(features: list[FeatureInfo], strides: tuple[int, ...], spec: str) -> list[FeatureInfo]:
    """The last feature at each stride; a stride the backbone never reaches is a `SpecError`."""
    taps = []
    for stride in strides:
        at = [f for f in features if f.stride == stride]
        if not at:
            have = sorted({f.stride for f in features})
            raise SpecError(f"backbone {spec!r} has no stride-{stride} stage (its strides: "
                            f"{', '.join(map(str, have))}); a detector needs taps at strides "
                            f"{', '.join(map(str, strides))}")
        taps.append(at[-1])
    return taps


class BackboneTaps(nn.Module):
    """Runs a netprobe backbone (any spec string) and returns its taps at `strides`, shallowest first."""

    def __init__(self, spec: str, strides: tuple[int, ...] = DETECTOR_TAP_STRIDES) -> None:
        super().__init__()
        parsed = parse_spec(spec)
        net = build(parsed, device=torch.empty(0).device)  # the device the detector is being built on
        self.spec = str(parsed)
        self.taps = select_taps(net.feature_info, tuple(strides), self.spec)
        names = [t.name for t in self.taps]
        stages = [name for name, _ in net.named_children() if name != "head"]
        last = max(stages.index(n) if n in stages else len(stages) - 1 for n in names)
        for name in stages[: last + 1]:
            self.add_module(name, getattr(net, name))
        self.head_conv = net.head.conv if HEAD_CONV_TAP in names else None
        self.tap_names = names

    @property
    def channels(self) -> list[int]:
        return [t.channels for t in self.taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stages = [(name, module) for name, module in self.named_children() if name != "head_conv"]
        feats = feature_maps(stages, x, self.head_conv)
        return [feats[name] for name in self.tap_names]

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}, taps={self.tap_names}"
