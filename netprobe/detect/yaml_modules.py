"""The module-kind table: how each YAML module name is built, as data (ultralytics' parse_model as a table).

A kind says which class builds the row, how the row's arguments become constructor arguments
(input channels first, output channels scaled by width, a repeat count inside or not), whether
it joins maps (sizes must agree), whether it is a detection head, whether it returns several
maps (occupying one row per map after its own), and whether it survives a backbone swap.

Output channels are never written down here: the layer walk runs each row on the meta device
and reads them off its output, so a user's block needs no channel rule of its own.

User classes (`--modules file.py`, looked up first) follow one rule: when the row's first argument
is an integer it is the output channels and the class is called like Conv, `cls(c1, c2, *rest)`
with c2 scaled by width; otherwise it is called with the row's arguments as written, like a torch
`nn` module. Repeats build an `nn.Sequential` of copies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from netprobe.defaults import MAX_CHANNELS  # output channels of one row after scaling (yolov8x: 640)
from netprobe.detect import blocks, heads, seed_blocks
from netprobe.detect.taps import DETECTOR_TAP_STRIDES, SEED2_TAP_STRIDES, BackboneTaps
from netprobe.errors import SpecError

MAX_REPEATS = 512  # repeats of one row after depth scaling (upstream: 9 at most; netprobe backbones: 512)


@dataclass(frozen=True)
class Scaling:
    """The YAML's width and depth multipliers, the channel cap, and the one width that is never scaled."""

    depth: float = 1.0
    width: float = 1.0
    max_channels: float = math.inf
    unscaled: int | None = None  # yolov5's na * (nc + 5): a row of that width is the output (ultralytics 8.4: none)

    def channels(self, c: int) -> int:
        """ultralytics' rule: min(c, max_channels) x width, rounded up to a multiple of 8; refused above
        MAX_CHANNELS, before anything is built."""
        if c == self.unscaled:
            return c
        capped = min(c, self.max_channels)
        if capped * self.width > MAX_CHANNELS:
            cap = f", capped at {self.max_channels:,g}" if c > self.max_channels else ""
            raise SpecError(f"{c:,} output channels (x width {self.width:g}{cap}) is too many; at most "
                            f"{MAX_CHANNELS:,} per row after scaling: use a smaller width or channel count")
        return math.ceil(capped * self.width / 8) * 8

    def repeats(self, n: int) -> int:
        """The repeat count after depth scaling; refused above MAX_REPEATS, before anything is built."""
        if n <= 1:
            return n
        if n * self.depth > MAX_REPEATS + 0.5:
            depth = f" (x depth {self.depth:g})" if self.depth != 1 else ""
            raise SpecError(f"{n:,} repeats{depth} is too many; at most {MAX_REPEATS} per row after scaling: "
                            "use a smaller depth or repeat count")
        return max(round(n * self.depth), 1)


# Argument rules: (row args as written, input channels, repeats, scaling) -> constructor args.
ArgRule = Callable[[list, list[int], int, Scaling], list]


def conv_args(args: list, c_in: list[int], n: int, scaling: Scaling) -> list:
    return [c_in[0], scaling.channels(args[0]), *args[1:]]


def csp_args(args: list, c_in: list[int], n: int, scaling: Scaling) -> list:
    """Like Conv, with the (scaled) repeat count as the third argument: the block repeats inside."""
    return [c_in[0], scaling.channels(args[0]), n, *args[1:]]


def as_written(args: list, c_in: list[int], n: int, scaling: Scaling) -> list:
    return list(args)


def input_channels(args: list, c_in: list[int], n: int, scaling: Scaling) -> list:
    return [c_in[0]]


def head_args(args: list, c_in: list[int], n: int, scaling: Scaling) -> list:
    """Detection heads get the list of their inputs' channels last."""
    return [*args, tuple(c_in)]


