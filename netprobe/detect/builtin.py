"""The built-in detectors: upstream layouts in the ultralytics YAML format, kept as data.

Layouts: ultralytics 8.x `cfg/models/v8/yolov8.yaml`, `yolov8-pose.yaml`, `v5/yolov5.yaml`,
`v3/yolov3.yaml`, `v3/yolov3-tiny.yaml` (the anchor-free "u" models), ultralytics/yolov5 v7.0
`models/yolov5{n,s,m,l,x}.yaml` (legacy, anchor-based), and seed 3's EfficientNet-YOLOv3. The
comments keep upstream's P-level labels: the stride check compares them with what is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

_V8_SCALES = """\
scales: # [depth, width, max_channels]
  n: [0.33, 0.25, 1024]
  s: [0.33, 0.50, 1024]
  m: [0.67, 0.75, 768]
  l: [1.00, 1.00, 512]
  x: [1.00, 1.25, 512]
"""

_V8_BODY = """\
backbone:
  - [-1, 1, Conv, [64, 3, 2]] # 0-P1/2
  - [-1, 1, Conv, [128, 3, 2]] # 1-P2/4
  - [-1, 3, C2f, [128, True]]
  - [-1, 1, Conv, [256, 3, 2]] # 3-P3/8
  - [-1, 6, C2f, [256, True]]
  - [-1, 1, Conv, [512, 3, 2]] # 5-P4/16
  - [-1, 6, C2f, [512, True]]
  - [-1, 1, Conv, [1024, 3, 2]] # 7-P5/32
  - [-1, 3, C2f, [1024, True]]
  - [-1, 1, SPPF, [1024, 5]] # 9
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]] # cat backbone P4
  - [-1, 3, C2f, [512]] # 12
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]] # cat backbone P3
  - [-1, 3, C2f, [256]] # 15 (P3/8-small)
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 12], 1, Concat, [1]] # cat head P4
  - [-1, 3, C2f, [512]] # 18 (P4/16-medium)
  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 9], 1, Concat, [1]] # cat head P5
  - [-1, 3, C2f, [1024]] # 21 (P5/32-large)
"""

YOLOV8 = "nc: 80\n" + _V8_SCALES + _V8_BODY + "  - [[15, 18, 21], 1, Detect, [nc]] # Detect(P3, P4, P5)\n"
YOLOV8_POSE = ("nc: 1\nkpt_shape: [17, 3] # keypoints, values per keypoint (x, y, visible)\n" + _V8_SCALES
               + _V8_BODY + "  - [[15, 18, 21], 1, Pose, [nc, kpt_shape]] # Pose(P3, P4, P5)\n")

_V5_BODY = """\
backbone:
  - [-1, 1, Conv, [64, 6, 2, 2]] # 0-P1/2
  - [-1, 1, Conv, [128, 3, 2]] # 1-P2/4
  - [-1, 3, C3, [128]]
  - [-1, 1, Conv, [256, 3, 2]] # 3-P3/8
  - [-1, 6, C3, [256]]
  - [-1, 1, Conv, [512, 3, 2]] # 5-P4/16
  - [-1, 9, C3, [512]]
  - [-1, 1, Conv, [1024, 3, 2]] # 7-P5/32
  - [-1, 3, C3, [1024]]
  - [-1, 1, SPPF, [1024, 5]] # 9
head:
  - [-1, 1, Conv, [512, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]] # cat backbone P4
  - [-1, 3, C3, [512, False]] # 13
  - [-1, 1, Conv, [256, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]] # cat backbone P3
  - [-1, 3, C3, [256, False]] # 17 (P3/8-small)
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 14], 1, Concat, [1]] # cat head P4
  - [-1, 3, C3, [512, False]] # 20 (P4/16-medium)
  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 10], 1, Concat, [1]] # cat head P5
  - [-1, 3, C3, [1024, False]] # 23 (P5/32-large)
"""

_YOLO_ANCHORS = """\
anchors:
  - [10, 13, 16, 30, 33, 23] # small objects
  - [30, 61, 62, 45, 59, 119] # medium objects
  - [116, 90, 156, 198, 373, 326] # large objects
