"""The built-in detectors: upstream layouts in the ultralytics YAML format, kept as data.

Layouts: ultralytics 8.x `cfg/models/v8/yolov8.yaml`, `yolov8-pose.yaml`, `v5/yolov5.yaml`,
`v3/yolov3.yaml`, `v3/yolov3-tiny.yaml` (the anchor-free "u" models), ultralytics/yolov5 v7.0
`models/yolov5{n,s,m,l,x}.yaml` (legacy, anchor-based), and seed 3's EfficientNet-YOLOv3. The
comments keep upstream's P-level labels: the stride check compares them with what is counted.
The layouts are data files in `netprobe/detect/layouts/`. In seed 3's (`yolov3-fpn.yaml`) the widths
of the YOLOv3 FPN follow the backbone's taps: c3, c4, c5 name the channels of its P3, P4 and P5 maps
(EfficientNet-B0: 40, 112, 320), so any backbone fits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

YOLOV5_LEGACY_MULTIPLES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}


@cache
def layout_text(file: str) -> str:
    """The text of a built-in layout, `netprobe/detect/layouts/FILE` (ultralytics' YAML format)."""
    return resources.files("netprobe.detect").joinpath("layouts", file).read_text()


@dataclass(frozen=True)
class Published:
    """An upstream project's own figures for a model, shown beside ours and labelled; never asserted here."""

    source: str
    gflops: float  # upstream's "GFLOPs" convention (see DetectorSummary.gflops_note)
    imgsz: int = 640
    params: int | None = None  # exact, when published exactly
    params_m: float | None = None  # rounded millions, when that is all that is published
    fused: bool = False  # BatchNorm folded into the convs (fewer parameters, no BN ops)


@dataclass(frozen=True)
class Builtin:
    """A built-in detector: its layout, the scale picked from it, its input size, published figures."""

    name: str
    file: str  # its layout: a YAML file in netprobe/detect/layouts
    origin: str
    scale: str | None = None  # key of `scales`
    overrides: tuple[tuple[str, object], ...] = ()  # top-level YAML values that differ per model
    imgsz: int = 640
    published: Published | None = None

    @property
    def layout(self) -> str:
        """The layout's YAML text."""
        return layout_text(self.file)


_V8_HEADER = "ultralytics yolov8.yaml header (unfused)"
_POSE_DOCS = "ultralytics YOLOv8-pose model summary (unfused)"
_V5_README = "ultralytics/yolov5 v7.0 README (fused, params in M)"
_V8_PUBLISHED = {"n": (3_157_200, 8.9), "s": (11_166_560, 28.8), "m": (25_902_640, 79.3), "l": (43_691_520, 165.7),
                 "x": (68_229_648, 258.5)}
_POSE_PUBLISHED = {"n": (3_295_470, 9.3), "s": (11_626_046, 30.4)}
_V5_PUBLISHED = {"n": (1.9, 4.5), "s": (7.2, 16.5), "m": (21.2, 49.0), "l": (46.5, 109.1), "x": (86.7, 205.7)}

_ULTRA = "ultralytics cfg/models"
BUILTINS: dict[str, Builtin] = {
    **{f"yolov8{s}": Builtin(f"yolov8{s}", "yolov8.yaml", f"{_ULTRA}/v8/yolov8.yaml", s,
                             published=Published(_V8_HEADER, g, params=p)) for s, (p, g) in _V8_PUBLISHED.items()},
    **{f"yolov8{s}-pose": Builtin(f"yolov8{s}-pose", "yolov8-pose.yaml", f"{_ULTRA}/v8/yolov8-pose.yaml", s,
                                  published=(Published(_POSE_DOCS, _POSE_PUBLISHED[s][1], params=_POSE_PUBLISHED[s][0])
                                             if s in _POSE_PUBLISHED else None))
       for s in "nsmlx"},
    **{f"yolov5{s}": Builtin(f"yolov5{s}", "yolov5-v7.0.yaml", f"ultralytics/yolov5 v7.0 models/yolov5{s}.yaml",
                             overrides=(("depth_multiple", d), ("width_multiple", w)),
                             published=Published(_V5_README, _V5_PUBLISHED[s][1], params_m=_V5_PUBLISHED[s][0],
                                                 fused=True))
       for s, (d, w) in YOLOV5_LEGACY_MULTIPLES.items()},
    **{f"yolov5{s}u": Builtin(f"yolov5{s}u", "yolov5u.yaml", f"{_ULTRA}/v5/yolov5.yaml", s) for s in "ns"},
    "yolov3u": Builtin("yolov3u", "yolov3u.yaml", f"{_ULTRA}/v3/yolov3.yaml"),
    "yolov3-tinyu": Builtin("yolov3-tinyu", "yolov3-tinyu.yaml", f"{_ULTRA}/v3/yolov3-tiny.yaml"),
    "yolov3-fpn": Builtin("yolov3-fpn", "yolov3-fpn.yaml", "netprobe detect/layouts/yolov3-fpn.yaml "
                          "(YOLOv3, arXiv:1804.02767, on EfficientNet-B0)",
                          imgsz=416),
}

YAML_TARGET = re.compile(r"^(.*?\.ya?ml)(?::(.*))?$", re.IGNORECASE | re.DOTALL)  # path.yaml[:options]


CPU_IMGSZ = 320  # a detector's size on a CPU when none is given: a quarter of 640's pixels, seconds per step


def cpu_friendly_size(target: object, device: str) -> tuple[int, int] | None:
    """The size a detector target runs at on a CPU when no size is given (None: its own): its own size
    (640 for YOLO) makes a train step take minutes and gigabytes there."""
    own = getattr(target, "imgsz", None)
    if device != "cpu" or getattr(target, "kind", None) != "detector" or own is None or max(own) <= CPU_IMGSZ:
        return None
    return (CPU_IMGSZ, CPU_IMGSZ)


def cpu_size_note(targets: list) -> str:
    """The note that says which detectors run at CPU_IMGSZ instead of their own size."""
    own = ", ".join(f"{t.label} {'x'.join(map(str, dict.fromkeys(t.imgsz)))} px" for t in targets)
    return (f"on the CPU, detectors run at {CPU_IMGSZ} px when no --imgsz is given (their own size makes a train "
            f"step take minutes here); their own: {own}")


def is_detector(text: object) -> bool:
    """Whether `text` names a detector: a built-in (before any ':') or a .yaml/.yml file."""
    if not isinstance(text, str):
        return False
    text = text.strip()
    return text.partition(":")[0].strip() in BUILTINS or YAML_TARGET.match(text) is not None
