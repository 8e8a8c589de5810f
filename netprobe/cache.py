"""A small on-disk cache of figures that only change when netprobe's code does (the parameter counts
`netprobe list` shows). One JSON file per kind, in `$NETPROBE_CACHE_DIR`, else the platform's per-user
cache folder (platformdirs, as the results database takes the platform's data folder: `~/.cache/netprobe`
or `$XDG_CACHE_HOME/netprobe` on Linux, ~/Library/Caches/netprobe on macOS, %LOCALAPPDATA%\\netprobe\\Cache
on Windows). Its entries hold while netprobe's version and source files (names, sizes, modification
times) are the ones they were computed with. A cache that cannot be read or written is ignored: the
figures are computed again."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).parent
_SOURCES = ("*.py", "*.yaml")


def cache_dir() -> Path:
    if os.environ.get("NETPROBE_CACHE_DIR"):
        return Path(os.environ["NETPROBE_CACHE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("netprobe", appauthor=False))


@cache
def code_fingerprint() -> str:
    """netprobe's version and every source file's path, size and modification time, hashed."""
    from netprobe.version import NETPROBE_VERSION

    digest = hashlib.sha256(NETPROBE_VERSION.encode())
    for pattern in _SOURCES:
        for path in sorted(_PACKAGE.rglob(pattern)):
            stat = path.stat()
            digest.update(f"{path.relative_to(_PACKAGE)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cached(kind: str, keys: list[str], compute: Callable[[str], object]) -> dict[str, object]:
    """The value of every key: from the `kind` cache where it holds one for this code, else `compute(key)`,
    written back for next time."""
    path = cache_dir() / f"{kind}.json"
    fingerprint = code_fingerprint()
    try:
        stored = json.loads(path.read_text())
        entries = stored["entries"] if stored.get("fingerprint") == fingerprint else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        entries = {}
    missing = [k for k in keys if k not in entries]
    for key in missing:
        entries[key] = compute(key)
    if missing:
        _store(path, {"fingerprint": fingerprint, "entries": entries})
    return {k: entries[k] for k in keys}


def _store(path: Path, data: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only or full disk: the figures were computed, they just are not kept
