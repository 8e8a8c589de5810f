"""Architectures as data: a network is a stage table, like the papers print them.

A `NetSpec` holds the stem, the stages (each a tuple of `BlockSpec` rows, every row
repeated `repeats` times) and the head. Nothing here knows torch; `builder.py` turns a
table into an `nn.Module`, `transforms.py` turns a table into another table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

OPS = ("mb", "fmb")  # MBConv (depthwise) and Fused-MBConv (one regular conv)
ACTS = ("relu", "silu", "hardswish", "gelu")
SE_STYLES = ("effnet", "mnv3")  # squeeze width from block input (EfficientNet) or expanded (MobileNetV3)


@dataclass(frozen=True)
class BlockSpec:
    """One row of a stage table: `repeats` identical blocks (only the first has `stride`)."""

    op: str  # "mb" or "fmb"
    repeats: int
    kernel: int
    stride: int
    expand: float  # expansion ratio; expanded channels = make_divisible(in * expand)
    out: int  # output channels
    se: float = 0.0  # squeeze-excitation ratio, 0 = none
    act: str | None = None  # None = the network's activation

    @property
    def fused(self) -> bool:
        return self.op == "fmb"

    def paper_name(self) -> str:
        """The operator as the papers write it: 'Fused-MBConv4, k3x3' or 'MBConv6, k5x5, SE0.25'."""
        name = ("Fused-MBConv" if self.fused else "MBConv") + _num(self.expand)
        text = f"{name}, k{self.kernel}x{self.kernel}"
        return text + (f", SE{_num(self.se)}" if self.se else "")


@dataclass(frozen=True)
class NetSpec:
    """A whole backbone: stem conv, stages of MBConv-family blocks, 1x1 conv head, classifier."""

    stem: int  # channels of the 3x3 stride-2 stem conv
    stages: tuple[tuple[BlockSpec, ...], ...]
    head: int  # channels of the 1x1 head conv
    head_fc: int = 0  # hidden linear layer before the classifier (MobileNetV3: 1280), 0 = none
    classes: int = 1000  # 0 = no classifier: the model returns pooled features
    act: str = "silu"
    se_style: str = "effnet"
    drop_path: float = 0.0  # stochastic depth of the last block; linear in block index
    dropout: float = 0.0  # before the classifier
    imgsz: int = 224  # evaluation image size
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_blocks(self) -> int:
        return sum(row.repeats for stage in self.stages for row in stage)

    def stage_strides(self) -> list[int]:
        """Cumulative stride after the stem and after each stage."""
        strides, total = [2], 2
        for stage in self.stages:
            total *= math.prod(row.stride for row in stage)
            strides.append(total)
        return strides

    @property
    def head_conv_is_feature(self) -> bool:
        """Whether the head's 1x1 conv ends the last feature stage (a tap for a detection neck).

        MobileNetV3 pools before its hidden FC, so timm and torchvision count its final 1x1 conv
        (960 / 576 channels) as part of the features; EfficientNets' taps end at the last stage.
        """
        return self.head_fc > 0

    def min_imgsz(self) -> int:
        """Smallest input side for which every stage still has at least one pixel."""
        return self.stage_strides()[-1]

    def layout(self) -> str:
        """One letter per stage: F = Fused-MBConv, M = MBConv, e.g. 'FFFMMM'."""
        return "".join("F" if all(r.fused for r in st) else "M" if not any(r.fused for r in st) else "x"
                       for st in self.stages)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round channels to the nearest multiple of `divisor`, never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def expanded_channels(in_ch: int, row: BlockSpec) -> int:
    return in_ch if row.expand == 1 else make_divisible(in_ch * row.expand)


def se_channels(in_ch: int, expanded: int, ratio: float, style: str) -> int:
    """Squeeze width: EfficientNet takes it from the block input, MobileNetV3 from the expansion."""
    if style == "mnv3":
        return make_divisible(expanded * ratio)
    return max(1, int(in_ch * ratio))


def _num(x: float) -> str:
    """Shortest text that reads back as the same number: 4.0 -> '4', 0.25 -> '0.25'."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))
