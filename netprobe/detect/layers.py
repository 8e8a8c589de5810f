"""The layer walk: YAML rows -> scaled layer rows, each run once on the meta device.

This is ultralytics' parse_model as a walk over the kind table: a row's input channels come from
the rows it reads, its arguments are scaled by the kind's rule, and the module is built and run
on meta tensors (no memory, no arithmetic), which gives its output channels and cumulative
stride exactly, for built-in and user blocks alike. A module returning several maps occupies its
own row plus one placeholder row per map; later rows count on from there.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import torch
from torch import nn

from netprobe.counting import count
from netprobe.detect.yaml_modules import Kind, Scaling, known_names, lookup
from netprobe.detect.yamlfile import RawRow, frozen
from netprobe.errors import NetprobeError, SpecError

TRACE_SIZE = 2048  # the walk's square input: a multiple of every power-of-two stride up to 2048
IMAGE = -1  # the index that stands for the input image in a row's `inputs`
MAX_ROWS = 1_000  # rows of one detector (upstream: about 25), checked before any is built
MAX_PARAMS = 10_000_000_000  # parameters of one detector, summed row by row as each is built on meta


@dataclass(frozen=True)
class LayerRow:
    """One row of a detector after scaling: what it reads, what builds it, what it outputs."""

    index: int
    src: int | tuple[int, ...]  # 'from' as written
    inputs: tuple[int, ...]  # absolute rows it reads (IMAGE = the input image)
    repeats: int  # after depth scaling
    module: str  # name as written in the YAML
    args: tuple  # constructor arguments after scaling: input channels first for conv-like kinds
    section: str  # backbone | neck | head
    out_channels: tuple[int, ...] = ()  # of each output map; empty for the head
    strides: tuple[float, ...] = ()  # cumulative stride of each output map
    output_of: int | None = None  # a placeholder row: the row whose maps it stands for
    output_index: int | None = None  # ... and which of them
    claims: tuple[int, ...] = ()  # P-levels its YAML comment names

    @property
    def stride(self) -> float | None:
        return self.strides[0] if self.strides else None


def walk(raw: list[RawRow], scaling: Scaling, names: dict, user: dict[str, type] | None, where: str) -> list[LayerRow]:
    """Scale and trace every row (see the module docstring); any error names the row, in one line."""
    if len(raw) > MAX_ROWS:
        raise SpecError(f"{where}: {len(raw):,} rows; a detector has at most {MAX_ROWS:,} (upstream ones: "
                        "about 25)")
    rows: list[LayerRow] = []
    total_params = 0
    maps: dict[int, object] = {IMAGE: torch.empty(1, 3, TRACE_SIZE, TRACE_SIZE, device="meta")}
    names = {k: frozen(v) for k, v in names.items()}
    for item in raw:
        i = len(rows)
        kind = lookup(item.module, user)
        if kind is None:
            raise SpecError(f"{where}: row {i}: unknown module {item.module!r}; known: {', '.join(known_names())}; "
                            "define it in a Python file and pass --modules FILE.py")
        inputs = _inputs(item.src, i, item.module, where)
        feeds = [_feed(maps, j, i, where, rows, item.module) for j in inputs]
        if kind.joins:
            _check_join(i, inputs, feeds, where)
        args = [_resolve_name(a, names) for a in item.args]
        try:
            repeats = scaling.repeats(item.repeats)
        except SpecError as exc:
            raise SpecError(f"{where}: row {i} ({item.module} {list(item.args)}): {exc}") from None
        ctor, out, params = _trace(kind, args, feeds, item, repeats, scaling, i, where)
        total_params += params
        if total_params > MAX_PARAMS:
            raise SpecError(f"{where}: rows 0-{i} already hold {total_params:,} parameters; at most "
                            f"{MAX_PARAMS:,} (10 G) in a detector: use a smaller width, depth or channel count")
        section = item.section if item.section == "backbone" else "head" if kind.head else "neck"
        rows.append(_row(i, item, inputs, repeats, tuple(ctor), section, out, kind))
        maps[i] = out
        if kind.multi_output:
            _add_placeholders(rows, maps, names, rows[-1], out)
    return rows


def _inputs(src: int | tuple[int, ...], i: int, module: str, where: str) -> tuple[int, ...]:
    """Absolute rows read: -1 is the previous row (the image for row 0); other negatives count back."""
    absolute = []
    for f in (src if isinstance(src, tuple) else (src,)):
        j = i - 1 if f == -1 else (i + f if f < 0 else f)
        if not (0 <= j < i or (f == -1 and i == 0)):
            before = f"rows 0-{i - 1}" if i > 1 else "row 0" if i == 1 else "no row"
            raise SpecError(f"{where}: row {i} ({module}) reads from {f}, but only {before} come before it; "
                            "from is -1 (the previous row), an earlier row's index, or a list of them")
        absolute.append(j)
    return tuple(absolute)


def _feed(maps: dict[int, object], j: int, i: int, where: str, rows: list[LayerRow], module: str) -> torch.Tensor:
    value = maps[j]
    if not isinstance(value, torch.Tensor):
        raise SpecError(f"{where}: row {i} reads row {j}, which returns several maps; read one of the rows "
                        f"after it, which hold them")
    if value.ndim != 4:  # blame the row that made it, not the one that trips over it
        made = rows[j]
        row = made if made.output_of is None else rows[made.output_of]
        shape = "x".join(map(str, value.shape))
        raise SpecError(f"{where}: row {row.index} ({row.module} {list(row.args)}) returns a {shape} tensor, which "
                        f"row {i} ({module}) reads; a row that others read must return an N x C x H x W map")
    return value


def _check_join(i: int, inputs: tuple[int, ...], feeds: list[torch.Tensor], where: str) -> None:
    message = join_mismatch(i, inputs, [tuple(t.shape[1:]) for t in feeds], [_stride(t) for t in feeds],
                            f" at a {TRACE_SIZE}x{TRACE_SIZE} input")
    if message:
        raise SpecError(f"{where}: {message}")


def join_mismatch(i: int, inputs: tuple[int, ...], shapes: list[tuple[int, ...]],
                  strides: list[float] | None = None, at: str = "") -> str | None:
    """The one-line complaint about a Concat of maps with different heights and widths, or None."""
    if len({s[1:] for s in shapes}) <= 1:
        return None
    notes = [f" (stride {s:g})" for s in strides] if strides else [""] * len(shapes)
    parts = ", ".join(f"row {j} gives {'x'.join(map(str, s))}{n}"
                      for j, s, n in zip(inputs, shapes, notes, strict=True))
    return f"row {i} (Concat) joins maps of different sizes: {parts} (C x H x W{at})"


def _resolve_name(value: object, names: dict) -> object:
    """A string argument names a top-level YAML value (nc, anchors, kpt_shape, c3...) or is a Python literal."""
    if not isinstance(value, str):
        return value
    if value in names:
        return names[value]
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def build_row(kind: Kind, ctor: list, repeats: int) -> nn.Module:
    """The module of a row: built once when it repeats inside, else `repeats` copies in a Sequential."""
    if kind.repeats_inside or repeats == 1:
        return kind.make(*ctor)
    return nn.Sequential(*(kind.make(*ctor) for _ in range(repeats)))


def _trace(kind: Kind, args: list, feeds: list[torch.Tensor], item: RawRow, repeats: int, scaling: Scaling,
           i: int, where: str) -> tuple[list, object, int]:
    what = f"row {i} ({item.module} {list(item.args)})"
    try:
        ctor = kind.args(args, [t.shape[1] for t in feeds], repeats, scaling)
        with torch.device("meta"):
            module = build_row(kind, ctor, repeats)
    except NetprobeError as exc:
        raise SpecError(f"{where}: {what}: {exc}") from None
    except Exception as exc:  # a user's class may raise anything; the user needs the row, not a traceback
        raise SpecError(f"{where}: {what} cannot be built: {type(exc).__name__}: {_first_line(exc)}") from None
    try:  # counting on meta runs every op's shape rule, several times faster than a plain meta forward
        result = count(module, (), example=feeds[0] if isinstance(item.src, int) else list(feeds))
    except Exception as exc:
        shapes = ", ".join("x".join(map(str, t.shape[1:])) for t in feeds)
        raise SpecError(f"{where}: {what} fails on its input ({shapes}): {type(exc).__name__}: "
                        f"{_first_line(exc)}") from None
    maps = [torch.empty(shape, device="meta") for shape in result.modules[""].out_shapes]
    out = maps[0] if len(maps) == 1 and not kind.multi_output else maps
    return ctor, out, result.params


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def _maps(out: object) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for t in out if isinstance(t, torch.Tensor)] if isinstance(out, (list, tuple)) else []


def _stride(t: torch.Tensor) -> float:
    return snap_stride(TRACE_SIZE / t.shape[-1])


def snap_stride(ratio: float) -> int | float:
    """Input pixels per cell from a size ratio. A map a cell or two wider than the side over a power of two
    (zero padding, a 'valid' pool) keeps that stride, so within 10% of one it is that power of two."""
    power = 2 ** round(math.log2(ratio))
    return power if abs(ratio - power) < 0.1 * power else round(ratio, 3)


def _row(i: int, item: RawRow, inputs: tuple[int, ...], repeats: int, args: tuple, section: str, out: object,
         kind: Kind) -> LayerRow:
    spatial = [] if kind.head else [t for t in _maps(out) if t.ndim == 4]
    return LayerRow(i, item.src, inputs, repeats, item.module, args, section,
                    tuple(t.shape[1] for t in spatial), tuple(_stride(t) for t in spatial), claims=item.claims)


def _add_placeholders(rows: list[LayerRow], maps: dict[int, object], names: dict, parent: LayerRow,
                      out: object) -> None:
    """One row per map of a multi-output module; `c3`, `c4`, `c5`... name the channels of its P-level maps."""
    for k, t in enumerate(_maps(out)):
        j = len(rows)
        rows.append(LayerRow(j, parent.index, (parent.index,), 1, parent.module, (), parent.section,
                             (t.shape[1],), (_stride(t),), output_of=parent.index, output_index=k))
        maps[j] = t
        level = math.log2(_stride(t))
        if level.is_integer():
            names[f"c{int(level)}"] = t.shape[1]
