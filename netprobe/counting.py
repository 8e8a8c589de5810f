"""The native counter: shapes, parameters and operations of any module, on the `meta` device.

The model runs on meta tensors (no memory, no arithmetic); a dispatch mode sees every aten
op and a table of rules turns each into a count, attributed to the innermost module running.
MACs (multiply-accumulates) come from convolutions and matrix products only, the convention
of the EfficientNet papers ("FLOPs" there). Everything else (batch norm, activations, the SE
multiply, residual adds, pooling) is counted apart as element operations, one per output
element, so the user sees what the conventional number leaves out. An op with no rule is
reported by name, never silently counted as zero.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

MAC_KINDS = ("conv", "linear")
OTHER_KINDS = ("norm", "act", "mul", "add", "pool")


def _numel(t: object) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _conv_macs(args: tuple, out: torch.Tensor) -> int:
    weight = args[1]  # [out, in/groups, *kernel]
    return out.numel() * math.prod(weight.shape[1:])


def _mm_macs(args: tuple, out: torch.Tensor) -> int:
    a, b = args[-2], args[-1]  # addmm(bias, a, b) / mm(a, b): [M, K] @ [K, N]
    return a.shape[0] * a.shape[1] * b.shape[1]


def _out_elems(args: tuple, out: object) -> int:
    return _numel(out[0] if isinstance(out, tuple) else out)


def _in_elems(args: tuple, out: object) -> int:
    return _numel(args[0])


def _packets(*names: str) -> list:
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


# Counting rules as data: op -> (kind, formula). One place per op.
RULES: dict[object, tuple[str, Callable[[tuple, object], int]]] = {}
for _op in _packets("convolution", "_convolution", "conv2d", "cudnn_convolution", "mkldnn_convolution"):
    RULES[_op] = ("conv", _conv_macs)
for _op in _packets("addmm", "mm"):
    RULES[_op] = ("linear", _mm_macs)
for _op in _packets("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                    "batch_norm", "cudnn_batch_norm", "_batch_norm_with_update", "_batch_norm_no_update"):
    RULES[_op] = ("norm", _out_elems)
for _op in _packets("relu", "relu_", "silu", "silu_", "hardswish", "hardswish_", "gelu", "gelu_", "sigmoid",
                    "sigmoid_", "hardsigmoid", "hardsigmoid_", "hardtanh", "hardtanh_", "clamp_min", "threshold"):
    RULES[_op] = ("act", _out_elems)
for _op in _packets("mul", "mul_", "div", "div_"):
    RULES[_op] = ("mul", _out_elems)
for _op in _packets("add", "add_", "sub", "sub_"):
    RULES[_op] = ("add", _out_elems)
for _op in _packets("mean", "_adaptive_avg_pool2d", "adaptive_avg_pool2d", "avg_pool2d", "max_pool2d",
                    "max_pool2d_with_indices"):
    RULES[_op] = ("pool", _in_elems)
# Ops that move or describe data without arithmetic.
FREE = set(_packets(
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "flatten", "squeeze", "unsqueeze",
    "detach", "clone", "contiguous", "empty", "empty_like", "zeros", "zeros_like", "ones_like", "new_empty",
    "as_strided", "slice", "select", "copy_", "_to_copy", "alias", "lift_fresh", "bernoulli_", "native_dropout",
    "dropout", "empty_strided", "fill_", "zero_", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset",
))


@dataclass
class ModuleCount:
    """What one module does itself (not counting its children) for one input."""

    path: str  # "" for the root, else dotted, e.g. "stage2.0.body.dw"
    type: str
    params: int = 0
    macs: int = 0
    other: dict[str, int] = field(default_factory=dict)  # element ops by kind
    out_shape: tuple[int, ...] = ()
    leaf_out_elems: int = 0  # output elements of a leaf module: what backward keeps

    @property
    def other_ops(self) -> int:
        return sum(self.other.values())


@dataclass
class Count:
    """The result of counting a module on one input shape."""

    input_shape: tuple[int, ...]
    modules: dict[str, ModuleCount]
    by_kind: dict[str, int]  # total per op kind (conv and linear in MACs, the rest element ops)
    unsupported: dict[str, int]  # ops with no rule: name -> times seen

    @property
    def params(self) -> int:
        return sum(m.params for m in self.modules.values())

    @property
    def macs(self) -> int:
        return sum(m.macs for m in self.modules.values())

    @property
    def other_ops(self) -> int:
        return sum(m.other_ops for m in self.modules.values())

    def under(self, prefix: str) -> list[ModuleCount]:
        """The module at `prefix` and everything below it."""
        return [m for p, m in self.modules.items() if p == prefix or p.startswith(prefix + ".")]


class _OpCounter(TorchDispatchMode):
    def __init__(self, scope: list[str], modules: dict[str, ModuleCount], by_kind: dict, unsupported: dict):
        super().__init__()
        self.scope, self.modules, self.by_kind, self.unsupported = scope, modules, by_kind, unsupported

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func.overloadpacket
        rule = RULES.get(packet)
        if rule is None:
            if packet not in FREE:
                self.unsupported[str(packet)] += 1
            return out
        kind, formula = rule
        n = formula(args, out)
        record = self.modules[self.scope[-1]]
        if kind in MAC_KINDS:
            record.macs += n
        else:
            record.other[kind] = record.other.get(kind, 0) + n
        self.by_kind[kind] += n
        return out


def count(model: nn.Module, input_shape: tuple[int, ...]) -> Count:
    """Count `model` on an input of `input_shape` (N, C, H, W).

    Runs on the `meta` device when the model lives there (build it with `device="meta"`):
    no tensor memory, no arithmetic. The model is put in eval mode and left so.
    """
    device = next(model.parameters()).device
    modules: dict[str, ModuleCount] = {}
    scope: list[str] = []
    handles = []
    for path, module in model.named_modules():
        rec = ModuleCount(path, type(module).__name__, params=sum(p.numel() for p in module.parameters(False)))
        modules[path] = rec
        is_leaf = next(module.children(), None) is None
        handles.append(module.register_forward_pre_hook(lambda m, a, p=path: scope.append(p)))
        handles.append(module.register_forward_hook(_make_post_hook(scope, rec, is_leaf)))
    by_kind: dict[str, int] = defaultdict(int)
    unsupported: dict[str, int] = defaultdict(int)
    model.eval()
    try:
        with torch.no_grad(), _OpCounter(scope, modules, by_kind, unsupported):
            model(torch.empty(input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    return Count(tuple(input_shape), modules, {k: by_kind.get(k, 0) for k in MAC_KINDS + OTHER_KINDS},
                 dict(unsupported))


def _make_post_hook(scope: list[str], rec: ModuleCount, is_leaf: bool):
    def hook(module: nn.Module, args: tuple, out: object) -> None:
        scope.pop()
        if isinstance(out, torch.Tensor):
            rec.out_shape = tuple(out.shape)
            if is_leaf:
                rec.leaf_out_elems = out.numel()
    return hook
