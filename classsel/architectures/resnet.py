"""ResNets: torchvision's, and a narrow ResNet-50 layout for CPU-scale runs.

The paper's modules 4-7 are torchvision's ``layer1``..``layer4``; a module's units are
the output channels of each residual block (Bottleneck, or BasicBlock for resnet18/34),
after the residual add and the final ReLU, and a unit's activation for an image is the
spatial mean of its channel.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from . import LAYOUTS, ARCHS
from .base import Description

_TORCHVISION = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
}


class NarrowResNet(ResNet):
    """ResNet with a chosen base width and an optional small-input stem.

    ``width=64, small_input=False`` builds the same network as torchvision's
    ``resnet50``, with the same weights for the same seed. ``small_input=True`` replaces
    the 7x7/2 conv and max-pool with one 3x3/2 conv, for 28-32 pixel images.

    The body is ``ResNet.__init__``'s with the widths as parameters: that constructor
    fixes a 3-channel 64-wide stem, widths 64..512 and a 2048-wide ``fc``, and making
    those only to replace them would draw other random numbers, changing the weights
    (and so every run) of each seed; ``tests/test_models.py`` pins them.
    """

    def __init__(
        self,
        layers: list[int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        width: int = 16,
        in_channels: int = 3,
        small_input: bool = True,
        zero_init_residual: bool = False,
    ) -> None:
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(Bottleneck, width, layers[0])
        self.layer2 = self._make_layer(Bottleneck, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(Bottleneck, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(Bottleneck, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * Bottleneck.expansion, num_classes)
        # Same initialisation as torchvision's ResNet.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)


class ResNetDescription(Description):
    layout = LAYOUTS["resnet"]

    def build(self, arch, num_classes, *, width=16, in_channels=3, image_size=None, small_input=True):
        """``width``, ``in_channels`` and ``small_input`` apply to ``resnet50_narrow``; the
        torchvision architectures take 3-channel ImageNet-sized input."""
        if arch in _TORCHVISION:
            return _TORCHVISION[arch](weights=None, num_classes=num_classes)
        if arch == "resnet50_narrow":
            return NarrowResNet(num_classes=num_classes, width=width, in_channels=in_channels,
                                small_input=small_input)
        raise ValueError(f"{arch!r} is not a ResNet; choose one of "
                         f"{', '.join(a for a in ARCHS if ARCHS[a].family == 'resnet')}")

    def describes(self, model):
        return isinstance(model, ResNet)

    def pieces(self, model, module):
        layer = getattr(model, module, None)
        if not isinstance(layer, nn.Sequential):
            raise ValueError(f"model has no ResNet module {module!r}")
        for i, block in enumerate(layer):
            if not isinstance(block, (Bottleneck, BasicBlock)):
                raise ValueError(f"{module}.{i} is a {type(block).__name__}, not a residual block")
        return list(layer)

    def unit_tensor(self, piece):
        last_bn = piece.bn3 if isinstance(piece, Bottleneck) else piece.bn2
        return piece, last_bn.num_features

    def stem(self, model, x):
        return model.maxpool(model.relu(model.bn1(model.conv1(x))))

    def head(self, model, h):
        return model.fc(torch.flatten(model.avgpool(h), 1))

    def shape_of(self, weights):
        return {"num_classes": weights["fc.weight"].shape[0], "in_channels": weights["conv1.weight"].shape[1]}


DESCRIPTION = ResNetDescription()
