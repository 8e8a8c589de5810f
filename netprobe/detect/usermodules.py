"""`--modules file.py`: the user's own block classes, looked up before the built-in kinds."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

from torch import nn

from netprobe.building import BuildTimeout, building
from netprobe.errors import InputError


def load_user_modules(path: str) -> dict[str, type]:
    """Every `nn.Module` subclass a Python file defines or imports, by name; a file that does not import
    is an `InputError` (one line)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"--modules {path}: no such file; give a Python file that defines your blocks")
    return dict(_load(str(file.resolve()), file.stat().st_mtime_ns))


@lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int) -> tuple[tuple[str, type], ...]:
    name = "netprobe_user_" + hashlib.sha1(f"{path}:{mtime_ns}".encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"--modules {path}: not a Python file; give a .py file that defines your blocks")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up by module name
    try:
        with building(f"--modules {path}"):
            spec.loader.exec_module(module)
    except BuildTimeout:
        sys.modules.pop(name, None)
        raise
    except (Exception, SystemExit) as exc:  # its SyntaxError, ImportError, exit()...: the user needs one line
        sys.modules.pop(name, None)
        where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
        text = (exc.msg if isinstance(exc, SyntaxError) else str(exc)).strip().splitlines()
        raise InputError(f"--modules {path} does not import{where}: {type(exc).__name__}: "
                         f"{text[0] if text else '(no message)'}") from None
    return tuple((k, v) for k, v in vars(module).items()
                 if isinstance(v, type) and issubclass(v, nn.Module) and not k.startswith("_"))
