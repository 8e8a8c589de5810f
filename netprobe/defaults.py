"""Every default and limit that a command, the Python API and their messages share, in one place.

Torch-free and import-free, so the CLI reads it for `--help` without starting torch, the API reads
it for its dataclass defaults, and a message that states a bound states this one. A test checks that
every CLI default equals the API's.
"""

from __future__ import annotations

# ---- what runs when nothing is said ---------------------------------------------------------------

DEFAULT_MODEL = "efficientnetv2_s"  # bench and summary without a model: the EfficientNetV2 paper's reference
FUSED_STAGES_BASE = "efficientnet_b4"  # compare fused-stages without --base: the paper's Table 3
BATCH_IMGSZ_BASE = "efficientnet_b6"  # compare batch-imgsz without --base: the paper's Table 2

# predict --calibrate without models: three families (dense, depthwise with SE, fused and depthwise), small
CALIBRATION_MODELS = ("resnet18", "mobilenetv3_large", "efficientnetv2_s")
CALIBRATION_BATCH = 4
CALIBRATION_IMGSZ = "128,192"  # two sizes: a kind's fixed cost per op and its cost per pixel come apart
CALIBRATION_ITERS = 5
CALIBRATION_ROUNDS = 2  # interleaved: a shared machine's speed drifts from minute to minute

# ---- one measurement ------------------------------------------------------------------------------

DEVICE = "auto"  # CUDA when present, else the CPU
BATCH = 8  # bench's batch
WARMUP_STEPS = 3  # untimed steps at least (warm-up also lasts until step times are steady)
ITERS = 10  # timed steps
MAX_WARMUP_S = 10.0  # the ceiling of warm-up once its first steps are done
MAX_WARMUP_LIMIT_S = 3600.0  # the highest ceiling a user may set
BUILD_TIMEOUT_S = 120.0  # seconds a user's code may take to build a model (0: no limit)
MAX_BUILD_TIMEOUT_S = 86_400.0

# (low, high) of each integer a user gives, inclusive; messages state these
LIMITS: dict[str, tuple[int, int]] = {
    "batch": (1, 65_536),
    "iters": (1, 100_000),
    "warmup": (0, 10_000),
    "rounds": (1, 1_000),
    "in_chans": (1, 4_096),
    "world_sizes": (1, 4_096),
    "side": (1, 8_192),  # pixels per image side (the lower bound depends on the model)
}
MAX_CHANNELS = 65_536  # channels of one layer: a block's inside, a detector YAML row after scaling
MAX_BATCH = LIMITS["batch"][1]
MAX_SIDE = LIMITS["side"][1]

# ---- compare: the paper's settings on CUDA, minutes on a CPU --------------------------------------

COMPARE_CUDA = {"batch": 24, "warmup": 3, "iters": 10}  # imgsz: the base arch's own (the paper's setting)
COMPARE_CPU = {"batch": 8, "imgsz": 128, "warmup": 1, "iters": 2}
COMPARE_ROUNDS = 3
BATCH_IMGSZ_GRID = {"cuda": ([12, 24], [380, 512]), "cpu": ([2, 4], [128, 160])}  # (batches, sizes)

# ---- data-parallel (--nproc) ----------------------------------------------------------------------

BUCKET_MB = 25  # DDP's own default gradient bucket
MAX_BUCKET_MB = 1024
DIST_TIMEOUT_S = 600  # seconds without progress before the ranks are stopped
MAX_DIST_TIMEOUT_S = 86_400  # a day

# ---- counting -------------------------------------------------------------------------------------

MAC_KINDS = ("conv", "linear", "matmul")  # ops counted as multiply-accumulates
OTHER_KINDS = ("norm", "act", "mul", "add", "pool", "resize", "concat")  # element ops, one per output element
COUNTED_KINDS = MAC_KINDS + OTHER_KINDS

# ---- messages -------------------------------------------------------------------------------------

PATH_LIMIT = 240  # characters of a path shown in a message
