"""The results database: every run recorded with its machine, listed, shown, removed, exported and
imported; a file of the previous schema upgraded; parallel writers; and every way the file can be bad."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_checks import counts, one_error_line

import netprobe.bench.runs  # where bench's runs call benchmark: patched there
import netprobe.history
from netprobe.bench import BenchConfig, BenchResult
from netprobe.history import store, tables
from netprobe.history.record import machine_id, record, run_document

TINY_BENCH = ["bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "32",
              "--warmup", "0", "--iters", "1"]
FACTS = {"cpu": "Test CPU 9000", "cpus": 8, "usable_cores": 8, "memory_mb": 32_000, "arch": "x86_64", "board": "",
         "gpus": [], "driver": "", "os": "Linux-test", "python": "3.11.7"}



def fake_benchmark(config, on_step=None, on_status=None):
    """A bench result without the measurement (these tests are about where results go)."""
    label = getattr(config.spec, "label", config.spec)
    return BenchResult(label, "cpu", "fp32", config.batch, 32, config.mode, "ok", imgs_per_s=10.0 * config.batch,
                         step_ms=100.0, step_p10_ms=99.0, step_p90_ms=101.0, macs_per_img=5_000_000, params=1_000,
                         peak_tflops=0.1, tflops=0.01, optimizer="sgd", iters=1)


def bench_envelope(*specs: str, imgs: float = 20.0) -> dict:
    results = [fake_benchmark(BenchConfig(s, batch=2)).to_dict() | {"imgs_per_s": imgs} for s in specs]
    return {"device": {"device": "cpu", "torch": "2.13.0+cpu", "threads": 2, "name": "Test CPU 9000",
                       "peak_tflops_measured": {"fp32": 0.1}}, "results": results, "note": None}


def keep(path: Path, *specs: str, facts: dict = FACTS, **kw) -> int:
    return record(path, run_document(bench_envelope(*specs, **kw), ["netprobe", "bench", *specs], facts=facts))


@pytest.fixture
def fake_bench(monkeypatch):
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", fake_benchmark)


# ---- recording ------------------------------------------------------------------------------------

def test_the_tests_database_is_a_temporary_one():
    assert store.default_path() == Path(os.environ["NETPROBE_DB"])
    assert "netprobe-test-db-" in os.environ["NETPROBE_DB"]


@pytest.mark.parametrize(("env", "expected"), [
    ({}, "~/.local/share/netprobe/results.sqlite"),
    ({"XDG_DATA_HOME": "/xdg"}, "/xdg/netprobe/results.sqlite"),
])
@pytest.mark.skipif(sys.platform != "linux", reason="the Linux folders; platformdirs decides elsewhere")
def test_the_default_database_is_in_the_platforms_user_data_folder(monkeypatch, env, expected):
    for name in ("NETPROBE_DB", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert store.default_path() == Path(expected).expanduser()


def test_the_database_and_the_cache_follow_one_platform_rule(monkeypatch):
    """Both folders come from platformdirs (data and cache), so macOS and Windows users find them together."""
    import platformdirs

    from netprobe.cache import cache_dir

    for name in ("NETPROBE_DB", "NETPROBE_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert store.default_path().parent == platformdirs.user_data_path("netprobe", appauthor=False)
    assert cache_dir() == platformdirs.user_cache_path("netprobe", appauthor=False)


def test_bench_records_the_run_its_machine_and_every_row(cli, db, fake_bench):
    result = cli(*TINY_BENCH, "--batch", "2,4", "--db", str(db))
    assert result.exit_code == 0, result.output
    with netprobe.history.open(db) as h:
        (r,) = h.runs()
        doc = h.run(r.id)
        rows = h.results(with_data=True)
    assert r.command == "bench" and r.n_results == 2 and r.device == "cpu"
    assert doc["argv"] == ["netprobe", *TINY_BENCH, "--batch", "2,4", "--db", str(db)]
    assert doc["machine"]["cpu"] and doc["machine"]["memory_mb"] > 0 and doc["machine"]["cpus"] >= 1
    assert doc["machine"]["machine_id"] == r.machine_id == machine_id(doc["machine"])
    assert doc["device"]["torch"].startswith("2.") and doc["device"]["threads"] >= 1
    assert doc["peak_tflops"] == {"fp32": 0.1} and doc["netprobe"] == netprobe.__version__
    assert [(x.batch, x.imgs_per_s) for x in rows] == [(2, 20.0), (4, 40.0)]
    assert rows[0].canonical == netprobe.parse_spec("mobilenetv3_small:classes=10").canonical  # re-runs exactly
    assert rows[0].data["step_p90_ms"] == 101.0  # the whole row as printed is kept


def test_no_save_records_nothing_and_db_picks_the_file(cli, db, fake_bench):
    assert cli(*TINY_BENCH, "--no-save", "--db", str(db)).exit_code == 2  # contradictory
    assert cli(*TINY_BENCH, "--no-save").exit_code == 0
    assert not db.exists()
    assert cli(*TINY_BENCH, "--db", str(db)).exit_code == 0
    assert counts(db) == (1, 1)


def test_summary_is_recorded_only_with_save(cli, db):
    assert cli("summary", "mobilenetv3_small", "--imgsz", "64", "--db", str(db)).exit_code == 2  # --db needs --save
    result = cli("summary", "mobilenetv3_small", "--imgsz", "64", "--save", "--db", str(db), "--format", "json")
    assert result.exit_code == 0, result.output
    (row,) = netprobe.history.open(db).results()
    assert (row.command, row.mode, row.batch, row.imgsz, row.params) == ("summary", "count", 1, "64", 2_542_856)
    assert row.canonical == json.loads(result.stdout)["canonical"] and row.macs == json.loads(result.stdout)["macs"]


def test_an_interrupted_bench_records_the_rows_that_finished(cli, db, monkeypatch):
    seen = []

    def stop_on_second(config, on_step=None, on_status=None):
        if seen:
            raise KeyboardInterrupt
        seen.append(config)
        return fake_benchmark(config)

    monkeypatch.setattr(netprobe.bench.runs, "benchmark", stop_on_second)
    result = cli(*TINY_BENCH, "--batch", "2,3,4", "--db", str(db))
    assert result.exit_code == 130
    assert counts(db) == (1, 1)


@pytest.mark.slow
def test_the_ranks_rows_of_a_data_parallel_run_are_recorded_once(db):
    rows = [{"label": "efficientnet_b0", "spec": "efficientnet_b0", "device": "cpu", "world_size": n, "ddp": n > 1,
             "backend": "gloo", "batch_per_rank": 4, "global_batch": 4 * n, "imgsz": 96, "dtype": "fp32",
             "status": "ok", "imgs_per_s": 10.0 * n, "step_ms": 400.0, "iters": 2} for n in (1, 2)]
    doc = run_document({"rows": rows}, ["netprobe", "bench", "--nproc", "2"], "bench",
                       device={"device": "cpu", "name": "Test CPU 9000", "threads": 1}, facts=FACTS)
    assert doc["experiment"] == "data-parallel" and doc["command"] == "bench"
    record(db, doc)
    got = netprobe.history.open(db).results()
    assert [(r.label, r.batch, r.imgs_per_s) for r in got] == [("efficientnet_b0 ×1 no DDP", 4, 10.0),
                                                                ("efficientnet_b0 ×2 DDP", 8, 20.0)]


# ---- bad databases: one line, exit 2 ----------------------------------------------------------------

def never_measured(*a, **k):
    pytest.fail("measured before checking --db")


def test_a_file_that_is_not_sqlite_is_refused_before_any_work(cli, db, monkeypatch):
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", never_measured)
    db.write_text("these are my notes, not a database\n" * 20)
    one_error_line(cli(*TINY_BENCH, "--db", str(db)), "is not a netprobe results database")
    assert db.read_text().startswith("these are my notes")  # untouched


def test_another_programs_sqlite_file_is_refused(cli, db, monkeypatch):
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", never_measured)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE contacts (name TEXT)")
    one_error_line(cli(*TINY_BENCH, "--db", str(db)), "an SQLite file of another program (tables: contacts)")


def test_a_newer_schema_is_refused(cli, db, monkeypatch):
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", never_measured)
    keep(db, "a")
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION + 1}")
    one_error_line(cli(*TINY_BENCH, "--db", str(db)), f"has schema version {store.SCHEMA_VERSION + 1}, newer")
    one_error_line(cli("history", "--db", str(db)), "upgrade netprobe")


def make_read_only(path: Path) -> None:
    """Root writes to any file whatever its mode, so as root the file is made immutable instead."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a file read-only for root here (chattr: {done.stderr.decode().strip()})")


