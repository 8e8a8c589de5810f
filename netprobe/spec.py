"""Spec strings: `ARCH[:key=value,...]` -> stage table, and any stage table -> its canonical spec.

    efficientnet_b4:fused=1-3            the paper's "Fused stage1-3"
    efficientnetv2_s:width=0.5,depth=0.5
    custom:stem=24,stages=fmb_r2_k3_s1_e1_c24/mb_r4_k3_s2_e4_c48_se0.25,head=1280

A `custom` spec lists the stage table itself: stages separated by '/', rows of one stage by
'+', each row `OP_rREPEATS_kKERNEL_sSTRIDE_eEXPAND_cCHANNELS[_seRATIO][_ACT]` with OP `mb`
(MBConv) or `fmb` (Fused-MBConv), in the spirit of timm's and the official EfficientNetV2
block strings. Every table prints as such a `custom` spec (its canonical form), which parses
back to the same table.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from netprobe import defaults
from netprobe.archs import transforms
from netprobe.archs.block_kinds import BLOCK_KINDS, OPS, num_text
from netprobe.archs.table import ACTS, SE_STYLES, BlockSpec, NetSpec, expanded_channels
from netprobe.archs.zoo import ARCHS
from netprobe.errors import SpecError, closest, quote

CUSTOM = "custom"
MAX_CHANNELS = 8192


@dataclass(frozen=True)
class Spec:
    """A parsed spec: the arch, its options as given (normalised), and the stage table they describe."""

    arch: str
    options: tuple[tuple[str, str], ...]
    table: NetSpec

    def __str__(self) -> str:
        return self.arch + (":" + ",".join(f"{k}={v}" for k, v in self.options) if self.options else "")

    @property
    def canonical(self) -> str:
        """The full spec: every stage, block and setting spelled out; parses back to the same table."""
        return format_table(self.table)


# ---- values -------------------------------------------------------------------------------------

def _number(key: str, text: str, kind: type, lo: float, hi: float, lo_open: bool = False) -> float:
    try:
        value = kind(text)
    except (ValueError, OverflowError):
        value = None
    if value is None or not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
        what = "an integer" if kind is int else "a number"
        bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
        name = key.rsplit(": ", 1)[-1]  # "block 'mb_r99_c8': repeats" -> "repeats"
        raise SpecError(f"{key}={quote(text)} is not allowed: {name} must be {what} {bound} and <= {hi:g}")
    return value


def _choice(key: str, text: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise SpecError(f"{key}={quote(text)} is not allowed: choose one of {', '.join(allowed)}")
    return text


def _stage_set(text: str, num_stages: int, arch: str) -> tuple[int, ...]:
    """'1-3', '2,4', '1-3,5', 'all', 'none' -> sorted stage numbers (1-based, after the stem)."""
    if text == "all":
        return tuple(range(1, num_stages + 1))
    if text == "none":
        return ()
    chosen: set[int] = set()
    for part in text.split(","):
        match = _STAGE_RANGE.fullmatch(part)
        if not match:
            what = "an empty entry (two commas, or one at the end)" if not part.strip() else \
                f"{quote(part)} is not a stage number or range"
            raise SpecError(f"fused={quote(text)}: {what}; use e.g. fused=1-3, fused=2,4, fused=all or fused=none")
        a = int(match[1])
        b = int(match[2]) if match[2] else a
        if a > b:
            raise SpecError(f"fused={quote(text)}: {a}-{b} is a reversed range; write it low to high, {b}-{a}")
        if not 1 <= a <= b <= num_stages:
            stages = f"{a}-{b}" if match[2] else str(a)
            raise SpecError(f"fused={quote(text)}: stages {stages} do not exist; {arch} has stages 1-{num_stages}")
        chosen.update(range(a, b + 1))
    return tuple(sorted(chosen))


# A stage number or a range of them, ASCII digits only (int() would also take '-3', '٣' or '1_0').
_STAGE_RANGE = re.compile(r"[ \t]*([0-9]{1,4})[ \t]*(?:-[ \t]*([0-9]{1,4})[ \t]*)?")


def _format_stage_set(stages: tuple[int, ...], num_stages: int) -> str:
    if not stages:
        return "none"
    if len(stages) == num_stages:
        return "all"
    runs: list[list[int]] = []
    for s in stages:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# ---- block strings ------------------------------------------------------------------------------

def parse_block(text: str) -> BlockSpec:
    """One stage-table row from its block string, e.g. 'fmb_r4_k3_s2_e4_c48' or 'bottleneck_r3_c256'.

    The first token is the block kind (`archs.block_kinds`); only it and `c` are required. `r`, `k` and `s`
    default to 1, 3 and 1, `e` to the kind's own (1; a bottleneck's 0.25), the SE ratio to 0 (none)
    and the activation to the network's. A field the kind does not take is an error.
    """
    tokens = text.strip().split("_")
    op = tokens[0]
    shown = quote(text)
    if op not in OPS:
        names = [f"{k.op} ({k.name})" for k in BLOCK_KINDS.values()]
        known = ", ".join(names[:-1]) + f" or {names[-1]}"
        raise SpecError(f"block {shown}: operator {quote(op)} unknown; use {known}: "
                        f"{BLOCK_KINDS['mb'].grammar}")
    kind = BLOCK_KINDS[op]
    got: dict[str, str] = {}
    for tok in tokens[1:]:
        if tok in ACTS:
            key, value = "act", tok
        elif tok.startswith("se"):
            key, value = "se", tok[2:]
        elif tok[:1] in ("r", "k", "s", "e", "c"):
            key, value = tok[0], tok[1:]
        else:
            raise SpecError(f"block {shown}: field {quote(tok)} unknown; a block reads {kind.grammar}")
        if key not in kind.fields:
            raise SpecError(f"block {shown}: field {quote(tok)} does not apply to a {kind.name}; it reads "
                            f"{kind.grammar}")
        if key in got:
            raise SpecError(f"block {shown}: field {key!r} given twice")
        got[key] = value
    if "c" not in got:
        raise SpecError(f"block {shown}: output channels missing (cN); a block reads {kind.grammar}")
    kernel = int(_number(f"block {shown}: kernel", got.get("k", "3"), int, 1, 15))
    if kernel % 2 == 0:
        raise SpecError(f"block {shown}: kernel k{kernel} is even; use an odd kernel (1, 3, 5, 7, ...)")
    stride = int(_number(f"block {shown}: stride", got.get("s", "1"), int, 1, 2))
    return BlockSpec(
        op=op,
        repeats=int(_number(f"block {shown}: repeats", got.get("r", "1"), int, 1, MAX_REPEATS)),
        kernel=kernel,
        stride=stride,
        expand=float(_number(f"block {shown}: expansion", got.get("e", num_text(kind.expand_default)), float, 0, 16,
                             lo_open=True)),
        out=int(_number(f"block {shown}: channels", got["c"], int, 1, MAX_CHANNELS)),
        se=float(_number(f"block {shown}: SE ratio", got.get("se", "0"), float, 0, 1)),
        act=got.get("act"),
    )


# A block's repeats: what a scaled table can reach (V2-XL's 32 at depth=8 is 256; an inline r64 at
# depth=8, 512), so that every canonical spec parses back.
MAX_REPEATS = 512


def format_block(row: BlockSpec) -> str:
    """A row's block string: every field its kind takes, spelled out (SE and activation when set)."""
    values = {"r": f"r{row.repeats}", "k": f"k{row.kernel}", "s": f"s{row.stride}", "e": f"e{num_text(row.expand)}",
              "c": f"c{row.out}", "se": f"se{num_text(row.se)}" if row.se else "", "act": row.act or ""}
    return "_".join([row.op, *(values[f] for f in row.kind.fields if values[f])])


