"""netprobe: what a CNN is made of, stage by stage, and how fast it really trains and infers."""

from netprobe.api import build, list_archs
from netprobe.archs import BlockSpec, FeatureInfo, Net, NetSpec
from netprobe.bench import BenchConfig, BenchResult, benchmark
from netprobe.errors import InputError, NetprobeError, SpecError
from netprobe.spec import Spec, parse_spec
from netprobe.summary import Summary, summarize
from netprobe.target import Target, resolve

__version__ = "0.2.0"
__all__ = [
    "BenchConfig", "BenchResult", "BlockSpec", "FeatureInfo", "InputError", "Net", "NetSpec", "NetprobeError", "Spec",
    "SpecError", "Summary", "Target", "benchmark", "build", "list_archs", "parse_spec", "resolve", "summarize",
]
