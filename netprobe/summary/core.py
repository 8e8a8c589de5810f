"""`summarize(model)`: the paper-style stage table of any model, as plain data.

Rows come from the target: a zoo backbone's stage table (stem, stage1..N, head, with the papers'
operator names), or for any other module its top-level children (a container holding most of
the network opened one level) or, with `stages="auto"`, its stages found by structure first and
stride second (see `auto`). Every number in a row is counted on the meta device; strides and
P-levels are the counter's tracked cumulative strides, so they are right at any image size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from torch import nn

from netprobe.archs.builder import Net
from netprobe.counting import OTHER_KINDS, Count, ModuleCount, count, failed_input, failed_module
from netprobe.errors import InputError
from netprobe.frozen import frozen_parameters
from netprobe.reference import TORCHVISION, TORCHVISION_IMGSZ
from netprobe.sizes import as_size
from netprobe.summary.auto import auto_rows
from netprobe.summary.modules import child_groups, deep_rows, group_row
from netprobe.summary.rows import Row, act_mb, make_row
from netprobe.summary.zoo import zoo_deep_rows, zoo_stage_rows
from netprobe.target import DetectorTarget, Target, ZooTarget, resolve

if TYPE_CHECKING:
    from netprobe.detect import DetectorSummary

DEPTHS = ("stage", "block", "layer")
STAGINGS = ("children", "auto")


@dataclass
class Summary:
    """What `netprobe summary` shows; `to_dict()` is its JSON."""

    spec: str  # the target as shown: a spec, an object path, a class name
    kind: str
    canonical: str | None
    input: list[int]
    params: int
    trainable: int
    frozen: list[dict]  # modules holding parameters that do not train: path, type, params, why
    macs: int
    flops: int
    other_ops: int
    other_by_kind: dict[str, int]
    act_mb: float
    stages: list[Row]
    rows: list[Row]  # at the requested depth
    features: list[dict]
    unsupported: dict[str, int]
    outputs: list[list[int]] = field(default_factory=list)  # shapes of the model's outputs
    reference: dict | None = None  # published figures of the plain arch, shown beside ours
    counters: dict[str, int | None] = field(default_factory=dict)  # summarize(counters=...): each one's total
    train: dict | None = None  # with train=True: the train step counted (see train_counts)
    counter_details: dict[str, dict] | None = None  # each counter's split by op kind, its convention, its error
    changed: str | None = None  # the model added or dropped parameters during its forward: what it had before and after
    real_forward: str | None = None  # why this was counted on a real CPU forward (the meta device cannot run it)

    def to_dict(self) -> dict:
        data = asdict(self)
        if self.counter_details is None:
            del data["counter_details"]
        for note in ("changed", "real_forward"):  # said only where it happened (the model changed, or meta failed)
            if data[note] is None:
                del data[note]
        return data


def train_counts(target: Target, model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """One train step counted op by op on meta: forward, backward (grad input and grad weight apart)
    and step MACs, bytes moved, and beside them what torch's FlopCounterMode reports for the same step."""
    from netprobe.counting import count_train, flop_counter_reference

    counted = count_train(model, input_shape)
    fresh = target.meta_model() if any(p.is_meta for p in model.parameters()) else target.real_model()
    reference = flop_counter_reference(fresh, input_shape, counted.loss_kind)
    return {"loss": counted.loss_kind, "fwd_macs": counted.fwd_macs, "bwd_macs": counted.bwd_macs,
            "bwd_input_macs": counted.bwd_input_macs, "bwd_weight_macs": counted.bwd_weight_macs,
            "step_macs": counted.step_macs, "fwd_bytes": counted.fwd_bytes, "bwd_bytes": counted.bwd_bytes,
            "flop_counter": reference,
            "by_module_bwd": {m.path: m.bwd_macs for m in counted.modules.values() if m.bwd_macs}}


def stage_function(target: Target, size: tuple[int, int]) -> Callable[[str], str | None]:
    """Which stage row each module path belongs to, as `summary` lays the model out: the first path
    component for netprobe's backbones and detectors (stem, stage3, a YAML row), the stage rows of
    any other model (its children, a bulk container opened). None: outside every stage."""
    from netprobe.op_kinds import first_component

    if isinstance(target, ZooTarget | DetectorTarget):
        return first_component
    model = target.meta_model()
    result = count(model, (1, target.in_chans, *size))
    prefixes = [(p, g.name) for g in child_groups(model, result) if g.whole for p in g.paths if p]

    def stage_of(path: str) -> str | None:
        return next((name for p, name in prefixes if path == p or path.startswith(p + ".")), None)

    return stage_of


def check_depth(depth: str, stages: str) -> None:
    if depth not in DEPTHS:
        raise InputError(f"depth {depth!r} is not allowed; use {', '.join(DEPTHS)}")
    if stages not in STAGINGS:
        raise InputError(f"stages {stages!r} is not allowed; use {' or '.join(STAGINGS)}")


