"""The inputs an INT8 quantization takes its ranges from, and the held-out ones its drift is measured on.

`--calib DIR`: the images in it (.jpg, .jpeg, .png, .bmp, .webp), each resized to the model's input size
(bilinear, no crop), scaled to [0, 1] and normalised with ImageNet's mean and std; `--calib FILE.npy`: an
array (N, C, H, W) already prepared. Without it: `SYNTHETIC_IMAGES` images drawn from N(0, 1). A quarter of
the images (at least one) is held out of calibration for the drift figures; synthetic held-out images are
drawn apart (`HELD_OUT_IMAGES`, another seed). Batches are of the run's batch size (static shapes):
a short last batch is filled from the start of its own set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netprobe.errors import InputError, quote

SYNTHETIC_IMAGES = 32
HELD_OUT_IMAGES = 16
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, as the zoo's models are trained


@dataclass
class Calibration:
    """Calibration and held-out batches, numpy float32 arrays (batch, C, H, W), and where they came from."""

    batches: list[np.ndarray]
    held_out: list[np.ndarray]
    source: str  # in words, for the row
    synthetic: bool = False  # N(0, 1) noise, no images: a classifier's top-1 on it is no verdict


def check_calib(path: str, in_chans: int, size: tuple[int, int]) -> int:
    """Refuse a --calib that cannot be used (missing, empty, unreadable, wrong shape); the image count."""
    return len(_images(path, in_chans, size))


def calibration(path: str | None, batch: int, in_chans: int, size: tuple[int, int]) -> Calibration:
    """The calibration of a run (see the module's docstring)."""
    if path is None:
        rng = np.random.default_rng(0)
        images = rng.standard_normal((SYNTHETIC_IMAGES, in_chans, *size), dtype=np.float32)
        held = np.random.default_rng(1).standard_normal((HELD_OUT_IMAGES, in_chans, *size), dtype=np.float32)
        return Calibration(_batches(images, batch), _batches(held, batch),
                           f"synthetic: {SYNTHETIC_IMAGES} images N(0, 1), {HELD_OUT_IMAGES} held out", synthetic=True)
    images = _images(path, in_chans, size)
    held = max(1, len(images) // 4)
    what = ("resized to " + "×".join(map(str, size)) + ", ImageNet mean/std") if Path(path).is_dir() else "(array)"
    return Calibration(_batches(images[:-held], batch), _batches(images[-held:], batch),
                       f"{quote(path)}: {len(images) - held} images {what}, {held} held out")


def _batches(images: np.ndarray, batch: int) -> list[np.ndarray]:
    count = -(-len(images) // batch)
    order = np.arange(count * batch) % len(images)  # a short last batch repeats images of its own set
    return [np.ascontiguousarray(images[order[i * batch:(i + 1) * batch]]) for i in range(count)]


def _images(path: str, in_chans: int, size: tuple[int, int]) -> np.ndarray:
    where = Path(path).expanduser()
    if where.is_dir():
        return _read_folder(path, where, in_chans, size)
    if where.suffix.lower() != ".npy" or not where.is_file():
        raise InputError(f"--calib {quote(path)} is neither a folder of images nor a .npy file; give one")
    try:
        images = np.load(where, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"--calib {quote(path)} does not read as a .npy array ({type(exc).__name__})") from None
    want = (in_chans, *size)
    if images.ndim != 4 or tuple(images.shape[1:]) != want or images.shape[0] < 2:
        raise InputError(f"--calib {quote(path)} holds an array of shape {list(images.shape)}; give (N, "
                         f"{', '.join(map(str, want))}) with N >= 2 (one part calibrates, the rest is held out)")
    if not np.issubdtype(images.dtype, np.number):
        raise InputError(f"--calib {quote(path)} holds {images.dtype} values; give numbers")
    return images.astype(np.float32)


def _read_folder(path: str, where: Path, in_chans: int, size: tuple[int, int]) -> np.ndarray:
    files = sorted(p for p in where.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise InputError(f"--calib {quote(path)} holds {len(files)} images ({', '.join(IMAGE_SUFFIXES)}); give at "
                         "least 2 (one part calibrates, the rest is held out)")
    if in_chans != 3:
        raise InputError(f"--calib {quote(path)} holds RGB images but the model takes {in_chans} channels; "
                         "give a .npy array of its shape")
    from PIL import Image

    h, w = size
    images = np.empty((len(files), 3, h, w), np.float32)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as image:
                pixels = np.asarray(image.convert("RGB").resize((w, h), Image.BILINEAR), np.float32) / 255
        except Exception as exc:
            raise InputError(f"--calib {quote(path)}: {quote(file.name)} does not read as an image "
                             f"({type(exc).__name__})") from None
        images[i] = ((pixels - MEAN) / STD).transpose(2, 0, 1)
    return images
