"""What torch's own FlopCounterMode says of the same train step, shown beside ours."""

from __future__ import annotations

import torch
from torch import nn

from netprobe.counting.train import surrogate_loss


def flop_counter_reference(model: nn.Module, input_shape: tuple[int, ...], loss: str = "auto") -> dict:
    """What torch.utils.flop_counter.FlopCounterMode reports for the same train step (forward, the
    same surrogate loss, backward), on the meta device. Its convolution backward counts a grouped
    conv's weight gradient `groups` times over, so a depthwise net's step looks far more costly.

    Returns FLOPs (its unit: 2 per MAC) and the MACs they stand for, forward and whole step.
    """
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    def run(backward: bool) -> int:
        stand_ins = {name: torch.empty(t.shape, dtype=t.dtype, device="meta").requires_grad_(t.requires_grad)
                     for name, t in [*model.named_parameters(), *model.named_buffers()]}
        was_training = model.training
        model.train()
        try:
            with torch.enable_grad(), FlopCounterMode(display=False) as mode:
                out = functional_call(model, stand_ins, (torch.empty(input_shape, device="meta"),))
                if backward:
                    surrogate_loss(out, loss)[1].backward()
        finally:
            model.train(was_training)
        return mode.get_total_flops()

    fwd, step = run(False), run(True)
    return {"source": "torch.utils.flop_counter.FlopCounterMode", "fwd_flops": fwd, "bwd_flops": step - fwd,
            "step_flops": step, "fwd_macs": fwd // 2, "step_macs": step // 2}
