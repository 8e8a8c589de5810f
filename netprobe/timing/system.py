"""What the operating system says about this machine: its /proc files, the CPU's name, the usable cores."""

from __future__ import annotations

import os
import platform
import re


def read_proc(path: str) -> str:
    """A /proc (or any) text file's contents; '' where it does not exist or cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module knows."""
    match = re.search(r"model name\s*:\s*(.+)", read_proc("/proc/cpuinfo"))
    if match:
        return match.group(1).strip()
    return platform.processor() or platform.machine()


def usable_cores() -> list[int]:
    """The CPU cores this process may run on (its affinity mask), in order."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))
