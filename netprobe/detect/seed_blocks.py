"""The blocks the three seed systems name in their YAMLs, with the seeds' own definitions.

Seed 1 (YOLOv8-pose with an EfficientNetV2 backbone) registers `stem`, `FusedMBConv` and `MBConv`
like Conv; they differ from netprobe's backbone blocks: every conv, the 1x1 projections too, has
BN (momentum 0.1) and SiLU, and FusedMBConv never has an SE. Seed 3 (EfficientNet-YOLOv3) uses
conv + BN + LeakyReLU(0.1) and YOLOv3's "five convs".
"""

from __future__ import annotations

import torch
from torch import nn

SEED_BN_EPS = 1e-3


class SeedStem(nn.Module):
    """Seed 1's `stem(c1, c2, k, s, g)`: conv (pad (k-1)//2, no bias) + BN(eps 1e-3, momentum 0.1) + SiLU."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, (k - 1) // 2, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=SEED_BN_EPS, momentum=0.1)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SeedFusedMBConv(nn.Module):
    """Seed 1's `FusedMBConv(c1, c2, k, s, expansion, se)`: a k x k stem to c1 * expansion then a 1x1 stem
    to c2 (one k x k stem c1 -> c2 when expansion is 1); `se` is ignored, as in the seed; residual
    when s == 1 and c1 == c2."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, expansion: int = 1, se: float = 0) -> None:
        super().__init__()
        if expansion != 1:
            hidden = c1 * expansion
            self.body = nn.Sequential(SeedStem(c1, hidden, k, s), SeedStem(hidden, c2, 1))
        else:
            self.body = nn.Sequential(SeedStem(c1, c2, k, s))
        self.residual = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class SeedSqueezeExcite(nn.Module):
    """Pool, 1x1 conv (bias) to `squeeze`, ReLU, 1x1 conv (bias) back, sigmoid, rescale the input."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class SeedMBConv(nn.Module):
    """Seed 1's `MBConv(c1, c2, k, s, expansion, se)`: 1x1 stem to c1 * expansion, depthwise k x k stem
    (stride s), SE to int(expanded * se) when se > 0, 1x1 stem to c2 (with SiLU); residual when s == 1
    and c1 == c2."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, expansion: int = 1, se: float = 0) -> None:
        super().__init__()
        hidden = c1 * expansion
        layers: list[nn.Module] = [SeedStem(c1, hidden, 1), SeedStem(hidden, hidden, k, s, g=hidden)]
        if se > 0:
            layers.append(SeedSqueezeExcite(hidden, int(hidden * se)))
        layers.append(SeedStem(hidden, c2, 1))
        self.body = nn.Sequential(*layers)
        self.residual = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class DarknetConv(nn.Module):
    """Conv (no bias, 'same' padding) + BN + LeakyReLU(0.1), the YOLOv3 building block."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=SEED_BN_EPS)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ConvSet(nn.Sequential):
    """YOLOv3's "five convs" on c2 = C channels: 1x1 C, 3x3 2C, 1x1 C, 3x3 2C, 1x1 C."""

    def __init__(self, c1: int, c2: int) -> None:
        super().__init__(DarknetConv(c1, c2, 1), DarknetConv(c2, 2 * c2, 3), DarknetConv(2 * c2, c2, 1),
                         DarknetConv(c2, 2 * c2, 3), DarknetConv(2 * c2, c2, 1))
