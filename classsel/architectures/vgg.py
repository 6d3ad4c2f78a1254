"""VGG16 with batch norm: torchvision's ``vgg16_bn``, and a narrow variant for 28-32 pixel images.

A block is one convolution with its BN and ReLU; its units are the channels after the
ReLU, a unit's activation for an image the spatial mean of its channel. VGG16's 13
convolutions form five stages of 2, 2, 3, 3 and 3 (VGG's conv1_x..conv5_x), separated by
max-pools. The paper's modules 4-7 are stages 2-5 (``conv2``..``conv5``): like ResNet-50's
``layer1``..``layer4`` they are the last four stages before the classifier, each one halving
the resolution, and stage 1 at the input's full resolution stays out as ResNet's stem does.
A max-pool runs with the block after it (or the head), so a block's output is its ReLU's.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import vgg

from . import ARCHS, LAYOUTS
from .base import Description

#: Convolutions per stage of VGG16.
STAGES = (2, 2, 3, 3, 3)


class NarrowVGG(vgg.VGG):
    """VGG16-BN with base width ``width`` (stages ``w, 2w, 4w, 8w, 8w``), any input channels,
    a classifier ``8w -> 8w -> 8w -> classes`` after a global average pool (He-initialised),
    and no max-pool after stage 1 with ``small_input`` (28-32 pixel images keep four halvings;
    16 pixels at least).

    The body is ``VGG.__init__``'s with the widths as parameters: that constructor would
    first make a 100-million-weight classifier for 224-pixel images only to replace it."""

    def __init__(self, num_classes: int, width: int = 16, in_channels: int = 3, small_input: bool = True,
                 dropout: float = 0.5) -> None:
        nn.Module.__init__(self)
        layers: list[nn.Module] = []
        channels = in_channels
        for stage, (convs, out) in enumerate(zip(STAGES, (width, 2 * width, 4 * width, 8 * width, 8 * width))):
            for _ in range(convs):
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.BatchNorm2d(out), nn.ReLU(True)]
                channels = out
            layers.append(nn.Identity() if small_input and stage == 0 else nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(
            nn.Linear(channels, channels), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(channels, channels), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(channels, num_classes),
        )
        # Same initialisation as torchvision's VGG.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                # torchvision's N(0, 0.01) keeps the signal through 25088- and 4096-wide layers; through
                # 8w-wide ones it shrinks ~20-fold per layer and the network does not learn (seen: loss
                # 2.30 after 5 epochs of the mnist preset). He initialisation keeps its scale.
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.constant_(m.bias, 0)


class VGGDescription(Description):
    layout = LAYOUTS["vgg"]

    def build(self, arch, num_classes, *, width=16, in_channels=3, image_size=None):
        if arch == "vgg16_bn":
            return vgg.vgg16_bn(weights=None, num_classes=num_classes)
        if arch == "vgg16_narrow":
            return NarrowVGG(num_classes, width=width, in_channels=in_channels)
        raise ValueError(f"{arch!r} is not a VGG; choose one of "
                         f"{', '.join(a for a in ARCHS if ARCHS[a].family == 'vgg')}")

    def describes(self, model):
        return isinstance(model, vgg.VGG)

    def _stages(self, model) -> tuple[list[list[nn.Sequential]], list[nn.Module]]:
        """The conv blocks of each of the five stages, each block with the pools before it,
        and the pools after the last block."""
        blocks, pending = [], []
        for layer in model.features:
            if isinstance(layer, nn.Conv2d):
                blocks.append([*pending, layer])
                pending = []
            elif isinstance(layer, (nn.BatchNorm2d, nn.ReLU)) and blocks and not pending:
                blocks[-1].append(layer)
            else:
                pending.append(layer)
        if len(blocks) != sum(STAGES) or not all(isinstance(b[-1], nn.ReLU) for b in blocks):
            raise ValueError(f"model.features holds {len(blocks)} convolutions, not VGG16's {sum(STAGES)} "
                             "each followed by its BN and ReLU")
        stages, start = [], 0
        for n in STAGES:
            stages.append([nn.Sequential(*b) for b in blocks[start:start + n]])
            start += n
        return stages, pending

    def pieces(self, model, module):
        return self._stages(model)[0][1 + self.layout.modules.index(module)]

    def unit_tensor(self, piece):
        conv = next(m for m in piece if isinstance(m, nn.Conv2d))
        return piece[-1], conv.out_channels

    def stem(self, model, x):
        for piece in self._stages(model)[0][0]:
            x = piece(x)
        return x

    def head(self, model, h):
        for layer in self._stages(model)[1]:
            h = layer(h)
        return model.classifier(torch.flatten(model.avgpool(h), 1))

    def shape_of(self, weights):
        return {"num_classes": weights["classifier.6.weight"].shape[0],
                "in_channels": weights["features.0.weight"].shape[1]}


DESCRIPTION = VGGDescription()
