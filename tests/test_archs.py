"""The architectures netprobe builds are the published ones: parameter counts, MACs, stages, shapes.

Counts and shapes come from models built on the `meta` device (nothing allocated); one real
forward and backward pass per architecture runs on CPU at a tiny image size.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zoo_cases import ZOO

import netprobe
from netprobe.archs import ARCHS
from netprobe.archs.blocks import DropPath, FusedMBConv, MBConv
from netprobe.counting import count


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta(spec: str) -> netprobe.Net:
    return netprobe.build(spec, device="meta")


# torchvision's published num_params (1000-class head); XL has no torchvision model, see below.
REFERENCE_PARAMS = {
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
    "efficientnetv2_s": 21_458_488,
    "efficientnetv2_m": 54_139_356,
    "efficientnetv2_l": 118_515_272,
    "mobilenetv3_large": 5_483_032,
    "mobilenetv3_small": 2_542_856,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
}

# torchvision's published GFLOPS (multiply-accumulates of conv and linear layers) at the default size.
REFERENCE_GMACS = {
    ("efficientnet_b0", 224): 0.386,
    ("efficientnet_b4", 380): 4.394,
    ("efficientnetv2_s", 384): 8.366,
    ("efficientnetv2_m", 480): 24.582,
    ("mobilenetv3_large", 224): 0.217,
    ("mobilenetv3_small", 224): 0.057,
    ("resnet18", 224): 1.814,
    ("resnet34", 224): 3.664,
    ("resnet50", 224): 4.089,
    ("resnet101", 224): 7.801,
}

# Output channels and cumulative stride of stem, stage1..stageN, and the head's channels.
REFERENCE_STAGES = {
    "efficientnet_b0": ([32, 16, 24, 40, 80, 112, 192, 320], [2, 2, 4, 8, 16, 16, 32, 32], 1280),
    "efficientnet_b4": ([48, 24, 32, 56, 112, 160, 272, 448], [2, 2, 4, 8, 16, 16, 32, 32], 1792),
    "efficientnet_b7": ([64, 32, 48, 80, 160, 224, 384, 640], [2, 2, 4, 8, 16, 16, 32, 32], 2560),
    "efficientnetv2_s": ([24, 24, 48, 64, 128, 160, 256], [2, 2, 4, 8, 16, 16, 32], 1280),
    "efficientnetv2_m": ([24, 24, 48, 80, 160, 176, 304, 512], [2, 2, 4, 8, 16, 16, 32, 32], 1280),
    "efficientnetv2_l": ([32, 32, 64, 96, 192, 224, 384, 640], [2, 2, 4, 8, 16, 16, 32, 32], 1280),
    "efficientnetv2_xl": ([32, 32, 64, 96, 192, 256, 512, 640], [2, 2, 4, 8, 16, 16, 32, 32], 1280),
    "mobilenetv3_large": ([16, 16, 24, 40, 80, 112, 160], [2, 2, 4, 8, 16, 16, 32], 960),
    "mobilenetv3_small": ([16, 16, 24, 40, 48, 96], [2, 4, 8, 16, 16, 32], 576),
    # ResNet: a 7x7 conv and a max pool (stride 4, P2), layer1-4 at P2-P5; no head conv: the last stage is pooled
    "resnet18": ([64, 64, 128, 256, 512], [4, 4, 8, 16, 32], 512),
    "resnet50": ([64, 256, 512, 1024, 2048], [4, 4, 8, 16, 32], 2048),
    "resnet101": ([64, 256, 512, 1024, 2048], [4, 4, 8, 16, 32], 2048),
}

# MobileNetV3's final 1x1 conv ends its last feature stage (timm's and torchvision's feature extractors):
# one more tap at stride 32, after the stages.
HEAD_CONV_TAPS = {"mobilenetv3_large": 960, "mobilenetv3_small": 576}

DEFAULT_IMGSZ = {
    "efficientnet_b0": 224, "efficientnet_b1": 240, "efficientnet_b2": 260, "efficientnet_b3": 300,
    "efficientnet_b4": 380, "efficientnet_b5": 456, "efficientnet_b6": 528, "efficientnet_b7": 600,
    "efficientnetv2_s": 384, "efficientnetv2_m": 480, "efficientnetv2_l": 480, "efficientnetv2_xl": 512,
    "mobilenetv3_large": 224, "mobilenetv3_small": 224,
    "resnet18": 224, "resnet34": 224, "resnet50": 224, "resnet101": 224,
}


def test_every_arch_has_reference_figures() -> None:
    assert set(REFERENCE_PARAMS) | {"efficientnetv2_xl"} == set(ARCHS) == set(DEFAULT_IMGSZ)
    assert [a.name for a in netprobe.list_archs()] == list(ARCHS)


# ---- sizes --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("arch", "expected"), REFERENCE_PARAMS.items())
def test_param_count_matches_torchvision(arch: str, expected: int) -> None:
    assert n_params(meta(arch)) == expected


def test_efficientnetv2_xl_param_count_matches_timm() -> None:
    params = n_params(meta("efficientnetv2_xl"))
    assert round(params / 1e6, 2) == 208.12  # timm's published figure
    assert params == 208_119_808


@pytest.mark.parametrize(("arch", "imgsz", "gmacs"), [(a, s, g) for (a, s), g in REFERENCE_GMACS.items()])
def test_macs_match_torchvision(arch: str, imgsz: int, gmacs: float) -> None:
    model = meta(arch)
    assert model.table.imgsz == imgsz
    counted = count(model, (1, 3, imgsz, imgsz))
    assert counted.unsupported == {}
    assert round(counted.macs / 1e9, 3) == gmacs
    assert counted.params == REFERENCE_PARAMS[arch]


@pytest.mark.parametrize(("arch", "imgsz"), DEFAULT_IMGSZ.items())
def test_default_eval_image_size(arch: str, imgsz: int) -> None:
    assert netprobe.parse_spec(arch).table.imgsz == imgsz
    assert meta(arch).table.imgsz == imgsz


def test_image_size_option_overrides_default() -> None:
    assert netprobe.parse_spec("efficientnetv2_s:imgsz=300").table.imgsz == 300


# ---- stages -------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_top_level_children_are_stem_stages_head(arch: str) -> None:
    model = meta(arch)
    n = len(model.table.stages)
    expected = ["stem", *(f"stage{i}" for i in range(1, n + 1)), "head"]
    assert [name for name, _ in model.named_children()] == expected
    assert model.stage_names == expected
    # Every block of the table is built, in its stage.
    for i, stage in enumerate(model.table.stages, start=1):
        assert len(getattr(model, f"stage{i}")) == sum(row.repeats for row in stage)


@pytest.mark.parametrize("arch", REFERENCE_STAGES)
def test_feature_info_channels_and_strides(arch: str) -> None:
    channels, strides, _ = REFERENCE_STAGES[arch]
    model = meta(arch)
    names = ["stem", *(f"stage{i}" for i in range(1, len(channels)))]
    if arch in HEAD_CONV_TAPS:
        names, channels, strides = [*names, "head.conv"], [*channels, HEAD_CONV_TAPS[arch]], [*strides, 32]
    assert [f.name for f in model.feature_info] == names
    assert [f.channels for f in model.feature_info] == channels
    assert [f.stride for f in model.feature_info] == strides
    assert [f.level for f in model.feature_info] == [int(math.log2(s)) for s in strides]


@pytest.mark.parametrize("arch", ZOO)
def test_stage_output_shapes_at_default_size(arch: str) -> None:
    model = meta(arch)
    size = model.table.imgsz
    feats = model.forward_features(torch.empty(1, 3, size, size, device="meta"))
    assert list(feats) == [f.name for f in model.feature_info]
    side = size
    for info, prev in zip(model.feature_info, [1, *(f.stride for f in model.feature_info)], strict=False):
        for _ in range(int(math.log2(info.stride // prev))):
            side = (side + 1) // 2  # a stride-2 "same" conv rounds up
        assert tuple(feats[info.name].shape) == (1, info.channels, side, side), info.name


def test_efficientnetv2_s_stage_shapes_at_384() -> None:
    model = meta("efficientnetv2_s")
    feats = model.forward_features(torch.empty(1, 3, 384, 384, device="meta"))
    shapes = {name: tuple(t.shape[1:]) for name, t in feats.items()}
    assert shapes == {
        "stem": (24, 192, 192),
        "stage1": (24, 192, 192),
        "stage2": (48, 96, 96),
        "stage3": (64, 48, 48),
        "stage4": (128, 24, 24),
        "stage5": (160, 24, 24),
        "stage6": (256, 12, 12),
    }


def test_efficientnet_b4_stage_shapes_at_380() -> None:
    model = meta("efficientnet_b4")
    feats = model.forward_features(torch.empty(1, 3, 380, 380, device="meta"))
    assert {name: tuple(t.shape[1:]) for name, t in feats.items()} == {
        "stem": (48, 190, 190),
        "stage1": (24, 190, 190),
        "stage2": (32, 95, 95),
        "stage3": (56, 48, 48),
        "stage4": (112, 24, 24),
        "stage5": (160, 24, 24),
        "stage6": (272, 12, 12),
        "stage7": (448, 12, 12),
    }


def test_efficientnetv2_s_pyramid_levels() -> None:
    # A detection neck takes the last stage at each stride: P3/P4/P5 = strides 8/16/32.
    last_at_level = {f.level: f for f in meta("efficientnetv2_s").feature_info}
    assert {lvl: (last_at_level[lvl].name, last_at_level[lvl].channels) for lvl in (3, 4, 5)} == {
        3: ("stage3", 64), 4: ("stage5", 160), 5: ("stage6", 256),
    }


@pytest.mark.parametrize(("arch", "taps"), [
    ("mobilenetv3_large", {3: ("stage3", 40), 4: ("stage5", 112), 5: ("head.conv", 960)}),
    ("mobilenetv3_small", {3: ("stage2", 24), 4: ("stage4", 48), 5: ("head.conv", 576)}),
    ("efficientnet_b0", {3: ("stage3", 40), 4: ("stage5", 112), 5: ("stage7", 320)}),
])
def test_detector_taps_follow_timm_and_torchvision(arch: str, taps: dict) -> None:
    # P3/P4/P5 = the last feature at strides 8/16/32; for MobileNetV3 at 32 that is the 1x1 conv to 960/576.
    last_at_level = {f.level: f for f in meta(arch).feature_info}
    assert {lvl: (last_at_level[lvl].name, last_at_level[lvl].channels) for lvl in (3, 4, 5)} == taps


def test_mobilenetv3_head_conv_tap_is_the_head_conv_of_the_last_stage() -> None:
    torch.manual_seed(0)
    model = netprobe.build("mobilenetv3_large").eval()
    with torch.no_grad():
        feats = model.forward_features(torch.randn(1, 3, 64, 64))
        expected = model.head.conv(feats["stage6"])
    assert list(feats)[-2:] == ["stage6", "head.conv"]
    assert feats["head.conv"].shape == (1, 960, 2, 2)
    torch.testing.assert_close(feats["head.conv"], expected)


def test_efficientnetv2_s_follows_paper_table_4() -> None:
    table = netprobe.parse_spec("efficientnetv2_s").table
    assert table.layout() == "FFFMMM"
    assert [(st[0].paper_name(), st[0].stride, st[0].out, st[0].repeats) for st in table.stages] == [
        ("Fused-MBConv1, k3x3", 1, 24, 2),
        ("Fused-MBConv4, k3x3", 2, 48, 4),
        ("Fused-MBConv4, k3x3", 2, 64, 4),
        ("MBConv4, k3x3, SE0.25", 2, 128, 6),
        ("MBConv6, k3x3, SE0.25", 1, 160, 9),
        ("MBConv6, k3x3, SE0.25", 2, 256, 15),
    ]
    assert (table.stem, table.head) == (24, 1280)


def test_compound_scaling_of_b4_repeats() -> None:
    # B0 repeats 1,2,2,3,3,4,1 times depth 1.8, rounded up (torchvision's B4 has 32 blocks).
    model = meta("efficientnet_b4")
    assert [len(getattr(model, f"stage{i}")) for i in range(1, 8)] == [2, 4, 4, 6, 6, 8, 2]


# ---- real passes --------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ZOO)
def test_forward_backward_on_cpu(arch: str) -> None:
    torch.manual_seed(0)
    # drop_path=0: a dropped residual branch would rightly get no gradient in this one step. A quarter of the
    # width: the same blocks and stages (what the gradients must flow through), built in a fraction of the time.
    model = netprobe.build(f"{arch}:classes=10,drop_path=0,width=0.25")
    model.train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([1, 7])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.shape == p.shape, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


@pytest.mark.parametrize("arch", ZOO)
def test_classes_0_returns_pooled_features(arch: str) -> None:
    model = meta(f"{arch}:classes=0")
    head_channels = model.table.head or model.feature_info[-1].channels  # no head conv: the last stage, pooled
    if arch in REFERENCE_STAGES:
        assert head_channels == REFERENCE_STAGES[arch][2]
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    out = model(torch.empty(3, 3, 64, 64, device="meta"))
    assert tuple(out.shape) == (3, head_channels)


def test_classes_0_real_forward_is_the_pooled_head_conv() -> None:
    torch.manual_seed(0)
    model = netprobe.build("mobilenetv3_small:classes=0").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        last = model.forward_features(x)["stage5"]
        pooled = model.head.conv(last).mean(dim=(2, 3))
    assert out.shape == (2, 576)
    torch.testing.assert_close(out, pooled)


def test_classes_option_sets_classifier_width() -> None:
    out = meta("efficientnet_b0:classes=37")(torch.empty(2, 3, 64, 64, device="meta"))
    assert tuple(out.shape) == (2, 37)
    # B0's 1000-class classifier is 1280*1000 + 1000 parameters of the 5,288,548.
    assert n_params(meta("efficientnet_b0:classes=0")) == 5_288_548 - 1_281_000


# ---- Fused-MBConv variants of EfficientNet-B4 (EfficientNetV2 paper, Table 3) ------------------

@pytest.mark.parametrize(("spec", "millions", "layout"), [
    ("efficientnet_b4", 19.34, "MMMMMMM"),
    ("efficientnet_b4:fused=1-3", 20.95, "FFFMMMM"),
    ("efficientnet_b4:fused=1-3,fused_kernel=3", 19.94, "FFFMMMM"),
    ("efficientnet_b4:fused=1-5", 43.53, "FFFFFMM"),
    ("efficientnet_b4:fused=1-7", 132.12, "FFFFFFF"),
])
def test_fused_b4_param_counts(spec: str, millions: float, layout: str) -> None:
    model = meta(spec)
    assert model.table.layout() == layout
    assert round(n_params(model) / 1e6, 2) == millions
    fused_blocks = [m for m in model.modules() if isinstance(m, FusedMBConv)]
    fused_stages = layout.count("F")
    assert len(fused_blocks) == sum(len(getattr(model, f"stage{i}")) for i in range(1, fused_stages + 1))
    # EfficientNetV2's Fused-MBConv has no SE unless asked for.
    assert not any(hasattr(b.body, "se") for b in fused_blocks)


def test_fused_se_keep_adds_se_to_fused_stages() -> None:
    dropped = meta("efficientnet_b4:fused=1-3")
    kept = meta("efficientnet_b4:fused=1-3,fused_se=keep")
    assert n_params(kept) > n_params(dropped)
    assert all(hasattr(b.body, "se") for b in kept.modules() if isinstance(b, FusedMBConv))


def test_fused_kernel_changes_only_fused_rows() -> None:
    table = netprobe.parse_spec("efficientnet_b4:fused=1-3,fused_kernel=3").table
    base = netprobe.parse_spec("efficientnet_b4").table
    assert [st[0].kernel for st in table.stages] == [3, 3, 3, 3, 5, 5, 3]
    assert table.stages[3:] == base.stages[3:]


# ---- residuals and stochastic depth ------------------------------------------------------------

def test_residual_only_where_shapes_match() -> None:
    model = meta("efficientnetv2_s")
    blocks = [b for b in model.modules() if isinstance(b, (MBConv, FusedMBConv))]
    assert len(blocks) == 40
    # Every stage's first block changes channels or stride, except stage1 (24 -> 24, stride 1).
    assert sum(b.residual for b in blocks) == 40 - 5


def test_drop_path_rates_grow_linearly_with_depth() -> None:
    model = meta("efficientnetv2_s:drop_path=0.4")
    blocks = [b for b in model.modules() if isinstance(b, (MBConv, FusedMBConv))]
    rates = [b.drop_path.p if isinstance(b.drop_path, DropPath) else 0.0 for b in blocks]
    for i, (b, rate) in enumerate(zip(blocks, rates, strict=True)):
        if b.residual:
            assert rate == pytest.approx(0.4 * i / len(blocks))
        else:
            assert isinstance(b.drop_path, nn.Identity)
    assert max(rates) < 0.4
    assert not any(isinstance(m, DropPath) for m in meta("efficientnetv2_s:drop_path=0").modules())


def test_drop_path_in_training_keeps_shape_and_is_stochastic() -> None:
    model = netprobe.build("efficientnet_b0:classes=10,drop_path=0.5")
    x = torch.randn(4, 3, 32, 32)
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    assert a.shape == b.shape == (4, 10)
    assert torch.isfinite(a).all()
    assert not torch.allclose(a, b)  # different residual branches were dropped
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        c = model(x)
        torch.manual_seed(2)
        d = model(x)
    assert c.shape == (4, 10)
    torch.testing.assert_close(c, d)  # no stochastic depth at inference


# ---- block kinds: ResNet's basic and bottleneck blocks as table rows ------------------------------

def test_resnet_stage_table_reads_as_the_paper_draws_it() -> None:
    summary = netprobe.summarize("resnet50")
    assert [(r.name, r.op, r.out, r.p_level, r.repeats) for r in summary.stages] == [
        ("stem", "Conv7x7 & MaxPool", [64, 56, 56], 2, 1),
        ("stage1", "Bottleneck, k3x3, e0.25", [256, 56, 56], 2, 3),
        ("stage2", "Bottleneck, k3x3, e0.25", [512, 28, 28], 3, 4),
        ("stage3", "Bottleneck, k3x3, e0.25", [1024, 14, 14], 4, 6),
        ("stage4", "Bottleneck, k3x3, e0.25", [2048, 7, 7], 5, 3),
        ("head", "Pooling & FC", [1000], None, 1),
    ]
    assert sum(r.params for r in summary.stages) == summary.params == 25_557_032
    assert summary.reference == {"source": "torchvision", "params": 25_557_032, "gmacs": 4.089, "imgsz": 224}
    assert meta("resnet18").table.layout() == "RRRR" and meta("resnet101").table.layout() == "BBBB"


def test_a_bottleneck_is_torchvisions_v1_5_block() -> None:
    block = meta("resnet50").stage2[0]  # the first block of a stage: strided, with a projection shortcut
    assert type(block).__name__ == "Bottleneck"
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in block.modules()
            if isinstance(c, nn.Conv2d)] == [(256, 128, 1, 1), (128, 128, 3, 2), (128, 512, 1, 1), (256, 512, 1, 2)]
    basic = meta("resnet18").stage1[0]  # stride 1, same width: the shortcut is the input itself
    assert type(basic).__name__ == "BasicBlock" and isinstance(basic.shortcut, nn.Identity)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_canonical_spec_builds_the_same_net(arch: str) -> None:
    spec = netprobe.parse_spec(arch)
    again = netprobe.parse_spec(spec.canonical)
    assert again.table == spec.table and again.canonical == spec.canonical
    assert str(meta(spec.canonical)) == str(meta(arch)) and n_params(meta(spec.canonical)) == REFERENCE_PARAMS[arch]


def test_a_resnet_is_a_detector_backbone() -> None:
    summary = netprobe.summarize("yolov8n:backbone=resnet50")
    assert [(h.channels, h.stride) for h in summary.head_inputs] == [(64, 8), (128, 16), (256, 32)]
    assert summary.warnings == [] and summary.canonical == "yolov8n:backbone=resnet50,nc=80,imgsz=640"
    taps = netprobe.summarize("yolov8n:backbone=resnet50", depth="block").rows[0]
    assert taps.module == "Backbone" and [o[0] for o in taps.out] == [512, 1024, 2048]


@pytest.mark.parametrize(("spec", "needle"), [
    ("resnet50:fused=1-2", "fused= turns MBConv stages into Fused-MBConv ones and back; resnet50 has Bottleneck"),
    ("resnet18:se=0.25", "se= sets the squeeze-excitation of MBConv-family blocks; resnet18 has BasicBlock"),
    ("custom:stem=8,stages=basic_e4_c16,head=0", "field 'e4' does not apply to a BasicBlock"),
    ("custom:stem=8,stages=basic_c16_se0.25,head=0", "field 'se0.25' does not apply to a BasicBlock"),
    ("custom:stem=8,stages=bottle_c16,head=0", "use mb (MBConv), fmb (Fused-MBConv), basic (BasicBlock) or"),
    ("custom:stem=8,stem_kernel=4,stages=basic_c16,head=0", "use an odd kernel"),
])
def test_what_a_block_kind_cannot_take_is_one_line(spec: str, needle: str) -> None:
    with pytest.raises(netprobe.SpecError) as err:
        netprobe.parse_spec(spec)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_every_block_kind_is_one_entry_with_its_class() -> None:
    from netprobe.archs import blocks
    from netprobe.archs.block_kinds import BLOCK_KINDS
    from netprobe.roofline import FAMILIES

    for kind in BLOCK_KINDS.values():
        row = netprobe.parse_spec(f"custom:stem=8,stages={kind.example},head=0").table.stages[0][0]
        assert row.kind is kind and hasattr(getattr(blocks, kind.builder), "from_row") and kind.family in FAMILIES
    assert len({k.letter for k in BLOCK_KINDS.values()}) == len(BLOCK_KINDS)
    mixed = "custom:stem=16,stages=basic_c16+mb_e4_c16_se0.25/fmb_s2_e4_c24/bottleneck_s2_c64,head=0"
    assert meta(mixed).table.layout() == "xFB"
