"""What torch's own FlopCounterMode says of the same train step, shown beside ours."""

from __future__ import annotations

import torch
from torch import nn

from netprobe.counting.train import surrogate_loss


def flop_counter_reference(model: nn.Module, input_shape: tuple[int, ...], loss: str = "auto") -> dict:
    """What torch.utils.flop_counter.FlopCounterMode reports for the same train step (forward, the
    same surrogate loss, backward), on the meta device (a real module: on its own device, for real). Its
    convolution backward counts a grouped conv's weight gradient `groups` times over, so a depthwise net's
    step looks far more costly.

    Returns FLOPs (its unit: 2 per MAC) and the MACs they stand for, forward and whole step.
    """
    from torch.func import functional_call
    from torch.utils.flop_counter import FlopCounterMode

    tensors = [*model.named_parameters(), *model.named_buffers()]
    device = "meta" if any(t.is_meta for _, t in tensors) or not tensors else tensors[0][1].device

    def run(backward: bool) -> int:  # a real model (one the meta device cannot run) runs for real
        stand_ins = {name: (torch.empty(t.shape, dtype=t.dtype, device="meta") if device == "meta" else
                            t.detach().clone()).requires_grad_(t.requires_grad) for name, t in tensors}
        was_training = model.training
        model.train()
        try:
            with torch.enable_grad(), FlopCounterMode(display=False) as mode:
                out = functional_call(model, stand_ins, (torch.zeros(input_shape, device=device),))
                if backward:
                    surrogate_loss(out, loss)[1].backward()
        finally:
            model.train(was_training)
        return mode.get_total_flops()

    fwd, step = run(False), run(True)
    return {"source": "torch.utils.flop_counter.FlopCounterMode", "fwd_flops": fwd, "bwd_flops": step - fwd,
            "step_flops": step, "fwd_macs": fwd // 2, "step_macs": step // 2}