def parse_stages(text: str) -> tuple[tuple[BlockSpec, ...], ...]:
    """Stages separated by '/', rows of one stage by '+'."""
    stages = text.split("/")
    if len(stages) > 16 or any(st.count("+") >= 16 for st in stages):
        raise SpecError("stages: at most 16 stages of at most 16 rows each")
    for i, stage in enumerate(stages, start=1):
        if not stage.strip():
            raise SpecError(f"stages={quote(text)}: stage {i} is empty (a '/' at an end or two in a row); "
                            "separate stages with one '/'")
        for j, row in enumerate(stage.split("+"), start=1):
            if not row.strip():
                raise SpecError(f"stages={quote(text)}: row {j} of stage {i} is empty (a '+' at an end or two in "
                                "a row); separate rows with one '+'")
    return tuple(tuple(parse_block(b) for b in st.split("+")) for st in stages)


def format_table(table: NetSpec) -> str:
    """The canonical `custom:` spec of a stage table (the stem's kernel and pool only where not the default)."""
    stages = "/".join("+".join(format_block(r) for r in st) for st in table.stages)
    stem = f"{table.stem}" + (f",stem_kernel={table.stem_kernel}" if table.stem_kernel != 3 else "") + (
        ",stem_pool=1" if table.stem_pool else "")
    return (f"{CUSTOM}:stem={stem},stages={stages},head={table.head},head_fc={table.head_fc},"
            f"act={table.act},se_style={table.se_style},classes={table.classes},"
            f"drop_path={num_text(table.drop_path)},dropout={num_text(table.dropout)},imgsz={table.imgsz}")


