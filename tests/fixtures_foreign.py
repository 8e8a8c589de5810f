"""Foreign nets written the way their authors wrote them, in plain torch (torchvision and timm do not import
here): ResNet-50, ViT-B/16 (with nn.MultiheadAttention, and with explicit matmuls), MobileNetV2 and
ConvNeXt-T in torchvision's module layout (same names, same parameter counts), and a UNet with transposed
convs in the common from-scratch style (named encoder levels, a bottleneck, decoder levels, an output conv).
Importable as `module:fixtures_foreign:resnet50` and as `tests/fixtures_foreign.py:resnet50`; weights are
left uninitialised where torchvision's init would only cost time (counting never reads them)."""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

# ---- ResNet-50 (torchvision.models.resnet) --------------------------------------------------------


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: the stride sits in the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)  # one module called three times, as torchvision does
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(num_classes: int = 1000) -> ResNet:
    return ResNet((3, 4, 6, 3), num_classes)


# ---- ViT-B/16 (torchvision.models.vision_transformer) ----------------------------------------------


class MLPBlock(nn.Sequential):
    def __init__(self, dim: int, mlp_dim: int) -> None:
        super().__init__(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(mlp_dim, dim), nn.Dropout(0.0))


class SelfAttention(nn.Module):
    """Multi-head self-attention written out: one qkv projection, Q K^T, softmax, times V, an out projection
    (the same parameters as nn.MultiheadAttention's in_proj and out_proj)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) / math.sqrt(dim // self.heads)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, length, dim))


class EncoderBlock(nn.Module):
    def __init__(self, heads: int, dim: int, mlp_dim: int, explicit: bool = False) -> None:
        super().__init__()
        self.explicit = explicit
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = (SelfAttention(dim, heads) if explicit
                               else nn.MultiheadAttention(dim, heads, dropout=0.0, batch_first=True))
        self.dropout = nn.Dropout(0.0)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, mlp_dim)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(input)
        if self.explicit:
            x = self.self_attention(x)
        else:
            x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + input
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq_length: int, layers: int, heads: int, dim: int, mlp_dim: int, explicit: bool) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, dim))
        self.dropout = nn.Dropout(0.0)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(heads, dim, mlp_dim, explicit)) for i in range(layers)))
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(input + self.pos_embedding)))


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int = 224, patch_size: int = 16, layers: int = 12, heads: int = 12,
                 dim: int = 768, mlp_dim: int = 3072, num_classes: int = 1000, explicit: bool = False) -> None:
        super().__init__()
        self.patch_size, self.dim = patch_size, dim
        self.conv_proj = nn.Conv2d(3, dim, patch_size, patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq_length, layers, heads, dim, mlp_dim, explicit)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(dim, num_classes)))

    def _process_input(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        x = self.conv_proj(x)
        return x.reshape(n, self.dim, (h // self.patch_size) * (w // self.patch_size)).permute(0, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._process_input(x)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


def vit_b_16(num_classes: int = 1000) -> VisionTransformer:
    return VisionTransformer(num_classes=num_classes)


def vit_b_16_explicit(num_classes: int = 1000) -> VisionTransformer:
    """ViT-B/16 whose attention is written with `@` instead of nn.MultiheadAttention."""
    return VisionTransformer(num_classes=num_classes, explicit=True)


# ---- MobileNetV2 (torchvision.models.mobilenetv2) -------------------------------------------------


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6, padding: int | None = None,
                 bias: bool | None = None) -> None:
        padding = (kernel_size - 1) // 2 if padding is None else padding
        layers = [nn.Conv2d(cin, cout, kernel_size, stride, padding, groups=groups,
                            bias=norm_layer is None if bias is None else bias)]
        layers += [norm_layer(cout)] if norm_layer is not None else []
        layers += [activation_layer()] if activation_layer is not None else []
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = [Conv2dNormActivation(inp, hidden, 1)] if expand_ratio != 1 else []
        layers += [Conv2dNormActivation(hidden, hidden, stride=stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1))  # t (expansion), c (channels), n (repeats), s (first stride)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        channels = 32
        features: list[nn.Module] = [Conv2dNormActivation(3, channels, stride=2)]
        for t, c, n, s in MOBILENET_V2_SETTING:
            for i in range(n):
                features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        features.append(Conv2dNormActivation(channels, 1280, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))  # the pool is the top-level forward's own op
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000) -> MobileNetV2:
    return MobileNetV2(num_classes)


# ---- ConvNeXt-T (torchvision.models.convnext) ----------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class StochasticDepth(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x  # identity in eval, where counting runs


class CNBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float, stochastic_depth_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, 7, padding=3, groups=dim, bias=True), Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]))
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        result = self.stochastic_depth(self.layer_scale * self.block(input))
        result += input
        return result


class ConvNeXt(nn.Module):
    def __init__(self, setting: tuple = ((96, 192, 3), (192, 384, 3), (384, 768, 9), (768, None, 3)),
                 stochastic_depth_prob: float = 0.1, num_classes: int = 1000) -> None:
        super().__init__()
        norm = partial(LayerNorm2d, eps=1e-6)
        layers: list[nn.Module] = [Conv2dNormActivation(3, setting[0][0], 4, 4, padding=0, norm_layer=norm,
                                                        activation_layer=None, bias=True)]
        total, done = sum(n for _, _, n in setting), 0
        for cin, cout, n in setting:
            stage = []
            for _ in range(n):
                stage.append(CNBlock(cin, 1e-6, stochastic_depth_prob * done / (total - 1)))
                done += 1
            layers.append(nn.Sequential(*stage))
            if cout is not None:
                layers.append(nn.Sequential(norm(cin), nn.Conv2d(cin, cout, 2, 2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = setting[-1][0]
        self.classifier = nn.Sequential(norm(last), nn.Flatten(1), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def convnext_tiny(num_classes: int = 1000) -> ConvNeXt:
    return ConvNeXt(num_classes=num_classes)


# ---- UNet with transposed convs (the common from-scratch layout) ------------------------------------


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Four encoder levels each halving the map, a bottleneck at stride 16, four decoder levels each
    doubling it back with a transposed conv and a skip concatenation, and a 1x1 output conv."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w = width
        self.encoder1, self.pool1 = double_conv(in_channels, w), nn.MaxPool2d(2, 2)
        self.encoder2, self.pool2 = double_conv(w, 2 * w), nn.MaxPool2d(2, 2)
        self.encoder3, self.pool3 = double_conv(2 * w, 4 * w), nn.MaxPool2d(2, 2)
        self.encoder4, self.pool4 = double_conv(4 * w, 8 * w), nn.MaxPool2d(2, 2)
        self.bottleneck = double_conv(8 * w, 16 * w)
        self.upconv4, self.decoder4 = nn.ConvTranspose2d(16 * w, 8 * w, 2, 2), double_conv(16 * w, 8 * w)
        self.upconv3, self.decoder3 = nn.ConvTranspose2d(8 * w, 4 * w, 2, 2), double_conv(8 * w, 4 * w)
        self.upconv2, self.decoder2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, 2), double_conv(4 * w, 2 * w)
        self.upconv1, self.decoder1 = nn.ConvTranspose2d(2 * w, w, 2, 2), double_conv(2 * w, w)
        self.conv = nn.Conv2d(w, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        enc1 = self.encoder1(x)
        enc2 = self.encoder2(self.pool1(enc1))
        enc3 = self.encoder3(self.pool2(enc2))
        enc4 = self.encoder4(self.pool3(enc3))
        bottleneck = self.bottleneck(self.pool4(enc4))
        dec4 = self.decoder4(torch.cat((self.upconv4(bottleneck), enc4), dim=1))
        dec3 = self.decoder3(torch.cat((self.upconv3(dec4), enc3), dim=1))
        dec2 = self.decoder2(torch.cat((self.upconv2(dec3), enc2), dim=1))
        dec1 = self.decoder1(torch.cat((self.upconv1(dec2), enc1), dim=1))
        return torch.sigmoid(self.conv(dec1))


def unet(width: int = 32) -> UNet:
    return UNet(width=width)


# ---- bad input: forwards that fail, or give back no tensor ------------------------------------------


class DeepFailure(nn.Module):
    """Raises deep inside: the third block ends with a Linear that gets a map of the wrong width."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU()) for _ in range(3)])
        self.blocks[2].append(nn.Linear(16, 4))  # applied to an 8-channel map's last dim: a shape error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class ReturnsNothing(nn.Module):
    def __init__(self, result: object = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.result = result

    def forward(self, x: torch.Tensor) -> object:
        self.conv(x)
        return self.result


class Gate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 4:  # a user's own check, its message in brackets that look like markup
            raise ValueError(f"[bold]gate[/bold] wants 4 channels, got {x.shape[1]}")
        return x


class RaisesMarkup(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()
        self.conv = nn.Conv2d(4, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.gate(x))


def deep_failure() -> DeepFailure:
    return DeepFailure()


def raises_markup() -> RaisesMarkup:
    return RaisesMarkup()


def returns_none() -> ReturnsNothing:
    return ReturnsNothing(None)


def returns_text() -> ReturnsNothing:
    return ReturnsNothing("done")
