"""Does a runtime compute what eager torch computes? Its outputs against eager torch's, leaf by leaf
(outputs of any nesting: tensors in tuples, lists and dicts), each relative to its own scale.

An untrained network can give outputs of about 1e-14 (zero-initialised residual branches, tiny
classifier weights), where any absolute floor lets an all-zero output pass. So parity is checked on a
copy of the model re-initialised with a fixed seed so that every output is of unit scale
(`unit_scale_copy`): conv and linear weights of unit gain, every batch norm's running statistics
set from one batch of the check's input, so activations neither vanish nor explode.

The tolerance, measured (benchmarks/parity_errors.py, batch 2 at 64 px, CPU): correct fp32 exports of the
zoo's nets in ONNX Runtime and OpenVINO differ by up to about 3e-4 of the output's scale (resnet101: 2.8e-4;
most nets 1e-5 to 5e-5), an OpenVINO IR with fp16 weights by 4e-3 to 3e-2, a zeroed or channel-swapped
export by about 1 or more. 1e-3 passes the first and fails the others.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

PARITY_TOLERANCE = 1e-3  # max |runtime - torch| within this fraction of max |torch|, each output alone (see above)
PARITY_SEED = 0  # the seed of the unit-scale copy's weights and of the check's input


@dataclass
class Parity:
    """A runtime's outputs against eager torch's on the same input."""

    max_abs: float
    max_rel: float  # the largest, over outputs, of an output's max abs error over its own largest magnitude
    ok: bool
    note: str = ""  # why not ok: different numbers or shapes of outputs, or the error beyond tolerance
    shapes: list[list[int]] = field(default_factory=list)


def output_leaves(value: object) -> list[torch.Tensor]:
    """The tensors of an output of any nesting, in order (dict values in insertion order, as exporters
    flatten them); numpy arrays and Python numbers are taken as tensors."""
    if isinstance(value, torch.Tensor):
        return [value.detach()]
    if isinstance(value, np.ndarray | np.generic | int | float | bool):
        return [torch.as_tensor(np.asarray(value))]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, tuple | list):
        return [leaf for v in value for leaf in output_leaves(v)]
    if value is None:
        return []
    raise TypeError(f"an output of type {type(value).__name__} holds no tensors netprobe can compare")


def parity(reference: object, outputs: object, tolerance: float = PARITY_TOLERANCE) -> Parity:
    """Compare every output leaf by leaf: the same number of outputs, each of the same shape, and each
    one's largest error within `tolerance` x its own largest magnitude (integer and bool outputs: equal)."""
    want = [t.cpu() for t in output_leaves(reference)]
    got = [t.cpu() for t in output_leaves(outputs)]
    if len(got) != len(want):
        return Parity(math.inf, math.inf, False,
                      f"{len(got)} output{'s' * (len(got) != 1)} where eager torch gives {len(want)}")
    max_abs = max_rel = 0.0
    worst = None
    for i, (a, b) in enumerate(zip(want, got, strict=True)):
        if tuple(a.shape) != tuple(b.shape):
            return Parity(math.inf, math.inf, False,
                          f"output {i} has shape {list(b.shape)} where eager torch gives {list(a.shape)}")
        err, rel = _error(a, b)
        max_abs = max(max_abs, err)
        if rel > max_rel or worst is None:
            max_rel, worst = max(max_rel, rel), i
    ok = max_rel <= tolerance
    where = f"output {worst} of {len(want)}" if len(want) > 1 else "the output"
    note = "" if ok else (f"outputs differ from eager torch: {where} by {max_rel:.1e} of its scale (max abs "
                          f"{max_abs:.2g}; tolerance {tolerance:g})")
    return Parity(max_abs, max_rel, ok, note, [list(a.shape) for a in want])


def _error(want: torch.Tensor, got: torch.Tensor) -> tuple[float, float]:
    """(max abs error, max abs error over the reference's largest magnitude); inf where a non-zero
    error meets an all-zero reference, and integer or bool outputs must be equal."""
    if not want.numel():
        return 0.0, 0.0
    if not (want.is_floating_point() or want.is_complex()):
        same = torch.equal(want.long(), got.long()) if not got.is_floating_point() else bool((want == got).all())
        return (0.0, 0.0) if same else (math.inf, math.inf)
    a, b = (want.cdouble(), got.cdouble()) if want.is_complex() else (want.double(), got.double())
    err = (a - b).abs().max().item()
    if not math.isfinite(err):  # NaN or inf in one output and not in the other at the same places
        same = torch.equal(a.isnan(), b.isnan()) and torch.equal(a[~a.isnan()], b[~b.isnan()])
        return (0.0, 0.0) if same else (math.inf, math.inf)
    scale = a.abs().max().item()
    return err, err / scale if scale else (0.0 if err == 0 else math.inf)


def unit_scale_copy(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy of `model` (in eval mode) whose outputs on `x` are of unit scale: conv and linear weights
    drawn with a fixed seed at unit gain, biases and norm affines neutral with a little spread (so that
    a swapped channel shows), batch norm statistics taken from one forward on `x` and at least 8 more
    samples like it (with fewer, a stage whose map is 1x1 normalises by the statistics of 2 values, and
    activations explode: measured up to 1e13 at batch 1, 16 px)."""
    twin = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(PARITY_SEED)
    norms = []
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, nn.modules.conv._ConvNd | nn.Linear):
                _draw(module.weight, generator, 1.0 / math.sqrt(module.weight[0].numel()))
                if module.bias is not None:
                    _draw(module.bias, generator, 0.1)
            elif isinstance(module, nn.modules.batchnorm._NormBase | nn.GroupNorm | nn.LayerNorm):
                if getattr(module, "weight", None) is not None:
                    _draw(module.weight, generator, 0.2, centre=1.0)
                    _draw(module.bias, generator, 0.1)
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
                    norms.append(module)
        twin.eval()
        if norms:  # one batch sets every norm's statistics, each seeing the layers before it already set
            extra = parity_input((max(8, x.shape[0]), *x.shape[1:]), x.device, seed=PARITY_SEED + 2)
            _calibrate(twin, norms, torch.cat([x, extra]))
    return twin


def _calibrate(model: nn.Module, norms: list[nn.Module], batch: torch.Tensor) -> None:
    """Run `batch` with the batch norms normalising by its own statistics, and keep exactly those (the
    biased variance, as the normalisation used: torch's running variance is unbiased, a factor that
    compounds through the layers), so that in eval mode the batch gives what it gave here."""
    seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(module: nn.Module, args: tuple) -> None:
        dims = [d for d in range(args[0].ndim) if d != 1]
        seen[module] = (args[0].mean(dims), args[0].var(dims, unbiased=False))

    handles = [m.register_forward_pre_hook(record) for m in norms]
    try:
        for m in norms:
            m.train()
        model(batch)
    finally:
        for h in handles:
            h.remove()
        model.eval()
    for m, (mean, var) in seen.items():
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)


def _draw(tensor: torch.Tensor, generator: torch.Generator, std: float, centre: float = 0.0) -> None:
    values = torch.randn(tensor.shape, generator=generator, dtype=torch.float32) * std + centre
    tensor.copy_(values.to(tensor.device, tensor.dtype))


def parity_input(shape: tuple[int, ...], device: str | torch.device, seed: int = PARITY_SEED + 1) -> torch.Tensor:
    """The check's input: unit normal, from a fixed seed (the same in every run)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator).to(device)