@pytest.mark.slow
def test_a_read_only_database_is_refused_before_any_work_and_still_listed(cli, db, monkeypatch):
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", never_measured)
    keep(db, "a")
    make_read_only(db)
    try:
        one_error_line(cli(*TINY_BENCH, "--db", str(db)), "attempt to write a readonly database")
        listed = cli("history", "--db", str(db), "--format", "json")
        assert listed.exit_code == 0 and json.loads(listed.stdout)["total"] == 1  # reading needs no writing
    finally:
        subprocess.run(["chattr", "-i", str(db)], capture_output=True)
        db.chmod(0o644)


def test_a_damaged_database_is_one_line_too(cli, db):
    for i in range(30):
        keep(db, f"spec{i}", "x" * 10)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    damaged = bytearray(db.read_bytes())
    for page in range(2 * 4096, len(damaged), 4096):  # every page's header after the first two
        damaged[page:page + 8] = b"\xff" * 8
    db.write_bytes(bytes(damaged))
    for args in (["history"], ["report", "--format", "json"], ["history", "export", str(db.parent / "x.json")]):
        one_error_line(cli(*args, "--db", str(db)), "database disk image is malformed")


@pytest.mark.parametrize(("where", "needle"), [("missing/r.sqlite", "does not exist"), (".", "is a folder")])
def test_a_db_path_that_cannot_be_a_file_is_refused(cli, tmp_path, monkeypatch, where, needle):
    monkeypatch.setattr(netprobe.bench.runs, "benchmark", never_measured)
    one_error_line(cli(*TINY_BENCH, "--db", str(tmp_path / where)), needle)


