"""How far do correct fp32 exports sit from eager torch, and how far do broken ones? The evidence behind
`netprobe.runtimes.parity.PARITY_TOLERANCE`.

For every zoo arch (untrained, as netprobe builds it), at a small size: the relative error (max abs error
over the output's largest magnitude) of ONNX Runtime and OpenVINO against eager torch, on the model's own
weights and on the unit-scale copy parity is checked on; the scale of the model's own logits; and the
error of two broken exports of the unit-scale copy (its output zeroed; the input's channels swapped).

    python benchmarks/parity_errors.py [--imgsz 64] [--batch 2] [--archs efficientnet_b0,resnet18]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn

from netprobe.compare import known_archs
from netprobe.runtimes import get_runtime
from netprobe.runtimes.parity import parity, parity_input, unit_scale_copy
from netprobe.target import resolve


class Zeroed(nn.Module):
    """An export gone wrong: the model's output times zero."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) * 0


class Swapped(nn.Module):
    """An export gone wrong: the first two input channels swapped (RGB read as GRB)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.cat([x[:, 1:2], x[:, :1], x[:, 2:]], 1))


def rel_error(runtime: str, exported: nn.Module, reference: nn.Module, x: torch.Tensor) -> float:
    r = get_runtime(runtime)
    with tempfile.TemporaryDirectory() as temp, torch.inference_mode():
        session = r.load(r.export(exported, x, Path(temp), "m"), "cpu", torch.get_num_threads())
        return parity(reference(x), r.run(session, r.prepare_input(x))).max_rel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--archs", default=",".join(a for a in known_archs() if a != "custom"))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, {args.imgsz} px; "
          "rel = max |runtime - torch| / max |torch|")
    print(f"{'arch':<20}{'logit scale':>12}{'unit copy':>10}{'ort own':>10}{'ov own':>10}{'ort unit':>10}"
          f"{'ov unit':>10}{'zeroed':>9}{'swapped':>9}")
    for arch in args.archs.split(","):
        model = resolve(f"{arch}:classes=10").make("cpu").eval()
        x = parity_input((args.batch, 3, args.imgsz, args.imgsz), "cpu")
        twin = unit_scale_copy(model, x)
        with torch.inference_mode():
            scale = model(x).abs().max().item()
            unit_scale = twin(x).abs().max().item()
        own = [rel_error(r, model, model, x) for r in ("onnxruntime", "openvino")]
        unit = [rel_error(r, twin, twin, x) for r in ("onnxruntime", "openvino")]
        broken = [rel_error("onnxruntime", bad(twin), twin, x) for bad in (Zeroed, Swapped)]
        print(f"{arch:<20}{scale:>12.1e}{unit_scale:>10.1e}" + "".join(f"{v:>10.1e}" for v in own + unit)
              + "".join(f"{v:>9.1e}" for v in broken), flush=True)


if __name__ == "__main__":
    main()
