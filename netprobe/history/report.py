"""The report across machines, from the runs in the database: the fused-stages table with a column
group per machine (the paper's V100 and TPU figures beside, labelled), every spec's speed against its
MACs, rooflines and time by op kind of the rows that have a breakdown, and each machine's fingerprint.

`build` returns the tables as a `Report` (every format renders it) and the charts as SVG text; the
HTML page puts both together (`history.page`)."""

from __future__ import annotations

import json
import sqlite3
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from netprobe.history.query import Filters, list_results, list_runs, result_data
from netprobe.history.svg import PALETTE, Axis, Chart, Line, Mark, stacked_bars
from netprobe.history.tables import row_problem
from netprobe.render import Column, Report, TableBlock, TextBlock, fmt_float, fmt_si, plural

PAPER_GROUP = "paper, not measured"  # the heading over the paper's columns
PAPER = "EfficientNetV2 paper (arXiv:2104.00298) Table 3: published figures, not measured here"
MAX_EXPLAINED = 12  # rows drawn with a roofline and a time-by-kind bar: the newest ones
MAX_RUNS_LISTED = 200  # runs listed by name at the end (the tables above count them all)
SPEED_COLUMNS = [
    Column("spec", "Spec", justify="left", ident=True), Column("machine", "Machine", justify="left", ident=True),
    Column("mode", "Mode", justify="left", ident=True), Column("dtype", "dtype", justify="left"),
    Column("batch", "Batch"), Column("imgsz", "Size"), Column("macs", "MACs/img", fmt_si),
    Column("imgs_per_s", "imgs/s (median)", fmt_float(2)), Column("n", "Runs"),
]
MACHINE_COLUMNS = [
    Column("machine_id", "Machine", justify="left", ident=True), Column("cpu", "CPU", justify="left"),
    Column("cpus", "CPUs"), Column("memory_gb", "Memory GB", fmt_float(1)), Column("arch", "Arch", justify="left"),
    Column("gpus_text", "GPUs", justify="left"), Column("devices", "Devices measured", justify="left"),
    Column("software", "Software", justify="left"), Column("runs", "Runs"),
    Column("seen", "Seen (UTC)", justify="left"),
]
RUN_COLUMNS = [
    Column("id", "ID", ident=True), Column("created", "When (UTC)", justify="left"),
    Column("what", "Command", justify="left"), Column("device_name", "Device", justify="left"),
    Column("machine", "Machine", justify="left"), Column("n_results", "Rows"), Column("busy", "Note", justify="left"),
]


@dataclass
class Figure:
    """A chart for the HTML page: its heading, the SVG, a caption."""

    title: str
    svg: str
    caption: str = ""
    section: str = "speeds"  # the table it goes with on the page


@dataclass
class CrossReport:
    report: Report  # the tables and lines, for every --format
    data: dict  # what --format json prints
    figures: list[Figure] = field(default_factory=list)
    title: str = "netprobe report"


def build(conn: sqlite3.Connection, filters: Filters) -> CrossReport:
    """The report over the runs `filters` selects."""
    runs, _ = list_runs(conn, filters, specs=False)
    rows = list_results(conn, filters, lean=True)
    names = machine_names(conn, runs)
    report = Report([TextBlock(f"{plural(len(runs), 'run')}, {plural(len(rows), 'row')}, "
                               f"{plural(len(names), 'machine')}.")])
    data: dict = {"runs": len(runs), "rows": len(rows)}
    measured = [r for r in rows if r["command"] != "predict"]  # a prediction is never read as a measurement
    fused = fused_table(conn, [r for r in measured if r["experiment"] == "fused-stages"], names)
    if fused is not None:
        report.add(fused)
        data["fused_stages"] = fused.records
    speeds = speed_records(measured, names)
    predictions = [{**r, "data": checked_data(r, json.loads(r["data"]))}
                   for r in list_results(conn, filters, with_data=True, only="predictions")]
    notes = add_predictions(speeds, measured, predictions)
    report.add(TableBlock("speeds", SPEED_COLUMNS + (PREDICTED_COLUMNS if notes else []), speeds,
                          "Speed of every spec measured",
                          "Median over runs of the same spec, machine and device (named in Machine), mode, dtype, "
                          "batch and size; MACs per image "
                          "as counted (compare: at the run size)." + _predicted_caption(notes)))
    machines = machine_records(conn, runs)
    report.add(TableBlock("machines", MACHINE_COLUMNS, machines, "Machines"))
    listed = [_run_row(r) for r in runs[:MAX_RUNS_LISTED]]
    more = f"; the {len(runs) - len(listed):,} older ones: netprobe history --all" if len(runs) > len(listed) else ""
    report.add(TableBlock("runs", RUN_COLUMNS, listed, "Runs in this report", f"Newest first{more}."))
    newest = list_results(conn, filters, with_data=True, only="explained", newest=MAX_EXPLAINED)
    for r in newest:
        r["data"] = checked_data(r, json.loads(r["data"]))
    explained = sorted(newest, key=lambda r: (r["created"], r["run_id"], r["position"]))  # in the order they ran
    colours = Colours()
    figures = [speed_figure(speeds, colours)] if speeds else []
    figures += roofline_figures(explained, names, colours)
    if explained:
        figures.append(kinds_figure(explained, names, colours))
    data.update(speeds=speeds, machines=machines, runs_listed=listed)
    return CrossReport(report, data, figures)


