"""The zoo as test parameters: every arch, the largest marked slow (a real CPU forward and backward of each
takes seconds; `pytest -m "not slow"` keeps the small members of every family)."""

import pytest

from netprobe.archs import ARCHS

LARGE = {"efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnetv2_m", "efficientnetv2_l",
         "efficientnetv2_xl", "resnet101"}
ZOO = [pytest.param(arch, marks=pytest.mark.slow) if arch in LARGE else arch for arch in ARCHS]
