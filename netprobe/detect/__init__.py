"""Detectors as data: ultralytics-format layer lists, one builder, any netprobe backbone swapped in.

    spec = resolve("yolov8n-pose:backbone=(efficientnet_b4:fused=1-3)")   # plain data
    model = build_detector(spec, device="meta")                          # nn.Module, children "0", "1", ...
    summarize_detector(spec).to_dict()                                   # per-row counts, strides, warnings
"""

from netprobe.detect.build import Detector, LayerInfo, build_detector, check_imgsz
from netprobe.detect.builtin import BUILTINS, Published
from netprobe.detect.layers import LayerRow
from netprobe.detect.spec import DetectorSpec, is_detector, resolve

__all__ = [
    "BUILTINS", "Detector", "DetectorSpec", "LayerInfo", "LayerRow", "Published", "build_detector", "check_imgsz",
    "is_detector", "resolve",
]
