"""The building blocks: ConvBNAct, SqueezeExcite, the MBConv family (MBConv, FusedMBConv), ResNet's
BasicBlock and Bottleneck, and the classifier head. One class per block kind (`archs.block_kinds`), each
built from a stage-table row by `from_row`."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from netprobe.archs.table import BlockSpec, NetSpec, expanded_channels, se_channels

ACT_LAYERS = {"relu": nn.ReLU, "silu": nn.SiLU, "hardswish": nn.Hardswish, "gelu": nn.GELU}
BN_EPS = 1e-3


def make_act(name: str | None) -> nn.Module:
    return nn.Identity() if name is None else ACT_LAYERS[name]()


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> activation; `act=None` leaves the output linear."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "silu") -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch, eps=BN_EPS),
            make_act(act),
        )


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, 1x1 reduce, act, 1x1 expand, gate, rescale the input."""

    def __init__(self, channels: int, squeeze: int, act: str, gate: str) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = make_act(act)
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Sigmoid() if gate == "sigmoid" else nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability `p` in training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class _ResidualBlock(nn.Module):
    """Shared tail of both block kinds: the branch `body`, plus the input when shapes allow."""

    def __init__(self, body: nn.Sequential, residual: bool, drop_path: float) -> None:
        super().__init__()
        self.body = body
        self.residual = residual
        self.drop_path = DropPath(drop_path) if residual and drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + self.drop_path(out) if self.residual else out


class _MBConvFamily(_ResidualBlock):
    @classmethod
    def from_row(cls, in_ch: int, row: BlockSpec, stride: int, table: NetSpec, drop_path: float) -> nn.Module:
        """One block of `row` entered with `in_ch` channels, at `stride` (the row's first block: its own)."""
        expanded = expanded_channels(in_ch, row)
        squeeze = se_channels(in_ch, expanded, row.se, table.se_style) if row.se else 0
        return cls(in_ch, row.out, row.kernel, stride, expanded, squeeze, row.act or table.act, table.se_style,
                   drop_path)


def _se(expanded: int, squeeze: int, act: str, se_style: str) -> nn.Module:
    gate = "hardsigmoid" if se_style == "mnv3" else "sigmoid"
    return SqueezeExcite(expanded, squeeze, "relu" if se_style == "mnv3" else act, gate)


class MBConv(_MBConvFamily):
    """Inverted residual: 1x1 expand (unless expansion 1), kxk depthwise, SE, 1x1 linear projection."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expanded: int, squeeze: int,
                 act: str, se_style: str = "effnet", drop_path: float = 0.0) -> None:
        layers: dict[str, nn.Module] = {}
        if expanded != in_ch:
            layers["expand"] = ConvBNAct(in_ch, expanded, 1, act=act)
        layers["dw"] = ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act)
        if squeeze:
            layers["se"] = _se(expanded, squeeze, act, se_style)
        layers["project"] = ConvBNAct(expanded, out_ch, 1, act=None)
        super().__init__(nn.Sequential(OrderedDict(layers)), stride == 1 and in_ch == out_ch, drop_path)


class FusedMBConv(_MBConvFamily):
    """Fused-MBConv: one regular kxk conv that expands (the only conv when expansion is 1), SE,
    and a 1x1 linear projection."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expanded: int, squeeze: int,
                 act: str, se_style: str = "effnet", drop_path: float = 0.0) -> None:
        layers: dict[str, nn.Module] = {}
        if expanded != in_ch:
            layers["fused"] = ConvBNAct(in_ch, expanded, kernel, stride, act=act)
            if squeeze:
                layers["se"] = _se(expanded, squeeze, act, se_style)
            layers["project"] = ConvBNAct(expanded, out_ch, 1, act=None)
        else:
            layers["fused"] = ConvBNAct(in_ch, out_ch, kernel, stride, act=act)
            if squeeze:
                layers["se"] = _se(out_ch, squeeze, act, se_style)
        super().__init__(nn.Sequential(OrderedDict(layers)), stride == 1 and in_ch == out_ch, drop_path)


class _ResNetBlock(nn.Module):
    """ResNet's block: `body` plus the shortcut (the input itself, or a strided 1x1 conv and batch norm
    where the shape changes, torchvision's `downsample`), then the activation."""

    def __init__(self, body: nn.Sequential, in_ch: int, out_ch: int, stride: int, act: str,
                 drop_path: float) -> None:
        super().__init__()
        self.body = body
        self.shortcut = (ConvBNAct(in_ch, out_ch, 1, stride, act=None) if stride != 1 or in_ch != out_ch
                         else nn.Identity())
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shortcut(x) + self.drop_path(self.body(x)))


class BasicBlock(_ResNetBlock):
    """ResNet-18/34's block: two kxk convs (the first strided), the shortcut added before the last activation."""

    @classmethod
    def from_row(cls, in_ch: int, row: BlockSpec, stride: int, table: NetSpec, drop_path: float) -> nn.Module:
        act = row.act or table.act
        body = nn.Sequential(OrderedDict(conv1=ConvBNAct(in_ch, row.out, row.kernel, stride, act=act),
                                         conv2=ConvBNAct(row.out, row.out, row.kernel, act=None)))
        return cls(body, in_ch, row.out, stride, act, drop_path)


class Bottleneck(_ResNetBlock):
    """ResNet-50/101's block (v1.5: the stride on the kxk conv): 1x1 down to the width (output x the
    ratio), kxk, 1x1 up to the output, the shortcut added before the last activation."""

    @classmethod
    def from_row(cls, in_ch: int, row: BlockSpec, stride: int, table: NetSpec, drop_path: float) -> nn.Module:
        act, width = row.act or table.act, expanded_channels(in_ch, row)
        body = nn.Sequential(OrderedDict(conv1=ConvBNAct(in_ch, width, 1, act=act),
                                         conv2=ConvBNAct(width, width, row.kernel, stride, act=act),
                                         conv3=ConvBNAct(width, row.out, 1, act=None)))
        return cls(body, in_ch, row.out, stride, act, drop_path)


class Head(nn.Module):
    """1x1 conv to `channels` (none when 0), global pool, optional hidden FC, dropout, classifier."""

    def __init__(self, in_ch: int, channels: int, hidden: int, classes: int, act: str, dropout: float) -> None:
        super().__init__()
        self.conv = ConvBNAct(in_ch, channels, 1, act=act) if channels else None
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        layers: list[nn.Module] = []
        width = channels or in_ch
        if classes and hidden:
            layers += [nn.Linear(width, hidden), make_act(act)]
            width = hidden
        if classes:
            layers += [nn.Dropout(dropout), nn.Linear(width, classes)]
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        return self.classifier(self.flatten(self.pool(x)))
