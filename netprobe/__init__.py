"""netprobe: what a CNN backbone is made of, stage by stage, and how fast it really runs."""

from netprobe.api import build, list_archs
from netprobe.archs import BlockSpec, FeatureInfo, Net, NetSpec
from netprobe.errors import InputError, NetprobeError, SpecError
from netprobe.spec import Spec, parse_spec

__version__ = "0.1.0"
__all__ = [
    "BlockSpec", "FeatureInfo", "InputError", "Net", "NetSpec", "NetprobeError", "Spec", "SpecError",
    "build", "list_archs", "parse_spec",
]
