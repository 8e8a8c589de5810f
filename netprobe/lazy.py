"""Package faces that load on first use (PEP 562): a package names what it exports and where each
name lives, and importing the package imports none of it. Keeps `netprobe --help` free of torch and a
zoo summary free of the detector and train-counting code it does not run."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def exports(package: str, homes: dict[str, tuple[str, ...]],
            namespace: dict) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose public names live in its submodules: `homes`
    maps a submodule (relative to the package) to the names it provides. A name is imported on first
    access and then kept in the package's namespace."""
    where = {name: f"{package}.{module}" for module, names in homes.items() for name in names}

    def getattr_(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *where})

    return getattr_, dir_
