"""Two runs of the same settings side by side (`netprobe history diff A B`, `bench --baseline RUN`): rows
matched by spec, batch, size, mode, dtype and runtime; each pair's speed ratio with its 90% interval
(bootstrap over both runs' kept step times) and a verdict.

Rows recorded before runs kept their step times have no interval: their ratio is of the recorded
speeds alone, and the verdict says so.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netprobe.errors import InputError, quote
from netprobe.history.tables import result_columns
from netprobe.intervals import Interval, slower_beyond, speed_ratio, verdict

NO_INTERVAL = "no interval"  # a side kept fewer than two step times (recorded before they were kept)
NOT_MEASURED = "not measured"  # a side has no speed (out of memory, an error)
MAX_PERCENT = 1000.0
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%?\s*$")


@dataclass
class RowDiff:
    """One row measured in both runs: B's speed over A's (above 1: B is faster)."""

    spec: str
    batch: int | None
    imgsz: str | None
    mode: str | None
    dtype: str | None
    runtime: str
    a_imgs_per_s: float | None
    b_imgs_per_s: float | None
    ratio: float | None
    ratio_ci90: list[float] | None
    verdict: str  # faster | slower | no difference (at 90%) | no interval | not measured
    slower_beyond_limit: bool = False  # slower than --fail-if-slower allows, with 90% confidence

    @property
    def name(self) -> str:
        runtime = "" if self.runtime == "torch" else f" {self.runtime}"
        return f"{self.spec} b{self.batch} {self.imgsz}px {self.dtype} {self.mode}{runtime}"


@dataclass
class RunDiff:
    """Every matched row of two runs, the rows of each that found no partner, and the limit applied."""

    rows: list[RowDiff]
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    fail_if_slower: float | None = None  # a fraction: 0.05 fails rows whose step times are 5% longer
    same_machine: bool = True

    @property
    def failed(self) -> list[RowDiff]:
        return [r for r in self.rows if r.slower_beyond_limit]

    def to_dict(self) -> dict:
        return {"rows": [asdict(r) for r in self.rows], "only_a": self.only_a, "only_b": self.only_b,
                "fail_if_slower": self.fail_if_slower, "same_machine": self.same_machine,
                "failed": [r.name for r in self.failed]}


def parse_percent(text: str, option: str = "--fail-if-slower") -> float:
    """'5%' (or '5') as the fraction 0.05; anything else is one line naming what would do."""
    match = _PERCENT.match(text)
    value = float(match.group(1)) if match else None
    if value is None or not 0 <= value <= MAX_PERCENT:
        raise InputError(f"{option} {quote(text)} is not a percentage; give one from 0% to {MAX_PERCENT:g}%, "
                         "e.g. 5%")
    return value / 100


def row_keys(doc: dict) -> list[tuple[tuple, dict]]:
    """Each row of a run document as (its matching key, its comparable figures)."""
    keyed = []
    for result in doc["results"]:
        data = result["data"]
        c = result_columns(doc["command"], doc.get("experiment"), data, doc.get("envelope") or {})
        row = {"spec": result["spec"], "canonical": result.get("canonical") or result["spec"], "batch": c.get("batch"),
               "imgsz": None if c.get("imgsz") is None else str(c.get("imgsz")), "mode": c.get("mode"),
               "dtype": c.get("dtype"), "runtime": data.get("runtime") or "torch",
               "imgs_per_s": c.get("imgs_per_s"), "steps": data.get("step_times_ms") or []}
        ranks = (data.get("world_size"), data.get("ddp"))  # data-parallel rows: one per world size
        keyed.append(((row["canonical"], row["batch"], row["imgsz"], row["mode"], row["dtype"], row["runtime"], ranks),
                      row))
    return keyed


def diff_runs(a: dict, b: dict, fail_if_slower: float | None = None) -> RunDiff:
    """Match the rows of run documents `a` and `b` and compare each pair (B over A)."""
    waiting: dict[tuple, list[dict]] = {}
    for key, row in row_keys(a):
        waiting.setdefault(key, []).append(row)
    rows, only_b = [], []
    for key, row_b in row_keys(b):
        if waiting.get(key):
            rows.append(compare_rows(waiting[key].pop(0), row_b, fail_if_slower))
        else:
            only_b.append(_name(row_b))
    only_a = [_name(r) for pending in waiting.values() for r in pending]
    same = (a.get("machine") or {}).get("machine_id") == (b.get("machine") or {}).get("machine_id")
    return RunDiff(rows, only_a, only_b, fail_if_slower, same)


def compare_rows(a: dict, b: dict, fail_if_slower: float | None = None) -> RowDiff:
    """B's speed over A's with its interval where both kept their steps, else the bare ratio."""
    diff = RowDiff(b["spec"], b["batch"], b["imgsz"], b["mode"], b["dtype"], b["runtime"], a["imgs_per_s"],
                   b["imgs_per_s"], None, None, NOT_MEASURED)
    if not (a["imgs_per_s"] and b["imgs_per_s"]):
        return diff
    items = b["batch"] or 1  # both rows have the same batch: it cancels
    ratio = speed_ratio(a["steps"], b["steps"], items, items)
    measured: Interval | float = ratio if ratio else b["imgs_per_s"] / a["imgs_per_s"]
    if isinstance(measured, Interval):
        diff.ratio, diff.ratio_ci90, diff.verdict = measured.value, measured.bounds(), verdict(measured)
    else:
        diff.ratio, diff.verdict = measured, NO_INTERVAL
    if fail_if_slower is not None:
        diff.slower_beyond_limit = slower_beyond(measured, fail_if_slower)
    return diff


def load_run(path: Path | str, run: str) -> dict:
    """The document of run `run` (an id or uid prefix) in the database at `path`; one line if there is none."""
    from netprobe.history.query import find_run
    from netprobe.history.store import connect
    from netprobe.history.tables import run_document

    conn = connect(path, create=False)
    try:
        return run_document(conn, find_run(conn, run))
    finally:
        conn.close()


def check_matches(baseline: dict, planned: list[dict], run: str) -> None:
    """Refuse, before any measuring, a baseline run that has no row like any planned one (`planned`:
    rows as a run document holds them: spec, canonical, data)."""
    keys = {key for key, _ in row_keys(baseline)}
    mine = row_keys({**baseline, "results": planned})
    if not any(key in keys for key, _ in mine):
        theirs = "; ".join(sorted({_name(r) for _, r in row_keys(baseline)})[:3]) or "no rows"
        raise InputError(f"--baseline run {quote(run)} has no row measured like these (same spec, batch, size, mode, "
                         f"dtype, runtime); it has {theirs}")


def summary_lines(diff: RunDiff) -> list[str]:
    """What a reader needs under the table: unmatched rows, rows with no interval, other machines, the limit."""
    lines = []
    if diff.only_a or diff.only_b:
        lines.append("not matched: " + "; ".join([f"only in A: {n}" for n in diff.only_a]
                                                 + [f"only in B: {n}" for n in diff.only_b]))
    if any(r.verdict == NO_INTERVAL for r in diff.rows):
        lines.append("no interval: a side kept fewer than two step times (recorded before runs kept them, or one "
                     "timed step); its ratio is of the recorded speeds alone, without confidence")
    if not diff.same_machine:
        lines.append("A and B ran on different machines: the ratio compares the machines as well")
    if diff.fail_if_slower is not None:
        failed = diff.failed
        lines.append(f"--fail-if-slower {diff.fail_if_slower * 100:g}%: " + (
            f"{len(failed)} row(s) slower by more than that: " + "; ".join(r.name for r in failed) if failed else
            "no row is slower by more than that"))
    return lines


def _name(row: dict) -> str:
    runtime = "" if row["runtime"] == "torch" else f" {row['runtime']}"
    return f"{row['spec']} b{row['batch']} {row['imgsz']}px {row['dtype']} {row['mode']}{runtime}"

