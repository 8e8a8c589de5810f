"""predict: GPUs as data, the time model's directions (batch, bandwidth, precision), bad input, JSON."""

import csv
import json

import pytest

import netprobe
from netprobe.prediction import Prediction, find_gpus, gpu_table, load_gpu_spec
from netprobe.prediction.gpus import TABLE
from tests.cli_checks import one_error_line

SMALL = "mobilenetv3_small:classes=10"
REQUIRED_GPUS = ("v100", "v100-32", "a100", "a100-80", "t4", "a10", "l4", "rtx3090", "rtx4090", "rtx5090", "h100",
                 "h100-pcie", "h200")


def test_the_gpu_table_loads_and_every_row_says_where_its_figures_come_from():
    table = gpu_table()
    assert set(REQUIRED_GPUS) <= set(table)
    with TABLE.open(newline="") as f:
        for row in csv.DictReader(f):
            assert len(row["source"]) > 20, row["name"]
            for cell in row["unverified"].split():
                assert cell in row, (row["name"], cell)  # an unverified cell names a real column
    assert table["v100"].mem_bytes == 16 * 2**30 and table["v100-32"].mem_bytes == 32 * 2**30
    assert table["v100"].bf16_tflops is None and table["t4"].tf32_tflops is None
    # GeForce: AMP's fp32-accumulate tensor rate is half the fp16-accumulate one, 2x fp32 on a 3090
    assert table["rtx3090"].fp16_tflops == pytest.approx(2 * table["rtx3090"].fp32_tflops, rel=0.01)


def test_amp_off_means_tf32_convolutions_where_the_gpu_has_them():
    a100, v100 = gpu_table()["a100"], gpu_table()["v100"]
    assert a100.conv_peak_tflops("off") == 156 and a100.matmul_peak_tflops("off") == 19.5
    assert v100.conv_peak_tflops("off") == 15.7 and v100.conv_peak_tflops("fp16") == 125


def test_a_prediction_grows_with_the_batch_and_shrinks_with_bandwidth(tmp_path):
    small, large = (netprobe.predict(SMALL, gpu="a100", batch=b, imgsz=128, amp="fp16") for b in (8, 64))
    assert isinstance(small, Prediction) and small.kind == "prediction"
    assert large.step_ms > small.step_ms
    assert large.imgs_per_s > small.imgs_per_s  # launches amortised over more images
    assert large.peak_mem_mb > small.peak_mem_mb
    # the same GPU with twice the bandwidth: an element-wise-heavy net is faster, never slower
    spec = {**{k: v for k, v in vars(gpu_table()["a100"]).items() if k != "unverified"}, "name": "a100x2",
            "generation": "ampere", "geforce": "no"}
    spec["mem_bw_gbs"] *= 2
    path = tmp_path / "a100x2.yaml"
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in spec.items() if v is not None))
    faster = netprobe.predict(SMALL, batch=64, imgsz=128, amp="fp16", gpu_spec=str(path))
    assert faster.step_ms < large.step_ms
    assert load_gpu_spec(str(path)).mem_bw_gbs == 2 * gpu_table()["a100"].mem_bw_gbs


def test_a_rows_memory_is_what_that_gpu_holds_and_an_oom_rows_what_one_with_room_holds(tmp_path):
    from netprobe.counting.memory import CUDA_ALLOWANCE_BYTES
    from netprobe.prediction.memory import count_memory

    model = "resnet18:classes=10"
    count = count_memory(model, 8, 64, amp="fp16")
    mb = {held: (held + CUDA_ALLOWANCE_BYTES) / 2**20 for held in (count.roomy_bytes(), count.needed_bytes())}
    roomy = netprobe.predict(model, gpu="v100", batch=8, imgsz=64, amp="fp16")
    assert roomy.fits and roomy.peak_mem_mb == mb[count.roomy_bytes()] > mb[count.needed_bytes()]

    def on(mem_mib: float) -> Prediction:
        spec = {**{k: v for k, v in vars(gpu_table()["v100"]).items() if k != "unverified"}, "name": "small",
                "mem_gb": mem_mib / 1024}
        path = tmp_path / "small.yaml"
        path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in spec.items() if v is not None))
        return netprobe.predict(model, batch=8, imgsz=64, amp="fp16", gpu_spec=str(path))

    tight = on(mb[count.needed_bytes()])  # the least it needs: it fits, holding no more than the GPU has
    assert tight.fits and tight.peak_mem_mb <= tight.mem_limit_mb < roomy.peak_mem_mb
    oom = on(mb[count.needed_bytes()] - 2)
    assert oom.fits is False and oom.peak_mem_mb == roomy.peak_mem_mb > oom.mem_limit_mb


