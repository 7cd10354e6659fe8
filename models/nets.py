"""Networks FINN can streamline and turn into MVAU/VVAU/Thresholding layers.

Each network takes a `Recipe` and asks it for every quantized layer, so `qat`, `a2q` and
`a2q+` apply to all of them the same way. Weight layers have no bias and are followed by
BatchNorm and a quantized activation (FINN folds both into thresholds). A layer's
`LayerSpec.name` is its module path, so per-layer P overrides and the exported metadata
name layers the way `model.named_modules()` does.

`width` scales every channel count and `depth` the number of repeated blocks, so CPU runs
stay short; defaults are sized for the bundled datasets.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .catalog import NETWORK_NAMES
from .recipes import LayerSpec, Recipe


class _Specs:
    """Hands out LayerSpecs in order, tracking each layer's input bits and signedness."""

    def __init__(self, recipe: Recipe, input_signed: bool, n_layers: int):
        self.recipe, self.n_layers, self.index = recipe, n_layers, 0
        self.bits, self.signed = recipe.input_bits, input_signed

    def next(self, name: str, depthwise: bool = False) -> LayerSpec:
        spec = self.recipe.layer_spec(
            name, input_bits=self.bits, input_signed=self.signed, depthwise=depthwise,
            first=self.index == 0, last=self.index == self.n_layers - 1)
        self.index += 1
        # every layer after the first reads a QuantReLU output
        self.bits, self.signed = self.recipe.act_bits, False
        return spec


def _scaled(channels: tuple[int, ...], width: float) -> list[int]:
    return [max(2, int(round(c * width))) for c in channels]


class TFC(nn.Module):
    """FINN's TFC family: an MLP of quantized Linear + BatchNorm + ReLU layers."""

    def __init__(self, recipe: Recipe, input_shape: tuple[int, ...], num_classes: int,
                 input_signed: bool = False, hidden: tuple[int, ...] = (64, 64, 64), width: float = 1.0,
                 depth: int | None = None):
        super().__init__()
        sizes = _scaled(hidden, width)[: depth or len(hidden)]
        features = [int(torch.tensor(input_shape).prod())] + sizes + [num_classes]
        specs = _Specs(recipe, input_signed, len(features) - 1)
        self.input_quant = recipe.input_quant(input_signed)
        self.fc = nn.ModuleList()
        self.bn = nn.ModuleList()
        self.act = nn.ModuleList()
        for i, (fin, fout) in enumerate(zip(features[:-1], features[1:])):
            self.fc.append(recipe.linear(specs.next(f"fc.{i}"), fin, fout))
            if i < len(features) - 2:
                self.bn.append(nn.BatchNorm1d(fout))
                self.act.append(recipe.relu())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_quant(x.flatten(1))
        for i, fc in enumerate(self.fc):
            x = fc(x)
            if i < len(self.bn):
                x = self.act[i](self.bn[i](x))
        return x


class CNV(nn.Module):
    """FINN's CNV family: pairs of 3x3 conv layers with max-pooling, then dense layers."""

    def __init__(self, recipe: Recipe, input_shape: tuple[int, ...], num_classes: int,
                 input_signed: bool = False, channels: tuple[int, ...] = (16, 16, 32, 32),
                 pool_after: tuple[int, ...] = (1, 3), dense: tuple[int, ...] = (64,), padding: int = 1,
                 width: float = 1.0):
        super().__init__()
        chans = _scaled(channels, width)
        dense = _scaled(dense, width)
        in_ch, h, w = input_shape
        specs = _Specs(recipe, input_signed, len(chans) + len(dense) + 1)
        self.input_quant = recipe.input_quant(input_signed)
        convs: list[nn.Module] = []
        for i, out_ch in enumerate(chans):
            convs += [recipe.conv2d(specs.next(f"features.{len(convs)}"), in_ch, out_ch, 3, padding=padding),
                      nn.BatchNorm2d(out_ch), recipe.relu()]
            h, w, in_ch = h - 2 + 2 * padding, w - 2 + 2 * padding, out_ch
            if i in pool_after:
                convs.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
        self.features = nn.Sequential(*convs)
        fcs: list[nn.Module] = []
        fin = in_ch * h * w
        for fout in dense:
            fcs += [recipe.linear(specs.next(f"classifier.{len(fcs)}"), fin, fout),
                    nn.BatchNorm1d(fout), recipe.relu()]
            fin = fout
        fcs.append(recipe.linear(specs.next(f"classifier.{len(fcs)}"), fin, num_classes))
        self.classifier = nn.Sequential(*fcs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.input_quant(x))
        return self.classifier(x.flatten(1))