def fill_the_disk(monkeypatch) -> None:
    """The disk fills up while the run is being written: its rows are in, the commit never comes."""
    import netprobe.history.record

    real = netprobe.history.record.insert_run

    def full(conn, doc):
        real(conn, doc)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(netprobe.history.record, "insert_run", full)


def test_a_full_disk_prints_and_writes_the_results_then_one_error_line(cli, db, tmp_path, fake_bench, monkeypatch):
    keep(db, "a")
    fill_the_disk(monkeypatch)
    out = tmp_path / "r.json"
    result = cli(*TINY_BENCH, "--batch", "2,4", "--db", str(db), "--format", "json", "--out", str(out))
    assert result.exit_code == 2
    assert [r["batch"] for r in json.loads(result.stdout)["results"]] == [2, 4]  # printed first
    assert [r["batch"] for r in json.loads(out.read_text())["results"]] == [2, 4]  # and written
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: the run was not recorded: cannot write to the results database") and \
        "database or disk is full" in line and line.endswith("its results were printed above")
    assert counts(db) == (1, 1)  # nothing half-written


def test_a_run_that_fails_mid_recording_leaves_nothing(db, monkeypatch):
    keep(db, "a")
    real = tables.result_values
    calls = []

    def breaks_on_the_third_row(doc, result):
        calls.append(result)
        if len(calls) == 3:
            raise RuntimeError("the machine went away")
        return real(doc, result)

    monkeypatch.setattr(tables, "result_values", breaks_on_the_third_row)
    with pytest.raises(RuntimeError):
        keep(db, "b", "c", "d", "e")
    assert counts(db) == (1, 1)


