"""The stride check: what each head input really receives, against what the YAML's comments (or YOLO) expect.

A table can look fine while the head reads the wrong levels: seed 1's stride-2 first row pushes
every map one level deeper than its comments say. The counted cumulative strides decide; the
expected ones are the P-levels the YAML's comments name for the head's inputs (in the head row's
comment, `Detect(P3, P4, P5)`, else in each input row's), and without comments P3, P4, P5.
"""

from __future__ import annotations

from dataclasses import dataclass

from netprobe.detect.rows import DetectorRow
from netprobe.detect.spec import DetectorSpec

YOLO_LEVELS = (3, 4, 5)  # strides 8, 16, 32


@dataclass
class HeadInput:
    """One map the head reads: which row, its size, the stride it actually has and the one expected."""

    row: int
    channels: int
    hw: list[int]
    stride: int | float | None  # counted cumulative stride
    level: int | None  # its P-level
    expected_stride: int | None
    expected_level: int | None
    expected_from: str  # "YAML comment" or "YOLO default"


def _expected(spec: DetectorSpec) -> tuple[list[int | None], str]:
    inputs = spec.head.inputs
    if len(spec.head.claims) == len(inputs):
        return list(spec.head.claims), "YAML comment"
    own = [spec.layers[j].claims[-1] if spec.layers[j].claims else None for j in inputs]
    if any(level is not None for level in own):
        return own, "YAML comment"
    default = list(YOLO_LEVELS[-len(inputs):]) if len(inputs) <= len(YOLO_LEVELS) else [None] * len(inputs)
    return default, "YOLO default"


def head_inputs(spec: DetectorSpec, rows: list[DetectorRow]) -> list[HeadInput]:
    """Every map the head reads, with its counted stride and the expected one."""
    expected, source = _expected(spec)
    out = []
    for j, level in zip(spec.head.inputs, expected, strict=True):
        row = rows[j]
        shape = row.out[0] if row.out else []
        out.append(HeadInput(j, shape[0] if shape else 0, shape[1:], row.strides[0] if row.strides else None,
                             row.p_levels[0] if row.p_levels else None, 2**level if level is not None else None,
                             level, source))
    return out


def head_warning(spec: DetectorSpec, inputs: list[HeadInput]) -> str | None:
    """One line when the head reads strides other than expected (counted strides decide)."""
    wrong = [h for h in inputs if h.expected_stride is not None and h.stride != h.expected_stride]
    if not wrong:
        return None
    rows = ", ".join(str(h.row) for h in inputs)
    got = ", ".join(_level_text(h.stride, h.level) for h in inputs)
    want = ", ".join(_level_text(h.expected_stride, h.expected_level) for h in inputs)
    says = "its YAML comments name" if inputs[0].expected_from == "YAML comment" else "a YOLO head expects"
    shift = {h.level - h.expected_level for h in inputs
             if h.level is not None and h.expected_level is not None}
    deeper = ""
    if len(shift) == 1 and (k := shift.pop()) != 0:
        deeper = f": every level sits {abs(k)} {'deeper' if k > 0 else 'shallower'} than that"
    return (f"head row {spec.head.index} ({spec.head.module}) reads rows {rows} at strides {got}, but {says} "
            f"{want}{deeper}")


def claim_warnings(spec: DetectorSpec, rows: list[DetectorRow]) -> str | None:
    """One line naming every row whose comment claims a P-level other than the one it outputs."""
    wrong = [r for r in rows if r.section != "head" and len(r.claimed_levels) == 1 and r.p_levels
             and r.p_levels[0] is not None and r.p_levels[0] != r.claimed_levels[0]]
    if not wrong:
        return None
    rows_text = ", ".join(str(r.index) for r in wrong)
    claimed = ", ".join(f"P{r.claimed_levels[0]}" for r in wrong)
    actual = ", ".join(_level_text(r.strides[0], r.p_levels[0]) for r in wrong)
    return f"YAML comments label rows {rows_text} as {claimed}, but they output {actual}"


def _level_text(stride: int | float | None, level: int | None) -> str:
    if stride is None:
        return "?"
    return f"{stride:g} (P{level})" if level is not None else f"{stride:g}"
