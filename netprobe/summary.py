"""`summarize(spec)`: the paper-style stage table of a backbone, as plain data."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from netprobe.api import build
from netprobe.archs.builder import Net
from netprobe.archs.table import BlockSpec
from netprobe.counting import OTHER_KINDS, Count, ModuleCount, count, pyramid_level, stride_ratio
from netprobe.errors import InputError
from netprobe.reference import TORCHVISION, TORCHVISION_IMGSZ
from netprobe.spec import Spec, parse_spec

DEPTHS = ("stage", "block", "layer")
BYTES_PER_ELEM = 4  # activation memory is given for fp32
MB = 2**20


@dataclass
class Row:
    """One line of the stage table: a stage, a block or a layer, with its own counts."""

    name: str
    op: str
    repeats: int
    kernel: int | list[int]
    stride: int
    expand: float | list[float]
    se: float | list[float]
    out: list[int]  # C, H, W of this row's output
    p_level: int | None  # log2 of the output's cumulative stride (8 -> 3); None without a spatial map
    params: int
    macs: int
    share: float  # of all MACs
    other_ops: int
    act_mb: float  # fp32 outputs of the leaf layers inside: what backward keeps
    level: str = "stage"


@dataclass
class Summary:
    """What `netprobe summary` shows; `to_dict()` is its JSON."""

    spec: str
    canonical: str
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
    reference: dict | None = None  # published figures of the plain arch, shown beside ours
    counters: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_imgsz(text: str | int | None, default: int) -> tuple[int, int]:
    """'384' or '384x320' (H x W) -> (H, W); None -> the arch's own size."""
    if text is None:
        return default, default
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"image size {text!r} is not a number; give N or HxW, e.g. 384 or 384x320") from None
    if len(sizes) not in (1, 2):
        raise InputError(f"image size {text!r} is malformed; give N or HxW, e.g. 384 or 384x320")
    return (sizes[0], sizes[-1])


def check_input(spec: Spec, imgsz: tuple[int, int], batch: int) -> None:
    """Refuse sizes that leave a stage without pixels, and non-positive batches, with one line."""
    smallest = spec.table.min_imgsz()
    if min(imgsz) < smallest:
        size = "x".join(str(s) for s in imgsz)
        raise InputError(f"image size {size} is too small: {spec.arch} downsamples by {smallest}, "
                         f"so each side must be at least {smallest}")
    if max(imgsz) > 8192:
        raise InputError(f"image size {max(imgsz)} is too large; at most 8192 per side")
    if batch < 1:
        raise InputError(f"batch {batch} is not allowed; batch must be at least 1")


def summarize(spec: str | Spec, imgsz: str | int | None = None, batch: int = 1, depth: str = "stage") -> Summary:
    """Count a backbone analytically (meta device: no memory, no arithmetic) and lay it out stage by stage."""
    parsed = spec if isinstance(spec, Spec) else parse_spec(spec)
    size = parse_imgsz(imgsz, parsed.table.imgsz)
    check_input(parsed, size, batch)
    model = build(parsed, device="meta")
    result = count(model, (batch, 3, *size))
    stages = _stage_rows(model, result)
    rows = stages if depth == "stage" else _deep_rows(model, result, depth, stages)
    params = result.params
    return Summary(
        spec=str(parsed), canonical=parsed.canonical, input=[batch, 3, *size], params=params,
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad), macs=result.macs,
        flops=2 * result.macs, other_ops=result.other_ops,
        other_by_kind={k: result.by_kind[k] for k in OTHER_KINDS}, act_mb=sum(r.act_mb for r in stages),
        stages=stages, rows=rows, unsupported=result.unsupported,
        features=[_feature(f.name, result.modules[f.name]) for f in model.feature_info],
        reference=_reference(parsed),
    )


def _feature(name: str, rec: ModuleCount) -> dict:
    """A multi-scale tap as counted: its channels, cumulative stride and P-level at this input."""
    level = pyramid_level(rec.out_stride)
    return {"name": name, "channels": rec.out_shape[1], "stride": stride_ratio(rec.out_stride, (1.0,)),
            "level": f"P{level}" if level is not None else "-", "shape": list(rec.out_shape[1:])}


def _reference(spec: Spec) -> dict | None:
    """torchvision's published params and GMACs for a plain arch (no options), with the size they are for."""
    if spec.options or spec.arch not in TORCHVISION:
        return None
    params, gmacs = TORCHVISION[spec.arch]
    return {"source": "torchvision", "params": params, "gmacs": gmacs,
            "imgsz": TORCHVISION_IMGSZ.get(spec.arch, spec.table.imgsz)}


