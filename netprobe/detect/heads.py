"""Detection heads: YOLOv8's anchor-free Detect and Pose, YOLOv5's anchor-based Detect, the YOLOv3 head.

Every head takes the list of its input maps. In training mode it returns its raw outputs, one
tensor per level (what a loss reads); in eval mode it decodes them into boxes in input pixels,
as upstream does at inference. The strides of its input maps are set by the detector builder
(`head.stride`), which knows them from the layer table.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from netprobe.detect.blocks import Conv
from netprobe.detect.seed_blocks import DarknetConv

DFL_BINS = 16  # YOLOv8 predicts each box side as a distribution over 16 bins


def default_strides(levels: int) -> tuple[float, ...]:
    """P3, P4, P5...: what a head assumes until the builder sets the strides it really reads."""
    return tuple(8.0 * 2**k for k in range(levels))


def _grid(feats: list[torch.Tensor], strides: tuple[float, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres (2, A) in grid units and the stride of every cell (1, A), level after level."""
    points, cell_strides = [], []
    for x, stride in zip(feats, strides, strict=True):
        h, w = x.shape[-2:]
        ys = torch.arange(h, device=x.device, dtype=x.dtype) + 0.5
        xs = torch.arange(w, device=x.device, dtype=x.dtype) + 0.5
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((gx.flatten(), gy.flatten())))
        cell_strides.append(torch.full((1, h * w), float(stride), device=x.device, dtype=x.dtype))
    return torch.cat(points, 1), torch.cat(cell_strides, 1)


