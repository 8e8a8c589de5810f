"""GPUs as data: datasheet figures with their source (`gpus.csv`), or a user's YAML file (`--gpu-spec`).

Tensor rates are dense (datasheets print them with sparsity, halved here). `fp16_tflops` and
`bf16_tflops` are the rates with fp32 accumulation, which is what AMP runs: on GeForce cards
that is half the fp16-accumulate rate. A cell named in `unverified` could not be confirmed from
a stored source.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

from netprobe.errors import InputError, closest, quote

TABLE = Path(__file__).with_name("gpus.csv")
GENERATIONS = ("volta", "turing", "ampere", "ada", "hopper", "blackwell")
PRECISIONS = ("off", "fp16", "bf16")


@dataclass(frozen=True)
class GPU:
    """One GPU's datasheet figures: TFLOPS dense, bandwidth in GB/s (10^9 bytes), memory in GB as
    datasheets print it, which for GPU memory means GiB (a "16 GB" V100 has 16 × 2^30 bytes)."""

    name: str
    label: str
    generation: str
    geforce: bool
    sm_count: int
    boost_clock_mhz: float
    mem_gb: float
    mem_bw_gbs: float
    fp32_tflops: float
    tf32_tflops: float | None  # None: no TF32 (before Ampere)
    fp16_tflops: float | None  # tensor cores, fp32 accumulate
    bf16_tflops: float | None  # None: no bf16 tensor cores (before Ampere)
    source: str
    unverified: tuple[str, ...] = ()

    @property
    def mem_bytes(self) -> int:
        return int(self.mem_gb * 2**30)

    def conv_peak_tflops(self, amp: str) -> float:
        """The peak convolutions run at: fp16/bf16 tensor cores under AMP; with `amp="off"`, PyTorch's
        default (cuDNN convolutions in TF32 where the GPU has it, else fp32 CUDA cores)."""
        if amp == "off":
            return self.tf32_tflops or self.fp32_tflops
        peak = self.fp16_tflops if amp == "fp16" else self.bf16_tflops
        if peak is None:
            raise InputError(f"{self.label} has no {amp} tensor cores ({self.generation}); use --amp "
                             f"{' or '.join(p for p in PRECISIONS if p == 'off' or self.has(p))}")
        return peak

    def matmul_peak_tflops(self, amp: str) -> float:
        """Linear layers: PyTorch keeps fp32 matmuls off TF32 by default; under AMP, the tensor rate."""
        return self.fp32_tflops if amp == "off" else self.conv_peak_tflops(amp)

    def has(self, amp: str) -> bool:
        return amp == "off" or (self.fp16_tflops if amp == "fp16" else self.bf16_tflops) is not None

    def matches_device(self, device_name: str) -> bool:
        """Whether a CUDA device's name is this GPU (netprobe.gpu_names.same_gpu)."""
        from netprobe.gpu_names import same_gpu

        return same_gpu(self.label, device_name)


def _number(row: dict, key: str, where: str) -> float | None:
    text = str(row.get(key) if row.get(key) is not None else "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: field {key} is {quote(text)}, not a number") from None
    if value <= 0:
        raise InputError(f"{where}: field {key} must be above 0, got {value:g}")
    return value


_REQUIRED = ("name", "generation", "sm_count", "mem_gb", "mem_bw_gbs", "fp32_tflops")


def gpu_from_row(row: dict, where: str) -> GPU:
    """A GPU from one row of figures (the table's or a YAML file's); a missing or bad field is one line."""
    for key in _REQUIRED:
        if row.get(key) in (None, ""):
            raise InputError(f"{where}: field {key} is missing (needed: {', '.join(_REQUIRED)})")
    generation = str(row["generation"]).strip().lower()
    if generation not in GENERATIONS:
        raise InputError(f"{where}: field generation is {quote(row['generation'])}; "
                         f"use one of {', '.join(GENERATIONS)}")
    numbers = {k: _number(row, k, where) for k in ("sm_count", "boost_clock_mhz", "mem_gb", "mem_bw_gbs",
                                                    "fp32_tflops", "tf32_tflops", "fp16_tflops", "bf16_tflops")}
    return GPU(str(row["name"]).strip(), str(row.get("label") or row["name"]).strip(), generation,
               str(row.get("geforce", "no")).strip().lower() in ("yes", "true", "1"), int(numbers["sm_count"]),
               numbers["boost_clock_mhz"] or 0.0, numbers["mem_gb"], numbers["mem_bw_gbs"], numbers["fp32_tflops"],
               numbers["tf32_tflops"], numbers["fp16_tflops"], numbers["bf16_tflops"],
               str(row.get("source") or "user file").strip(), tuple(str(row.get("unverified") or "").split()))


@functools.cache
def gpu_table() -> dict[str, GPU]:
    """Every GPU netprobe knows, by name (v100, a100-80, rtx4090, ...), in the table's order."""
    with TABLE.open(newline="") as f:
        return {row["name"]: gpu_from_row(row, f"{TABLE.name} row {row['name']}") for row in csv.DictReader(f)}


def find_gpus(names: str) -> list[GPU]:
    """'v100', 'v100,a100' or 'all' -> the GPUs; an unknown name is one line with a guess and the list."""
    table = gpu_table()
    if names.strip().lower() == "all":
        return list(table.values())
    found = []
    for name in (n.strip().lower() for n in names.split(",") if n.strip()):
        if name not in table:
            near = closest(name, table)
            guess = f"did you mean {' or '.join(near)}? " if near else ""
            raise InputError(f"unknown GPU {quote(name)}; {guess}known: {', '.join(table)}, all "
                             "(or describe one with --gpu-spec FILE.yaml)")
        found.append(table[name])
    if not found:
        raise InputError("--gpu is empty; name one or more GPUs (e.g. v100,a100) or all")
    return found


def load_gpu_spec(path: str) -> GPU:
    """A GPU described in a YAML file with the table's fields (name, generation, sm_count, mem_gb,
    mem_bw_gbs, fp32_tflops, and tf32/fp16/bf16_tflops where it has them)."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise InputError(f"--gpu-spec {quote(path)} is not a file")
    try:
        data = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"--gpu-spec {quote(path)} is not valid YAML ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"--gpu-spec {quote(path)} must be a mapping of fields (name: ..., mem_gb: ...)")
    return gpu_from_row(data, f"--gpu-spec {file.name}")
