"""A model's step, counted on meta and turned into the time model's work (shared by predict and fit)."""

from __future__ import annotations

import torch
from torch import nn

from netprobe.counting import count_train
from netprobe.op_kinds import KindClassifier, first_component
from netprobe.prediction.model import Work, step_work

OPTIMIZERS = ("sgd", "adamw")


def optimizer_factory(name: str):
    """What timm's train benchmark and most recipes run: SGD with momentum, or AdamW."""
    if name == "adamw":
        return lambda params: torch.optim.AdamW(params, lr=1e-3, foreach=False)
    return lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, foreach=False)


def counted_work(model: nn.Module, batch: int, size: tuple[int, int], mode: str, amp: str,
                 optimizer: str = "sgd", in_chans: int = 3, stage_of=first_component) -> list[Work]:
    """The work of one step of `model` (on meta) at this batch and size: forward for "infer"; forward,
    backward and the optimizer's update for "train". Activations move at 2 bytes under AMP, 4 in
    fp32; the optimizer always updates fp32 parameters (AMP keeps fp32 master weights)."""
    train = mode == "train"
    dtype = torch.float32 if amp == "off" else torch.float16
    count = count_train(model, (batch, in_chans, *size), dtype=dtype,
                        optimizer=optimizer_factory(optimizer) if train else None)
    classify = KindClassifier(model).kind
    work = step_work(count, classify, stage_of, train)
    if dtype != torch.float32:
        for w in work:
            if w.key == "optimizer":
                w.bytes *= 2
    return work