def test_fp16_is_faster_than_fp32_on_tensor_core_gpus():
    for gpu in ("v100", "a100", "h100"):
        fp32 = netprobe.predict("resnet18:classes=10", gpu=gpu, batch=32, imgsz=160, amp="off")
        fp16 = netprobe.predict("resnet18:classes=10", gpu=gpu, batch=32, imgsz=160, amp="fp16")
        assert fp16.step_ms < fp32.step_ms, gpu


def test_every_gpu_gets_a_row_and_stage_shares_add_up():
    results = netprobe.prediction.predict_all(SMALL, gpu="all", batch=16, imgsz=96, amp="off")
    assert [p.gpu for p in results] == list(gpu_table())
    for p in results:
        assert sum(s.share for s in p.stages) <= 1.0 + 1e-9
        assert {s.bound for s in p.stages} <= {"compute", "memory", "launch"}
        assert [s.name for s in p.stages][:2] == ["stem", "stage1"]


@pytest.mark.slow
def test_json_rows_carry_the_fields_and_say_prediction(cli):
    result = cli("predict", SMALL, "--gpu", "v100,a100", "--batch", "8", "--imgsz", "224",
                                 "--find-max-batch", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["gpu"] for r in rows] == ["v100", "a100"]
    for row in rows:
        for key in ("imgs_per_s", "step_ms", "peak_mem_mb", "fits", "max_batch", "stages", "error_note"):
            assert key in row
        assert row["kind"] == "prediction" and row["fits"] is True and row["max_batch"] > 8
        assert {"name", "fwd_ms", "bwd_ms", "bound", "share"} <= set(row["stages"][0])
    assert rows[1]["max_batch"] > rows[0]["max_batch"]  # 40 GB holds more than 16


def test_a_batch_that_does_not_fit_is_a_result(cli):
    result = cli("predict", "efficientnet_b6", "--gpu", "t4", "--batch", "256", "--imgsz", "512")
    assert result.exit_code == 0, result.output
    assert "OOM" in result.stdout and "PREDICTED" in result.stdout


@pytest.mark.parametrize("args, needle", [
    (["--gpu", "v10"], "did you mean v100"),
    (["--gpu", "v100", "--device", "cpu"], "--device"),
    (["--gpu", "v100", "--amp", "bf16"], "no bf16"),
    (["--gpu", "t4", "--amp", "bf16"], "no bf16"),
    (["--batch", "0"], "batch"),
    (["--imgsz", "99999"], "too large"),
])
def test_bad_input_is_one_line_and_exit_2(cli, args, needle):
    one_error_line(cli("predict", SMALL, *args), needle)


@pytest.mark.parametrize("text, needle", [
    ("name: x\ngeneration: ampere\nsm_count: 10\nmem_gb: 8\nmem_bw_gbs: 400\n", "fp32_tflops"),
    ("name: x\ngeneration: ampere\nsm_count: 10\nmem_gb: lots\nmem_bw_gbs: 400\nfp32_tflops: 10\n", "mem_gb"),
    ("name: x\ngeneration: kepler\nsm_count: 10\nmem_gb: 8\nmem_bw_gbs: 400\nfp32_tflops: 10\n", "generation"),
    ("[1, 2", "not valid YAML"),
])
def test_a_malformed_gpu_spec_names_the_field(cli, tmp_path, text, needle):
    path = tmp_path / "gpu.yaml"
    path.write_text(text)
    one_error_line(cli("predict", SMALL, "--gpu-spec", str(path)), needle)


