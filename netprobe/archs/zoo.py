"""The supported architectures, as the papers' stage tables plus scaling coefficients."""

from __future__ import annotations

from dataclasses import dataclass, replace

from netprobe.archs.table import BlockSpec, NetSpec


def _row(op: str, r: int, k: int, s: int, e: float, c: int, se: float = 0.0, act: str | None = None) -> tuple:
    return (BlockSpec(op, r, k, s, e, c, se, act),)


@dataclass(frozen=True)
class Arch:
    """A named architecture: a base stage table and the compound-scaling coefficients applied to it."""

    name: str
    family: str
    base: NetSpec
    width: float = 1.0
    depth: float = 1.0
    paper: str = ""


# EfficientNet-B0 (Tan & Le 2019, Table 1): MBConv rows, SE 0.25, SiLU, stem 32, head 1280.
_B0 = NetSpec(
    stem=32,
    stages=(
        _row("mb", 1, 3, 1, 1, 16, 0.25),
        _row("mb", 2, 3, 2, 6, 24, 0.25),
        _row("mb", 2, 5, 2, 6, 40, 0.25),
        _row("mb", 3, 3, 2, 6, 80, 0.25),
        _row("mb", 3, 5, 1, 6, 112, 0.25),
        _row("mb", 4, 5, 2, 6, 192, 0.25),
        _row("mb", 1, 3, 1, 6, 320, 0.25),
    ),
    head=1280, act="silu", se_style="effnet", drop_path=0.2, dropout=0.2, imgsz=224,
)

# (width, depth, eval image size, dropout) of B0..B7.
_EFFNET_SCALING = {
    "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5),
}


def _v2(stem: int, rows: list[tuple], imgsz: int, dropout: float) -> NetSpec:
    """EfficientNetV2 rows as (fused, repeats, stride, expand, channels); all 3x3, SE 0.25 on MBConv."""
    stages = tuple(_row("fmb" if f else "mb", r, 3, s, e, c, 0.0 if f else 0.25) for f, r, s, e, c in rows)
    return NetSpec(stem=stem, stages=stages, head=1280, act="silu", se_style="effnet", drop_path=0.2,
                   dropout=dropout, imgsz=imgsz)


_V2 = {
    "s": _v2(24, [(1, 2, 1, 1, 24), (1, 4, 2, 4, 48), (1, 4, 2, 4, 64), (0, 6, 2, 4, 128), (0, 9, 1, 6, 160),
                  (0, 15, 2, 6, 256)], 384, 0.2),
    "m": _v2(24, [(1, 3, 1, 1, 24), (1, 5, 2, 4, 48), (1, 5, 2, 4, 80), (0, 7, 2, 4, 160), (0, 14, 1, 6, 176),
                  (0, 18, 2, 6, 304), (0, 5, 1, 6, 512)], 480, 0.3),
    "l": _v2(32, [(1, 4, 1, 1, 32), (1, 7, 2, 4, 64), (1, 7, 2, 4, 96), (0, 10, 2, 4, 192), (0, 19, 1, 6, 224),
                  (0, 25, 2, 6, 384), (0, 7, 1, 6, 640)], 480, 0.4),
    "xl": _v2(32, [(1, 4, 1, 1, 32), (1, 8, 2, 4, 64), (1, 8, 2, 4, 96), (0, 16, 2, 4, 192), (0, 24, 1, 6, 256),
                   (0, 32, 2, 6, 512), (0, 8, 1, 6, 640)], 512, 0.4),
}


def _mnv3(stages: list[list[tuple]], head: int, head_fc: int) -> NetSpec:
    """MobileNetV3 rows as (kernel, stride, expand, channels, se, act); hard-sigmoid SE from the expansion."""
    return NetSpec(
        stem=16,
        stages=tuple(tuple(BlockSpec("mb", 1, k, s, e, c, se, a) for k, s, e, c, se, a in st) for st in stages),
        head=head, head_fc=head_fc, act="hardswish", se_style="mnv3", drop_path=0.0, dropout=0.2, imgsz=224,
    )


