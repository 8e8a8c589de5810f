"""The PNGs bench and compare write: the roofline per configuration, or throughput and MACs per variant."""

from __future__ import annotations

import io

from netprobe.cli.output import Output, note


def write_roofline(output: Output, items: list, path: str, title: str) -> bool:
    """The rooflines of the results that have one, one panel each, written to `path`."""
    from netprobe.roofline import Roofline, plot_roofline

    panels = [(label, Roofline.from_dict(r.roofline)) for label, r in items if r.roofline]
    if not panels:
        note("no roofline to plot: no configuration has a breakdown (see the notes above)")
        return False
    buf = io.BytesIO()
    plot_roofline(panels, buf, title)
    return _write(output, path, buf)


def write_compare_plot(output: Output, rows: list, path: str, subtitle: str) -> bool:
    """Throughput and MACs per variant, written to `path`."""
    from netprobe.plot import plot_compare

    buf = io.BytesIO()
    plot_compare(rows, buf, subtitle)
    return _write(output, path, buf)


def _write(output: Output, path: str, buf: io.BytesIO) -> bool:
    if output.write(path, buf.getvalue(), "plot"):
        note(f"plot written to {path}")
        return True
    return False