# ---- options ------------------------------------------------------------------------------------

def _int_key(lo: int, hi: int) -> Callable[[str, str], int]:
    return lambda key, text: int(_number(key, text, int, lo, hi))


def _float_key(lo: float, hi: float, lo_open: bool = False) -> Callable[[str, str], float]:
    return lambda key, text: float(_number(key, text, float, lo, hi, lo_open))


def _fraction(key: str, text: str) -> float:
    value = _number(key, text, float, 0, 1)
    if value == 1:
        raise SpecError(f"{key}={quote(text)} is not allowed: {key} must be >= 0 and < 1")
    return float(value)


def _fused_kernel(key: str, text: str) -> int:
    return 0 if text == "keep" else _odd_kernel(key, text, "'keep' or ")


def _odd_kernel(key: str, text: str, other: str = "") -> int:
    kernel = int(_number(key, text, int, 1, 15))
    if kernel % 2 == 0:
        raise SpecError(f"{key}={quote(text)} is not allowed: use {other}an odd kernel (1, 3, 5, 7)")
    return kernel


# Keys that describe the table itself (a custom spec needs them; for a named arch they override).
_TABLE_KEYS: dict[str, Callable[[str, str], object]] = {
    "stem": _int_key(1, MAX_CHANNELS),
    "stem_kernel": _odd_kernel,
    "stem_pool": lambda key, text: bool(_int_key(0, 1)(key, text)),
    "stages": lambda key, text: parse_stages(text),
    "head": _int_key(0, MAX_CHANNELS),
    "head_fc": _int_key(0, MAX_CHANNELS),
    "act": lambda key, text: _choice(key, text, ACTS),
    "se_style": lambda key, text: _choice(key, text, SE_STYLES),
    "classes": _int_key(0, 100_000),
    "drop_path": _fraction,
    "dropout": _fraction,
    "imgsz": _int_key(1, 8192),
}
# Keys that transform a table (a named arch's or a custom one).
_VARIANT_KEYS: dict[str, Callable[[str, str], object]] = {
    "width": _float_key(0, 8, lo_open=True),
    "depth": _float_key(0, 8, lo_open=True),
    "fused": lambda key, text: text,  # checked against the number of stages once the table is known
    "fused_kernel": _fused_kernel,
    "fused_se": lambda key, text: _choice(key, text, ("drop", "keep")),
    "se": _float_key(0, 1),
}
_NAMED_KEYS = (*_VARIANT_KEYS, "act", "classes", "drop_path", "dropout", "imgsz")
_CUSTOM_KEYS = (*_TABLE_KEYS, *_VARIANT_KEYS)


def _split_options(text: str) -> list[tuple[str, str]]:
    """'fused=2,4,width=0.5' -> [('fused', '2,4'), ('width', '0.5')]: a part without '=' continues a value."""
    pairs: list[list[str]] = []
    parts = text.split(",")
    for i, part in enumerate(parts):
        if "=" in part:
            key, _, value = part.partition("=")
            pairs.append([key.strip(), value.strip()])
        elif pairs and part.strip():
            pairs[-1][1] += "," + part.strip()
        elif not part.strip():
            where = "at the end" if i == len(parts) - 1 else "at the start" if i == 0 else "between two commas"
            raise SpecError(f"options {quote(text)}: an empty option {where}; remove the extra comma")
        else:
            raise SpecError(f"option {quote(part)} has no value; write key=value, e.g. width=0.5")
    return [(k, v) for k, v in pairs]


