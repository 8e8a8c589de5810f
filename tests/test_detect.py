"""Detectors built natively from their layouts equal the upstream models: parameters, MACs, shapes, strides.

Everything is built on the meta device (nothing allocated); one small real forward and backward
runs on CPU. The upstream figures below were produced by the upstream code itself in a separate
environment (/work/xcheck-venv: torch 2.15.0, torchvision 0.29.2, ultralytics 8.4.190 with
ultralytics-thop 2.2.3; thop 0.1.1.post2209072238 for ultralytics/yolov5 v7.0), never by netprobe;
the scripts are in /work/xcheck-venv/scripts.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from netprobe.counting import count
from netprobe.detect import BUILTINS, build_detector, check_imgsz, is_detector, resolve, surrogate_loss
from netprobe.detect.builtin import layout_text
from netprobe.detect.summary import summarize_detector
from netprobe.errors import InputError, NetprobeError, SpecError

YOLOV8 = layout_text("yolov8.yaml")
DATA = Path(__file__).parent / "data"
SEED1 = str(DATA / "seed1-yolov8-pose-efficientnetv2.yaml")
SEED2 = str(DATA / "seed2-yolov5-mobilenetv3.yaml")

# Published, unfused, at 640 (ultralytics yolov8.yaml header and YOLOv8-pose model summaries):
# parameters exactly, GFLOPs in ultralytics' convention.
PUBLISHED = {
    "yolov8n": (3_157_200, 8.9), "yolov8s": (11_166_560, 28.8), "yolov8n-pose": (3_295_470, 9.3),
    "yolov8s-pose": (11_626_046, 30.4), "yolov5s": (7_235_389, 16.6),
}

# ultralytics 8.4.190: DetectionModel / PoseModel(f"{name}.yaml") -> sum of parameter numel, and
# ultralytics.utils.torch_utils.get_flops(model, 640) (scripts/xc_ultra.py).
ULTRALYTICS_8_4_190 = {
    "yolov8n": (3_157_200, 8.8551), "yolov8s": (11_166_560, 28.8119), "yolov8m": (25_902_640, 79.3137),
    "yolov8l": (43_691_520, 165.7347), "yolov8x": (68_229_648, 258.5370),
    "yolov8n-pose": (3_295_470, 9.2935), "yolov8s-pose": (11_626_046, 30.4019),
    "yolov8m-pose": (26_464_462, 81.4062), "yolov8l-pose": (44_489_196, 169.1447),
    "yolov8x-pose": (69_491_724, 263.9516),
    "yolov5nu": (2_654_816, 7.8389), "yolov5su": (9_153_152, 24.2105),
    "yolov3u": (103_754_144, 283.3177), "yolov3-tinyu": (12_173_248, 19.1253),
}

# ultralytics/yolov5 tag v7.0 (commit 915bbf294bb74c859f0b41f1c23bc395014ea679): models.yolo.Model(
# f"models/{name}.yaml") parameters, and its model_info GFLOPs with thop 0.1.1 (scripts/xc_v5.py).
YOLOV5_V7 = {
    "yolov5n": (1_872_157, 4.5640), "yolov5s": (7_235_389, 16.6253), "yolov5m": (21_190_557, 49.2386),
    "yolov5l": (46_563_709, 109.5868), "yolov5x": (86_749_405, 206.3206),
}

# Seeds, counted by upstream code with the seeds' blocks written from the reference description:
# seed 1 by ultralytics 8.4.190's parse_model (blocks registered like Conv; scripts/seed1_ultralytics.py),
# seed 2 by yolov5 v7.0's parse_model on torchvision's mobilenet_v3_large().features
# (scripts/seed2_yolov5.py), seed 3 in plain PyTorch on torchvision 0.29.2's efficientnet_b0/b4 features
# (scripts/seed3_torchvision.py): parameters, and for seed 3 conv MACs at 416.
SEED1_PARAMS = 2_785_794
SEED2_PARAMS = 4_780_717
SEED3 = {"efficientnet_b0": (10_776_233, 3_175_334_112), "efficientnet_b4": (30_740_341, 8_774_287_712)}

# yolov8{n,s}-pose on a torchvision backbone through ultralytics 8.4.190's own TorchVision(split=True) and
# Index rows, P3/P4/P5 taps, SPPF kept (scripts/swap_ultralytics.py): parameters.
SWAPS = {
    ("yolov8n-pose", "efficientnetv2_s"): 22_038_766, ("yolov8s-pose", "efficientnetv2_s"): 26_657_006,
    ("yolov8n-pose", "mobilenetv3_large"): 5_944_974, ("yolov8s-pose", "mobilenetv3_large"): 10_915_982,
    ("yolov8n-pose", "efficientnet_b4"): 19_099_302, ("yolov8s-pose", "efficientnet_b4"): 23_815_334,
}


def counted(text: str, imgsz: int | None = None):
    spec = resolve(text)
    size = imgsz or spec.imgsz
    return spec, count(build_detector(spec, "meta"), (1, 3, size, size))


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


# ---- exact figures ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", PUBLISHED)
def test_params_equal_the_published_counts(name: str) -> None:
    _, result = counted(name, 640)
    assert result.params == PUBLISHED[name][0]


@pytest.mark.parametrize("name", PUBLISHED)
def test_flops_are_within_2_percent_of_the_published_gflops(name: str) -> None:
    # Published "GFLOPs" add BatchNorm to 2 x MACs; ours leave it out, hence a little below.
    _, result = counted(name, 640)
    published = PUBLISHED[name][1]
    assert abs(2 * result.macs / 1e9 - published) / published < 0.02


@pytest.mark.parametrize("name", ULTRALYTICS_8_4_190)
def test_ultralytics_builtins_equal_ultralytics_own_counts(name: str) -> None:
    params, gflops = ULTRALYTICS_8_4_190[name]
    summary = summarize_detector(name, imgsz=640)
    assert summary.params == params
    assert summary.ultralytics_gflops == pytest.approx(gflops, abs=1e-4)
    assert summary.unsupported == {}
    assert summary.warnings == []


@pytest.mark.parametrize("name", YOLOV5_V7)
def test_legacy_yolov5_equals_yolov5_v7_counts(name: str) -> None:
    params, gflops = YOLOV5_V7[name]
    summary = summarize_detector(name, imgsz=640)
    assert summary.params == params
    # thop 0.1.1 also counted one op per nearest-upsample output; the note says so, this checks it.
    assert summary.ultralytics_gflops + 2 * summary.other_by_kind["resize"] / 1e9 == pytest.approx(gflops, abs=1e-4)
    assert summary.unsupported == {} and summary.warnings == []


@pytest.mark.parametrize("name", ["yolov8n", "yolov8n-pose", "yolov5s", "yolov5su", "yolov3u"])
def test_head_inputs_at_640_are_80_40_20(name: str) -> None:
    summary = summarize_detector(name, imgsz=640)
    assert [h.hw for h in summary.head_inputs] == [[80, 80], [40, 40], [20, 20]]
    assert [h.stride for h in summary.head_inputs] == [8, 16, 32]
    assert [h.level for h in summary.head_inputs] == [3, 4, 5]


@pytest.mark.slow
def test_every_builtin_builds_on_meta_and_counts_every_op() -> None:
    for name in BUILTINS:
        spec, result = counted(name)
        model = build_detector(spec, "meta")
        assert all(p.is_meta for p in model.parameters()), name
        assert result.unsupported == {}, name
        assert result.macs > 0, name


def test_yolov3_tinyu_reads_strides_16_and_32_through_its_padded_pool() -> None:
    summary = summarize_detector("yolov3-tinyu")
    assert [(h.row, h.stride, h.expected_stride) for h in summary.head_inputs] == [(19, 16, 16), (15, 32, 32)]
    assert summary.rows[12].strides == [32] and summary.warnings == []


def test_yolov8n_summary_rows_match_ultralytics_layer_table() -> None:
    # ultralytics 8.4.190 prints these per-row parameter counts for yolov8n.yaml.
    expected = [464, 4672, 7360, 18560, 49664, 73984, 197632, 295424, 460288, 164608, 0, 0, 148224, 0, 0, 37248,
                36992, 0, 123648, 147712, 0, 493056, 897664]
    summary = summarize_detector("yolov8n")
    assert [r.params for r in summary.rows] == expected
    assert [r.args for r in summary.rows[:3]] == ["[3, 16, 3, 2]", "[16, 32, 3, 2]", "[32, 32, 1, True]"]
    assert summary.rows[4].repeats == 2 and summary.rows[4].out == [[64, 80, 80]]
    assert summary.sections["head"]["params"] == 897664
    assert sum(s["params"] for s in summary.sections.values()) == summary.params
    assert summary.trainable == summary.params - 16  # the DFL's fixed 1x1 conv
    assert summary.flops == 2 * summary.macs
    assert summary.published == {"source": "ultralytics yolov8.yaml header (unfused)", "gflops": 8.9, "imgsz": 640,
                                 "params": 3_157_200, "params_m": None, "fused": False}


@pytest.mark.parametrize("name", ["yolov8n", "tests/data/seed2-yolov5-mobilenetv3.yaml"])
def test_layers_sum_to_the_totals_and_blocks_open_rows_up(name: str) -> None:
    layers = summarize_detector(name, depth="layer")
    assert sum(d.params for d in layers.detail) == layers.params
    assert sum(d.macs for d in layers.detail) == layers.macs
    assert sum(d.other_ops for d in layers.detail) == layers.other_ops
    blocks = summarize_detector(name, depth="block")
    assert sum(d.params for d in blocks.detail) == blocks.params
    by_row = {}
    for d in blocks.detail:
        by_row.setdefault(d.row, []).append(d)
    for row in blocks.rows:
        if row.index in by_row:
            assert sum(d.macs for d in by_row[row.index]) == row.macs


def test_c2f_blocks_are_its_convs_and_bottlenecks_at_the_rows_stride() -> None:
    detail = summarize_detector("yolov8n", depth="block").detail
    row4 = [(d.path, d.type, d.cum_stride, d.p_level) for d in detail if d.row == 4]
    assert row4 == [("4.cv1", "Conv", 8, 3), ("4.m.0", "Bottleneck", 8, 3), ("4.m.1", "Bottleneck", 8, 3),
                    ("4.cv2", "Conv", 8, 3)]
    with pytest.raises(InputError):
        summarize_detector("yolov8n", depth="stage")


# ---- specs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_canonical_round_trips(name: str) -> None:
    spec = resolve(name)
    assert resolve(spec.canonical) == spec


BACKBONES = ["efficientnet_b0", "efficientnet_b4:fused=1-3", "mobilenetv3_large", "efficientnetv2_s:width=0.5",
             "mobilenetv3_small:act=relu", "efficientnet_b1:fused=2,4,se=0"]


@pytest.mark.slow
@settings(max_examples=12, deadline=None)
@given(name=st.sampled_from(["yolov8n", "yolov8n-pose", "yolov5nu", "yolov3-fpn"]),
       backbone=st.none() | st.sampled_from(BACKBONES), nc=st.none() | st.integers(1, 300),
       imgsz=st.none() | st.integers(1, 20).map(lambda k: 32 * k))
def test_spec_options_round_trip(name: str, backbone: str | None, nc: int | None, imgsz: int | None) -> None:
    options = [f"backbone=({backbone})" if backbone else None, f"nc={nc}" if nc else None,
               f"imgsz={imgsz}" if imgsz else None]
    given_options = [o for o in options if o]
    text = name + (":" + ",".join(given_options) if given_options else "")
    spec = resolve(text)
    again = resolve(spec.canonical)
    assert again == spec
    assert again.canonical == spec.canonical
    if nc:
        assert spec.nc == nc
    if imgsz:
        assert spec.imgsz == imgsz


def test_nested_backbone_spec_keeps_its_own_options() -> None:
    spec = resolve("yolov8n-pose:backbone=(efficientnet_b4:fused=1-3),nc=20")
    assert spec.backbone == "efficientnet_b4:fused=1-3"
    assert spec.canonical == "yolov8n-pose:backbone=(efficientnet_b4:fused=1-3),nc=20,imgsz=640"
    assert spec.nc == 20 and spec.published is None
    assert resolve("yolov8n-pose").published is not None


def test_is_detector() -> None:
    assert is_detector("yolov8n-pose:backbone=efficientnetv2_s")
    assert is_detector("path/to/model.yaml") and is_detector("model.yml:scale=s")
    assert not is_detector("efficientnetv2_s") and not is_detector("efficientnet_b4:fused=1-3")


# ---- backbone swaps -----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "backbone"), SWAPS)
def test_swapped_backbone_equals_ultralytics_torchvision_rows(name: str, backbone: str) -> None:
    _, result = counted(f"{name}:backbone={backbone}", 640)
    assert result.params == SWAPS[(name, backbone)]
    assert result.unsupported == {}


@pytest.mark.parametrize(("backbone", "taps"), [("efficientnetv2_s", [64, 160, 256]),
                                                ("mobilenetv3_large", [40, 112, 960])])
def test_swapped_backbone_feeds_the_neck_its_stride_8_16_32_taps(backbone: str, taps: list[int]) -> None:
    summary = summarize_detector(f"yolov8n-pose:backbone={backbone}")
    rows = summary.rows
    assert [(r.module, r.section) for r in rows[:5]] == [("Backbone", "backbone")] * 4 + [("SPPF", "backbone")]
    assert [r.out[0][0] for r in rows[1:4]] == taps
    assert [r.strides for r in rows[1:4]] == [[8], [16], [32]]
    # The neck reads the taps: P4 and P3 through its Concats, P5 through the kept SPPF.
    assert rows[4].args.startswith(f"[{taps[2]}, ")
    concats = {r.index: r for r in rows if r.module == "Concat"}
    assert concats[6].src == [-1, 2] and concats[9].src == [-1, 1]
    assert concats[6].out[0][0] == 256 + taps[1] and concats[9].out[0][0] == 128 + taps[0]  # upsampled + tap
    assert [h.stride for h in summary.head_inputs] == [8, 16, 32]
    assert summary.warnings == []


def test_swap_into_yolov3_and_legacy_yolov5_redirects_every_read() -> None:
    spec = resolve("yolov3u:backbone=efficientnet_b0")
    assert spec.head.src == (20, 15, 8)
    assert [spec.layers[j].stride for j in spec.head.inputs] == [8, 16, 32]
    legacy = resolve("yolov5s:backbone=mobilenetv3_small")
    assert [legacy.layers[j].stride for j in legacy.head.inputs] == [8, 16, 32]


def test_backbone_without_a_stride_32_stage_is_refused() -> None:
    with pytest.raises(SpecError) as err:
        resolve("yolov8n:backbone=(custom:stem=16,stages=mb_r1_k3_s2_e1_c16/mb_r1_k3_s2_e4_c24,head=64)")
    assert "no stride-16 stage" in one_line(err)


# ---- the seeds ----------------------------------------------------------------------------------

def test_seed1_counts_and_warns_that_every_level_sits_one_deeper() -> None:
    summary = summarize_detector(SEED1)
    assert summary.params == SEED1_PARAMS and summary.unsupported == {}
    assert [(h.row, h.stride, h.expected_stride) for h in summary.head_inputs] == [(18, 16, 8), (21, 32, 16),
                                                                                   (24, 64, 32)]
    assert summary.scale == "n" and summary.notes  # no scale letter in the file name: the first, as ultralytics
    head, labels = summary.warnings
    assert "strides 16 (P4), 32 (P5), 64 (P6)" in head and "every level sits 1 deeper" in head
    assert labels.startswith("YAML comments label rows 3, 5, 7,")


def test_seed2_mobilenetv3_occupies_rows_0_to_4() -> None:
    spec = resolve(SEED2)
    assert [r.output_index for r in spec.layers[:5]] == [None, 0, 1, 2, 3]
    assert [(r.out_channels, r.strides) for r in spec.layers[1:5]] == [((24,), (4,)), ((40,), (8,)), ((112,), (16,)),
                                                                      ((960,), (32,))]
    model = build_detector(spec, "meta")
    assert [name for name, _ in model.named_children()][:3] == ["0", "5", "6"]
    assert [info.path for info in model.layers[:6]] == ["0", None, None, None, None, "5"]
    summary = summarize_detector(spec)
    assert summary.params == SEED2_PARAMS and summary.unsupported == {} and summary.warnings == []
    assert [h.stride for h in summary.head_inputs] == [8, 16, 32]


@pytest.mark.parametrize("backbone", SEED3)
def test_seed3_yolov3_fpn_equals_plain_pytorch_on_torchvision(backbone: str) -> None:
    params, macs = SEED3[backbone]
    spec, result = counted(f"yolov3-fpn:backbone={backbone}")
    assert spec.imgsz == 416
    assert (result.params, result.macs) == (params, macs)
    head = result.modules[str(spec.head.index)]
    model = build_detector(spec, "meta").train()
    raw = model(torch.empty(1, 3, 416, 416, device="meta"))
    assert [tuple(r.shape) for r in raw] == [(1, 3, 52, 52, 85), (1, 3, 26, 26, 85), (1, 3, 13, 13, 85)]
    assert head.out_shape == (1, 3 * (52 * 52 + 26 * 26 + 13 * 13), 85)


# ---- building and running -----------------------------------------------------------------------

def test_children_are_rows_and_a_real_train_step_reaches_every_parameter() -> None:
    torch.manual_seed(0)
    model = build_detector(resolve("yolov8n")).train()
    assert [name for name, _ in model.named_children()] == [str(i) for i in range(23)]
    x = torch.randn(2, 3, 64, 64)
    raw = model(x)
    assert [tuple(r.shape) for r in raw] == [(2, 144, 8, 8), (2, 144, 4, 4), (2, 144, 2, 2)]
    surrogate_loss(raw).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    model.eval()
    with torch.no_grad():
        boxes = model(x)
    assert boxes.shape == (2, 4 + 80, 64 + 16 + 4)
    assert torch.isfinite(boxes).all()
    assert (boxes[:, 4:] >= 0).all() and (boxes[:, 4:] <= 1).all()  # class scores after the sigmoid


def test_pose_eval_output_has_boxes_class_and_keypoints() -> None:
    model = build_detector(resolve("yolov8n-pose"), "meta").eval()
    out = model(torch.empty(1, 3, 640, 640, device="meta"))
    assert tuple(out.shape) == (1, 4 + 1 + 17 * 3, 8400)


def test_check_imgsz_names_a_size_that_works() -> None:
    spec = resolve("yolov8n")
    assert check_imgsz(spec, (320, 256)) == (320, 256)
    with pytest.raises(InputError) as err:
        check_imgsz(spec, 16)
    assert "at least 32" in one_line(err)
    with pytest.raises(InputError) as err:
        check_imgsz(spec, (650, 640))
    assert "row 11 (Concat)" in one_line(err) and "e.g. 672x640" in str(err.value)
    with pytest.raises(InputError):
        summarize_detector("yolov8n:imgsz=100")
    seed1 = resolve(SEED1)
    assert seed1.max_stride == 64
    with pytest.raises(InputError) as err:
        check_imgsz(seed1, 32)
    assert "downsamples by 64" in one_line(err)


# ---- YAML files, user modules and bad input ------------------------------------------------------

def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_yaml_file_takes_its_scale_from_the_name_or_the_flag(tmp_path: Path) -> None:
    path = write(tmp_path, "yolov8s.yaml", YOLOV8)
    assert resolve(path).scale == "s"
    assert resolve(path, scale="n").scale == "n"
    assert summarize_detector(resolve(path)).params == ULTRALYTICS_8_4_190["yolov8s"][0]
    assert resolve(path).canonical == f"{path}:scale=s,nc=80,imgsz=640"
    assert resolve(resolve(path, scale="x").canonical) == resolve(path, scale="x")


USER_BLOCKS = textwrap.dedent('''
    import torch
    from torch import nn

    class DoubleConv(nn.Module):
        """Like Conv: (c1, c2, k)."""
        def __init__(self, c1, c2, k=3):
            super().__init__()
            self.a = nn.Conv2d(c1, c2, k, 1, k // 2)
            self.b = nn.Conv2d(c2, c2, k, 1, k // 2)
        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    class Gate(nn.Module):
        """No channel arguments: keeps its input's channels."""
        def forward(self, x):
            return x * x.sigmoid()
