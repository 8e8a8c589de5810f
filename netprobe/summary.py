"""`summarize(model)`: the paper-style stage table of any model, as plain data.

Rows come from the target: a zoo backbone's stage table (stem, stage1..N, head, with the papers'
operator names), or for any other module its top-level children (a container holding most of
the network opened one level) or, with `stages="auto"`, runs of layers at one stride. Every
number in a row is counted on the meta device; strides and P-levels are the counter's tracked
cumulative strides, so they are right at any image size.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from netprobe.archs.builder import Net
from netprobe.archs.table import BlockSpec
from netprobe.counting import OTHER_KINDS, Count, ModuleCount, count, pyramid_level, stride_ratio
from netprobe.errors import InputError
from netprobe.reference import TORCHVISION, TORCHVISION_IMGSZ
from netprobe.target import Target, resolve

if TYPE_CHECKING:
    from netprobe.detect import DetectorSummary

DEPTHS = ("stage", "block", "layer")
STAGINGS = ("children", "auto")
BYTES_PER_ELEM = 4  # activation memory is given for fp32
MB = 2**20


@dataclass
class Row:
    """One line of the stage table: a stage, a block or a layer, with its own counts."""

    name: str
    op: str
    out: list[int]  # C, H, W of this row's (first) output; [] when it has no tensor output
    stride: int | float | None  # this row's own stride; None when it has no spatial map
    p_level: int | None  # log2 of the output's cumulative stride (8 -> 3); None without a spatial map
    params: int
    macs: int
    share: float  # of all MACs
    other_ops: int
    act_mb: float  # fp32 outputs of the leaf layers inside: what backward keeps
    level: str = "stage"
    repeats: int | None = None  # zoo rows: blocks in the row
    kernel: int | list[int] | None = None
    expand: float | list[float] | None = None
    se: float | list[float] | None = None
    cum_stride: int | float | None = None  # cumulative stride of the output
    outs: list[list[int]] = field(default_factory=list)  # every tensor output, for multi-output rows
    modules: list[str] = field(default_factory=list)  # module paths the row is made of
    bwd_macs: int | None = None  # with train=True: the backward's MACs (grad input + grad weight), counted


@dataclass
class Summary:
    """What `netprobe summary` shows; `to_dict()` is its JSON."""

    spec: str  # the target as shown: a spec, an object path, a class name
    kind: str
    canonical: str | None
    input: list[int]
    params: int
    trainable: int
    macs: int
    flops: int
    other_ops: int
    other_by_kind: dict[str, int]
    act_mb: float
    stages: list[Row]
    rows: list[Row]  # at the requested depth
    features: list[dict]
    unsupported: dict[str, int]
    outputs: list[list[int]] = field(default_factory=list)  # shapes of the model's outputs
    reference: dict | None = None  # published figures of the plain arch, shown beside ours
    counters: dict[str, dict] = field(default_factory=dict)
    train: dict | None = None  # with train=True: the train step counted (see train_counts)

    def to_dict(self) -> dict:
        return asdict(self)


def train_counts(target: Target, model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """One train step counted op by op on meta: forward, backward (grad input and grad weight apart)
    and step MACs, bytes moved, and beside them what torch's FlopCounterMode reports for the same step."""
    from netprobe.counting import count_train, flop_counter_reference

    counted = count_train(model, input_shape)
    reference = flop_counter_reference(target.meta_model(), input_shape, counted.loss_kind)
    return {"loss": counted.loss_kind, "fwd_macs": counted.fwd_macs, "bwd_macs": counted.bwd_macs,
            "bwd_input_macs": counted.bwd_input_macs, "bwd_weight_macs": counted.bwd_weight_macs,
            "step_macs": counted.step_macs, "fwd_bytes": counted.fwd_bytes, "bwd_bytes": counted.bwd_bytes,
            "flop_counter": reference,
            "by_module_bwd": {m.path: m.bwd_macs for m in counted.modules.values() if m.bwd_macs}}


def stage_function(target: Target, size: tuple[int, int]) -> Callable[[str], str | None]:
    """Which stage row each module path belongs to, as `summary` lays the model out: the first path
    component for netprobe's backbones and detectors (stem, stage3, a YAML row), the stage rows of
    any other model (its children, a bulk container opened). None: outside every stage."""
    from netprobe.kinds import first_component

    if target.kind in ("zoo", "detector"):
        return first_component
    model = target.meta_model()
    result = count(model, (1, target.in_chans, *size))
    prefixes = [(p, g.name) for g in _child_groups(model, result) if g.whole for p in g.paths if p]

    def stage_of(path: str) -> str | None:
        return next((name for p, name in prefixes if path == p or path.startswith(p + ".")), None)

    return stage_of


