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

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakTensorKeyDictionary

aten = torch.ops.aten

MAC_KINDS = ("conv", "linear", "matmul")
OTHER_KINDS = ("norm", "act", "mul", "add", "pool", "resize", "concat")

Stride = tuple[float, ...]  # cumulative stride per spatial dimension


def _numel(t: object) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _conv_macs(args: tuple, out: torch.Tensor) -> int:
    x, weight = args[0], args[1]
    if len(args) > 6 and args[6]:  # transposed: weight [in, out/groups, *k]; every input pixel feeds k taps
        return x.numel() * math.prod(weight.shape[1:])
    return out.numel() * math.prod(weight.shape[1:])  # weight [out, in/groups, *kernel]


def _mm_macs(args: tuple, out: torch.Tensor) -> int:
    a, b = args[-2], args[-1]  # addmm(bias, a, b) / mm(a, b): [M, K] @ [K, N]
    return a.shape[0] * a.shape[1] * b.shape[1]


def _bmm_macs(args: tuple, out: torch.Tensor) -> int:
    a, b = args[-2], args[-1]  # [B, M, K] @ [B, K, N]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


def _mv_macs(args: tuple, out: torch.Tensor) -> int:
    a = args[-2]  # mv: [M, K] @ [K]; dot: [K] . [K]
    return a.numel()


def _attention_macs(args: tuple, out: object) -> int:
    q, k, v = args[:3]  # [..., L, E], [..., S, E], [..., S, Ev]: Q K^T, then (L x S) V
    batch = math.prod(q.shape[:-2])
    return batch * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


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
    x, w, _, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    if transposed:
        spatial = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, d, op
                   in zip(x.shape[2:], w.shape[2:], stride, padding, dilation, output_padding, strict=True)]
        return _empty((x.shape[0], w.shape[1] * groups, *spatial), x)
    spatial = [(n + 2 * p - d * (k - 1) - 1) // s + 1
               for n, k, s, p, d in zip(x.shape[2:], w.shape[2:], stride, padding, dilation, strict=True)]
    return _empty((x.shape[0], w.shape[0], *spatial), x)


def _batch_norm(func, args: tuple, kwargs: dict) -> tuple:
    x = args[0]
    stats = [_empty((0,), x) for _ in func._schema.returns[1:]]
    return (_empty(x.shape, x), *stats)


def _mean(func, args: tuple, kwargs: dict) -> torch.Tensor:
    x, dims = args[0], args[1] if len(args) > 1 else kwargs.get("dim")
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


def _batched_matmul(func, args: tuple, kwargs: dict) -> torch.Tensor:
    a, b = args[-2], args[-1]
    return _empty((a.shape[0], a.shape[1], b.shape[2]), a)


def _cat(func, args: tuple, kwargs: dict) -> torch.Tensor:
    tensors = [t for t in args[0] if not (t.ndim == 1 and t.shape[0] == 0)]  # cat skips legacy empty tensors
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    first = tensors[0]
    dim %= first.ndim
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return _empty(shape, first)


def _stack(func, args: tuple, kwargs: dict) -> torch.Tensor:
    tensors = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    first = tensors[0]
    dim %= first.ndim + 1
    shape = list(first.shape)
    shape.insert(dim, len(tensors))
    return _empty(shape, first)


def _arange(func, args: tuple, kwargs: dict) -> torch.Tensor:
    bounds = [float(a) for a in args[:3]]  # (end), (start, end) or (start, end, step)
    start, end, step = (0.0, bounds[0], 1.0) if len(bounds) == 1 else (*bounds[:2], bounds[2] if len(bounds) > 2
                                                                          else 1.0)
    floats = any(isinstance(a, float) for a in args[:3])
    dtype = kwargs.get("dtype") or (torch.get_default_dtype() if floats else torch.int64)
    return torch.empty((max(0, math.ceil((end - start) / step)),), dtype=dtype, device=kwargs.get("device"))


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
for _op in _packets("_convolution", "conv2d", "cudnn_convolution", "mkldnn_convolution", "cudnn_convolution_transpose",
                    "_slow_conv2d_forward", "slow_conv_transpose2d", "_conv_depthwise2d"):
    RULES[_op] = Rule("conv", _conv_macs)
for _op in _packets("addmm", "mm"):
    RULES[_op] = Rule("linear", _mm_macs, _matmul)
for _op in _packets("bmm", "baddbmm"):
    RULES[_op] = Rule("matmul", _bmm_macs, _batched_matmul)
for _op in _packets("mv", "addmv", "dot", "vdot"):
    RULES[_op] = Rule("matmul", _mv_macs)
for _op in _packets("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention"):
    RULES[_op] = Rule("matmul", _attention_macs)