class DamagedRun(Exception):
    """A run whose row JSON, read for the report, does not fit the schema of a stored run."""

    def __init__(self, run_id: int, problem: str) -> None:
        super().__init__(problem)
        self.run_id, self.problem = run_id, problem


def checked_data(row: dict, data: dict) -> dict:
    """A row's JSON as read for the report, or `DamagedRun` if a figure the report reads is not one."""
    problem = row_problem(row, data)
    if problem:
        raise DamagedRun(row["run_id"], problem)
    return data


def build_whole(conn: sqlite3.Connection, filters: Filters) -> tuple[CrossReport, dict[int, str]]:
    """The report over the runs `filters` selects, less those whose rows prove damaged as they are
    read (each left out, the report built again); and those, with what is wrong with each."""
    damaged: dict[int, str] = {}
    while True:
        try:
            return build(conn, filters), damaged
        except DamagedRun as exc:
            damaged[exc.run_id] = exc.problem
            filters.skip = [*filters.skip, exc.run_id]


def machine_names(conn: sqlite3.Connection, runs: list[dict]) -> dict[str, str]:
    """A short name per machine: what it measured on (its GPU, else its CPU) and the start of its id."""
    names: dict[str, str] = {}
    for run in runs:
        if run["machine_id"] not in names or run["device"] == "cuda":
            names[run["machine_id"]] = machine_label(run["device_name"] or run["cpu"], run["machine_id"])
    return names


def machine_label(device: str, machine_id: str) -> str:
    """What a machine measured on, and the start of its id: 'Tesla V100-SXM2-16GB [3f9a1c]'."""
    return f"{device} [{machine_id[:6]}]"


def fused_table(conn: sqlite3.Connection, rows: list[dict], names: dict[str, str]) -> TableBlock | None:
    """One line per variant; per machine and setting, the latest run's train imgs/s and its speed against
    the first variant; the paper's V100 and TPUv3 figures beside, where the base is EfficientNet-B4."""
    groups: dict[tuple, dict] = {}
    for r in rows:  # oldest first: a later run of the same machine and setting replaces an earlier one
        key = (r["machine_id"], r["device_name"], r["batch"], r["imgsz"], r["dtype"], r["spec"].split(":")[0],
               r["mode"])
        group = groups.setdefault(key, {"run": None, "rows": {}})
        if group["run"] != r["run_id"]:
            group["run"], group["rows"] = r["run_id"], {}
        group["rows"][r["label"]] = r
    if not groups:
        return None
    # only the rows shown need their JSON read (for the paper's figures they carry)
    kept = result_data(conn, [r["result_id"] for g in groups.values() for r in g["rows"].values()])
    for r in (r for g in groups.values() for r in g["rows"].values()):
        checked_data({**r, "command": "compare"}, kept[r["result_id"]])
    labels = list(dict.fromkeys(label for g in groups.values() for label in g["rows"]))
    columns = [Column("variant", "Variant", justify="left", ident=True)]
    records = [{"variant": label} for label in labels]
    for i, (key, group) in enumerate(groups.items()):
        head = (f"{names.get(key[0], key[0][:6])}: {key[5]} b{key[2]} {key[3]}px {key[4]}"
                + (f" {key[6]}" if key[6] != "train" else "") + f", run {group['run']}")
        columns += [Column(f"g{i}", f"{head} · imgs/s", fmt_float(2)), Column(f"g{i}x", f"{head} · vs first", _times)]
        first = next(iter(group["rows"].values()))["imgs_per_s"]
        for rec in records:
            ips = (group["rows"].get(rec["variant"]) or {}).get("imgs_per_s")
            rec[f"g{i}"], rec[f"g{i}x"] = ips, ips / first if ips and first else None
    paper = {label: kept[r["result_id"]]["paper"] for g in groups.values() for label, r in g["rows"].items()
             if kept[r["result_id"]].get("paper")}
    if paper:
        v100_first = (paper.get(labels[0]) or {}).get("v100_imgs_per_s")
        columns += [Column("v100", f"{PAPER_GROUP} · V100 imgs/s"), Column("tpu", f"{PAPER_GROUP} · TPUv3 imgs/s"),
                    Column("v100x", f"{PAPER_GROUP} · V100 vs first", _times)]
        for rec in records:
            p = paper.get(rec["variant"]) or {}
            rec.update(v100=p.get("v100_imgs_per_s"), tpu=p.get("tpu_imgs_per_s"),
                       v100x=p["v100_imgs_per_s"] / v100_first if p.get("v100_imgs_per_s") and v100_first else None)
    caption = ("Train imgs/s of each machine's latest fused-stages run per setting (median over its rounds); "
               "inference where the heading says infer (compare --runtime: one row per variant and runtime)."
               + (f" Paper columns: {PAPER}." if paper else ""))
    return TableBlock("fused_stages", columns, records, "Fused-MBConv stages across machines", caption)


