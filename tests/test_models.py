"""Any model in: nn.Modules, module:pkg.mod:factory paths, .py files, timm — counted and timed like the zoo,
and never changed."""

from __future__ import annotations

import json
from pathlib import Path

import fixtures_nets as fx
import pytest
import torch
from torch import nn

import netprobe
import netprobe.compare
from netprobe.counters import run_counter
from netprobe.counting import count
from netprobe.errors import NetprobeError, SpecError
from netprobe.target import meta_copy, resolve

FIXTURES = Path(fx.__file__)


def state(model: nn.Module) -> dict:
    """Everything about a module that netprobe must leave as it found it."""
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "hooks": [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
        "training": [m.training for m in model.modules()],
        "device": {t.device for t in model.state_dict().values()},
        "buffers": [type(b).__name__ for b in model.buffers()],
    }


def same_state(a: dict, b: dict) -> bool:
    return (a["tensors"].keys() == b["tensors"].keys()
            and all(torch.equal(a["tensors"][k], b["tensors"][k]) for k in a["tensors"])
            and all(k not in a or a[k] == b[k] for k in ("requires_grad", "hooks", "training", "device", "buffers"))
            and all((x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
                    for x, y in zip(a["grads"], b["grads"], strict=True)))


# ---- counting a module netprobe did not build ----------------------------------------------------

def test_summarize_takes_a_module_and_counts_it_like_fvcore():
    model = fx.TinyCNN()
    s = netprobe.summarize(model, imgsz=64, batch=2)
    assert s.input == [2, 3, 64, 64] and s.kind == "object" and s.spec == "TinyCNN"
    assert s.params == sum(p.numel() for p in model.parameters())
    # torchvision-style: `features` holds most layers, so it is opened into its layers.
    assert [r.name for r in s.stages][:3] == ["features.0", "features.1", "features.2"]
    assert [r.name for r in s.stages][-2:] == ["pool", "classifier"]
    assert [r.p_level for r in s.stages if r.name.startswith("features.")] == [1] * 9 + [2] * 3
    fv = run_counter("fvcore", model, (2, 3, 64, 64))
    th = run_counter("thop", model, (2, 3, 64, 64))
    native = count(meta_copy(model), (2, 3, 64, 64))
    assert fv.by_kind["conv"] == th.by_kind["conv"] == native.by_kind["conv"]
    assert fv.by_kind["linear"] == th.by_kind["linear"] == native.by_kind["linear"]
    assert s.macs == native.macs


def test_functional_grouped_transposed_shared_and_dict_output():
    model = fx.Odd()
    s = netprobe.summarize(model, imgsz=32)
    native = count(meta_copy(model), (1, 3, 32, 32))
    fv = run_counter("fvcore", model, (1, 3, 32, 32))
    # F.conv2d 8x3x3x3 on 16x16, the grouped conv, the shared 1x1 twice, the transposed conv (per input pixel)
    convs = 8 * 16 * 16 * 27 + 16 * 8 * 8 * (8 // 4) * 9 + 2 * 16 * 8 * 8 * 16 + 16 * 8 * 8 * 8 * 2 * 2
    assert native.by_kind["conv"] == fv.by_kind["conv"] == convs
    assert native.by_kind["linear"] == fv.by_kind["linear"] == 256 * 16 * 16 + 16 * 5
    assert native.by_kind["matmul"] == fv.by_kind["bmm"] + 256 * 256 * 16 == 2 * 256 * 256 * 16  # einsum, bmm
    assert s.unsupported == {}
    assert s.outputs == [[1, 16, 16, 16], [1, 5]]  # each output of the dict
    shared = next(r for r in s.rows if r.name == "shared")
    assert shared.macs == 2 * 16 * 8 * 8 * 16 and shared.params == 16 * 16 + 16  # called twice, counted once
    up = next(r for r in s.rows if r.name == "up")
    assert up.stride == 0.5 and up.p_level == 1  # the transposed conv halves the stride
    # thop and torchinfo see modules only (not F.conv2d), and count a transposed conv per output pixel.
    th = run_counter("thop", model, (1, 3, 32, 32))
    module_convs = 16 * 8 * 8 * 2 * 9 + 2 * 16 * 8 * 8 * 16
    assert th.by_kind["conv"] == module_convs and th.by_kind["ConvTranspose2d"] == 4 * 16 * 8 * 8 * 8 * 4


def test_a_module_passed_in_is_never_changed():
    model = fx.TinyCNN().train()
    model.features[0].register_forward_hook(lambda m, a, o: None)
    model.classifier.weight.grad = torch.ones_like(model.classifier.weight)
    before = state(model)
    netprobe.summarize(model, imgsz=48, depth="layer")
    netprobe.summarize(model, imgsz=48, stages="auto")
    r = netprobe.benchmark(model, device="cpu", batch=2, imgsz=48, warmup=0, iters=1)
    assert r.status == "ok", r.error
    run_counter("thop", model, (1, 3, 48, 48))
    assert same_state(before, state(model))
    r = netprobe.benchmark(model, device="cpu", batch=2, imgsz=48, warmup=0, iters=2, copy=False)
    assert r.status == "ok", r.error
    assert same_state(before, state(model))  # timed in place, then given back exactly


def test_module_paths_files_and_instances():
    by_path = netprobe.summarize("module:fixtures_nets:build_tiny(width=0.5,classes=4)", imgsz=32)
    by_file = netprobe.summarize(f"{FIXTURES}:build_tiny(width=0.5, classes=4)", imgsz=32)
    direct = netprobe.summarize(fx.TinyCNN(0.5, 4), imgsz=32)
    assert by_path.params == by_file.params == direct.params
    assert by_path.macs == by_file.macs == direct.macs
    assert by_path.spec == "module:fixtures_nets:build_tiny(width=0.5,classes=4)" and by_path.kind == "module"
    assert netprobe.summarize("module:fixtures_nets:TINY", imgsz=32).params == sum(
        p.numel() for p in fx.TINY.parameters())


def test_the_input_size_comes_from_the_model_or_must_be_given():
    s = netprobe.summarize("module:fixtures_nets:build_blocks")  # declares input_size (3, 96, 80)
    assert s.input == [1, 3, 96, 80]
    # timm-style: `blocks` holds most layers, so its stages are the rows.
    assert [r.name for r in s.stages] == ["conv_stem", "blocks.0", "blocks.1", "blocks.2", "head",
                                          "(functional ops)"]
    assert [r.p_level for r in s.stages[:4]] == [1, 1, 2, 3]
    with pytest.raises(NetprobeError, match="does not say its input size; give one with --imgsz"):
        netprobe.summarize("module:fixtures_nets:build_tiny")
    four = netprobe.summarize("module:fixtures_nets:build_tiny(in_chans=4)", imgsz=32, in_chans=4)
    assert four.input == [1, 4, 32, 32]


def test_stages_auto_splits_a_flat_layer_list_by_stride_and_keeps_named_stages():
    s = netprobe.summarize(fx.TinyCNN(), imgsz=64, stages="auto")
    assert [r.name for r in s.stages] == ["features.0-8", "features.9-11", "head"]  # `features[0:9]`, ...
    assert [r.p_level for r in s.stages] == [1, 2, None]
    assert sum(r.params for r in s.stages) == s.params and sum(r.macs for r in s.stages) == s.macs
    zoo = netprobe.summarize("efficientnet_b0", stages="auto")  # structure first: its own stages, not stride runs
    assert [r.name for r in zoo.stages] == [r.name for r in netprobe.summarize("efficientnet_b0").stages]
    assert sum(r.macs for r in zoo.stages) == zoo.macs


@pytest.mark.parametrize("depth", ["block", "layer"])
@pytest.mark.parametrize("stages", ["children", "auto"])
def test_every_depth_adds_up_to_the_totals(depth, stages):
    for model in (fx.TinyCNN(), fx.Odd(), fx.Blocks()):
        s = netprobe.summarize(model, imgsz=64, depth=depth, stages=stages)
        assert sum(r.params for r in s.rows) == s.params, (type(model).__name__, depth, stages)
        assert sum(r.macs for r in s.rows) == s.macs
        assert sum(r.other_ops for r in s.rows) == s.other_ops


@pytest.mark.parametrize(("spec", "needles"), [
    ("module:no_such_pkg.models:build", ["importing no_such_pkg.models failed with ModuleNotFoundError"]),
    ("module:fixtures_nets:build_tinyy", ["has no attribute 'build_tinyy'", "did you mean build_tiny?"]),
    ("module:fixtures_nets:broken_factory", ["raised RuntimeError: weights file missing"]),
    ("module:fixtures_nets:not_a_module", ["returned int, not an nn.Module"]),
    ("module:fixtures_nets:NOT_CALLABLE", ["is a int, neither an nn.Module nor a function"]),
    ("module:fixtures_nets:build_tiny(width=__import__('os'))", ["are not literals"]),
    ("module:fixtures_nets:build_tiny(width=0.5", ["do not end with ')'"]),
    ("module:fixtures_nets", ["give module:package.module:factory"]),
    ("nowhere/net.py:build", ["no such file 'nowhere/net.py'"]),
    ("module:fixtures_nets:build_tiny(bogus=1)", ["raised TypeError"]),
])
def test_bad_model_paths_are_one_line_naming_the_target_and_cause(spec, needles):
    with pytest.raises(SpecError) as err:
        resolve(spec)
    message = str(err.value)
    assert "\n" not in message
    assert spec[:20] in message
    for needle in needles:
        assert needle in message


def test_a_model_that_fails_on_the_input_says_so_in_one_line():
    with pytest.raises(NetprobeError) as err:
        netprobe.summarize("module:fixtures_nets:build_needs_big", imgsz=32)
    assert str(err.value) == ("module:fixtures_nets:build_needs_big fails on an input of 1×3×32×32: ValueError: "
                              "input width 32 is below 64")


def test_wrong_types_say_what_was_given_and_what_is_taken():
    for bad in (123, b"efficientnet_b0", ["efficientnet_b0"]):
        with pytest.raises(SpecError, match=f"given as {type(bad).__name__}.*nn.Module"):
            netprobe.summarize(bad)
        with pytest.raises(SpecError, match=f"got {type(bad).__name__}"):
            netprobe.build(bad)


def test_timm_missing_is_one_line_with_how_to_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm":
            raise ModuleNotFoundError("No module named 'timm'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(SpecError, match="timm is not installed; pip install timm"):
        resolve("timm:efficientnetv2_rw_s")


def test_timm_models_where_timm_imports():
    timm = pytest.importorskip("timm")
    s = netprobe.summarize("timm:efficientnet_b0")
    ref = timm.create_model("efficientnet_b0", pretrained=False)
    assert s.params == sum(p.numel() for p in ref.parameters())
    assert s.input == [1, 3, 224, 224]
    assert [r.name for r in s.stages][:3] == ["conv_stem", "bn1", "blocks.0"]
    assert round(s.macs / 1e9, 3) == 0.386  # the same network as efficientnet_b0


@pytest.mark.slow
def test_bench_and_compare_take_any_model():
    r = netprobe.benchmark("module:fixtures_nets:build_odd", device="cpu", batch=2, imgsz=32, warmup=0, iters=1)
    assert r.status == "ok" and r.loss.startswith("surrogate")  # a dict output: no classifier loss
    r = netprobe.benchmark(fx.TinyCNN(), device="cpu", batch=2, imgsz=32, warmup=0, iters=1)
    assert r.status == "ok" and r.loss == "cross-entropy"  # logits: cross-entropy on random labels
    variants = netprobe.compare.spec_variants([fx.TinyCNN(), "module:fixtures_nets:build_tiny(width=2.0)"], 2, 32)
    rows = netprobe.compare.run(variants, netprobe.compare.Settings("cpu", 2, 32, warmup=0, iters=1, rounds=1)).rows
    assert [r.label for r in rows] == ["TinyCNN", "module:fixtures_nets:build_tiny(width=2.0)"]
    assert rows[1].params > rows[0].params and all(r.status == "ok" for r in rows)


def test_cli_summary_and_bench_of_a_file_model(cli, tmp_path):
    spec = f"{FIXTURES}:build_tiny(classes=3)"
    result = cli("summary", spec, "--imgsz", "40x32", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["input"] == [1, 3, 40, 32] and data["kind"] == "file"
    result = cli("summary", spec)
    assert result.exit_code == 2 and "give one with --imgsz" in result.stderr
    result = cli("bench", spec, "--device", "cpu", "--batch", "2", "--imgsz", "32", "--iters", "1",
                                 "--warmup", "0", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["status"] == "ok"
    result = cli("bench", spec, "--device", "cpu", "--imgsz", "32", "--per-stage")
    assert result.exit_code == 2 and "use --breakdown" in result.stderr
    result = cli("bench", "module:torch.nn:Identity", "--device", "cpu", "--imgsz", "32")
    assert result.exit_code == 2 and "no trainable parameters" in result.stderr and "--mode infer" in result.stderr
