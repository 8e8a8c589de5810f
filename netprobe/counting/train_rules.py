"""Rules for what only a train step runs: backward ops, the loss, the optimizer's update.

The backward pass is counted the way the forward is: each backward op by its own formula. A
convolution's grad input and grad weight each cost the forward's MACs (a depthwise conv's weight
gradient is one MAC per output element per kernel tap, not `groups` times that), and only the
outputs autograd asks for (`output_mask`) are computed: the first layer has no grad input.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from netprobe.counting.rules import FREE, RULES, Rule, aten, empty, like_input, numel, out_elems, packets
from netprobe.tensors import tensors

LOSS_PATH = "(loss)"  # the pseudo-module of the surrogate loss, outside the model


def conv_grad_split(args: tuple, out: object) -> tuple[int, int]:
    """(grad input, grad weight) MACs of `convolution_backward`: each equals the forward's MACs."""
    grad_out, x, weight, transposed, mask = args[0], args[1], args[2], args[7], args[10]
    forward = (x.numel() if transposed else grad_out.numel()) * math.prod(weight.shape[1:])
    return (forward if mask[0] else 0), (forward if mask[1] else 0)


def _conv_backward(func, args: tuple, kwargs: dict) -> tuple:
    grad_out, x, weight, bias_sizes, mask = args[0], args[1], args[2], args[3], args[10]
    return (empty(x.shape, grad_out) if mask[0] else None, empty(weight.shape, grad_out) if mask[1] else None,
            empty(bias_sizes, grad_out) if mask[2] and bias_sizes is not None else None)


def conv_backward_bytes(args: tuple, out: object, itemsize: int) -> int:
    # grad_output always; the input only for grad weight, the weight only for grad input.
    grad_out, x, weight, mask = args[0], args[1], args[2], args[10]
    read = [grad_out] + ([weight] if mask[0] else []) + ([x] if mask[1] else [])
    return _tensor_bytes(read, itemsize) + _tensor_bytes(out, itemsize)


def _norm_backward(channels_of: Callable[[tuple], tuple[int, ...]], mask_at: int):
    """Output shapes of a norm's backward: grad input like the input, grad weight and bias per channel."""
    def meta(func, args: tuple, kwargs: dict) -> tuple:
        x, mask, shape = args[1], args[mask_at], channels_of(args)
        return (empty(x.shape, x) if mask[0] else None, empty(shape, x) if mask[1] else None,
                empty(shape, x) if mask[2] else None)
    return meta


def _like_arg(index: int):
    def meta(func, args: tuple, kwargs: dict) -> torch.Tensor:
        return empty(args[index].shape, args[index])
    return meta


def _arg_elems(index: int):
    def elems(args: tuple, out: object) -> int:
        return numel(args[index])
    return elems


def _nll_loss(func, args: tuple, kwargs: dict) -> tuple:
    x, reduction = args[0], args[3]
    return empty(x.shape[:1] if reduction == 0 else (), x), empty((), x)


def _upsample_backward(func, args: tuple, kwargs: dict) -> torch.Tensor:
    return empty(args[2], args[0])


@functools.cache
def train_rules() -> dict[object, Rule]:
    """Rules for what only a train step runs (backward ops, the loss, the optimizer's update), taken
    before `RULES` by the train counter; built on first use, so `count` and its import are unchanged."""
    rules: dict[object, Rule] = {aten.convolution_backward: Rule("conv", _conv_backward_macs, _conv_backward)}
    for op in packets("native_batch_norm_backward", "batch_norm_backward", "cudnn_batch_norm_backward"):
        rules[op] = Rule("norm", _arg_elems(1), _norm_backward(lambda a: (a[1].shape[1],), 9))
    for op in packets("native_layer_norm_backward"):
        rules[op] = Rule("norm", _arg_elems(1), _norm_backward(lambda a: tuple(a[2]), 7))
    for op in packets("native_group_norm_backward"):
        rules[op] = Rule("norm", _arg_elems(1), _norm_backward(lambda a: (a[1].shape[1],), 9))
    for op in packets("threshold_backward", "silu_backward", "hardswish_backward", "sigmoid_backward",
                       "hardsigmoid_backward", "gelu_backward", "tanh_backward", "elu_backward", "leaky_relu_backward",
                       "hardtanh_backward", "softplus_backward", "mish_backward", "_log_softmax_backward_data",
                       "_softmax_backward_data"):
        rules[op] = Rule("act", _arg_elems(0), _like_arg(0))
    for op in packets("_adaptive_avg_pool2d_backward", "avg_pool2d_backward", "max_pool2d_with_indices_backward",
                       "adaptive_max_pool2d_backward", "_adaptive_avg_pool3d_backward", "avg_pool3d_backward",
                       "max_pool3d_with_indices_backward"):
        rules[op] = Rule("pool", _arg_elems(1), _like_arg(1))
    for op in packets("upsample_nearest2d_backward", "_upsample_nearest_exact2d_backward",
                       "upsample_bilinear2d_backward"):
        rules[op] = Rule("resize", out_elems, _upsample_backward)
    for op in packets("native_dropout_backward"):
        rules[op] = Rule("mul", _arg_elems(0), _like_arg(0))
    rules[aten.nll_loss_forward] = Rule("add", _arg_elems(1), _nll_loss)
    rules[aten.nll_loss_backward] = Rule("add", _arg_elems(1), _like_arg(1))
    for op in packets("_softmax", "_log_softmax", "_safe_softmax"):  # the loss's: shapes here, not in Python meta
        rules[op] = Rule(RULES[op].kind, RULES[op].count, _like_arg(0))
    for op in packets("addcmul", "addcmul_", "addcdiv", "addcdiv_", "lerp", "lerp_"):  # SGD momentum, AdamW
        rules[op] = Rule("mul", out_elems, like_input)
    for op in packets("sqrt", "sqrt_", "rsqrt", "rsqrt_"):
        rules[op] = Rule("act", out_elems, like_input)
    return rules


def train_rule(packet) -> Rule | None:
    """The rule the train counter (and the breakdown) uses for an op."""
    return train_rules().get(packet) or RULES.get(packet)


@functools.cache
def train_free() -> frozenset:
    # the optimizers' profiler ranges, besides the ops FREE lists
    return frozenset([*FREE, torch.ops.profiler._record_function_enter_new, torch.ops.profiler._record_function_exit])


def _conv_backward_macs(args: tuple, out: object) -> int:
    return sum(conv_grad_split(args, out))


def _tensor_bytes(value: object, itemsize: int) -> int:
    """Bytes of the tensors in `value`, each once; floating tensors at `itemsize`, others at their own."""
    seen: set[int] = set()
    total = 0
    for t in tensors(value):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * (itemsize if t.is_floating_point() else t.element_size())
    return total


def bytes_moved(args: tuple, out: object, itemsize: int) -> int:
    """What an op reads (its tensor arguments) and writes (its outputs), assuming nothing is fused."""
    return _tensor_bytes(args, itemsize) + _tensor_bytes(out, itemsize)


