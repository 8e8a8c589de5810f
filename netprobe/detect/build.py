"""The one detector builder: `DetectorSpec` -> `Detector`, an nn.Module whose children are the YAML rows."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from netprobe.counting import Count, count
from netprobe.defaults import MAX_SIDE
from netprobe.detect.layers import IMAGE, LayerRow, build_row, join_mismatch
from netprobe.detect.spec import DetectorSpec
from netprobe.detect.usermodules import load_user_modules
from netprobe.detect.yaml_modules import lookup
from netprobe.errors import InputError


@dataclass(frozen=True)
class LayerInfo:
    """One YAML row of a built detector: what the row says and where its module lives."""

    index: int
    src: int | tuple[int, ...]  # 'from' as written
    repeats: int
    module: str
    args: str  # constructor arguments after scaling, as text
    section: str  # backbone | neck | head
    path: str | None  # the child module's name ("12"); None for a placeholder row, which has no module
    output_of: int | None  # a placeholder row: the multi-output row whose map it stands for
    output_index: int | None  # ... and which of its maps


def layer_info(row: LayerRow) -> LayerInfo:
    placeholder = row.output_of is not None
    return LayerInfo(row.index, row.src, row.repeats, row.module, "" if placeholder else repr(list(row.args)),
                     row.section, None if placeholder else str(row.index), row.output_of, row.output_index)


class Detector(nn.Module):
    """A detector built from its layer rows: child "i" is row i (placeholder rows have none).

    `forward(x)` in train mode returns the head's raw outputs (one tensor per level); in eval mode
    the head's decoded boxes (see `netprobe.detect.heads`).
    """

    def __init__(self, spec: DetectorSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = [layer_info(row) for row in spec.layers]
        user = load_user_modules(spec.modules) if spec.modules else None
        for row in spec.layers:
            if row.output_of is None:
                self.add_module(str(row.index), build_row(lookup(row.module, user), list(row.args), row.repeats))
        self._kept = {j for row in spec.layers for j in row.inputs}
        self._joins = {row.index for row in spec.layers if (k := lookup(row.module, user)) and k.joins}
        head = self.head
        if hasattr(head, "stride"):
            head.stride = tuple(float(spec.layers[j].stride or 0) for j in spec.head.inputs)

    @property
    def head(self) -> nn.Module:
        return getattr(self, str(self.spec.head.index))

    def forward(self, x: torch.Tensor) -> object:
        maps: dict[int, object] = {IMAGE: x}
        out: object = x
        for row in self.spec.layers:
            if row.output_of is not None:
                out = maps[row.output_of][row.output_index]  # type: ignore[index]
            else:
                feeds = [maps[j] for j in row.inputs]
                if row.index in self._joins and not torch.jit.is_tracing():  # traced sizes are tensors, not ints
                    self._check_join(row, feeds, x)
                out = self._modules[str(row.index)](feeds[0] if isinstance(row.src, int) else feeds)
            if row.index in self._kept:
                maps[row.index] = out
        return out

    def _check_join(self, row: LayerRow, feeds: list[torch.Tensor], x: torch.Tensor) -> None:
        message = join_mismatch(row.index, row.inputs, [tuple(t.shape[1:]) for t in feeds])
        if message:
            h, w = x.shape[-2:]
            raise InputError(f"image size {h}x{w} does not fit {self.spec.name}: {message}; "
                             f"use sides that are multiples of {self.spec.max_stride}, e.g. {_fitting(h, w, self)}")


def surrogate_loss(outputs: object) -> torch.Tensor:
    """A stand-in for a detection loss when timing a train step: the mean square of every raw output.

    Its backward reaches every parameter the outputs depend on, as a real loss's does; label
    assignment and the real box / class / keypoint losses are not computed, so they are not timed.
    """
    tensors = [outputs] if isinstance(outputs, torch.Tensor) else [t for t in outputs if isinstance(t, torch.Tensor)]
    return torch.stack([t.float().square().mean() for t in tensors]).sum()


def _fitting(h: int, w: int, model: Detector) -> str:
    s = model.spec.max_stride
    up = [max(s, -(-side // s) * s) for side in (h, w)]
    return f"{up[0]}" if up[0] == up[1] else f"{up[0]}x{up[1]}"


def build_detector(spec: DetectorSpec, device: torch.device | str | None = None) -> Detector:
    """Build `spec` as a `Detector`; on device "meta" nothing is allocated (shapes and counts only)."""
    with torch.device(device or "cpu"):
        model = Detector(spec)
    if str(device) != "meta":
        init = getattr(model.head, "init_biases", None)
        if init is not None:
            init()
    return model


def check_imgsz(spec: DetectorSpec, size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) if the detector takes that input, else an `InputError` naming a size that works.

    Refused: sides below the deepest stride, and sizes where a Concat would join maps of
    different sizes (checked by running the detector on the meta device).
    """
    h, w = check_bounds(spec, size)
    count_at(spec, build_detector(spec, "meta"), (1, 3, h, w))
    return h, w


def check_bounds(spec: DetectorSpec, size: int | tuple[int, int]) -> tuple[int, int]:
    """(H, W) unless a side is below the detector's deepest stride or above MAX_SIDE (`InputError`)."""
    h, w = (size, size) if isinstance(size, int) else size
    stride = spec.max_stride
    if min(h, w) < stride:
        raise InputError(f"image size {h}x{w} is too small for {spec.name}: it downsamples by {stride}, "
                         f"so each side must be at least {stride}")
    if max(h, w) > MAX_SIDE:
        raise InputError(f"image size {h}x{w} is too large; at most {MAX_SIDE} per side")
    return h, w


def count_at(spec: DetectorSpec, model: Detector, input_shape: tuple[int, ...]) -> Count:
    """Count `model` (built on meta) at `input_shape`; a size it cannot take is an `InputError` (one line)."""
    try:
        return count(model, input_shape)
    except InputError:
        raise
    except Exception as exc:  # a user block that cannot take this size
        text = str(exc).strip()
        raise InputError(f"image size {input_shape[2]}x{input_shape[3]} does not fit {spec.name}: "
                         f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}; try sides that are "
                         f"multiples of {spec.max_stride}") from None
