"""Time by op kind: classification on any module, attribution of a profiler's event tree, a real CPU profile."""

import json

import pytest
import torch
from torch import nn

import netprobe
import netprobe.breakdown
from netprobe.bench import BenchConfig, benchmark
from netprobe.breakdown import OpEvent, OpTime, attribute, breakdown_step
from netprobe.counting import LOSS_PATH, count_train
from netprobe.op_kinds import OPTIMIZER_PATH, KindClassifier, first_component, is_squeeze_excite, layer_kind
from netprobe.timing import TorchStep


def test_conv_kinds_by_shape():
    assert layer_kind(nn.Conv2d(32, 32, 3, groups=32)) == "depthwise_conv"
    assert layer_kind(nn.Conv2d(32, 64, 5, groups=32)) == "depthwise_conv"  # channel multiplier 2
    assert layer_kind(nn.Conv2d(32, 64, 1)) == "pointwise_conv"
    assert layer_kind(nn.Conv2d(32, 64, 3)) == "dense_conv"
    assert layer_kind(nn.Conv2d(32, 64, 3, groups=4)) == "dense_conv"
    assert layer_kind(nn.BatchNorm2d(4)) == "batch_norm" and layer_kind(nn.Hardswish()) == "activation"
    assert layer_kind(nn.Sequential()) is None


class SqueezeExcitation(nn.Module):  # torchvision's name
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(16, 4, 1), nn.Conv2d(4, 16, 1)


class Gate(nn.Module):  # no telling name: recognised by shape, C -> s -> C with 1x1 convs
    def __init__(self, c=16, s=4):
        super().__init__()
        self.conv_reduce, self.act, self.conv_expand = nn.Conv2d(c, s, 1), nn.ReLU(), nn.Conv2d(s, c, 1)

    def forward(self, x):  # timm-style: a functional mean, no pool module
        return x * self.conv_expand(self.act(self.conv_reduce(x.mean((2, 3), keepdim=True)))).sigmoid()


class DropPath(nn.Module):
    def forward(self, x):
        return x


def test_squeeze_excite_by_name_or_by_shape():
    assert is_squeeze_excite(SqueezeExcitation())
    assert is_squeeze_excite(type("SEModule", (nn.Module,), {})())
    assert is_squeeze_excite(Gate())
    assert not is_squeeze_excite(Gate(16, 32))  # expands first: not a squeeze
    assert not is_squeeze_excite(nn.Sequential(nn.Conv2d(16, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 16, 1)))


def test_classifier_on_foreign_blocks():
    model = nn.Sequential()
    model.add_module("block", nn.Sequential())
    model.block.add_module("dw", nn.Conv2d(16, 16, 3, groups=16))
    model.block.add_module("gate", Gate())
    model.block.add_module("drop_path", DropPath())
    kinds = KindClassifier(model)
    assert kinds.kind("block.dw", "conv") == "depthwise_conv"
    assert kinds.kind("block.gate", "mul") == "squeeze_excite"  # its own multiply
    assert kinds.kind("block.gate.conv_reduce", "conv") == "squeeze_excite"  # its convs too
    assert kinds.kind("block.drop_path", "mul") == "residual"
    assert kinds.kind("block", "add") == "residual" and kinds.kind("block", "act") == "activation"
    assert kinds.kind("block", None) == "other"
    assert kinds.kind(LOSS_PATH, "act") == "loss" and kinds.kind(OPTIMIZER_PATH, "add") == "optimizer"
    assert first_component("stage3.1.body.dw") == "stage3" and first_component(LOSS_PATH) is None


def ev(name, start, end, time=None, *children):
    return OpEvent(name, start, end, end - start if time is None else time, list(children))


