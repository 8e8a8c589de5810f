"""Detector specs: a built-in name or a YAML file, with options, -> `DetectorSpec` (plain data).

    yolov8n-pose
    yolov8n-pose:backbone=(efficientnet_b4:fused=1-3),nc=20
    yolov3-fpn:backbone=mobilenetv3_large,imgsz=320
    path/to/model.yaml:scale=s,modules=my_blocks.py

Options are `key=value` separated by commas; a backbone spec that has options of its own goes in
parentheses, so it nests and round-trips. `DetectorSpec.canonical` spells every option out and
parses back to the same spec.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import re
from dataclasses import dataclass, field, replace

from netprobe.building import building
from netprobe.detect.builtin import BUILTINS, YAML_TARGET, Builtin, Published
from netprobe.detect.layers import LayerRow, walk
from netprobe.detect.swap import swap_backbone
from netprobe.detect.taps import DETECTOR_TAP_STRIDES
from netprobe.detect.usermodules import load_user_modules
from netprobe.detect.yaml_modules import Scaling
from netprobe.detect.yamlfile import load_model_dict, raw_rows, read_text
from netprobe.errors import NetprobeError, SpecError
from netprobe.spec import parse_spec

BUILTIN_KEYS = ("nc", "imgsz", "backbone")
YAML_KEYS = ("scale", "nc", "imgsz", "backbone", "modules")
SCALE_LETTER = re.compile(r"yolo(?:e-)?v?\d+([nslmx])")  # ultralytics reads the scale off the file name
_NEST_HINT = "a backbone spec with options goes in parentheses, e.g. backbone=(efficientnet_b4:fused=1-3)"


@dataclass(frozen=True)
class DetectorSpec:
    """A detector as plain data: its layer rows after scaling and everything needed to rebuild it."""

    name: str  # built-in name, or the YAML file's stem
    source: str  # "builtin", or the YAML file's path as given
    origin: str  # where the layout comes from
    nc: int
    scale: str | None  # the letter picked from the YAML's `scales`
    depth: float
    width: float
    max_channels: int | None  # None: no cap
    layers: tuple[LayerRow, ...]
    imgsz: int  # default input size (square)
    max_stride: int  # the deepest cumulative stride of any map
    kpt_shape: tuple[int, ...] | None
    backbone: str | None  # the netprobe backbone spec in a Backbone row, if any
    modules: str | None  # --modules file
    canonical: str  # parses back to this spec
    published: Published | None  # upstream's own figures for an unmodified built-in
    notes: tuple[str, ...] = field(default=(), compare=False)  # choices made for the user, one line each

    @property
    def head(self) -> LayerRow:
        return self.layers[-1]

    def section(self, name: str) -> list[LayerRow]:
        """The rows of one section: backbone, neck or head."""
        return [row for row in self.layers if row.section == name]

    @property
    def sections(self) -> dict[str, tuple[int, ...]]:
        """Row indices per section, backbone / neck / head."""
        return {name: tuple(r.index for r in self.section(name)) for name in ("backbone", "neck", "head")}


def resolve(text: str, scale: str | None = None, modules: str | None = None) -> DetectorSpec:
    """Parse a detector spec or load a YAML file (`scale`: --scale, `modules`: --modules FILE.py).

    Malformed input raises `SpecError` (or `InputError` for files that cannot be read), one line each.
    """
    if not isinstance(text, str) or not text.strip():
        raise SpecError("empty detector spec: give a built-in such as yolov8n, or a model .yaml file")
    target, options_text = _split_target(text.strip())
    is_yaml = target not in BUILTINS and YAML_TARGET.match(target) is not None
    options = _parse_options(options_text, target, YAML_KEYS if is_yaml else BUILTIN_KEYS)
    for key, value in (("scale", scale), ("modules", modules)):
        if value is not None:
            _merge_flag(options, key, value, target, is_yaml)
    if target in BUILTINS:
        return _builtin_spec(BUILTINS[target], options)
    if is_yaml:
        return _yaml_spec(target, options)
    raise SpecError(_unknown_detector(target))


# ---- the spec string -------------------------------------------------------------------------------

def _split_target(text: str) -> tuple[str, str]:
    yaml_match = YAML_TARGET.match(text)
    if yaml_match and text.partition(":")[0].strip() not in BUILTINS:
        return yaml_match.group(1).strip(), (yaml_match.group(2) or "").strip()
    name, _, rest = text.partition(":")
    return name.strip(), rest.strip()


def _split_top(text: str) -> list[str]:
    """Split at commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            raise SpecError(f"options {text!r}: a ')' closes nothing; {_NEST_HINT}")
        if ch == "," and depth == 0:
            parts.append(text[start:k])
            start = k + 1
    if depth:
        raise SpecError(f"options {text!r}: a '(' is never closed; {_NEST_HINT}")
    return [*parts, text[start:]]