def _totals(mods: list[ModuleCount]) -> tuple[int, int, int, float]:
    params = sum(m.params for m in mods)
    macs = sum(m.macs for m in mods)
    other = sum(m.other_ops for m in mods)
    act = sum(m.leaf_out_elems for m in mods) * BYTES_PER_ELEM / MB
    return params, macs, other, act


def _uniform(values: list):
    return values[0] if len(set(values)) == 1 else values


def _make_row(name: str, op: str, rows: list[BlockSpec], stride: int, rec: ModuleCount, mods: list[ModuleCount],
              total_macs: int, level: str, repeats: int | None = None) -> Row:
    params, macs, other, act = _totals(mods)
    return Row(
        name=name, op=op, repeats=repeats if repeats is not None else sum(r.repeats for r in rows),
        kernel=_uniform([r.kernel for r in rows]), stride=stride, expand=_uniform([r.expand for r in rows]),
        se=_uniform([r.se for r in rows]), out=list(rec.out_shape[1:]), p_level=pyramid_level(rec.out_stride),
        params=params, macs=macs, share=macs / total_macs if total_macs else 0.0, other_ops=other,
        act_mb=round(act, 3), level=level,
    )


def _stage_rows(model: Net, result: Count) -> list[Row]:
    table, total = model.table, result.macs
    rows = []
    stem = BlockSpec("conv", 1, 3, 2, 1, table.stem)
    rows.append(_make_row("stem", "Conv3x3", [stem], 2, result.modules["stem"], result.under("stem"), total, "stage"))
    for i, stage in enumerate(table.stages, start=1):
        name = f"stage{i}"
        op = " / ".join(dict.fromkeys(r.paper_name() for r in stage))
        stride = math.prod(r.stride for r in stage)
        rows.append(_make_row(name, op, list(stage), stride, result.modules[name], result.under(name), total, "stage"))
    head_op = "Conv1x1 & Pooling" + (" & FC" if table.classes else "")
    head = BlockSpec("conv", 1, 1, 1, 1, table.head)
    rows.append(_make_row("head", head_op, [head], 1, result.modules["head"], result.under("head"), total, "stage"))
    return rows


def _deep_rows(model: Net, result: Count, depth: str, stages: list[Row]) -> list[Row]:
    """Rows per block (`depth='block'`) or per layer (`depth='layer'`), in execution order."""
    total = result.macs
    block_specs = _block_specs(model)
    rows: list[Row] = []
    for path, rec in result.modules.items():
        parts = path.split(".") if path else []
        if depth == "block" and path in ("stem", "head"):
            rows.append(next(replace(r, level="block") for r in stages if r.name == path))
            continue
        if depth == "block":
            is_row = len(parts) == 2 and parts[0].startswith("stage")
        else:
            is_row = bool(parts) and (rec.params or rec.macs or rec.other_ops) and (
                rec.leaf_out_elems or rec.other_ops)
        if not is_row:
            continue
        mods = result.under(path) if depth == "block" else [rec]
        spec_row = block_specs.get(path)
        if spec_row is not None:
            op, rows_ = spec_row.paper_name(), [spec_row]
        else:
            op, rows_ = _layer_op(model, path, rec), []
        row = _make_row(path, op, rows_ or [BlockSpec("conv", 1, 0, 1, 1, 0)], 1, rec, mods, total, depth,
                        repeats=1)
        if not rows_:
            row.kernel, row.expand, row.se = _layer_kernel(model, path), 0, 0
        row.stride = stride_ratio(rec.out_stride, rec.in_stride) or 1
        rows.append(row)
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


def _layer_op(model: Net, path: str, rec: ModuleCount) -> str:
    m = model.get_submodule(path)
    if rec.type == "Conv2d":
        k = m.kernel_size[0]
        kind = "DWConv" if m.groups > 1 and m.groups == m.in_channels else "Conv"
        return f"{kind}{k}x{k}"
    if rec.type in ("MBConv", "FusedMBConv"):
        return rec.type + " residual add"
    if rec.type == "SqueezeExcite":
        return "SE scale"
    return rec.type


def _layer_kernel(model: Net, path: str) -> int:
    m = model.get_submodule(path)
    return m.kernel_size[0] if hasattr(m, "kernel_size") and isinstance(m.kernel_size, tuple) else 0