def test_attribute_reads_the_event_tree():
    main = ev("ProfilerStep#1", 0, 100, None,
              ev("np::phase::forward", 0, 30, None,
                 ev("np::fwd::", 0, 20, None,
                    ev("np::fwd::conv", 1, 19, None,
                       ev("aten::conv2d", 2, 12, None, ev("aten::convolution", 3, 11)),
                       ev("aten::add_", 13, 15))),
                 ev("aten::cross_entropy_loss", 21, 29, None, ev("aten::_log_softmax", 22, 25))),
              ev("np::phase::backward", 30, 80, None,
                 ev("aten::ones_like", 31, 32),
                 ev("autograd::engine::evaluate_function: ConvolutionBackward0", 40, 60, None,
                    ev("np::bwd::conv", 41, 55, None, ev("aten::convolution_backward", 42, 54))),
                 ev("aten::add", 61, 64)),  # the engine summing gradients after conv's node
              ev("np::phase::optimizer", 80, 95, None, ev("Optimizer.step#SGD.step", 81, 94, None,
                                                          ev("aten::add_", 82, 90))))
    worker = ev("np::bwd::head", 33, 39, None, ev("aten::mm", 34, 38, 100))  # on the engine's thread (CUDA)
    stray = ev("aten::empty", 200, 201)  # between steps
    times = {(t.path, t.direction, t.counted_kind): t.ms * 1e3 for t in attribute([main, worker, stray], steps=2)}
    assert times == {
        ("conv", "fwd", "conv"): 5.0, ("conv", "fwd", "add"): 1.0,
        (LOSS_PATH, "fwd", "act"): 4.0, (LOSS_PATH, "bwd", None): 0.5,
        ("head", "bwd", "linear"): 50.0,  # its own time (here: kernel time), not the span of its children
        ("conv", "bwd", "conv"): 6.0, ("conv", "bwd", "add"): 1.5,
        (OPTIMIZER_PATH, "opt", "add"): 4.0,
    }


TINY = dict(device="cpu", batch=2, imgsz=64, warmup=1, iters=1, max_warmup_s=2)


def tiny_step(spec="efficientnet_b0:classes=10,depth=0.5"):
    model = netprobe.build(spec)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 10, (2,))
    return model, TorchStep(model, x, y, mode="train", classes=10)


def test_a_real_cpu_profile_adds_up():
    model, step = tiny_step()
    counted = count_train(model, (2, 3, 64, 64), optimizer=lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9))
    found = breakdown_step(model, step, "cpu", count=counted, steps=1)
    whole = found.whole_step()
    staged = [r for r in found.records if r.stage is not None or r.kind in ("loss", "optimizer")]
    assert sum(r.time_share for r in whole) == pytest.approx(1)
    assert sum(r.time_share for r in staged) == pytest.approx(1)
    assert sum(r.macs_share for r in whole) == pytest.approx(1)
    assert sum(r.bytes_share for r in whole) == pytest.approx(1)
    assert found.profiled_ms == pytest.approx(sum(r.ms for r in whole))
    assert {r.stage for r in found.records} == {None, "stem", *[f"stage{i}" for i in range(1, 8)], "head"}
    kinds = {r.kind: r for r in whole}
    for kind in ("depthwise_conv", "pointwise_conv", "batch_norm", "squeeze_excite", "loss"):
        assert kinds[kind].fwd_ms > 0 and kinds[kind].bwd_ms > 0, kind
    assert kinds["optimizer"].opt_ms > 0 and kinds["optimizer"].bytes_share > 0
    assert kinds["depthwise_conv"].gflops > 0 and kinds["batch_norm"].gflops is None
    assert found.timing == "cpu op time" and found.steps == 1


