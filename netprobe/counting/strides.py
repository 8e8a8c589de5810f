"""Cumulative strides: input pixels per output pixel, followed op by op, and the P-level they give."""

from __future__ import annotations

import math

import torch
from torch.utils.weak import WeakTensorKeyDictionary

from netprobe.counting.rules import aten, packets
from netprobe.tensors import tensors

Stride = tuple[float, ...]  # cumulative stride per spatial dimension


def pyramid_level(stride: Stride | None) -> int | None:
    """P-level of a cumulative stride: 8 -> 3. None where there is no spatial map, the stride differs
    between dimensions, or it is not a power of two."""
    if not stride or len(set(stride)) != 1:
        return None
    s = stride[0]
    level = round(math.log2(s)) if s > 0 else None
    return level if level is not None and level >= 0 and 2.0**level == s else None


def stride_ratio(out: Stride | None, into: Stride | None) -> int | float | None:
    """A module's own stride: how much its output's cumulative stride exceeds its input's."""
    if not out or not into or len(set(out)) != 1 or len(set(into)) != 1:
        return None
    ratio = out[0] / into[0]
    return int(ratio) if float(ratio).is_integer() else round(ratio, 3)



class StrideTracker:
    """Cumulative stride of every spatial tensor, propagated op by op (no entry: no spatial map)."""

    def __init__(self, ndim: int) -> None:
        self.ndim = ndim
        self.strides: WeakTensorKeyDictionary = WeakTensorKeyDictionary()

    def get(self, t: torch.Tensor) -> Stride | None:
        return self.strides.get(t) if isinstance(t, torch.Tensor) else None

    def propagate(self, packet, args: tuple, out: object) -> None:
        outs = [t for t in (out if isinstance(out, tuple | list) else (out,))
                if isinstance(t, torch.Tensor) and t.ndim == self.ndim and t not in self.strides]
        if not outs:
            return
        sources = [a for a in tensors(args) if a.ndim == self.ndim and a in self.strides]
        if not sources:
            return
        factor = self._op_stride(packet, args)
        for t in outs:  # every map an op returns: both halves of a split, a pool's indices
            stride = self._stride_of(t, sources, factor)
            if stride:
                self.strides[t] = stride

    def _stride_of(self, t: torch.Tensor, sources: list[torch.Tensor],
                   factor: tuple[float, ...] | None) -> Stride | None:
        src, out_hw = sources[0], tuple(t.shape[2:])
        if factor is not None:
            return tuple(s * f for s, f in zip(self.strides[src], factor, strict=True))
        same = next((a for a in sources if tuple(a.shape[2:]) == out_hw), None)
        if same is not None:
            return self.strides[same]
        if all(n == 1 for n in out_hw):
            return None  # pooled to one value per channel: no spatial map any more
        # Resized by some other means (upsample, adaptive pool): the size ratio.
        stride = tuple(s * i / o for s, i, o in zip(self.strides[src], src.shape[2:], out_hw, strict=True) if o)
        return stride if len(stride) == len(out_hw) else None

    def _op_stride(self, packet, args: tuple) -> tuple[float, ...] | None:
        """The stride an op applies by its own arguments (convs and fixed-window pools); None otherwise."""
        spatial = self.ndim - 2
        if packet in _CONV_PACKETS:
            stride = _per_dim(args[3], spatial)
            return tuple(1 / s for s in stride) if len(args) > 6 and args[6] else stride
        if packet in _POOL_PACKETS:
            kernel = _per_dim(args[1], spatial)
            stride = args[2] if len(args) > 2 and args[2] else kernel
            return _per_dim(stride, spatial)
        if packet in _PAD_PACKETS:  # a border of padding moves no pixel: the grid keeps its stride
            return (1.0,) * spatial
        return None


def _per_dim(value: object, n: int) -> tuple[float, ...]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return tuple(float(v) for v in (values * n if len(values) == 1 else values))


_CONV_PACKETS = {aten.convolution, *packets("_convolution", "conv2d", "cudnn_convolution", "mkldnn_convolution")}
_PAD_PACKETS = set(packets("constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
                            "replication_pad1d", "replication_pad2d", "replication_pad3d", "_pad_circular", "pad"))
_POOL_PACKETS = set(packets("avg_pool2d", "max_pool2d", "max_pool2d_with_indices", "avg_pool1d", "max_pool1d",
                             "avg_pool3d", "max_pool3d_with_indices"))

