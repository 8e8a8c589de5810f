"""A detector summary's rows: one per YAML row, and the blocks or layers inside them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DetectorRow:
    """One YAML row as counted at the summary's input: shapes, strides, P-levels, parameters, MACs."""

    index: int
    src: int | list[int]  # 'from' as written
    repeats: int
    module: str
    args: str
    section: str
    out: list[list[int]]  # C, H, W of each output map; the head: its eval output without the batch
    stride: int | float | None  # the row's own: its output's cumulative stride over its input's
    strides: list[int | float | None]  # cumulative stride of each output map (input pixels per cell)
    p_levels: list[int | None]  # log2 of those strides
    claimed_levels: list[int]  # the P-levels its YAML comment names
    params: int
    macs: int
    share: float  # of all MACs
    other_ops: int
    output_of: int | None = None  # placeholder row of a multi-output module: which row, which map
    output_index: int | None = None


@dataclass
class DetailRow:
    """A block or layer inside a YAML row (`depth="block"` / `"layer"`), in execution order."""

    path: str  # module path in the detector, e.g. "4.m.0" (row 4, its first bottleneck)
    row: int
    type: str
    params: int
    macs: int
    other_ops: int
    out: list[int]  # C, H, W of its (first) output
    stride: int | float | None  # its own
    cum_stride: int | float | None
    p_level: int | None
