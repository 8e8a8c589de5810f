"""`count_train(model, shape)`: one train step counted op by op on meta: forward, backward, optimizer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from netprobe.counting.forward import model_device
from netprobe.counting.rules import FREE_META, MAC_KINDS, Rule, aten
from netprobe.counting.train_rules import (
    LOSS_PATH,
    bytes_moved,
    conv_backward_bytes,
    conv_grad_split,
    train_free,
    train_rule,
)
from netprobe.scopes import BWD, FWD, module_scopes
from netprobe.tensors import tensors


@dataclass
class Tally:
    """Ops of one kind: `ops` MACs (conv, linear, matmul) or element ops, and the bytes they move."""

    ops: int = 0
    bytes: int = 0
    calls: int = 0  # ops dispatched: each at least one kernel launch on a GPU


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

    fwd_macs = property(lambda self: _tallied(self.fwd, "ops", True), doc="Forward MACs (conv, linear, matmul).")
    bwd_macs = property(lambda self: _tallied(self.bwd, "ops", True), doc="Backward MACs.")
    fwd_bytes = property(lambda self: _tallied(self.fwd, "bytes"), doc="Bytes the forward's ops move.")
    bwd_bytes = property(lambda self: _tallied(self.bwd, "bytes"), doc="Bytes the backward's ops move.")
    fwd_other_ops = property(lambda self: _tallied(self.fwd, "ops", False), doc="Forward element ops.")
    bwd_other_ops = property(lambda self: _tallied(self.bwd, "ops", False), doc="Backward element ops.")


def _tallied(tallies: dict[str, Tally], field_name: str, macs: bool | None = None) -> int:
    """A field of the tallies summed: over the MAC kinds (`macs` True), the other kinds (False), or all."""
    return sum(getattr(t, field_name) for k, t in tallies.items() if macs is None or (k in MAC_KINDS) == macs)


def _over_records(name: str, doc: str) -> property:
    """A TrainCount property: the records' (every module's and the loss's) `name`, summed."""
    return property(lambda self: sum(getattr(m, name) for m in self.records()), doc=doc)


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

    fwd_macs = _over_records("fwd_macs", "Forward MACs of the step, loss included.")
    bwd_macs = _over_records("bwd_macs", "Backward MACs: grad inputs and grad weights.")
    bwd_input_macs = _over_records("bwd_input_macs", "Backward MACs of gradients with respect to activations.")
    bwd_weight_macs = _over_records("bwd_weight_macs", "Backward MACs of gradients with respect to parameters.")
    fwd_bytes = _over_records("fwd_bytes", "Bytes the forward's ops move.")
    bwd_bytes = _over_records("bwd_bytes", "Bytes the backward's ops move.")
    optimizer_bytes = property(lambda self: _tallied(self.optimizer, "bytes"), doc="Bytes the update moves.")
    optimizer_ops = property(lambda self: _tallied(self.optimizer, "ops"), doc="Element ops of the update.")

    @property
    def step_macs(self) -> int:
        """Forward plus backward MACs: the optimizer step has none."""
        return self.fwd_macs + self.bwd_macs