class DFL(nn.Module):
    """Distribution focal loss integral: softmax over the bins, then their expectation (a fixed 1x1 conv)."""

    frozen_why = ("its 1x1 conv holds the fixed bin positions 0..15 that turn the softmax into a distance, frozen "
                  "as in ultralytics")

    def __init__(self, bins: int = DFL_BINS) -> None:
        super().__init__()
        self.bins = bins
        self.conv = nn.Conv2d(bins, 1, 1, bias=False).requires_grad_(False)
        if not self.conv.weight.is_meta:
            with torch.no_grad():
                self.conv.weight.copy_(torch.arange(bins, dtype=torch.float).view(1, bins, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape  # (B, 4 * bins, anchors) -> (B, 4, anchors)
        return self.conv(x.view(b, 4, self.bins, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def _branch(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(Conv(c_in, hidden, 3), Conv(hidden, hidden, 3), nn.Conv2d(hidden, c_out, 1))


class Detect(nn.Module):
    """YOLOv8's anchor-free head: per level a box branch (two 3x3 Convs, 1x1 to 4 x 16 DFL bins) and a
    class branch (two 3x3 Convs, 1x1 to nc).

    Train: one (B, 64 + nc, H, W) map per level. Eval: (B, 4 + nc, anchors): boxes as centre x, y,
    width, height in input pixels (DFL expectation around each cell centre, times its stride), then
    sigmoid class scores.
    """

    def __init__(self, nc: int = 80, ch: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.nc, self.nl, self.reg = nc, len(ch), 4 * DFL_BINS
        box_ch, cls_ch = max(16, ch[0] // 4, self.reg), max(ch[0], min(nc, 100))
        self.cv2 = nn.ModuleList(_branch(c, box_ch, self.reg) for c in ch)
        self.cv3 = nn.ModuleList(_branch(c, cls_ch, nc) for c in ch)
        self.dfl = DFL(DFL_BINS)
        self.stride = default_strides(self.nl)

    def raw(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat((box(x), cls(x)), 1) for x, box, cls in zip(feats, self.cv2, self.cv3, strict=True)]

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        raw = self.raw(list(feats))
        return raw if self.training else self.decode(raw)

    def decode(self, raw: list[torch.Tensor]) -> torch.Tensor:
        flat = torch.cat([r.flatten(2) for r in raw], 2)
        dist, rest = flat.split((self.reg, flat.shape[1] - self.reg), 1)
        points, strides = _grid(raw, self.stride)
        left_top, right_bottom = self.dfl(dist).chunk(2, 1)
        x1y1, x2y2 = points - left_top, points + right_bottom
        boxes = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        cls, extra = rest.split((self.nc, rest.shape[1] - self.nc), 1)
        return torch.cat((boxes, cls.sigmoid(), self.decode_extra(extra, points, strides)), 1)

    def decode_extra(self, extra: torch.Tensor, points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        return extra  # Detect has no channels beyond box and class

    def init_biases(self) -> None:
        """Upstream's prior: box logits 1, class logits for about 5 objects per 640 image."""
        for box, cls, s in zip(self.cv2, self.cv3, self.stride, strict=True):
            nn.init.constant_(box[-1].bias, 1.0)
            nn.init.constant_(cls[-1].bias, math.log(5 / self.nc / (640 / s) ** 2))


class Pose(Detect):
    """Detect plus a keypoint branch per level (two 3x3 Convs, 1x1 to kpt[0] x kpt[1] values).

    Eval adds the keypoints decoded to input pixels (x, y around the cell, visibility through a sigmoid).
    """

    def __init__(self, nc: int = 1, kpt_shape: tuple[int, int] = (17, 3), ch: tuple[int, ...] = ()) -> None:
        super().__init__(nc, ch)
        self.kpt_shape = tuple(kpt_shape)
        self.nk = self.kpt_shape[0] * self.kpt_shape[1]
        kpt_ch = max(ch[0] // 4, self.nk)
        self.cv4 = nn.ModuleList(_branch(c, kpt_ch, self.nk) for c in ch)

    def raw(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat((out, kpt(x)), 1) for out, x, kpt in zip(super().raw(feats), feats, self.cv4, strict=True)]

    def decode_extra(self, extra: torch.Tensor, points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        b, _, a = extra.shape
        kpts = extra.view(b, self.kpt_shape[0], self.kpt_shape[1], a)
        xy = (kpts[:, :, :2] * 2.0 + (points - 0.5)) * strides
        parts = [xy, kpts[:, :, 2:].sigmoid()] if self.kpt_shape[1] == 3 else [xy]
        return torch.cat(parts, 2).view(b, self.nk, a)


def _anchor_table(anchors: object, levels: int) -> list[list[float]]:
    """Anchors as written in a YAML (a list of w, h pairs per level), or a count per level."""
    if isinstance(anchors, int):
        return [[float(v) for v in range(anchors * 2)]] * levels
    return [[float(v) for v in level] for level in anchors]  # type: ignore[union-attr]


class AnchorDetect(nn.Module):
    """YOLOv5's anchor-based head (ultralytics/yolov5 v6+): one 1x1 conv (with bias) per level to
    na * (nc + 5) channels.

    Train: one (B, na, H, W, nc + 5) tensor per level. Eval: (B, anchors, nc + 5): x, y = (2 sigmoid - 0.5
    + cell) x stride, w, h = (2 sigmoid)^2 x anchor (pixels), then objectness and class scores.
    """

    def __init__(self, nc: int = 80, anchors: object = (), ch: tuple[int, ...] = ()) -> None:
        super().__init__()
        table = _anchor_table(anchors, len(ch))
        self.nc, self.no, self.nl, self.na = nc, nc + 5, len(ch), len(table[0]) // 2
        self.register_buffer("anchors", torch.tensor(table).view(self.nl, self.na, 2))  # pixels
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in ch)
        self.stride = default_strides(self.nl)

    def raw(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for x, conv in zip(feats, self.m, strict=True):
            y = conv(x)
            b, _, h, w = y.shape
            out.append(y.view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2))
        return out

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        raw = self.raw(list(feats))
        return raw if self.training else torch.cat([self.decode(r, i) for i, r in enumerate(raw)], 1)

    def decode(self, raw: torch.Tensor, level: int) -> torch.Tensor:
        b, _, h, w, _ = raw.shape
        cells = _cells(h, w, raw)
        xy, wh, scores = raw.sigmoid().split((2, 2, self.nc + 1), 4)
        xy = (xy * 2 - 0.5 + cells) * self.stride[level]
        wh2 = wh * 2
        wh = wh2 * wh2 * self.anchors[level].view(1, self.na, 1, 1, 2)
        return torch.cat((xy, wh, scores), 4).reshape(b, -1, self.no)

    def init_biases(self) -> None:
        """Upstream's prior: objectness for about 8 objects per 640 image, class logits for 0.6 / nc."""
        for conv, s in zip(self.m, self.stride, strict=True):
            bias = conv.bias.data.view(self.na, -1)
            bias[:, 4] += math.log(8 / (640 / s) ** 2)
            bias[:, 5:] += math.log(0.6 / (self.nc - 0.99999))


def _cells(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W, 2) x, y index of every cell."""
    ys = torch.arange(h, device=like.device, dtype=like.dtype)
    xs = torch.arange(w, device=like.device, dtype=like.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy), 2).view(1, 1, h, w, 2)


class YOLOv3Detect(AnchorDetect):
    """The YOLOv3 output stage (seed 3): per level a 3x3 conv + BN + LeakyReLU to twice the input
    channels, then a 1x1 conv (with bias) to na * (nc + 5).

    Eval decodes as YOLOv3 does: x, y = (sigmoid + cell) x stride, w, h = exp x anchor (pixels).
    """

    def __init__(self, nc: int = 80, anchors: object = (), ch: tuple[int, ...] = ()) -> None:
        super().__init__(nc, anchors, ch)
        self.m = nn.ModuleList(nn.Sequential(DarknetConv(c, 2 * c, 3), nn.Conv2d(2 * c, self.no * self.na, 1))
                               for c in ch)

    def decode(self, raw: torch.Tensor, level: int) -> torch.Tensor:
        b, _, h, w, _ = raw.shape
        xy, wh, scores = raw.split((2, 2, self.nc + 1), 4)
        xy = (xy.sigmoid() + _cells(h, w, raw)) * self.stride[level]
        wh = wh.exp() * self.anchors[level].view(1, self.na, 1, 1, 2)
        return torch.cat((xy, wh, scores.sigmoid()), 4).reshape(b, -1, self.no)

    def init_biases(self) -> None:
        """YOLOv3 trains from the default init; nothing to set."""
