"""The schema of a stored run: every field a reader uses (`history show`, `report`, `export`, the
re-run line), with its type, range and length, checked in one place by the writer (`record`), by
`history import` before anything is merged, and by the readers on what the database holds.

Fields no reader uses are kept as they are (a newer netprobe may add some): they are only held to
plain JSON — no NaN or Infinity, strings and nesting of bounded size. `run_problem` says what is
wrong with a run, naming the field ('results[2].data.imgs_per_s'), or returns None.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from netprobe.errors import quote

INT64 = 2**63 - 1  # what an SQLite INTEGER column holds
MAX_DEPTH = 40  # nesting of lists and objects in a run (a breakdown is 4 deep)
MAX_TEXT = 100_000  # characters of any one string
MAX_ITEMS = 1_000_000  # items of any one list or object
MAX_ROWS = 100_000  # rows of one run
MAX_STEP_TIMES = 100_000  # step_times_ms of one row
RATE = 1e12  # imgs/s, GFLOP/s, ms, MB: far above any machine, far below what breaks a chart or a table
COMMANDS = ("bench", "compare", "summary", "predict")


class Problem(Exception):
    """A field that does not fit the schema: where, and what is wrong with it."""

    def __init__(self, field: str, what: str) -> None:
        super().__init__(f"field {field} {what}")


def run_problem(doc: object, imported: bool = False, stored: bool = False) -> str | None:
    """What is wrong with a run document (one line naming the field), or None. `imported`: a document
    from an export file, whose machine id is computed on import rather than read; `stored`: one read
    back from the database, which was plain JSON when written (only the fields readers use are checked)."""
    try:
        check_run(doc, imported, stored)
    except Problem as exc:
        return str(exc)
    return None


def check_run(doc: object, imported: bool = False, stored: bool = False) -> None:
    """Raise `Problem` for the first field of a run document that does not fit the schema."""
    run = obj(doc, "run")
    if not stored:
        plain(run, "")
    uid = text(run.get("uid"), "uid", 64, optional=False)
    if not uid.isalnum() or not uid.isascii():
        raise Problem("uid", f"is {quote(uid)}, not letters and digits")
    created = text(run.get("created"), "created", 64, optional=False)
    try:
        utc_from_iso(created)
    except (ValueError, OverflowError, OSError):
        raise Problem("created", f"is {quote(created)}, not an ISO 8601 time") from None
    if run.get("command") not in COMMANDS:
        raise Problem("command", f"names an unknown command {quote(run.get('command'))}, not one of "
                                 f"{', '.join(COMMANDS)}")
    for name in ("experiment", "netprobe", "note"):
        text(run.get(name), name, MAX_TEXT)
    number(run.get("duration_s"), "duration_s", 0, RATE)
    number(run.get("bandwidth_gbs"), "bandwidth_gbs", 0, RATE)
    argv = listed(run.get("argv"), "argv", 10_000, optional=False)
    for i, word in enumerate(argv):
        text(word, f"argv[{i}]", MAX_TEXT, optional=False)
    check_machine(run.get("machine"), imported)
    check_device(run.get("device"))
    for name, value in obj(run.get("peak_tflops"), "peak_tflops").items():
        number(value, f"peak_tflops.{name}", 0, RATE)
    settings = obj(run.get("envelope"), "envelope").get("settings")
    if settings is not None:
        settings = obj(settings, "envelope.settings")
        text(settings.get("amp"), "envelope.settings.amp", 64)
        for i, name in enumerate(listed(settings.get("runtimes"), "envelope.settings.runtimes", 64) or []):
            text(name, f"envelope.settings.runtimes[{i}]", 64, optional=False)
    rows = listed(run.get("results"), "results", MAX_ROWS, optional=False)
    for i, row in enumerate(rows):
        try:
            check_result(row, f"results[{i}]", run["command"], run.get("experiment"))
        except Problem as exc:
            exc.args = (f"has a malformed row {i + 1}: {exc}",)
            raise


def check_machine(value: object, imported: bool) -> None:
    """The machine: a complete fingerprint on import (its id is computed from it), what there is when stored."""
    machine, whole = obj(value, "machine"), not imported
    text(machine.get("cpu"), "machine.cpu", 1_000, optional=whole)
    number(machine.get("cpus"), "machine.cpus", 0, 10**7, integer=True, optional=whole)
    number(machine.get("usable_cores"), "machine.usable_cores", 0, 10**7, integer=True)
    number(machine.get("memory_mb"), "machine.memory_mb", 0, 1e12)
    text(machine.get("arch"), "machine.arch", 1_000, optional=whole)
    for name in ("board", "os", "driver", "python"):
        text(machine.get(name), f"machine.{name}", 1_000)
    if not imported:
        text(machine.get("machine_id"), "machine.machine_id", 64, optional=False)
    for i, gpu in enumerate(listed(machine.get("gpus"), "machine.gpus", 1_000, optional=whole) or []):
        text(gpu, f"machine.gpus[{i}]", 1_000, optional=False)


def check_device(value: object) -> None:
    device = obj(value, "device")
    for name in ("device", "name", "torch"):
        text(device.get(name), f"device.{name}", 1_000)
    number(device.get("memory_mb"), "device.memory_mb", 0, 1e12)
    number(device.get("threads"), "device.threads", 0, 10**7, integer=True)
    for name in ("cuda", "cudnn"):
        if not isinstance(device.get(name), int) or isinstance(device.get(name), bool):
            text(device.get(name), f"device.{name}", 64)


def check_result(value: object, where: str, command: str, experiment: str | None) -> None:
    """One row: its spec and label, and the figures of its JSON that the tables, charts and re-run line read."""
    row = obj(value, where)
    text(row.get("spec"), f"{where}.spec", MAX_TEXT, optional=False)
    for name in ("label", "canonical"):
        text(row.get(name), f"{where}.{name}", MAX_TEXT)
    data, at = obj(row.get("data"), f"{where}.data"), f"{where}.data"
    check_kind(data, at, command)
    if command == "summary":
        shape = listed(data.get("input"), f"{at}.input", 4, optional=False)
        if len(shape) != 4:
            raise Problem(f"{at}.input", f"has {len(shape)} sizes, not 4 (batch, channels, height, width)")
        for i, size in enumerate(shape):
            number(size, f"{at}.input[{i}]", 1, 10**9, integer=True, optional=False)
        number(data.get("macs"), f"{at}.macs", 0, INT64, integer=True, optional=False)
    for name in ("status", "mode", "dtype", "runtime", "label", "spec", "device", "optimizer"):
        text(data.get(name), f"{at}.{name}", MAX_TEXT)
    for name in ("batch", "global_batch", "batch_per_rank", "world_size", "iters"):
        number(data.get(name), f"{at}.{name}", 0, 2**31, integer=True)
    for name in ("macs", "macs_per_img", "params"):
        number(data.get(name), f"{at}.{name}", 0, INT64, integer=True)
    rates = ["imgs_per_s", "step_ms", "tflops", "peak_mem_mb"]
    if command == "compare":
        rates.append(f"{data.get('mode') or 'train'}_imgs_per_s")
    for name in rates:
        number(data.get(name), f"{at}.{name}", 0, RATE)
    check_size(data.get("imgsz"), f"{at}.imgsz")
    check_spread(data, at)
    paper = data.get("paper")
    if paper is not None:
        for name in ("v100_imgs_per_s", "tpu_imgs_per_s"):
            number(obj(paper, f"{at}.paper").get(name), f"{at}.paper.{name}", 0, RATE)
    check_roofline(data.get("roofline"), f"{at}.roofline")
    for i, part in enumerate(listed(data.get("breakdown"), f"{at}.breakdown", MAX_ITEMS) or []):
        part = obj(part, f"{at}.breakdown[{i}]")
        if "stage" not in part:
            raise Problem(f"{at}.breakdown[{i}]", "has no stage (null for the whole network)")
        text(part["stage"], f"{at}.breakdown[{i}].stage", 1_000)
        text(part.get("kind"), f"{at}.breakdown[{i}].kind", 1_000, optional=False)
        for name in ("time_share", "macs_share"):
            number(part.get(name), f"{at}.breakdown[{i}].{name}", 0, 10)


def check_kind(data: dict, at: str, command: str) -> None:
    """A predict run's rows are predictions, and say so; no other run holds one (never a measurement)."""
    if command != "predict":
        if data.get("kind") == "prediction":
            raise Problem(f"{at}.kind", f"is 'prediction' in a {command} run: predictions are kept as predict "
                                        "runs, apart from measurements")
        return
    if data.get("kind") != "prediction":
        raise Problem(f"{at}.kind", f"is {_kind(data.get('kind'))}, not 'prediction' (a predict run's rows are "
                                    "predictions)")
    for name in ("gpu", "gpu_label", "mode", "amp"):
        text(data.get(name), f"{at}.{name}", 1_000, optional=False)
    text(data.get("error_note"), f"{at}.error_note", MAX_TEXT)
    size = listed(data.get("imgsz"), f"{at}.imgsz", 2, optional=False)
    if len(size) != 2:
        raise Problem(f"{at}.imgsz", f"has {len(size)} sizes, not 2 (height, width)")
    for i, side in enumerate(size):
        number(side, f"{at}.imgsz[{i}]", 1, 10**9, integer=True, optional=False)
    for name in ("imgs_per_s", "step_ms"):
        number(data.get(name), f"{at}.{name}", 0, RATE, optional=False)


