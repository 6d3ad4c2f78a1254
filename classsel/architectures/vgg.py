"""VGG16 with batch norm: torchvision's ``vgg16_bn``, and a narrow variant for 28-32 pixel images.

A block is one convolution with its BN and ReLU; its units are the channels after the
ReLU, a unit's activation for an image the spatial mean of its channel. VGG16's 13
convolutions form five stages of 2, 2, 3, 3 and 3 (VGG's conv1_x..conv5_x), separated by
max-pools. The paper's modules 4-7 are stages 2-5 (``conv2``..``conv5``): like ResNet-50's
``layer1``..``layer4`` they are the last four stages before the classifier, each one halving
the resolution, and stage 1 at the input's full resolution stays out as ResNet's stem does.
A max-pool runs with the block after it (or the head), so a block's output is its ReLU's.

The class is this project's own (see :mod:`classsel.architectures`): ``VGG16(classes)`` is
torchvision's ``vgg16_bn`` exactly, and a torchvision VGG is described as well.
"""

from __future__ import annotations

import torch
from torch import nn

from . import ARCHS, LAYOUTS
from .base import Description, torchvision_classes

#: Convolutions per stage of VGG16.
STAGES = (2, 2, 3, 3, 3)


class VGG16(nn.Module):
    """VGG16-BN: ``features`` (stages of base width ``width``: ``w, 2w, 4w, 8w, 8w``, each
    convolution followed by BN and ReLU, a 2x2 max-pool after each stage), ``avgpool`` and a
    three-layer ``classifier`` with dropout.

    ``narrow=False`` (with width 64 and 3 channels) is torchvision's ``vgg16_bn``, with the
    same weights for the same seed: a 7x7 average pool and a ``25088 -> 4096 -> 4096`` classifier
    initialised N(0, 0.01). ``narrow=True`` is the variant for 28-32 pixel images: no max-pool
    after stage 1 (four halvings remain; 16 pixels at least), a global average pool and a
    ``8w -> 8w -> 8w`` classifier, He-initialised.
    """

    def __init__(self, num_classes: int = 1000, *, width: int = 64, in_channels: int = 3, narrow: bool = False,
                 dropout: float = 0.5) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for stage, (convs, out) in enumerate(zip(STAGES, (width, 2 * width, 4 * width, 8 * width, 8 * width))):
            for _ in range(convs):
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.BatchNorm2d(out), nn.ReLU(True)]
                channels = out
            layers.append(nn.Identity() if narrow and stage == 0 else nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        pool = 1 if narrow else 7
        hidden = channels if narrow else 4096
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool * pool, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                if narrow:
                    # torchvision's N(0, 0.01) keeps the signal through 25088- and 4096-wide layers;
                    # through 8w-wide ones it shrinks ~20-fold per layer and the network does not learn
                    # (seen: loss 2.30 after 5 epochs of the mnist preset). He initialisation keeps its scale.
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                else:
                    nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class VGGDescription(Description):
    layout = LAYOUTS["vgg"]

    def build(self, arch, num_classes, *, width=16, in_channels=3, image_size=None):
        if arch == "vgg16_bn":
            return VGG16(num_classes)
        if arch == "vgg16_narrow":
            return VGG16(num_classes, width=width, in_channels=in_channels, narrow=True)
        raise ValueError(f"{arch!r} is not a VGG; choose one of "
                         f"{', '.join(a for a in ARCHS if ARCHS[a].family == 'vgg')}")

    def describes(self, model):
        return isinstance(model, (VGG16, *torchvision_classes("vgg", "VGG")))

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
