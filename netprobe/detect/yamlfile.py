"""Reading an ultralytics-format model YAML: the model dict, its rows checked, and the P-levels its comments claim.

YAML drops comments, yet upstream files label rows with their pyramid level (`# 3-P3/8`,
`# 15 (P3/8-small)`, `# Detect(P3, P4, P5)`), and those labels are what users believe. The row
lines are found again in the text (one `[from, repeats, module, ...]` per line, as every upstream
file writes them); when they cannot be matched one to one, no claims are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from netprobe.errors import InputError, SpecError, quote

SECTIONS = ("backbone", "head")
_ROW_LINE = re.compile(r"\[\s*(?:-?\d+|\[[-\d,\s]*\])\s*,\s*-?\d+\s*,\s*[\"']?[A-Za-z_][\w.]*[\"']?\s*,")
_LEVEL = re.compile(r"\bP(\d)\b")
_SECTION_KEY = re.compile(r"^([A-Za-z_]\w*)\s*:")


@dataclass(frozen=True)
class RawRow:
    """One row as written: [from, repeats, module, args], its section, and the P-levels its comment claims."""

    src: int | tuple[int, ...]
    repeats: int
    module: str
    args: tuple
    section: str  # "backbone" or "head" (the YAML's lists)
    claims: tuple[int, ...] = ()  # P-levels named in the row's comment, in order


MAX_YAML_BYTES = 1 << 20  # 1 MiB: upstream model YAMLs are a few KB; anything larger is refused unread


def read_text(path: str) -> str:
    """The YAML file's text: a regular file of at most MAX_YAML_BYTES, in UTF-8; else one line saying why."""
    shown = quote(path, 120)
    file = Path(path).expanduser()
    try:
        if file.is_dir():
            raise InputError(f"{shown} is a folder; give a model .yaml file")
        if file.exists() and not file.is_file():
            raise InputError(f"{shown} is not a regular file; give a model .yaml file")
        size = file.stat().st_size
        if size > MAX_YAML_BYTES:
            raise InputError(f"{shown} is {size:,} bytes; a model YAML is at most {MAX_YAML_BYTES:,} bytes "
                             "(1 MiB; upstream ones are a few KB)")
        with file.open("rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {shown}: {exc.strerror or exc}") from None
    if len(data) > MAX_YAML_BYTES:  # it grew while being read
        raise InputError(f"{shown} is over {MAX_YAML_BYTES:,} bytes; a model YAML is at most 1 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{shown} is not a text file (byte {exc.start:,} is not UTF-8); give an "
                         "ultralytics-format model .yaml file") from None


def load_model_dict(text: str, where: str) -> dict:
    """The YAML as a dict with `backbone`, `head` and `nc`; anything else is a one-line `SpecError`."""
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise SpecError(f"{where}: not a model YAML: nested too deeply to read") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: not valid YAML{at}: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a model YAML is a mapping with nc, backbone and head; this is a "
                        f"{type(data).__name__}")
    for key in SECTIONS:
        if not isinstance(data.get(key), list) or not data[key]:
            raise SpecError(f"{where}: no '{key}' list of [from, repeats, module, args] rows")
    if "nc" not in data:
        raise SpecError(f"{where}: no 'nc' (number of classes); add e.g. 'nc: 80' at the top level")
    if not isinstance(data["nc"], int) or isinstance(data["nc"], bool) or data["nc"] < 1:
        raise SpecError(f"{where}: nc: {data['nc']!r} is not a number of classes; write e.g. 'nc: 80'")
    return data


def raw_rows(data: dict, text: str, where: str) -> list[RawRow]:
    """The backbone then head rows, checked for shape, with the P-level claims of their comments."""
    rows = [_check_row(row, f"{section}[{k}]", section, where)
            for section in SECTIONS for k, row in enumerate(data[section])]
    claims = _comment_claims(text, len(rows))
    return [RawRow(r.src, r.repeats, r.module, r.args, r.section, c) for r, c in zip(rows, claims, strict=True)]


def _check_row(row: object, name: str, section: str, where: str) -> RawRow:
    """One row's shape; `name` says where it is written, e.g. 'head[3]' (the fourth row under head:)."""
    shape = "[from, repeats, module, args], e.g. [-1, 1, Conv, [64, 3, 2]]"
    if not isinstance(row, list) or len(row) != 4:
        raise SpecError(f"{where}: {name} {row!r} is not {shape}")
    src, repeats, module, args = row
    src_ok = _is_int(src) or (isinstance(src, list) and src and all(_is_int(f) for f in src))
    if not src_ok:
        raise SpecError(f"{where}: {name}: from {src!r} is not a row index or a list of them")
    if not _is_int(repeats) or repeats < 1:
        raise SpecError(f"{where}: {name}: repeats {repeats!r} is not a positive integer")
    if not isinstance(module, str) or not isinstance(args, list):
        raise SpecError(f"{where}: {name} {row!r} is not {shape}")
    return RawRow(tuple(src) if isinstance(src, list) else src, repeats, module, frozen(args), section)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def frozen(value: object) -> object:
    """Lists become tuples, all the way down, so rows are plain immutable data."""
    return tuple(frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _comment_claims(text: str, count: int) -> list[tuple[int, ...]]:
    """P-levels claimed by each row's comment (a line holding several rows claims nothing); none at all
    unless exactly `count` rows are found in the text."""
    found: list[tuple[int, ...]] = []
    section = None
    for line in text.splitlines():
        code, _, comment = line.partition("#")
        key = _SECTION_KEY.match(code)
        if key:
            section = key.group(1)
        rows_here = len(_ROW_LINE.findall(code)) if section in SECTIONS else 0
        claims = tuple(int(p) for p in _LEVEL.findall(comment)) if rows_here == 1 else ()
        found += [claims] * rows_here
    return found if len(found) == count else [()] * count