''')


def test_user_modules_are_looked_up_first_and_take_channels_like_conv(tmp_path: Path) -> None:
    blocks = write(tmp_path, "blocks.py", USER_BLOCKS)
    rows = "  - [-1, 1, DoubleConv, [128, 3]]\n  - [-1, 1, Gate, []]\n"
    text = YOLOV8.replace("  - [-1, 3, C2f, [128, True]]\n", rows)
    for old, new in ((6, 7), (4, 5), (12, 13), (9, 10)):
        text = text.replace(f"[[-1, {old}], 1, Concat", f"[[-1, {new}], 1, Concat")
    path = write(tmp_path, "yolov8n-mine.yaml", text.replace("[[15, 18, 21], 1, Detect", "[[16, 19, 22], 1, Detect"))
    spec = resolve(path, modules=blocks)
    assert [(r.module, r.args, r.out_channels) for r in spec.layers[2:4]] == [("DoubleConv", (32, 32, 3), (32,)),
                                                                              ("Gate", (), (32,))]
    c2f_params = 7360  # ultralytics' yolov8n row 2
    double_conv = 2 * (32 * 32 * 9 + 32)
    assert summarize_detector(spec).params == ULTRALYTICS_8_4_190["yolov8n"][0] - c2f_params + double_conv
    assert spec.canonical.endswith(f"modules={blocks}")
    with pytest.raises(SpecError) as err:
        resolve(path)
    assert "unknown module 'DoubleConv'" in one_line(err) and "--modules" in str(err.value)


def bad_yaml(tmp_path: Path, old: str, new: str) -> str:
    assert old in YOLOV8
    return write(tmp_path, "bad.yaml", YOLOV8.replace(old, new))


@pytest.mark.parametrize(("old", "new", "words"), [
    ("C2f, [128, True]", "C9f, [128, True]", ["row 2: unknown module 'C9f'", "known: ", "C2f", "--modules"]),
    ("[[-1, 6], 1, Concat", "[[-1, 36], 1, Concat", ["row 11 (Concat) reads from 36", "only rows 0-10"]),
    ("[[-1, 6], 1, Concat", "[[-1, 4], 1, Concat", ["row 11 (Concat) joins maps of different sizes",
                                                    "row 10 gives 256x128x128 (stride 16)",
                                                    "row 4 gives 64x256x256 (stride 8)"]),
    ("[128, 3, 2]] # 1-P2/4", "[128, 3, 2] # 1-P2/4", ["not valid YAML at line"]),
    ("nc: 80\n", "", ["no 'nc'"]),
    ("[-1, 3, C2f, [128, True]]", "[-1, 3, C2f, 128]", ["backbone[2]", "is not [from, repeats, module, args]"]),
    ("n: [0.33, 0.25, 1024]", "n: 0.33", ["malformed scales"]),
])
def test_bad_yaml_is_one_line(tmp_path: Path, old: str, new: str, words: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        resolve(bad_yaml(tmp_path, old, new))
    message = one_line(err)
    for word in words:
        assert word in message


@pytest.mark.parametrize(("text", "words"), [
    ("yolov8n:nc=0", ["nc must be an integer"]),
    ("yolov8n:depth=2", ["unknown key 'depth'", "allowed keys are nc, imgsz, backbone"]),
    ("yolov8n:backbone=efficientnet_b9", ["backbone 'efficientnet_b9': unknown arch"]),
    ("yolov8n:backbone=(efficientnet_b4:fused=9)", ["backbone 'efficientnet_b4:fused=9': fused='9'"]),
    ("yolov8n:backbone=efficientnet_b4:fused=2,4", ["option '4'", "parentheses"]),
    ("yolov8n:backbone=(efficientnet_b0", ["never closed"]),
    ("yolov9n", ["unknown detector 'yolov9n'", "did you mean yolov8n"]),
    ("yolov8n:imgsz=0", ["imgsz must be an integer from 1 to 8192"]),
])
def test_bad_detector_specs_are_one_line(text: str, words: list[str]) -> None:
    with pytest.raises(SpecError) as err:
        resolve(text)
    message = one_line(err)
    for word in words:
        assert word in message


def test_flags_and_files_that_do_not_work_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as err:
        resolve("yolov8n", scale="s")
    assert "pick the scale by name, e.g. yolov8s" in one_line(err)
    good = write(tmp_path, "model.yaml", YOLOV8)
    with pytest.raises(SpecError) as err:
        resolve(good, scale="q")
    assert "scale 'q' is not in its scales" in one_line(err)
    broken = write(tmp_path, "broken.py", "class Block(:\n    pass\n")
    with pytest.raises(InputError) as err:
        resolve(good, modules=broken)
    assert "does not import (line 1): SyntaxError" in one_line(err)
    with pytest.raises(InputError) as err:
        resolve(str(tmp_path / "missing.yaml"))
    assert "cannot read" in one_line(err)
    with pytest.raises(NetprobeError):
        summarize_detector("yolov8n", batch=0)


# ---- through the front door: summary, bench and compare on detectors --------------------------------

def test_cli_summary_of_a_detector_has_rows_sections_head_inputs_and_warnings(cli):
    result = cli("summary", "yolov8n", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["params"] == 3_157_200 and len(data["rows"]) == 23 and data["spec"] == "yolov8n"
    assert [h["hw"] for h in data["head_inputs"]] == [[80, 80], [40, 40], [20, 20]]
    md = cli("summary", str(SEED1), "--format", "markdown").stdout
    assert "warning: head row 25 (Pose) reads rows 18, 21, 24 at strides 16 (P4), 32 (P5), 64 (P6)" in md
    assert "**What the head reads**" in md and "**Backbone, neck and head**" in md and "canonical: `" in md
    csv = cli("summary", "yolov8n", "--format", "csv", "--section", "head_inputs").stdout
    assert csv.splitlines()[0].startswith("row,channels,hw,stride")
    bad = cli("summary", "yolov8n", "--imgsz", "630")
    assert bad.exit_code == 2 and "multiples of 32, e.g. 640" in bad.stderr
    bad = cli("summary", "efficientnet_b0", "--scale", "s")
    assert bad.exit_code == 2 and "apply to detectors" in bad.stderr


@pytest.mark.slow
def test_detectors_bench_and_compare_with_a_surrogate_loss():
    import netprobe
    import netprobe.compare

    r = netprobe.benchmark("yolov8n:nc=4", device="cpu", batch=2, imgsz=64, warmup=0, iters=1)
    assert r.status == "ok", r.error
    assert r.loss.startswith("surrogate") and r.params == netprobe.summarize("yolov8n:nc=4").params
    r = netprobe.benchmark("yolov8n:nc=4", device="cpu", batch=2, imgsz=64, mode="infer", warmup=0, iters=1)
    assert r.status == "ok", r.error
    variants = netprobe.compare.spec_variants(["yolov8n-pose", "yolov8n-pose:backbone=mobilenetv3_small"], 2, 64)
    rows = netprobe.compare.run(variants, netprobe.compare.Settings("cpu", 2, 64, warmup=0, iters=1, rounds=1)).rows
    assert all(row.status == "ok" for row in rows) and rows[1].params != rows[0].params
    from netprobe.cli.compare import compare_report
    from netprobe.render import to_markdown

    assert all(row.loss.startswith("surrogate") for row in rows)
    shown = to_markdown(compare_report("specs", rows, "test"))
    assert "(a stand-in: no label assignment or real detection loss is timed)" in shown