for _op in _packets("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                    "_batch_norm_with_update", "_batch_norm_no_update", "cudnn_batch_norm"):
    RULES[_op] = Rule("norm", _out_elems, _batch_norm)
for _op in _packets("native_layer_norm", "native_group_norm", "_fused_rms_norm"):
    RULES[_op] = Rule("norm", _out_elems)
for _op in _packets("relu", "relu_", "silu", "silu_", "hardswish", "hardswish_", "gelu", "gelu_", "sigmoid",
                    "sigmoid_", "hardsigmoid", "hardsigmoid_", "hardtanh", "hardtanh_", "clamp_min", "clamp_min_",
                    "threshold", "leaky_relu", "leaky_relu_", "elu", "elu_", "mish", "mish_", "tanh", "tanh_",
                    "relu6", "prelu", "_prelu_kernel", "softplus", "clamp", "clamp_", "exp", "exp_"):
    RULES[_op] = Rule("act", _out_elems, _like_input)
for _op in _packets("_softmax", "_log_softmax", "_safe_softmax"):
    RULES[_op] = Rule("act", _out_elems)
for _op in _packets("mul", "mul_", "div", "div_"):
    RULES[_op] = Rule("mul", _out_elems, _broadcast)
for _op in _packets("add", "add_", "sub", "sub_", "rsub"):
    RULES[_op] = Rule("add", _out_elems, _broadcast)
RULES[aten.sum] = Rule("add", _in_elems)
RULES[aten.mean] = Rule("pool", _in_elems, _mean)
for _op in _packets("_adaptive_avg_pool2d", "adaptive_avg_pool2d"):
    RULES[_op] = Rule("pool", _in_elems, _adaptive_pool)
for _op in _packets("avg_pool2d", "max_pool2d", "max_pool2d_with_indices", "adaptive_max_pool2d", "amax",
                    "_adaptive_avg_pool3d", "avg_pool3d", "max_pool3d_with_indices", "avg_pool1d", "max_pool1d"):
    RULES[_op] = Rule("pool", _in_elems)
for _op in _packets("upsample_nearest2d", "_upsample_nearest_exact2d", "upsample_bilinear2d", "upsample_bicubic2d",
                    "_upsample_bilinear2d_aa", "upsample_nearest1d", "upsample_linear1d", "upsample_nearest3d",
                    "upsample_trilinear3d", "pixel_shuffle", "pixel_unshuffle"):
    RULES[_op] = Rule("resize", _out_elems)
RULES[aten.cat] = Rule("concat", _out_elems, _cat)
RULES[aten.stack] = Rule("concat", _out_elems, _stack)
for _op in _packets("constant_pad_nd", "reflection_pad2d", "replication_pad2d"):
    RULES[_op] = Rule("concat", _out_elems)
# Output shapes of free ops whose meta kernels are Python (see _empty): op -> (op, args, kwargs) -> output.
FREE_META = {aten.arange: _arange}
# Ops that move, create or describe data without arithmetic.
FREE = set(_packets(
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "flatten", "squeeze", "unsqueeze",
    "detach", "clone", "contiguous", "empty", "empty_like", "zeros", "zeros_like", "ones", "ones_like", "new_empty",
    "new_zeros", "new_ones", "new_full", "full", "full_like", "as_strided", "slice", "select", "copy_", "_to_copy",
    "alias", "lift_fresh", "lift_fresh_copy", "bernoulli_", "native_dropout", "dropout", "empty_strided", "fill_",
    "zero_", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "split", "split_with_sizes", "chunk",
    "unbind", "arange", "linspace", "scalar_tensor", "_local_scalar_dense", "unfold", "expand_as", "view_as",
    "_reshape_alias", "unsafe_split", "unsafe_split_with_sizes", "index_select", "gather", "index",
    "meshgrid", "randn", "rand", "randint",
    "normal_", "uniform_", "random_", "_assert_async", "narrow", "repeat", "tile", "roll", "flip",
))


@dataclass
class ModuleCount:
    """What one module does itself (not counting its children), summed over its calls, for one input."""

    path: str  # "" for the root, else dotted, e.g. "stage2.0.body.dw"
    type: str
    params: int = 0
    macs: int = 0
    other: dict[str, int] = field(default_factory=dict)  # element ops by kind
    out_shapes: list[tuple[int, ...]] = field(default_factory=list)  # each tensor output of its last call
    in_strides: list[Stride | None] = field(default_factory=list)  # cumulative stride of each tensor input
    out_strides: list[Stride | None] = field(default_factory=list)  # ... and of each tensor output
    leaf_out_elems: int = 0  # output elements of a leaf module: what backward keeps
    calls: int = 0

    @property
    def other_ops(self) -> int:
        return sum(self.other.values())

    @property
    def out_shape(self) -> tuple[int, ...]:
        """The shape of the (first) tensor output."""
        return self.out_shapes[0] if self.out_shapes else ()

    @property
    def in_stride(self) -> Stride | None:
        return self.in_strides[0] if self.in_strides else None

    @property
    def out_stride(self) -> Stride | None:
        return self.out_strides[0] if self.out_strides else None


@dataclass
class Count:
    """The result of counting a module on one input."""

    input_shape: tuple[int, ...]
    modules: dict[str, ModuleCount]
    by_kind: dict[str, int]  # total per op kind (conv, linear and matmul in MACs, the rest element ops)
    unsupported: dict[str, int]  # ops with no rule: name -> times seen
    order: list[str] = field(default_factory=list)  # module paths in the order they first ran

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
        if not prefix:
            return list(self.modules.values())
        return [m for p, m in self.modules.items() if p == prefix or p.startswith(prefix + ".")]


def pyramid_level(stride: Stride | None) -> int | None:
    """P-level of a cumulative stride: 8 -> 3. None where there is no spatial map, the stride differs
    between dimensions, or it is not a power of two."""
    if not stride or len(set(stride)) != 1:
        return None
    s = stride[0]
    level = round(math.log2(s)) if s > 0 else None
    return level if level is not None and level >= 0 and 2.0**level == s else None


def stride_ratio(out: Stride | None, into: Stride | None) -> int | float | None:
    """A module's own stride: how much its output's cumulative stride exceeds its input's."""
    if not out or not into or len(set(out)) != 1 or len(set(into)) != 1:
        return None
    ratio = out[0] / into[0]
    return int(ratio) if float(ratio).is_integer() else round(ratio, 3)


def _tensors(value: object) -> Iterator[torch.Tensor]:
    """The tensors inside an argument or output: itself, or those in (nested) tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


class _StrideTracker:
    """Cumulative stride of every spatial tensor, propagated op by op (no entry: no spatial map)."""

    def __init__(self, ndim: int) -> None:
        self.ndim = ndim
        self.strides: WeakTensorKeyDictionary = WeakTensorKeyDictionary()

    def get(self, t: torch.Tensor) -> Stride | None:
        return self.strides.get(t) if isinstance(t, torch.Tensor) else None

    def propagate(self, packet, args: tuple, out: object) -> None:
        outs = [t for t in (out if isinstance(out, tuple | list) else (out,))
                if isinstance(t, torch.Tensor) and t.ndim == self.ndim and t not in self.strides]
        if not outs:
            return
        sources = [a for a in _tensors(args) if a.ndim == self.ndim and a in self.strides]
        if not sources:
            return
        factor = self._op_stride(packet, args)
        for t in outs:  # every map an op returns: both halves of a split, a pool's indices
            stride = self._stride_of(t, sources, factor)
            if stride:
                self.strides[t] = stride

    def _stride_of(self, t: torch.Tensor, sources: list[torch.Tensor],
                   factor: tuple[float, ...] | None) -> Stride | None:
        src, out_hw = sources[0], tuple(t.shape[2:])
        if factor is not None:
            return tuple(s * f for s, f in zip(self.strides[src], factor, strict=True))
        same = next((a for a in sources if tuple(a.shape[2:]) == out_hw), None)
        if same is not None:
            return self.strides[same]
        if all(n == 1 for n in out_hw):
            return None  # pooled to one value per channel: no spatial map any more
        # Resized by some other means (upsample, adaptive pool): the size ratio.
        stride = tuple(s * i / o for s, i, o in zip(self.strides[src], src.shape[2:], out_hw, strict=True) if o)
        return stride if len(stride) == len(out_hw) else None

    def _op_stride(self, packet, args: tuple) -> tuple[float, ...] | None:
        """The stride an op applies by its own arguments (convs and fixed-window pools); None otherwise."""
        spatial = self.ndim - 2
        if packet in _CONV_PACKETS:
            stride = _per_dim(args[3], spatial)
            return tuple(1 / s for s in stride) if len(args) > 6 and args[6] else stride
        if packet in _POOL_PACKETS:
            kernel = _per_dim(args[1], spatial)
            stride = args[2] if len(args) > 2 and args[2] else kernel
            return _per_dim(stride, spatial)
        if packet in _PAD_PACKETS:  # a border of padding moves no pixel: the grid keeps its stride
            return (1.0,) * spatial
        return None


def _per_dim(value: object, n: int) -> tuple[float, ...]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    return tuple(float(v) for v in (values * n if len(values) == 1 else values))


_CONV_PACKETS = {aten.convolution, *_packets("_convolution", "conv2d", "cudnn_convolution", "mkldnn_convolution")}
_PAD_PACKETS = set(_packets("constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
                            "replication_pad1d", "replication_pad2d", "replication_pad3d", "_pad_circular", "pad"))
_POOL_PACKETS = set(_packets("avg_pool2d", "max_pool2d", "max_pool2d_with_indices", "avg_pool1d", "max_pool1d",
                             "avg_pool3d", "max_pool3d_with_indices"))


class _OpCounter(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps __torch_dispatch__ in a dynamo guard that imports torch._dynamo (about a
        # second) on first use; this mode never runs under torch.compile, so it needs none.
        return False

    def __init__(self, scope: list[str], modules: dict[str, ModuleCount], by_kind: dict, unsupported: dict,
                 tracker: _StrideTracker):
        super().__init__()
        self.scope, self.modules, self.by_kind, self.unsupported = scope, modules, by_kind, unsupported
        self.tracker = tracker

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        rule = RULES.get(packet)
        first = args[0] if args else None
        if isinstance(first, list | tuple) and first:  # cat, stack: a list of tensors first
            first = first[0]
        on_meta = isinstance(first, torch.Tensor) and first.is_meta
        meta = rule.meta if rule is not None else FREE_META.get(packet)
        if meta is not None and (on_meta or str(kwargs.get("device")) == "meta") and not kwargs.get("out"):
            out = meta(func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        self.tracker.propagate(packet, args, out)
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


def model_device(model: nn.Module) -> torch.device:
    """Where a module's tensors live: its first parameter's or buffer's device; meta for a module with none."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("meta")


def count(model: nn.Module, input_shape: tuple[int, ...], example: object = None) -> Count:
    """Count `model` on an input of `input_shape` (N, C, H, W), or on `example` (a tensor, or the
    positional arguments as a tuple) when its forward takes something else.

    Runs on the `meta` device when the model lives there (build it with `device="meta"`):
    no tensor memory, no arithmetic. The model is put in eval mode and left so.
    """
    device = model_device(model)
    modules: dict[str, ModuleCount] = {}
    scope: list[str] = []
    order: list[str] = []
    handles = []
    inputs = example if example is not None else torch.empty(input_shape, device=device)
    first_input = next(_tensors(inputs), None)
    tracker = _StrideTracker(first_input.ndim if first_input is not None else 4)
    for path, module in model.named_modules():
        rec = ModuleCount(path, type(module).__name__, params=sum(p.numel() for p in module.parameters(False)))
        modules[path] = rec
        is_leaf = next(module.children(), None) is None
        handles.append(module.register_forward_pre_hook(_make_pre_hook(scope, order, rec, tracker)))
        handles.append(module.register_forward_hook(_make_post_hook(scope, rec, is_leaf, tracker)))
    by_kind: dict[str, int] = defaultdict(int)
    unsupported: dict[str, int] = defaultdict(int)
    model.eval()
    if first_input is not None and first_input.ndim >= 3:
        tracker.strides[first_input] = (1.0,) * (first_input.ndim - 2)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        with torch.no_grad(), _OpCounter(scope, modules, by_kind, unsupported, tracker):
            model(*args)
    finally:
        for h in handles:
            h.remove()
    shape = tuple(first_input.shape) if first_input is not None else tuple(input_shape)
    return Count(shape, modules, {k: by_kind.get(k, 0) for k in MAC_KINDS + OTHER_KINDS}, dict(unsupported), order)


def _make_pre_hook(scope: list[str], order: list[str], rec: ModuleCount, tracker: _StrideTracker):
    def hook(module: nn.Module, args: tuple) -> None:
        scope.append(rec.path)
        if not rec.calls:
            order.append(rec.path)
        rec.calls += 1
        rec.in_strides = [tracker.get(t) for t in _tensors(args)]
    return hook


def _make_post_hook(scope: list[str], rec: ModuleCount, is_leaf: bool, tracker: _StrideTracker):
    def hook(module: nn.Module, args: tuple, out: object) -> None:
        scope.pop()
        outs = list(_tensors(out))
        rec.out_shapes = [tuple(t.shape) for t in outs]
        rec.out_strides = [tracker.get(t) for t in outs]
        if is_leaf:
            rec.leaf_out_elems += sum(t.numel() for t in outs)
    return hook


# ---- train counting: forward, backward and optimizer step (opt-in; `count` above is untouched) ----
#
# The backward pass is counted the way the forward is: each backward op by its own formula. A
# convolution's grad input and grad weight each cost the forward's MACs (a depthwise conv's weight
# gradient is one MAC per output element per kernel tap, not `groups` times that), and only the
# outputs autograd asks for (`output_mask`) are computed: the first layer has no grad input.

LOSS_PATH = "(loss)"  # the pseudo-module of the surrogate loss, outside the model


def _conv_grad_split(args: tuple, out: object) -> tuple[int, int]:
    """(grad input, grad weight) MACs of `convolution_backward`: each equals the forward's MACs."""
    grad_out, x, weight, transposed, mask = args[0], args[1], args[2], args[7], args[10]
    forward = (x.numel() if transposed else grad_out.numel()) * math.prod(weight.shape[1:])
    return (forward if mask[0] else 0), (forward if mask[1] else 0)


def _conv_backward(func, args: tuple, kwargs: dict) -> tuple:
    grad_out, x, weight, bias_sizes, mask = args[0], args[1], args[2], args[3], args[10]
    return (_empty(x.shape, grad_out) if mask[0] else None, _empty(weight.shape, grad_out) if mask[1] else None,
            _empty(bias_sizes, grad_out) if mask[2] and bias_sizes is not None else None)


def _conv_backward_bytes(args: tuple, out: object, itemsize: int) -> int:
    # grad_output always; the input only for grad weight, the weight only for grad input.
    grad_out, x, weight, mask = args[0], args[1], args[2], args[10]
    read = [grad_out] + ([weight] if mask[0] else []) + ([x] if mask[1] else [])
    return _tensor_bytes(read, itemsize) + _tensor_bytes(out, itemsize)


def _norm_backward(channels_of: Callable[[tuple], tuple[int, ...]], mask_at: int):
    """Output shapes of a norm's backward: grad input like the input, grad weight and bias per channel."""
    def meta(func, args: tuple, kwargs: dict) -> tuple:
        x, mask, shape = args[1], args[mask_at], channels_of(args)
        return (_empty(x.shape, x) if mask[0] else None, _empty(shape, x) if mask[1] else None,
                _empty(shape, x) if mask[2] else None)
    return meta


def _like_arg(index: int):
    def meta(func, args: tuple, kwargs: dict) -> torch.Tensor:
        return _empty(args[index].shape, args[index])
    return meta


def _arg_elems(index: int):
    def elems(args: tuple, out: object) -> int:
        return _numel(args[index])
    return elems


def _nll_loss(func, args: tuple, kwargs: dict) -> tuple:
    x, reduction = args[0], args[3]
    return _empty(x.shape[:1] if reduction == 0 else (), x), _empty((), x)


def _upsample_backward(func, args: tuple, kwargs: dict) -> torch.Tensor:
    return _empty(args[2], args[0])


@functools.cache
def train_rules() -> dict[object, Rule]:
    """Rules for what only a train step runs (backward ops, the loss, the optimizer's update), taken
    before `RULES` by the train counter; built on first use, so `count` and its import are unchanged."""
    rules: dict[object, Rule] = {aten.convolution_backward: Rule("conv", _conv_backward_macs, _conv_backward)}
    for op in _packets("native_batch_norm_backward", "batch_norm_backward", "cudnn_batch_norm_backward"):
        rules[op] = Rule("norm", _arg_elems(1), _norm_backward(lambda a: (a[1].shape[1],), 9))
    for op in _packets("native_layer_norm_backward"):
        rules[op] = Rule("norm", _arg_elems(1), _norm_backward(lambda a: tuple(a[2]), 7))
    for op in _packets("native_group_norm_backward"):
        rules[op] = Rule("norm", _arg_elems(1), _norm_backward(lambda a: (a[1].shape[1],), 9))
    for op in _packets("threshold_backward", "silu_backward", "hardswish_backward", "sigmoid_backward",
                       "hardsigmoid_backward", "gelu_backward", "tanh_backward", "elu_backward", "leaky_relu_backward",
                       "hardtanh_backward", "softplus_backward", "mish_backward", "_log_softmax_backward_data",
                       "_softmax_backward_data"):
        rules[op] = Rule("act", _arg_elems(0), _like_arg(0))
    for op in _packets("_adaptive_avg_pool2d_backward", "avg_pool2d_backward", "max_pool2d_with_indices_backward",
                       "adaptive_max_pool2d_backward", "_adaptive_avg_pool3d_backward", "avg_pool3d_backward",
                       "max_pool3d_with_indices_backward"):
        rules[op] = Rule("pool", _arg_elems(1), _like_arg(1))
    for op in _packets("upsample_nearest2d_backward", "_upsample_nearest_exact2d_backward",
                       "upsample_bilinear2d_backward"):
        rules[op] = Rule("resize", _out_elems, _upsample_backward)
    for op in _packets("native_dropout_backward"):
        rules[op] = Rule("mul", _arg_elems(0), _like_arg(0))
    rules[aten.nll_loss_forward] = Rule("add", _arg_elems(1), _nll_loss)
    rules[aten.nll_loss_backward] = Rule("add", _arg_elems(1), _like_arg(1))
    for op in _packets("_softmax", "_log_softmax", "_safe_softmax"):  # the loss's: shapes here, not in Python meta
        rules[op] = Rule(RULES[op].kind, RULES[op].count, _like_arg(0))
    for op in _packets("addcmul", "addcmul_", "addcdiv", "addcdiv_", "lerp", "lerp_"):  # SGD momentum, AdamW
        rules[op] = Rule("mul", _out_elems, _like_input)
    for op in _packets("sqrt", "sqrt_", "rsqrt", "rsqrt_"):
        rules[op] = Rule("act", _out_elems, _like_input)
    return rules


def train_rule(packet) -> Rule | None:
    """The rule the train counter (and the breakdown) uses for an op."""
    return train_rules().get(packet) or RULES.get(packet)


@functools.cache
def _train_free() -> frozenset:
    # the optimizers' profiler ranges, besides the ops FREE lists
    return frozenset([*FREE, torch.ops.profiler._record_function_enter_new, torch.ops.profiler._record_function_exit])


def _conv_backward_macs(args: tuple, out: object) -> int:
    return sum(_conv_grad_split(args, out))


def _tensor_bytes(value: object, itemsize: int) -> int:
    """Bytes of the tensors in `value`, each once; floating tensors at `itemsize`, others at their own."""
    seen: set[int] = set()
    total = 0
    for t in _tensors(value):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * (itemsize if t.is_floating_point() else t.element_size())
    return total


def _bytes_moved(args: tuple, out: object, itemsize: int) -> int:
    """What an op reads (its tensor arguments) and writes (its outputs), assuming nothing is fused."""
    return _tensor_bytes(args, itemsize) + _tensor_bytes(out, itemsize)


@dataclass
class Tally:
    """Ops of one kind: `ops` MACs (conv, linear, matmul) or element ops, and the bytes they move."""

    ops: int = 0
    bytes: int = 0


@dataclass
class TrainModuleCount:
    """What one module does itself in a train step (children apart): forward and backward per op kind."""

    path: str
    type: str
    params: int = 0
    fwd: dict[str, Tally] = field(default_factory=dict)  # op kind (MAC_KINDS, OTHER_KINDS) -> tally
    bwd: dict[str, Tally] = field(default_factory=dict)
    bwd_input_macs: int = 0  # gradients with respect to activations
    bwd_weight_macs: int = 0  # gradients with respect to parameters

    @property
    def fwd_macs(self) -> int:
        return sum(t.ops for k, t in self.fwd.items() if k in MAC_KINDS)

    @property
    def bwd_macs(self) -> int:
        return sum(t.ops for k, t in self.bwd.items() if k in MAC_KINDS)

    @property
    def fwd_bytes(self) -> int:
        return sum(t.bytes for t in self.fwd.values())

    @property
    def bwd_bytes(self) -> int:
        return sum(t.bytes for t in self.bwd.values())

    @property
    def fwd_other_ops(self) -> int:
        return sum(t.ops for k, t in self.fwd.items() if k not in MAC_KINDS)

    @property
    def bwd_other_ops(self) -> int:
        return sum(t.ops for k, t in self.bwd.items() if k not in MAC_KINDS)


@dataclass
class TrainCount:
    """One train step counted op by op: forward, backward (by module) and optimizer step.

    `modules` holds every module of the model by path; `loss` is the surrogate loss outside it;
    `optimizer` the element-wise update per op kind (empty when no optimizer was counted).
    Bytes are what each op reads and writes, floating tensors at `dtype`, nothing fused.
    """

    input_shape: tuple[int, ...]
    dtype: str
    loss_kind: str  # "cross_entropy" (a classifier's [N, classes] output) or "sum" (of every output)
    modules: dict[str, TrainModuleCount]
    loss: TrainModuleCount
    optimizer_name: str = ""
    optimizer: dict[str, Tally] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)

    def records(self) -> list[TrainModuleCount]:
        """Every module's record, then the loss's."""
        return [*self.modules.values(), self.loss]

    def under(self, prefix: str) -> list[TrainModuleCount]:
        """The module at `prefix` and everything below it (a stage: `under("stage3")`)."""
        if not prefix:
            return list(self.modules.values())
        return [m for p, m in self.modules.items() if p == prefix or p.startswith(prefix + ".")]

    @property
    def fwd_macs(self) -> int:
        return sum(m.fwd_macs for m in self.records())

    @property
    def bwd_macs(self) -> int:
        return sum(m.bwd_macs for m in self.records())

    @property
    def bwd_input_macs(self) -> int:
        return sum(m.bwd_input_macs for m in self.records())

    @property
    def bwd_weight_macs(self) -> int:
        return sum(m.bwd_weight_macs for m in self.records())

    @property
    def step_macs(self) -> int:
        """Forward plus backward MACs: the optimizer step has none."""
        return self.fwd_macs + self.bwd_macs

    @property
    def fwd_bytes(self) -> int:
        return sum(m.fwd_bytes for m in self.records())

    @property
    def bwd_bytes(self) -> int:
        return sum(m.bwd_bytes for m in self.records())

    @property
    def optimizer_bytes(self) -> int:
        return sum(t.bytes for t in self.optimizer.values())

    @property
    def optimizer_ops(self) -> int:
        return sum(t.ops for t in self.optimizer.values())


