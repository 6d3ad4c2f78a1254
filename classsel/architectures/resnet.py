"""ResNets: ResNet-18/34/50/101 as torchvision defines them, and a narrow ResNet-50 layout
for CPU-scale runs.

The paper's modules 4-7 are ``layer1``..``layer4`` (torchvision's names); a module's units
are the output channels of each residual block (Bottleneck, or BasicBlock for resnet18/34),
after the residual add and the final ReLU, and a unit's activation for an image is the
spatial mean of its channel.

The classes are this project's own (see :mod:`classsel.architectures`): they build
torchvision's networks exactly, and a torchvision ResNet is described as well.
"""

from __future__ import annotations

import torch
from torch import nn

from . import LAYOUTS, ARCHS
from .base import Description, torchvision_classes


def _conv(cin: int, cout: int, size: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free square convolution that keeps the size at stride 1 (1x1 or 3x3)."""
    return nn.Conv2d(cin, cout, size, stride=stride, padding=size // 2, bias=False)


class ResidualBlock(nn.Module):
    """A block's output: ReLU(residual branch + shortcut), the shortcut projected by
    ``downsample`` where the shape changes."""

    expansion: int

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        """The BN closing the residual branch (zeroed by ``zero_init_residual``)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions with BN, the first carrying the stride (resnet18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv(cin, planes, 3, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def residual(self, x):
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    @property
    def last_bn(self):
        return self.bn2


class Bottleneck(ResidualBlock):
    """1x1 down to ``planes``, 3x3 carrying the stride, 1x1 up to ``4 * planes``, each with BN."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv(cin, planes, 1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * self.expansion, 1)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def residual(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    @property
    def last_bn(self):
        return self.bn3


class ResNet(nn.Module):
    """A stem, four stages of residual blocks (``layer1``..``layer4``, widths ``w, 2w, 4w, 8w``
    times the block's expansion, each after the first halving the resolution), a global
    average pool and ``fc``.

    ``width=64, small_input=False`` with 3 input channels is torchvision's network for the
    same ``block`` and ``layers``, with the same weights for the same seed: modules are made,
    and then initialised, in torchvision's order, which fixes every random draw (a stage's
    shortcut projection is made before its first block). ``small_input=True`` replaces the
    7x7/2 convolution and max-pool with one 3x3/2 convolution, for 28-32 pixel images.
    """

    def __init__(self, block: type[ResidualBlock], layers, num_classes: int = 1000, *, width: int = 64,
                 in_channels: int = 3, small_input: bool = False, zero_init_residual: bool = False) -> None:
        super().__init__()
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        cin = width
        for i, count in enumerate(layers):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            cout = planes * block.expansion
            shortcut = None
            if stride != 1 or cin != cout:
                shortcut = nn.Sequential(_conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))
            stage = [block(cin, planes, stride, shortcut)] + [block(cout, planes) for _ in range(count - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            cin = cout
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    nn.init.constant_(m.last_bn.weight, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


#: torchvision's ImageNet ResNets: block and blocks per stage.
FULL = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


class ResNetDescription(Description):
    layout = LAYOUTS["resnet"]

    def build(self, arch, num_classes, *, width=16, in_channels=3, image_size=None, small_input=True):
        """``width``, ``in_channels`` and ``small_input`` apply to ``resnet50_narrow``; the
        torchvision architectures take 3-channel ImageNet-sized input."""
        if arch in FULL:
            return ResNet(*FULL[arch], num_classes)
        if arch == "resnet50_narrow":
            return ResNet(Bottleneck, FULL["resnet50"][1], num_classes, width=width, in_channels=in_channels,
                          small_input=small_input)
        raise ValueError(f"{arch!r} is not a ResNet; choose one of "
                         f"{', '.join(a for a in ARCHS if ARCHS[a].family == 'resnet')}")

    def describes(self, model):
        return isinstance(model, (ResNet, *torchvision_classes("resnet", "ResNet")))

    def pieces(self, model, module):
        layer = getattr(model, module, None)
        if not isinstance(layer, nn.Sequential):
            raise ValueError(f"model has no ResNet module {module!r}")
        kinds = (ResidualBlock, *torchvision_classes("resnet", "BasicBlock", "Bottleneck"))
        for i, block in enumerate(layer):
            if not isinstance(block, kinds):
                raise ValueError(f"{module}.{i} is a {type(block).__name__}, not a residual block")
        return list(layer)

    def unit_tensor(self, piece):
        last_bn = piece.bn3 if hasattr(piece, "bn3") else piece.bn2  # a Bottleneck's, else a BasicBlock's
        return piece, last_bn.num_features

    def stem(self, model, x):
        return model.maxpool(model.relu(model.bn1(model.conv1(x))))

    def head(self, model, h):
        return model.fc(torch.flatten(model.avgpool(h), 1))

    def shape_of(self, weights):
        return {"num_classes": weights["fc.weight"].shape[0], "in_channels": weights["conv1.weight"].shape[1]}


DESCRIPTION = ResNetDescription()
