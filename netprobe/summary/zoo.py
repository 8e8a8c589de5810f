"""A netprobe backbone's stage table as the papers print it: stem, stage1..N, head, operators by name."""

from __future__ import annotations

from dataclasses import asdict, replace

from netprobe.archs.builder import Net
from netprobe.archs.table import BlockSpec
from netprobe.counting import Count
from netprobe.summary.rows import Row, layer_rows, make_row


def _uniform(values: list):
    return values[0] if len(set(values)) == 1 else values


def _zoo_fields(rows: list[BlockSpec], repeats: int | None = None) -> dict:
    return {"repeats": repeats if repeats is not None else sum(r.repeats for r in rows),
            "kernel": _uniform([r.kernel for r in rows]), "expand": _uniform([r.expand for r in rows]),
            "se": _uniform([r.se for r in rows])}


def _single(kernel: int) -> dict:
    """The fields of a one-layer row (the stem, the head): one conv of `kernel`, no expansion, no SE."""
    return {"repeats": 1, "kernel": kernel, "expand": 1, "se": 0.0}


def zoo_stage_rows(model: Net, result: Count) -> list[Row]:
    table, total = model.table, result.macs
    k = table.stem_kernel
    rows = [_named(result, "stem", f"Conv{k}x{k}" + (" & MaxPool" if table.stem_pool else ""), total, _single(k))]
    for i, stage in enumerate(table.stages, start=1):
        op = " / ".join(dict.fromkeys(r.paper_name() for r in stage))
        rows.append(_named(result, f"stage{i}", op, total, _zoo_fields(list(stage))))
    head_op = ("Conv1x1 & " if table.head else "") + "Pooling" + (" & FC" if table.classes else "")
    rows.append(_named(result, "head", head_op, total, _single(1)))
    return rows


def _named(result: Count, path: str, op: str, total: int, fields: dict, level: str = "stage") -> Row:
    rec = result.modules[path]
    return make_row(path, op, rec, rec, result.under(path), total, level, **fields)


def zoo_deep_rows(model: Net, result: Count, depth: str, stages: list[Row]) -> list[Row]:
    """Rows per block (the papers' operator names) or per layer, in execution order."""
    if depth == "layer":
        return layer_rows(model, result)
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
                specs[f"stage{i}.{j}"] = row if r == 0 else replace(row, repeats=1, stride=1)
                j += 1
    return specs