def check_depth(depth: str, stages: str) -> None:
    if depth not in DEPTHS:
        raise InputError(f"depth {depth!r} is not allowed; use {', '.join(DEPTHS)}")
    if stages not in STAGINGS:
        raise InputError(f"stages {stages!r} is not allowed; use {' or '.join(STAGINGS)}")


def summarize(model: object, imgsz: str | int | tuple[int, int] | None = None, batch: int = 1,
              depth: str = "stage", stages: str = "children", in_chans: int | None = None,
              scale: str | None = None, modules: str | None = None, train: bool = False) -> Summary | DetectorSummary:
    """Count a model analytically (meta device: no memory, no arithmetic) and lay it out stage by stage.

    `model` is a spec string (`efficientnet_b4:fused=1-3`, `yolov8n-pose:backbone=(efficientnetv2_s)`,
    `path/model.yaml`, `module:pkg.mod:factory`, `file.py:factory`, `timm:NAME`), a `Target`, or an
    `nn.Module`, which is never changed (it is counted on a meta copy). A detector's summary is a
    `DetectorSummary`, one row per YAML row (`scale` and `modules` are a YAML file's options).
    `stages="auto"` groups the layers of any model into runs at one stride instead of its own stages.
    `train=True` also counts a train step's backward op by op (`train`, and `bwd_macs` per row).
    """
    check_depth(depth, stages)
    target = resolve(model, in_chans, scale, modules)
    size = target.input_size(imgsz)
    target.check_input(size, batch)
    if target.kind == "detector" and stages == "children":
        from netprobe.detect import summarize_detector

        found = summarize_detector(target.extra["detector"], size, batch, "row" if depth == "stage" else depth)
        if train:
            found.train = train_counts(target, target.meta_model(), (batch, target.in_chans, *size))
        return found
    net = target.meta_model()
    result = count_checked(target, net, (batch, target.in_chans, *size))
    if isinstance(net, Net) and stages == "children":
        stage_rows = _zoo_stage_rows(net, result)
        rows = stage_rows if depth == "stage" else _zoo_deep_rows(net, result, depth, stage_rows)
    else:
        groups = _stride_groups(result) if stages == "auto" else _child_groups(net, result)
        stage_rows = [_group_row(g, net, result, "stage") for g in groups]
        rows = stage_rows if depth == "stage" else _deep_rows(net, result, depth, groups)
    root = result.modules[""]
    trained = train_counts(target, target.meta_model(), result.input_shape) if train else None
    if trained:
        own = trained.pop("by_module_bwd")
        for row in {id(r): r for r in [*stage_rows, *rows]}.values():
            row.bwd_macs = sum(own.get(p, 0) for p in row._counted)
    return Summary(
        spec=target.label, kind=target.kind, canonical=target.canonical, input=list(result.input_shape),
        params=result.params, trainable=sum(p.numel() for p in net.parameters() if p.requires_grad),
        macs=result.macs, flops=2 * result.macs, other_ops=result.other_ops,
        other_by_kind={k: result.by_kind[k] for k in OTHER_KINDS}, act_mb=round(_act_mb(result.under("")), 3),
        stages=stage_rows, rows=rows, unsupported=result.unsupported,
        features=_features(net, result, stage_rows), outputs=[list(s) for s in root.out_shapes],
        reference=_reference(target), train=trained,
    )


def count_checked(target: Target, net: nn.Module, input_shape: tuple[int, ...]) -> Count:
    """Count, turning a model that fails on this input into one line naming the target and the cause."""
    try:
        return count(net, input_shape)
    except Exception as exc:
        first = next(iter(str(exc).strip().splitlines()), "")
        shape = "×".join(map(str, input_shape))
        raise InputError(f"{target.label} fails on an input of {shape}: {type(exc).__name__}"
                         + (f": {first[:200]}" if first else "")) from None


def _reference(target: Target) -> dict | None:
    """torchvision's published params and GMACs for a plain arch (no options), with the size they are for."""
    spec = target.spec
    if spec is None or spec.options or spec.arch not in TORCHVISION:
        return None
    params, gmacs = TORCHVISION[spec.arch]
    return {"source": "torchvision", "params": params, "gmacs": gmacs,
            "imgsz": TORCHVISION_IMGSZ.get(spec.arch, spec.table.imgsz)}


