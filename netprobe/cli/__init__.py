"""The `netprobe` command: a thin layer of typer and rich over the Python API, one module per command."""

from netprobe.cli import bench, compare, history, predict, report, summary  # noqa: F401  (each registers its command)
from netprobe.cli.app import app, main

__all__ = ["app", "main"]
