"""Vision transformers: torchvision's ``VisionTransformer`` as ``vit_b_16``, and small
(``vit_tiny``) for 28-32 pixel images of any number of channels.

A block is one encoder block; its units are the hidden neurons of its MLP after the GELU.
A unit's activation for an image is its mean over all tokens, the class token included
(as the paper authors' code measured a ViT), clamped at 0 (:func:`nonnegative_token_mean`).
The last encoder block stays outside the modules, as in the authors' code: the head reads
only its class token, so its other tokens' units cannot change the logits. The blocks
before it form four consecutive groups ``group1``..``group4``, the paper's modules 4-7, as
equal as they divide (vit_b_16's 11: blocks 0-2, 3-5, 6-8, 9-10).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models import vision_transformer as tv
from torchvision.models.vision_transformer import VisionTransformer

from . import ARCHS, LAYOUTS
from .base import Description, token_mean

#: vit_tiny: 9 encoder blocks (four groups of two and the last), width 64, MLP 256, 4 heads
#: (with 7-pixel patches a training step on the mnist preset costs a little less than the
#: narrow ResNet's).
TINY = dict(num_layers=9, num_heads=4, hidden_dim=64, mlp_dim=256)


def nonnegative_token_mean(output: torch.Tensor) -> torch.Tensor:
    """A GELU unit's activation per image: its token mean, clamped at 0, ``[N, D]``.

    Eq. 1 assumes non-negative activations. GELU(x) < 0 only for x < 0, where a ReLU unit
    would be silent, and never below -0.17; clamping the mean at 0 reads such a unit as
    silent and keeps the order of the others. The authors' code took ``abs()`` instead,
    which reads a unit held below its threshold as active.
    """
    return token_mean(output).clamp(min=0)


def groups(blocks: int) -> list[range]:
    """``blocks`` encoder blocks (the last one apart) in four consecutive groups, larger first."""
    if blocks < 5:
        raise ValueError(f"a ViT needs at least 5 encoder blocks (four modules and the last), got {blocks}")
    n, start, out = blocks - 1, 0, []
    for i in range(4):
        size = (n + 3 - i) // 4
        out.append(range(start, start + size))
        start += size
    return out


class ViTDescription(Description):
    layout = LAYOUTS["vit"]
    units_are_outputs = False  # the units sit inside the block; its output adds the residual stream
    unit_dim = 2
    activations = staticmethod(nonnegative_token_mean)

    def build(self, arch, num_classes, *, width=16, in_channels=3, image_size=None):
        image_size = 224 if image_size is None else image_size
        if arch == "vit_b_16":
            return tv.vit_b_16(weights=None, num_classes=num_classes, image_size=image_size)
        if arch != "vit_tiny":
            raise ValueError(f"{arch!r} is not a vision transformer; choose one of "
                             f"{', '.join(a for a in ARCHS if ARCHS[a].family == 'vit')}")
        patch = ARCHS[arch].patch
        model = VisionTransformer(image_size=image_size, patch_size=patch, num_classes=num_classes, **TINY)
        if in_channels != 3:
            # torchvision's patch embedding takes 3 channels: the same layer, initialised as it is
            proj = nn.Conv2d(in_channels, model.hidden_dim, kernel_size=patch, stride=patch)
            nn.init.trunc_normal_(proj.weight, std=math.sqrt(1 / (in_channels * patch * patch)))
            nn.init.zeros_(proj.bias)
            model.conv_proj = proj
        return model

    def describes(self, model):
        return isinstance(model, VisionTransformer)

    def pieces(self, model, module):
        layers = list(model.encoder.layers)
        return [layers[i] for i in groups(len(layers))[self.layout.modules.index(module)]]

    def unit_tensor(self, piece):
        act = piece.mlp[1]
        if not isinstance(act, nn.GELU):
            raise ValueError(f"expected the encoder block's MLP to be Linear, GELU, ..., got {act} in place of GELU")
        return act, piece.mlp[0].out_features

    def stem(self, model, x):
        x = model._process_input(x)
        x = torch.cat([model.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return model.encoder.dropout(x + model.encoder.pos_embedding)

    def head(self, model, h):
        h = model.encoder.layers[-1](h)
        return model.heads(model.encoder.ln(h)[:, 0])

    def shape_of(self, weights):
        proj = weights["conv_proj.weight"]
        tokens = weights["encoder.pos_embedding"].shape[1] - 1
        return {"num_classes": weights["heads.head.weight"].shape[0], "in_channels": proj.shape[1],
                "image_size": math.isqrt(tokens) * proj.shape[-1]}


DESCRIPTION = ViTDescription()
