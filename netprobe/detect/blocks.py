"""The YOLO neck and backbone blocks of the ultralytics YAML format: Conv, Bottleneck, C2f, C3, SPPF, Concat.

Written from the published descriptions of ultralytics' and ultralytics/yolov5's modules (same
layers, same parameter counts); each takes its input and output channels first, as the YAML
format passes them.
"""

from __future__ import annotations

import torch
from torch import nn

YOLO_BN_EPS = 1e-3  # ultralytics sets eps 1e-3, momentum 0.03 on every BatchNorm it builds
YOLO_BN_MOMENTUM = 0.03


class Conv(nn.Module):
    """Conv2d (no bias, 'same' padding unless `p` is given) -> BatchNorm -> SiLU (`act=False`: linear)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1, d: int = 1,
                 act: bool | nn.Module = True) -> None:
        super().__init__()
        pad = d * (k - 1) // 2 if p is None else p
        self.conv = nn.Conv2d(c1, c2, k, s, pad, dilation=d, groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=YOLO_BN_EPS, momentum=YOLO_BN_MOMENTUM)
        self.act = act if isinstance(act, nn.Module) else nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two convs (kernels `k`) on `c2 * e` hidden channels; adds the input when `shortcut` and c1 == c2."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, k: tuple[int, int] = (3, 3),
                 e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, k[0], 1)
        self.cv2 = Conv(hidden, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """YOLOv8's CSP block: 1x1 to 2c, split, n bottlenecks on the second half keeping every output,
    concat (2 + n) c, 1x1 to c2 (c = c2 * e)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = list(self.cv1(x).chunk(2, 1))
        for block in self.m:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, 1))


class C3(nn.Module):
    """YOLOv5's CSP block: two parallel 1x1 convs to c2 * e, n bottlenecks (1x1, 3x3) on the first,
    concat, 1x1 to c2."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5) -> None:
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, g, k=(1, 3), e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: 1x1 to c1 // 2, three chained k x k max-pools (stride 1),
    concat the four maps, 1x1 to c2. Equivalent to pooling at 5, 9 and 13 for k = 5."""

    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        hidden = c1 // 2
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(hidden * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Concat(nn.Module):
    """Concatenate a list of maps along `dimension` (channels)."""

    def __init__(self, dimension: int = 1) -> None:
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)