def test_unknown_gpu_lists_the_known_ones():
    with pytest.raises(netprobe.InputError, match="known: v100"):
        find_gpus("k80")


def test_compare_predict_puts_predicted_columns_beside_the_grid(cli):
    result = cli("compare", "batch-imgsz", "--predict", "v100,a100", "--batch", "2",
                                 "--imgsz", "64,96", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["imgsz"], r["batch"]) for r in rows] == [(64, 2), (96, 2)]
    for row in rows:
        assert row["kind"] == "prediction" and row["v100_fits"] is True
        assert row["a100_imgs_per_s"] > row["v100_imgs_per_s"] > 0
    assert rows[0]["v100_mem_mb"] < rows[1]["v100_mem_mb"]


def test_compare_predict_of_a_paper_cell_says_the_paper_code_ran_mixed_precision(cli):
    result = cli("compare", "batch-imgsz", "--predict", "v100", "--batch", "12", "--imgsz", "512", columns=200)
    assert result.exit_code == 0, result.output
    assert "runtime.mixed_precision=True" in " ".join(result.stdout.split())


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_the_counted_update_is_the_same_ops_as_torch_optimizers(name: str):
    import torch

    from netprobe.counting import count_train
    from netprobe.prediction.counted import optimizer_factory
    from netprobe.target import resolve

    torch_optimizer = {"sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, foreach=False),
                       "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3, foreach=False)}[name]
    model = resolve(SMALL).meta_model()
    for dtype in (torch.float32, torch.float16):
        ours = count_train(model, (2, 3, 64, 64), optimizer=optimizer_factory(name), dtype=dtype)
        theirs = count_train(model, (2, 3, 64, 64), optimizer=torch_optimizer, dtype=dtype)
        assert ours.optimizer == theirs.optimizer and ours.optimizer_ops > 0


# ---- predictions in the results database: kept as predictions, shown beside measurements -------------------

TINY = ("--batch", "2", "--imgsz", "32")


def predicted(cli, db, *gpus: str) -> list[dict]:
    result = cli("predict", SMALL, "--gpu", ",".join(gpus), *TINY, "--db", str(db), "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_prediction_is_stored_as_a_predict_run_and_listed_as_predictions(cli, db):
    from cli_checks import counts

    assert cli("predict", SMALL, "--gpu", "v100", *TINY, "--no-save").exit_code == 0
    assert not db.exists()
    (row,) = predicted(cli, db, "v100")
    assert counts(db) == (1, 1)
    listing = cli("history", "--db", str(db), "--command", "predict", columns=200)
    assert listing.exit_code == 0 and "predict (predictions, not measured)" in listing.stdout
    shown = cli("history", "show", "1", "--db", str(db), "--format", "json")
    (stored,) = json.loads(shown.stdout)["results"]
    assert stored["data"]["kind"] == "prediction" and stored["data"]["imgs_per_s"] == row["imgs_per_s"]
    assert "(predicted)" in stored["label"]
    # nothing a reader of measurements reads: no speed, no chart
    report = json.loads(cli("report", "--db", str(db), "--format", "json").stdout)
    assert report["runs"] == 1 and report["speeds"] == [] and "fused_stages" not in report


def test_the_report_shows_the_prediction_beside_a_measurement_on_that_gpu(cli, db, tmp_path):
    from netprobe.history.record import record, run_document

    bench = cli("bench", SMALL, "--device", "cpu", *TINY, "--warmup", "0", "--iters", "1", "--db", str(db),
                "--format", "json")
    assert bench.exit_code == 0, bench.output
    cpu_run = json.loads(bench.stdout)
    # the same run as a V100 machine would have recorded it (no GPU here): its machine and device the only change
    v100 = {**cpu_run, "device": {**cpu_run["device"], "device": "cuda", "name": "Tesla V100-SXM2-16GB"},
            "results": [{**r, "device": "cuda"} for r in cpu_run["results"]]}
    server = {"cpu": "Server CPU Xeon", "cpus": 64, "usable_cores": 64, "memory_mb": 512_000, "arch": "x86_64",
              "board": "", "gpus": ["Tesla V100-SXM2-16GB"], "driver": "535", "os": "Linux", "python": "3.11.7"}
    record(db, run_document(v100, ["netprobe", "bench", SMALL, "--device", "cuda"], facts=server))
    by_gpu = {p["gpu"]: p for p in predicted(cli, db, "v100", "a100")}
    data = json.loads(cli("report", "--db", str(db), "--format", "json").stdout)
    speeds = {s["machine"].split(" [")[0]: s for s in data["speeds"]}
    assert len(data["speeds"]) == 2  # the two measurements; the predictions are no rows of their own
    cuda, cpu = speeds["Tesla V100-SXM2-16GB"], speeds[cpu_run["device"]["name"]]
    assert cuda["imgs_per_s"] == cpu["imgs_per_s"] == cpu_run["results"][0]["imgs_per_s"]  # measured, as measured
    assert cuda["predicted_imgs_per_s"] == by_gpu["v100"]["imgs_per_s"]  # the V100's, not the A100's
    assert cuda["predicted_error"].startswith("V100 SXM2 16GB: ±") and "predicted_imgs_per_s" not in cpu
    md = cli("report", "--db", str(db), "--format", "markdown").stdout
    assert "imgs/s PREDICTED" in md and "a prediction, not a measurement" in md and "held-out" in md
    page = tmp_path / "r.html"
    assert cli("report", "--db", str(db), "--html", str(page)).exit_code == 0
    assert "imgs/s PREDICTED" in page.read_text()


def test_a_machines_cpu_and_cuda_runs_of_one_spec_are_two_rows_of_the_report(cli, db):
    from netprobe.history.record import record, run_document

    bench = cli("bench", SMALL, "--device", "cpu", *TINY, "--warmup", "0", "--iters", "1", "--db", str(db),
                "--format", "json")
    assert bench.exit_code == 0, bench.output
    cpu_run = json.loads(bench.stdout)
    # the same machine measuring the same step on its GPU, ten times faster (no GPU here: recorded as it would be)
    cuda_run = {**cpu_run, "device": {**cpu_run["device"], "device": "cuda", "name": "Tesla V100-SXM2-16GB"},
                "results": [{**r, "device": "cuda", "imgs_per_s": 10 * r["imgs_per_s"]} for r in cpu_run["results"]]}
    record(db, run_document(cuda_run, ["netprobe", "bench", SMALL, "--device", "cuda"]))
    predicted(cli, db, "v100")
    speeds = json.loads(cli("report", "--db", str(db), "--format", "json").stdout)["speeds"]
    assert len({s["machine_id"] for s in speeds}) == 1 and len(speeds) == 2  # one machine, two devices
    by_device = {s["device"]: s for s in speeds}
    measured = cpu_run["results"][0]["imgs_per_s"]
    assert by_device["cpu"]["imgs_per_s"] == measured and by_device["cuda"]["imgs_per_s"] == 10 * measured
    assert by_device["cuda"]["machine"].startswith("Tesla V100-SXM2-16GB [")
    assert by_device["cpu"]["machine"].startswith(cpu_run["device"]["name"] + " [")
    assert "predicted_imgs_per_s" in by_device["cuda"] and "predicted_imgs_per_s" not in by_device["cpu"]


def test_the_report_shows_a_prediction_for_this_cpu_beside_its_measurement(cli, db):
    bench = cli("bench", SMALL, "--device", "cpu", *TINY, "--warmup", "0", "--iters", "1", "--db", str(db),
                "--format", "json")
    assert bench.exit_code == 0, bench.output
    here = cli("predict", SMALL, "--device", "cpu", *TINY, "--db", str(db), "--format", "json")
    assert here.exit_code == 0, here.output
    (speed,) = json.loads(cli("report", "--db", str(db), "--format", "json").stdout)["speeds"]
    assert speed["imgs_per_s"] == json.loads(bench.stdout)["results"][0]["imgs_per_s"]  # measured, as measured
    assert speed["predicted_imgs_per_s"] == json.loads(here.stdout)[0]["imgs_per_s"]
    assert speed["predicted_error"].startswith("this CPU: ")


def test_a_prediction_run_survives_export_and_import(cli, db, tmp_path):
    predicted(cli, db, "t4")
    exported, other = tmp_path / "runs.json", tmp_path / "other.sqlite"
    assert cli("history", "export", str(exported), "--db", str(db)).exit_code == 0
    assert cli("history", "import", str(exported), "--db", str(other)).exit_code == 0
    original, imported = (json.loads(cli("history", "show", "1", "--db", str(path), "--format", "json").stdout)
                          for path in (db, other))
    assert imported["command"] == "predict" and imported["results"] == original["results"]
    assert imported["results"][0]["data"]["kind"] == "prediction"


@pytest.mark.parametrize("change,field", [
    (lambda run: run["results"][0]["data"].pop("kind"), "data.kind"),  # a predict row that does not say so
    (lambda run: run.update(command="bench"), "data.kind"),  # a prediction passed off as a measurement
    (lambda run: run["results"][0]["data"].update(imgs_per_s="fast"), "data.imgs_per_s"),
])
def test_import_refuses_a_prediction_that_is_not_kept_as_one(cli, db, tmp_path, change, field):
    predicted(cli, db, "t4")
    exported = tmp_path / "runs.json"
    assert cli("history", "export", str(exported), "--db", str(db)).exit_code == 0
    data = json.loads(exported.read_text())
    change(data["runs"][0])
    exported.write_text(json.dumps(data))
    one_error_line(cli("history", "import", str(exported), "--db", str(tmp_path / "other.sqlite")), field)


@pytest.mark.slow
def test_any_field_of_a_prediction_set_to_null_or_text_imports_and_reads_or_is_one_line(cli, db, tmp_path):
    """As tests/test_history_hostile.py's sweep, over a predict run's own fields: the readers that know
    predictions (history show, the report's predicted column) read whatever the schema lets in."""
    predicted(cli, db, "v100")
    exported = tmp_path / "runs.json"
    assert cli("history", "export", str(exported), "--db", str(db)).exit_code == 0
    good = json.loads(exported.read_text())
    failed = []
    for key in sorted(good["runs"][0]["results"][0]["data"]):
        for value in (None, "x", -1):
            changed = json.loads(json.dumps(good))
            changed["runs"][0]["results"][0]["data"][key] = value
            exported.write_text(json.dumps(changed))
            target = tmp_path / "t.sqlite"
            target.unlink(missing_ok=True)
            result = cli("history", "import", str(exported), "--db", str(target))
            if result.exit_code != 0:
                one_error_line(result, "nothing was imported")
                continue
            for args in (["history", "show", "1"], ["report", "--format", "markdown"], ["history", "--format", "json"]):
                done = cli(*args, "--db", str(target))
                if done.exit_code != 0:
                    failed.append((key, value, args, done.output[-200:]))
    assert not failed, failed


def test_a_batch_norm_with_one_value_per_channel_is_one_line(cli):
    from cli_checks import one_error_line

    one_error_line(cli("predict", "resnet18", "--batch", "1", "--imgsz", "32", "--gpu", "v100", "--no-save"),
                   "resnet18 at batch 1 and 32 px: a batch norm sees one value per channel")