# ---- shared row arithmetic ----------------------------------------------------------------------

def _act_mb(mods: list[ModuleCount]) -> float:
    return sum(m.leaf_out_elems for m in mods) * BYTES_PER_ELEM / MB


def _row(name: str, op: str, first: ModuleCount, last: ModuleCount, mods: list[ModuleCount], total_macs: int,
         level: str, paths: list[str] | None = None, **fields) -> Row:
    """A row over `mods`, entered through `first`'s input and left through `last`'s output."""
    macs = sum(m.macs for m in mods)
    out_stride = last.out_stride
    counted = [m.path for m in mods]
    cum = stride_ratio(out_stride, (1.0,) * len(out_stride)) if out_stride else None
    row = Row(
        name=name, op=op, out=list(last.out_shape[1:]), stride=stride_ratio(out_stride, first.in_stride),
        p_level=pyramid_level(out_stride), params=sum(m.params for m in mods), macs=macs,
        share=macs / total_macs if total_macs else 0.0, other_ops=sum(m.other_ops for m in mods),
        act_mb=round(_act_mb(mods), 3), level=level, cum_stride=cum,
        outs=[list(s[1:]) for s in last.out_shapes] if len(last.out_shapes) > 1 else [],
        modules=paths if paths is not None else [first.path], **fields,
    )
    row._counted = counted  # the modules whose own counts the row sums (for the train count)
    return row


# ---- zoo backbones: the paper's stage table -----------------------------------------------------

def _uniform(values: list):
    return values[0] if len(set(values)) == 1 else values


def _zoo_fields(rows: list[BlockSpec], repeats: int | None = None) -> dict:
    return {"repeats": repeats if repeats is not None else sum(r.repeats for r in rows),
            "kernel": _uniform([r.kernel for r in rows]), "expand": _uniform([r.expand for r in rows]),
            "se": _uniform([r.se for r in rows])}


def _zoo_stage_rows(model: Net, result: Count) -> list[Row]:
    table, total = model.table, result.macs
    rows = [_named(result, "stem", "Conv3x3", total, _zoo_fields([BlockSpec("conv", 1, 3, 2, 1, table.stem)]))]
    for i, stage in enumerate(table.stages, start=1):
        op = " / ".join(dict.fromkeys(r.paper_name() for r in stage))
        rows.append(_named(result, f"stage{i}", op, total, _zoo_fields(list(stage))))
    head_op = "Conv1x1 & Pooling" + (" & FC" if table.classes else "")
    rows.append(_named(result, "head", head_op, total, _zoo_fields([BlockSpec("conv", 1, 1, 1, 1, table.head)])))
    return rows


def _named(result: Count, path: str, op: str, total: int, fields: dict, level: str = "stage") -> Row:
    rec = result.modules[path]
    return _row(path, op, rec, rec, result.under(path), total, level, **fields)


def _zoo_deep_rows(model: Net, result: Count, depth: str, stages: list[Row]) -> list[Row]:
    """Rows per block (the papers' operator names) or per layer, in execution order."""
    if depth == "layer":
        return _layer_rows(model, result)
    specs = _block_specs(model)
    rows = []
    for stage in stages:
        if stage.name in ("stem", "head"):
            block = Row(**{**asdict(stage), "level": "block"})
            block._counted = stage._counted
            rows.append(block)
            continue
        for path in (p for p in result.modules if p.startswith(stage.name + ".") and p.count(".") == 1):
            spec = specs[path]
            rows.append(_named(result, path, spec.paper_name(), result.macs, _zoo_fields([spec], 1), "block"))
    return rows


def _block_specs(model: Net) -> dict[str, BlockSpec]:
    specs = {}
    for i, stage in enumerate(model.table.stages, start=1):
        j = 0
        for row in stage:
            for r in range(row.repeats):
                specs[f"stage{i}.{j}"] = row if r == 0 else BlockSpec(row.op, 1, row.kernel, 1, row.expand, row.out,
                                                                      row.se, row.act)
                j += 1
    return specs


# ---- any module: its children, or runs of one stride --------------------------------------------

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
OWN_OPS = "(functional ops)"


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


def _child_groups(model: nn.Module, result: Count) -> list[Group]:
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


def _stride_groups(result: Count) -> list[Group]:
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


def _group_row(group: Group, model: nn.Module, result: Count, level: str) -> Row:
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
    row = _row(group.name, op, first, last, mods, result.macs, level, paths=group.paths)
    if group.name == OWN_OPS:  # scattered work: no one output of its own
        row.out, row.outs, row.stride, row.p_level, row.cum_stride = [], [], None, None, None
    return row