@pytest.mark.slow
def test_a_run_killed_inside_its_transaction_leaves_nothing(db):
    keep(db, "a")
    script = textwrap.dedent(f"""
        import os, signal
        from netprobe.history.record import record, run_document
        from netprobe.history.tables import insert_run as real
        def insert_then_die(conn, doc):
            real(conn, doc)  # the run and its rows are written, not committed
            os.kill(os.getpid(), signal.SIGKILL)
        import netprobe.history.record
        netprobe.history.record.insert_run = insert_then_die
        env = {{"results": [{{"spec": "x", "status": "ok", "mode": "train", "batch": 2}}] * 5, "device": {{}}}}
        record({str(db)!r}, run_document(env, ["netprobe", "bench"], facts={FACTS!r}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert counts(db) == (1, 1)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


WRITER = """
import sys
from netprobe.history.record import record, run_document
path, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
facts = {"cpu": name, "cpus": 2, "memory_mb": 1024, "arch": "x", "board": "", "gpus": []}
for i in range(n):
    env = {"results": [{"spec": f"{name}-{i}-{j}", "status": "ok", "mode": "train", "batch": 2, "imgs_per_s": 1.0}
                       for j in range(5)], "device": {"device": "cpu"}}
    record(path, run_document(env, ["netprobe", "bench"], facts=facts))
"""


@pytest.mark.slow
def test_parallel_writers_keep_every_run(db):
    keep(db, "first")  # the file exists: both writers start on the same schema
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), name, "30"], stderr=subprocess.PIPE, text=True)
             for name in ("rank0", "rank1")]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    assert counts(db) == (61, 301)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        specs = {r[0] for r in conn.execute("SELECT spec FROM results")}
    assert {f"rank{k}-{i}-{j}" for k in (0, 1) for i in range(30) for j in range(5)} <= specs


# ---- migration ------------------------------------------------------------------------------------

V1_AS_RELEASED = """
CREATE TABLE machines (machine_id TEXT PRIMARY KEY, cpu TEXT, cpus INTEGER, memory_mb INTEGER, arch TEXT,
    board TEXT, gpus TEXT, fingerprint TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY, run_uid TEXT NOT NULL UNIQUE, created TEXT NOT NULL, duration_s REAL,
    command TEXT NOT NULL, experiment TEXT, argv TEXT NOT NULL,
    machine_id TEXT NOT NULL REFERENCES machines(machine_id), device TEXT, device_name TEXT,
    device_memory_mb INTEGER, threads INTEGER, usable_cores INTEGER, netprobe TEXT, torch TEXT, cuda TEXT,
    cudnn TEXT, python TEXT, os TEXT, driver TEXT, peak_tflops TEXT, bandwidth_gbs REAL, note TEXT,
    envelope TEXT NOT NULL);
CREATE TABLE results (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL, label TEXT, spec TEXT NOT NULL, status TEXT, mode TEXT, dtype TEXT, batch INTEGER,
    imgsz TEXT, imgs_per_s REAL, step_ms REAL, macs INTEGER, params INTEGER, tflops REAL, peak_mem_mb REAL,
    data TEXT NOT NULL);
CREATE INDEX results_run ON results(run_id);
PRAGMA user_version = 1;
"""


def test_a_file_of_the_previous_schema_is_upgraded_with_its_rows_intact(cli, db):
    with sqlite3.connect(db) as conn:  # a v1 file, as the first release wrote it
        conn.executescript(V1_AS_RELEASED)
        conn.execute("INSERT INTO machines VALUES ('m1', 'Old CPU', 4, 8000, 'x86_64', '', '[]', '{}')")
        conn.execute("INSERT INTO runs (id, run_uid, created, command, argv, machine_id, device, envelope) VALUES "
                     "(7, 'abc123abc123', '2026-01-02T03:04:05Z', 'bench', '[]', 'm1', 'cpu', '{}')")
        rows = [(7, 0, "efficientnet_b0", 12.5, json.dumps({"spec": "efficientnet_b0", "imgs_per_s": 12.5})),
                (7, 1, "resnet18", 30.0, json.dumps({"spec": "resnet18", "canonical": "custom:stem=64",
                                                     "roofline": {"stages": []}}))]
        conn.executemany("INSERT INTO results (run_id, position, spec, imgs_per_s, data) VALUES (?, ?, ?, ?, ?)", rows)
    conn = store.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION == 3
        assert conn.execute("SELECT id, n_results FROM runs").fetchall() == [(7, 2)]
        got = conn.execute("SELECT spec, imgs_per_s, canonical, explained, data FROM results ORDER BY position")
        assert [r[:4] for r in got.fetchall()] == [("efficientnet_b0", 12.5, "efficientnet_b0", 0),
                                                   ("resnet18", 30.0, "custom:stem=64", 1)]
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"runs_created", "runs_machine", "results_spec"} <= indexes
    finally:
        conn.close()
    assert json.loads(cli("history", "--db", str(db), "--format", "json").stdout)["runs"][0]["n_results"] == 2


# ---- history: list, show, rm ----------------------------------------------------------------------

def test_filters_are_parameters_never_sql(cli, db):
    evil = "x'; DROP TABLE runs; --"
    keep(db, evil)
    keep(db, 'say "hi"; DELETE FROM results')
    keep(db, "efficientnet_b0")
    found = json.loads(cli("history", "--db", str(db), "--spec", evil, "--format", "json").stdout)
    assert [r["specs"] for r in found["runs"]] == [evil]
    quoted = json.loads(cli("history", "--db", str(db), "--spec", '"hi"; DELETE', "--format", "json").stdout)
    assert quoted["total"] == 1
    for option in ("--machine", "--device", "--spec"):
        none = json.loads(cli("history", "--db", str(db), option, "' OR '1'='1", "--format", "json").stdout)
        assert none["total"] == 0, option
    assert counts(db) == (3, 3)  # nothing dropped or deleted


def test_history_filters_by_command_machine_device_and_time(cli, db):
    keep(db, "efficientnet_b0")
    keep(db, "resnet18", facts={**FACTS, "cpu": "Other CPU", "cpus": 64})
    listing = json.loads(cli("history", "--db", str(db), "--format", "json").stdout)
    assert listing["total"] == 2 and listing["runs"][0]["specs"] == "resnet18"  # newest first

    def total(*args):
        result = cli("history", "--db", str(db), "--format", "json", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["total"]

    other = machine_id({**FACTS, "cpu": "Other CPU", "cpus": 64})
    assert total("--machine", other[:6]) == 1 and total("--machine", "other cpu") == 1
    assert total("--command", "bench") == 2 and total("--command", "compare") == 0
    assert total("--device", "cpu") == 2 and total("--device", "cuda") == 0
    assert total("--since", "1h") == 2 and total("--since", "2999-01-01") == 0
    assert total("--last", "1") == 1
    last = json.loads(cli("history", "--db", str(db), "--format", "json", "--last", "1", "--spec", "efficient").stdout)
    assert [r["specs"] for r in last["runs"]] == ["efficientnet_b0"]  # the newest of those that match
    one_error_line(cli("history", "--db", str(db), "--since", "yesterday"), "--since 'yesterday' is not a date")
    one_error_line(cli("history", "--db", str(db), "--command", "train"), "--command 'train' is not one")


def test_history_of_a_database_that_does_not_exist_says_so(cli, tmp_path):
    one_error_line(cli("history", "--db", str(tmp_path / "none.sqlite")), "no results database at")
    assert not (tmp_path / "none.sqlite").exists()


def test_show_gives_the_machine_the_rows_and_how_to_re_run_each(cli, db):
    run_id = keep(db, "mobilenetv3_small:classes=10")
    uid = netprobe.history.open(db).runs()[0].run_uid
    shown = cli("history", "show", str(run_id), "--db", str(db))
    assert shown.exit_code == 0, shown.output
    for needle in ("Test CPU 9000", "8 CPUs (8 usable)", "31.2 GB", "matmul peak fp32 0.100 TFLOP/s",
                   "command: netprobe bench mobilenetv3_small:classes=10",
                   "re-run row 1: netprobe bench mobilenetv3_small:classes=10 --device cpu --batch 2 --imgsz 32 "
                   "--mode train --optimizer sgd --iters 1"):
        assert needle in shown.stdout, needle
    as_json = json.loads(cli("history", "show", uid[:8], "--db", str(db), "--format", "json").stdout)
    assert as_json["uid"] == uid and as_json["results"][0]["data"]["imgs_per_s"] == 20.0
    one_error_line(cli("history", "show", "999", "--db", str(db)), "no run '999'")


def test_rm_removes_a_run_and_its_rows_only(cli, db):
    first, second = keep(db, "a", "b"), keep(db, "c")
    result = cli("history", "rm", str(first), "--db", str(db))
    assert result.exit_code == 0 and "removed 1 run (2 rows)" in result.stderr
    assert counts(db) == (1, 1) and [r.id for r in netprobe.history.open(db).runs()] == [second]
    one_error_line(cli("history", "rm", str(first), "--db", str(db)), f"no run '{first}'")


# ---- export and import ----------------------------------------------------------------------------

def test_export_then_import_elsewhere_merges_without_duplicates(cli, tmp_path, db):
    keep(db, "efficientnet_b0", "resnet18")
    keep(db, "mobilenetv3_large", facts={**FACTS, "cpu": "Laptop CPU"})
    out = tmp_path / "runs.json"
    assert cli("history", "export", str(out), "--db", str(db)).exit_code == 0
    elsewhere = tmp_path / "elsewhere.sqlite"
    keep(elsewhere, "resnet50")
    result = cli("history", "import", str(out), "--db", str(elsewhere))
    assert result.exit_code == 0 and "imported 2 runs (3 rows)" in result.stderr
    again = cli("history", "import", str(out), "--db", str(elsewhere))
    assert "imported 0 runs (0 rows)" in again.stderr and "2 already there" in again.stderr
    assert counts(elsewhere) == (3, 4)
    here, there = netprobe.history.open(db), netprobe.history.open(elsewhere)
    assert {(r.run_uid, r.machine_id, r.spec, r.imgs_per_s) for r in here.results()} <= \
        {(r.run_uid, r.machine_id, r.spec, r.imgs_per_s) for r in there.results()}
    assert len({r.machine_id for r in there.runs()}) == 2


def test_export_csv_is_one_line_per_row(cli, tmp_path, db):
    keep(db, "a", "b")
    out = tmp_path / "rows.csv"
    assert cli("history", "export", str(out), "--db", str(db)).exit_code == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("run_id,run_uid,created,command") and len(lines) == 3 and ",a,a," in lines[1]


@pytest.mark.parametrize(("content", "needle"), [
    (lambda text: text[: len(text) // 2], "its JSON is broken or cut short"),
    (lambda text: json.dumps({"runs": []}), 'no "format": "netprobe-results"'),
    (lambda text: "\x00\x01 binary", "its JSON is broken"),
    (lambda text: text.replace('"command": "bench"', '"command": "rm -rf"', 1), "unknown command"),
    (lambda text: text.replace('"spec": "b"', '"spec": 5', 1), "malformed row 1"),
])
def test_a_bad_import_file_merges_nothing(cli, tmp_path, db, content, needle):
    keep(db, "a")
    keep(db, "b")
    good = tmp_path / "good.json"
    cli("history", "export", str(good), "--db", str(db))
    bad = tmp_path / "bad.json"
    bad.write_text(content(good.read_text()))
    target = tmp_path / "target.sqlite"
    keep(target, "z")
    one_error_line(cli("history", "import", str(bad), "--db", str(target)), needle)
    assert counts(target) == (1, 1)


# ---- the Python API and the command line's start-up -----------------------------------------------

def test_the_api_gives_plain_records(db):
    keep(db, "efficientnet_b0", imgs=12.5)
    with netprobe.history.open(db) as h:
        (r,) = h.results(spec="EFFICIENTNET")
        assert (r.spec, r.imgs_per_s, r.cpu, r.command) == ("efficientnet_b0", 12.5, "Test CPU 9000", "bench")
        assert r.data is None and h.results(with_data=True)[0].data["spec"] == "efficientnet_b0"
        try:
            import pandas  # noqa: F401
        except ImportError:
            with pytest.raises(ImportError, match="pip install pandas"):
                h.dataframe()
        else:
            assert list(h.dataframe()["imgs_per_s"]) == [12.5]


@pytest.mark.slow
@pytest.mark.parametrize("args", [["history"], ["report", "--format", "json"]])
def test_history_and_report_do_not_import_torch(db, args):
    keep(db, "a")
    probe = ("import contextlib, io, sys; sys.argv = ['netprobe', *sys.argv[1:]]\n"
             "from netprobe.cli import main\n"
             "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
             "    main()\n"
             "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))[:3], "
             "len(out.getvalue()) > 0)")
    done = subprocess.run([sys.executable, "-c", probe, *args, "--db", str(db)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] True"


def test_runtime_rows_are_kept_apart_from_eager_torch_and_rerun_in_their_runtime(db):
    from netprobe.history.rerun import rerun_command

    bench = bench_envelope("efficientnet_b0", "efficientnet_b0")
    for row, runtime in zip(bench["results"], ("torch", "onnxruntime"), strict=True):
        row.update(runtime=runtime, mode="infer")
    compare = {"experiment": "fused-stages", "device": bench["device"], "note": None,
               "settings": {"runtimes": ["torch", "openvino"], "amp": "off", "rounds": 1, "iters": 2},
               "rows": [{"label": "B4", "spec": "efficientnet_b4", "batch": 8, "imgsz": 128, "status": "ok",
                         "mode": "infer", "runtime": runtime, "infer_imgs_per_s": ips, "train_imgs_per_s": None}
                        for runtime, ips in (("torch", 5.0), ("openvino", 9.0))]}
    record(db, run_document(bench, ["netprobe", "bench"], facts=FACTS))
    record(db, run_document(compare, ["netprobe", "compare"], facts=FACTS))
    with netprobe.history.open(db) as h:
        got = [(r.label, r.mode, r.imgs_per_s) for r in h.results()]
        docs = {r.command: h.run(r.id) for r in h.runs()}
    # a bench row has no label of its own (its spec names it); a runtime's row is labelled with its runtime
    assert sorted(got, key=str) == sorted([(None, "infer", 20.0), ("efficientnet_b0 (onnxruntime)", "infer", 20.0),
                                  ("B4", "infer", 5.0), ("B4 (openvino)", "infer", 9.0)], key=str)
    onnx_row = docs["bench"]["results"][1]
    assert "--runtime onnxruntime" in rerun_command(docs["bench"], onnx_row)
    assert "--runtime" not in rerun_command(docs["bench"], docs["bench"]["results"][0])
    assert "--runtime torch,openvino" in rerun_command(docs["compare"], docs["compare"]["results"][1])
