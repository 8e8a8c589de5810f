"""Which module each op belongs to, in the forward pass and in the backward pass.

Forward: a pre-hook and a post-hook on every module open and close its scope. Backward: the
autograd engine runs nodes, not modules, so when a module's forward ends its post-hook walks
the autograd nodes its forward created (from its outputs back to its inputs' nodes) and claims
those no inner module claimed; each claimed node gets a pre-hook and a post-hook that open and
close the module's scope while the engine runs it. Innermost modules end first, so they claim
their own nodes; a parent claims what it did itself (the SE multiply, a residual add). In-place
ops need nothing special: they move the tensor's `grad_fn` to a new node, which is new.

Counting (`counting.count_train`) and profiling (`breakdown`) both stand on this, with their own
enter/exit callbacks: set the scope of a dispatch counter, or open a profiler range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from netprobe.tensors import tensors

FWD, BWD = "fwd", "bwd"
ScopeCallback = Callable[[str, str], None]  # (module path, FWD | BWD)


class ModuleScopes:
    """Hooks on every module of `model` that call `enter(path, direction)` and `exit(path, direction)`
    around the ops of that module's forward and, through its autograd nodes, of its backward."""

    def __init__(self, model: nn.Module, enter: ScopeCallback, exit: ScopeCallback) -> None:
        self.model, self.enter, self.exit = model, enter, exit
        self.claimed: dict[object, str] = {}  # autograd node -> module path; kept alive until `close`
        self._stops: dict[str, list[set]] = {}  # path -> per active call, the input nodes where a walk stops
        self._handles: list = []

    def open(self) -> None:
        for path, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(path)))
            self._handles.append(module.register_forward_hook(self._post_hook(path)))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.claimed.clear()

    def claim(self, outputs: object, path: str, stop: set | None = None) -> None:
        """Give the unclaimed autograd nodes behind `outputs` to `path`: its backward scope.

        The walk passes through nodes already claimed (an inner module's) and stops at `stop`
        (the nodes that made this call's inputs) and at leaves.
        """
        stop = stop or set()
        todo = [t.grad_fn for t in tensors(outputs) if t.grad_fn is not None]
        seen: set = set()
        while todo:
            node = todo.pop()
            if node is None or node in seen or node in stop:
                continue
            seen.add(node)
            if not node.next_functions and type(node).__name__ == "AccumulateGrad":
                continue  # a leaf's gradient sink: it belongs to no forward
            if node not in self.claimed:
                self.claimed[node] = path
                node.register_prehook(self._node_enter(path))
                node.register_hook(self._node_exit(path))
            todo.extend(fn for fn, _ in node.next_functions)

    def _pre_hook(self, path: str):
        def hook(module: nn.Module, args: tuple) -> None:
            self._stops.setdefault(path, []).append({t.grad_fn for t in tensors(args) if t.grad_fn is not None})
            self.enter(path, FWD)
        return hook

    def _post_hook(self, path: str):
        def hook(module: nn.Module, args: tuple, out: object) -> None:
            self.exit(path, FWD)
            stop = self._stops[path].pop()
            if torch.is_grad_enabled():
                self.claim(out, path, stop)
        return hook

    def _node_enter(self, path: str):
        def hook(grad_outputs: tuple) -> None:
            self.enter(path, BWD)
        return hook

    def _node_exit(self, path: str):
        def hook(grad_inputs: tuple, grad_outputs: tuple) -> None:
            self.exit(path, BWD)
        return hook


@contextmanager
def module_scopes(model: nn.Module, enter: ScopeCallback, exit: ScopeCallback) -> Iterator[ModuleScopes]:
    """`ModuleScopes` on `model` while the block runs; hooks removed after, even on error."""
    scopes = ModuleScopes(model, enter, exit)
    scopes.open()
    try:
        yield scopes
    finally:
        scopes.close()
