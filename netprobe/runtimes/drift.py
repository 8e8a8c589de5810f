"""How far a deployed model's outputs moved from eager fp32 torch's, on inputs its calibration did not see:
the largest absolute error, the cosine similarity of each output (all held-out images at once), and for a
classifier the share of images whose top-1 class is the same, for a detector each head's agreement (below).
A row whose lowest cosine falls below `DRIFT_COSINE` says `drift`; with trained weights, so does a detector head's
agreement below `HEAD_AGREEMENT_MIN`, and, on real held-out images, a classifier's top-1 agreement below
`TOP1_AGREEMENT_MIN` (`Drift.judged`): logits can keep a cosine near 1 while the classes of close calls flip.

A detector head's agreement, per level (P3, P4, P5): of the candidate detections either model keeps before
NMS (anchors whose confidence, the best class score, times objectness where the head has one, reaches
`SCORE_THRESHOLD`, ultralytics' default `conf`), the share both keep with the same class. None where no anchor
of the level reaches it in either model. Untrained heads score at their prior (YOLOv8, YOLOv5: about 1e-4, no
candidate) or near-uniformly (YOLOv3: 0.25-0.28, the class a coin toss), so the figure means something only
with trained weights (`--weights`) and real held-out images (`--calib DIR`): bench judges it only then."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from netprobe.detect.scores import ScoreLayout

DRIFT_COSINE = 0.99  # an output whose cosine with eager fp32's is below this marks the row `drift` (about 8°)
SCORE_THRESHOLD = 0.25  # a detector's candidate: confidence at least this (ultralytics' predict default `conf`)
HEAD_AGREEMENT_MIN = 0.9  # a detector head whose candidates agree less than this marks the row `drift`
TOP1_AGREEMENT_MIN = 0.9  # a trained classifier whose held-out top-1 classes agree less than this: `drift`


@dataclass
class Drift:
    """A runtime's outputs against eager fp32 torch's over the held-out images."""

    max_abs_err: float
    cosines: list[float] = field(default_factory=list)  # one per output
    top1_agreement: float | None = None  # classifiers: the share of images with the same top-1 class
    head_agreement: dict[str, float | None] = field(default_factory=dict)  # detectors: per head (see the module)
    head_candidates: dict[str, int] = field(default_factory=dict)  # ... over how many candidates (either model's)
    images: int = 0

    @property
    def cosine_min(self) -> float:
        return min(self.cosines, default=1.0)

    @property
    def heads_drifted(self) -> list[str]:
        return [name for name, agree in self.head_agreement.items() if agree is not None and agree < HEAD_AGREEMENT_MIN]

    @property
    def drifted(self) -> bool:
        return self.cosine_min < DRIFT_COSINE or bool(self.heads_drifted)

    @property
    def top1_low(self) -> bool:
        return self.top1_agreement is not None and self.top1_agreement < TOP1_AGREEMENT_MIN

    def judged(self, trained: bool, real_images: bool) -> bool:
        """Whether the row says drift: a cosine under DRIFT_COSINE always; a detector head's agreement only with
        trained weights (untrained scores sit at their prior, see the module); a classifier's top-1 agreement
        only with trained weights on real held-out images (an untrained net's, or one on noise, has close calls
        everywhere: its flips are coin tosses)."""
        return self.cosine_min < DRIFT_COSINE or (trained and (bool(self.heads_drifted)
                                                               or (real_images and self.top1_low)))

    def note(self) -> str:
        top1 = f", top-1 agreement {self.top1_agreement:.0%}" if self.top1_agreement is not None else ""
        top1 += f" (below {TOP1_AGREEMENT_MIN:g})" if self.top1_low else ""
        heads = (f", head agreement {heads_text(self.head_agreement)} (below {HEAD_AGREEMENT_MIN:g}: "
                 f"{', '.join(self.heads_drifted)})" if self.heads_drifted else "")
        return (f"outputs moved from eager fp32 on {self.images} held-out images: lowest cosine "
                f"{self.cosine_min:.4f} (under {DRIFT_COSINE:g} is drift), max abs err {self.max_abs_err:.2g}"
                f"{top1}{heads}")


def heads_text(agreement: dict[str, float | None]) -> str:
    """'P3 97%, P4 100%, P5 -' (-: no candidate in either model)."""
    return ", ".join(f"{name} {'-' if v is None else format(v, '.0%')}" for name, v in agreement.items())


def is_classifier(outputs: list[torch.Tensor]) -> bool:
    """One output of shape (batch, classes) with more than one class."""
    return len(outputs) == 1 and outputs[0].dim() == 2 and outputs[0].shape[1] > 1


def measure_drift(reference: list[list[torch.Tensor]], runs: list[list], layout: ScoreLayout | None = None) -> Drift:
    """Compare the outputs of every held-out batch (`runs`, as the runtime gave them) with eager torch's
    (`reference`, the same batches); outputs of differing count or shape raise ValueError. With a detector's
    score layout (`netprobe.detect.scores.watch_heads`), each head's agreement too."""
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
    if layout is not None and layout.heads and len(reference[0]) == 1:
        _head_agreement(drift, layout, torch.cat(per_output[0][0]), torch.cat(per_output[0][1]))
    return drift


def _head_agreement(drift: Drift, layout: ScoreLayout, want: torch.Tensor, got: torch.Tensor) -> None:
    """Per head: of the anchors either model keeps (confidence >= SCORE_THRESHOLD), the share both keep with
    the same best class (see the module's docstring)."""
    best_a, class_a = layout.confidences(want).max(-1)
    best_b, class_b = layout.confidences(got).max(-1)
    keep_a, keep_b = best_a >= SCORE_THRESHOLD, best_b >= SCORE_THRESHOLD
    agree = keep_a & keep_b & (class_a == class_b)
    for head in layout.heads:
        either = int((keep_a | keep_b)[:, head.start:head.stop].sum())
        drift.head_candidates[head.name] = either
        drift.head_agreement[head.name] = int(agree[:, head.start:head.stop].sum()) / either if either else None


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    norms = a.double().norm() * b.double().norm()
    if norms == 0:  # both zero: the same; one zero: nothing in common
        return 1.0 if a.abs().max() == b.abs().max() == 0 else 0.0
    return float((a.double() @ b.double()) / norms)
