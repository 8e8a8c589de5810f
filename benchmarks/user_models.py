"""Models as a user would bring them, for `summary_speed.py`: not netprobe's own `Net`."""

from torch import nn

import netprobe


def v2s_sequential() -> nn.Sequential:
    """EfficientNetV2-S as a plain nn.Sequential of its stages: counted through the generic path."""
    net = netprobe.build("efficientnetv2_s")
    return nn.Sequential(*net.children())