def _times(value: object) -> str:
    return f"{float(value):.2f}×"  # type: ignore[arg-type]


def speed_records(rows: list[dict], names: dict[str, str]) -> list[dict]:
    """Measured rows grouped by what ran (the spec, its runtime or world size), machine, the device it ran on
    (a GPU machine's CPU and CUDA runs of one spec are two rows), mode, dtype, batch and size, whichever command
    measured them: the median imgs/s of each, its machine named by that device. A row without MACs
    (data-parallel) takes those counted for the same spec and size in another row."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    counted = {(r["spec"], r["imgsz"]): r["macs"] for r in rows if r["macs"]}
    for r in rows:
        if r["imgs_per_s"] and r["status"] == "ok":
            key = (_what_ran(r), r["machine_id"], r["device"], r["device_name"], r["mode"], r["dtype"], r["batch"],
                   r["imgsz"])
            groups[key].append(r)
    return [{"spec": spec,
             "machine": machine_label(device_name, machine) if device_name else names.get(machine, machine),
             "machine_id": machine, "device": device, "device_name": device_name, "mode": mode, "dtype": dtype,
             "batch": batch, "imgsz": imgsz, "macs": group[-1]["macs"] or counted.get((group[-1]["spec"], imgsz)),
             "imgs_per_s": statistics.median(g["imgs_per_s"] for g in group), "n": len(group)}
            for (spec, machine, device, device_name, mode, dtype, batch, imgsz), group in groups.items()]


PREDICTED_COLUMNS = [Column("predicted_imgs_per_s", "imgs/s PREDICTED", fmt_float(2)),
                     Column("predicted_error", "Prediction's error", justify="left")]


def add_predictions(speeds: list[dict], rows: list[dict], predictions: list[dict]) -> list[str]:
    """Beside each measured speed, the latest prediction of the same spec, batch, size, mode and precision
    for the device it was measured on: a CUDA device whose name is the predicted GPU's (by the label the
    prediction keeps), or the device at hand of the same machine (predict --device cpu or cuda); labelled
    with its held-out error. Returns the error notes used."""
    if not predictions:
        return []
    from netprobe.gpu_names import same_gpu

    by_key: dict[tuple, dict] = {}
    for p in predictions:  # oldest first: a later prediction replaces an earlier one
        local = p["data"]["gpu"] in ("cpu", "cuda")  # predict --device: this machine's own device
        where = (p["data"]["gpu"], p["machine_id"]) if local else ("gpu", p["data"]["gpu_label"])
        for spec in (p["canonical"], p["spec"]):  # the same model, or the same text
            by_key[(spec, p["mode"], p["dtype"], p["batch"], size_key(p["imgsz"]), where)] = p
    labels = {key[-1][1] for key in by_key if key[-1][0] == "gpu"}
    measured = {(r["spec"], r["machine_id"], r["device"], r["device_name"], r["mode"], r["dtype"], r["batch"],
                 r["imgsz"]): r for r in rows
                if r["device"] in ("cuda", "cpu") and r.get("runtime") in (None, "torch") and not r.get("world_size")}
    notes: list[str] = []
    for s in speeds:
        row = measured.get((s["spec"], s["machine_id"], s["device"], s["device_name"], s["mode"], s["dtype"],
                            s["batch"], s["imgsz"]))
        if row is None:
            continue
        gpu = next((label for label in labels if row["device"] == "cuda"
                    and same_gpu(label, row["device_name"] or "")), None)
        same = (s["mode"], s["dtype"], s["batch"], size_key(s["imgsz"]))
        places = ((("gpu", gpu),) if gpu else ()) + ((row["device"], row["machine_id"]),)
        found = next((by_key[key] for where in places
                      for key in ((row["canonical"], *same, where), (row["spec"], *same, where)) if key in by_key),
                     None)
        if found:
            note = found["data"].get("error_note") or "error not stated"
            s["predicted_imgs_per_s"] = found["data"]["imgs_per_s"]
            s["predicted_error"] = f"{found['data']['gpu_label']}: {note.split(' (')[0]}"
            notes += [note] if note not in notes else []
    return notes


def _predicted_caption(notes: list[str]) -> str:
    if not notes:
        return ""
    return (" imgs/s PREDICTED: netprobe predict's figure for the same spec, batch, size, mode and precision on "
            f"the GPU measured — a prediction, not a measurement; its error: {'; '.join(notes)}.")


def size_key(value: object) -> object:
    """An image size as the columns hold it (384, "384x320", "[384, 384]") as (height, width)."""
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, str):
        text = value.strip("[] ")
        parts = [p.strip() for p in text.replace(",", "x").split("x")]
        if all(p.isdigit() for p in parts) and 1 <= len(parts) <= 2:
            return (int(parts[0]), int(parts[-1]))
    return value


def _what_ran(r: dict) -> str:
    """The spec (not a compare label such as 'No fused', which names no model), with its runtime when not
    eager torch, and its ranks when data-parallel."""
    runtime = f" ({r['runtime']})" if r.get("runtime") not in (None, "torch") else ""
    ranks = f" ×{r['world_size']} {'DDP' if r.get('ddp') else 'no DDP'}" if r.get("world_size") else ""
    return f"{r['spec']}{runtime}{ranks}"


_SAME_MEANING = {"depthwise_conv": "depthwise", "dense_conv": "dense"}  # an op kind and a stage family alike


class Colours:
    """One colour per meaning (a machine, a block family, an op kind) across every chart of a report."""

    def __init__(self) -> None:
        self.assigned: dict[str, str] = {}

    def __call__(self, meaning: str) -> str:
        key = _SAME_MEANING.get(meaning, meaning)
        if key not in self.assigned:
            self.assigned[key] = _nth_colour(len(self.assigned))
        return self.assigned[key]


def _nth_colour(i: int) -> str:
    """The palette's colours first, then hues a golden angle apart (never one already given)."""
    if i < len(PALETTE):
        return PALETTE[i]
    import colorsys

    r, g, b = colorsys.hls_to_rgb(((i - len(PALETTE)) * 0.618034) % 1.0, 0.45, 0.55)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def machine_records(conn: sqlite3.Connection, runs: list[dict]) -> list[dict]:
    """Each machine's fingerprint, what it measured on, the software it ran, how many runs and when."""
    by_machine: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_machine[run["machine_id"]].append(run)
    records = []
    for machine_id, its_runs in by_machine.items():
        facts = json.loads(conn.execute("SELECT fingerprint FROM machines WHERE machine_id = ?",
                                        (machine_id,)).fetchone()[0])
        software = conn.execute("SELECT os, driver, python FROM runs WHERE machine_id = ? ORDER BY created DESC "
                                "LIMIT 1", (machine_id,)).fetchone()
        devices = sorted({f"{r['device_name']} ({r['device']})" for r in its_runs if r["device"]})
        torches = sorted({r["torch"] for r in its_runs if r["torch"]})
        created = sorted(r["created"] for r in its_runs)
        records.append({**facts, "machine_id": machine_id, "memory_gb": (facts.get("memory_mb") or 0) / 1024,
                        "gpus_text": ", ".join(facts.get("gpus") or []) or "none seen", "devices": "; ".join(devices),
                        "software": f"{software[0]}; torch {', '.join(torches)}; Python {software[2]}"
                        + (f"; driver {software[1]}" if software[1] else ""),
                        "runs": len(its_runs), "seen": f"{created[0][:10]} – {created[-1][:10]}"})
    return records


