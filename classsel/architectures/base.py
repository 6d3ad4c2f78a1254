"""What a family's description answers, and the two ways a unit tensor becomes one value
per unit per image (eq. 1 compares class means of those values)."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import check_modules
from . import Layout


def spatial_mean(output: torch.Tensor) -> torch.Tensor:
    """A convolutional unit's activation per image: the spatial mean of its channel, ``[N, C]``."""
    if output.dim() != 4:
        raise ValueError(f"expected a 4-d [N, C, H, W] feature map to average over its positions, "
                         f"got shape {tuple(output.shape)}")
    return output.mean(dim=(2, 3))


def token_mean(output: torch.Tensor) -> torch.Tensor:
    """A transformer unit's activation per image: its mean over the tokens, ``[N, D]``."""
    if output.dim() != 3:
        raise ValueError(f"expected a 3-d [N, tokens, D] token tensor to average over its tokens, "
                         f"got shape {tuple(output.shape)}")
    return output.mean(dim=1)


@dataclass(frozen=True)
class Block:
    """One block of a module: where it is, the paper's number of its module, and its units."""

    name: str  # "layer3.2": "<module>.<index>"
    module: str  # "layer3"
    index: int  # 2: its position inside the module
    number: int  # 6: the paper's module number
    channels: int  # how many units
    block: nn.Module  # the module whose forward output holds the units (what hooks attach to)
    activations: Callable[[torch.Tensor], torch.Tensor]  # that output -> [N, units]
    unit_dim: int  # the units' axis in that output


class Description(ABC):
    """A family's answers to every question the quantities ask of a network."""

    layout: Layout
    #: Whether each block's units are its whole output, so zeroing every unit of a module's
    #: last block hands the rest of the network zeros, whatever the input.
    units_are_outputs: bool = True
    #: The axis of the units in the unit tensor, and how the tensor becomes ``[N, units]``.
    unit_dim: int = 1
    activations = staticmethod(spatial_mean)

    @abstractmethod
    def build(self, arch: str, num_classes: int, *, width: int, in_channels: int,
              image_size: int | None) -> nn.Module:
        """A randomly initialised network of builder ``arch``."""

    @abstractmethod
    def describes(self, model: nn.Module) -> bool:
        """Whether ``model`` belongs to this family."""

    @abstractmethod
    def pieces(self, model: nn.Module, module: str) -> list[nn.Module]:
        """The module's blocks as they run in the forward pass, one callable per block."""

    @abstractmethod
    def unit_tensor(self, piece: nn.Module) -> tuple[nn.Module, int]:
        """The submodule of a block whose output holds its units, and how many units."""

    @abstractmethod
    def stem(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The forward pass before the first module's first block."""

    @abstractmethod
    def head(self, model: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """The forward pass after the last module's last block, to the logits."""

    @abstractmethod
    def shape_of(self, weights: dict) -> dict:
        """The builder keywords (``num_classes``, ``in_channels``, ...) a state dict fixes."""

    # ------------------------------------------------------------------ shared answers

    def blocks(self, model: nn.Module, modules=None) -> list[Block]:
        """Every block of ``modules`` (default: all four) in forward order."""
        modules = self.check_modules(modules)
        blocks = []
        for module in modules:
            for i, piece in enumerate(self.pieces(model, module)):
                unit_module, channels = self.unit_tensor(piece)
                blocks.append(Block(name=f"{module}.{i}", module=module, index=i,
                                    number=self.layout.numbers[module], channels=channels, block=unit_module,
                                    activations=self.activations, unit_dim=self.unit_dim))
        return blocks

    def check_modules(self, modules=None, name: str = "modules") -> tuple[str, ...]:
        """``modules`` (default: all four) checked against this family's, in forward order."""
        return self.layout.modules if modules is None else check_modules(modules, name, self.layout.modules)

    def logits_layer(self, model: nn.Module) -> nn.Module:
        return dict(model.named_modules())[self.layout.logits]

    def num_classes(self, model: nn.Module) -> int:
        return self.logits_layer(model).out_features

    def layers(self, model: nn.Module, names) -> dict[str, nn.Module]:
        """``{name: module whose output is that layer}`` for CKA: a module name gives its last
        block's output, the logits name the logits, any other name that submodule."""
        available = dict(model.named_modules())
        out = {}
        for name in names:
            if name in self.layout.modules:
                last = self.pieces(model, name)[-1]
                # a block's output is its unit module's where the units are its whole output
                # (a VGG block is not itself a module of the network, its ReLU is)
                out[name] = self.unit_tensor(last)[0] if self.units_are_outputs else last
            elif name in available and name != "":
                out[name] = available[name]
            else:
                choices = ", ".join([*self.layout.cka_layers, "or a submodule's name"])
                raise ValueError(f"unknown layer name {name!r}; use a module name such as {choices}")
        return out

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The network's forward pass assembled from :meth:`stem`, the modules and :meth:`head`;
        equal to ``model(x)`` to the bit (the tests check it)."""
        h = self.stem(model, x)
        for module in self.layout.modules:
            for piece in self.pieces(model, module):
                h = piece(h)
        return self.head(model, h)


def torchvision_classes(module: str, *names: str) -> tuple[type, ...]:
    """torchvision's classes ``names`` from ``torchvision.models.<module>`` where this process
    has imported it, else none: a network of torchvision's classes exists only in a process
    that imported torchvision, and importing it to find out would cost every process seconds."""
    loaded = sys.modules.get(f"torchvision.models.{module}")
    return () if loaded is None else tuple(getattr(loaded, name) for name in names)