_ALIASES = {"efficientnet_v2_s": "efficientnetv2_s", "efficientnet_v2_m": "efficientnetv2_m",
            "efficientnet_v2_l": "efficientnetv2_l", "mobilenet_v3_large": "mobilenetv3_large",
            "mobilenet_v3_small": "mobilenetv3_small", "mobilenetv3_large_100": "mobilenetv3_large",
            "mobilenetv3_small_100": "mobilenetv3_small"}  # torchvision's and timm's names of the zoo's nets


def zoo_alias(name: str) -> tuple[str, str] | None:
    """A timm or torchvision name of a zoo net (`efficientnet_b0.ra_in1k`, `tf_efficientnetv2_s`,
    `mobilenet_v3_large`): (the zoo arch, a line saying so); None when it names none."""
    base = name.strip().partition(".")[0]  # timm's pretrained tag (.ra_in1k) names weights, not a layout
    tf = base.startswith("tf_")
    base = _ALIASES.get(base.removeprefix("tf_"), base.removeprefix("tf_"))
    if base == name or base not in ARCHS:
        return None
    padding = (" (timm's tf_ models pad as TensorFlow's 'same' does, asymmetrically; netprobe builds PyTorch's "
               "symmetric padding: the same shapes, parameters and MACs, not the same outputs)") if tf else ""
    return base, f"{name} is {base} in netprobe's zoo: counted and timed as {base}{padding}, no weights"


def unknown_arch_message(name: str, extra: tuple[str, ...] = ()) -> str:
    """'unknown arch': the nearest names by edit distance (ignoring case), else every known one."""
    names = [*ARCHS, CUSTOM, *extra]
    close = closest(name, names)
    if close:
        return f"unknown arch {quote(name)}: did you mean {' or '.join(close)}? ('netprobe list' shows them all)"
    return (f"unknown arch {quote(name)}: known: {', '.join(names)}; any other model: module:pkg.mod:factory, "
            "path/to/file.py:factory or timm:NAME")