"""

# ultralytics/yolov5 v7.0: one file per scale, differing only in these multipliers.
YOLOV5_LEGACY_MULTIPLES = {"n": (0.33, 0.25), "s": (0.33, 0.50), "m": (0.67, 0.75), "l": (1.0, 1.0), "x": (1.33, 1.25)}
YOLOV5_LEGACY = ("nc: 80\ndepth_multiple: 0.33\nwidth_multiple: 0.50\n" + _YOLO_ANCHORS + _V5_BODY
                 + "  - [[17, 20, 23], 1, Detect, [nc, anchors]] # Detect(P3, P4, P5)\n")
YOLOV5U = """\
nc: 80
scales: # [depth, width, max_channels]
  n: [0.33, 0.25, 1024]
  s: [0.33, 0.50, 1024]
  m: [0.67, 0.75, 1024]
  l: [1.00, 1.00, 1024]
  x: [1.33, 1.25, 1024]
""" + _V5_BODY + "  - [[17, 20, 23], 1, Detect, [nc]] # Detect(P3, P4, P5)\n"

YOLOV3U = """\
nc: 80
depth_multiple: 1.0
width_multiple: 1.0
backbone:
  - [-1, 1, Conv, [32, 3, 1]] # 0
  - [-1, 1, Conv, [64, 3, 2]] # 1-P1/2
  - [-1, 1, Bottleneck, [64]]
  - [-1, 1, Conv, [128, 3, 2]] # 3-P2/4
  - [-1, 2, Bottleneck, [128]]
  - [-1, 1, Conv, [256, 3, 2]] # 5-P3/8
  - [-1, 8, Bottleneck, [256]]
  - [-1, 1, Conv, [512, 3, 2]] # 7-P4/16
  - [-1, 8, Bottleneck, [512]]
  - [-1, 1, Conv, [1024, 3, 2]] # 9-P5/32
  - [-1, 4, Bottleneck, [1024]] # 10
head:
  - [-1, 1, Bottleneck, [1024, False]]
  - [-1, 1, Conv, [512, 1, 1]]
  - [-1, 1, Conv, [1024, 3, 1]]
  - [-1, 1, Conv, [512, 1, 1]]
  - [-1, 1, Conv, [1024, 3, 1]] # 15 (P5/32-large)
  - [-2, 1, Conv, [256, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 8], 1, Concat, [1]] # cat backbone P4
  - [-1, 1, Bottleneck, [512, False]]
  - [-1, 1, Bottleneck, [512, False]]
  - [-1, 1, Conv, [256, 1, 1]]
  - [-1, 1, Conv, [512, 3, 1]] # 22 (P4/16-medium)
  - [-2, 1, Conv, [128, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]] # cat backbone P3
  - [-1, 1, Bottleneck, [256, False]]
  - [-1, 2, Bottleneck, [256, False]] # 27 (P3/8-small)
  - [[27, 22, 15], 1, Detect, [nc]] # Detect(P3, P4, P5)
"""

YOLOV3_TINYU = """\
nc: 80
depth_multiple: 1.0
width_multiple: 1.0
backbone:
  - [-1, 1, Conv, [16, 3, 1]] # 0
  - [-1, 1, nn.MaxPool2d, [2, 2, 0]] # 1-P1/2
  - [-1, 1, Conv, [32, 3, 1]]
  - [-1, 1, nn.MaxPool2d, [2, 2, 0]] # 3-P2/4
  - [-1, 1, Conv, [64, 3, 1]]
  - [-1, 1, nn.MaxPool2d, [2, 2, 0]] # 5-P3/8
  - [-1, 1, Conv, [128, 3, 1]]
  - [-1, 1, nn.MaxPool2d, [2, 2, 0]] # 7-P4/16
  - [-1, 1, Conv, [256, 3, 1]]
  - [-1, 1, nn.MaxPool2d, [2, 2, 0]] # 9-P5/32
  - [-1, 1, Conv, [512, 3, 1]]
  - [-1, 1, nn.ZeroPad2d, [[0, 1, 0, 1]]] # 11
  - [-1, 1, nn.MaxPool2d, [2, 1, 0]] # 12
head:
  - [-1, 1, Conv, [1024, 3, 1]]
  - [-1, 1, Conv, [256, 1, 1]]
  - [-1, 1, Conv, [512, 3, 1]] # 15 (P5/32-large)
  - [-2, 1, Conv, [128, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 8], 1, Concat, [1]] # cat backbone P4
  - [-1, 1, Conv, [256, 3, 1]] # 19 (P4/16-medium)
  - [[19, 15], 1, Detect, [nc]] # Detect(P4, P5)
