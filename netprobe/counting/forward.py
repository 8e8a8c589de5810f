"""`count(model, shape)`: every module's parameters, MACs, element ops, output shapes and strides."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from netprobe.counting.rules import FREE, FREE_META, MAC_KINDS, OTHER_KINDS, RULES
from netprobe.counting.strides import Stride, StrideTracker
from netprobe.tensors import model_device, tensors


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
    in_shape: tuple[int, ...] = ()  # the shape of the first tensor input of its last call
    out_strides: list[Stride | None] = field(default_factory=list)  # ... and of each tensor output
    leaf_out_elems: int = 0  # output elements of a leaf module: what backward keeps
    calls: int = 0
    # A parent's own work by when it happened: Count.calls index -> that stretch's counts (leaves keep none).
    own_at: dict[int, ModuleCount] = field(default_factory=dict)

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
    calls: list[str] = field(default_factory=list)  # the module path of every call, in the order they started
    output_type: str = ""  # the class of what the forward returned: Tensor, tuple, dict, NoneType, ...

    params = property(lambda self: sum(m.params for m in self.modules.values()), doc="Parameters, all modules.")
    macs = property(lambda self: sum(m.macs for m in self.modules.values()), doc="MACs, all modules.")
    other_ops = property(lambda self: sum(m.other_ops for m in self.modules.values()), doc="Element ops, all modules.")

    def under(self, prefix: str) -> list[ModuleCount]:
        """The module at `prefix` and everything below it."""
        if not prefix:
            return list(self.modules.values())
        return [m for p, m in self.modules.items() if p == prefix or p.startswith(prefix + ".")]



class _OpCounter(TorchDispatchMode):
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps __torch_dispatch__ in a dynamo guard that imports torch._dynamo (about a
        # second) on first use; this mode never runs under torch.compile, so it needs none.
        return False

    def __init__(self, scope: list[str], modules: dict[str, ModuleCount], by_kind: dict, unsupported: dict,
                 tracker: StrideTracker, calls: list[str], parents: set[str]):
        super().__init__()
        self.scope, self.modules, self.by_kind, self.unsupported = scope, modules, by_kind, unsupported
        self.tracker, self.calls, self.parents = tracker, calls, parents

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
        _add(record, rule.kind, n)
        if record.path in self.parents:  # a parent's own op: remember when, so rows can place it in time
            tick = len(self.calls)
            if tick not in record.own_at:
                record.own_at[tick] = ModuleCount(record.path, record.type)
            _add(record.own_at[tick], rule.kind, n)
        self.by_kind[rule.kind] += n
        return out


def _add(record: ModuleCount, kind: str, n: int) -> None:
    if kind in MAC_KINDS:
        record.macs += n
    else:
        record.other[kind] = record.other.get(kind, 0) + n


def count(model: nn.Module, input_shape: tuple[int, ...], example: object = None) -> Count:
    """Count `model` on an input of `input_shape` (N, C, H, W), or on `example` (a tensor, or the
    positional arguments as a tuple) when its forward takes something else.

    Runs on the `meta` device when the model lives there (build it with `device="meta"`):
    no tensor memory, no arithmetic. The model is put in eval mode and left so. An exception from the
    forward propagates unchanged; `failed_module(exc)` then names the innermost module that was running.
    """
    device = model_device(model)
    modules: dict[str, ModuleCount] = {}
    scope: list[str] = []
    order: list[str] = []
    calls: list[str] = []
    parents: set[str] = set()
    handles = []
    inputs = example if example is not None else torch.empty(input_shape, device=device)
    first_input = next(tensors(inputs), None)
    tracker = StrideTracker(first_input.ndim if first_input is not None else 4)
    for path, module in model.named_modules():
        rec = ModuleCount(path, type(module).__name__, params=sum(p.numel() for p in module.parameters(False)))
        modules[path] = rec
        is_leaf = next(module.children(), None) is None
        if not is_leaf:
            parents.add(path)
        handles.append(module.register_forward_pre_hook(_make_pre_hook(scope, order, calls, rec, tracker)))
        handles.append(module.register_forward_hook(_make_post_hook(scope, rec, is_leaf, tracker)))
    by_kind: dict[str, int] = defaultdict(int)
    unsupported: dict[str, int] = defaultdict(int)
    model.eval()
    if first_input is not None and first_input.ndim >= 3:
        tracker.strides[first_input] = (1.0,) * (first_input.ndim - 2)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        with torch.no_grad(), _OpCounter(scope, modules, by_kind, unsupported, tracker, calls, parents):
            output = model(*args)
    except Exception as exc:
        # The post-hooks of the modules an exception left never ran: the scope's top is where it was raised.
        with contextlib.suppress(AttributeError):  # an exception class with __slots__ takes no attribute
            exc.netprobe_module = (scope[-1], modules[scope[-1]].type) if scope else None
            exc.netprobe_input = modules[scope[-1]].in_shape if scope else ()
        raise
    finally:
        for h in handles:
            h.remove()
    shape = tuple(first_input.shape) if first_input is not None else tuple(input_shape)
    return Count(shape, modules, {k: by_kind.get(k, 0) for k in MAC_KINDS + OTHER_KINDS}, dict(unsupported), order,
                 calls, type(output).__name__)


def failed_module(exc: BaseException) -> tuple[str, str] | None:
    """The innermost module (path, class name) running when `count` saw `exc` raised; None if not known."""
    return getattr(exc, "netprobe_module", None)


def failed_input(exc: BaseException) -> tuple[int, ...]:
    """The shape of the first tensor the module of `failed_module(exc)` was given; () if not known."""
    return getattr(exc, "netprobe_input", ())


def _make_pre_hook(scope: list[str], order: list[str], calls: list[str], rec: ModuleCount, tracker: StrideTracker):
    def hook(module: nn.Module, args: tuple) -> None:
        scope.append(rec.path)
        calls.append(rec.path)
        if not rec.calls:
            order.append(rec.path)
        rec.calls += 1
        inputs = list(tensors(args))
        rec.in_strides = [tracker.get(t) for t in inputs]
        rec.in_shape = tuple(inputs[0].shape) if inputs else ()
    return hook


def _make_post_hook(scope: list[str], rec: ModuleCount, is_leaf: bool, tracker: StrideTracker):
    def hook(module: nn.Module, args: tuple, out: object) -> None:
        scope.pop()
        outs = list(tensors(out))
        rec.out_shapes = [tuple(t.shape) for t in outs]
        rec.out_strides = [tracker.get(t) for t in outs]
        if is_leaf:
            rec.leaf_out_elems += sum(t.numel() for t in outs)
    return hook

