"""Does the counted train-step memory agree with where timm's RTX 3090 runs ran out of memory?

timm's published training benchmark (RTX 3090 24 GB, AMP fp16, channels-first, SGD with momentum,
torch 1.12; ../shared/reference/gpu-public/timm-gpu.csv) starts each model at batch 512 and lowers
it on out-of-memory through 512, 384, 256, 192, 128, 96, 64, 48, 32, 24, 16, 12, 8. So the batch
of a row fitted, and the step above it did not. For every row of a model netprobe's zoo builds,
netprobe's count at the row's batch and image size must fit in the 24268 MiB CUDA reports for a 3090
(the datasheet's 24 GB less the driver's part) beside CUDA_ALLOWANCE_BYTES, and the count at the step
above must not: `MemoryCount.fits`, the step's allocations replayed through the caching allocator at
that capacity, as `netprobe predict --gpu rtx3090` decides. The figure: the fraction of rows where
both hold (issue 26's goal: at least 90%).

timm's `tf_` models pad the TensorFlow way (an extra pad op, and its copy, before every strided
conv) which netprobe's zoo does not build: their rows are shown apart and not in the figure.
drop_path=0: timm's benchmark builds its models without stochastic depth.

    python benchmarks/memory_accuracy.py [--csv PATH]
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

from netprobe.counting.memory import CUDA_ALLOWANCE_BYTES
from netprobe.prediction.memory import count_memory

REFERENCE = Path("shared") / "reference" / "gpu-public" / "timm-gpu.csv"  # ../shared beside the checkout
CSV = next((p / REFERENCE for p in Path(__file__).resolve().parents if (p / REFERENCE).exists()), REFERENCE)
SEQUENCE = (512, 384, 256, 192, 128, 96, 64, 48, 32, 24, 16, 12, 8)
# RTX 3090: 24 GB on the datasheet (gpus.csv), of which CUDA reports 24268 MiB as the device's total
# (torch.cuda.get_device_properties: "total_memory=24268MB" in Hugging Face transformers' docs; "23.70 GiB total
# capacity" in 3090 out-of-memory messages of torch 1.12's time, e.g. github.com/GaoLii/DSP/issues/10)
MEMORY_BYTES = 24268 * 2**20
SOURCE = "benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv"
ZOO = {"mobilenetv3_large_100": "mobilenetv3_large", **{f"resnet{d}": f"resnet{d}" for d in (18, 34, 50, 101)},
       **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
       **{f"efficientnetv2_{s}": f"efficientnetv2_{s}" for s in "smlx"}}
ZOO["efficientnetv2_x"] = "efficientnetv2_xl"


def zoo_name(timm_name: str) -> tuple[str, bool] | None:
    """netprobe's arch for a timm model, and whether timm pads the TensorFlow way; None if not in the zoo."""
    tf = timm_name.startswith("tf_")
    base = re.sub(r"_(in21ft1k|ap|ns)$", "", timm_name.removeprefix("tf_"))
    if base != timm_name.removeprefix("tf_"):
        return None  # _ap / _ns / _in21ft1k: the same network with other weights, the same batch as its plain row
    base = {"efficientnetv2_xl": "efficientnetv2_x"}.get(base, base)
    return (ZOO[base], tf) if base in ZOO else None


def rows(path: Path) -> list[dict]:
    with path.open() as f:
        return [r for r in csv.DictReader(f) if r["source_file"] == SOURCE and zoo_name(r["model"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=CSV)
    args = parser.parse_args()
    print(f"RTX 3090 train, AMP fp16, channels-first; memory {MEMORY_BYTES / 2**20:.0f} MiB (CUDA's total), allowance "
          f"{CUDA_ALLOWANCE_BYTES / 2**20:.0f} MiB (CUDA context + workspaces); MB = 2^20 bytes, what the caching "
          "allocator holds at the peak on the 3090, or with room where it does not fit there (*); frag: what it holds "
          "beyond the tensors' peak, at the step above or else at the row's batch")
    print(f"{'timm model':<22} {'netprobe':<18} {'px':>4} {'ran':>4} {'MB at ran':>10} {'above':>5} "
          f"{'MB above':>9} {'frag':>6}  agree")
    agree = {False: [], True: []}
    for row in rows(args.csv):
        arch, tf = zoo_name(row["model"])
        batch, size = int(row["batch"]), int(row["img_size"])
        above = SEQUENCE[SEQUENCE.index(batch) - 1] if batch != SEQUENCE[0] else None
        at, at_fits, at_frag = _held(arch, batch, size)
        over, over_fits, over_frag = _held(arch, above, size) if above else (None, False, None)
        ok = at_fits and not over_fits
        agree[tf].append(ok)
        over_text = f"{over / 2**20:8.0f}{' ' if over_fits else '*'}" if over else f"{'-':>9}"
        why = "" if ok else " (the step above fits)" if over_fits else " (the batch that ran does not fit)"
        frag = over_frag if over else at_frag
        print(f"{row['model']:<22} {arch:<18} {size:>4} {batch:>4} {at / 2**20:9.0f}{' ' if at_fits else '*'} "
              f"{above or '-':>5} {over_text} {100 * frag:5.1f}%  {'yes' if ok else 'NO'}{why}", flush=True)
    for tf, label in ((False, "timm's own ports (PyTorch padding)"), (True, "tf_ ports (TensorFlow padding, apart)")):
        if agree[tf]:
            print(f"{label}: {sum(agree[tf])}/{len(agree[tf])} agree ({100 * sum(agree[tf]) / len(agree[tf]):.0f}%)")


def _held(arch: str, batch: int, size: int) -> tuple[int, bool, float]:
    """What the allocator holds at the peak on the 3090 (with room where the step does not fit there), whether
    it fits, and the share of it beyond the tensors' peak (fragmentation)."""
    count = count_memory(f"{arch}:drop_path=0", batch, size, mode="train", amp="fp16", optimizer="sgd")
    held, fits = count.shown_on(MEMORY_BYTES)
    return held, fits, held / count.total_bytes - 1


if __name__ == "__main__":
    main()
