"""The small Python API the CLI stands on."""

from __future__ import annotations

import torch

from netprobe.archs import ARCHS, Arch, Net, build_net
from netprobe.errors import SpecError, quote
from netprobe.spec import Spec, parse_spec


def build(spec: str | Spec, device: torch.device | str | None = None) -> Net:
    """Build the backbone a spec string describes, e.g. `build("efficientnet_b4:fused=1-3")`.

    The module's top-level children are its stages (`stem`, `stage1`...`stageN`, `head`);
    `forward_features(x)` returns every stage's output and `feature_info` their channels
    and strides. `model.spec` is the parsed spec and `model.spec.canonical` its full form.
    On `device="meta"` nothing is allocated (shapes and counts only).
    """
    if not isinstance(spec, str | Spec):
        raise SpecError(f"build takes a spec string such as 'efficientnet_b4:fused=1-3' (or a parsed Spec); "
                        f"got {type(spec).__name__} {quote(repr(spec), 40)}")
    parsed = spec if isinstance(spec, Spec) else parse_spec(spec)
    net = build_net(parsed.table, device)
    net.spec = parsed
    return net


def list_archs() -> list[Arch]:
    """Every supported architecture, in a stable order."""
    return list(ARCHS.values())