def _describe_run(model: nn.Module, layers: list[str], result: Count) -> str:
    """A run of layers by the ones that multiply (convs, linears), e.g. '4× Conv1x1, 2× DWConv3x3'."""
    working = [p for p in layers if result.modules[p].macs] or layers
    kinds = Counter(describe(model, p) for p in working)
    return ", ".join(f"{n}× {k}" if n > 1 else k for k, n in kinds.most_common(3)) + (", …" if len(kinds) > 3 else "")


def describe(model: nn.Module, path: str) -> str:
    """A module in a few words: 'DWConv3x3', 'Conv1x1', '4× MBConv', 'Linear'."""
    module = model.get_submodule(path) if path else model
    if isinstance(module, nn.modules.conv._ConvNd):
        k = "x".join(str(v) for v in module.kernel_size)
        if module.transposed:
            return f"ConvTranspose{k}"
        if module.groups > 1:
            return f"DWConv{k}" if module.groups == module.in_channels else f"Conv{k} g{module.groups}"
        return f"Conv{k}"
    children = list(module.children())
    if isinstance(module, CONTAINERS) and children:
        kinds = Counter(type(c).__name__ for c in children)
        return ", ".join(f"{n}× {k}" if n > 1 else k for k, n in kinds.most_common(3)) + (
            ", …" if len(kinds) > 3 else "")
    return type(module).__name__


def _deep_rows(model: nn.Module, result: Count, depth: str, groups: list[Group]) -> list[Row]:
    """Each stage row opened up: its blocks (`block`) or its layers (`layer`)."""
    if depth == "layer":
        return _layer_rows(model, result)
    rows = []
    for group in groups:
        if group.name == OWN_OPS:
            rows.append(_group_row(group, model, result, "block"))
            continue
        for block in _blocks_of(model, result, group):
            rows.append(_group_row(block, model, result, "block"))
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


def _layer_rows(model: nn.Module, result: Count) -> list[Row]:
    """Every module that does work itself (a leaf layer, or a block's residual add), in execution order."""
    rows = []
    for path in [*result.order[1:], ""]:  # the model's own ops (outside every layer) last
        rec = result.modules[path]
        if not (rec.params or rec.macs or rec.other_ops) or not (rec.leaf_out_elems or rec.other_ops):
            continue
        name = path or OWN_OPS  # the model's own forward, outside every layer
        rows.append(_row(name, _layer_op(model, path, rec), rec, rec, [rec], result.macs, "layer",
                         kernel=_layer_kernel(model, path)))
    return rows


def _layer_op(model: nn.Module, path: str, rec: ModuleCount) -> str:
    if rec.type in ("MBConv", "FusedMBConv"):
        return rec.type + " residual add"
    if rec.type == "SqueezeExcite":
        return "SE scale"
    if next(model.get_submodule(path).children(), None) is not None:  # a parent's own ops
        return f"{rec.type} ({', '.join(sorted(rec.other)) or 'matmul'})"
    return describe(model, path)


def _layer_kernel(model: nn.Module, path: str) -> int | None:
    m = model.get_submodule(path)
    return m.kernel_size[0] if isinstance(getattr(m, "kernel_size", None), tuple) else None


# ---- feature taps -------------------------------------------------------------------------------

def _features(model: nn.Module, result: Count, stages: list[Row]) -> list[dict]:
    """Multi-scale taps a detection neck could consume: a zoo backbone's stages, or for any other
    model the last stage row at each spatial stride."""
    if isinstance(model, Net):
        rows = {r.name: r for r in stages}
        return [_feature(rows[f.name]) if f.name in rows else _feature_of(f.name, result.modules[f.name])
                for f in model.feature_info]
    taps: dict[object, Row] = {}
    for row in stages:
        if row.p_level is not None:
            taps[row.cum_stride] = row
    return [_feature(row) for row in taps.values()]


def _feature(row: Row) -> dict:
    """A multi-scale tap as counted: its channels, cumulative stride and P-level at this input."""
    return {"name": row.name, "channels": row.out[0] if row.out else None, "stride": row.cum_stride,
            "level": f"P{row.p_level}" if row.p_level is not None else "-", "shape": row.out}


def _feature_of(name: str, rec: ModuleCount) -> dict:
    return _feature(_row(name, "", rec, rec, [rec], 0, "stage"))
