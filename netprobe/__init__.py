"""netprobe: what a CNN is made of, stage by stage, and how fast it really trains and infers.

The public names load on first use (PEP 562), so that `import netprobe` and the command line's
`--help` and `--version` do not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netprobe.lazy import exports
from netprobe.version import NETPROBE_VERSION

__version__ = NETPROBE_VERSION

__all__ = [
    "BenchConfig", "BenchResult", "BenchRun", "BlockSpec", "Comparison", "FeatureInfo", "InputError", "Net", "NetSpec",
    "NetprobeError", "Prediction", "Spec", "SpecError", "Summary", "Target", "benchmark", "build", "list_archs",
    "parse_spec", "predict", "resolve", "summarize",
]
_HOME = {"api": ("build", "list_archs"), "archs": ("BlockSpec", "FeatureInfo", "Net", "NetSpec"),
         "bench": ("BenchConfig", "BenchResult", "BenchRun", "benchmark"), "compare": ("Comparison",),
         "errors": ("InputError", "NetprobeError", "SpecError"), "prediction": ("Prediction", "predict"),
         "spec": ("Spec", "parse_spec"),
         "summary": ("Summary", "summarize"), "target": ("Target", "resolve")}

if TYPE_CHECKING:
    from netprobe.api import build, list_archs
    from netprobe.archs import BlockSpec, FeatureInfo, Net, NetSpec
    from netprobe.bench import BenchConfig, BenchResult, BenchRun, benchmark
    from netprobe.compare import Comparison
    from netprobe.errors import InputError, NetprobeError, SpecError
    from netprobe.prediction import Prediction, predict
    from netprobe.spec import Spec, parse_spec
    from netprobe.summary import Summary, summarize
    from netprobe.target import Target, resolve

__getattr__, __dir__ = exports("netprobe", _HOME, globals())