def _run_row(run: dict) -> dict:
    what = run["command"] + (f" {run['experiment']}" if run["experiment"] else "")
    return {**run, "what": what + (" (predictions, not measured)" if run["command"] == "predict" else ""),
            "machine": run["machine_id"][:8], "busy": "busy machine" if run["note"] else ""}


# ---- figures ---------------------------------------------------------------------------------------

SHAPES = {"train": "circle", "infer": "square"}


def speed_figure(speeds: list[dict], colours: Colours | None = None) -> Figure:
    """imgs/s against MACs per image, log-log: a colour per machine, a shape per mode."""
    colours = colours or Colours()
    machines = list(dict.fromkeys(s["machine"] for s in speeds))
    color = {m: colours(f"machine {m}") for m in machines}
    points = [s for s in speeds if s["macs"]]
    marks = [Mark(s["macs"], s["imgs_per_s"], color[s["machine"]], SHAPES.get(s["mode"], "triangle"),
                  f"{s['spec']} on {s['machine']}: {s['mode']} b{s['batch']} {s['imgsz']}px, {s['imgs_per_s']:.2f} "
                  f"imgs/s, {fmt_si(s['macs'])} MACs", s["spec"][:28] if len(points) <= 16 else "")
             for s in points]
    legend = [(m, color[m], "circle") for m in machines] + [(f"{mode}", "#555", shape) for mode, shape in
                                                             SHAPES.items() if any(s["mode"] == mode for s in points)]
    chart = Chart(Axis.around("MACs per image", [s["macs"] for s in points]),
                  Axis.around("images per second", [s["imgs_per_s"] for s in points]), marks,
                  title="Speed against MACs, every spec measured", legend=legend, width=760, height=460)
    return Figure("Speed against MACs", chart.svg(), "One point per spec, machine, mode, batch and size (the median "
                  "over runs); FLOPs are not speed: points at the same MACs can sit far apart.")