def parse_spec(text: str) -> Spec:
    """Parse `ARCH[:key=value,...]` into a `Spec`; anything malformed raises `SpecError` (one line)."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("empty spec: give an arch name such as efficientnetv2_s, optionally with :key=value,...")
    arch, _, rest = text.strip().partition(":")
    arch = arch.strip()
    if arch != CUSTOM and arch not in ARCHS and zoo_alias(arch):
        arch = zoo_alias(arch)[0]
    if arch != CUSTOM and arch not in ARCHS:
        raise SpecError(unknown_arch_message(arch))
    allowed = _CUSTOM_KEYS if arch == CUSTOM else _NAMED_KEYS
    raw = _split_options(rest) if rest.strip() else []
    values: dict[str, object] = {}
    for key, value in raw:
        if key not in allowed:
            close = closest(key, allowed, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise SpecError(f"unknown key {quote(key)} for {arch}: {hint}allowed keys are {', '.join(allowed)}")
        if key in values:
            raise SpecError(f"key {quote(key)} is given twice")
        values[key] = {**_TABLE_KEYS, **_VARIANT_KEYS}[key](key, value)
    table = _resolve(arch, values)
    options = tuple((k, _normalise(k, v, values[k], table)) for k, v in raw)
    return Spec(arch, options, table)


def _normalise(key: str, text: str, value: object, table: NetSpec) -> str:
    if key == "fused":
        return _format_stage_set(value, len(table.stages))  # type: ignore[arg-type]
    if key == "fused_kernel":
        return "keep" if value == 0 else str(value)
    if key == "stages":
        return "/".join("+".join(format_block(r) for r in st) for st in value)  # type: ignore[union-attr]
    if isinstance(value, bool):  # stem_pool: '1' parses back, 'True' does not
        return str(int(value))
    if isinstance(value, float):
        return num_text(value)
    return str(value)


def _resolve(arch: str, values: dict[str, object]) -> NetSpec:
    if arch == CUSTOM:
        missing = [k for k in ("stem", "stages", "head") if k not in values]
        if missing:
            raise SpecError(f"custom spec needs {', '.join(missing)}: e.g. "
                            "custom:stem=24,stages=fmb_r2_k3_s1_e1_c24/mb_r4_k3_s2_e4_c48_se0.25,head=1280")
        table = NetSpec(**{k: v for k, v in values.items() if k in _TABLE_KEYS})  # type: ignore[arg-type]
        width = depth = 1.0
    else:
        spec = ARCHS[arch]
        table, width, depth = spec.base, spec.width, spec.depth
    table = transforms.scale(table, width * values.get("width", 1.0), depth * values.get("depth", 1.0))
    deepest = max((row.repeats, i) for i, st in enumerate(table.stages, 1) for row in st)
    if deepest[0] > MAX_REPEATS:
        raise SpecError(f"depth={num_text(values.get('depth', 1.0))} makes stage{deepest[1]} repeat a block "
                        f"{deepest[0]} times; at most {MAX_REPEATS}: use a smaller depth")
    _check_kinds_take(arch, table, values)
    if "fused" in values:
        stages = _stage_set(values["fused"], len(table.stages), arch)
        table = transforms.fuse_stages(table, stages, keep_se=values.get("fused_se") == "keep")
        values["fused"] = tuple(i for i, st in enumerate(table.stages, 1) if all(r.fused for r in st))
    if values.get("fused_kernel"):
        table = transforms.set_fused_kernel(table, values["fused_kernel"])  # type: ignore[arg-type]
    if "se" in values:
        table = transforms.set_se(table, values["se"])  # type: ignore[arg-type]
    if arch != CUSTOM:
        if "act" in values:
            table = transforms.set_act(table, values["act"])  # type: ignore[arg-type]
        table = replace(table, **{k: values[k] for k in ("classes", "drop_path", "dropout", "imgsz") if k in values})
    _check_table(table)
    return table


def _check_kinds_take(arch: str, table: NetSpec, values: dict[str, object]) -> None:
    """Refuse a variant key that the table's block kinds cannot take (fusing a ResNet block, SE on one)."""
    kinds = list(dict.fromkeys(r.kind for st in table.stages for r in st))
    asked = [k for k in ("fused", "fused_kernel", "fused_se") if k in values]
    unfusable = [k.name for k in kinds if k.twin is None]
    if asked and unfusable:
        raise SpecError(f"{asked[0]}= turns MBConv stages into Fused-MBConv ones and back; {arch} has "
                        f"{' and '.join(unfusable)} blocks, which have no fused form")
    no_se = [k.name for k in kinds if not k.takes_se]
    if "se" in values and no_se:
        raise SpecError(f"se= sets the squeeze-excitation of MBConv-family blocks; {arch} has "
                        f"{' and '.join(no_se)} blocks, which take none")


def _check_table(table: NetSpec) -> None:
    too_wide = [r.out for st in table.stages for r in st if r.out > MAX_CHANNELS]
    if too_wide or max(table.stem, table.head, table.head_fc) > MAX_CHANNELS:
        raise SpecError(f"scaled channels exceed {MAX_CHANNELS}; use a smaller width")
    if table.num_blocks > 2000:
        raise SpecError(f"{table.num_blocks} blocks is more than 2000; use a smaller depth")
    in_ch = table.stem
    for row in (r for st in table.stages for r in st):
        inner = max(expanded_channels(in_ch, row), expanded_channels(row.out, row))  # first repeat and the rest
        if inner > MAX_INNER_CHANNELS:
            raise SpecError(f"block {format_block(row)} has {inner:,} channels inside (expansion "
                            f"{num_text(row.expand)}), more than {MAX_INNER_CHANNELS:,}; use a smaller expansion "
                            "or channel count")
        in_ch = row.out


MAX_INNER_CHANNELS = defaults.MAX_CHANNELS  # one layer inside a block: the bound a detector YAML row has too
