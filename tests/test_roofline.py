"""The roofline per stage: both roofs, per-layer roofline time summed per stage, bounds, families, the plot."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

import netprobe
from netprobe.counting import count_train
from netprobe.roofline import plot_roofline, roofline, stage_families
from netprobe.timing import memory_bandwidth_gbs


def dense_then_depthwise() -> nn.Module:
    return nn.Sequential(OrderedDict(
        a=nn.Conv2d(3, 64, 3, padding=1, bias=False),
        b=nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False),
    )).to("meta")


def test_a_dense_stage_is_compute_bound_and_a_depthwise_one_memory_bound():
    model = dense_then_depthwise()
    tc = count_train(model, (4, 3, 32, 32))
    roof = roofline(tc, peak_tflops=1.0, bandwidth_gbs=100.0, dtype="fp32", measured_ms={"a": 1.0, "b": 2.0})
    assert roof.ridge == pytest.approx(10.0)  # FLOPs per byte where 1 TFLOP/s meets 100 GB/s
    a, b = roof.stages
    assert (a.name, b.name) == ("a", "b")
    assert a.macs == 2 * 4 * 64 * 32 * 32 * 27  # forward and grad weight (no grad input: the image needs none)
    assert b.macs == 3 * 4 * 64 * 32 * 32 * 9
    # bytes at fp32: forward x + w + out; backward grad_out + x -> grad_w (a); grad_out + w + x -> grad_in + grad_w (b)
    assert a.bytes == 4 * ((12288 + 1728 + 262144) + (262144 + 12288 + 1728))
    assert b.bytes == 4 * ((262144 + 576 + 262144) + (262144 + 576 + 262144 + 262144 + 576))
    assert a.intensity == pytest.approx(2 * a.macs / a.bytes) and a.intensity > roof.ridge > b.intensity
    assert (a.bound, b.bound) == ("compute", "memory")
    assert a.predicted_ms == pytest.approx(2 * a.macs / 1e12 * 1e3)
    assert b.predicted_ms == pytest.approx(b.bytes / 100e9 * 1e3)
    assert b.memory_share == 1.0 and a.memory_share == 0.0
    assert b.measured_ms == 2.0 and b.achieved_gflops == pytest.approx(2 * b.macs / 2e-3 / 1e9)
    data = roof.to_dict()
    assert data["stages"][1]["bound"] == "memory" and data["ridge"] == pytest.approx(10.0)
    assert set(data) >= {"peak_tflops", "bandwidth_gbs", "dtype", "stages"}


def test_bandwidth_is_measured_once_per_run():
    first = memory_bandwidth_gbs("cpu", torch.float32)
    assert 0.1 < first < 10_000
    assert memory_bandwidth_gbs("cpu", torch.float32) == first


def test_families_from_the_table_or_from_the_convs():
    model = netprobe.build("efficientnet_b0:fused=1-3", device="meta")
    tc = count_train(model, (2, 3, 64, 64))
    families = stage_families(model, tc)
    assert [families[f"stage{i}"] for i in range(1, 8)] == ["Fused-MBConv"] * 3 + ["MBConv"] * 4
    foreign = dense_then_depthwise()
    assert stage_families(foreign, count_train(foreign, (2, 3, 8, 8))) == {"a": "dense", "b": "depthwise"}


def test_plot_has_one_panel_per_variant(tmp_path):
    pytest.importorskip("matplotlib")
    model = dense_then_depthwise()
    tc = count_train(model, (4, 3, 32, 32))
    families = stage_families(model, tc)
    panels = [(label, roofline(tc, 1.0, 100.0, "fp32", measured_ms={"a": ms, "b": 2 * ms}, families=families))
              for label, ms in (("one", 1.0), ("two", 0.5))]
    path = tmp_path / "roof.png"
    plot_roofline(panels, str(path), title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
