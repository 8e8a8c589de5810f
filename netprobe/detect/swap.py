"""Backbone swap: a function from YAML rows to YAML rows that puts a netprobe backbone under a detector's neck.

The new backbone is one `Backbone` row whose stride-8/16/32 maps (the last stage at each stride)
occupy the next three rows. The original backbone's trailing SPPF (any kind marked kept_on_swap)
stays, fed by the map at its original input's stride: it is context aggregation that the neck
expects, and the seeds keep it too. Every other original backbone row goes; each head reference
to one of them is redirected to the tap at the same stride, so channels flow from the taps and
the neck and head keep their own scaling. A YAML whose backbone already is a multi-output
module (seed 2's MobileNetV3, yolov3-fpn's Backbone) just gets the new spec in that row.
"""

from __future__ import annotations

from dataclasses import replace

from netprobe.detect.layers import IMAGE, LayerRow
from netprobe.detect.taps import DETECTOR_TAP_STRIDES
from netprobe.detect.yaml_modules import lookup
from netprobe.detect.yamlfile import RawRow
from netprobe.errors import SpecError


def swap_backbone(raw: list[RawRow], traced: list[LayerRow], spec: str, where: str) -> list[RawRow]:
    """`raw` with its backbone replaced by `spec`; `traced` is the original's walk (for its strides)."""
    backbone = [r for r in raw if r.section == "backbone"]
    multi = [k for k, r in enumerate(backbone) if (kind := lookup(r.module)) and kind.multi_output]
    if multi:
        k = multi[0]
        strides = tuple(int(t.stride) for t in traced if t.output_of == _expanded(traced, k))
        return [*raw[:k], replace(raw[k], module="Backbone", args=(spec, strides)), *raw[k + 1:]]
    return _replace_rows(raw, traced, spec, where)


def _expanded(traced: list[LayerRow], raw_index: int) -> int:
    """The traced index of the raw row `raw_index` (placeholder rows are not in the YAML)."""
    return [t.index for t in traced if t.output_of is None][raw_index]


def _replace_rows(raw: list[RawRow], traced: list[LayerRow], spec: str, where: str) -> list[RawRow]:
    n_old = sum(r.section == "backbone" for r in raw)
    kept = _kept_tail(raw[:n_old])
    first_kept = n_old - len(kept)
    tap_row = {s: 1 + k for k, s in enumerate(DETECTOR_TAP_STRIDES)}
    n_new = 1 + len(DETECTOR_TAP_STRIDES) + len(kept)
    moved = {old: 1 + len(DETECTOR_TAP_STRIDES) + k for k, old in enumerate(range(first_kept, n_old))}

    def new_index(old: int, reader: int) -> int:
        if old == IMAGE or old >= n_old:
            return old if old == IMAGE else old - n_old + n_new
        if old in moved:
            return moved[old]
        stride = traced[old].stride
        if stride not in tap_row:
            raise SpecError(f"{where}: row {reader} reads backbone row {old} at stride {stride:g}; a swapped-in "
                            f"backbone offers strides {', '.join(map(str, DETECTOR_TAP_STRIDES))}")
        return tap_row[stride]

    rows = [RawRow(-1, 1, "Backbone", (spec, DETECTOR_TAP_STRIDES), "backbone")]
    for old in range(first_kept, n_old):
        rows.append(_redirect(raw[old], traced[old].inputs, moved[old], new_index, old))
    for old in range(n_old, len(raw)):
        rows.append(_redirect(raw[old], traced[old].inputs, old - n_old + n_new, new_index, old))
    return rows


def _kept_tail(backbone: list[RawRow]) -> list[RawRow]:
    tail: list[RawRow] = []
    for row in reversed(backbone):
        kind = lookup(row.module)
        if not (kind and kind.kept_on_swap):
            break
        tail.insert(0, row)
    return tail


def _redirect(row: RawRow, inputs: tuple[int, ...], index: int, new_index, old: int) -> RawRow:
    """The row with its reads mapped to the new numbering; a -1 stays -1 where it still means the previous row."""
    written_as = row.src if isinstance(row.src, tuple) else (row.src,)
    mapped = [new_index(j, old) for j in inputs]
    written = [-1 if f == -1 and j == index - 1 else j for f, j in zip(written_as, mapped, strict=True)]
    return replace(row, src=written[0] if isinstance(row.src, int) else tuple(written))
