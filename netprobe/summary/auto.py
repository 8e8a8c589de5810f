"""`--stages auto`: the stage rows of any module, by its structure first and its strides second.

From the model down, a module is opened into its children where they leave maps at different strides (the
model itself, a flat `features` list) or where it holds blocks that work on tokens (a transformer's encoder,
opened to its layers); anything else is a piece counted whole, so a residual block never splits. The pieces,
in the order they ran, make the rows: a stage (a container of blocks, ResNet's `layer2`) or a token block
is a row of its own; the pieces before the first of them are the stem (the patch embed, before token
blocks); the pieces after the last spatial map or stage are the head; the rest are runs at one stride, cut
after each named module (a UNet's `encoder2` takes the pool before it). Work an opened module's own forward
does (a class token's concat, a skip concat, a pool) joins the row that ran just before it, or the head once
the body is done; its own parameters go with its first such work. At block depth a stage row opens into its
blocks and a run is cut after every module, so a block is always one row, never a fragment.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from torch import nn

from netprobe.counting import Count, ModuleCount
from netprobe.summary.rows import (
    NOT_CALLED,
    Row,
    describe,
    kinds_text,
    layer_rows,
    make_row,
    never_called,
    not_called_op,
)
from netprobe.summary.structure import Structure, is_index, parent_of


@dataclass
class Piece:
    """A module counted whole (`unit`; None: none), then own work of opened modules that ran right after it."""

    unit: str | None
    extras: list[ModuleCount] = field(default_factory=list)  # partial counts: one stretch of a forward's own work
    carries: list[str] = field(default_factory=list)  # opened modules whose own backward this piece takes


@dataclass
class AutoGroup:
    """One row: its name and the pieces it sums."""

    name: str
    pieces: list[Piece]
    kind: str  # "stem", "head", "stage" (a stage or token block), "run", "block" or "rest" (never called)


def auto_rows(model: nn.Module, result: Count, depth: str) -> tuple[list[Row], list[Row]]:
    """Stage rows, and the rows at `depth` (the same, one per block, or one per layer)."""
    struct = Structure(model, result)
    groups = auto_groups(struct)
    stage_rows = [_row(struct, model, g, "stage") for g in groups]
    if depth == "stage":
        return stage_rows, stage_rows
    if depth == "layer":
        return stage_rows, layer_rows(model, result)
    return stage_rows, [_row(struct, model, b, "block") for g in groups for b in _blocks(struct, g)]


def auto_groups(struct: Structure) -> list[AutoGroup]:
    if struct.is_leaf(""):
        return [AutoGroup("(model)", [Piece("")], "stage")]
    units: list[str] = []
    opened: list[str] = []
    _unfold(struct, "", units, opened)
    if not units:  # the model's forward called none of its children
        return [AutoGroup("(model)", [Piece("")], "stage")]
    units.sort(key=struct.first_run.__getitem__)  # elements of two ModuleLists may take turns
    unused = Piece(None)
    pieces = _place_work(struct, units, opened, unused)
    groups = _group(struct, pieces[0], pieces[1:])
    return groups + ([AutoGroup(NOT_CALLED, [unused], "rest")] if any(m.params for m in unused.extras) else [])


def _opens(struct: Structure, path: str) -> bool:
    if struct.is_leaf(path):
        return False
    if not struct.modules[path].calls:
        return True  # a ModuleList holds modules but never runs: its elements are what ran
    if struct.holds_stage(path) and not any(struct.out_stride(c) for c in [path, *struct.ran_children(path)]):
        return True  # blocks on tokens: a transformer's encoder, opened down to its layers
    if struct.one_stride(path):
        return False
    # Children at several strides: a list of layers or blocks opens; a block of its own (it computes from
    # its children's outputs, or holds layers only) never does.
    return struct.is_container(path) or (not struct.does_work(path)
                                         and any(struct.is_block(c) for c in struct.children[path]))


def _unfold(struct: Structure, path: str, units: list[str], opened: list[str]) -> None:
    opened.append(path)
    for child in struct.ran_children(path):
        if _opens(struct, child):
            _unfold(struct, child, units, opened)
        else:
            units.append(child)


def _place_work(struct: Structure, units: list[str], opened: list[str], unused: Piece) -> list[Piece]:
    """A piece per unit (after a first one for work done before any unit), each opened module's own work
    placed after the unit that ran last before it, and its parameters (and children never called that it
    used, see `never_called`) with its first stretch of work, else with its first unit; other children
    never called go to `unused`."""
    owners = never_called(struct.result)
    pieces = [Piece(None)] + [Piece(u) for u in units]
    unit_of = {m.path: i for i, u in enumerate(units, start=1) for m in struct.subtree(u)}
    last_unit = [0]
    for path in struct.result.calls:
        last_unit.append(unit_of.get(path, last_unit[-1]))
    first_unit = _first_units(units, set(opened))
    for path in opened:
        rec = struct.modules[path]
        stretches = sorted(rec.own_at.items())
        for tick, part in stretches:
            pieces[last_unit[tick]].extras.append(part)
        home = pieces[last_unit[stretches[0][0]] if stretches else first_unit.get(path, len(units))]
        home.carries.append(path)
        if rec.params:
            home.extras.append(ModuleCount(path, rec.type, params=rec.params))
        for child in struct.children[path]:
            if child not in struct.ran:  # registered but never called: its parameters still count
                to = home if owners[child] == path else unused
                to.extras += struct.subtree(child)
                to.carries += [m.path for m in struct.subtree(child)]
    return pieces


def _first_units(units: list[str], opened: set[str]) -> dict[str, int]:
    """Each opened module's first unit (as a piece index: units are pieces 1..n)."""
    first: dict[str, int] = {}
    for i, unit in enumerate(units, start=1):
        path = unit
        while path:
            path = parent_of(path)
            if path in opened:
                first.setdefault(path, i)
    return first