def summarize(model: object, imgsz: str | int | tuple[int, int] | None = None, batch: int = 1,
              depth: str = "stage", stages: str = "children", in_chans: int | None = None,
              scale: str | None = None, modules: str | None = None, train: bool = False,
              counters: list[str] | tuple[str, ...] = ()) -> Summary | DetectorSummary:
    """Count a model analytically (meta device: no memory, no arithmetic) and lay it out stage by stage.

    `model` is a spec string (`efficientnet_b4:fused=1-3`, `yolov8n-pose:backbone=(efficientnetv2_s)`,
    `path/model.yaml`, `module:pkg.mod:factory`, `file.py:factory`, `timm:NAME`), a `Target`, or an
    `nn.Module`, which is never changed (it is counted on a meta copy). A detector's summary is a
    `DetectorSummary`, one row per YAML row (`scale` and `modules` are a YAML file's options).
    `stages="auto"` finds the stages of any model from its structure and strides (ResNet's stem, layer1-4,
    head; ViT's patch embed, encoder layers, head; a UNet's levels down and back up) instead of its
    top-level children; a block is never split, and a forward's own work sits in its module's row.
    `train=True` also counts a train step's backward op by op (`train`, and `bwd_macs` per row).
    `counters` ("fvcore", "thop", "torchinfo", "native" or "all") counts the same model with other
    libraries too, each by its own convention, beside the native count (`counters`, `counter_details`).
    """
    check_depth(depth, stages)
    if counters:
        from netprobe.counters import counter_names

        counter_names(list(counters))  # an unknown counter is refused before any work
    target = resolve(model, in_chans, scale, modules)
    size = target.input_size(as_size(imgsz))
    target.check_input(size, batch)
    if isinstance(target, DetectorTarget) and stages == "children":
        from netprobe.detect import summarize_detector

        found = summarize_detector(target.detector, size, batch, "row" if depth == "stage" else depth)
        found.spec = target.label
        if train:
            found.train = train_counts(target, target.meta_model(), (batch, target.in_chans, *size))
    else:
        found = _summarize_module(target, size, batch, depth, stages, train)
    if counters:
        from netprobe.counters import reconcile

        reconciled = reconcile(target, tuple(found.input), list(counters))
        found.counters = {name: c.macs for name, c in reconciled.items()}
        found.counter_details = {name: c.to_dict() for name, c in reconciled.items()}
    return found


def _summarize_module(target: Target, size: tuple[int, int], batch: int, depth: str, stages: str,
                      train: bool) -> Summary:
    net, make = target.meta_model(), target.meta_model
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)  # as built, as result.params is
    before = sum(p.numel() for p in net.parameters())
    shape = (batch, target.in_chans, *size)
    try:
        result, real = count_checked(target, net, shape), None
    except InputError as exc:  # data-dependent code (`.item()`) the meta device cannot run: a real CPU forward
        net, result, make, real = _real_count(target, net, shape, exc)
    after = sum(p.numel() for p in net.parameters())
    changed = (f"the model changed itself during its forward: {before:,} parameters before it, {after:,} after "
               "(a module made in forward); Params counts the model as built" if after != before else None)
    if stages == "auto":
        stage_rows, rows = auto_rows(net, result, depth)
    elif isinstance(net, Net):
        stage_rows = zoo_stage_rows(net, result)
        rows = stage_rows if depth == "stage" else zoo_deep_rows(net, result, depth, stage_rows)
    else:
        groups = child_groups(net, result)
        stage_rows = [group_row(g, net, result, "stage") for g in groups]
        rows = stage_rows if depth == "stage" else deep_rows(net, result, depth, groups)
    root = result.modules[""]
    trained = train_counts(target, make(), result.input_shape) if train else None
    if trained:
        own = trained.pop("by_module_bwd")
        for row in {id(r): r for r in [*stage_rows, *rows]}.values():
            row.bwd_macs = sum(own.get(p, 0) for p in row._counted)
    return Summary(
        spec=target.label, kind=target.kind, canonical=target.canonical, input=list(result.input_shape),
        params=result.params, trainable=trainable, changed=changed, real_forward=real,
        frozen=frozen_parameters(net),
        macs=result.macs, flops=2 * result.macs, other_ops=result.other_ops,
        other_by_kind={k: result.by_kind[k] for k in OTHER_KINDS}, act_mb=round(act_mb(result.under("")), 3),
        stages=stage_rows, rows=rows, unsupported=result.unsupported,
        features=_features(net, result, stage_rows), outputs=[list(s) for s in root.out_shapes],
        reference=_reference(target), train=trained,
    )


