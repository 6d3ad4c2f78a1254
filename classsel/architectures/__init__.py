"""Architecture families: the one place that knows a network's layout.

Every quantity asks a family's description (:func:`describe`) where the paper's modules
4-7 are, which blocks they hold, which tensor holds each block's units and how it becomes
one value per unit per image, what runs before and after a module, and which layer gives
the logits. This file holds each family's names, which the configuration checks without
torch; the descriptions themselves live in ``classsel/architectures/<family>.py``.
Adding an architecture family means a :class:`Layout` and its :class:`Arch` builders here,
and one description module with its tests.

The networks are this project's own classes, written to build torchvision's networks exactly:
the same parameter names (a checkpoint loads into either), the same random draws in the same
order (the same weights for a seed) and the same arithmetic (the same outputs to the bit);
``tests/test_models.py`` compares every builder with torchvision's. Importing torchvision costs a
process seconds (torch._dynamo, through torchvision.ops), which every training worker, notebook
kernel and test process paid for networks of a few lines of PyTorch; it is imported only to read
image files. A network of torchvision's classes is described all the same.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

#: The paper's numbers of the four measured modules (ResNet-50's conv2_x..conv5_x).
PAPER_NUMBERS = (4, 5, 6, 7)


@dataclass(frozen=True)
class Layout:
    """A family's names: its measured modules in forward order and its logits layer."""

    family: str
    modules: tuple[str, ...]  # the paper's modules 4-7, in forward order
    logits: str  # the name of the logits layer in ``model.named_modules()``

    @property
    def numbers(self) -> dict[str, int]:
        """The paper's number of each module."""
        return dict(zip(self.modules, PAPER_NUMBERS))

    @property
    def regularized(self) -> tuple[str, ...]:
        """The modules regularised unless told otherwise (the paper: modules 4-6)."""
        return self.modules[:3]

    @property
    def cka_layers(self) -> tuple[str, ...]:
        """The layers CKA compares: the four modules and the logits (paper Fig. 5)."""
        return (*self.modules, self.logits)


@dataclass(frozen=True)
class Arch:
    """One builder of a family: the input it takes and the configuration fields that shape it."""

    name: str
    family: str
    channels: int | None = 3  # image channels it takes; None: as many as the data has
    width: bool = False  # the configuration's ``width`` is its base width
    patch: int | None = None  # a transformer's patch size: the image side must be a multiple of it
    min_side: int = 1  # the smallest image side its poolings leave at least one pixel of (VGG's max-pools)
    #: (field, value): configuration defaults of this builder (its width, its training recipe),
    #: which stand in for the preset's, never for a value asked for
    defaults: tuple[tuple[str, object], ...] = ()


LAYOUTS = {
    "resnet": Layout("resnet", ("layer1", "layer2", "layer3", "layer4"), "fc"),
    # VGG16's conv stages 2-5 (VGG's conv2_x..conv5_x), each a module of conv-BN-ReLU blocks
    "vgg": Layout("vgg", ("conv2", "conv3", "conv4", "conv5"), "classifier.6"),
    # four consecutive groups of encoder blocks; the last encoder block stays apart
    "vit": Layout("vit", ("group1", "group2", "group3", "group4"), "heads.head"),
}

#: A transformer's recipe (DeiT's, Touvron et al. 2021): AdamW, weight decay 0.05, a linear
#: warm-up; the learning rate 5e-4 per 512 images scaled to the batch (for vit_b_16 the
#: imagenet preset's 256). Plain SGD at the ResNet presets' rates barely moves a ViT.
_VIT = (("optimizer", "adamw"), ("weight_decay", 0.05))
ARCHS = {a.name: a for a in (
    Arch("resnet18", "resnet"),
    Arch("resnet34", "resnet"),
    Arch("resnet50", "resnet"),
    Arch("resnet101", "resnet"),
    Arch("resnet50_narrow", "resnet", channels=None, width=True),
    Arch("vgg16_bn", "vgg", min_side=32),  # five 2x2 max-pools
    # width 8: a training step on the mnist preset costs about half the narrow ResNet's
    Arch("vgg16_narrow", "vgg", channels=None, width=True, min_side=16, defaults=(("width", 8),)),  # four pools
    Arch("vit_b_16", "vit", patch=16, defaults=(*_VIT, ("lr", 2.5e-4), ("warmup_epochs", 5.0))),
    # 7-pixel patches: 16 tokens and the class token on 28-pixel images
    Arch("vit_tiny", "vit", channels=None, patch=7, defaults=(*_VIT, ("lr", 1e-3), ("warmup_epochs", 0.5))),
)}


def arch(name: str) -> Arch:
    """The builder ``name``; an error lists the builders."""
    if name not in ARCHS:
        raise ValueError(f"unknown arch {name!r}; choose one of {', '.join(ARCHS)}")
    return ARCHS[name]


def layout(name: str) -> Layout:
    """The names of architecture ``name``'s family."""
    return LAYOUTS[arch(name).family]


def describe(model_or_arch):
    """The description of a network's family (:class:`classsel.architectures.base.Description`),
    from the network itself or from a builder name."""
    if isinstance(model_or_arch, str):
        return _description(arch(model_or_arch).family)
    for family in LAYOUTS:
        description = _description(family)
        if description.describes(model_or_arch):
            return description
    raise ValueError(f"no architecture family describes a {type(model_or_arch).__name__}; "
                     f"the families are {', '.join(LAYOUTS)}")


def _description(family: str):
    return importlib.import_module(f"{__name__}.{family}").DESCRIPTION
