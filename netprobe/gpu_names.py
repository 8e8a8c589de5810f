"""Whether a CUDA device's name (torch.cuda.get_device_name: "Tesla V100-SXM2-16GB", "NVIDIA GeForce RTX
3090") names a GPU of netprobe's table, by its label ("V100 SXM2 16GB"): torch-free, read by the GPU table
and by the report, which matches stored predictions to measured devices."""

from __future__ import annotations

import re


def same_gpu(label: str, device_name: str) -> bool:
    """The same model, the same memory where the device's name states it, and PCIe on both or neither
    (CUDA names a PCIe card so; an SXM one may not say SXM)."""
    ours, theirs = _words(label), _words(device_name)
    if _model(ours) != _model(theirs):
        return False
    if ("pcie" in ours) != ("pcie" in theirs):
        return False
    stated = {w for w in theirs if w.endswith("gb") and w[:-2].isdigit()}
    return not stated or bool(stated & set(ours))


def _model(words: list[str]) -> list[str]:
    """The words that name the model: not its memory (40gb, hbm3) or its form (sxm4, pcie)."""
    return [w for w in words if not (w.endswith("gb") or w.startswith(("sxm", "hbm")) or w == "pcie")]


def _words(name: str) -> list[str]:
    """A GPU name as lower-case words, the maker's names left out: "NVIDIA A100-SXM4-40GB" -> a100 sxm4 40gb."""
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w and w not in ("nvidia", "tesla", "geforce")]
