"""`--weights FILE`: a user's trained weights loaded into any target before anything else, strictly.

The file is a state dict, or a checkpoint holding one under 'state_dict', 'model_state_dict', 'model' or
'ema' (read with `torch.load(weights_only=True)`: no code in the file runs). Every key of the model must be
in it with the same shape, and no other: a mismatch is refused naming the first few.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from netprobe.errors import InputError, quote
from netprobe.target import Target

HOLDERS = ("state_dict", "model_state_dict", "model", "ema")
_READ: dict[tuple[str, float], dict[str, torch.Tensor]] = {}


def read_state(path: str) -> dict[str, torch.Tensor]:
    """The state dict in `path` (read once per file version), or InputError saying why not."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise InputError(f"--weights {quote(path)} is not a file; give a state dict or a checkpoint (.pt, .pth)")
    key = (str(file.resolve()), file.stat().st_mtime)
    if key not in _READ:
        try:
            found = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise InputError(f"--weights {quote(path)} does not load as a state dict "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
        for holder in HOLDERS:
            if isinstance(found, dict) and isinstance(found.get(holder), dict):
                found = found[holder]
                break
        if not isinstance(found, dict) or not found or not all(isinstance(v, torch.Tensor) for v in found.values()):
            raise InputError(f"--weights {quote(path)} holds no state dict (names to tensors, alone or under "
                             f"{', '.join(HOLDERS)})")
        _READ[key] = found
    return _READ[key]


def check_weights(target: Target, path: str) -> None:
    """Refuse weights whose keys or shapes differ from the model's, naming the first few."""
    state = read_state(path)
    want = {k: tuple(v.shape) for k, v in target.meta_model().state_dict().items()}
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    shapes = [f"{k} {list(state[k].shape)} (model: {list(want[k])})" for k in want
              if k in state and tuple(state[k].shape) != want[k]]
    problems = [(f"{len(missing)} missing", missing), (f"{len(extra)} unexpected", extra),
                (f"{len(shapes)} of another shape", shapes)]
    found = [f"{what}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}" for what, keys in problems if keys]
    if found:
        raise InputError(f"--weights {quote(path)} does not fit {target.label}: {'; '.join(found)}")


def with_weights(target: Target, path: str) -> Target:
    """The target whose every fresh module has the weights of `path` loaded (strictly)."""
    make = target.make

    def loaded(device: str | torch.device) -> nn.Module:
        module = make(device)
        if str(device) != "meta":
            module.load_state_dict(read_state(path), strict=True)
        return module

    return replace(target, make=loaded, user_module=None) if target.user_module is None else _into_user(target, path)


def _into_user(target: Target, path: str) -> Target:
    import copy

    module = copy.deepcopy(target.user_module)
    module.load_state_dict(read_state(path), strict=True)
    return replace(target, user_module=module, make=lambda device: copy.deepcopy(module).to(device))
