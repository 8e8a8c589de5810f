"""Any module's stage table by its top-level children (a bulk container opened); deeper, the blocks of each
row or its layers. Work no row's modules did goes to one more row. (`--stages auto` is `auto`.)"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from netprobe.counting import Count, ModuleCount
from netprobe.summary.rows import (
    CONTAINERS,
    NOT_CALLED,
    OWN_OPS,
    Row,
    describe,
    layer_rows,
    make_row,
    never_called,
    not_called_op,
)
from netprobe.summary.structure import Structure


@dataclass
class Group:
    """The modules one row is made of: whole subtrees (`whole`), or modules' own counts only."""

    name: str
    paths: list[str]
    whole: bool = True

    def modules(self, result: Count) -> list[ModuleCount]:
        if self.whole:
            return [m for p in self.paths for m in result.under(p)]
        return [result.modules[p] for p in self.paths]


def child_groups(model: nn.Module, result: Count) -> list[Group]:
    """Top-level children in the order they ran; a container that holds most of the network's
    layers (timm's `blocks`, torchvision's `features`) is opened one level so that stages show."""
    leaves = _leaf_paths(result)
    groups: list[Group] = []
    ran = set(result.order)
    # A ModuleList never runs itself: it takes its place in the order when its first element runs.
    for path in dict.fromkeys(p.partition(".")[0] for p in result.order if p):
        module = model.get_submodule(path)
        inside = sum(1 for leaf in leaves if leaf == path or leaf.startswith(path + "."))
        if isinstance(module, CONTAINERS) and len(module) > 1 and inside * 2 >= len(leaves):
            groups += [Group(f"{path}.{name}", [f"{path}.{name}"]) for name, _ in module.named_children()
                       if f"{path}.{name}" in ran]
        else:
            groups.append(Group(path, [path]))
    if not groups:  # a single layer: the model is its own row
        return [Group("(model)", [""])]
    return groups + _own_ops_group(result, groups) + _not_called_group(result, groups)


def _not_called_group(result: Count, groups: list[Group]) -> list[Group]:
    """Modules the forward never called and no row holds (an auxiliary head in eval): their parameters."""
    held = [p for g in groups if g.whole for p in g.paths]
    unused = [p for p in never_called(result) if not any(p.startswith(h + ".") for h in held if h)]
    return [Group(NOT_CALLED, unused)] if any(m.params for p in unused for m in result.under(p)) else []


def _own_ops_group(result: Count, groups: list[Group]) -> list[Group]:
    """Work the forward of the model (or of an opened container) does itself, outside every row."""
    covered = {p for g in groups for p in g.paths}
    inside = {m.path for g in groups if g.whole for m in g.modules(result)} | covered
    own = [m.path for m in result.modules.values() if (m.macs or m.other_ops) and m.path not in inside]
    return [Group(OWN_OPS, own, whole=False)] if own else []


def _leaf_paths(result: Count) -> list[str]:
    """Modules without children, in the order they first ran."""
    parents = {p.rsplit(".", 1)[0] for p in result.modules if "." in p}
    return [p for p in result.order if p and p not in parents]


def group_row(group: Group, model: nn.Module, result: Count, level: str) -> Row:
    mods = group.modules(result)
    ran = [p for p in result.order if p in group.paths] or group.paths
    if group.whole and not result.modules[ran[0]].calls and group.name != NOT_CALLED:  # a ModuleList: its elements
        ran = [p for p in result.order if p.startswith(ran[0] + ".")] or ran
    first, last = result.modules[ran[0]], result.modules[ran[-1]]
    if group.name == OWN_OPS:
        op = ", ".join(sorted({k for m in mods for k in m.other} | ({"matmul"} if any(m.macs for m in mods)
                                                                    else set())))
    elif group.name == NOT_CALLED:
        op = not_called_op(group.paths)
    else:
        op = describe(model, group.paths[0])
    row = make_row(group.name, op, first, last, mods, result.macs, level, paths=group.paths)
    if group.name in (OWN_OPS, NOT_CALLED):  # scattered work, or none: no one output of its own
        row.out, row.outs, row.stride, row.p_level, row.cum_stride = [], [], None, None, None
    return row


def deep_rows(model: nn.Module, result: Count, depth: str, groups: list[Group]) -> list[Row]:
    """Each stage row opened up: its blocks (`block`) or its layers (`layer`)."""
    if depth == "layer":
        return layer_rows(model, result)
    struct = Structure(model, result)
    rows = []
    for group in groups:
        if group.name in (OWN_OPS, NOT_CALLED):
            rows.append(group_row(group, model, result, "block"))
            continue
        for block in _blocks_of(struct, group):
            rows.append(group_row(block, model, result, "block"))
    return rows


def _blocks_of(struct: Structure, group: Group) -> list[Group]:
    """The blocks of a stage row: a module's children that ran (a ModuleList when its elements did), then
    one row for the rest: its own ops and parameters, children never called."""
    path = group.paths[0]
    kids = struct.ran_children(path) if path else []
    if not kids:
        return [group]
    own = struct.modules[path]
    rest = ([path] if own.params or own.macs or own.other_ops else []) + [
        m.path for k in struct.children[path] if k not in struct.ran for m in struct.subtree(k)]
    return [Group(k, [k]) for k in kids] + ([Group(f"{path} (own ops)", rest, whole=False)] if rest else [])
