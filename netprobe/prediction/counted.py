"""A model's step, counted on meta and turned into the time model's work (shared by predict and fit)."""

from __future__ import annotations

import torch
from torch import nn

from netprobe.counting import count_train
from netprobe.op_kinds import KindClassifier, first_component
from netprobe.prediction.model import Work, step_work

OPTIMIZERS = ("sgd", "adamw")


class CountedUpdate:
    """What timm's train benchmark and most recipes run: SGD with momentum (lr 0.1) or AdamW (lr 1e-3,
    torch's defaults otherwise), one tensor at a time, through torch's own update functions: the same
    aten ops as `torch.optim.SGD`/`AdamW(foreach=False)`.step(), without their classes, whose
    constructor and step import torch._dynamo (seconds, more than the whole count)."""

    def __init__(self, name: str, params: list[torch.Tensor]) -> None:
        self.name, self.params = name, params
        self.momentum: list[torch.Tensor | None] = [None] * len(params)  # SGD: made on the first step
        self.moments: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # AdamW: exp_avg, exp_avg_sq, step

    @torch.no_grad()
    def step(self) -> None:
        """One update of the parameters that have a gradient; the first creates the state, as torch's does."""
        from torch.optim.adamw import adamw
        from torch.optim.sgd import sgd

        with_grad = [i for i, p in enumerate(self.params) if p.grad is not None]
        params = [self.params[i] for i in with_grad]
        grads = [p.grad for p in params]
        if self.name == "sgd":
            momentum = [self.momentum[i] for i in with_grad]
            sgd(params, grads, momentum, foreach=False, weight_decay=0, momentum=0.9, lr=0.1, dampening=0,
                nesterov=False, maximize=False)
            for i, buffer in zip(with_grad, momentum, strict=True):
                self.momentum[i] = buffer
            return
        if not self.moments:
            step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
            self.moments = [(torch.zeros_like(p, memory_format=torch.preserve_format),
                             torch.zeros_like(p, memory_format=torch.preserve_format),
                             torch.tensor(0.0, dtype=step_dtype, device="cpu")) for p in params]
        exp_avgs, exp_avg_sqs, steps = (list(column) for column in zip(*self.moments, strict=True))
        adamw(params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=False, fused=False, amsgrad=False, beta1=0.9,
              beta2=0.999, lr=1e-3, weight_decay=1e-2, eps=1e-8, maximize=False)


class _UpdateFactory:
    """Makes a `CountedUpdate`; `per_tensor`: each parameter is updated alone, so `count_train` may count
    one parameter of each layout for all of them."""

    per_tensor = True

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, params: list[torch.Tensor]) -> CountedUpdate:
        return CountedUpdate(self.name, params)


def optimizer_factory(name: str) -> _UpdateFactory:
    """A factory of the optimizer `name` ("sgd" or "adamw") for `count_train`: see `CountedUpdate`."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} is not known; use {' or '.join(OPTIMIZERS)}")
    return _UpdateFactory(name)


def counted_work(model: nn.Module, batch: int, size: tuple[int, int], mode: str, amp: str,
                 optimizer: str = "sgd", in_chans: int = 3, stage_of=first_component) -> list[Work]:
    """The work of one step of `model` (on meta) at this batch and size: forward for "infer" (counted as
    inference runs: eval mode, no gradient); forward, backward and the optimizer's update for "train".
    Activations move at 2 bytes under AMP, 4 in fp32; the optimizer always updates fp32 parameters (AMP
    keeps fp32 master weights)."""
    train = mode == "train"
    dtype = torch.float32 if amp == "off" else torch.float16
    count = count_train(model, (batch, in_chans, *size), dtype=dtype,
                        optimizer=optimizer_factory(optimizer) if train else None, forward_only=not train)
    classify = KindClassifier(model).kind
    work = step_work(count, classify, stage_of, train)
    if dtype != torch.float32:
        for w in work:
            if w.key == "optimizer":
                w.bytes *= 2
    return work
