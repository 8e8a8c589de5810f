"""`predict`: a step's time and memory on a GPU one does not have — a prediction, labelled as one."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from netprobe.errors import InputError, quote
from netprobe.prediction.calibration import LOCAL
from netprobe.prediction.gpus import GPU, PRECISIONS, find_gpus
from netprobe.prediction.model import efficiency_for, time_work
from netprobe.sizes import as_size, size_text

ACCURACY_FILE = Path(__file__).with_name("accuracy.json")
CPU_ACCURACY_FILE = Path(__file__).with_name("accuracy-cpu.json")  # benchmarks/predict_cpu_accuracy.py --write
MODES = ("train", "infer")
PRECISION_NOTES = {
    "off": "fp32 as PyTorch runs it by default: cuDNN convolutions in TF32 where the GPU has it "
           "(torch.backends.cudnn.allow_tf32), matmuls in fp32",
    "fp16": "AMP fp16: convolutions and matmuls on tensor cores with fp32 accumulate",
    "bf16": "AMP bf16: convolutions and matmuls on tensor cores with fp32 accumulate",
}
LOCAL_PRECISION_NOTE = "this CPU as it measured: its fp32 matmul peak and copy bandwidth"


@dataclass
class StagePrediction:
    """One stage's predicted time: forward and backward ms, what bounds most of it, share of the step."""

    name: str
    fwd_ms: float
    bwd_ms: float
    bound: str  # compute | memory | launch
    share: float


@dataclass
class Prediction:
    """A predicted step on a GPU: time from the fitted model, memory counted. Never a measurement."""

    target: str
    gpu: str
    gpu_label: str
    batch: int
    imgsz: tuple[int, int]
    mode: str
    amp: str
    channels_last: bool
    optimizer: str
    step_ms: float
    imgs_per_s: float
    peak_tflops: float  # the precision's peak the convolutions run at
    bandwidth_gbs: float
    peak_mem_mb: float | None  # None: memory not counted
    mem_limit_mb: float
    fits: bool | None
    max_batch: int | None = None
    stages: list[StagePrediction] = field(default_factory=list)
    precision_note: str = ""
    efficiency_note: str = ""
    error_note: str = ""
    kind: str = "prediction"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["imgsz"] = list(self.imgsz)
        return out


def local_error_note(path: Path = CPU_ACCURACY_FILE) -> str:
    """The model's measured error on models held out of a CPU calibration, as
    benchmarks/predict_cpu_accuracy.py --write last wrote it."""
    cpu = json.loads(path.read_text()) if path.is_file() else {}
    if not cpu:
        return "error on a calibrated device not measured: run benchmarks/predict_cpu_accuracy.py"
    return (f"±{cpu['median_abs_pct']:.0f}% median, worst {cpu['worst_abs_pct']:.0f}%, on {cpu['rows']} held-out "
            f"rows of a calibrated CPU ({cpu['machine']}, {cpu['date']}), from benchmarks/predict_cpu_accuracy.py")


def error_note(path: Path = ACCURACY_FILE) -> str:
    """The model's measured error on held-out data, as benchmarks/predict_accuracy.py last wrote it."""
    if not path.is_file():
        return "error not measured: run benchmarks/predict_accuracy.py"
    data = json.loads(path.read_text())
    return (f"±{data['held_out_gpu_median_pct']:.0f}% median on held-out GPUs ({data['held_out_gpu_split']}), "
            f"from benchmarks/predict_accuracy.py")


