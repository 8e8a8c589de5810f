"""Train counting: forward, backward (grad input and grad weight apart) and optimizer, against hand-derived values."""

import pytest
import torch
from torch import nn

import netprobe
from netprobe.counting import LOSS_PATH, count, count_train, flop_counter_reference

N, H, W = 2, 8, 8


def two_convs(c_out: int, groups: int, c_mid: int = 8, k: int = 3) -> nn.Sequential:
    """A dense 3x3 stem (no grad input: the image needs none) and the conv under test."""
    return nn.Sequential(nn.Conv2d(3, c_mid, 3, padding=1, bias=False),
                         nn.Conv2d(c_mid, c_out, k, padding=k // 2, groups=groups, bias=False)).to("meta")


@pytest.mark.parametrize("c_out,groups", [(16, 1), (16, 2), (8, 8)], ids=["dense", "grouped", "depthwise"])
def test_conv_backward_is_the_forward_twice_and_the_first_layer_has_no_grad_input(c_out, groups):
    model = two_convs(c_out, groups)
    tc = count_train(model, (N, 3, H, W))
    stem, conv = tc.modules["0"], tc.modules["1"]
    macs = N * c_out * H * W * (8 // groups) * 3 * 3  # every output element: (in / groups) x k x k taps
    assert conv.fwd_macs == macs
    assert conv.bwd_input_macs == macs and conv.bwd_weight_macs == macs  # not x groups
    stem_macs = N * 8 * H * W * 3 * 3 * 3
    assert stem.fwd_macs == stem_macs and stem.bwd_input_macs == 0 and stem.bwd_weight_macs == stem_macs
    assert tc.step_macs == 3 * (macs + stem_macs) - stem_macs
    assert tc.loss_kind == "sum"
    # bytes at fp32: input, weight and output of the forward conv, nothing fused
    assert conv.fwd["conv"].bytes == 4 * (N * 8 * H * W + c_out * (8 // groups) * 9 + N * c_out * H * W)


@pytest.mark.parametrize("c_out,groups", [(16, 1), (16, 2), (8, 8)], ids=["dense", "grouped", "depthwise"])
def test_flop_counter_mode_counts_a_grouped_weight_gradient_groups_times(c_out, groups):
    model = two_convs(c_out, groups)
    ours = count_train(model, (N, 3, H, W))
    theirs = flop_counter_reference(model, (N, 3, H, W))
    weight_grad = ours.modules["1"].bwd_weight_macs
    assert theirs["fwd_macs"] == ours.fwd_macs
    assert theirs["step_macs"] == ours.step_macs + (groups - 1) * weight_grad
    assert theirs["source"] == "torch.utils.flop_counter.FlopCounterMode"


def test_linear_backward_and_cross_entropy():
    # batch 3 == out features 3: a weight gradient cannot be told from a grad input by its shape alone
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3), nn.ReLU(), nn.Linear(3, 3)).to("meta")
    tc = count_train(model, (3, 3, 2, 2))
    first, second = tc.modules["1"], tc.modules["3"]
    assert first.fwd_macs == 3 * 12 * 3 and second.fwd_macs == 3 * 3 * 3
    assert (first.bwd_input_macs, first.bwd_weight_macs) == (0, 3 * 12 * 3)
    assert (second.bwd_input_macs, second.bwd_weight_macs) == (27, 27)
    assert tc.loss_kind == "cross_entropy" and tc.loss.fwd and tc.loss.bwd
    assert tc.modules["2"].bwd["act"].ops == 9  # relu's backward: one op per element
    assert not tc.unsupported


def test_efficientnet_b0_step_is_three_forwards_less_the_stem_grad_input():
    model = netprobe.build("efficientnet_b0", device="meta")
    tc = count_train(model, (1, 3, 224, 224))
    forward = count(model, (1, 3, 224, 224)).macs
    assert tc.fwd_macs == forward == 385_814_752
    assert tc.step_macs == 3 * forward - tc.modules["stem.0"].fwd_macs
    assert tc.bwd_weight_macs == forward
    assert sum(m.fwd_macs for m in tc.under("stage2")) == sum(m.macs for m in count(model, (1, 3, 224, 224))
                                                              .under("stage2"))
    # FlopCounterMode: about 32 GFLOPs per image for B0's step (depthwise weight grads x groups); ours 2.3
    theirs = flop_counter_reference(model, (1, 3, 224, 224))
    assert 2 * tc.step_macs / 1e9 == pytest.approx(2.29, abs=0.01)
    assert theirs["step_flops"] > 10 * 2 * tc.step_macs
    assert not tc.unsupported


def test_every_backward_op_lands_on_the_module_whose_forward_made_it():
    tc = count_train(netprobe.build("efficientnet_b0:classes=10", device="meta"), (2, 3, 64, 64))
    convs = [m for m in tc.modules.values() if m.type == "Conv2d"]
    for conv in convs:
        grad_input = 0 if conv.path == "stem.0" else conv.fwd_macs
        assert (conv.bwd_input_macs, conv.bwd_weight_macs) == (grad_input, conv.fwd_macs), conv.path
    se = tc.modules["stage2.0.body.se"]  # its own x * gate: two products backward, and the gate's sum
    assert se.fwd["mul"].ops == 2 * 96 * 16 * 16 and se.bwd["mul"].ops == 2 * se.fwd["mul"].ops
    assert tc.modules["stage2.0.body.dw.1"].bwd["norm"].ops == 2 * 96 * 16 * 16
    assert not tc.modules[""].bwd  # nothing left unattributed at the root


class BasicBlock(nn.Module):
    """torchvision-style: in-place residual add, in-place ReLU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


def test_in_place_ops_keep_their_module():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), BasicBlock(8)).to("meta")
    tc = count_train(model, (N, 3, H, W))
    for path in ("1.conv1", "1.conv2"):
        conv = tc.modules[path]
        assert conv.bwd_input_macs == conv.bwd_weight_macs == conv.fwd_macs
    assert tc.modules["1"].fwd["add"].ops == N * 8 * H * W  # out += x, the block's own
    assert tc.modules["1.relu"].bwd["act"].ops == 2 * N * 8 * H * W  # called twice, both backwards its own
    assert tc.modules["0"].bwd["add"].ops == N * 8 * H * W  # its bias gradient: a sum over grad_output


def test_the_model_is_left_as_it_was():
    model = netprobe.build("mobilenetv3_small:classes=10", device="meta").eval()
    count_train(model, (2, 3, 64, 64), optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


class _TrainOnly(nn.Module):
    """Doubles its input in training mode only, as dropout and batch norm's batch statistics differ."""

    def forward(self, x):
        return x * 2 if self.training else x


def test_a_forward_only_count_is_an_inference_step_in_eval_mode():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), _TrainOnly())
    train = count_train(model, (2, 3, 8, 8))
    infer = count_train(model, (2, 3, 8, 8), forward_only=True)
    assert model.training  # left as it was
    assert "mul" in train.modules["2"].fwd and not infer.modules["2"].fwd  # eval mode: the branch inference takes
    assert infer.modules["0"].fwd_macs == train.modules["0"].fwd_macs == 2 * 8 * 6 * 6 * 27
    assert all(not m.bwd for m in infer.modules.values()) and not infer.optimizer and not infer.loss.fwd


def test_sgd_momentum_step_counted_per_parameter():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    params = sum(p.numel() for p in model.parameters())
    tc = count_train(model, (2, 3, 8, 8), optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9))
    # buf.mul_(momentum).add_(grad); param.add_(buf, alpha=-lr): one mul, two adds per parameter
    assert tc.optimizer["mul"].ops == params and tc.optimizer["add"].ops == 2 * params
    assert tc.optimizer_bytes == 4 * (2 + 3 + 3) * params
    assert tc.optimizer_name == "SGD"
    assert tc.modules["0"].fwd_macs == 2 * 8 * 6 * 6 * 27  # a real (CPU) model is counted on meta stand-ins


def test_loss_is_its_own_record():
    tc = count_train(nn.Conv2d(3, 4, 1).to("meta"), (2, 3, 4, 4), loss="sum")
    assert tc.loss.path == LOSS_PATH and tc.loss.fwd["add"].ops == 2 * 4 * 4 * 4
    with pytest.raises(ValueError, match="use auto, cross_entropy or sum"):
        count_train(nn.Conv2d(3, 4, 1).to("meta"), (2, 3, 4, 4), loss="mse")


class DataDependent(nn.Module):
    """Cannot run on meta: its forward looks at values."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv(x)
        return y * 2 if y.abs().sum() > 0 else y


def test_a_module_that_cannot_run_on_meta_is_counted_on_copies_where_it_lives():
    model = DataDependent()
    before = model.conv.weight.detach().clone()
    tc = count_train(model, (2, 3, 8, 8), optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    assert tc.modules["conv"].fwd_macs == 2 * 4 * 8 * 8 * 27 == tc.modules["conv"].bwd_weight_macs
    assert torch.equal(model.conv.weight, before) and model.conv.weight.grad is None