class _TrainOpCounter(TorchDispatchMode):
    """Tallies every op into the record and direction `where` names (None: not counted)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # as `_OpCounter`: no torch._dynamo import

    def __init__(self, result: TrainCount, param_ids: set[int], itemsize: int) -> None:
        super().__init__()
        self.result, self.param_ids, self.itemsize = result, param_ids, itemsize
        self.where: tuple[str, str] | None = None  # (module path, "fwd" | "bwd" | "opt")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        rule = train_rule(packet)
        on_meta = any(isinstance(a, torch.Tensor) and a.is_meta for a in args[:2])
        if rule is not None and rule.meta is not None and on_meta and not kwargs.get("out"):
            out = rule.meta(func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        if self.where is None:
            return out
        if rule is None:
            if packet not in _train_free():
                self.result.unsupported[str(packet)] = self.result.unsupported.get(str(packet), 0) + 1
            return out
        self._tally(packet, rule, args, out)
        return out

    def _tally(self, packet, rule: Rule, args: tuple, out: object) -> None:
        path, direction = self.where
        n = rule.count(args, out)
        bytes_of = _conv_backward_bytes if packet is aten.convolution_backward else _bytes_moved
        moved = bytes_of(args, out, self.itemsize)
        if direction == "opt":
            tallies = self.result.optimizer
        else:
            record = self.result.loss if path == LOSS_PATH else self.result.modules[path]
            tallies = record.fwd if direction == "fwd" else record.bwd
        tally = tallies.setdefault(rule.kind, Tally())
        tally.ops += n
        tally.bytes += moved
        if direction == "bwd" and rule.kind in MAC_KINDS:
            grad_input, grad_weight = self._grad_split(packet, record, args, out, n)
            record.bwd_input_macs += grad_input
            record.bwd_weight_macs += grad_weight
        if packet is aten.convolution_backward and args[10][2]:  # the bias gradient: a sum over grad_output
            bias = record.bwd.setdefault("add", Tally())
            bias.ops += args[0].numel()

    def _grad_split(self, packet, record: TrainModuleCount, args: tuple, out: object, n: int) -> tuple[int, int]:
        if packet is aten.convolution_backward:
            return _conv_grad_split(args, out)
        # A product with a weight (or a view of one) among its operands makes a grad input;
        # one without, in a module that has weights, makes a grad weight (linear: x^T @ grad).
        uses_weight = any(id(t) in self.param_ids or id(t._base) in self.param_ids for t in _tensors(args))
        return (0, n) if record.params and not uses_weight else (n, 0)


def count_train(model: nn.Module, input_shape: tuple[int, ...], example: object = None, *, loss: str = "auto",
                optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None = None,
                dtype: torch.dtype = torch.float32) -> TrainCount:
    """Count one train step of `model` on an input of `input_shape` (or `example`) on the meta device:
    forward, a scalar loss, backward, and the optimizer step when `optimizer` (a factory taking the
    parameters) is given. No tensor memory, no arithmetic; the model's own tensors are not touched.
    A module that cannot run on meta (data-dependent code) is counted on copies of its tensors where
    it lives, which does the arithmetic of one step.

    `loss`: "cross_entropy" against class 0 (a classifier's [N, classes] output), "sum" of every
    output, or "auto" (cross-entropy for a 2-d output with more than one column, else the sum).
    The input needs no gradient, so the first layer computes none for it. Bytes count floating
    tensors at `dtype`. Backward ops are given to the module whose forward made them.
    """
    if loss not in _LOSSES:
        raise ValueError(f"loss {loss!r} is not known; use {', '.join(_LOSSES[:-1])} or {_LOSSES[-1]}")
    home = model_device(model)
    devices = [torch.device("meta")] + ([home] if home.type != "meta" else [])
    for i, device in enumerate(devices):
        try:
            return _count_train_on(device, model, input_shape, example, loss, optimizer, dtype)
        except Exception:
            if i == len(devices) - 1:
                raise
    raise AssertionError("unreachable")


_LOSSES = ("auto", "cross_entropy", "sum")


def _count_train_on(device: torch.device, model: nn.Module, input_shape: tuple[int, ...], example: object,
                    loss: str, optimizer: Callable | None, dtype: torch.dtype) -> TrainCount:
    from torch.func import functional_call

    from netprobe.scopes import BWD, FWD, module_scopes

    stand_ins = {name: _stand_in(t, device) for name, t in [*model.named_parameters(), *model.named_buffers()]}
    params = [t for name, t in stand_ins.items() if t.requires_grad]
    inputs = _to_device(example, device) if example is not None else torch.randn(input_shape, device=device)
    first = next(_tensors(inputs), None)
    modules = {path: TrainModuleCount(path, type(m).__name__, sum(p.numel() for p in m.parameters(False)))
               for path, m in model.named_modules()}
    result = TrainCount(tuple(first.shape) if first is not None else tuple(input_shape), str(dtype).split(".")[-1],
                        "", modules, TrainModuleCount(LOSS_PATH, "loss"))
    counter = _TrainOpCounter(result, {id(t) for t in stand_ins.values()}, torch.empty((), dtype=dtype).element_size())
    outer: list = []

    def enter(path: str, direction: str) -> None:
        if direction == FWD:
            outer.append(counter.where)
        counter.where = (path, direction)

    def exit(path: str, direction: str) -> None:
        if direction == FWD:
            counter.where = outer.pop()  # backward: the scope lasts until the next node's (gradient sums)

    was_training = model.training
    model.train()
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        with torch.enable_grad(), counter, module_scopes(model, enter, exit) as scopes:
            out = functional_call(model, stand_ins, args)
            counter.where = (LOSS_PATH, FWD)
            result.loss_kind, scalar = _surrogate_loss(out, loss)
            scopes.claim(scalar, LOSS_PATH, stop={t.grad_fn for t in _tensors(out)})
            counter.where = (LOSS_PATH, BWD)
            scalar.backward()
            if optimizer is not None:
                result.optimizer_name = _count_optimizer_step(optimizer, params, counter)
    finally:
        model.train(was_training)
    return result


def _stand_in(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """What the counted step uses for one of the model's tensors: an empty meta tensor, or a copy."""
    made = torch.empty(t.shape, dtype=t.dtype, device=device) if device.type == "meta" else t.detach().clone()
    return made.requires_grad_(t.requires_grad)


def _to_device(value: object, device: torch.device) -> object:
    from torch.utils._pytree import tree_map

    return tree_map(lambda v: v.to(device) if isinstance(v, torch.Tensor) else v, value)


def _surrogate_loss(out: object, loss: str) -> tuple[str, torch.Tensor]:
    """The scalar the counted backward starts from, and which it is."""
    import torch.nn.functional as F

    classifier = isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[1] > 1
    if loss == "cross_entropy" or (loss == "auto" and classifier):
        target = torch.zeros(out.shape[0], dtype=torch.long, device=out.device)
        return "cross_entropy", F.cross_entropy(out, target)
    outputs = [t for t in _tensors(out) if t.requires_grad]
    if not outputs:
        raise ValueError("the model's output needs no gradient (no parameter requires one): no backward to count")
    total = outputs[0].sum()
    for t in outputs[1:]:
        total = total + t.sum()
    return "sum", total


def _count_optimizer_step(factory: Callable, params: list[torch.Tensor], counter: _TrainOpCounter) -> str:
    """Count the second step of the optimizer (the first creates its state: momentum, moments)."""
    opt = factory(params)
    counter.where = None
    opt.step()
    counter.where = ("", "opt")
    opt.step()
    counter.where = None
    return type(opt).__name__


def flop_counter_reference(model: nn.Module, input_shape: tuple[int, ...], loss: str = "auto") -> dict:
    """What torch.utils.flop_counter.FlopCounterMode reports for the same train step (forward, the
    same surrogate loss, backward), on the meta device. Its convolution backward counts a grouped
    conv's weight gradient `groups` times over, so a depthwise net's step looks far more costly.

    Returns FLOPs (its unit: 2 per MAC) and the MACs they stand for, forward and whole step.
    """
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    def run(backward: bool) -> int:
        stand_ins = {name: torch.empty(t.shape, dtype=t.dtype, device="meta").requires_grad_(t.requires_grad)
                     for name, t in [*model.named_parameters(), *model.named_buffers()]}
        was_training = model.training
        model.train()
        try:
            with torch.enable_grad(), FlopCounterMode(display=False) as mode:
                out = functional_call(model, stand_ins, (torch.empty(input_shape, device="meta"),))
                if backward:
                    _surrogate_loss(out, loss)[1].backward()
        finally:
            model.train(was_training)
        return mode.get_total_flops()

    fwd, step = run(False), run(True)
    return {"source": "torch.utils.flop_counter.FlopCounterMode", "fwd_flops": fwd, "bwd_flops": step - fwd,
            "step_flops": step, "fwd_macs": fwd // 2, "step_macs": step // 2}