def check_request(gpu: str | None, mode: str, amp: str, optimizer: str, gpu_spec: str | None = None,
                  device: str | None = None) -> list[GPU]:
    """Refuse, before any counting, what cannot be predicted; the GPUs asked for (from the table, or
    the one `gpu_spec` describes; `gpu` None: v100). With "all", GPUs lacking the precision are left out;
    a named one lacking it is an error. With `device` ("cpu", "cuda", "auto"): that device, resolved, as
    a placeholder whose roofs are measured (or read from its calibration) when predicting."""
    from netprobe.prediction.counted import OPTIMIZERS

    for name, value, allowed in (("--mode", mode, MODES), ("--amp", amp, PRECISIONS),
                                 ("--optimizer", optimizer, OPTIMIZERS)):
        if value not in allowed:
            raise InputError(f"{name} {quote(value)} is not one of {', '.join(allowed)}")
    if device is not None:
        if gpu is not None or gpu_spec is not None:
            raise InputError(f"--device {quote(device)} predicts the device at hand and --gpu/--gpu-spec a GPU "
                             "from the table; give one of them")
        from netprobe.prediction.calibration import local_device
        from netprobe.timing import resolve_device

        return [local_device(resolve_device(device), amp, 1.0, 1.0)]
    gpu = "v100" if gpu is None else gpu
    if gpu_spec is not None:
        from netprobe.prediction.gpus import load_gpu_spec

        gpus = [load_gpu_spec(gpu_spec)]
    else:
        gpus = find_gpus(gpu)
    if gpu_spec is None and gpu.strip().lower() == "all":
        return [g for g in gpus if g.has(amp)]
    for g in gpus:
        g.conv_peak_tflops(amp)  # raises for a precision the GPU lacks
    return gpus


def predict(target: object, gpu: str | None = None, batch: int = 24,
            imgsz: int | str | tuple[int, int] | None = None, mode: str = "train", amp: str = "off",
            channels_last: bool = False, optimizer: str = "sgd", find_max_batch: bool = False,
            gpu_spec: str | None = None, device: str | None = None, db: str | None = None) -> Prediction:
    """Predict one step of `target` (a spec string, a `Target` or an nn.Module) on a GPU from the
    table (`gpu="v100"`, the default) or described in a YAML file (`gpu_spec`), or on the device at hand
    (`device="cpu"`: its measured roofs, with its newest calibration in the results database `db` where
    there is one): time from the time model, peak memory counted on meta (`counting.memory`). A
    prediction, labelled as one everywhere."""
    return predict_all(target, gpu, batch, imgsz, mode, amp, channels_last, optimizer, find_max_batch, gpu_spec,
                       device, db)[0]


def predict_all(target: object, gpu: str | None = None, batch: int = 24,
                imgsz: int | str | tuple[int, int] | None = None, mode: str = "train", amp: str = "off",
                channels_last: bool = False, optimizer: str = "sgd", find_max_batch: bool = False,
                gpu_spec: str | None = None, device: str | None = None, db: str | None = None) -> list[Prediction]:
    """`predict` for each GPU `gpu` names ("v100,a100" or "all"): one count, one prediction per GPU."""
    from netprobe.target import resolve

    gpus = check_request(gpu, mode, amp, optimizer, gpu_spec, device)
    resolved = resolve(target)
    size = resolved.input_size(as_size(imgsz))
    resolved.check_input(size, batch)
    model = resolved.meta_model()
    try:
        work = _work(model, resolved, batch, size, mode, amp, optimizer)
    except ValueError as exc:  # a batch norm that sees one value per channel, which training mode refuses
        if "Expected more than 1 value per channel" not in str(exc):
            raise
        raise InputError(f"{resolved.label} at batch {batch} and {size_text(size)} px: a batch norm sees one value "
                         f"per channel ({str(exc).rsplit('size ', 1)[-1]}), which PyTorch refuses in training mode, "
                         "where netprobe counts a step's work; use a batch of 2 or more, or a larger --imgsz") from None
    memory = _memory(resolved, model, batch, size, mode, amp, channels_last, optimizer)
    if device is not None:
        from netprobe.prediction.calibration import efficiency_here

        here, eff, eff_note = efficiency_here(gpus[0].name, amp, channels_last, db)
        return [_predict_on(here, work, resolved, batch, size, mode, amp, channels_last, optimizer, memory,
                            local_error_note(), (eff, eff_note))]
    note = error_note()
    out = []
    for g in gpus:
        p = _predict_on(g, work, resolved, batch, size, mode, amp, channels_last, optimizer, memory, note)
        if find_max_batch:
            p.max_batch = _max_batch(resolved, size, g, mode, amp, channels_last, optimizer)
        out.append(p)
    return out


