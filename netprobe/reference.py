"""Published figures, shown beside netprobe's measurements and always labelled with their source."""

from __future__ import annotations

# torchvision's model metadata: exact parameter counts and GFLOPS (really GMACs) at the eval size.
TORCHVISION = {
    "efficientnet_b0": (5_288_548, 0.386), "efficientnet_b1": (7_794_184, 0.687),
    "efficientnet_b2": (9_109_994, 1.088), "efficientnet_b3": (12_233_232, 1.827),
    "efficientnet_b4": (19_341_616, 4.394), "efficientnet_b5": (30_389_784, 10.266),
    "efficientnet_b6": (43_040_704, 19.068), "efficientnet_b7": (66_347_960, 37.746),
    "efficientnetv2_s": (21_458_488, 8.366), "efficientnetv2_m": (54_139_356, 24.582),
    "efficientnetv2_l": (118_515_272, 56.08),
    "mobilenetv3_large": (5_483_032, 0.217), "mobilenetv3_small": (2_542_856, 0.057),
    "resnet18": (11_689_512, 1.814), "resnet34": (21_797_672, 3.664), "resnet50": (25_557_032, 4.089),
    "resnet101": (44_549_160, 7.801),
}
# torchvision evaluates B2 at 288 px; its GFLOPS figure is for that size, not the paper's 260.
TORCHVISION_IMGSZ = {"efficientnet_b2": 288}

# EfficientNetV2 paper (arXiv:2104.00298 v1), Table 3: EfficientNet-B4 with Fused-MBConv stages.
# fused stages -> (params M, FLOPs B [= MACs], top-1 %, TPUv3 imgs/s/core, V100 imgs/s/gpu)
PAPER_TABLE3 = {
    "none": (19.3, 4.5, 82.8, 262, 155),
    "1-3": (20.0, 7.5, 83.1, 362, 216),
    "1-5": (43.4, 21.3, 83.1, 327, 223),
    "1-7": (132.0, 34.4, 81.7, 254, 206),
}
# Table 2: EfficientNet-B6 train imgs/s on a 16 GB V100 by (image size, batch); None = OOM.
PAPER_TABLE2_V100 = {(512, 12): 29, (512, 24): None, (380, 12): 37, (380, 24): 52}
# Table 2 whole: train size -> (top-1 %, TPUv3 imgs/s/core at batch 32, at batch 128, V100 imgs/s/gpu at batch 12,
# at batch 24); None = OOM.
PAPER_TABLE2 = {512: (84.3, 42, None, 29, None), 380: (84.6, 76, 93, 37, 52)}
# What the paper's own training code does by default (google/automl efficientnetv2/hparams.py, base_config):
# why its Table 2 fits and OOMs are AMP's, not PyTorch eager fp32's.
PAPER_CODE_DEFAULTS = ("the paper's code (google/automl efficientnetv2/hparams.py, base_config) trains with "
                       "runtime.mixed_precision=True, RMSprop (two state buffers, SGD's one) and an EMA of the weights")
