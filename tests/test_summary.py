"""summary: the stage table, its totals, counters agreeing, and bad sizes."""

import pytest
import torch

import netprobe
from netprobe.counters import run_counter
from netprobe.counting import count
from netprobe.errors import InputError
from netprobe.summary import summarize


def test_v2s_stage_table_matches_the_paper_layout():
    s = summarize("efficientnetv2_s")
    assert s.input == [1, 3, 384, 384]
    assert round(s.macs / 1e9, 2) == 8.37  # the reference figure
    assert s.flops == 2 * s.macs
    names = [r.name for r in s.stages]
    assert names == ["stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "head"]
    ops = [r.op for r in s.stages[1:-1]]
    assert ops == ["Fused-MBConv1, k3x3", "Fused-MBConv4, k3x3", "Fused-MBConv4, k3x3",
                   "MBConv4, k3x3, SE0.25", "MBConv6, k3x3, SE0.25", "MBConv6, k3x3, SE0.25"]
    assert [r.repeats for r in s.stages[1:-1]] == [2, 4, 4, 6, 9, 15]
    assert [r.stride for r in s.stages[:-1]] == [2, 1, 2, 2, 2, 1, 2]
    assert [r.out for r in s.stages[:-1]] == [[24, 192, 192], [24, 192, 192], [48, 96, 96], [64, 48, 48],
                                              [128, 24, 24], [160, 24, 24], [256, 12, 12]]
    assert [r.p_level for r in s.stages[:-1]] == [1, 1, 2, 3, 4, 4, 5]
    assert sum(r.params for r in s.stages) == s.params == 21_458_488
    assert sum(r.macs for r in s.stages) == s.macs
    assert abs(sum(r.share for r in s.stages) - 1) < 1e-9
    assert s.other_ops == sum(s.other_by_kind.values()) > 0
    assert s.unsupported == {}


@pytest.mark.parametrize("depth", ["block", "layer"])
def test_deeper_rows_add_up_to_the_same_totals(depth):
    s = summarize("mobilenetv3_large", imgsz=160, depth=depth)
    assert sum(r.params for r in s.rows) == s.params == 5_483_032
    assert sum(r.macs for r in s.rows) == s.macs
    if depth == "block":
        assert len(s.rows) == 2 + 15  # stem, 15 blocks, head
        assert s.rows[3].op == "MBConv3, k3x3"  # stage2.1: 24 -> 72 expanded
    else:
        assert any(r.op == "DWConv5x5" for r in s.rows)


def test_batch_and_rectangular_sizes_scale_the_counts():
    one = summarize("efficientnet_b0", imgsz=224)
    four = summarize("efficientnet_b0", imgsz="224x160", batch=4)
    assert four.input == [4, 3, 224, 160]
    assert four.stages[3].out == [40, 28, 20]
    assert 4 * one.macs * 0.65 < four.macs < 4 * one.macs * 0.75


def test_features_are_the_detector_taps():
    s = summarize("efficientnetv2_s")
    taps = {f["level"]: f for f in s.features}
    assert (taps["P3"]["channels"], taps["P3"]["stride"]) == (64, 8)
    assert (taps["P5"]["channels"], taps["P5"]["stride"]) == (256, 32)


@pytest.mark.parametrize("size", ["0", "-3", "16", "31x64", "abc", "3x4x5"])
def test_impossible_sizes_name_the_smallest_valid_one(size):
    with pytest.raises(InputError) as err:
        summarize("efficientnet_b0", imgsz=size)
    assert "\n" not in str(err.value)
    if size not in ("abc", "3x4x5"):
        assert "at least 32" in str(err.value)


def test_native_count_agrees_with_fvcore_thop_and_torchinfo_on_conv_and_linear():
    model = netprobe.build("efficientnet_b0:classes=10")
    shape = (1, 3, 96, 96)
    native = count(netprobe.build("efficientnet_b0:classes=10", device="meta"), shape)
    results = {name: run_counter(name, model, shape) for name in ("fvcore", "thop", "torchinfo")}
    for name, r in results.items():
        assert r.error is None, (name, r.error)
    assert results["fvcore"].by_kind["conv"] == native.by_kind["conv"]
    assert results["fvcore"].by_kind["linear"] == native.by_kind["linear"]
    assert results["thop"].by_kind["conv"] == native.by_kind["conv"]
    # torchinfo adds conv biases (the SE layers'): a hair above, never below.
    assert 0 <= results["torchinfo"].macs - native.macs < 0.001 * native.macs


def test_counting_leaves_the_model_untouched():
    model = netprobe.build("mobilenetv3_small:classes=10")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name in ("fvcore", "thop", "torchinfo"):
        run_counter(name, model, (1, 3, 64, 64))
    after = model.state_dict()
    assert before.keys() == after.keys()  # thop's total_ops/total_params buffers did not stay
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())


