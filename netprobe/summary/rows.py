"""The rows of a stage table and their arithmetic: counts summed over the modules a row is made of,
entered through its first module's input, left through its last one's output."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from torch import nn

from netprobe.archs.block_kinds import BLOCK_KINDS
from netprobe.counting import Count, ModuleCount, pyramid_level, stride_ratio

BLOCK_CLASSES = {k.builder for k in BLOCK_KINDS.values()}  # netprobe's block modules: their own op is the residual add

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



def act_mb(mods: list[ModuleCount]) -> float:
    return sum(m.leaf_out_elems for m in mods) * BYTES_PER_ELEM / MB


def make_row(name: str, op: str, first: ModuleCount, last: ModuleCount, mods: list[ModuleCount], total_macs: int,
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
        act_mb=round(act_mb(mods), 3), level=level, cum_stride=cum,
        outs=[list(s[1:]) for s in last.out_shapes] if len(last.out_shapes) > 1 else [],
        modules=paths if paths is not None else [first.path], **fields,
    )
    row._counted = counted  # the modules whose own counts the row sums (for the train count)
    return row



CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
OWN_OPS = "(functional ops)"
NOT_CALLED = "(not called)"  # modules the forward never called (an auxiliary head in eval): their parameters


def kinds_text(kinds: Counter) -> str:
    """'4× Conv1x1, 2× DWConv3x3': the three most common, '…' for more."""
    return ", ".join(f"{n}× {k}" if n > 1 else k for k, n in kinds.most_common(3)) + (", …" if len(kinds) > 3 else "")


def never_called(result: Count) -> dict[str, str]:
    """The top-most modules the forward never called (nor anything below them), each with where its
    parameters go: its parent when the parent ran and multiplied in its own forward (nn.MultiheadAttention
    uses its out_proj's weight so), else NOT_CALLED."""
    reached = {""}
    for path in result.order:  # a module that ran, and everything above it (a ModuleList runs through its elements)
        while path not in reached:
            reached.add(path)
            path = path.rpartition(".")[0]
    owners = {}
    for path in result.modules:
        parent = path.rpartition(".")[0]
        if path not in reached and parent in reached:
            used = parent in result.modules and result.modules[parent].calls and result.modules[parent].macs
            owners[path] = parent if used else NOT_CALLED
    return owners


def not_called_op(paths: list[str]) -> str:
    return "not called: " + ", ".join(paths[:3]) + (", …" if len(paths) > 3 else "")


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
        return kinds_text(Counter(type(c).__name__ for c in children))
    return type(module).__name__



def layer_rows(model: nn.Module, result: Count) -> list[Row]:
    """Every module that does work itself (a leaf layer, or a block's residual add), in execution order; a
    module never called goes with its parent (see `never_called`) or to one NOT_CALLED row, last."""
    folded: dict[str, list[ModuleCount]] = {}
    tops = never_called(result)
    for path, owner in tops.items():
        folded.setdefault(owner, []).extend(_below(result, path))
    rows = []
    for path in [*result.order[1:], ""]:  # the model's own ops (outside every layer) last
        rec = result.modules[path]
        mods = [rec, *folded.get(path, [])]
        if not any(m.params or m.macs or m.other_ops for m in mods):
            continue
        name = path or OWN_OPS  # the model's own forward, outside every layer
        rows.append(make_row(name, _layer_op(model, path, rec), rec, rec, mods, result.macs, "layer",
                             kernel=_layer_kernel(model, path)))
    unused = folded.get(NOT_CALLED, [])
    if any(m.params for m in unused):  # (a drop-path Identity never called holds nothing: no row)
        row = make_row(NOT_CALLED, not_called_op([p for p, o in tops.items() if o == NOT_CALLED]), unused[0],
                       unused[0], unused, result.macs, "layer")
        row.out, row.stride, row.p_level, row.cum_stride = [], None, None, None
        rows.append(row)
    return rows


def _below(result: Count, top: str) -> list[ModuleCount]:
    """A never-called module and everything below it (all never called)."""
    return [m for p, m in result.modules.items() if p == top or p.startswith(top + ".")]


def _layer_op(model: nn.Module, path: str, rec: ModuleCount) -> str:
    if rec.type in BLOCK_CLASSES:
        return rec.type + " residual add"
    if rec.type == "SqueezeExcite":
        return "SE scale"
    if next(model.get_submodule(path).children(), None) is not None:  # a parent's own ops
        return f"{rec.type} ({', '.join(sorted(rec.other)) or 'matmul'})"
    return describe(model, path)


def _layer_kernel(model: nn.Module, path: str) -> int | None:
    m = model.get_submodule(path)
    return m.kernel_size[0] if isinstance(getattr(m, "kernel_size", None), tuple) else None