@pytest.mark.slow
def test_profiler_failure_is_a_note_and_timing_stands(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("profiler is busy\nsecond line")

    monkeypatch.setattr(netprobe.breakdown, "profile_step", broken)
    model, step = tiny_step()
    found = breakdown_step(model, step, "cpu")
    assert found.records == [] and found.note == "no breakdown: the profiler failed (RuntimeError: profiler is busy)"
    r = benchmark(BenchConfig("mobilenetv3_small:classes=10", breakdown=True, **TINY))
    assert r.status == "ok" and r.step_ms > 0 and r.tflops > 0
    assert r.breakdown is None and r.roofline is None and "profiler failed" in r.breakdown_note


@pytest.mark.parametrize("profiled,step,off", [(100, 100, False), (114, 100, False), (116, 100, True),
                                               (84, 100, True), (100, None, False)])
def test_a_note_when_the_profile_is_more_than_15_percent_off(profiled, step, off):
    note = netprobe.breakdown.off_note(profiled, step)
    assert (note is not None) == off
    if off:
        assert f"{step:.1f} ms" in note and "\n" not in note


def test_stages_come_from_the_function_given_and_counts_follow_the_mode():
    model = netprobe.build("efficientnet_b0:classes=10", device="meta")
    counted = count_train(model, (2, 3, 64, 64))
    times = [OpTime("stage5.0.body.dw.0", "fwd", "conv", 2.0), OpTime("stem.0", "fwd", "conv", 1.0),
             OpTime("stage5.0.body.dw.0", "bwd", "conv", 3.0), OpTime(LOSS_PATH, "fwd", "act", 1.0)]

    def halves(path):
        return None if path.startswith("(") else "late" if path.startswith(("stage5", "stage6", "stage7", "head")) \
            else "early"

    train = netprobe.breakdown.breakdown(times, model, counted, stage_of=halves)
    assert [(r.stage, r.kind) for r in train.records if r.time_share] == [
        ("early", "dense_conv"), ("late", "depthwise_conv"), (None, "depthwise_conv"), (None, "dense_conv"),
        (None, "loss")]
    dw = next(r for r in train.records if r.stage is None and r.kind == "depthwise_conv")
    assert (dw.fwd_ms, dw.bwd_ms, dw.time_share) == (2.0, 3.0, 5 / 7)
    dw_macs = sum(m.fwd_macs for m in counted.modules.values() if m.path.endswith(".dw.0"))
    assert dw.macs == 3 * dw_macs and dw.gflops == pytest.approx(2 * dw.macs / 5e-3 / 1e9)
    infer = netprobe.breakdown.breakdown(times, model, counted, stage_of=halves, mode="infer")
    assert next(r for r in infer.records if r.stage is None and r.kind == "depthwise_conv").macs == dw_macs


# ---- the command line -----------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_bench_breakdown_json_and_roofline_plot(cli, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "roof.png"
    result = cli("bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "64",
                  "--warmup", "1", "--iters", "2", "--breakdown", "--plot", str(png), "--format", "json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)["results"][0]
    whole = [k for k in r["breakdown"] if k["stage"] is None]
    assert abs(sum(k["time_share"] for k in whole) - 1) < 1e-6
    assert {k["kind"] for k in whole} >= {"depthwise_conv", "pointwise_conv", "squeeze_excite", "optimizer"}
    assert set(r["roofline"]) >= {"peak_tflops", "bandwidth_gbs", "dtype", "stages"}
    assert [s["name"] for s in r["roofline"]["stages"]][:2] == ["stem", "stage1"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = cli("bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "64",
                 "--warmup", "1", "--iters", "2", "--breakdown", "--format", "markdown")
    assert "**Where the step's time goes**" in table.stdout and "**Roofline per stage**" in table.stdout
    assert "depthwise convs take" in table.stdout
    assert "| Bwd ms |" in table.stdout and "forward + backward in the profiled steps" in table.stdout


@pytest.mark.slow
def test_an_inference_breakdown_shows_no_backward_columns(cli):
    table = cli("bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "64",
                 "--mode", "infer", "--warmup", "0", "--iters", "1", "--breakdown", "--format", "markdown", "--no-save")
    assert table.exit_code == 0, table.output
    explained = table.stdout.split("**Where the step's time goes**")[1]  # (bench's own table keeps its columns)
    assert "| Fwd ms |" in explained and "Bwd ms" not in explained and "Opt ms" not in explained
    assert "| loss |" not in explained and "the forward in the profiled steps" in explained


@pytest.mark.slow
def test_cli_breakdown_of_a_foreign_module_uses_its_stage_rows(cli):
    result = cli("bench", "module:fixtures_nets:build_blocks", "--device", "cpu", "--batch", "2", "--warmup", "0",
                  "--iters", "1", "--breakdown", "--format", "json")
    assert result.exit_code == 0, result.output
    stages = {k["stage"] for k in json.loads(result.stdout)["results"][0]["breakdown"] if k["stage"]}
    assert stages <= {"conv_stem", "blocks.0", "blocks.1", "blocks.2", "head"} and "blocks.1" in stages


@pytest.mark.slow
def test_cli_profiler_failure_is_one_note_and_the_timing_stays(cli, monkeypatch):
    import netprobe.breakdown

    def broken(*args, **kwargs):
        raise RuntimeError("profiler unavailable here")

    monkeypatch.setattr(netprobe.breakdown, "profile_step", broken)
    result = cli("bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "32",
                  "--warmup", "0", "--iters", "1", "--breakdown", "--format", "json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)["results"][0]
    assert r["status"] == "ok" and r["imgs_per_s"] > 0
    assert r["breakdown_note"] == "no breakdown: the profiler failed (RuntimeError: profiler unavailable here)"


def test_cli_plot_needs_breakdown_and_is_checked_first(cli):
    result = cli("bench", "mobilenetv3_small", "--device", "cpu", "--plot", "r.png")
    assert result.exit_code == 2 and "add --breakdown" in result.stderr
    result = cli("bench", "mobilenetv3_small", "--device", "cpu", "--breakdown", "--plot", "/nonexistent/r.png")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_cli_summary_train_counts_the_backward_and_shows_flop_counter_mode(cli):
    result = cli("summary", "efficientnet_b0", "--train", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    train = data["train"]
    assert train["step_macs"] == train["fwd_macs"] + train["bwd_macs"]
    stem_conv = 32 * 112 * 112 * 27
    assert train["bwd_input_macs"] == train["fwd_macs"] - stem_conv  # every layer but the stem needs a grad input
    assert sum(r["bwd_macs"] for r in data["stages"]) == train["bwd_macs"]
    assert train["flop_counter"]["step_macs"] > 10 * train["step_macs"]  # its grouped-conv backward over-count


def _kind(kind, time_share, macs_share, macs=0, nbytes=0, ms=0.0, gflops=None):
    return {"kind": kind, "stage": None, "fwd_ms": ms / 2, "bwd_ms": ms / 2, "opt_ms": 0.0,
            "time_share": time_share, "macs_share": macs_share, "bytes_share": 0.0, "gflops": gflops,
            "macs": macs, "bytes": nbytes}


def test_the_why_sentence_follows_the_numbers():
    from netprobe.cli.explain import why

    roof = {"peak_tflops": 0.2, "bandwidth_gbs": 20.0, "stages": [{"name": "stage1", "bound": "memory"},
                                                                  {"name": "stage2", "bound": "compute"}]}
    # 1e9 MACs over 1e9 bytes in 100 ms: 2 FLOPs/byte under a ridge of 10, moving 10 GB/s
    dw = _kind("depthwise_conv", 0.40, 0.05, macs=10**9, nbytes=10**9, ms=100.0, gflops=20.0)
    dense = _kind("pointwise_conv", 0.60, 0.95, gflops=150.0)
    line = why("A", [dw, dense], roof)
    assert line.startswith("A: depthwise convs take 40% of the step for 5.0% of its MACs (8.0× their share)")
    assert "20.0 GFLOP/s against 150.0 in dense and 1×1 convs" in line
    # 2 FLOPs/byte x 20 GB/s: the roofline allows 40 GFLOP/s; 20 reached is half of it
    assert "at 2.0 FLOPs per byte (ridge 10.0) the roofline calls them memory-bound and allows 40 GFLOP/s; " \
        "they reach 50% of that (their backward takes 1.0× their forward)" in line
    assert line.endswith("the roofline calls 1 of 2 stages memory-bound (stage1).")
    slow = _kind("depthwise_conv", 0.40, 0.05, macs=10**9, nbytes=10**8, ms=100.0, gflops=20.0)
    assert "at 20.0 FLOPs per byte (ridge 10.0) the roofline calls them compute-bound and allows 200 GFLOP/s; " \
        "they reach 10% of that, so the kernels, not the memory system, set their pace" in why("B", [slow, dense], roof)
    none = why("C", [_kind("dense_conv", 0.9, 0.94)], None)
    assert none == "C: no depthwise convs; dense k×k conv takes the most time (90% for 94% of the MACs), and the " \
        "roofline calls no stage memory-bound."


def test_compare_names_a_busy_machine_from_rounds_that_disagree():
    from netprobe.compare import CompareRow, busy_note

    def row(lo, hi, peaks=(0.2, 0.2)):
        return CompareRow("v", "s", 8, 128, 1, 1, 1, imgs_per_s_min=lo, imgs_per_s_max=hi, round_spread=hi / lo,
                          step_spread=1.05, peak_tflops=list(peaks))

    assert busy_note([row(10, 11), row(5, 5.2)]) == ""
    assert "throughput varied between rounds (max/min up to 1.50" in busy_note([row(10, 15), row(5, 5.2)])
    assert "peak moved" in busy_note([row(10, 11), row(5, 5.2, peaks=(0.2, 0.12))])


def test_an_inference_bench_counts_its_step_as_inference_runs():
    """bench --mode infer times the model in eval mode without gradients; its counted step (MAC and byte
    shares of the breakdown) is that forward, not the forward of a train step with a backward thrown away."""
    import torch

    from netprobe.bench import BenchConfig
    from netprobe.bench.measure import counted_step
    from netprobe.target import resolve

    target = resolve("mobilenetv3_small:classes=10")
    steps = {mode: counted_step(target, target.meta_model, BenchConfig(target, device="cpu", mode=mode, batch=2,
                                                                       imgsz=32), (32, 32), torch.float32, 10)
             for mode in ("infer", "train")}
    assert all(not m.bwd for m in steps["infer"].modules.values()) and not steps["infer"].optimizer
    assert any(m.bwd for m in steps["train"].modules.values()) and steps["train"].optimizer
    assert steps["infer"].fwd_macs == steps["train"].fwd_macs > 0 and steps["infer"].bwd_macs == 0
