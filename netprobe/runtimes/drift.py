"""How far a deployed model's outputs moved from eager fp32 torch's, on inputs its calibration did not see:
the largest absolute error, the cosine similarity of each output (all held-out images at once), and for a
classifier the share of images whose top-1 class is the same. A row whose lowest cosine falls below
`DRIFT_COSINE` says `drift`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

DRIFT_COSINE = 0.99  # an output whose cosine with eager fp32's is below this marks the row `drift` (about 8°)


@dataclass
class Drift:
    """A runtime's outputs against eager fp32 torch's over the held-out images."""

    max_abs_err: float
    cosines: list[float] = field(default_factory=list)  # one per output
    top1_agreement: float | None = None  # classifiers: the share of images with the same top-1 class
    images: int = 0

    @property
    def cosine_min(self) -> float:
        return min(self.cosines, default=1.0)

    @property
    def drifted(self) -> bool:
        return self.cosine_min < DRIFT_COSINE

    def note(self) -> str:
        top1 = f", top-1 agreement {self.top1_agreement:.0%}" if self.top1_agreement is not None else ""
        return (f"outputs moved from eager fp32 on {self.images} held-out images: lowest cosine "
                f"{self.cosine_min:.4f} (below {DRIFT_COSINE:g}), max abs err {self.max_abs_err:.2g}{top1}")


def is_classifier(outputs: list[torch.Tensor]) -> bool:
    """One output of shape (batch, classes) with more than one class."""
    return len(outputs) == 1 and outputs[0].dim() == 2 and outputs[0].shape[1] > 1


def measure_drift(reference: list[list[torch.Tensor]], runs: list[list]) -> Drift:
    """Compare the outputs of every held-out batch (`runs`, as the runtime gave them) with eager torch's
    (`reference`, the same batches); outputs of differing count or shape raise ValueError."""
    per_output: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = [([], []) for _ in reference[0]]
    for want, got in zip(reference, runs, strict=True):
        if len(got) != len(want):
            raise ValueError(f"{len(got)} outputs where eager torch gives {len(want)}")
        for i, (a, b) in enumerate(zip(want, got, strict=True)):
            b = torch.as_tensor(b).float()
            if tuple(a.shape) != tuple(b.shape):
                raise ValueError(f"output {i} has shape {list(b.shape)} where eager torch gives {list(a.shape)}")
            per_output[i][0].append(a.float().cpu())
            per_output[i][1].append(b)
    drift = Drift(0.0, images=sum(r[0].shape[0] for r in reference))
    for want, got in per_output:
        a, b = torch.cat(want), torch.cat(got)
        drift.max_abs_err = max(drift.max_abs_err, (a - b).abs().max().item() if a.numel() else 0.0)
        drift.cosines.append(_cosine(a.flatten(), b.flatten()))
    if is_classifier(reference[0]):
        a, b = torch.cat(per_output[0][0]), torch.cat(per_output[0][1])
        drift.top1_agreement = (a.argmax(1) == b.argmax(1)).float().mean().item()
    return drift


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    norms = a.double().norm() * b.double().norm()
    if norms == 0:  # both zero: the same; one zero: nothing in common
        return 1.0 if a.abs().max() == b.abs().max() == 0 else 0.0
    return float((a.double() @ b.double()) / norms)
