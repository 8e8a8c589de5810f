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


def memory_mb() -> int | None:
    """The machine's physical memory in MB (2^20 bytes): /proc/meminfo's MemTotal, else sysconf; None unknown."""
    match = re.search(r"MemTotal:\s*(\d+)\s*kB", read_proc("/proc/meminfo"))
    if match:
        return int(match.group(1)) // 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return None


def board_model() -> str:
    """The board's name where the firmware says it (a Jetson's device tree), else ''."""
    return read_proc("/proc/device-tree/model").strip("\x00\n ")


def nvidia_gpus() -> list[str]:
    """The NVIDIA GPUs the driver sees (/proc/driver/nvidia), read without starting CUDA; [] where none."""
    folder = "/proc/driver/nvidia/gpus"
    names = []
    for bus in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        match = re.search(r"Model:\s*(.+)", read_proc(f"{folder}/{bus}/information"))
        if match:
            names.append(match.group(1).strip())
    return names


def nvidia_driver() -> str:
    """The NVIDIA kernel driver's version (/proc/driver/nvidia/version), else ''."""
    match = re.search(r"Kernel Module(?: for \w+)?\s+([\d.]+)", read_proc("/proc/driver/nvidia/version"))
    return match.group(1) if match else ""


def host_facts() -> dict:
    """What this machine is, as far as the operating system says, without starting torch or CUDA: the
    hardware (CPU model, logical CPUs, memory, architecture, board, NVIDIA GPUs) and the software around it."""
    return {"cpu": cpu_name(), "cpus": os.cpu_count() or 1, "usable_cores": len(usable_cores()),
            "memory_mb": memory_mb(), "arch": platform.machine(), "board": board_model(), "gpus": nvidia_gpus(),
            "driver": nvidia_driver(), "os": platform.platform(), "python": platform.python_version()}
