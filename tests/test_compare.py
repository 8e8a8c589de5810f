"""compare: the paper's variants, interleaved rounds, and the figures beside ours."""

import pytest

import netprobe.compare


def test_fused_stage_variants_are_the_papers_table3_rows():
    variants = netprobe.compare.fused_stage_variants("efficientnet_b4", "keep", 8, 128)
    assert [v.label for v in variants] == ["No fused", "Fused stage1-3", "Fused stage1-5", "Fused stage1-7"]
    assert [v.spec for v in variants] == ["efficientnet_b4:fused=none", "efficientnet_b4:fused=1-3",
                                          "efficientnet_b4:fused=1-5", "efficientnet_b4:fused=1-7"]
    assert variants[1].paper["v100_imgs_per_s"] == 216
    rows = [netprobe.compare.count_variant(v) for v in variants]
    netprobe.compare.relate_rows(rows)
    # With each stage's own kernel the paper's 1-5 and 1-7 parameter counts are met within 1%...
    assert abs(rows[2].deviation["params"]) < 0.01 and abs(rows[3].deviation["params"]) < 0.01
    assert rows[0].macs_base == 4_393_771_024  # counted at B4's own 380 px
    # ...while its 1-3 count fits a 3x3 kernel in the 5x5 stage.
    k3 = netprobe.compare.count_variant(netprobe.compare.fused_stage_variants("efficientnet_b4", "3", 8, 128)[1])
    assert abs(k3.params / 1e6 / 20.0 - 1) < 0.01 < abs(rows[1].deviation["params"])


def test_a_base_other_than_b4_has_no_paper_figures():
    variants = netprobe.compare.fused_stage_variants("efficientnetv2_s", "keep", 8, 128)
    assert [v.label for v in variants] == ["No fused", "Fused stage1-3", "Fused stage1-5"]  # 6 stages only
    assert all(v.paper is None for v in variants)


def test_batch_imgsz_grid_carries_the_v100_figures_and_its_oom():
    variants = netprobe.compare.batch_imgsz_variants("efficientnet_b6", [12, 24], [380, 512])
    papers = {(v.imgsz, v.batch): v.paper for v in variants}  # sizes held as (H, W)
    assert papers[((380, 380), 24)]["v100_imgs_per_s"] == 52
    assert papers[((512, 512), 24)]["v100_oom"] is True


@pytest.mark.slow
def test_variants_run_interleaved_in_rounds_and_keep_their_rows():
    order = []
    variants = netprobe.compare.spec_variants(["mobilenetv3_small:classes=10", "efficientnet_b0:classes=10"], 2, 64)
    settings = netprobe.compare.Settings("cpu", 2, 64, warmup=0, iters=1, rounds=2)
    comparison = netprobe.compare.run(variants, settings, lambda label, r: order.append((r, label)))
    assert [label for _, label in order] == [v.label for v in variants] * 2  # A B, A B
    rows = comparison.rows
    assert comparison.finished == 2 and all(r.rounds == 2 for r in rows)
    assert rows[0].speedup == 1.0 and rows[1].speedup == pytest.approx(rows[1].train_imgs_per_s /
                                                                        rows[0].train_imgs_per_s)
    assert rows[0].imgs_per_s_min <= rows[0].train_imgs_per_s <= rows[0].imgs_per_s_max


def test_defaults_follow_the_device():
    cuda = netprobe.compare.default_settings("cuda", (380, 380), None, None, None, None)
    assert (cuda.batch, cuda.imgsz) == (24, (380, 380))  # sizes are held as (H, W)
    cpu = netprobe.compare.default_settings("cpu", (380, 380), None, None, None, None)
    assert (cpu.batch, cpu.imgsz) == (8, (128, 128))


def test_the_kernel_hint_names_a_variant_once_however_many_runtimes_ran_it():
    from netprobe.compare import CompareRow, paper_kernel_hint

    rows = [CompareRow("Fused stage1-3", "efficientnet_b4:fused=1-3", 2, 40, 0, 0, 0, runtime=runtime,
                       paper={"macs_b": 7.5}, deviation={"macs": 0.286})
            for runtime in ("torch", "onnxruntime", "openvino")]
    hint = paper_kernel_hint(rows)
    assert hint is not None and hint.count("Fused stage1-3 is +28.6%") == 1, hint