def _real_count(target: Target, meta: nn.Module, shape: tuple[int, ...], failed: InputError):
    """Where the meta copy failed: a real CPU copy, its count, its maker and a note saying so; the meta
    failure itself where the model was not on meta, or fails on a real forward too."""
    cause = failed.__context__  # the forward's own error (`from None` hides it from tracebacks, not from us)
    if not (any(p.is_meta for p in meta.parameters()) and _meta_cannot(cause)):
        raise failed  # a wrong input fails the same way for real: refused before a real forward's long work
    net = target.real_model()
    try:
        result = count_checked(target, net, shape)
    except InputError:
        raise failed from None
    why = str(failed).split(": ", 1)[-1]
    return net, result, target.real_model, (f"counted on a real CPU forward at {'×'.join(map(str, shape))}: the "
                                            f"meta device cannot run this model ({why})")


def _meta_cannot(exc: BaseException | None) -> bool:
    """Whether a forward failed for want of real values (`.item()`, `nonzero`, an op with no meta kernel)."""
    return isinstance(exc, NotImplementedError) or "meta" in str(exc).lower()


def count_checked(target: Target, net: nn.Module, input_shape: tuple[int, ...]) -> Count:
    """Count, turning a model that fails on this input, or gives back no tensor, into one line naming the
    target, the innermost module that raised (when not the model itself) and the cause."""
    shape = "×".join(map(str, input_shape))
    try:
        result = count(net, input_shape)
    except Exception as exc:
        raise InputError(count_failure(target.label, net, exc, input_shape)) from None
    if not result.modules[""].out_shapes:
        raise InputError(f"{target.label} returns no tensor on an input of {shape} (its forward gave "
                         f"{result.output_type}); a model must return a tensor, or a tuple, list or dict of them")
    return result


def count_failure(label: str, net: nn.Module, exc: BaseException, input_shape: tuple[int, ...]) -> str:
    """One line for a model whose forward failed while being counted: the input, the module running and
    the error, and what that module takes (with --in-chans N where the first layer wants N channels)."""
    first = next(iter(str(exc).strip().splitlines()), "")
    failed = failed_module(exc)
    where = f" in {failed[0]} ({failed[1]})" if failed and failed[0] else ""
    return (f"{label} fails on an input of {'×'.join(map(str, input_shape))}{where}: {type(exc).__name__}"
            + (f": {first[:200]}" if first else "") + _what_it_takes(net, exc, tuple(input_shape)))


def _what_it_takes(net: nn.Module, exc: BaseException, input_shape: tuple[int, ...] = ()) -> str:
    """For a Linear or a conv that refused its input: what it takes beside what it got, e.g.
    '; fc is Linear(in_features=7) and got 1×3×64×64 (last dim 64)'."""
    failed, got = failed_module(exc), failed_input(exc)
    if not failed or not failed[0] or not got:
        return ""
    try:
        module = net.get_submodule(failed[0])
    except AttributeError:
        return ""
    shape = "×".join(map(str, got))
    if isinstance(module, nn.Linear) and got[-1] != module.in_features:
        return (f"; {failed[0]} is {failed[1]}(in_features={module.in_features}) and got {shape} "
                f"(last dim {got[-1]})")
    if isinstance(module, nn.modules.conv._ConvNd) and len(got) > 1 and got[1] != module.in_channels:
        first_layer = tuple(got) == input_shape  # it was given the model's input: --in-chans is the fix
        return (f"; {failed[0]} is {failed[1]}(in_channels={module.in_channels}) and got {shape} "
                f"({got[1]} channels)" + (f": the model's first layer takes {module.in_channels} channel"
                                          f"{'s' * (module.in_channels != 1)}, so add --in-chans {module.in_channels}"
                                          if first_layer else ""))
    return ""


def _reference(target: Target) -> dict | None:
    """torchvision's published params and GMACs for a plain arch (no options), with the size they are for."""
    if not isinstance(target, ZooTarget) or target.spec.options or target.spec.arch not in TORCHVISION:
        return None
    spec = target.spec
    params, gmacs = TORCHVISION[spec.arch]
    return {"source": "torchvision", "params": params, "gmacs": gmacs,
            "imgsz": TORCHVISION_IMGSZ.get(spec.arch, spec.table.imgsz)}


# ---- feature taps -------------------------------------------------------------------------------

def _features(model: nn.Module, result: Count, stages: list[Row]) -> list[dict]:
    """Multi-scale taps a detection neck could consume: a zoo backbone's stages, or for any other
    model the last stage row at each spatial stride."""
    if isinstance(model, Net):
        rows = {r.name: r for r in stages}
        return [_feature(rows[f.name]) if f.name in rows else _feature_of(f.name, result.modules[f.name])
                for f in model.feature_info]
    taps: dict[object, Row] = {}
    for row in stages:
        if row.p_level is not None:
            taps[row.cum_stride] = row
    return [_feature(row) for row in taps.values()]


def _feature(row: Row) -> dict:
    """A multi-scale tap as counted: its channels, cumulative stride and P-level at this input."""
    return {"name": row.name, "channels": row.out[0] if row.out else None, "stride": row.cum_stride,
            "level": f"P{row.p_level}" if row.p_level is not None else "-", "shape": row.out}


def _feature_of(name: str, rec: ModuleCount) -> dict:
    return _feature(make_row(name, "", rec, rec, [rec], 0, "stage"))

