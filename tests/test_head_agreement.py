"""A detector's drift per head (P3, P4, P5): of the candidates either model keeps before NMS, the share both
keep with the same class. The layout is read from the head's input maps; the measure is exact on outputs
built by hand; and through the CLI an INT8 ONNX Runtime export of a detector whose scores spread moves it."""

from __future__ import annotations

import json

import pytest
import torch

from netprobe.detect.scores import detection_head, watch_heads
from netprobe.runtimes.drift import HEAD_AGREEMENT_MIN, SCORE_THRESHOLD, measure_drift
from netprobe.runtimes.parity import parity_input, unit_scale_copy
from netprobe.target import resolve

CLI_COLUMNS = 160
SIZE = 64  # P3 8x8, P4 4x4, P5 2x2 cells


@pytest.fixture(scope="module")
def decoded():
    """Per detector: its decoded output on a batch of 2 and the score layout the forward filled in (built
    once: building a detector takes seconds)."""
    found = {}
    for spec in ("yolov8n:nc=3", "yolov5n:nc=3"):
        model = resolve(spec).real_model().eval()
        with torch.inference_mode(), watch_heads(model) as layout:
            found[spec] = (model(torch.zeros(2, 3, SIZE, SIZE)), layout)
    return found


@pytest.mark.parametrize(("spec", "per_cell", "shape"), [
    ("yolov8n:nc=3", 1, (2, 4 + 3, 84)),  # anchor-free: (B, 4 + nc, anchors)
    ("yolov5n:nc=3", 3, (2, 3 * 84, 5 + 3)),  # three anchors per cell: (B, anchors, 5 + nc)
])
def test_the_layout_is_read_from_the_head_input_maps(decoded, spec, per_cell, shape):
    out, layout = decoded[spec]
    assert tuple(out.shape) == shape
    assert [(h.name, h.stop - h.start) for h in layout.heads] == [("P3", 64 * per_cell), ("P4", 16 * per_cell),
                                                                     ("P5", 4 * per_cell)]
    assert layout.heads[-1].stop == out.shape[2 if per_cell == 1 else 1]
    assert layout.confidences(out).shape == (2, 84 * per_cell, 3)


def test_a_classifier_has_no_detection_head():
    model = resolve("mobilenetv3_small").real_model()
    assert detection_head(model) is None
    with watch_heads(model) as layout:
        assert layout is None


def _yolov8_scores(scores: torch.Tensor) -> torch.Tensor:
    """A decoded YOLOv8 output (1, 4 + nc, anchors) with these class scores (anchors, nc) and zero boxes."""
    return torch.cat([torch.zeros(4, scores.shape[0]), scores.T]).unsqueeze(0)


def test_head_agreement_counts_candidates_kept_by_both_with_the_same_class(decoded):
    layout = decoded["yolov8n:nc=3"][1]
    fp32 = torch.full((84, 3), 0.01)
    fp32[:10, 0] = 0.9  # P3: 10 candidates of class 0
    fp32[64:68, 1] = 0.8  # P4: 4 candidates of class 1; P5: none
    moved = fp32.clone()
    moved[:2, 0], moved[2, 2] = 0.1, 0.95  # P3: 2 dropped, 1 changes class
    moved[12:14, 2] = 0.5  # P3: 2 new candidates
    drift = measure_drift([[_yolov8_scores(fp32)]], [[_yolov8_scores(moved)]], layout)
    assert drift.head_candidates == {"P3": 12, "P4": 4, "P5": 0}
    assert drift.head_agreement == {"P3": 7 / 12, "P4": 1.0, "P5": None}
    assert drift.heads_drifted == ["P3"] and drift.drifted and drift.cosine_min > 0.5
    same = measure_drift([[_yolov8_scores(fp32)]], [[_yolov8_scores(fp32)]], layout)
    assert same.head_agreement == {"P3": 1.0, "P4": 1.0, "P5": None} and not same.drifted


def test_objectness_multiplies_the_class_scores_of_anchor_based_heads(decoded):
    layout = decoded["yolov5n:nc=3"][1]
    out = torch.zeros(1, 252, 8)
    out[0, :5, 5] = 0.9  # class 0 scores 0.9 ...
    out[0, :5, 4] = torch.tensor([0.9, 0.9, 0.9, 0.2, 0.2])  # ... but only 3 objectness high enough to keep
    dimmed = out.clone()
    dimmed[0, :5, 4] = 0.2
    drift = measure_drift([[out]], [[dimmed]], layout)
    assert drift.head_candidates["P3"] == 3 and drift.head_agreement["P3"] == 0.0
    assert 0.9 * 0.2 < SCORE_THRESHOLD <= 0.9 * 0.9


def _spread_weights(spec: str, path) -> None:
    """A random detector (fixed seed) whose class scores spread around the threshold: activations of unit
    scale, the class convs scaled down and biased so that about half the anchors are candidates."""
    model = unit_scale_copy(resolve(spec).real_model(), parity_input((2, 3, SIZE, SIZE), "cpu"))
    with torch.no_grad():
        for branch in detection_head(model).cv3:
            branch[-1].weight.mul_(0.3)
            branch[-1].bias.fill_(-1.5)
    torch.save(model.state_dict(), path)


@pytest.mark.slow  # exports and quantizes
def test_int8_detector_rows_carry_each_heads_agreement(cli, tmp_path):
    pytest.importorskip("onnxruntime")
    weights = tmp_path / "spread.pt"
    _spread_weights("yolov8n:nc=3", weights)
    result = cli("bench", "yolov8n:nc=3", "--weights", weights, "--runtime", "onnxruntime", "--precision",
                 "fp32,int8", "--device", "cpu", "--batch", "2", "--imgsz", SIZE, "--iters", "1", "--warmup", "0",
                 "--max-warmup-s", "1", "--no-save", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {r["precision"]: r for r in json.loads(result.stdout)["results"] if r["runtime"] == "onnxruntime"}
    fp32, int8 = rows["fp32"], rows["int8"]
    assert list(fp32["head_agreement"]) == list(int8["head_agreement"]) == ["P3", "P4", "P5"]
    assert all(n > 0 for n in fp32["head_candidates"].values())  # the scores spread: candidates in every head
    assert all(v >= HEAD_AGREEMENT_MIN for v in fp32["head_agreement"].values()) and fp32["status"] == "ok"
    assert min(int8["head_agreement"].values()) < max(fp32["head_agreement"].values())  # the measure moves
    if min(int8["head_agreement"].values()) < HEAD_AGREEMENT_MIN:
        assert int8["status"] == "drift" and "head agreement P3" in int8["error"]
    untrained = cli("bench", "yolov8n:nc=3", "--runtime", "onnxruntime", "--precision", "int8", "--device", "cpu",
                    "--batch", "2", "--imgsz", SIZE, "--iters", "1", "--warmup", "0", "--max-warmup-s", "1",
                    "--no-save", "--format", "markdown")
    assert untrained.exit_code == 0, untrained.output
    assert "Head agree" in untrained.stdout and "meaningful only with --weights" in untrained.stdout
    assert "head agreement P3 -, P4 -, P5 - (candidates P3 0, P4 0, P5 0)" in untrained.stdout  # at the prior
    assert "; drift:" not in untrained.stdout  # not judged without --weights
