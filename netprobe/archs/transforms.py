"""Variants as functions from stage table to stage table. None of them knows a model's name."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

from netprobe.archs.table import BlockSpec, NetSpec, make_divisible


def scale(table: NetSpec, width: float = 1.0, depth: float = 1.0) -> NetSpec:
    """Compound scaling: channels x width rounded to multiples of 8, repeats x depth rounded up."""
    if width == 1.0 and depth == 1.0:
        return table
    stages = tuple(
        tuple(replace(row, out=make_divisible(row.out * width), repeats=math.ceil(row.repeats * depth))
              for row in stage)
        for stage in table.stages
    )
    return replace(
        table, stem=make_divisible(table.stem * width), stages=stages,
        head=make_divisible(table.head * width) if table.head else 0,
        head_fc=make_divisible(table.head_fc * width) if table.head_fc else 0,
    )


def fuse_stages(table: NetSpec, stages: Iterable[int], keep_se: bool = False) -> NetSpec:
    """Make exactly `stages` (1-based, after the stem) fused (Fused-MBConv) and every other stage unfused
    (MBConv): each row becomes its kind's twin where it is not yet as asked.

    A stage that becomes fused loses its SE unless `keep_se`: EfficientNetV2's Fused-MBConv has
    none, and the paper's Table 3 parameter counts for fused stages 1-5 and 1-7 fit only that.
    """
    chosen = set(stages)

    def convert(row: BlockSpec, fused: bool) -> BlockSpec:
        if fused == row.fused:
            return row
        if row.kind.twin is None:
            raise ValueError(f"a {row.kind.name} row has no fused form")
        return replace(row, op=row.kind.twin, se=row.se if keep_se or not fused else 0.0)

    return replace(table, stages=tuple(
        tuple(convert(row, i in chosen) for row in stage) for i, stage in enumerate(table.stages, start=1)
    ))


def set_fused_kernel(table: NetSpec, kernel: int) -> NetSpec:
    """Give every Fused-MBConv row kernel `kernel` (the paper leaves the fused kernel of 5x5 stages open)."""
    return replace(table, stages=tuple(
        tuple(replace(row, kernel=kernel) if row.fused else row for row in stage) for stage in table.stages
    ))


def set_se(table: NetSpec, ratio: float) -> NetSpec:
    """Use squeeze-excitation ratio `ratio` in every block (0 removes SE)."""
    return replace(table, stages=tuple(tuple(replace(row, se=ratio) for row in st) for st in table.stages))


def set_act(table: NetSpec, act: str) -> NetSpec:
    """Use activation `act` everywhere, dropping per-row choices (MobileNetV3's ReLU rows)."""
    return replace(table, act=act, stages=tuple(tuple(replace(row, act=None) for row in st) for st in table.stages))
