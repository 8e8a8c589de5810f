"""Op kinds a user can reason about (depthwise conv, batch norm, squeeze-excitation, ...), for any module.

An op's kind comes from where it ran and what it was: inside a squeeze-excitation module,
everything is SE (its pool, convs, gate and multiply together); inside a conv, the conv's
shape decides (depthwise: groups == in_channels; pointwise: 1x1; else dense k x k); inside
other known layers (linear, norms, activations, pools, drop path), the layer; a block's own
ops (a residual add, a functional activation) by the op's counted kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

from netprobe.counting import LOSS_PATH

OPTIMIZER_PATH = "(optimizer)"  # the pseudo-module of the optimizer step

KIND_LABELS = {
    "depthwise_conv": "depthwise conv",
    "dense_conv": "dense k×k conv",
    "pointwise_conv": "pointwise 1×1 conv",
    "linear": "linear",
    "batch_norm": "batch norm",
    "activation": "activation",
    "squeeze_excite": "squeeze-excitation",
    "residual": "residual add / drop path",
    "pooling": "pooling",
    "loss": "loss",
    "optimizer": "optimizer",
    "other": "other",
}
KINDS = tuple(KIND_LABELS)

_SE_NAME = re.compile(r"squeeze.?excit|^(effective)?se(module|layer|block)?$", re.IGNORECASE)
_DROP_PATH_NAME = re.compile(r"drop.?path|stochastic.?depth", re.IGNORECASE)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_ACTS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.GELU, nn.Tanh, nn.LeakyReLU,
         nn.ELU, nn.Mish, nn.PReLU, nn.Softplus, nn.Hardtanh, nn.SELU, nn.CELU, nn.Softmax, nn.LogSoftmax)
_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
_POOLS = (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
          nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd)

# A module's own ops that no layer rule claims, by the counter's op kind.
_BY_COUNTED_KIND = {"conv": "dense_conv", "linear": "linear", "matmul": "linear", "norm": "batch_norm",
                    "act": "activation", "add": "residual", "pool": "pooling"}


def conv_kind(conv: nn.Module) -> str:
    """depthwise_conv (one filter per input channel), pointwise_conv (1x1) or dense_conv (k x k)."""
    if conv.groups > 1 and conv.groups == conv.in_channels:
        return "depthwise_conv"
    return "pointwise_conv" if all(k == 1 for k in conv.kernel_size) else "dense_conv"


# Layer rules as data: (module types, kind or a function of the module).
LAYER_KINDS: list[tuple[tuple[type, ...], str | Callable[[nn.Module], str]]] = [
    (_CONVS, conv_kind),
    ((nn.Linear,), "linear"),
    (_NORMS, "batch_norm"),
    (_ACTS, "activation"),
    (_POOLS, "pooling"),
    ((nn.Dropout, nn.Dropout2d), "other"),
]


def layer_kind(module: nn.Module) -> str | None:
    """The kind of everything a known layer does; None for a container or an unknown module."""
    for types, kind in LAYER_KINDS:
        if isinstance(module, types):
            return kind if isinstance(kind, str) else kind(module)
    return "residual" if _DROP_PATH_NAME.search(type(module).__name__) else None


def is_squeeze_excite(module: nn.Module) -> bool:
    """By name (SqueezeExcite, SqueezeExcitation, SEModule, ...) or by shape: exactly two weighted
    layers inside, 1x1 convs or linears, reducing C -> s and expanding s -> C back (s < C)."""
    if _SE_NAME.search(type(module).__name__):
        return True
    weighted = []
    for m in module.modules():  # stops at a third weighted layer: a stage or a whole network is no SE
        if m is not module and next(m.parameters(False), None) is not None:
            weighted.append(m)
            if len(weighted) > 2:
                return False
    if len(weighted) != 2 or not all(_is_channel_map(m) for m in weighted):
        return False
    (c_in, s), (s_in, c_out) = (_channels(m) for m in weighted)
    return c_in == c_out and s == s_in and s < c_in


def _is_channel_map(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (isinstance(m, _CONVS) and all(k == 1 for k in m.kernel_size)
                                        and m.groups == 1)


def _channels(m: nn.Module) -> tuple[int, int]:
    return (m.in_features, m.out_features) if isinstance(m, nn.Linear) else (m.in_channels, m.out_channels)


class KindClassifier:
    """The kind of an op, from the path of the module that ran it and its counted kind."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = dict(model.named_modules())
        self._in_se: dict[str, bool] = {}

    def kind(self, path: str, counted_kind: str | None) -> str:
        if path == LOSS_PATH:
            return "loss"
        if path == OPTIMIZER_PATH:
            return "optimizer"
        if path not in self.modules:
            return "other"
        if self._under_se(path):
            return "squeeze_excite"
        return layer_kind(self.modules[path]) or _BY_COUNTED_KIND.get(counted_kind or "", "other")

    def _under_se(self, path: str) -> bool:
        if path not in self._in_se:
            parent = path.rpartition(".")[0] if "." in path else ("" if path else None)
            self._in_se[path] = is_squeeze_excite(self.modules[path]) or (
                parent is not None and parent in self.modules and self._under_se(parent))
        return self._in_se[path]


def first_component(path: str) -> str | None:
    """The default stage of a module: the first component of its path (`stage3.1.body.dw` -> `stage3`);
    None for the root and for the loss and optimizer, which belong to no stage."""
    if not path or path in (LOSS_PATH, OPTIMIZER_PATH):
        return None
    return path.split(".", 1)[0]
