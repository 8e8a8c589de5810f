"""The command that measures a stored row again: its spec as typed and the settings it ran with."""

from __future__ import annotations

import shlex


def rerun_command(doc: dict, result: dict) -> str:
    """One `netprobe` command line for one row of a run document (quoted for a POSIX shell)."""
    data, command, experiment = result["data"], doc["command"], doc.get("experiment")
    spec = result["spec"] or result.get("canonical")  # as typed: short enough to paste; the canonical is kept apart
    device = (doc.get("device") or {}).get("device") or data.get("device") or "cpu"
    if command == "predict":
        h, w = data["imgsz"][:2]
        return _line("predict", spec, gpu=data.get("gpu"), batch=data.get("batch"), imgsz=f"{h}x{w}" if h != w else h,
                     mode=data.get("mode"), amp=data.get("amp"), channels_last=data.get("channels_last"),
                     optimizer=data.get("optimizer"))
    if command == "summary":
        n, _, h, w = data["input"][:4]
        return _line("summary", spec, imgsz=f"{h}x{w}" if h != w else h, batch=n)
    if experiment == "data-parallel":
        return _line("bench", spec, device=device, batch=data.get("batch_per_rank"), imgsz=data.get("imgsz"),
                     amp=_amp(data.get("dtype")), iters=data.get("iters"), nproc=data.get("world_size"),
                     world_sizes=data.get("world_size"))
    if command == "compare":
        settings = (doc.get("envelope") or {}).get("settings") or {}
        return _line("compare", spec, device=device, batch=data.get("batch"), imgsz=data.get("imgsz"),
                     amp=settings.get("amp"), rounds=settings.get("rounds"), iters=settings.get("iters"),
                     channels_last=settings.get("channels_last"), breakdown=bool(data.get("breakdown")),
                     runtime=",".join(settings.get("runtimes") or ()) or None)
    return _line("bench", spec, device=device, batch=data.get("batch"), imgsz=data.get("imgsz"),
                 mode=data.get("mode"), amp=_amp(data.get("dtype")), optimizer=data.get("optimizer") or None,
                 iters=data.get("iters"), channels_last=data.get("channels_last"), compile=data.get("compiled"),
                 breakdown=bool(data.get("breakdown")), runtime=_runtime(data.get("runtime")))


def _runtime(name: str | None) -> str | None:
    return None if name in (None, "torch") else name  # eager torch is bench's default (and always measured)


def _amp(dtype: str | None) -> str | None:
    return None if dtype in (None, "fp32") else dtype  # the autocast dtype the row ran in


def _line(command: str, spec: str, **options: object) -> str:
    words = ["netprobe", command, spec]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value not in (None, False, ""):
            words += [flag, str(value)]
    return shlex.join(words)
