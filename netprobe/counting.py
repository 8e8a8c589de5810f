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


# Output shapes of the ops whose meta kernels are written in Python: computing them here keeps
# counting free of torch._dynamo, which those kernels import (about a second of start-up).
def _empty(shape, like: torch.Tensor) -> torch.Tensor:
    # torch.empty, not empty_like: the latter's meta path is Python too (and imports sympy).
    return torch.empty(tuple(shape), dtype=like.dtype, device=like.device)


def _like_input(func, args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if func._schema.name.endswith("_") else _empty(args[0].shape, args[0])


def _broadcast(func, args: tuple, kwargs: dict) -> torch.Tensor:
    if func._schema.name.endswith("_"):
        return args[0]
    shapes = [tuple(a.shape) for a in args[:2] if isinstance(a, torch.Tensor)]
    return _empty(_broadcast_shape(shapes), args[0])


def _broadcast_shape(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    # Plain numpy-style broadcasting; torch.broadcast_shapes would import sympy.
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + s for s in shapes]
    return tuple(max(dims) if min(dims) != 0 else 0 for dims in zip(*padded, strict=True))


def _conv(func, args: tuple, kwargs: dict) -> torch.Tensor:
    # aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    x, w, _, stride, padding, dilation, transposed = args[:7]
    if transposed:
        return func(*args, **kwargs)
    spatial = [(n + 2 * p - d * (k - 1) - 1) // s + 1
               for n, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation, strict=True)]
    return _empty((x.shape[0], w.shape[0], *spatial), x)


def _batch_norm(func, args: tuple, kwargs: dict) -> tuple:
    x = args[0]
    stats = [_empty((0,), x) for _ in func._schema.returns[1:]]
    return (_empty(x.shape, x), *stats)


def _mean(func, args: tuple, kwargs: dict) -> torch.Tensor:
    x, dims = args[0], args[1] if len(args) > 1 else None
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    dims = {d % x.ndim for d in dims} if dims else set(range(x.ndim))
    shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keepdim or i not in dims]
    return _empty(shape, x)


def _adaptive_pool(func, args: tuple, kwargs: dict) -> torch.Tensor:
    x = args[0]
    return _empty((*x.shape[:-2], *args[1]), x)


def _matmul(func, args: tuple, kwargs: dict) -> torch.Tensor:
    a, b = args[-2], args[-1]
    return _empty((a.shape[0], b.shape[1]), a)


@dataclass(frozen=True)
class Rule:
    """How one op counts: its kind, the count as a function of (args, output), and optionally its
    output as a function of (op, args, kwargs) for the meta device."""

    kind: str
    count: Callable[[tuple, object], int]
    meta: Callable | None = None


def _packets(*names: str) -> list:
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


# Counting rules as data: op -> Rule. One place per op.
RULES: dict[object, Rule] = {}
RULES[aten.convolution] = Rule("conv", _conv_macs, _conv)
for _op in _packets("_convolution", "conv2d", "cudnn_convolution", "mkldnn_convolution"):
    RULES[_op] = Rule("conv", _conv_macs)
for _op in _packets("addmm", "mm"):
    RULES[_op] = Rule("linear", _mm_macs, _matmul)
for _op in _packets("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                    "_batch_norm_with_update", "_batch_norm_no_update", "cudnn_batch_norm"):
    RULES[_op] = Rule("norm", _out_elems, _batch_norm)
for _op in _packets("relu", "relu_", "silu", "silu_", "hardswish", "hardswish_", "gelu", "gelu_", "sigmoid",
                    "sigmoid_", "hardsigmoid", "hardsigmoid_", "hardtanh", "hardtanh_", "clamp_min", "threshold"):
    RULES[_op] = Rule("act", _out_elems, _like_input)
for _op in _packets("mul", "mul_", "div", "div_"):
    RULES[_op] = Rule("mul", _out_elems, _broadcast)
for _op in _packets("add", "add_", "sub", "sub_"):
    RULES[_op] = Rule("add", _out_elems, _broadcast)
RULES[aten.mean] = Rule("pool", _in_elems, _mean)
for _op in _packets("_adaptive_avg_pool2d", "adaptive_avg_pool2d"):
    RULES[_op] = Rule("pool", _in_elems, _adaptive_pool)
for _op in _packets("avg_pool2d", "max_pool2d", "max_pool2d_with_indices"):
    RULES[_op] = Rule("pool", _in_elems)
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
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps __torch_dispatch__ in a dynamo guard that imports torch._dynamo (about a
        # second) on first use; this mode never runs under torch.compile, so it needs none.
        return False

    def __init__(self, scope: list[str], modules: dict[str, ModuleCount], by_kind: dict, unsupported: dict):
        super().__init__()
        self.scope, self.modules, self.by_kind, self.unsupported = scope, modules, by_kind, unsupported

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        rule = RULES.get(packet)
        on_meta = any(isinstance(a, torch.Tensor) and a.is_meta for a in args[:1])
        if rule is not None and rule.meta is not None and on_meta and not kwargs.get("out"):
            out = rule.meta(func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        if rule is None:
            if packet not in FREE:
                self.unsupported[str(packet)] += 1
            return out
        n = rule.count(args, out)
        record = self.modules[self.scope[-1]]
        if rule.kind in MAC_KINDS:
            record.macs += n
        else:
            record.other[rule.kind] = record.other.get(rule.kind, 0) + n
        self.by_kind[rule.kind] += n
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
