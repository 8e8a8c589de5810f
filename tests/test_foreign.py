"""Foreign nets (written in plain torch, as their authors lay them out): `--stages auto` gives the stages their
papers draw, every row's params and MACs are exact (by hand-derived formulas and by the modules' own
parameters), and rows add up to the totals at every depth and staging. A forward that fails, or gives back
no tensor, is one line naming the module, exit 2."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import fixtures_foreign as ff
import pytest
import torch
from torch import nn

import netprobe

FIXTURES = Path(ff.__file__)


@cache
def meta(name: str) -> nn.Module:
    with torch.device("meta"):
        return getattr(ff, name)()


@cache
def summary(name: str, depth: str = "stage", stages: str = "auto"):
    return netprobe.summarize(meta(name), imgsz=224, depth=depth, stages=stages)


def params(*modules: nn.Module | nn.Parameter) -> int:
    return sum(m.numel() if isinstance(m, nn.Parameter) else sum(p.numel() for p in m.parameters()) for m in modules)


def table(s) -> list[tuple]:
    return [(r.name, r.p_level, r.params, r.macs) for r in s.rows]


def conv_macs(out_hw: int, cout: int, cin: int, k: int = 1, groups: int = 1) -> int:
    return out_hw * out_hw * cout * (cin // groups) * k * k


# ---- the stage rows each paper draws, every number exact -----------------------------------------------

def bottleneck_macs(cin: int, planes: int, h_in: int, stride: int) -> int:
    h = h_in // stride  # v1.5: the 1x1 at the input's size, the stride in the 3x3
    down = conv_macs(h, 4 * planes, cin) if stride != 1 or cin != 4 * planes else 0
    return (conv_macs(h_in, planes, cin) + conv_macs(h, planes, planes, 3) + conv_macs(h, 4 * planes, planes)
            + down)


def resnet_layer_macs(cin: int, planes: int, blocks: int, h_in: int, stride: int) -> int:
    h = h_in // stride
    return bottleneck_macs(cin, planes, h_in, stride) + (blocks - 1) * bottleneck_macs(4 * planes, planes, h, 1)


def test_resnet50_is_stem_layer1_to_4_and_head():
    m, s = meta("resnet50"), summary("resnet50")
    assert table(s) == [
        ("stem", 2, params(m.conv1, m.bn1), conv_macs(112, 64, 3, 7)),
        ("layer1", 2, params(m.layer1), resnet_layer_macs(64, 64, 3, 56, 1)),
        ("layer2", 3, params(m.layer2), resnet_layer_macs(256, 128, 4, 56, 2)),
        ("layer3", 4, params(m.layer3), resnet_layer_macs(512, 256, 6, 28, 2)),
        ("layer4", 5, params(m.layer4), resnet_layer_macs(1024, 512, 3, 14, 2)),
        ("head", None, params(m.fc), 2048 * 1000),
    ]
    assert [r.op for r in s.rows] == ["Conv7x7, MaxPool2d", "3× Bottleneck", "4× Bottleneck", "6× Bottleneck",
                                      "3× Bottleneck", "AdaptiveAvgPool2d, Linear"]
    assert [r.out for r in s.rows][:5] == [[64, 56, 56], [256, 56, 56], [512, 28, 28], [1024, 14, 14], [2048, 7, 7]]
    assert s.params == 25_557_032 and s.macs == 4_089_184_256  # torchvision: 25,557,032 params, 4.09 GFLOPS


def vit_block_macs(tokens: int = 197, dim: int = 768, mlp: int = 3072) -> int:
    projections = 4 * tokens * dim * dim  # q, k, v and out
    return projections + 2 * tokens * tokens * dim + 2 * tokens * dim * mlp  # Q K^T, (softmax) V, the MLP


@pytest.mark.parametrize("name", ["vit_b_16", "vit_b_16_explicit"])
def test_vit_b16_is_patch_embed_twelve_encoder_blocks_and_head(name):
    m, s = meta(name), summary(name)
    layers = [(f"encoder.layers.encoder_layer_{i}", None, params(m.encoder.layers[i]), vit_block_macs())
              for i in range(12)]
    # The class token's concat (the model's forward) and the position embedding (the encoder's) are
    # the patch embedding's; the encoder's final norm is the head's: the head is no row of encoder linears.
    assert table(s) == [
        ("patch embed", 4, params(m.conv_proj, m.class_token, m.encoder.pos_embedding), conv_macs(14, 768, 3, 16)),
        *layers,
        ("head", None, params(m.encoder.ln, m.heads), 768 * 1000),
    ]
    assert s.rows[0].other_ops == 2 * 197 * 768  # the concat and the add, element by element
    assert all(r.op == "EncoderBlock" for r in s.rows[1:13]) and s.rows[-1].op == "Linear"
    assert s.params == 86_567_656 and round(s.macs / 1e9, 2) == 17.56  # torchvision: 86,567,656 and 17.56 G


def inverted_residual_macs(cin: int, cout: int, h_in: int, stride: int, t: int) -> int:
    hidden, h = cin * t, h_in // stride
    expand = conv_macs(h_in, hidden, cin) if t != 1 else 0
    return expand + conv_macs(h, hidden, hidden, 3, groups=hidden) + conv_macs(h, cout, hidden)


def mobilenet_v2_feature_macs() -> list[int]:
    macs, cin, h = [conv_macs(112, 32, 3, 3)], 32, 112
    for t, c, n, s in ff.MOBILENET_V2_SETTING:
        for i in range(n):
            stride = s if i == 0 else 1
            macs.append(inverted_residual_macs(cin, c, h, stride, t))
            cin, h = c, h // stride
    return [*macs, conv_macs(7, 1280, 320)]


def test_mobilenet_v2_is_one_row_per_resolution_and_head():
    m, s = meta("mobilenet_v2"), summary("mobilenet_v2")
    feature_macs = mobilenet_v2_feature_macs()
    spans = [(0, 1), (2, 3), (4, 6), (7, 13), (14, 18)]  # the paper's table at 112, 56, 28, 14 and 7 px
    assert table(s) == [
        *[(f"features.{a}-{b}", level, params(*m.features[a:b + 1]), sum(feature_macs[a:b + 1]))
          for (a, b), level in zip(spans, range(1, 6), strict=True)],
        ("head", None, params(m.classifier), 1280 * 1000),  # the pool is the model's forward's own op
    ]
    assert s.rows[-1].other_ops == 1280 * 7 * 7  # that pool: in the head, not in a "(functional ops)" row
    assert s.params == 3_504_872 and round(s.macs / 1e9, 3) == 0.301


def convnext_stage_macs(dim: int, blocks: int, h: int) -> int:
    return blocks * (conv_macs(h, dim, dim, 7, groups=dim) + 2 * h * h * dim * 4 * dim)


def test_convnext_tiny_is_stem_stages_downsamples_and_head():
    m, s = meta("convnext_tiny"), summary("convnext_tiny")
    f = m.features
    assert table(s) == [
        ("stem", 2, params(f[0]), conv_macs(56, 96, 3, 4)),
        ("features.1", 2, params(f[1]), convnext_stage_macs(96, 3, 56)),
        ("features.2", 3, params(f[2]), conv_macs(28, 192, 96, 2)),
        ("features.3", 3, params(f[3]), convnext_stage_macs(192, 3, 28)),
        ("features.4", 4, params(f[4]), conv_macs(14, 384, 192, 2)),
        ("features.5", 4, params(f[5]), convnext_stage_macs(384, 9, 14)),
        ("features.6", 5, params(f[6]), conv_macs(7, 768, 384, 2)),
        ("features.7", 5, params(f[7]), convnext_stage_macs(768, 3, 7)),
        ("head", None, params(m.classifier), 768 * 1000),
    ]
    assert s.params == 28_589_128 and round(s.macs / 1e9, 3) == 4.456


def double_conv_macs(cin: int, cout: int, h: int) -> int:
    return conv_macs(h, cout, cin, 3) + conv_macs(h, cout, cout, 3)


def test_unet_goes_down_to_the_bottleneck_and_comes_back_up():
    m, s = meta("unet"), summary("unet")
    w, size = 32, 224
    down = [("encoder1", 0, params(m.encoder1), double_conv_macs(3, w, size))]
    for level in range(1, 4):  # each encoder level takes the pool before it
        cin, cout, h = w << (level - 1), w << level, size >> level
        down.append((f"encoder{level + 1}", level, params(getattr(m, f"encoder{level + 1}")),
                     double_conv_macs(cin, cout, h)))
    bottom = ("bottleneck", 4, params(m.bottleneck), double_conv_macs(8 * w, 16 * w, size >> 4))
    up = []
    for level in range(3, -1, -1):  # each decoder level takes its transposed conv and the skip concat
        cout, h = w << level, size >> level
        upconv = (h // 2) ** 2 * (2 * cout) * cout * 4  # a transposed conv: every input pixel feeds 2x2 taps
        parts = getattr(m, f"upconv{level + 1}"), getattr(m, f"decoder{level + 1}")
        up.append((f"decoder{level + 1}", level, params(*parts), upconv + double_conv_macs(2 * cout, cout, h)))
    assert table(s) == [*down, bottom, *up, ("conv", 0, params(m.conv), conv_macs(size, 1, w))]
    assert [r.stride for r in s.rows] == [1, 2, 2, 2, 2, 0.5, 0.5, 0.5, 0.5, 1]
    assert [r.op for r in s.rows][4:6] == ["2× Conv3x3, MaxPool2d", "2× Conv3x3, ConvTranspose2x2"]
    assert s.rows[5].other_ops > s.rows[4].other_ops  # decoder4 holds its skip concat (the model's own op)


# ---- every depth adds up; blocks are whole ----------------------------------------------------------

NAMES = ["resnet50", "vit_b_16", "vit_b_16_explicit", "mobilenet_v2", "convnext_tiny", "unet"]


@pytest.mark.parametrize("stages", ["auto", "children"])
@pytest.mark.parametrize("depth", ["stage", "block", "layer"])
@pytest.mark.parametrize("name", NAMES)
def test_rows_add_up_to_the_totals(name, depth, stages):
    s = summary(name, depth, stages)
    assert sum(r.params for r in s.rows) == s.params
    assert sum(r.macs for r in s.rows) == s.macs
    assert sum(r.other_ops for r in s.rows) == s.other_ops
    if depth != "layer":  # (layer rows leave out layers without work: a dropout's output is in no row)
        assert sum(r.act_mb for r in s.rows) == pytest.approx(s.act_mb, abs=0.001 * len(s.rows))
    if stages == "auto" and depth != "layer":  # own work sits in its module's row (layers: the model's own)
        assert "(functional ops)" not in [r.name for r in s.rows]


BLOCKS = {
    "resnet50": ["stem", *[f"layer{i}.{j}" for i, n in enumerate((3, 4, 6, 3), 1) for j in range(n)], "head"],
    "vit_b_16": ["patch embed", *[f"encoder.layers.encoder_layer_{i}" for i in range(12)], "head"],
    "mobilenet_v2": [*[f"features.{i}" for i in range(19)], "head"],
    "convnext_tiny": ["stem", *[f"features.{i}" + (f".{j}" if i % 2 else "")
                                for i, n in enumerate((1, 3, 1, 3, 1, 9, 1, 3)) if i for j in range(n)], "head"],
    "unet": ["encoder1", "encoder2", "encoder3", "encoder4", "bottleneck", "decoder4", "decoder3", "decoder2",
             "decoder1", "conv"],
}


@pytest.mark.parametrize("name", BLOCKS)
def test_depth_block_is_one_row_per_whole_block(name):
    m, s = meta(name), summary(name, "block")
    assert [r.name for r in s.rows] == BLOCKS[name]
    for row in s.rows:
        if row.name in dict(m.named_modules()) and not row.name.startswith(("decoder", "encoder")):
            assert row.params == params(m.get_submodule(row.name))  # the whole block, shortcut and all


@pytest.mark.parametrize("depth", ["stage", "block"])
def test_a_train_steps_backward_adds_up_over_the_rows(depth):
    small = (ff.VisionTransformer(image_size=64, layers=2, heads=4, dim=64, mlp_dim=128, num_classes=10),
             ff.UNet(width=8))
    for model in small:
        s = netprobe.summarize(model, imgsz=64, stages="auto", depth=depth, train=True)
        assert sum(r.bwd_macs for r in s.rows) == s.train["bwd_macs"] > 0


def test_a_list_of_blocks_the_forward_loops_over_is_rows_too():
    class LoopedViT(nn.Module):  # timm's layout: blocks in a ModuleList, the embedding in the model's forward
        def __init__(self) -> None:
            super().__init__()
            self.patch_embed = nn.Conv2d(3, 64, 16, 16)
            self.cls_token, self.pos_embed = nn.Parameter(torch.zeros(1, 1, 64)), nn.Parameter(torch.zeros(1, 17, 64))
            self.blocks = nn.ModuleList([ff.EncoderBlock(4, 64, 128, explicit=True) for _ in range(3)])
            self.norm, self.head = nn.LayerNorm(64), nn.Linear(64, 10)
            self.aux = nn.Linear(64, 10)  # never called in this forward: its parameters still count

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.patch_embed(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x)[:, 0])

    m = LoopedViT()
    for stages in ("auto", "children"):
        for depth in ("stage", "block", "layer"):
            s = netprobe.summarize(m, imgsz=64, stages=stages, depth=depth)
            assert sum(r.params for r in s.rows) == s.params, (stages, depth)
            assert sum(r.macs for r in s.rows) == s.macs and sum(r.other_ops for r in s.rows) == s.other_ops
    s = netprobe.summarize(m, imgsz=64, stages="auto")
    assert [(r.name, r.params) for r in s.rows] == [
        ("patch embed", params(m.patch_embed, m.cls_token, m.pos_embed)),
        *[(f"blocks.{i}", params(m.blocks[i])) for i in range(3)],
        ("head", params(m.norm, m.head)), ("(not called)", params(m.aux))]


# ---- through the CLI -------------------------------------------------------------------------------------

def test_cli_auto_stages_of_a_file_model(cli):
    result = cli("summary", f"{FIXTURES}:resnet50", "--imgsz", "224", "--stages", "auto",
                                 "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["name"] for r in data["rows"]] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert [f["level"] for f in data["features"]] == ["P2", "P3", "P4", "P5"]


def test_cli_a_token_rows_channels_are_its_width(cli):
    result = cli("summary", f"{FIXTURES}:vit_b_16", "--imgsz", "224", "--stages", "auto",
                                 "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in result.stdout.splitlines()]
    at = rows[0].index("channels")
    assert [(r[0], r[at], r[at + 1]) for r in rows[1:3]] == [("patch embed", "768", "768x14x14"),
                                                             ("encoder.layers.encoder_layer_0", "768", "197x768")]


@pytest.mark.parametrize(("factory", "message"), [
    ("deep_failure", "fails on an input of 1×3×64×64 in blocks.2.2 (Linear): RuntimeError: mat1 and mat2 shapes "
                     "cannot be multiplied (256x32 and 16x4)"),
    ("raises_markup", "fails on an input of 1×3×64×64 in gate (Gate): ValueError: [bold]gate[/bold] wants 4 "
                      "channels, got 3"),
    ("returns_none", "returns no tensor on an input of 1×3×64×64 (its forward gave NoneType); a model must return "
                     "a tensor, or a tuple, list or dict of them"),
    ("returns_text", "returns no tensor on an input of 1×3×64×64 (its forward gave str)"),
])
@pytest.mark.parametrize("stages", ["children", "auto"])
def test_a_forward_that_fails_or_returns_no_tensor_is_one_line_naming_the_module(cli, factory, message, stages):
    result = cli("summary", f"{FIXTURES}:{factory}", "--imgsz", "64", "--stages", stages)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {FIXTURES}:{factory} ")
    assert message in " ".join(result.stderr.split())  # as given: brackets are not read as markup
