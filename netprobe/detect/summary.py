"""`summarize_detector(spec)`: one record per YAML row, section subtotals, totals and the stride check."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from netprobe.counting import OTHER_KINDS, Count, ModuleCount, pyramid_level, stride_ratio
from netprobe.detect.build import Detector, build_detector, check_bounds, count_at
from netprobe.detect.layers import LayerRow
from netprobe.detect.rows import DetailRow, DetectorRow
from netprobe.detect.spec import DetectorSpec, resolve
from netprobe.detect.stride_check import HeadInput, claim_warnings, head_inputs, head_warning
from netprobe.errors import InputError
from netprobe.frozen import frozen_parameters

SECTIONS = ("backbone", "neck", "head")
DEPTHS = ("row", "block", "layer")
CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")
BN_OPS_PER_ELEMENT = 4  # thop: normalise (2) x affine (2)


@dataclass
class DetectorSummary:
    """What `netprobe summary` shows for a detector; `to_dict()` is its JSON."""

    spec: str  # as given (a Detector or DetectorSpec: its canonical spec)
    name: str
    canonical: str
    input: list[int]
    nc: int
    scale: str | None
    rows: list[DetectorRow]
    sections: dict[str, dict[str, float]]  # backbone / neck / head -> params, macs, share
    params: int
    trainable: int
    frozen: list[dict]  # modules holding parameters that do not train: path, type, params, why
    macs: int  # multiply-accumulates for the whole batch (the papers' "FLOPs")
    flops: int  # 2 x macs
    other_ops: int
    other_by_kind: dict[str, int]
    ultralytics_gflops: float  # per image, ultralytics' convention: see gflops_note
    gflops_note: str
    head_inputs: list[HeadInput]
    warnings: list[str]
    notes: list[str]
    unsupported: dict[str, int]
    published: dict | None = None  # upstream's own figures for an unmodified built-in, labelled
    layout_origin: str = ""
    backbone: str | None = None
    depth: str = "row"
    detail: list[DetailRow] = field(default_factory=list)  # blocks or layers inside the rows, for depth != "row"
    train: dict | None = None  # summarize(..., train=True): the train step counted (summary.train_counts)
    counters: dict[str, int | None] = field(default_factory=dict)  # summarize(counters=...): each one's total
    counter_details: dict[str, dict] | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.counter_details is None:  # no counters asked for: no counter keys
            del data["counters"], data["counter_details"]
        return data


def gflops_note(h: int, w: int) -> str:
    return (f"ultralytics-style GFLOPs = 2 x (conv and linear multiply-accumulates, bias not counted, + "
            f"{BN_OPS_PER_ELEMENT} ops per BatchNorm element) / 1e9, per image at {h}x{w}, inference graph: what "
            "ultralytics' model.info() prints (thop; ultralytics-thop 2.x). thop 0.1.1, used by ultralytics/yolov5 "
            "v7.0, also counted 1 op per nearest-upsample output element (about +0.02%); yolov5 v7.0 profiles a "
            "32x32 image and scales by area, which inflates layers on pooled 1x1 maps (SE blocks).")


def _size(imgsz: int | str | tuple[int, int] | None, default: int) -> tuple[int, int]:
    if imgsz is None:
        return default, default
    if isinstance(imgsz, tuple):
        return imgsz
    parts = str(imgsz).lower().replace("×", "x").split("x")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2):
        raise InputError(f"image size {imgsz!r} is malformed; give N or HxW, e.g. 640 or 640x480")
    return sides[0], sides[-1]


def summarize_detector(spec_or_model: str | DetectorSpec | Detector, imgsz: int | str | tuple[int, int] | None = None,
                       batch: int = 1, depth: str = "row") -> DetectorSummary:
    """Count a detector on the meta device (no memory, no arithmetic) and lay it out row by row.

    `depth="block"` or `"layer"` also lists, in `detail`, the blocks inside every row (its first
    non-container descendants) or its layers (each module's own work, which sums to the totals).
    """
    spec = spec_or_model.spec if isinstance(spec_or_model, Detector) else (
        spec_or_model if isinstance(spec_or_model, DetectorSpec) else resolve(spec_or_model))
    if batch < 1:
        raise InputError(f"batch {batch} is not allowed; batch must be at least 1")
    if depth not in DEPTHS:
        raise InputError(f"depth {depth!r} is not allowed; choose one of {', '.join(DEPTHS)}")
    h, w = check_bounds(spec, _size(imgsz, spec.imgsz))
    model = build_detector(spec, "meta")
    result = count_at(spec, model, (batch, 3, h, w))
    rows = [_row(row, spec, result) for row in spec.layers]
    inputs = head_inputs(spec, rows)
    warnings = [line for line in (head_warning(spec, inputs), claim_warnings(spec, rows)) if line]
    if result.unsupported:
        warnings.append("ops with no counting rule (not in the MACs): " + ", ".join(sorted(result.unsupported)))
    macs = result.macs
    return DetectorSummary(
        spec=spec_or_model if isinstance(spec_or_model, str) else spec.canonical, name=spec.name,
        canonical=spec.canonical, input=[batch, 3, h, w], nc=spec.nc, scale=spec.scale, rows=rows,
        sections=_sections(rows, macs), params=result.params,
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        frozen=frozen_parameters(model), macs=macs, flops=2 * macs,
        other_ops=result.other_ops, other_by_kind={k: result.by_kind[k] for k in OTHER_KINDS},
        ultralytics_gflops=round(ultralytics_gflops(result) / batch, 4), gflops_note=gflops_note(h, w),
        head_inputs=inputs, warnings=warnings, notes=list(spec.notes), unsupported=result.unsupported,
        published=asdict(spec.published) if spec.published else None, layout_origin=spec.origin,
        backbone=spec.backbone, depth=depth, detail=[] if depth == "row" else detail_rows(result, depth),
    )


def ultralytics_gflops(result: Count) -> float:
    """ultralytics' "GFLOPs" from our counts: 2 x (MACs + 4 x BatchNorm elements) / 1e9 (see gflops_note)."""
    return 2 * (result.macs + BN_OPS_PER_ELEMENT * result.by_kind["norm"]) / 1e9


def _row(row: LayerRow, spec: DetectorSpec, result: Count) -> DetectorRow:
    """A row as counted at the summary's input: shapes, and strides as the counter followed them op by op."""
    parent = str(row.output_of if row.output_of is not None else row.index)
    rec = result.modules[parent]
    picks = [row.output_index] if row.output_index is not None else range(len(rec.out_shapes))
    mods = [] if row.output_of is not None else result.under(parent)
    macs = sum(m.macs for m in mods)
    strides = [rec.out_strides[k] for k in picks]
    own = stride_ratio(strides[0], rec.in_stride) if strides and row.output_of is None else None
    return DetectorRow(
        index=row.index, src=list(row.src) if isinstance(row.src, tuple) else row.src, repeats=row.repeats,
        module=row.module, args="" if row.output_of is not None else repr(list(row.args)), section=row.section,
        out=[list(rec.out_shapes[k][1:]) for k in picks], stride=own,
        strides=[stride_ratio(s, (1.0,) * len(s)) if s else None for s in strides],
        p_levels=[pyramid_level(s) for s in strides], claimed_levels=list(row.claims),
        params=sum(m.params for m in mods), macs=macs, share=macs / result.macs if result.macs else 0.0,
        other_ops=sum(m.other_ops for m in mods), output_of=row.output_of, output_index=row.output_index,
    )


def _sections(rows: list[DetectorRow], total_macs: int) -> dict[str, dict[str, float]]:
    out = {}
    for name in SECTIONS:
        part = [r for r in rows if r.section == name]
        macs = sum(r.macs for r in part)
        out[name] = {"params": sum(r.params for r in part), "macs": macs,
                     "share": macs / total_macs if total_macs else 0.0}
    return out


def detail_rows(result: Count, depth: str) -> list[DetailRow]:
    """Blocks (a row's first non-container descendants) or layers (every module's own work: the leaves,
    and what a composite does itself, such as a residual add or a head's decoding)."""
    rows = []
    for path in result.order:
        rec = result.modules[path]
        parts = path.split(".")
        if depth == "layer":
            if rec.params or rec.macs or rec.other_ops:
                rows.append(_detail(result, path, rec, [rec]))
            continue
        parents = [result.modules[".".join(parts[:k])] for k in range(2, len(parts))]
        if len(parts) >= 2 and rec.type not in CONTAINERS and all(p.type in CONTAINERS for p in parents):
            rows.append(_detail(result, path, rec, result.under(path)))
    return rows


def _detail(result: Count, path: str, rec: ModuleCount, mods: list[ModuleCount]) -> DetailRow:
    out_stride = rec.out_stride
    return DetailRow(
        path=path, row=int(path.split(".")[0]), type=rec.type, params=sum(m.params for m in mods),
        macs=sum(m.macs for m in mods), other_ops=sum(m.other_ops for m in mods), out=list(rec.out_shape[1:]),
        stride=stride_ratio(out_stride, rec.in_stride),
        cum_stride=stride_ratio(out_stride, (1.0,) * len(out_stride)) if out_stride else None,
        p_level=pyramid_level(out_stride),
    )
