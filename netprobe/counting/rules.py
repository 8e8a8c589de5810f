"""Counting rules as data: op -> (kind, count, output shape on meta). One place per op.

MACs (multiply-accumulates) come from convolutions and matrix products only; every other op with a
rule is an element op of its kind. `FREE` lists ops that move, create or describe data without arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from netprobe.defaults import MAC_KINDS, OTHER_KINDS  # noqa: F401  (re-exported: the counter's kinds)

aten = torch.ops.aten



def numel(t: object) -> int:
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


def _native_mha_macs(args: tuple, out: object) -> int:
    # nn.MultiheadAttention's fused CPU/CUDA path: (query, key, value, embed_dim, num_heads, ...), batch first.
    q, k = args[0], args[1]
    batch, length, dim = q.shape
    source = k.shape[1]
    projections = batch * dim * dim * (2 * length + 2 * source)  # Q and output from L rows, K and V from S
    return projections + batch * length * source * 2 * dim  # Q K^T and (L x S) V over all heads


def out_elems(args: tuple, out: object) -> int:
    return numel(out[0] if isinstance(out, tuple) else out)


def _in_elems(args: tuple, out: object) -> int:
    return numel(args[0])


# Output shapes of the ops whose meta kernels are written in Python: computing them here keeps
# counting free of torch._dynamo, which those kernels import (about a second of start-up).
def empty(shape, like: torch.Tensor) -> torch.Tensor:
    # torch.empty, not empty_like: the latter's meta path is Python too (and imports sympy).
    return torch.empty(tuple(shape), dtype=like.dtype, device=like.device)


def like_input(func, args: tuple, kwargs: dict) -> torch.Tensor:
    return args[0] if func._schema.name.endswith("_") else empty(args[0].shape, args[0])


def _broadcast(func, args: tuple, kwargs: dict) -> torch.Tensor:
    shapes = [tuple(a.shape) for a in args[:2] if isinstance(a, torch.Tensor)]
    shape = _broadcast_shape(shapes) if len(shapes) > 1 else shapes[0]
    if func._schema.name.endswith("_"):
        if shape != shapes[0]:  # in place: the other operand must broadcast to the first's shape
            raise RuntimeError(f"output with shape {list(shapes[0])} doesn't match the broadcast shape {list(shape)}")
        return args[0]
    return empty(shape, args[0])


def _broadcast_shape(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    # Plain numpy-style broadcasting (torch.broadcast_shapes would import sympy), refusing what torch refuses.
    if len(shapes) == 2 and shapes[0] == shapes[1]:  # the common case: a residual add, a gate of the same shape
        return shapes[0]
    ndim = max(len(s) for s in shapes)
    padded = [(1,) * (ndim - len(s)) + s for s in shapes]
    out = []
    for k, dims in enumerate(zip(*padded, strict=True)):
        sizes = set(dims) - {1}
        if len(sizes) > 1:
            raise RuntimeError(f"The size of tensor a ({dims[0]}) must match the size of tensor b ({dims[1]}) at "
                               f"non-singleton dimension {k}")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _conv(func, args: tuple, kwargs: dict) -> torch.Tensor:
    # aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    x, w, _, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    takes = w.shape[0] if transposed else w.shape[1] * groups
    if x.shape[1] != takes:  # what the real kernel refuses, refused on meta too (with torch's words)
        raise RuntimeError(f"Given groups={groups}, weight of size {list(w.shape)}, expected input{list(x.shape)} "
                           f"to have {takes} channels, but got {x.shape[1]} channels instead")
    if transposed:
        spatial = [(n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, d, op
                   in zip(x.shape[2:], w.shape[2:], stride, padding, dilation, output_padding, strict=True)]
        return empty((x.shape[0], w.shape[1] * groups, *spatial), x)
    padded = [n + 2 * p for n, p in zip(x.shape[2:], padding, strict=True)]
    spans = [d * (k - 1) + 1 for k, d in zip(w.shape[2:], dilation, strict=True)]
    if any(n < k for n, k in zip(padded, spans, strict=True)):  # the real kernel refuses a map smaller than it
        raise RuntimeError(f"Calculated padded input size per channel: ({' x '.join(map(str, padded))}). Kernel "
                           f"size: ({' x '.join(map(str, spans))}). Kernel size can't be greater than actual "
                           "input size")
    spatial = [(n - k) // s + 1 for n, k, s in zip(padded, spans, stride, strict=True)]
    return empty((x.shape[0], w.shape[0], *spatial), x)


def _batch_norm(func, args: tuple, kwargs: dict) -> tuple:
    x = args[0]
    stats = [empty((0,), x) for _ in func._schema.returns[1:]]
    return (empty(x.shape, x), *stats)


def _mean(func, args: tuple, kwargs: dict) -> torch.Tensor:
    x, dims = args[0], args[1] if len(args) > 1 else kwargs.get("dim")
    keepdim = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    dims = {d % x.ndim for d in dims} if dims else set(range(x.ndim))
    shape = [1 if i in dims else n for i, n in enumerate(x.shape) if keepdim or i not in dims]
    return empty(shape, x)


def _sum(func, args: tuple, kwargs: dict) -> torch.Tensor:
    """A floating sum's output as `_mean`'s (its Python meta kernel imports sympy); any other, its own."""
    if set(kwargs) - {"dim", "keepdim"} or not args[0].is_floating_point() or (len(args) > 3 and args[3] is not None):
        return func(*args, **kwargs)
    return _mean(func, args, kwargs)


def _adaptive_pool(func, args: tuple, kwargs: dict) -> torch.Tensor:
    x = args[0]
    return empty((*x.shape[:-2], *args[1]), x)


def _matmul(func, args: tuple, kwargs: dict) -> torch.Tensor:
    a, b = args[-2], args[-1]
    if a.shape[1] != b.shape[0]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({a.shape[0]}x{a.shape[1]} and "
                           f"{b.shape[0]}x{b.shape[1]})")
    return empty((a.shape[0], b.shape[1]), a)


def _batched_matmul(func, args: tuple, kwargs: dict) -> torch.Tensor:
    a, b = args[-2], args[-1]
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise RuntimeError(f"batch1 and batch2 shapes cannot be multiplied ({'x'.join(map(str, a.shape))} and "
                           f"{'x'.join(map(str, b.shape))})")
    return empty((a.shape[0], a.shape[1], b.shape[2]), a)


def _cat(func, args: tuple, kwargs: dict) -> torch.Tensor:
    tensors = [t for t in args[0] if not (t.ndim == 1 and t.shape[0] == 0)]  # cat skips legacy empty tensors
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    first = tensors[0]
    dim %= first.ndim
    for k, t in enumerate(tensors[1:], start=1):  # what the real kernel refuses, refused on meta too
        if t.ndim != first.ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {first.ndim} and {t.ndim}")
        for d in range(first.ndim):
            if d != dim and t.shape[d] != first.shape[d]:
                raise RuntimeError(f"Sizes of tensors must match except in dimension {dim}. Expected size "
                                   f"{first.shape[d]} but got size {t.shape[d]} for tensor number {k} in the list.")
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return empty(shape, first)


def _stack(func, args: tuple, kwargs: dict) -> torch.Tensor:
    tensors = args[0]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    first = tensors[0]
    dim %= first.ndim + 1
    for k, t in enumerate(tensors[1:], start=1):
        if t.shape != first.shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(first.shape)} at entry 0 "
                               f"and {list(t.shape)} at entry {k}")
    shape = list(first.shape)
    shape.insert(dim, len(tensors))
    return empty(shape, first)


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


def packets(*names: str) -> list:
    return [getattr(aten, n) for n in names if hasattr(aten, n)]


# Counting rules as data: op -> Rule. One place per op.
RULES: dict[object, Rule] = {}
RULES[aten.convolution] = Rule("conv", _conv_macs, _conv)
for _op in packets("_convolution", "conv2d", "cudnn_convolution", "mkldnn_convolution", "cudnn_convolution_transpose",
                    "_slow_conv2d_forward", "slow_conv_transpose2d", "_conv_depthwise2d"):
    RULES[_op] = Rule("conv", _conv_macs)
for _op in packets("addmm", "mm"):
    RULES[_op] = Rule("linear", _mm_macs, _matmul)
for _op in packets("bmm", "baddbmm"):
    RULES[_op] = Rule("matmul", _bmm_macs, _batched_matmul)
for _op in packets("mv", "addmv", "dot", "vdot"):
    RULES[_op] = Rule("matmul", _mv_macs)
for _op in packets("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention"):
    RULES[_op] = Rule("matmul", _attention_macs)
for _op in packets("_native_multi_head_attention"):  # its in and out projections are inside: counted as matmul
    RULES[_op] = Rule("matmul", _native_mha_macs)
for _op in packets("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                    "_batch_norm_with_update", "_batch_norm_no_update", "cudnn_batch_norm"):
    RULES[_op] = Rule("norm", out_elems, _batch_norm)
for _op in packets("native_layer_norm", "native_group_norm", "_fused_rms_norm"):
    RULES[_op] = Rule("norm", out_elems)
for _op in packets("relu", "relu_", "silu", "silu_", "hardswish", "hardswish_", "gelu", "gelu_", "sigmoid",
                    "sigmoid_", "hardsigmoid", "hardsigmoid_", "hardtanh", "hardtanh_", "clamp_min", "clamp_min_",
                    "threshold", "leaky_relu", "leaky_relu_", "elu", "elu_", "mish", "mish_", "tanh", "tanh_",
                    "relu6", "prelu", "_prelu_kernel", "softplus", "clamp", "clamp_", "exp", "exp_"):
    RULES[_op] = Rule("act", out_elems, like_input)
for _op in packets("_softmax", "_log_softmax", "_safe_softmax"):
    RULES[_op] = Rule("act", out_elems)
for _op in packets("mul", "mul_", "div", "div_"):
    RULES[_op] = Rule("mul", out_elems, _broadcast)
for _op in packets("add", "add_", "sub", "sub_", "rsub"):
    RULES[_op] = Rule("add", out_elems, _broadcast)
RULES[aten.sum] = Rule("add", _in_elems, _sum)
RULES[aten.mean] = Rule("pool", _in_elems, _mean)
for _op in packets("_adaptive_avg_pool2d", "adaptive_avg_pool2d"):
    RULES[_op] = Rule("pool", _in_elems, _adaptive_pool)
for _op in packets("avg_pool2d", "max_pool2d", "max_pool2d_with_indices", "adaptive_max_pool2d", "amax",
                    "_adaptive_avg_pool3d", "avg_pool3d", "max_pool3d_with_indices", "avg_pool1d", "max_pool1d"):
    RULES[_op] = Rule("pool", _in_elems)
for _op in packets("upsample_nearest2d", "_upsample_nearest_exact2d", "upsample_bilinear2d", "upsample_bicubic2d",
                    "_upsample_bilinear2d_aa", "upsample_nearest1d", "upsample_linear1d", "upsample_nearest3d",
                    "upsample_trilinear3d", "pixel_shuffle", "pixel_unshuffle"):
    RULES[_op] = Rule("resize", out_elems)
RULES[aten.cat] = Rule("concat", out_elems, _cat)
RULES[aten.stack] = Rule("concat", out_elems, _stack)
for _op in packets("constant_pad_nd", "reflection_pad2d", "replication_pad2d"):
    RULES[_op] = Rule("concat", out_elems)
# Output shapes of free ops whose meta kernels are Python (see empty): op -> (op, args, kwargs) -> output.
def _dropout(func, args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """native_dropout's output and mask, laid out as its input (a dense one) is, as its meta kernel does."""
    x = args[0]
    strides = x.stride() if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last) else None
    made = [torch.empty_strided(x.shape, strides, dtype=dtype, device=x.device) if strides is not None else
            torch.empty(x.shape, dtype=dtype, device=x.device) for dtype in (x.dtype, torch.bool)]
    return made[0], made[1]


def _empty_like(func, args: tuple, kwargs: dict) -> torch.Tensor:
    """empty_like (zeros_like, ones_like: no values on meta) of a dense tensor, its layout kept
    (preserve_format), as their meta kernels make it."""
    x, fmt = args[0], kwargs.get("memory_format")
    rest = set(kwargs) - {"dtype", "memory_format", "device", "layout", "pin_memory"}
    dense = x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)
    if rest or not dense or fmt not in (None, torch.preserve_format) or kwargs.get("device") not in (None, x.device):
        return func(*args, **kwargs)
    return torch.empty_strided(x.shape, x.stride(), dtype=kwargs.get("dtype") or x.dtype, device=x.device)


FREE_META = {aten.arange: _arange, aten.native_dropout: _dropout,
             **{op: _empty_like for op in (aten.empty_like, aten.zeros_like, aten.ones_like)}}
# Ops that move, create or describe data without arithmetic.
FREE = set(packets(
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