def _work(model, resolved, batch: int, size: tuple[int, int], mode: str, amp: str, optimizer: str):
    from netprobe.prediction.counted import counted_work
    from netprobe.summary import stage_function

    return counted_work(model, batch, size, mode, amp, optimizer, resolved.in_chans, stage_function(resolved, size))


def _memory(resolved, model, batch: int, size: tuple[int, int], mode: str, amp: str, channels_last: bool,
            optimizer: str):
    from netprobe.prediction.memory import count_memory

    return count_memory(resolved, batch, size, mode, amp, channels_last, optimizer, meta_model=model)


def _max_batch(resolved, size, gpu: GPU, mode: str, amp: str, channels_last: bool, optimizer: str) -> int:
    from netprobe.prediction.memory import predicted_max_batch

    return predicted_max_batch(resolved, size, gpu.mem_bytes, mode, amp, channels_last, optimizer)


def _predict_on(gpu: GPU, work, resolved, batch: int, size: tuple[int, int], mode: str, amp: str,
                channels_last: bool, optimizer: str, memory, note: str, efficiency=None) -> Prediction:
    eff, eff_note = efficiency or efficiency_for(gpu, channels_last)
    timed = time_work(work, gpu, eff, amp)
    step_s = sum(t.seconds for t in timed)
    local_cpu = gpu.generation == LOCAL and gpu.name == "cpu"
    mem_mb, fits = _memory_on(memory, gpu, local_cpu)
    return Prediction(
        resolved.label, gpu.name, gpu.label, batch, size, mode, amp, channels_last, optimizer, step_s * 1e3,
        batch / step_s, gpu.conv_peak_tflops(amp), gpu.mem_bw_gbs,
        mem_mb, gpu.mem_bytes / 2**20, fits, None, _stages(timed, step_s),
        LOCAL_PRECISION_NOTE if local_cpu else PRECISION_NOTES[amp], eff_note, note)


def _memory_on(memory, gpu: GPU, local_cpu: bool) -> tuple[float | None, bool | None]:
    """MB the device holds at the step's peak, and whether the step fits: on a GPU `MemoryCount.shown_on` (its
    caching allocator replayed at its capacity; where it does not fit, a GPU with room) plus the stated CUDA
    allowance; on a CPU the counted peak alone, no fit said. (None, None): memory not counted."""
    from netprobe.counting.memory import CUDA_ALLOWANCE_BYTES

    if memory is None:
        return None, None
    if local_cpu:
        return memory.total_bytes / 2**20, None
    held, fits = memory.shown_on(gpu.mem_bytes)
    return (held + CUDA_ALLOWANCE_BYTES) / 2**20, fits


def _stages(timed, step_s: float) -> list[StagePrediction]:
    """Per stage, in the order the model runs them: forward and backward ms, the bound that holds
    most of its time, its share of the step. Work outside every stage (loss, optimizer) has no row."""
    stages: dict[str, dict[str, float]] = {}
    for t in timed:
        if t.work.stage is None:
            continue
        s = stages.setdefault(t.work.stage, {"fwd": 0.0, "bwd": 0.0, "compute": 0.0, "memory": 0.0, "launch": 0.0})
        s["fwd" if t.work.phase == "fwd" else "bwd"] += t.seconds
        s[t.bound] += t.seconds
    out = []
    for name, s in stages.items():
        bound = max(("compute", "memory", "launch"), key=lambda b: s[b])
        out.append(StagePrediction(name, s["fwd"] * 1e3, s["bwd"] * 1e3, bound, (s["fwd"] + s["bwd"]) / step_s))
    return out