def _parse_options(text: str, target: str, allowed: tuple[str, ...]) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in _split_top(text) if text else []:
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq:
            raise SpecError(f"option {part.strip()!r} of {target} has no value; write key=value ({_NEST_HINT})")
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise SpecError(f"unknown key {key!r} for {target}: {hint}allowed keys are {', '.join(allowed)} "
                            f"({_NEST_HINT})")
        if key in options:
            raise SpecError(f"key {key!r} is given twice in {target}")
        if value.startswith("(") and value.endswith(")"):
            value = value[1:-1].strip()
        options[key] = value
    return options


def _merge_flag(options: dict[str, str], key: str, value: str, target: str, is_yaml: bool) -> None:
    if not is_yaml:
        raise SpecError(f"--{key} applies to a model YAML file, not to the built-in {target}"
                        + (f" (pick the scale by name, e.g. {_rescaled(target)})" if key == "scale" else ""))
    if key in options and options[key] != value:
        raise SpecError(f"{key} is given twice, {options[key]!r} in the spec and {value!r} as --{key}")
    options[key] = value


def _rescaled(name: str) -> str:
    return re.sub(r"(\d)[nslmx]", r"\1s", name, count=1)


def _unknown_detector(name: str) -> str:
    close = difflib.get_close_matches(name, list(BUILTINS), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (f"unknown detector {name!r}: {hint}built-ins are {', '.join(BUILTINS)}; "
            "or give a model .yaml file")


def _int_option(key: str, text: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise SpecError(f"{key}={text!r} is not allowed: {key} must be an integer from {lo} to {hi}")
    return value


def _backbone_option(text: str) -> str:
    from netprobe.detect.builtin import is_detector

    if is_detector(text):  # a detector nested as a backbone: say so at once, before anything is built
        raise SpecError(f"backbone {text!r} is a detector, not a backbone; give a netprobe backbone spec, e.g. "
                        "backbone=(efficientnet_b0) ('netprobe list' shows them)")
    try:
        parsed = parse_spec(text)
    except NetprobeError as exc:
        raise SpecError(f"backbone {text!r}: {exc}") from None
    have = sorted(set(parsed.table.stage_strides()))
    for stride in DETECTOR_TAP_STRIDES:  # what every neck reads, checked on the table before building anything
        if stride not in have:
            raise SpecError(f"backbone {str(parsed)!r} has no stride-{stride} stage (its strides: "
                            f"{', '.join(map(str, have))}); a detector needs taps at strides "
                            f"{', '.join(map(str, DETECTOR_TAP_STRIDES))}")
    return str(parsed)


def _nested(spec: str) -> str:
    return f"({spec})" if any(c in spec for c in ":,=()") else spec


# ---- from options to a spec ------------------------------------------------------------------------

def _builtin_spec(builtin: Builtin, options: dict[str, str]) -> DetectorSpec:
    text = builtin.layout
    data = load_model_dict(text, builtin.name)
    data.update(dict(builtin.overrides))
    default_nc = data["nc"]
    spec = _assemble(builtin.name, "builtin", builtin.origin, data, text, builtin.scale, options, builtin.imgsz)
    unmodified = "backbone" not in options and spec.nc == default_nc
    return replace(spec, published=builtin.published) if unmodified else spec


def _yaml_spec(path: str, options: dict[str, str]) -> DetectorSpec:
    text = read_text(path)
    data = load_model_dict(text, path)
    stem = re.split(r"[\\/]", path)[-1].rsplit(".", 1)[0]
    scale = options.get("scale")
    if scale is None and isinstance(data.get("scales"), dict):
        found = SCALE_LETTER.search(stem)
        scale = found.group(1) if found and found.group(1) in data["scales"] else None
    return _assemble(stem, path, path, data, text, scale, options, 640)


def _scaling(data: dict, scale: str | None, where: str) -> tuple[Scaling, str | None, list[str]]:
    """Width, depth and channel cap from `scales[scale]` or depth_multiple / width_multiple."""
    scales = data.get("scales")
    notes = []
    if isinstance(scales, dict) and scales:
        if scale is None:
            scale = next(iter(scales))
            notes.append(f"{where}: no scale in the file name or --scale; using '{scale}', the first of "
                         f"{', '.join(map(str, scales))}")
        if scale not in scales:
            names = [str(k) for k in scales]
            valid = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
            raise SpecError(f"{where}: scale {scale!r} is not in its scales; give --scale {valid}")
        depth, width, max_channels = [*scales[scale], math.inf][:3]
        return Scaling(float(depth), float(width), max_channels), scale, notes
    if scale is not None:
        raise SpecError(f"{where} has no 'scales' table; --scale applies to files that have one")
    return Scaling(float(data.get("depth_multiple", 1.0)), float(data.get("width_multiple", 1.0))), None, notes


def _unscaled_width(data: dict) -> int | None:
    """The one output width that is never scaled: na * (nc + 5) with anchors (yolov5), else none."""
    anchors = data.get("anchors")
    if anchors is None:
        return None
    na = len(anchors[0]) // 2 if isinstance(anchors, list) else int(anchors)
    return na * (data["nc"] + 5)


def _globals(data: dict, scale: str | None, where: str) -> tuple[Scaling, str | None, list[str]]:
    """The YAML's scaling and output-width globals; a malformed one is a one-line `SpecError`."""
    try:
        scaling, scale, notes = _scaling(data, scale, where)
        unscaled = _unscaled_width(data)
        if "kpt_shape" in data:
            data["kpt_shape"] = tuple(int(k) for k in data["kpt_shape"])
    except NetprobeError:
        raise  # already one line of its own (an unknown --scale): not a malformed table
    except (TypeError, ValueError, IndexError, KeyError) as exc:
        raise SpecError(f"{where}: malformed scales, depth_multiple, width_multiple, anchors or kpt_shape "
                        f"({type(exc).__name__}: {exc}); see an upstream YAML such as yolov8.yaml") from None
    return Scaling(scaling.depth, scaling.width, scaling.max_channels, unscaled), scale, notes


def _assemble(name: str, source: str, origin: str, data: dict, text: str, scale: str | None,
              options: dict[str, str], imgsz: int) -> DetectorSpec:
    where = name if source == "builtin" else source
    if "nc" in options:
        data["nc"] = _int_option("nc", options["nc"], 1, 100_000)
    imgsz = _int_option("imgsz", options["imgsz"], 1, 8192) if "imgsz" in options else imgsz
    backbone = _backbone_option(options["backbone"]) if "backbone" in options else None  # checked before building
    scaling, scale, notes = _globals(data, scale, where)
    user = load_user_modules(options["modules"]) if "modules" in options else None
    raw = raw_rows(data, text, where)
    with building(where) if user else contextlib.nullcontext():  # a user's blocks run in the walk
        rows = walk(raw, scaling, data, user, where)
        if backbone is not None:
            rows = walk(swap_backbone(raw, rows, backbone, where), scaling, data, user, where)
    rows[-1:] = [_as_head(rows[-1])]
    spec = DetectorSpec(
        name=name, source=source, origin=origin, nc=data["nc"], scale=scale, depth=scaling.depth,
        width=scaling.width, max_channels=None if math.isinf(scaling.max_channels) else int(scaling.max_channels),
        layers=tuple(rows), imgsz=imgsz,
        max_stride=math.ceil(max((s for r in rows for s in r.strides), default=1)),
        kpt_shape=data.get("kpt_shape"),
        backbone=next((str(r.args[0]) for r in rows if r.module == "Backbone" and r.args), None),
        modules=options.get("modules"), canonical="", published=None, notes=tuple(notes),
    )
    return replace(spec, canonical=_canonical(spec))


def _as_head(row: LayerRow) -> LayerRow:
    """The last row is the detector's head, whatever its kind (a user's head class too)."""
    return row if row.section == "head" else replace(row, section="head", out_channels=(), strides=())


def _canonical(spec: DetectorSpec) -> str:
    parts = []
    if spec.source != "builtin" and spec.scale is not None:
        parts.append(f"scale={spec.scale}")
    if spec.backbone is not None:  # swapped in, or the layout's own Backbone row (yolov3-fpn)
        parts.append(f"backbone={_nested(spec.backbone)}")
    parts += [f"nc={spec.nc}", f"imgsz={spec.imgsz}"]
    if spec.modules is not None:
        parts.append(f"modules={spec.modules}")
    target = spec.name if spec.source == "builtin" else spec.source
    return f"{target}:{','.join(parts)}"
