"""Vision transformers: torchvision's ``VisionTransformer`` as ``vit_b_16``, and small
(``vit_tiny``) for 28-32 pixel images of any number of channels.

A block is one encoder block; its units are the hidden neurons of its MLP after the GELU.
A unit's activation for an image is its mean over all tokens, the class token included
(as the paper authors' code measured a ViT), clamped at 0 (:func:`nonnegative_token_mean`).
The last encoder block stays outside the modules, as in the authors' code: the head reads
only its class token, so its other tokens' units cannot change the logits. The blocks
before it form four consecutive groups ``group1``..``group4``, the paper's modules 4-7, as
equal as they divide (vit_b_16's 11: blocks 0-2, 3-5, 6-8, 9-10).

The classes are this project's own (see :mod:`classsel.architectures`): they build
torchvision's ``VisionTransformer`` exactly, and a torchvision ViT is described as well.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from . import ARCHS, LAYOUTS
from .base import Description, token_mean, torchvision_classes

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


class MLPBlock(nn.Sequential):
    """An encoder block's MLP: Linear, GELU, dropout, Linear, dropout; Xavier-uniform weights and
    N(0, 1e-6) biases (the units are the GELU's outputs, ``mlp[1]``)."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                         nn.Dropout(dropout))
        for linear in (self[0], self[3]):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.normal_(linear.bias, std=1e-6)


class EncoderBlock(nn.Module):
    """Pre-norm self-attention and MLP, each added to the residual stream."""

    def __init__(self, heads: int, dim: int, hidden: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=attention_dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, hidden, dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(tokens)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + tokens
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    """A learnt position embedding (N(0, 0.02)), the encoder blocks ``layers`` and a final LayerNorm."""

    def __init__(self, tokens: int, blocks: int, heads: int, dim: int, hidden: int, dropout: float,
                 attention_dropout: float) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(heads, dim, hidden, dropout, attention_dropout))
            for i in range(blocks)))
        self.ln = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(self.dropout(tokens + self.pos_embedding)))


class VisionTransformer(nn.Module):
    """Patches embedded by a strided convolution (``conv_proj``), a class token, the encoder,
    and a linear head on the class token (``heads.head``, zero-initialised).

    With 3 input channels this is torchvision's ``VisionTransformer`` without a representation
    layer or convolutional stem, with the same weights for the same seed (modules made and
    initialised in its order). Another number of channels builds that network first and then
    a patch embedding for those channels, initialised the same way: the random draws of the
    networks this project built before, so a seed's weights stay what they were.
    """

    def __init__(self, image_size: int, patch_size: int, num_layers: int, num_heads: int, hidden_dim: int,
                 mlp_dim: int, *, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.0,
                 attention_dropout: float = 0.0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size={image_size} is not a multiple of patch_size={patch_size}")
        self.image_size, self.patch_size, self.hidden_dim = image_size, patch_size, hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(self.seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout,
                               attention_dropout)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))
        self._init_patches()
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)
        if in_channels != 3:
            self.conv_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=patch_size, stride=patch_size)
            self._init_patches()

    def _init_patches(self) -> None:
        fan_in = self.conv_proj.in_channels * self.patch_size * self.patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)

    def _process_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[N, C, H, W]`` -> patch embeddings ``[N, patches, D]``, row by row."""
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"expected {self.image_size}x{self.image_size} images, got {h}x{w}")
        return self.conv_proj(x).reshape(n, self.hidden_dim, -1).permute(0, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._process_input(x)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.heads(self.encoder(x)[:, 0])


class ViTDescription(Description):
    layout = LAYOUTS["vit"]
    units_are_outputs = False  # the units sit inside the block; its output adds the residual stream
    unit_dim = 2
    activations = staticmethod(nonnegative_token_mean)

    def build(self, arch, num_classes, *, width=16, in_channels=3, image_size=None):
        image_size = 224 if image_size is None else image_size
        if arch == "vit_b_16":
            return VisionTransformer(image_size, 16, 12, 12, 768, 3072, num_classes=num_classes)
        if arch != "vit_tiny":
            raise ValueError(f"{arch!r} is not a vision transformer; choose one of "
                             f"{', '.join(a for a in ARCHS if ARCHS[a].family == 'vit')}")
        patch = ARCHS[arch].patch
        return VisionTransformer(image_size, patch, **TINY, num_classes=num_classes, in_channels=in_channels)

    def describes(self, model):
        return isinstance(model, (VisionTransformer, *torchvision_classes("vision_transformer", "VisionTransformer")))

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
