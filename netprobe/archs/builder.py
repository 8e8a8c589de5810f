"""One builder for every stage table: `build_net(table)` -> `Net` with named stages."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from netprobe.archs import blocks
from netprobe.archs.blocks import ConvBNAct, Head
from netprobe.archs.table import NetSpec

HEAD_CONV_TAP = "head.conv"  # module path of the head's 1x1 conv, when it is a tap


@dataclass(frozen=True)
class FeatureInfo:
    """One multi-scale tap: the output of a stage, its channels and cumulative stride (P-level)."""

    name: str
    channels: int
    stride: int

    @property
    def level(self) -> int:
        return self.stride.bit_length() - 1  # stride 8 -> P3


class Net(nn.Module):
    """A backbone whose top-level children are its stages: `stem`, `stage1` ... `stageN`, `head`."""

    def __init__(self, table: NetSpec) -> None:
        super().__init__()
        self.table = table
        act = table.act
        self.stem = ConvBNAct(3, table.stem, table.stem_kernel, 2, act=act)
        if table.stem_pool:
            self.stem.append(nn.MaxPool2d(3, 2, 1))
        in_ch, block_id, total = table.stem, 0, max(1, table.num_blocks)
        infos = [FeatureInfo("stem", table.stem, table.stem_stride)]
        for i, (stage, stride) in enumerate(zip(table.stages, table.stage_strides()[1:], strict=True), start=1):
            made: list[nn.Module] = []
            for row in stage:
                block = getattr(blocks, row.kind.builder)  # the class its kind names
                for r in range(row.repeats):
                    made.append(block.from_row(in_ch, row, row.stride if r == 0 else 1, table,
                                               table.drop_path * block_id / total))
                    in_ch, block_id = row.out, block_id + 1
            self.add_module(f"stage{i}", nn.Sequential(*made))
            infos.append(FeatureInfo(f"stage{i}", in_ch, stride))
        self.head = Head(in_ch, table.head, table.head_fc, table.classes, act, table.dropout)
        if table.head_conv_is_feature:
            infos.append(FeatureInfo(HEAD_CONV_TAP, table.head, infos[-1].stride))
        self.feature_info = infos

    @property
    def stage_names(self) -> list[str]:
        return [name for name, _ in self.named_children()]

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every tap in `feature_info`, in order: stem, stage1..N and, for MobileNetV3, the head's
        1x1 conv ("head.conv"); the maps a detection neck consumes."""
        stages = [(name, module) for name, module in self.named_children() if name != "head"]
        return feature_maps(stages, x, self.head.conv if self.table.head_conv_is_feature else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


def feature_maps(stages: list[tuple[str, nn.Module]], x: torch.Tensor,
                 head_conv: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Run `stages` (name, module) one after another and keep each output by name; with `head_conv`,
    also the head's 1x1 conv on the last one (MobileNetV3's stride-32 tap, "head.conv")."""
    feats = {}
    for name, module in stages:
        x = module(x)
        feats[name] = x
    if head_conv is not None:
        feats[HEAD_CONV_TAP] = head_conv(x)
    return feats


def build_net(table: NetSpec, device: torch.device | str | None = None) -> Net:
    """Build `table` as a module; on device 'meta' nothing is allocated or initialised. Without a
    device, torch's current default device is used (so a factory called under `torch.device("meta")`
    builds on meta)."""
    with torch.device(device) if device is not None else contextlib.nullcontext():
        net = Net(table)
    if next(net.parameters()).device.type != "meta":
        _init_weights(net)
    return net


def _init_weights(net: nn.Module) -> None:
    # The reference implementations' init: He-normal convs, uniform classifier, unit BN.
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / m.out_features ** 0.5
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)