def _config(r: dict, names: dict[str, str]) -> str:
    return f"{r['label'] or r['spec']} · b{r['batch']} {r['imgsz']}px {r['mode']} · {names.get(r['machine_id'], '')}"


def roofline_figures(rows: list[dict], names: dict[str, str], colours: Colours | None = None) -> list[Figure]:
    """A log-log roofline per row that has one: both roofs as measured in its run, a point per stage."""
    figures = []
    colours = colours or Colours()
    families = list(dict.fromkeys(s["family"] for r in rows for s in (r["data"].get("roofline") or
                                                                        {"stages": []})["stages"]))
    color = {f: colours(f) for f in families}
    for r in rows:
        roof = r["data"].get("roofline")
        if not roof:
            continue
        peak, bandwidth = roof["peak_tflops"] * 1e3, roof["bandwidth_gbs"]
        stages = [s for s in roof["stages"] if s.get("achieved_gflops") and s["intensity"] > 0]
        x = Axis.around("FLOPs per byte moved", [s["intensity"] for s in stages] + [roof["ridge"]], pad=3)
        y = Axis.around("achieved GFLOP/s", [s["achieved_gflops"] for s in stages] + [peak, bandwidth * x.lo], pad=3)
        roofs = [Line([(x.lo, bandwidth * x.lo), (roof["ridge"], peak), (x.hi, peak)], "#222",
                      label=f"matmul {peak:.0f} GFLOP/s, copy {bandwidth:.1f} GB/s")]
        marks = [Mark(s["intensity"], s["achieved_gflops"], color[s["family"]], "circle",
                      f"{s['name']} ({s['family']}): {s['intensity']:.1f} FLOPs/B, {s['achieved_gflops']:.1f} GFLOP/s, "
                      f"{s['bound']}-bound", s["name"].replace("stage", "s")) for s in stages]
        legend = [(f, color[f], "circle") for f in dict.fromkeys(s["family"] for s in stages)]
        chart = Chart(x, y, marks, roofs, _config(r, names), legend, width=460, height=340)
        figures.append(Figure(f"Roofline: {_config(r, names)}", chart.svg(), section="why"))
    return figures


def kinds_figure(rows: list[dict], names: dict[str, str], colours: Colours | None = None) -> Figure:
    """Per row with a breakdown: its share of step time by op kind, and beside it the share of MACs."""
    bars, kinds = [], []
    for r in rows:
        whole = [k for k in r["data"].get("breakdown") or [] if k["stage"] is None]
        kinds += [k["kind"] for k in whole if k["kind"] not in kinds]
        bars.append((_config(r, names), {k["kind"]: k for k in whole}))
    lines = []
    for label, by_kind in bars:
        lines.append((label, [(by_kind.get(k) or {}).get("time_share") or 0 for k in kinds]))  # null: not measured
        lines.append(("MACs", [(by_kind.get(k) or {}).get("macs_share") or 0 for k in kinds]))
    parts = [k.replace("_", " ") for k in kinds]
    colours = colours or Colours()
    return Figure("Time by op kind", stacked_bars(lines, parts, "Share of the step's time (upper bar) and of its "
                                                  "MACs (lower bar), by op kind, in %", width=900,
                                                  colors=tuple(colours(k) for k in kinds)),
                  "From the profiled steps of each row with a breakdown: a kind whose time bar is much longer than its "
                  "MACs bar runs far below the rate of the others (depthwise convs, typically).", "why")
