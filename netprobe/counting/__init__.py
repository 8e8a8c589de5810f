"""The native counter: shapes, strides, parameters and operations of any module, on the `meta` device.

The model runs on meta tensors (no memory, no arithmetic); a dispatch mode sees every aten
op and a table of rules turns each into a count, attributed to the innermost module running.
MACs (multiply-accumulates) come from convolutions and matrix products only, the convention
of the EfficientNet papers ("FLOPs" there). Everything else (batch norm, activations, the SE
multiply, residual adds, pooling, resizing, concatenation) is counted apart as element
operations, one per output element, so the user sees what the conventional number leaves out.
An op with no rule is reported by name, never silently counted as zero.

The same mode follows each tensor's cumulative stride (input pixels per output pixel, per
spatial dimension) from op to op, so every module's output knows its pyramid level exactly,
whatever the image size: a stride-2 conv doubles it, an upsample halves it, global pooling
ends it.
"""

from typing import TYPE_CHECKING

from netprobe.lazy import exports

__all__ = [
    "FREE", "LOSS_PATH", "MAC_KINDS", "OTHER_KINDS", "RULES", "Count", "ModuleCount", "Rule", "Stride", "Tally",
    "TrainCount", "TrainModuleCount", "count", "count_train", "failed_input", "failed_module", "flop_counter_reference",
    "model_device",
    "pyramid_level", "stride_ratio", "train_rule", "train_rules",
]
_HOME = {"forward": ("Count", "ModuleCount", "count", "failed_input", "failed_module", "model_device"),
         "reference": ("flop_counter_reference",),
         "rules": ("FREE", "MAC_KINDS", "OTHER_KINDS", "RULES", "Rule"),
         "strides": ("Stride", "pyramid_level", "stride_ratio"),
         "train": ("Tally", "TrainCount", "TrainModuleCount", "count_train"),
         "train_rules": ("LOSS_PATH", "train_rule", "train_rules")}
__getattr__, __dir__ = exports("netprobe.counting", _HOME, globals())

if TYPE_CHECKING:
    from netprobe.counting.forward import Count, ModuleCount, count, failed_input, failed_module, model_device
    from netprobe.counting.reference import flop_counter_reference
    from netprobe.counting.rules import FREE, MAC_KINDS, OTHER_KINDS, RULES, Rule
    from netprobe.counting.strides import Stride, pyramid_level, stride_ratio
    from netprobe.counting.train import Tally, TrainCount, TrainModuleCount, count_train
    from netprobe.counting.train_rules import LOSS_PATH, train_rule, train_rules
