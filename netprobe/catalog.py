"""What netprobe builds by name, counted: one record per backbone arch and per built-in detector, with
its parameters counted on the meta device (cached: see `netprobe.cache`)."""

from __future__ import annotations


def arch_records() -> list[dict]:
    """Every arch: name, family, parameters (counted), default image size, stages, layout, paper."""
    from netprobe.api import list_archs
    from netprobe.spec import parse_spec

    archs = list_archs()
    tables = {a.name: parse_spec(a.name) for a in archs}
    params = _counted("arch-params", {a.name: tables[a.name].canonical for a in archs}, arch_params)
    return [{"name": a.name, "family": a.family, "params": params[a.name], "imgsz": tables[a.name].table.imgsz,
             "stages": len(tables[a.name].table.stages), "layout": tables[a.name].table.layout(), "paper": a.paper}
            for a in archs]


def detector_records() -> list[dict]:
    """Every built-in detector: name, parameters (counted at its default classes), classes, image size,
    YAML rows, where its layout comes from."""
    from netprobe.detect.builtin import BUILTINS

    figures = _counted("detector-figures", {name: name for name in BUILTINS}, _detector_figures)
    return [{"name": name, **figures[name], "origin": builtin.origin} for name, builtin in BUILTINS.items()]


def _counted(kind: str, keys: dict[str, str], compute) -> dict[str, object]:
    from netprobe.cache import cached

    values = cached(kind, list(keys.values()), compute)
    return {name: values[key] for name, key in keys.items()}


def arch_params(canonical: str) -> int:
    from netprobe.api import build

    return sum(p.numel() for p in build(canonical, device="meta").parameters())


def _detector_figures(name: str) -> dict:
    from netprobe.detect import build_detector
    from netprobe.detect import resolve as resolve_detector

    spec = resolve_detector(name)
    model = build_detector(spec, "meta")
    return {"params": sum(p.numel() for p in model.parameters()), "nc": spec.nc, "imgsz": spec.imgsz,
            "rows": len(spec.layers)}
