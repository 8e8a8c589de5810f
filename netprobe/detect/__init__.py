"""Detectors as data: ultralytics-format layer lists, one builder, any netprobe backbone swapped in.

    spec = resolve("yolov8n-pose:backbone=(efficientnet_b4:fused=1-3)")   # plain data
    model = build_detector(spec, device="meta")                          # nn.Module, children "0", "1", ...
    summarize_detector(spec).to_dict()                                   # per-row counts, strides, warnings
"""

from typing import TYPE_CHECKING

from netprobe.lazy import exports

__all__ = [
    "BUILTINS", "DetailRow", "Detector", "DetectorRow", "DetectorSpec", "DetectorSummary", "HeadInput", "LayerInfo",
    "LayerRow", "Published", "build_detector", "check_imgsz", "is_detector", "resolve", "summarize_detector",
    "surrogate_loss",
]
_HOME = {"build": ("Detector", "LayerInfo", "build_detector", "check_imgsz", "surrogate_loss"),
         "builtin": ("BUILTINS", "Published", "is_detector"), "layers": ("LayerRow",),
         "spec": ("DetectorSpec", "resolve"), "stride_check": ("HeadInput",), "rows": ("DetailRow", "DetectorRow"),
         "summary": ("DetectorSummary", "summarize_detector")}
__getattr__, __dir__ = exports("netprobe.detect", _HOME, globals())

if TYPE_CHECKING:
    from netprobe.detect.build import Detector, LayerInfo, build_detector, check_imgsz, surrogate_loss
    from netprobe.detect.builtin import BUILTINS, Published, is_detector
    from netprobe.detect.layers import LayerRow
    from netprobe.detect.rows import DetailRow, DetectorRow
    from netprobe.detect.spec import DetectorSpec, resolve
    from netprobe.detect.stride_check import HeadInput
    from netprobe.detect.summary import DetectorSummary, summarize_detector