class _TrainOpCounter(TorchDispatchMode):
    """Tallies every op into the record and direction `where` names (None: not counted)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # as `_OpCounter`: no torch._dynamo import

    def __init__(self, result: TrainCount, param_ids: set[int], itemsize: int) -> None:
        super().__init__()
        self.result, self.param_ids, self.itemsize = result, param_ids, itemsize
        self.where: tuple[str, str] | None = None  # (module path, "fwd" | "bwd" | "opt")
        self.weight = 1  # how many parameters an op of the optimizer's stands for (see _count_optimizer_step)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket
        rule = train_rule(packet)
        on_meta = any(isinstance(a, torch.Tensor) and a.is_meta for a in args[:2])
        meta = rule.meta if rule is not None else FREE_META.get(packet)  # dropout: a Python meta kernel (sympy)
        if meta is not None and on_meta and not kwargs.get("out"):
            out = meta(func, args, kwargs)
        else:
            out = func(*args, **kwargs)
        if self.where is None:
            return out
        if rule is None:
            if packet not in train_free():
                self.result.unsupported[str(packet)] = self.result.unsupported.get(str(packet), 0) + 1
            return out
        self._tally(packet, rule, args, out)
        return out

    def _tally(self, packet, rule: Rule, args: tuple, out: object) -> None:
        path, direction = self.where
        n = rule.count(args, out)
        bytes_of = conv_backward_bytes if packet is aten.convolution_backward else bytes_moved
        moved = bytes_of(args, out, self.itemsize)
        if direction == "opt":
            tallies = self.result.optimizer
        else:
            record = self.result.loss if path == LOSS_PATH else self.result.modules[path]
            tallies = record.fwd if direction == "fwd" else record.bwd
        tally = tallies.setdefault(rule.kind, Tally())
        tally.ops += n * self.weight
        tally.bytes += moved * self.weight
        tally.calls += self.weight
        if direction == "bwd" and rule.kind in MAC_KINDS:
            grad_input, grad_weight = self._grad_split(packet, record, args, out, n)
            record.bwd_input_macs += grad_input
            record.bwd_weight_macs += grad_weight
        if packet is aten.convolution_backward and args[10][2]:  # the bias gradient: a sum over grad_output
            bias = record.bwd.setdefault("add", Tally())
            bias.ops += args[0].numel()

    def _grad_split(self, packet, record: TrainModuleCount, args: tuple, out: object, n: int) -> tuple[int, int]:
        if packet is aten.convolution_backward:
            return conv_grad_split(args, out)
        # A product with a weight (or a view of one) among its operands makes a grad input;
        # one without, in a module that has weights, makes a grad weight (linear: x^T @ grad).
        uses_weight = any(id(t) in self.param_ids or id(t._base) in self.param_ids for t in tensors(args))
        return (0, n) if record.params and not uses_weight else (n, 0)


def count_train(model: nn.Module, input_shape: tuple[int, ...], example: object = None, *, loss: str = "auto",
                optimizer: Callable[[list[torch.Tensor]], torch.optim.Optimizer] | None = None,
                dtype: torch.dtype = torch.float32, forward_only: bool = False) -> TrainCount:
    """Count one train step of `model` on an input of `input_shape` (or `example`) on the meta device:
    forward, a scalar loss, backward, and the optimizer step when `optimizer` (a factory taking the
    parameters) is given. No tensor memory, no arithmetic; the model's own tensors are not touched.
    A module that cannot run on meta (data-dependent code) is counted on copies of its tensors where
    it lives, which does the arithmetic of one step.

    `loss`: "cross_entropy" against class 0 (a classifier's [N, classes] output), "sum" of every
    output, or "auto" (cross-entropy for a 2-d output with more than one column, else the sum).
    The input needs no gradient, so the first layer computes none for it. Bytes count floating
    tensors at `dtype`. Backward ops are given to the module whose forward made them.
    `forward_only`: an inference step instead, as it runs: the model in eval mode (batch norms read
    their running statistics), no gradient, no loss, no backward.
    """
    if loss not in _LOSSES:
        raise ValueError(f"loss {loss!r} is not known; use {', '.join(_LOSSES[:-1])} or {_LOSSES[-1]}")
    home = model_device(model)
    devices = [torch.device("meta")] + ([home] if home.type != "meta" else [])
    for i, device in enumerate(devices):
        try:
            return _count_train_on(device, model, input_shape, example, loss, optimizer, dtype, forward_only)
        except Exception:
            if i == len(devices) - 1:
                raise
    raise AssertionError("unreachable")


_LOSSES = ("auto", "cross_entropy", "sum")


def _count_train_on(device: torch.device, model: nn.Module, input_shape: tuple[int, ...], example: object,
                    loss: str, optimizer: Callable | None, dtype: torch.dtype,
                    forward_only: bool = False) -> TrainCount:
    from torch.func import functional_call

    stand_ins = {name: _stand_in(t, device) for name, t in [*model.named_parameters(), *model.named_buffers()]}
    params = [t for name, t in stand_ins.items() if t.requires_grad]
    inputs = _to_device(example, device) if example is not None else _random(input_shape, device)
    first = next(tensors(inputs), None)
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
    model.train(not forward_only)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    try:
        with torch.set_grad_enabled(not forward_only), counter, module_scopes(model, enter, exit) as scopes:
            out = functional_call(model, stand_ins, args)
            if forward_only:
                return result
            counter.where = (LOSS_PATH, FWD)
            result.loss_kind, scalar = surrogate_loss(out, loss)
            scopes.claim(scalar, LOSS_PATH, stop={t.grad_fn for t in tensors(out)})
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


def _random(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An input batch: random where values exist; on meta, where none do, an empty one (torch.randn on
    meta runs a Python reference that imports sympy: seconds, more than the count)."""
    return torch.empty(shape, device=device) if device.type == "meta" else torch.randn(shape, device=device)


def _to_device(value: object, device: torch.device) -> object:
    from torch.utils._pytree import tree_map

    return tree_map(lambda v: v.to(device) if isinstance(v, torch.Tensor) else v, value)


def surrogate_loss(out: object, loss: str) -> tuple[str, torch.Tensor]:
    """The scalar the counted backward starts from, and which it is."""
    import torch.nn.functional as F

    classifier = isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[1] > 1
    if loss == "cross_entropy" or (loss == "auto" and classifier):
        target = torch.zeros(out.shape[0], dtype=torch.long, device=out.device)
        return "cross_entropy", F.cross_entropy(out, target)
    outputs = [t for t in tensors(out) if t.requires_grad]
    if not outputs:
        raise ValueError("the model's output needs no gradient (no parameter requires one): no backward to count")
    total = outputs[0].sum()
    for t in outputs[1:]:
        total = total + t.sum()
    return "sum", total


def _count_optimizer_step(factory: Callable, params: list[torch.Tensor], counter: _TrainOpCounter) -> str:
    """Count the second step of the optimizer (the first creates its state: momentum, moments). A factory
    marked `per_tensor` (its update treats each parameter alone, by ops that depend only on the layouts of
    the parameter and its gradient, as torch's single-tensor SGD and AdamW do) is counted on one parameter
    of each layout, its ops standing for every parameter of that layout: the same tallies, a fraction of
    the ops run (EfficientNetV2-S: 54 layouts among 452 parameters)."""
    if getattr(factory, "per_tensor", False):
        groups: dict[tuple, list[torch.Tensor]] = {}
        for p in params:
            groups.setdefault(_update_layout(p), []).append(p)
        batches = [([group[0]], len(group)) for group in groups.values()]
    else:
        batches = [(params, 1)]
    name = ""
    for group, weight in batches:
        opt = factory(group)
        counter.where = None
        opt.step()
        counter.where, counter.weight = ("", "opt"), weight
        opt.step()
        counter.where, counter.weight = None, 1
        name = type(opt).__name__
    return name


def _update_layout(p: torch.Tensor) -> tuple:
    """What a per-tensor update's ops depend on: the parameter's and its gradient's sizes, strides, dtype."""
    grad = p.grad
    return (tuple(p.shape), p.stride(), p.dtype,
            None if grad is None else (tuple(grad.shape), grad.stride(), grad.dtype))
