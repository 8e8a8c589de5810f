"""Errors meant for users: each carries one line saying what was wrong and what would be right.

`quote` and `closest` are how those lines show the user's own text and suggest what they meant.
"""

from __future__ import annotations

from collections.abc import Iterable

QUOTE_LIMIT = 60  # characters of user text echoed back in a message


class NetprobeError(Exception):
    """Base class of every error netprobe reports to a user as one line (exit code 2)."""


class SpecError(NetprobeError, ValueError):
    """A spec string (or a stage table) is malformed or describes an impossible network."""


class InputError(NetprobeError, ValueError):
    """A command-line value (image size, batch, device, ...) is out of range or unavailable."""


class DistError(NetprobeError, RuntimeError):
    """A rank of a data-parallel run failed, died or stalled; the whole job was stopped.

    `rank` names it, `kind` says how (error | oom | died | stalled), `rows` holds the rows
    finished before it.
    """

    def __init__(self, message: str, rank: int | None = None, kind: str = "error") -> None:
        super().__init__(message)
        self.rank, self.kind = rank, kind
        self.rows: list = []


def quote(text: object, limit: int = QUOTE_LIMIT) -> str:
    """User text as it appears in a message: repr'd (so line breaks stay visible), cut to `limit` characters."""
    text = str(text)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"… ({len(text):,} characters)"


# Characters people type for one another: a swap between them costs half a substitution.
_LOOKALIKES = {frozenset(p) for p in ("o0", "l1", "i1", "s5", "z2", "b8", "-_")}


def edit_distance(a: str, b: str) -> float:
    """Typing distance: insertions, deletions, substitutions and swaps of neighbours cost 1, a
    look-alike substitution (o for 0, l for 1, - for _) costs 0.5."""
    rows = [[float(j) for j in range(len(b) + 1)]]
    for i, ca in enumerate(a, start=1):
        row = [float(i)]
        for j, cb in enumerate(b, start=1):
            sub = 0.0 if ca == cb else 0.5 if frozenset((ca, cb)) in _LOOKALIKES else 1.0
            best = min(rows[i - 1][j] + 1, row[j - 1] + 1, rows[i - 1][j - 1] + sub)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                best = min(best, rows[i - 2][j - 2] + 1)
            row.append(best)
        rows.append(row)
    return rows[-1][-1]


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates nearest to `name`, ignoring case: those at the smallest typing distance (in
    their given order), and only if plausible (about a third of the characters differ at most)."""
    key = name.lower()[:200]
    scored = []
    for cand in candidates:
        dist = edit_distance(key, cand.lower())
        if dist <= max(1, round(max(len(key), len(cand)) / 3)):
            scored.append((dist, cand))
    if not scored:
        return []
    best = min(d for d, _ in scored)
    return [cand for d, cand in scored if d == best][:n]


def check_range(name: str, value: int | float, lo: int | float, hi: int | float) -> None:
    """Refuse a number outside [lo, hi] in one line that states both bounds."""
    if not lo <= value <= hi:
        raise InputError(f"{name} {value:,} is not allowed; {name} must be from {lo:,} to {hi:,}")


def one_line(exc: BaseException) -> str:
    """An exception as one line: `Type: first line of the message`, or the type alone when it has none."""
    first = next(iter(str(exc).splitlines()), "").strip()
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
