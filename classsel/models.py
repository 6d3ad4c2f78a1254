"""Models: torchvision ResNets and a narrow ResNet-50 layout for CPU-scale runs.

The paper's "modules 4-7" are torchvision's ``layer1``..``layer4``; its units are the
output channels of every residual block (Bottleneck, or BasicBlock for resnet18/34).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from .config import ARCHS, MODULES, PAPER_NUMBER, check_modules

_TORCHVISION = {
    "resnet18": resnet.resnet18,
    "resnet34": resnet.resnet34,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
}
assert ARCHS == (*_TORCHVISION, "resnet50_narrow")


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


def build(
    arch: str,
    num_classes: int,
    *,
    width: int = 16,
    in_channels: int = 3,
    small_input: bool = True,
) -> ResNet:
    """Build ``arch`` (one of :data:`ARCHS`) with randomly initialised weights.

    ``width``, ``in_channels`` and ``small_input`` apply to ``resnet50_narrow``; the
    torchvision architectures take 3-channel ImageNet-sized input.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if arch in _TORCHVISION:
        return _TORCHVISION[arch](weights=None, num_classes=num_classes)
    if arch == "resnet50_narrow":
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        return NarrowResNet(
            num_classes=num_classes, width=width, in_channels=in_channels, small_input=small_input
        )
    raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")


@dataclass(frozen=True)
class Block:
    """One residual block: where it is, and the paper's number of its module."""

    name: str  # "layer3.2", the name in ``model.named_modules()``
    module: str  # "layer3"
    index: int  # 2: its position inside the module
    number: int  # 6: the paper's module number
    channels: int  # units = output channels
    block: nn.Module


def bottlenecks(model: nn.Module, modules=MODULES) -> list[Block]:
    """Every residual block of ``modules`` (default: all four) in forward order."""
    modules = check_modules(modules)
    blocks = []
    for module in modules:
        layer = getattr(model, module, None)
        if not isinstance(layer, nn.Sequential):
            raise ValueError(f"model has no ResNet module {module!r}")
        for i, block in enumerate(layer):
            if not isinstance(block, (Bottleneck, BasicBlock)):
                raise ValueError(f"{module}.{i} is a {type(block).__name__}, not a residual block")
            last_bn = block.bn3 if isinstance(block, Bottleneck) else block.bn2
            blocks.append(
                Block(
                    name=f"{module}.{i}",
                    module=module,
                    index=i,
                    number=PAPER_NUMBER[module],
                    channels=last_bn.num_features,
                    block=block,
                )
            )
    return blocks


class forward_hooks:
    """Context manager: ``fn(key, output)`` on the output of each ``{key: module}``.

    If ``fn`` returns a tensor, it replaces the module's output (used for ablation).
    """

    def __init__(self, modules: dict[str, nn.Module], fn: Callable[[str, torch.Tensor], object]):
        self.modules = modules
        self.fn = fn
        self.handles: list = []

    def __enter__(self):
        for key, module in self.modules.items():
            self.handles.append(module.register_forward_hook(self._hook(key)))
        return self

    def _hook(self, key):
        def hook(_module, _inputs, output):
            return self.fn(key, output)

        return hook

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()
        return False


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Context: ``model`` and all its submodules in eval mode; each module's own mode after.

    Restores every module's flag, not one flag for all, so a model with some parts in
    train mode and some in eval mode comes back as it was.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def device_of(model: nn.Module, device=None) -> torch.device:
    """``device`` if given, else the device of the model's first parameter (CPU without any)."""
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def named_layers(model: nn.Module, layers) -> dict[str, nn.Module]:
    """``{name: module}`` for names such as ``layer1`` or ``fc``; unknown names raise."""
    available = dict(model.named_modules())
    out = {}
    for name in layers:
        if name not in available or name == "":
            choices = ", ".join([*MODULES, "fc", "avgpool", "layerN.i"])
            raise ValueError(f"unknown layer name {name!r}; use a module name such as {choices}")
        out[name] = available[name]
    return out


def stem(model: ResNet, x: torch.Tensor) -> torch.Tensor:
    """The part of a torchvision ResNet's forward before ``layer1``."""
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))


def head(model: ResNet, x: torch.Tensor) -> torch.Tensor:
    """The part of a torchvision ResNet's forward after ``layer4``."""
    return model.fc(torch.flatten(model.avgpool(x), 1))
