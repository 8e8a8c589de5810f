"""The building blocks of the MBConv family: ConvBNAct, SqueezeExcite, MBConv, FusedMBConv."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

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


def _se(expanded: int, squeeze: int, act: str, se_style: str) -> nn.Module:
    gate = "hardsigmoid" if se_style == "mnv3" else "sigmoid"
    return SqueezeExcite(expanded, squeeze, "relu" if se_style == "mnv3" else act, gate)


class MBConv(_ResidualBlock):
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


class FusedMBConv(_ResidualBlock):
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


class Head(nn.Module):
    """1x1 conv to `channels`, global pool, optional hidden FC, dropout, classifier."""

    def __init__(self, in_ch: int, channels: int, hidden: int, classes: int, act: str, dropout: float) -> None:
        super().__init__()
        self.conv = ConvBNAct(in_ch, channels, 1, act=act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        layers: list[nn.Module] = []
        width = channels
        if classes and hidden:
            layers += [nn.Linear(channels, hidden), make_act(act)]
            width = hidden
        if classes:
            layers += [nn.Dropout(dropout), nn.Linear(width, classes)]
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.conv(x))))