def check_size(value: object, where: str) -> None:
    """An image size: N, 'HxW' or [H, W]."""
    if isinstance(value, list):
        if not 1 <= len(value) <= 2:
            raise Problem(where, f"has {len(value)} sizes, not 1 or 2")
        for i, side in enumerate(value):
            number(side, f"{where}[{i}]", 1, 10**9, integer=True, optional=False)
    elif isinstance(value, str):
        text(value, where, 64)
    else:
        number(value, where, 1, 10**9, integer=True)


def check_spread(data: dict, at: str) -> None:
    """The measured spread a row may carry: a 90% interval of imgs/s and every step's time."""
    interval = data.get("imgs_per_s_ci90")
    if interval is not None:
        low_high = listed(interval, f"{at}.imgs_per_s_ci90", 2)
        if len(low_high) != 2:
            raise Problem(f"{at}.imgs_per_s_ci90", f"has {len(low_high)} values, not 2 (low, high)")
        low, high = (number(v, f"{at}.imgs_per_s_ci90[{i}]", 0, RATE, optional=False) for i, v in enumerate(low_high))
        if low > high:
            raise Problem(f"{at}.imgs_per_s_ci90", f"has its low end {low:g} above its high end {high:g}")
    for i, ms in enumerate(listed(data.get("step_times_ms"), f"{at}.step_times_ms", MAX_STEP_TIMES) or []):
        if number(ms, f"{at}.step_times_ms[{i}]", 0, RATE, optional=False) <= 0:
            raise Problem(f"{at}.step_times_ms[{i}]", "is 0, not a positive time")