_RE, _HS = "relu", None  # None: the network's activation, hard-swish
_MNV3_LARGE = _mnv3([
    [(3, 1, 1, 16, 0, _RE)],
    [(3, 2, 4, 24, 0, _RE), (3, 1, 3, 24, 0, _RE)],
    [(5, 2, 3, 40, 0.25, _RE), (5, 1, 3, 40, 0.25, _RE), (5, 1, 3, 40, 0.25, _RE)],
    [(3, 2, 6, 80, 0, _HS), (3, 1, 2.5, 80, 0, _HS), (3, 1, 2.3, 80, 0, _HS), (3, 1, 2.3, 80, 0, _HS)],
    [(3, 1, 6, 112, 0.25, _HS), (3, 1, 6, 112, 0.25, _HS)],
    [(5, 2, 6, 160, 0.25, _HS), (5, 1, 6, 160, 0.25, _HS), (5, 1, 6, 160, 0.25, _HS)],
], head=960, head_fc=1280)
_MNV3_SMALL = _mnv3([
    [(3, 2, 1, 16, 0.25, _RE)],
    [(3, 2, 4.5, 24, 0, _RE), (3, 1, 3.67, 24, 0, _RE)],
    [(5, 2, 4, 40, 0.25, _HS), (5, 1, 6, 40, 0.25, _HS), (5, 1, 6, 40, 0.25, _HS)],
    [(5, 1, 3, 48, 0.25, _HS), (5, 1, 3, 48, 0.25, _HS)],
    [(5, 2, 6, 96, 0.25, _HS), (5, 1, 6, 96, 0.25, _HS), (5, 1, 6, 96, 0.25, _HS)],
], head=576, head_fc=1024)


def _resnet(op: str, repeats: tuple[int, int, int, int]) -> NetSpec:
    """ResNet (He et al. 2015, Table 1; torchvision's v1.5, the stride on the 3x3 conv): a 7x7 stride-2
    stem conv and a 3x3 max pool, four stages of basic or bottleneck blocks (stage 1 at stride 1), global
    pooling and the classifier, no head conv; ReLU, no SE."""
    widths = (64, 128, 256, 512) if op == "basic" else (256, 512, 1024, 2048)
    stages = tuple((BlockSpec(op, r, 3, 1 if i == 0 else 2, 1.0 if op == "basic" else 0.25, c),)
                   for i, (r, c) in enumerate(zip(repeats, widths, strict=True)))
    return NetSpec(stem=64, stages=stages, head=0, act="relu", se_style="effnet", imgsz=224, stem_kernel=7,
                   stem_pool=True)


_RESNETS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
            101: ("bottleneck", (3, 4, 23, 3))}


def _effnet(variant: str) -> Arch:
    width, depth, imgsz, dropout = _EFFNET_SCALING[variant]
    base = replace(_B0, imgsz=imgsz, dropout=dropout)
    return Arch(f"efficientnet_{variant}", "EfficientNet", base, width, depth, "arXiv:1905.11946")


ARCHS: dict[str, Arch] = {
    **{f"efficientnet_{v}": _effnet(v) for v in _EFFNET_SCALING},
    **{f"efficientnetv2_{v}": Arch(f"efficientnetv2_{v}", "EfficientNetV2", t, paper="arXiv:2104.00298")
       for v, t in _V2.items()},
    "mobilenetv3_large": Arch("mobilenetv3_large", "MobileNetV3", _MNV3_LARGE, paper="arXiv:1905.02244"),
    "mobilenetv3_small": Arch("mobilenetv3_small", "MobileNetV3", _MNV3_SMALL, paper="arXiv:1905.02244"),
    **{f"resnet{n}": Arch(f"resnet{n}", "ResNet", _resnet(op, r), paper="arXiv:1512.03385")
       for n, (op, r) in _RESNETS.items()},
}
