"""Hand-written models for the "any model in" tests: importable as `module:fixtures_nets:...` and as
`tests/fixtures_nets.py:...`. Each stands for something users bring: a plain CNN, functional ops,
grouped and transposed convs, a dict output, a submodule called twice."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyCNN(nn.Module):
    """A torchvision-style classifier: `features` holds most layers, then pool and a classifier."""

    def __init__(self, width: float = 1.0, classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        c1, c2 = int(16 * width), int(32 * width)
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, 3, 2, 1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c1, 3, 1, 1, groups=c1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class Odd(nn.Module):
    """Functional ops, a grouped conv, a transposed conv, attention, a dict output, and a shared
    block called twice (counted twice, its parameters once)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem_weight = nn.Parameter(torch.randn(8, 3, 3, 3) * 0.1)  # used through F.conv2d
        self.grouped = nn.Conv2d(8, 16, 3, 2, 1, groups=4)
        self.shared = nn.Conv2d(16, 16, 1)
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.proj = nn.Linear(16, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.relu(F.conv2d(x, self.stem_weight, stride=2, padding=1))
        y = self.grouped(x)
        y = self.shared(self.shared(y)) + y  # the same module twice
        up = self.up(y)
        merged = torch.cat([up, F.interpolate(y[:, :8], scale_factor=2.0)], dim=1)
        tokens = merged.flatten(2).transpose(1, 2)  # N, L, 16
        q = self.proj(tokens)
        attn = torch.einsum("nld,nmd->nlm", q, tokens).softmax(-1)
        mixed = torch.bmm(attn, tokens)
        return {"map": merged, "logits": self.head(mixed.mean(1))}


class NeedsBig(nn.Module):
    """Fails on inputs smaller than 64 px, the way models with fixed-size layers do."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < 64:
            raise ValueError(f"input width {x.shape[-1]} is below 64")
        return self.conv(x)


class Blocks(nn.Module):
    """A timm-style layout: stem, `blocks` (a Sequential of stages) holding most layers, head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Conv2d(8, 8, 3, s, 1), nn.ReLU(), nn.Conv2d(8, 8, 1))
                                      for s in (1, 2, 2)])
        self.head = nn.Linear(8, 3)
        self.pretrained_cfg = {"input_size": (3, 96, 80)}  # as timm models declare it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.conv_stem(x)).mean((2, 3)))


def build_tiny(width: float = 1.0, classes: int = 10, in_chans: int = 3) -> TinyCNN:
    return TinyCNN(width, classes, in_chans)


def build_odd() -> Odd:
    return Odd()


def build_blocks() -> Blocks:
    return Blocks()


def build_needs_big() -> NeedsBig:
    return NeedsBig()


def broken_factory() -> nn.Module:
    raise RuntimeError("weights file missing\nsecond line")


def not_a_module() -> int:
    return 42


TINY = TinyCNN()
NOT_CALLABLE = 3
