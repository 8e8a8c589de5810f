"""Architectures as data: a network is a stage table, like the papers print them.

A `NetSpec` holds the stem, the stages (each a tuple of `BlockSpec` rows, every row
repeated `repeats` times) and the head. Nothing here knows torch; `builder.py` turns a
table into an `nn.Module`, `transforms.py` turns a table into another table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from netprobe.archs.block_kinds import MIXED_LETTER, BlockKind, kind_of, make_divisible

ACTS = ("relu", "silu", "hardswish", "gelu")
SE_STYLES = ("effnet", "mnv3")  # squeeze width from block input (EfficientNet) or expanded (MobileNetV3)


@dataclass(frozen=True)
class BlockSpec:
    """One row of a stage table: `repeats` identical blocks (only the first has `stride`)."""

    op: str  # its block kind (archs.block_kinds): "mb", "fmb", "basic", "bottleneck"
    repeats: int
    kernel: int
    stride: int
    expand: float  # expansion ratio: channels inside the block = make_divisible(in * expand) (a bottleneck: out *)
    out: int  # output channels
    se: float = 0.0  # squeeze-excitation ratio, 0 = none
    act: str | None = None  # None = the network's activation

    @property
    def kind(self) -> BlockKind:
        return kind_of(self.op)

    @property
    def fused(self) -> bool:
        return self.kind.fused

    def paper_name(self) -> str:
        """The operator as the papers write it: 'Fused-MBConv4, k3x3' or 'MBConv6, k5x5, SE0.25'."""
        return self.kind.paper_name(self.expand, self.kernel, self.se)


@dataclass(frozen=True)
class NetSpec:
    """A whole backbone: stem conv, stages of blocks (MBConv family, ResNet), 1x1 conv head, classifier."""

    stem: int  # channels of the stride-2 stem conv
    stages: tuple[tuple[BlockSpec, ...], ...]
    head: int  # channels of the 1x1 head conv; 0: none (ResNet pools the last stage directly)
    head_fc: int = 0  # hidden linear layer before the classifier (MobileNetV3: 1280), 0 = none
    classes: int = 1000  # 0 = no classifier: the model returns pooled features
    act: str = "silu"
    se_style: str = "effnet"
    drop_path: float = 0.0  # stochastic depth of the last block; linear in block index
    dropout: float = 0.0  # before the classifier
    imgsz: int = 224  # evaluation image size
    stem_kernel: int = 3  # the stem conv's kernel (ResNet: 7)
    stem_pool: bool = False  # a 3x3 stride-2 max pool after the stem conv (ResNet)
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_blocks(self) -> int:
        return sum(row.repeats for stage in self.stages for row in stage)

    @property
    def stem_stride(self) -> int:
        return 4 if self.stem_pool else 2

    def stage_strides(self) -> list[int]:
        """Cumulative stride after the stem and after each stage."""
        total = self.stem_stride
        strides = [total]
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
        """One letter per stage, its block kind's (F = Fused-MBConv, M = MBConv, ...), e.g. 'FFFMMM'."""
        letters = [{r.kind.letter for r in st} for st in self.stages]
        return "".join(ls.pop() if len(ls) == 1 else MIXED_LETTER for ls in letters)


def expanded_channels(in_ch: int, row: BlockSpec) -> int:
    """The channels inside a block of `row` entered with `in_ch`, by its kind's rule."""
    return row.kind.expanded(in_ch, row.out, row.expand)


def se_channels(in_ch: int, expanded: int, ratio: float, style: str) -> int:
    """Squeeze width: EfficientNet takes it from the block input, MobileNetV3 from the expansion."""
    if style == "mnv3":
        return make_divisible(expanded * ratio)
    return max(1, int(in_ch * ratio))