def user_args(args: list, c_in: list[int], n: int, scaling: Scaling) -> list:
    """A user's class: like Conv when the first argument is a channel count, else as written."""
    if args and isinstance(args[0], int) and not isinstance(args[0], bool):
        return conv_args(args, c_in, n, scaling)
    return list(args)


@dataclass(frozen=True)
class Kind:
    """How one module name becomes a row of the detector."""

    make: Callable[..., nn.Module]
    args: ArgRule
    repeats_inside: bool = False  # C2f, C3: the repeat count is an argument, the row is built once
    joins: bool = False  # Concat: its inputs must have the same height and width
    head: bool = False  # a detection head: the last rows' section, its inputs' strides are checked
    multi_output: bool = False  # returns a list of maps, which occupy the rows after its own
    kept_on_swap: bool = False  # stays, fed by the deepest tap, when another backbone is swapped in


def make_detect(nc: int, *rest: object) -> nn.Module:
    """`Detect` is YOLOv8's anchor-free head, or YOLOv5's anchor-based one when given anchors (nc, anchors)."""
    if len(rest) == 2:
        return heads.AnchorDetect(nc, rest[0], rest[1])  # type: ignore[arg-type]
    return heads.Detect(nc, rest[-1])  # type: ignore[arg-type]


def make_backbone(spec: str, strides: tuple[int, ...] = DETECTOR_TAP_STRIDES) -> nn.Module:
    return BackboneTaps(str(spec), tuple(strides))


def make_mobilenetv3(variant: str = "large") -> nn.Module:
    """Seed 2's MobileNetV3 row: four maps at strides 4, 8, 16, 32 ('large', 'small' or a netprobe spec)."""
    spec = f"mobilenetv3_{variant}" if variant in ("large", "small") else variant
    return BackboneTaps(spec, SEED2_TAP_STRIDES)


_CONV_LIKE = {
    "Conv": blocks.Conv, "Bottleneck": blocks.Bottleneck, "nn.ConvTranspose2d": nn.ConvTranspose2d,
    "stem": seed_blocks.SeedStem, "FusedMBConv": seed_blocks.SeedFusedMBConv, "MBConv": seed_blocks.SeedMBConv,
    "DarknetConv": seed_blocks.DarknetConv, "ConvSet": seed_blocks.ConvSet,
}

KINDS: dict[str, Kind] = {
    **{name: Kind(cls, conv_args) for name, cls in _CONV_LIKE.items()},
    "SPPF": Kind(blocks.SPPF, conv_args, kept_on_swap=True),
    "C2f": Kind(blocks.C2f, csp_args, repeats_inside=True),
    "C3": Kind(blocks.C3, csp_args, repeats_inside=True),
    "Concat": Kind(blocks.Concat, as_written, joins=True),
    "nn.BatchNorm2d": Kind(nn.BatchNorm2d, input_channels),
    "Detect": Kind(make_detect, head_args, head=True),
    "Pose": Kind(heads.Pose, head_args, head=True),
    "YOLOv3Detect": Kind(heads.YOLOv3Detect, head_args, head=True),
    "Backbone": Kind(make_backbone, as_written, multi_output=True),
    "MobileNetV3": Kind(make_mobilenetv3, as_written, multi_output=True),
}


def torch_kind(name: str) -> Kind | None:
    """`nn.X` names any torch.nn module, called with the row's arguments as written (Upsample, MaxPool2d...)."""
    cls = getattr(nn, name[3:], None) if name.startswith("nn.") else None
    return Kind(cls, as_written) if isinstance(cls, type) and issubclass(cls, nn.Module) else None


def lookup(name: str, user: dict[str, type] | None = None) -> Kind | None:
    """The kind of a module name: the user's classes first, then the table, then torch.nn."""
    if user and name in user:
        return Kind(user[name], user_args)
    return KINDS.get(name) or torch_kind(name)


def known_names() -> list[str]:
    return [*sorted(KINDS, key=str.lower), "nn.<any torch.nn module>"]