def test_a_missing_counter_is_reported_not_raised(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_thop(name, *args, **kwargs):
        if name.startswith("thop"):
            raise ImportError("no thop")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_thop)
    r = run_counter("thop", netprobe.build("mobilenetv3_small"), (1, 3, 64, 64))
    assert r.macs is None and "not installed" in r.error


def test_the_counter_reports_ops_it_has_no_rule_for():
    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1)

    shape = (1, 3, 8, 8)
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), Odd())
    result = count(model, shape)
    assert result.macs == 4 * 6 * 6 * 27
    assert "aten.cumsum" in result.unsupported


def test_published_figures_come_beside_ours_only_for_the_plain_arch():
    s = summarize("efficientnet_b4")
    assert s.reference == {"source": "torchvision", "params": 19_341_616, "gmacs": 4.394, "imgsz": 380}
    assert s.params == s.reference["params"] and round(s.macs / 1e9, 3) == s.reference["gmacs"]
    assert summarize("efficientnet_b4:fused=1-3").reference is None
    assert summarize("efficientnetv2_xl").reference is None  # torchvision has no XL


def test_fused_attention_counts_the_same_on_cpu_as_on_meta():
    import fixtures_foreign as ff

    def vit():
        return ff.VisionTransformer(image_size=64, layers=2, heads=4, dim=64, mlp_dim=128, num_classes=10)

    on_cpu = count(vit(), (2, 3, 64, 64))  # eval + no_grad on CPU: nn.MultiheadAttention's fused kernel
    with torch.device("meta"):
        on_meta = count(vit(), (2, 3, 64, 64))  # meta: the unfused path (linear, then scaled_dot_product)
    assert on_cpu.unsupported == {} == on_meta.unsupported
    tokens, dim, layers = 17, 64, 2
    attention = layers * 2 * (4 * tokens * dim * dim + 2 * tokens * tokens * dim)  # batch 2: projections, QK^T, AV
    assert on_meta.by_kind["matmul"] == layers * 2 * 2 * tokens * tokens * dim
    assert on_cpu.macs == on_meta.macs == attention + 2 * (16 * 64 * 768 + layers * 2 * tokens * dim * 128 + 64 * 10)


@pytest.mark.parametrize(("layer", "x", "words"), [
    (torch.nn.Linear(16, 4), (2, 8, 32), "mat1 and mat2 shapes cannot be multiplied (16x32 and 16x4)"),
    (torch.nn.Conv2d(4, 8, 3), (1, 3, 8, 8), "expected input[1, 3, 8, 8] to have 4 channels, but got 3"),
    (torch.nn.ConvTranspose2d(4, 8, 2), (1, 3, 8, 8), "to have 4 channels, but got 3 channels"),
])
def test_meta_refuses_the_shapes_real_kernels_refuse_and_names_the_module(layer, x, words):
    from netprobe.counting import failed_module

    model = torch.nn.Sequential(torch.nn.Identity(), torch.nn.Sequential(layer))
    with pytest.raises(RuntimeError):
        model(torch.zeros(x))  # the real kernel refuses it ...
    with pytest.raises(RuntimeError) as err:
        count(model.to("meta"), x)  # ... and so does the meta count, in torch's words
    assert words in str(err.value)
    assert failed_module(err.value) == ("1.0", type(layer).__name__)
