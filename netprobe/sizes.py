"""Image sizes and batches as a user gives them, parsed once into what the rest of netprobe takes: an
(H, W) tuple, an int batch in range. Torch-free: the CLI parses at its edge before any model is built."""

from __future__ import annotations

from netprobe.defaults import MAX_BATCH, MAX_SIDE
from netprobe.errors import InputError, check_range, quote

Size = tuple[int, int]  # (H, W) in pixels


def parse_imgsz(text: str | int | tuple[int, int] | list[int]) -> Size:
    """'384', 384, '384x320' (H x W) or (384, 320) -> (H, W), each side 1..MAX_SIDE."""
    as_text = "x".join(map(str, text)) if isinstance(text, tuple | list) else str(text)
    parts = as_text.lower().replace("×", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"image size {quote(text)} is not a number; give N or HxW, e.g. 384 or 384x320") from None
    if len(sizes) not in (1, 2):
        raise InputError(f"image size {quote(text)} is malformed; give N or HxW, e.g. 384 or 384x320")
    size = (sizes[0], sizes[-1])
    if max(size) > MAX_SIDE:
        raise InputError(f"image size {max(size)} is too large; at most {MAX_SIDE} per side")
    return size  # the lower bound depends on the model: Target.check_input


def as_size(imgsz: str | int | tuple[int, int] | list[int] | None) -> Size | None:
    """None stays None (the model's own size); anything else parsed (a tuple of two ints as it is)."""
    if imgsz is None:
        return None
    if isinstance(imgsz, tuple) and len(imgsz) == 2 and all(type(v) is int for v in imgsz) and max(imgsz) <= MAX_SIDE:
        return imgsz
    return parse_imgsz(imgsz)


def size_text(size: Size) -> int | str:
    """(H, W) as results show it: N when square, else "HxW"."""
    return size[0] if size[0] == size[1] else f"{size[0]}x{size[1]}"


def check_batch(batch: int, name: str = "batch") -> None:
    check_range(name, batch, 1, MAX_BATCH)
