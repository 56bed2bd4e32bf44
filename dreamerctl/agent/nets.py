"""Network building blocks: dense and conv layers with LayerNorm + SiLU, the image encoder and
decoder, MLP heads. Weights use the 2023 code's initialiser (truncated normal, fan-average
variance scaling); output layers take a scale, 0 for the reward and value heads.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

# LayerNorm epsilon of the 2023 code and its PyTorch ports.
NORM_EPS = 1e-3


def init_weight(layer: nn.Linear | nn.Conv2d | nn.ConvTranspose2d, scale: float = 1.0,
                fan_in: int | None = None) -> None:
    """Variance scaling on the average fan with a truncated normal (the 2023 code's
    winit='normal', fan='avg'); `scale` 0 gives zero weights (outscale 0 for reward and value).
    `fan_in` replaces the layer's own where it is one block of a wider layer."""
    weight = layer.weight
    receptive = math.prod(weight.shape[2:]) if weight.dim() > 2 else 1
    fan_out, own_fan_in = weight.shape[0] * receptive, weight.shape[1] * receptive
    if isinstance(layer, nn.ConvTranspose2d):  # its weight is (in, out, k, k)
        own_fan_in, fan_out = fan_out, own_fan_in
    fan_in = own_fan_in if fan_in is None else fan_in
    # 0.8796... is the std of a unit normal truncated at +-2, undone so the variance is right.
    std = math.sqrt(scale / ((fan_in + fan_out) / 2)) / 0.87962566103423978
    with torch.no_grad():
        if scale == 0:
            weight.zero_()
        else:
            nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)
        if layer.bias is not None:
            layer.bias.zero_()


def linear(in_dim: int, out_dim: int, bias: bool = True, scale: float = 1.0,
           fan_in: int | None = None) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    init_weight(layer, scale, fan_in)
    return layer


class DenseNormAct(nn.Sequential):
    """Linear (no bias: the norm has one) -> LayerNorm -> SiLU."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(linear(in_dim, out_dim, bias=False), nn.LayerNorm(out_dim, eps=NORM_EPS),
                         nn.SiLU())


class MLP(nn.Sequential):
    """`layers` x DenseNormAct of `units`; input (..., in_dim) -> (..., units)."""

    def __init__(self, in_dim: int, layers: int, units: int) -> None:
        dims = [in_dim] + [units] * layers
        super().__init__(*(DenseNormAct(a, b) for a, b in itertools.pairwise(dims)))
        self.out_dim = units


class Head(nn.Module):
    """MLP then a linear output layer: (..., in_dim) -> (..., out_dim) raw parameters."""

    def __init__(self, in_dim: int, layers: int, units: int, out_dim: int,
                 out_scale: float = 1.0) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, layers, units)
        self.out = linear(units, out_dim, scale=out_scale)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.mlp(x))


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def conv_stages(height: int, width: int, min_res: int = 4) -> int:
    """Stride-2 stages that halve both sides exactly while the smaller stays >= `min_res`:
    64x64 -> 4 stages (4x4), 16x16 -> 2, 48x48 -> 3 (6x6)."""
    stages = 0
    while (height % 2 ** (stages + 1) == 0 and width % 2 ** (stages + 1) == 0
           and min(height, width) // 2 ** (stages + 1) >= min_res):
        stages += 1
    return max(stages, 1)


class ConvEncoder(nn.Module):
    """uint8 images (..., H, W, C) -> embeddings (..., out_dim): /255 - 0.5, then stride-2 convs
    of depth d x [1, 2, 4, 8, ...] with channel LayerNorm + SiLU, flattened."""

    def __init__(self, shape: tuple[int, ...], depth: int, kernel: int) -> None:
        super().__init__()
        height, width, channels = shape
        self.stages = conv_stages(height, width)
        layers: list[nn.Module] = []
        for i in range(self.stages):
            out = depth * 2**i
            # padding (k - 1) // 2 halves an even size exactly for any kernel size.
            conv = nn.Conv2d(channels, out, kernel, 2, (kernel - 1) // 2, bias=False)
            init_weight(conv)
            layers += [conv, ChannelNorm(out, eps=NORM_EPS), nn.SiLU()]
            channels = out
        self.net = nn.Sequential(*layers)
        scale = 2**self.stages
        self.out_dim = channels * (height // scale) * (width // scale)

    def forward(self, image: Tensor) -> Tensor:
        lead = image.shape[:-3]
        x = image.reshape(-1, *image.shape[-3:]).permute(0, 3, 1, 2)  # (L, C, H, W)
        x = x.float() / 255.0 - 0.5
        return self.net(x).reshape(*lead, self.out_dim)


class ConvDecoder(nn.Module):
    """Features (..., in_dim) -> image means (..., H, W, C) in the encoder's [-0.5, 0.5] space:
    a linear layer to the smallest grid, then stride-2 transposed convs mirroring the encoder."""

    def __init__(self, in_dim: int, shape: tuple[int, ...], depth: int, kernel: int) -> None:
        super().__init__()
        self.shape = shape
        height, width, out_channels = shape
        stages = conv_stages(height, width)
        self.grid = (depth * 2 ** (stages - 1), height // 2**stages, width // 2**stages)
        self.inp = linear(in_dim, math.prod(self.grid))
        pad, extra = (kernel - 1) // 2, kernel % 2
        layers: list[nn.Module] = []
        channels = self.grid[0]
        for i in range(stages):
            last = i == stages - 1
            out = out_channels if last else channels // 2
            # output_padding makes each stage exactly double: (k - 1) // 2 padding needs 1 more
            # pixel for odd kernels.
            conv = nn.ConvTranspose2d(channels, out, kernel, 2, pad, output_padding=extra,
                                      bias=last)
            init_weight(conv)
            layers.append(conv)
            if not last:
                layers += [ChannelNorm(out, eps=NORM_EPS), nn.SiLU()]
            channels = out
        self.net = nn.Sequential(*layers)

    def forward(self, feat: Tensor) -> Tensor:
        lead = feat.shape[:-1]
        x = self.inp(feat).reshape(-1, *self.grid)  # (L, 8d, h, w)
        x = self.net(x).permute(0, 2, 3, 1)  # (L, H, W, C)
        return x.reshape(*lead, *self.shape)