def _is_stage(struct: Structure, path: str | None) -> bool:
    """A row of its own: a piece that holds a stage, or one of repeated blocks on tokens (an encoder layer)."""
    if path is None:
        return False
    if struct.out_stride(path) is None:
        return struct.repeated(path)
    return struct.holds_stage(path)


def _group(struct: Structure, before: Piece, body: list[Piece]) -> list[AutoGroup]:
    stages = [_is_stage(struct, p.unit) for p in body]
    end = len(body)
    while end and not stages[end - 1] and struct.out_stride(body[end - 1].unit) is None:
        end -= 1
    main, head = (body[:end], body[end:]) if end else (body, [])
    if head:  # work after the body's last piece (a pool in the model's forward) starts the head
        last = main[-1]
        head = [Piece(None, last.extras, last.carries), *head]
        main = [*main[:-1], Piece(last.unit)]
    groups = []
    first = next((i for i, s in enumerate(stages[:len(main)]) if s), 0)
    if not first:  # no stage: the single layers before the first block (a conv, its norm) are the stem
        first = next((i for i, p in enumerate(main) if p.unit is not None and not struct.is_leaf(p.unit)), 0)
    if first:
        tokens = struct.out_stride(main[first].unit) is None
        groups.append(AutoGroup("patch embed" if tokens else "stem", main[:first], "stem"))
    for run, kind in _runs(struct, main[first:], lambda p: _is_stage(struct, p), _is_named):
        groups.append(AutoGroup(_run_name(struct, run) if kind == "run" else run[0].unit, run, kind))
    if head:
        groups.append(AutoGroup("head", head, "head"))
    if before.extras or before.carries:  # work before any unit: the model's first row
        groups[0].pieces.insert(0, before)
    return groups


def _is_named(struct: Structure, path: str | None) -> bool:
    return path is not None and not struct.is_leaf(path) and not is_index(path)


def _runs(struct: Structure, pieces: list[Piece], own_row, cut_after) -> list[tuple[list[Piece], str]]:
    """Consecutive pieces at one stride (pieces without a map stay in the run they are in), cut after each
    piece `cut_after` names; a piece `own_row` names is a row of its own."""
    runs: list[tuple[list[Piece], str]] = []
    run: list[Piece] = []
    stride = None
    for piece in pieces:
        if own_row(piece.unit):
            if run:
                runs.append((run, "run"))
            runs.append(([piece], "stage"))
            run, stride = [], None
            continue
        here = struct.out_stride(piece.unit) if piece.unit is not None else None
        if run and here is not None and stride is not None and here != stride:
            runs.append((run, "run"))
            run, stride = [], None
        run.append(piece)
        stride = stride or here
        if cut_after(struct, piece.unit):
            runs.append((run, "run"))
            run, stride = [], None
    if run:
        runs.append((run, "run"))
    return runs


def _run_name(struct: Structure, pieces: list[Piece]) -> str:
    """A run by its module names: the named module that ends it, an index range, or its first and last."""
    units = [p.unit for p in pieces if p.unit is not None]
    if len(units) == 1 or _is_named(struct, units[-1]):
        return units[-1]
    parents = {parent_of(u) for u in units}
    if len(parents) == 1 and all(is_index(u) for u in units):
        parent = parents.pop()
        span = f"{units[0].rpartition('.')[2]}-{units[-1].rpartition('.')[2]}"
        return f"{parent}.{span}" if parent else span
    return f"{units[0]} + {units[1]}" if len(units) == 2 else f"{units[0]} … {units[-1]}"


