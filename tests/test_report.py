"""`netprobe report`: the fused-stages table across machines with the paper beside, the charts, one
self-contained HTML page that a real browser renders with nothing to fetch, and every text escaped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from netprobe.history.record import record, run_document

DATA = Path(__file__).parent / "data"
# A real `netprobe compare fused-stages --device cpu --batch 2 --imgsz 64 --rounds 1 --iters 1 --breakdown
# --format json` (on a busy 2-core VM: the figures are slow, and real).
FUSED = json.loads((DATA / "compare-fused-stages-cpu.json").read_text())
LAPTOP = {"cpu": "Laptop CPU i7", "cpus": 8, "usable_cores": 8, "memory_mb": 16_000, "arch": "x86_64", "board": "",
          "gpus": [], "driver": "", "os": "Linux-laptop", "python": "3.11.7"}
SERVER = {**LAPTOP, "cpu": "Server CPU Xeon", "cpus": 64, "memory_mb": 512_000, "os": "Linux-server"}
ARGV = ["netprobe", "compare", "fused-stages", "--device", "cpu", "--batch", "2", "--imgsz", "64", "--breakdown"]



def faster(envelope: dict, factor: float) -> dict:
    """The same comparison as another machine would print it, `factor` times faster."""
    rows = [{**r, "train_imgs_per_s": r["train_imgs_per_s"] * factor} for r in envelope["rows"]]
    return {**envelope, "rows": rows, "device": {**envelope["device"], "name": "Server CPU Xeon"}}


@pytest.fixture
def two_machines(tmp_path) -> Path:
    db = tmp_path / "results.sqlite"
    record(db, run_document(FUSED, ARGV, facts=LAPTOP))
    record(db, run_document(faster(FUSED, 3.0), ARGV, facts=SERVER))
    return db


def test_the_fused_stages_table_lines_up_machines_and_the_paper(cli, two_machines):
    result = cli("report", "--db", str(two_machines), "--format", "markdown")
    assert result.exit_code == 0, result.output
    md = result.stdout
    table = md[md.index("**Fused-MBConv stages across machines**"):].split("\n\n")[1]
    header, _, *rows = table.splitlines()
    assert "AMD EPYC" in header and "Server CPU Xeon" in header  # a column group per machine
    assert "paper, not measured · V100 imgs/s" in header and "paper, not measured · TPUv3 imgs/s" in header
    assert [r.split("|")[1].strip() for r in rows] == ["No fused", "Fused stage1-3", "Fused stage1-5",
                                                       "Fused stage1-7"]
    cells = [c.strip() for c in rows[1].split("|")[1:-1]]
    measured = FUSED["rows"][1]["train_imgs_per_s"]
    assert cells[1] == f"{measured:.2f}" and cells[3] == f"{measured * 3:.2f}"  # each machine's own figure
    assert cells[2] == f"{measured / FUSED['rows'][0]['train_imgs_per_s']:.2f}×"
    assert cells[-3:] == ["216", "362", f"{216 / 155:.2f}×"]  # the paper's V100, TPUv3, V100 speed-up
    assert "Paper columns: EfficientNetV2 paper (arXiv:2104.00298) Table 3" in md
    for title in ("**Speed of every spec measured**", "**Machines**", "**Runs in this report**"):
        assert title in md


def test_json_and_csv_carry_the_same_tables(cli, two_machines):
    data = json.loads(cli("report", "--db", str(two_machines), "--format", "json").stdout)
    assert data["runs"] == 2 and len(data["fused_stages"]) == 4 and len(data["machines"]) == 2
    assert {s["machine"].split(" [")[0] for s in data["speeds"]} == {"AMD EPYC", "Server CPU Xeon"}
    csv = cli("report", "--db", str(two_machines), "--format", "csv", "--section", "machines").stdout
    assert csv.startswith("machine_id,cpu,cpus,memory_gb") and "Laptop CPU i7" in csv


def test_runs_can_be_picked_by_id_spec_and_last(cli, two_machines):
    def runs(*args):
        result = cli("report", "--db", str(two_machines), "--format", "json", *args)
        return json.loads(result.stdout)["runs"] if result.exit_code == 0 else result

    assert runs("1") == 1 and runs("--last", "1") == 1 and runs("--machine", "server") == 1
    assert runs("--spec", "fused=1-5") == 2 and runs("--spec", "STAGE1-7") == 2  # a spec or a label, any case
    nothing = runs("--spec", "resnet")
    assert nothing.exit_code == 2 and "no recorded run matches" in nothing.stderr
    missing = runs("42")
    assert missing.exit_code == 2 and "no run '42'" in missing.stderr


class Page(HTMLParser):
    """What a page holds: its tags, and every attribute or style that could fetch something."""

    FETCHING = ("src", "srcset", "data", "poster", "action", "formaction", "background")

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.fetches: list[str] = []
        self.feed(text)
        self.fetches += re.findall(r"url\(|@import", text)

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            if name in self.FETCHING or (name in ("href", "xlink:href") and not (value or "").startswith("#")):
                self.fetches.append(f"<{tag} {name}={value}>")
        if tag in ("script", "link", "iframe", "object", "embed"):
            self.fetches.append(f"<{tag}>")


def test_the_html_page_is_self_contained_and_escapes_every_text(cli, tmp_path):
    folder = tmp_path / "<script>alert(1)<" / "script>"  # a path that is markup: '<script>alert(1)</script>'
    folder.mkdir(parents=True)
    db = folder / "r.sqlite"
    evil = {**FUSED, "rows": [{**r, "label": r["label"] + " <b>&'\""} for r in FUSED["rows"]]}
    spec = "models/<script>alert(3)</script>.py:Net"  # a model file whose path is markup
    bench = {"device": FUSED["device"], "note": None, "results": [
        {"spec": spec, "device": "cpu", "dtype": "fp32", "batch": 2, "imgsz": 32, "mode": "train", "status": "ok",
         "imgs_per_s": 5.0, "macs_per_img": 1_000_000}]}
    record(db, run_document(bench, ["netprobe", "bench", spec], facts=LAPTOP))
    record(db, run_document(evil, ARGV, facts={**LAPTOP, "cpu": "<img src=x onerror=alert(2)>"}))
    html_file = tmp_path / "report.html"
    result = cli("report", "--db", str(db), "--html", str(html_file))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "report written to" in result.stderr  # --html alone prints no tables
    text = html_file.read_text()
    page = Page(text)
    assert page.fetches == []  # nothing to load: inline CSS and SVG only
    assert page.tags["table"] == 4 and page.tags["svg"] >= 1 + 4 + 1  # speed, 4 rooflines, time by op kind
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror=alert(2)&gt;" in text
    assert "models/&lt;script&gt;alert(3)&lt;/script&gt;.py:Net" in text
    assert "No fused &lt;b&gt;&amp;&#x27;&quot;" in text


def test_the_page_checker_sees_what_would_be_fetched():
    page = Page('<p style="background: url(x.png)"><img src="a.png"><a href="https://x">x</a><a href="#s">s</a></p>')
    assert page.fetches == ["<img src=a.png>", "<a href=https://x>", "url("]


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=180)


def render(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The page's DOM as the browser built it, and every file the browser read to render it (its verbose
    log names each file URL it loads)."""
    done = chromium(page, profile, "--enable-logging=stderr", "--v=1", "--dump-dom")
    return done.stdout, sorted(set(re.findall(r"FileURLLoader::Start: (\S+)", done.stderr)))


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium here (Debian: apt-get install -y chromium)")
def test_a_real_browser_renders_the_report_with_nothing_else_to_load(cli, two_machines, tmp_path):
    html_file = tmp_path / "report.html"
    assert cli("report", "--db", str(two_machines), "--html", str(html_file)).exit_code == 0
    dom, loaded = render(html_file, tmp_path / "p1")
    assert dom.count("<table>") == 4 and dom.count("<svg") >= 6 and "Fused-MBConv stages across machines" in dom
    assert loaded == [html_file.as_uri()]
    shot = tmp_path / "shot.png"
    chromium(html_file, tmp_path / "p2", f"--screenshot={shot}", "--window-size=1280,1800", "--hide-scrollbars")
    assert shot.stat().st_size > 50_000
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 1800)
        colours = image.convert("RGB").resize((128, 180)).getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 50  # tables and charts, not a blank or error page
    # the same check on a page with one missing image does see the failed load
    broken = tmp_path / "broken.html"
    broken.write_text(f'<p>x</p><img src="{(tmp_path / "missing.png").as_uri()}">')
    assert (tmp_path / "missing.png").as_uri() in render(broken, tmp_path / "p3")[1]


@pytest.mark.slow
def test_a_real_run_goes_from_bench_to_the_report(cli, tmp_path):
    db, html_file = tmp_path / "r.sqlite", tmp_path / "r.html"
    bench = cli("bench", "mobilenetv3_small:classes=10", "--device", "cpu", "--batch", "2", "--imgsz", "32",
                "--warmup", "0", "--iters", "1", "--breakdown", "--db", str(db), "--format", "json")
    assert bench.exit_code == 0, bench.output
    measured = json.loads(bench.stdout)["results"][0]["imgs_per_s"]
    result = cli("report", "--db", str(db), "--html", str(html_file), "--format", "json")
    assert result.exit_code == 0, result.output
    (speed,) = json.loads(result.stdout)["speeds"]
    assert speed["spec"] == "mobilenetv3_small:classes=10" and speed["imgs_per_s"] == measured
    text = html_file.read_text()
    assert '<figure aria-label="Roofline: mobilenetv3_small:classes=10 · b2 32px train' in text
    assert '<figure aria-label="Time by op kind">' in text
