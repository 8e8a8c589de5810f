"""Eager PyTorch steps: a train step as a training loop runs it (forward, loss, backward, optimizer) or
an inference step as a server runs it (forward under inference mode), each phase marked on a clock."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from netprobe.tensors import tensors
from netprobe.timing.clock import Clock
from netprobe.timing.step import INFER_PHASES, TRAIN_PHASES

AMP_DTYPES = {"off": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
# The optimizers a train step builds; the train counter builds the same ones to count their update.
OPTIMIZERS: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
    "sgd": lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9),
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-3),
}
CROSS_ENTROPY = "cross-entropy"
SURROGATE = "surrogate: mean of squares of every output"


def loss_name(classes: int) -> str:
    """What a train step's loss is: cross-entropy for a classifier's logits, else the surrogate."""
    return CROSS_ENTROPY if classes else SURROGATE


class TorchStep:
    """One eager-torch step on `x` (a batch already on the model's device, in its memory format).

    `mode` "train": forward under autocast to `dtype` (unless fp32), the loss, backward (through a
    gradient scaler for fp16), the optimizer step; "infer": the forward under inference mode, in
    eval mode. `classes` > 0: cross-entropy of the logits against labels `y`; 0: the mean square
    of every floating-point output (detectors, feature extractors), so that backward reaches every
    parameter that produced an output. `compile`: the model goes through `torch.compile` first.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, mode: str = "train",
                 dtype: torch.dtype = torch.float32, optimizer: str = "sgd", classes: int = 0,
                 compile: bool = False) -> None:
        self.device = x.device.type
        self.mode, self.dtype, self.classes = mode, dtype, classes
        self.phases = TRAIN_PHASES if mode == "train" else INFER_PHASES
        self.x, self.y = x, y
        self.model = torch.compile(model) if compile else model
        self.opt: torch.optim.Optimizer | None = None
        self.scaler = None
        if mode == "train":
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            self.opt = OPTIMIZERS[optimizer](params)
            self.scaler = torch.amp.GradScaler(self.device) if dtype == torch.float16 else None
        else:
            model.eval()

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device, dtype=self.dtype)

    def loss(self, out: object) -> torch.Tensor:
        if self.classes:
            return F.cross_entropy(out.float(), self.y)  # type: ignore[union-attr]
        outs = [t for t in tensors(out) if t.is_floating_point()]
        return sum(t.float().pow(2).mean() for t in outs)  # type: ignore[return-value]

    def __call__(self, clock: Clock) -> None:
        if self.mode == "infer":
            clock.mark()
            with torch.inference_mode(), self._autocast():
                self.model(self.x)
            clock.mark()
            return
        clock.mark()
        with self._autocast():
            loss = self.loss(self.model(self.x))
        clock.mark()
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        clock.mark()
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()  # type: ignore[union-attr]
        self.opt.zero_grad(set_to_none=True)  # type: ignore[union-attr]
        clock.mark()

    def release(self) -> None:
        self.model = self.opt = self.scaler = self.x = self.y = None  # type: ignore[assignment]