def check_roofline(value: object, where: str) -> None:
    if value is None:
        return
    roof = obj(value, where)
    for name in ("peak_tflops", "bandwidth_gbs", "ridge"):
        number(roof.get(name), f"{where}.{name}", 0, RATE, optional=False)
    for i, stage in enumerate(listed(roof.get("stages"), f"{where}.stages", MAX_ITEMS, optional=False)):
        stage = obj(stage, f"{where}.stages[{i}]")
        for name in ("name", "family"):
            text(stage.get(name), f"{where}.stages[{i}].{name}", 1_000, optional=False)
        text(stage.get("bound"), f"{where}.stages[{i}].bound", 1_000)
        number(stage.get("intensity"), f"{where}.stages[{i}].intensity", 0, RATE, optional=False)
        number(stage.get("achieved_gflops"), f"{where}.stages[{i}].achieved_gflops", 0, RATE)


# ---- the kinds of value ----------------------------------------------------------------------------

def obj(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise Problem(where, f"is {_kind(value)}, not an object")
    return value


def listed(value: object, where: str, limit: int, optional: bool = True) -> list | None:
    if value is None and optional:
        return None
    if not isinstance(value, list):
        raise Problem(where, f"is {_kind(value)}, not a list")
    if len(value) > limit:
        raise Problem(where, f"has {len(value):,} items, more than {limit:,}")
    return value


def text(value: object, where: str, limit: int, optional: bool = True) -> str:
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise Problem(where, f"is {_kind(value)}, not text")
    if len(value) > limit:
        raise Problem(where, f"is {len(value):,} characters long, more than {limit:,}")
    return value


def number(value: object, where: str, lo: float, hi: float, integer: bool = False, optional: bool = True) -> float:
    """A finite number from `lo` to `hi` (a whole one where `integer`); None passes where `optional` (as 0)."""
    if value is None and optional:
        return 0
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise Problem(where, f"is {_kind(value)}, not {'a whole number' if integer else 'a number'}")
    if not ((isinstance(value, int) or math.isfinite(value)) and lo <= value <= hi):
        shown = f"{value:g}" if isinstance(value, float) else (f"{value:,}" if len(str(value)) <= 20 else
                                                                 f"a number of {len(str(value))} digits")
        raise Problem(where, f"is {shown}, not from {lo:,} to {hi:,}" if integer else f"is {shown}, not from "
                      f"{lo:,} to {hi:,.0f}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"the text {quote(value, 40)}"
    if isinstance(value, list | dict):
        return f"{'a list' if isinstance(value, list) else 'an object'} of {len(value):,} items"
    shown = repr(value)
    return shown if len(shown) <= 40 else f"a number of {len(shown)} digits" if isinstance(value, int) else shown[:40]


def plain(value: object, where: str) -> None:
    """Plain, bounded JSON all the way down: no NaN or Infinity, no string longer than MAX_TEXT, no
    list or object of more than MAX_ITEMS, at most MAX_DEPTH deep (walked without recursion)."""
    stack: list[tuple[object, str, int]] = [(value, where, 0)]
    while stack:
        item, at, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise Problem(at, f"is nested more than {MAX_DEPTH} deep")
        if isinstance(item, float) and not math.isfinite(item):
            raise Problem(at, f"is {item}, which is not JSON (a finite number or null is)")
        if isinstance(item, str) and len(item) > MAX_TEXT:
            raise Problem(at, f"is {len(item):,} characters long, more than {MAX_TEXT:,}")
        if isinstance(item, list | dict):
            if len(item) > MAX_ITEMS:
                raise Problem(at, f"has {len(item):,} items, more than {MAX_ITEMS:,}")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((v, (f"{at}.{k}" if at else str(k)) if isinstance(item, dict) else f"{at}[{k}]", depth + 1)
                         for k, v in pairs)


def utc_from_iso(text: str) -> str:
    """An ISO 8601 time (one without a zone is UTC) as the database keeps times; ValueError if it is none."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0).isoformat() + "Z"
    except OverflowError:  # year 1 less a time zone, year 9999 plus one
        raise ValueError(f"{text.strip()[:40]} is out of the years 1 to 9999 in UTC") from None
