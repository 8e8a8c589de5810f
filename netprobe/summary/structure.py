"""The module tree of any model as the counter saw it run, and what each module is to a stage table:
a leaf layer, a container of layers (a conv-norm-act), a block (a residual block, an encoder layer), or a
stage (a container of blocks: ResNet's layer2, an encoder's layers). Built once, in one pass
over the modules, so that grouping stays linear in their number."""

from __future__ import annotations

from collections import Counter

from torch import nn

from netprobe.counting import Count, ModuleCount, Stride
from netprobe.summary.rows import CONTAINERS


def parent_of(path: str) -> str:
    return path.rpartition(".")[0]


def is_index(path: str) -> bool:
    """A container's element (`features.3`), not a named attribute (`layer3`)."""
    return path.rpartition(".")[2].isdigit()


class Structure:
    """Children in the order they first ran, classes, and per module: leaf, layers, block, stage."""

    def __init__(self, model: nn.Module, result: Count) -> None:
        self.result = result
        self.modules = result.modules
        self.classes = {path: type(m) for path, m in model.named_modules()}
        # When each module first ran; a ModuleList never runs itself: when its first element did.
        self.first_run = {p: i for i, p in enumerate(result.order)}
        for path in reversed(self.modules):  # named_modules order: children after their parent
            if path in self.first_run and path:
                parent = parent_of(path)
                self.first_run[parent] = min(self.first_run.get(parent, self.first_run[path]), self.first_run[path])
        self.children: dict[str, list[str]] = {p: [] for p in self.modules}
        for path in self.modules:
            if path:
                self.children[parent_of(path)].append(path)
        never = len(self.first_run)
        for kids in self.children.values():
            kids.sort(key=lambda p: self.first_run.get(p, never))  # stable: those that never ran stay in order, last
        self.ran = set(self.first_run)
        self.macs_below = {p: m.macs for p, m in self.modules.items()}  # the module's MACs and all below it
        for path in reversed(self.modules):  # named_modules order: children after their parent
            if path:
                self.macs_below[parent_of(path)] += self.macs_below[path]
        self._stage: dict[str, bool] = {}
        self._holds: dict[str, bool] = {}
        self._kinds: dict[str, Counter] = {}  # per parent: how many of its children that ran are of each class

    def ran_children(self, path: str) -> list[str]:
        return [c for c in self.children[path] if c in self.ran]

    def is_leaf(self, path: str) -> bool:
        return not self.children[path]

    def is_container(self, path: str) -> bool:
        return issubclass(self.classes[path], CONTAINERS)

    def is_layers(self, path: str) -> bool:
        """A container of leaf layers only (conv-norm-act, an MLP): one layer to a reader, not a block."""
        kids = self.children[path]
        return bool(kids) and self.is_container(path) and all(self.is_leaf(c) for c in kids)

    def is_block(self, path: str) -> bool:
        return not self.is_leaf(path) and not self.is_layers(path)

    def is_stage(self, path: str) -> bool:
        """A container of blocks only (ResNet's layer2, an encoder's layers); a layer among them (a conv-norm-act,
        a bare conv) makes it a list of layers instead (MobileNetV2's features, an inverted residual's body)."""
        if path not in self._stage:
            kids = self.children[path]
            self._stage[path] = bool(kids) and self.is_container(path) and all(self.is_block(c) for c in kids)
        return self._stage[path]

    def holds_stage(self, path: str) -> bool:
        """Is a stage or has one below it."""
        if path not in self._holds:
            self._holds[path] = self.is_stage(path) or any(self.holds_stage(c) for c in self.children[path])
        return self._holds[path]

    def out_stride(self, path: str) -> Stride | None:
        """Its output's cumulative stride; for a ModuleList that never ran itself, its last element's."""
        if self.modules[path].calls or not self.ran_children(path):
            return self.modules[path].out_stride
        return self.out_stride(self.ran_children(path)[-1])

    def does_work(self, path: str) -> bool:
        """Its own forward computes something (a residual add, attention), beyond calling its children."""
        rec = self.modules[path]
        return bool(rec.macs or rec.other_ops)

    def one_stride(self, path: str) -> bool:
        """Every child that ran and multiplies leaves a map at the same cumulative stride (children without a
        map aside): a norm before a strided conv (ConvNeXt's downsample) or a pool after one does not split."""
        strides = {self.out_stride(c) for c in self.ran_children(path) if self.macs_below[c]} - {None}
        return len(strides) <= 1

    def repeated(self, path: str) -> bool:
        """A block with a sibling of its class that ran: one of a run of repeated blocks."""
        if not path or not self.is_block(path):
            return False
        parent = parent_of(path)
        if parent not in self._kinds:
            self._kinds[parent] = Counter(self.classes[c] for c in self.ran_children(parent))
        return self._kinds[parent][self.classes[path]] > 1

    def subtree(self, path: str) -> list[ModuleCount]:
        """The module and everything below it, by the child map (no scan of all modules)."""
        found, todo = [], [path]
        while todo:
            p = todo.pop()
            found.append(self.modules[p])
            todo.extend(self.children[p])
        return found

