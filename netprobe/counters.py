"""Other libraries' counts of the same model, mapped onto the native counter's op kinds.

Each counter runs on its own deep copy of a real (CPU) model, so nothing it attaches
(thop's buffers, hooks) stays behind; one that is missing or fails is reported, not raised.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from netprobe.counting import Count, count
from netprobe.errors import InputError

EXTERNAL = ("fvcore", "thop", "torchinfo")
CHOICES = ("native", *EXTERNAL, "all")

# How each counter counts, in one line: what the user needs to compare the totals.
CONVENTIONS = {
    "native": "MACs of conv + linear weights (no bias); BN, activations, SE multiply, adds and pooling "
              "counted apart as element ops",
    "fvcore": "one 'flop' per MAC (so MACs) for conv and linear, plus batch norm (2 per element) and "
              "adaptive pooling; activations, SE multiply and adds skipped",
    "thop": "conv and linear MACs, plus batch norm (4 per element) and pooling; activations count zero "
            "and functional ops (SE multiply, residual adds) are unseen",
    "torchinfo": "mult-adds of layers with weights: conv (incl. bias), linear, and batch norm as its "
                 "parameter count; parameter-free layers and functional ops count zero",
}

_KIND_BY_MODULE = {
    "Conv2d": "conv", "Linear": "linear", "BatchNorm2d": "norm", "AdaptiveAvgPool2d": "pool",
    "ReLU": "act", "SiLU": "act", "Hardswish": "act", "GELU": "act", "Sigmoid": "act", "Hardsigmoid": "act",
}
_KIND_BY_FVCORE_OP = {"conv": "conv", "linear": "linear", "addmm": "linear", "matmul": "linear",
                      "batch_norm": "norm", "adaptive_avg_pool2d": "pool"}


@dataclass
class CounterResult:
    """One library's total for the model, its per-kind split and how it counts."""

    name: str
    macs: int | None
    by_kind: dict[str, int] = field(default_factory=dict)
    convention: str = ""
    error: str | None = None

    def to_dict(self) -> dict:
        return {"macs": self.macs, "by_kind": self.by_kind, "convention": self.convention, "error": self.error}


def native_result(result: Count) -> CounterResult:
    return CounterResult("native", result.macs, {k: v for k, v in result.by_kind.items() if v},
                         CONVENTIONS["native"])


def _fvcore(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    kinds: dict[str, int] = defaultdict(int)
    for op, n in analysis.by_operator().items():
        kinds[_KIND_BY_FVCORE_OP.get(op, op)] += int(n)
    return int(analysis.total()), dict(kinds)


def _thop(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    from thop import profile

    macs, _, layers = profile(model, inputs=(x,), verbose=False, ret_layer_info=True)
    kinds: dict[str, int] = defaultdict(int)

    def walk(module: nn.Module, info: dict) -> None:  # thop's nested {name: (ops, params, children)}
        for name, (ops, _, children) in info.items():
            child = getattr(module, name)
            if children:
                walk(child, children)
            elif ops:
                kinds[_KIND_BY_MODULE.get(type(child).__name__, type(child).__name__)] += int(ops)

    walk(model, layers)
    return int(macs), dict(kinds)


def _torchinfo(model: nn.Module, x: torch.Tensor) -> tuple[int, dict[str, int]]:
    from torchinfo import summary

    stats = summary(model, input_data=x, verbose=0, device="cpu")
    kinds: dict[str, int] = defaultdict(int)
    for layer in stats.summary_list:
        if layer.is_leaf_layer and layer.macs:
            kinds[_KIND_BY_MODULE.get(layer.class_name, layer.class_name)] += int(layer.macs)
    return int(stats.total_mult_adds), dict(kinds)


_RUNNERS: dict[str, Callable[[nn.Module, torch.Tensor], tuple[int, dict[str, int]]]] = {
    "fvcore": _fvcore, "thop": _thop, "torchinfo": _torchinfo,
}


def run_counter(name: str, model: nn.Module, input_shape: tuple[int, ...]) -> CounterResult:
    """Count `model` with library `name` on a copy; a missing library or a failure is put in `error`."""
    model = copy.deepcopy(model).eval()
    x = torch.zeros(input_shape)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
            warnings.simplefilter("ignore")
            macs, kinds = _RUNNERS[name](model, x)
    except ImportError:
        return CounterResult(name, None, convention=CONVENTIONS[name],
                             error=f"not installed: pip install {name}")
    except Exception as exc:  # a counter that breaks on a model is a result to show, not a crash
        return CounterResult(name, None, convention=CONVENTIONS[name],
                             error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return CounterResult(name, macs, kinds, CONVENTIONS[name])


def counter_names(choices: list[str]) -> list[str]:
    """Which counters to run for the names asked for: native first, then those named ('all': every one)."""
    unknown = [c for c in choices if c not in CHOICES]
    if unknown:
        raise InputError(f"counter {unknown[0]!r} is not known; choose from {', '.join(CHOICES)}")
    if "all" in choices:
        return ["native", *EXTERNAL]
    return ["native", *[n for n in EXTERNAL if n in choices]] if choices else []


def reconcile(target, input_shape: tuple[int, ...], choices: list[str]) -> dict[str, CounterResult]:
    """The native count and each other counter asked for (`counter_names`), on the same model and input;
    the external ones on a real CPU copy (the user's own module is never touched)."""
    names = counter_names(choices)
    if not names:
        return {}
    results = {"native": native_result(count(target.meta_model(), input_shape))}
    external = [n for n in names if n != "native"]
    if external:
        model = target.user_module if target.user_module is not None else target.make("cpu")
        for name in external:
            results[name] = run_counter(name, model, input_shape)
    return results