"""

# Seed 3: the widths of the YOLOv3 FPN follow the backbone's taps: c3, c4, c5 name the channels of its
# P3, P4 and P5 maps (EfficientNet-B0: 40, 112, 320), so any backbone fits.
YOLOV3_FPN = """\
nc: 80
depth_multiple: 1.0
width_multiple: 1.0
""" + _YOLO_ANCHORS + """\
backbone:
  - [-1, 1, Backbone, [efficientnet_b0, [8, 16, 32]]] # 0, its maps are rows 1-3
head:
  - [3, 1, ConvSet, [c5]] # 4 (P5/32)
  - [-1, 1, DarknetConv, [c4, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 2], 1, Concat, [1]] # cat backbone P4
  - [-1, 1, ConvSet, [c4]] # 8 (P4/16)
  - [-1, 1, DarknetConv, [c3, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 1], 1, Concat, [1]] # cat backbone P3
  - [-1, 1, ConvSet, [c3]] # 12 (P3/8)
  - [[12, 8, 4], 1, YOLOv3Detect, [nc, anchors]] # Detect(P3, P4, P5)
"""


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
    layout: str  # ultralytics-format YAML text
    origin: str
    scale: str | None = None  # key of `scales`
    overrides: tuple[tuple[str, object], ...] = ()  # top-level YAML values that differ per model
    imgsz: int = 640
    published: Published | None = None


_V8_HEADER = "ultralytics yolov8.yaml header (unfused)"
_POSE_DOCS = "ultralytics YOLOv8-pose model summary (unfused)"
_V5_README = "ultralytics/yolov5 v7.0 README (fused, params in M)"
_V8_PUBLISHED = {"n": (3_157_200, 8.9), "s": (11_166_560, 28.8), "m": (25_902_640, 79.3), "l": (43_691_520, 165.7),
                 "x": (68_229_648, 258.5)}
_POSE_PUBLISHED = {"n": (3_295_470, 9.3), "s": (11_626_046, 30.4)}
_V5_PUBLISHED = {"n": (1.9, 4.5), "s": (7.2, 16.5), "m": (21.2, 49.0), "l": (46.5, 109.1), "x": (86.7, 205.7)}

_ULTRA = "ultralytics cfg/models"
BUILTINS: dict[str, Builtin] = {
    **{f"yolov8{s}": Builtin(f"yolov8{s}", YOLOV8, f"{_ULTRA}/v8/yolov8.yaml", s,
                             published=Published(_V8_HEADER, g, params=p)) for s, (p, g) in _V8_PUBLISHED.items()},
    **{f"yolov8{s}-pose": Builtin(f"yolov8{s}-pose", YOLOV8_POSE, f"{_ULTRA}/v8/yolov8-pose.yaml", s,
                                  published=(Published(_POSE_DOCS, _POSE_PUBLISHED[s][1], params=_POSE_PUBLISHED[s][0])
                                             if s in _POSE_PUBLISHED else None))
       for s in "nsmlx"},
    **{f"yolov5{s}": Builtin(f"yolov5{s}", YOLOV5_LEGACY, f"ultralytics/yolov5 v7.0 models/yolov5{s}.yaml",
                             overrides=(("depth_multiple", d), ("width_multiple", w)),
                             published=Published(_V5_README, _V5_PUBLISHED[s][1], params_m=_V5_PUBLISHED[s][0],
                                                 fused=True))
       for s, (d, w) in YOLOV5_LEGACY_MULTIPLES.items()},
    **{f"yolov5{s}u": Builtin(f"yolov5{s}u", YOLOV5U, f"{_ULTRA}/v5/yolov5.yaml", s) for s in "ns"},
    "yolov3u": Builtin("yolov3u", YOLOV3U, f"{_ULTRA}/v3/yolov3.yaml"),
    "yolov3-tinyu": Builtin("yolov3-tinyu", YOLOV3_TINYU, f"{_ULTRA}/v3/yolov3-tiny.yaml"),
    "yolov3-fpn": Builtin("yolov3-fpn", YOLOV3_FPN, "seed 3: EfficientNet-YOLOv3 (reference/seed-detectors.md)",
                          imgsz=416),
}