class MobileNet(nn.Module):
    """MobileNetV1 style: a 3x3 stem, then depthwise-separable blocks (dw 3x3 + pw 1x1)."""

    def __init__(self, recipe: Recipe, input_shape: tuple[int, ...], num_classes: int,
                 input_signed: bool = False, stem: int = 16,
                 blocks: tuple[tuple[int, int], ...] = ((32, 1), (32, 2), (64, 2)), width: float = 1.0):
        super().__init__()
        in_ch, h, w = input_shape
        stem = _scaled((stem,), width)[0]
        outs = _scaled(tuple(c for c, _ in blocks), width)
        specs = _Specs(recipe, input_signed, 2 + 2 * len(blocks))
        self.input_quant = recipe.input_quant(input_signed)
        layers: list[nn.Module] = [recipe.conv2d(specs.next("features.0"), in_ch, stem, 3, padding=1),
                                   nn.BatchNorm2d(stem), recipe.relu()]
        ch = stem
        for out_ch, (_, stride) in zip(outs, blocks):
            layers += [recipe.conv2d(specs.next(f"features.{len(layers)}", depthwise=True), ch, ch, 3,
                                     stride=stride, padding=1, groups=ch),
                       nn.BatchNorm2d(ch), recipe.relu()]
            layers += [recipe.conv2d(specs.next(f"features.{len(layers)}"), ch, out_ch, 1),
                       nn.BatchNorm2d(out_ch), recipe.relu()]
            ch = out_ch
            h, w = (h + stride - 1) // stride, (w + stride - 1) // stride
        self.features = nn.Sequential(*layers)
        self.classifier = recipe.linear(specs.next("classifier"), ch * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.input_quant(x)).flatten(1))


class ResidualBlock(nn.Module):
    """conv-bn-relu-conv-bn plus identity skip. Both branches pass one shared signed
    quantizer, so the add sees equal scales (what FINN needs to turn it into an add)."""

    def __init__(self, recipe: Recipe, specs: _Specs, prefix: str, ch: int):
        super().__init__()
        self.conv1 = recipe.conv2d(specs.next(f"{prefix}.conv1"), ch, ch, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(ch)
        self.act1 = recipe.relu()
        self.conv2 = recipe.conv2d(specs.next(f"{prefix}.conv2"), ch, ch, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(ch)
        self.add_quant = recipe.signed_act(recipe.act_bits + 1)
        self.act2 = recipe.relu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(self.add_quant(y) + self.add_quant(x))


class ResNet(nn.Module):
    """A small ResNet: a stem conv, residual blocks per stage, max-pool between stages."""

    def __init__(self, recipe: Recipe, input_shape: tuple[int, ...], num_classes: int,
                 input_signed: bool = False, stages: tuple[int, ...] = (16, 32), depth: int = 1,
                 width: float = 1.0):
        super().__init__()
        in_ch, h, w = input_shape
        chans = _scaled(stages, width)
        specs = _Specs(recipe, input_signed, 1 + len(chans) * 2 * depth + (len(chans) - 1) + 1)
        self.input_quant = recipe.input_quant(input_signed)
        self.stem = recipe.conv2d(specs.next("stem"), in_ch, chans[0], 3, padding=1)
        self.stem_bn = nn.BatchNorm2d(chans[0])
        self.stem_act = recipe.relu()
        stages_: list[nn.Module] = []
        for s, ch in enumerate(chans):
            if s > 0:
                stages_ += [nn.MaxPool2d(2),
                            recipe.conv2d(specs.next(f"stages.{len(stages_) + 1}"), chans[s - 1], ch, 1),
                            nn.BatchNorm2d(ch), recipe.relu()]
                h, w = h // 2, w // 2
            for _ in range(depth):
                stages_.append(ResidualBlock(recipe, specs, f"stages.{len(stages_)}", ch))
        self.stages = nn.Sequential(*stages_)
        self.pool = nn.MaxPool2d(2)
        self.classifier = recipe.linear(specs.next("classifier"), chans[-1] * (h // 2) * (w // 2), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem(self.input_quant(x))))
        return self.classifier(self.pool(self.stages(x)).flatten(1))


class ESPCN(nn.Module):
    """ESPCN-style super-resolution as in brevitas' A2Q example: conv layers on the
    low-resolution image, then nearest-neighbour upsampling and a final conv (FINN has no
    pixel shuffle; resize + conv is what it converts)."""

    def __init__(self, recipe: Recipe, input_shape: tuple[int, ...], upscale: int = 3,
                 input_signed: bool = False, channels: tuple[int, ...] = (32, 32, 16), width: float = 1.0):
        super().__init__()
        in_ch = input_shape[0]
        chans = _scaled(channels, width)
        specs = _Specs(recipe, input_signed, len(chans) + 1)
        self.input_quant = recipe.input_quant(input_signed)
        layers: list[nn.Module] = []
        ch = in_ch
        for i, out_ch in enumerate(chans):
            k = 5 if i == 0 else 3
            layers += [recipe.conv2d(specs.next(f"features.{len(layers)}"), ch, out_ch, k, padding=k // 2),
                       nn.BatchNorm2d(out_ch), recipe.relu()]
            ch = out_ch
        self.features = nn.Sequential(*layers)
        self.upsample = nn.Upsample(scale_factor=upscale, mode="nearest")
        self.out_conv = recipe.conv2d(specs.next("out_conv"), ch, in_ch, 3, padding=1)
        self.out_act = recipe.relu(8, output=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsample(self.features(self.input_quant(x)))
        return self.out_act(self.out_conv(x))


NETWORKS: dict[str, Callable[..., nn.Module]] = dict(zip(NETWORK_NAMES, (TFC, CNV, MobileNet, ResNet, ESPCN)))
