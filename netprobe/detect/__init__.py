"""Detectors as data: ultralytics-format layer lists, one builder, any netprobe backbone swapped in.

    spec = resolve("yolov8n-pose:backbone=(efficientnet_b4:fused=1-3)")   # plain data
    model = build_detector(spec, device="meta")                          # nn.Module, children "0", "1", ...
    summarize_detector(spec).to_dict()                                   # per-row counts, strides, warnings
"""

from netprobe.detect.build import Detector, LayerInfo, build_detector, check_imgsz, surrogate_loss
from netprobe.detect.builtin import BUILTINS, Published
from netprobe.detect.layers import LayerRow
from netprobe.detect.spec import DetectorSpec, is_detector, resolve
from netprobe.detect.stride_check import HeadInput
from netprobe.detect.summary import DetailRow, DetectorRow, DetectorSummary, summarize_detector

__all__ = [
    "BUILTINS", "DetailRow", "Detector", "DetectorRow", "DetectorSpec", "DetectorSummary", "HeadInput", "LayerInfo",
    "LayerRow", "Published", "build_detector", "check_imgsz", "is_detector", "resolve", "summarize_detector",
    "surrogate_loss",
]