def _blocks(struct: Structure, group: AutoGroup) -> list[AutoGroup]:
    """A stage row's blocks: a stage's own blocks; a run cut after every module; stem and head whole."""
    if group.kind in ("stem", "head", "rest"):
        return [group]
    if group.kind == "stage":
        return _stage_blocks(struct, group)
    runs = _runs(struct, group.pieces, lambda p: False,
                 lambda s, p: p is not None and not s.is_leaf(p))
    return [AutoGroup(_run_name(struct, run), run, "block") for run, _ in runs]


def _stage_blocks(struct: Structure, group: AutoGroup) -> list[AutoGroup]:
    at = next(i for i, p in enumerate(group.pieces) if p.unit is not None)
    piece = group.pieces[at]
    if not struct.holds_stage(piece.unit):  # a token block, or the model as one row
        return [group]
    blocks = _open_stage(struct, piece.unit)
    blocks[0].pieces[:0] = group.pieces[:at]  # work placed before the stage (the model's first row)
    blocks[-1].pieces.append(Piece(None, piece.extras, piece.carries))  # work placed after it ran
    return blocks


def _open_stage(struct: Structure, path: str) -> list[AutoGroup]:
    """The blocks of a stage, down through anything that holds one, and one row for what is left there:
    the holders' own work and parameters, and children that never ran."""
    blocks: list[AutoGroup] = []
    rest = Piece(None)
    for child in struct.children[path]:
        if child not in struct.ran:
            rest.extras += struct.subtree(child)
            rest.carries += [m.path for m in struct.subtree(child)]
        elif struct.holds_stage(child):
            blocks += _open_stage(struct, child)
        else:
            blocks.append(AutoGroup(child, [Piece(child)], "block"))
    own = struct.modules[path]
    if own.params or own.macs or own.other_ops:
        rest.extras.append(own)
        rest.carries.append(path)
    if rest.extras:
        blocks.append(AutoGroup(f"{path} (own ops)", [rest], "block"))
    return blocks


def _row(struct: Structure, model: nn.Module, group: AutoGroup, level: str) -> Row:
    units = [p.unit for p in group.pieces if p.unit is not None]
    extras = [m for p in group.pieces for m in p.extras]
    mods = [m for u in units for m in struct.subtree(u)] + extras
    first = struct.modules[units[0]] if units else struct.modules[extras[0].path if extras else ""]
    last = next((struct.modules[u] for u in reversed(units) if struct.out_stride(u)), None)
    last = last or (struct.modules[units[-1]] if units else first)
    paths = list(dict.fromkeys([*units, *(m.path for m in extras)]))
    op = not_called_op([m.path for m in extras if m.path.rpartition(".")[0] not in paths]) \
        if group.kind == "rest" else _describe(struct, model, units, extras)
    row = make_row(group.name, op, first, last, mods, struct.result.macs, level, paths=paths)
    row._counted = [m.path for u in units for m in struct.subtree(u)] + [p for piece in group.pieces
                                                                         for p in piece.carries]
    if not units:  # own work only: no output of its own
        row.out, row.outs, row.stride, row.p_level, row.cum_stride = [], [], None, None, None
    return row


def _describe(struct: Structure, model: nn.Module, units: list[str], extras: list[ModuleCount]) -> str:
    """A row by what does its work, e.g. 'Conv7x7, MaxPool2d', '6× Bottleneck', '2× Conv3x3, ConvTranspose2x2'."""
    kinds = [k for u in units for k in _kinds_of(struct, model, u)]
    if any(m.macs for m in extras):
        kinds.append("matmul")
    if not kinds:
        kinds = [describe(model, u) for u in units[:1]] or ["own ops"]
    return kinds_text(Counter(kinds))


def _kinds_of(struct: Structure, model: nn.Module, path: str) -> list[str]:
    """A leaf by its kernel when it multiplies or pools, a container of layers by those that multiply, a
    stage by its blocks ('4× Bottleneck'), any other module that multiplies by its class."""
    rec = struct.modules[path]
    if struct.is_leaf(path):
        return [describe(model, path)] if rec.macs or rec.other.get("pool") else []
    if struct.is_layers(path):
        return [describe(model, c) for c in struct.children[path] if struct.modules[c].macs]
    if struct.is_stage(path):
        return [describe(model, path)]
    return [struct.classes[path].__name__] if struct.macs_below[path] else []
