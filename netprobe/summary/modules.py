"""Any module's stage table: its top-level children (a bulk container opened), or runs of layers at one
stride; deeper, the blocks of each row or its layers. Work no row's modules did goes to one more row."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from torch import nn

from netprobe.counting import Count, ModuleCount, stride_ratio
from netprobe.summary.rows import CONTAINERS, OWN_OPS, Row, describe, layer_rows, make_row


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
    for path in (p for p in result.order if p and "." not in p):
        module = model.get_submodule(path)
        inside = sum(1 for leaf in leaves if leaf == path or leaf.startswith(path + "."))
        if isinstance(module, CONTAINERS) and len(module) > 1 and inside * 2 >= len(leaves):
            groups += [Group(f"{path}.{name}", [f"{path}.{name}"]) for name, _ in module.named_children()
                       if f"{path}.{name}" in result.order]
        else:
            groups.append(Group(path, [path]))
    if not groups:  # a single layer: the model is its own row
        return [Group("(model)", [""])]
    return groups + _own_ops_group(result, groups)


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


def stride_groups(result: Count) -> list[Group]:
    """Consecutive leaf layers grouped by the cumulative stride of their output: a new row where the
    resolution changes. Layers without a spatial map inside a run (an SE's pooled branch) stay in it;
    those after the last spatial layer form the head."""
    leaves = _leaf_paths(result)
    strides = [result.modules[p].out_stride for p in leaves]
    last_spatial = max((i for i, s in enumerate(strides) if s), default=-1)
    runs: list[tuple[object, list[str]]] = []
    for i, (path, stride) in enumerate(zip(leaves, strides, strict=True)):
        key: object = "head" if i > last_spatial else stride or (runs[-1][0] if runs else "input")
        if not runs or runs[-1][0] != key:
            runs.append((key, []))
        runs[-1][1].append(path)
    # A parent's own work (a residual add, an SE multiply) goes with its last layer.
    owner = {leaf: i for i, (_, paths) in enumerate(runs) for leaf in paths}
    under = _leaves_by_ancestor(leaves)
    for rec in result.modules.values():
        if rec.path and rec.path not in owner and (rec.macs or rec.other_ops) and under.get(rec.path):
            runs[max(owner[leaves[i]] for i in under[rec.path])][1].append(rec.path)
    seen: Counter = Counter()
    groups = []
    for key, paths in runs:
        base = f"stride{stride_ratio(key, (1.0,) * len(key))}" if isinstance(key, tuple) else str(key)
        seen[base] += 1
        groups.append(Group(base if seen[base] == 1 else f"{base}#{seen[base]}", paths, whole=False))
    return groups + _own_ops_group(result, groups)


def group_row(group: Group, model: nn.Module, result: Count, level: str) -> Row:
    mods = group.modules(result)
    ran = [p for p in result.order if p in group.paths] or group.paths
    first, last = result.modules[ran[0]], result.modules[ran[-1]]
    if group.name == OWN_OPS:
        op = ", ".join(sorted({k for m in mods for k in m.other} | ({"matmul"} if any(m.macs for m in mods)
                                                                    else set())))
    elif group.whole and len(group.paths) == 1:
        op = describe(model, group.paths[0])
    else:
        op = _describe_run(model, [p for p in ran if p in set(_leaf_paths(result))], result)
    if not group.whole and group.name != OWN_OPS:  # a run: out of its last spatial layer, in at its first
        last = next((result.modules[p] for p in reversed(ran) if result.modules[p].out_stride), last)
    row = make_row(group.name, op, first, last, mods, result.macs, level, paths=group.paths)
    if group.name == OWN_OPS:  # scattered work: no one output of its own
        row.out, row.outs, row.stride, row.p_level, row.cum_stride = [], [], None, None, None
    return row


def _describe_run(model: nn.Module, layers: list[str], result: Count) -> str:
    """A run of layers by the ones that multiply (convs, linears), e.g. '4× Conv1x1, 2× DWConv3x3'."""
    working = [p for p in layers if result.modules[p].macs] or layers
    kinds = Counter(describe(model, p) for p in working)
    return ", ".join(f"{n}× {k}" if n > 1 else k for k, n in kinds.most_common(3)) + (", …" if len(kinds) > 3 else "")



def deep_rows(model: nn.Module, result: Count, depth: str, groups: list[Group]) -> list[Row]:
    """Each stage row opened up: its blocks (`block`) or its layers (`layer`)."""
    if depth == "layer":
        return layer_rows(model, result)
    rows = []
    for group in groups:
        if group.name == OWN_OPS:
            rows.append(group_row(group, model, result, "block"))
            continue
        for block in _blocks_of(model, result, group):
            rows.append(group_row(block, model, result, "block"))
    return rows


def _blocks_of(model: nn.Module, result: Count, group: Group) -> list[Group]:
    """The blocks of a stage row: a module's children (and its own ops); for a run of layers, the
    largest modules lying wholly inside the run."""
    if group.whole and len(group.paths) == 1 and group.paths[0]:
        path = group.paths[0]
        kids = [f"{path}.{n}" for n, _ in model.get_submodule(path).named_children()]
        kids = [k for k in result.order if k in kids]
        if not kids:
            return [group]
        own = result.modules[path]
        return [Group(k, [k]) for k in kids] + (
            [Group(f"{path} (own ops)", [path], whole=False)] if own.macs or own.other_ops else [])
    members = set(group.paths)
    all_leaves = _leaf_paths(result)
    leaves = [p for p in all_leaves if p in members]
    everywhere, here = _leaves_by_ancestor(all_leaves), _leaves_by_ancestor(leaves)
    blocks: list[str] = []
    for leaf in leaves:
        top = leaf
        parts = leaf.split(".")
        for i in range(len(parts) - 1, 0, -1):
            parent = ".".join(parts[:i])
            if len(here[parent]) != len(everywhere[parent]):  # some of its layers lie outside the run
                break
            top = parent
        if top not in blocks:
            blocks.append(top)
    return [Group(b, [b]) for b in blocks]


def _leaves_by_ancestor(leaves: list[str]) -> defaultdict[str, list[int]]:
    """For every module path above a leaf, the positions (in `leaves`) of the leaves under it."""
    under: defaultdict[str, list[int]] = defaultdict(list)
    for i, leaf in enumerate(leaves):
        parts = leaf.split(".")
        for j in range(1, len(parts)):
            under[".".join(parts[:j])].append(i)
    return under

