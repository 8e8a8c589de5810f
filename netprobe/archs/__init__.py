"""Architecture tables, blocks, variants and the one builder."""

from netprobe.archs.builder import FeatureInfo, Net, build_net
from netprobe.archs.table import BlockSpec, NetSpec
from netprobe.archs.zoo import ARCHS, Arch

__all__ = ["ARCHS", "Arch", "BlockSpec", "FeatureInfo", "Net", "NetSpec", "build_net"]
