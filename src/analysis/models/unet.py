"""The package's own network: a 3D U-Net (or its slice-by-slice 2-D twin).

The network maps a normalised tomogram patch (batch, 1, z, y, x) to vesicle logits of the same
shape; ``torch.sigmoid`` of them is the probability map. Any input size works: the input is
padded to a multiple of ``2 ** depth`` inside and the output cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from analysis.errors import ParameterError

#: Normalisation layers that :attr:`UNetConfig.norm` may name.
NORMALISATIONS = ("batch", "instance", "group", "none")


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet3D`.

    Attributes
    ----------
    depth : int
        Number of down-sampling steps (CryoVesNet uses 2).
    base_channels : int
        Feature maps at full resolution; doubled at every level.
    norm : {"batch", "instance", "group", "none"}
        Normalisation after every convolution.
    dropout : float
        Dropout probability in the bottleneck (training only).
    in_channels, out_channels : int
    dims : {3, 2}
        3: 3×3×3 convolutions and 2×2×2 pooling. 2: 1×3×3 convolutions and 1×2×2 pooling, so
        that every z slice is segmented on its own — a 2-D network that runs through the same
        3-D pipeline, for comparison (chapter 5).
    """

    depth: int = 3
    base_channels: int = 16
    norm: str = "batch"
    dropout: float = 0.1
    in_channels: int = 1
    out_channels: int = 1
    dims: int = 3

    def __post_init__(self):
        if self.depth < 1:
            raise ParameterError(f"depth must be >= 1, not {self.depth}")
        if self.base_channels < 1:
            raise ParameterError(f"base_channels must be >= 1, not {self.base_channels}")
        if self.norm not in NORMALISATIONS:
            raise ParameterError(f"norm must be one of {NORMALISATIONS}, not {self.norm!r}")
        if self.dims not in (2, 3):
            raise ParameterError(f"dims must be 2 or 3, not {self.dims}")
        if not 0.0 <= self.dropout < 1.0:
            raise ParameterError(f"dropout must be in [0, 1), not {self.dropout}")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "instance":
        return nn.InstanceNorm3d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


def _kernel(dims: int, size: int) -> tuple[int, int, int]:
    """Kernel (z, y, x) of ``size`` in-plane; flat along z for a 2-D network."""
    return (size if dims == 3 else 1, size, size)


class _DoubleConv(nn.Sequential):
    """Two 3×3×3 (or 1×3×3) convolutions, each followed by normalisation and ReLU."""

    def __init__(self, cin: int, cout: int, norm: str, dropout: float = 0.0, dims: int = 3):
        bias = norm == "none"  # a following normalisation makes the bias redundant
        k = _kernel(dims, 3)
        pad = tuple(n // 2 for n in k)
        layers: list[nn.Module] = [
            nn.Conv3d(cin, cout, k, padding=pad, bias=bias),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout3d(dropout))
        layers += [
            nn.Conv3d(cout, cout, k, padding=pad, bias=bias),
            _norm(norm, cout),
            nn.ReLU(inplace=True),
        ]
        super().__init__(*layers)


class UNet3D(nn.Module):
    """3D U-Net: max-pooling encoder, transposed-convolution decoder, skip connections.

    Parameters
    ----------
    config : UNetConfig, optional

    Notes
    -----
    ``forward`` takes (batch, in_channels, z, y, x) float32 and returns logits of shape
    (batch, out_channels, z, y, x) for any spatial size.
    """

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = config or UNetConfig()
        c = self.config
        widths = [c.base_channels * 2**level for level in range(c.depth + 1)]
        self.down = nn.ModuleList()
        cin = c.in_channels
        for w in widths[:-1]:
            self.down.append(_DoubleConv(cin, w, c.norm, dims=c.dims))
            cin = w
        self.bottom = _DoubleConv(widths[-2], widths[-1], c.norm, dropout=c.dropout, dims=c.dims)
        self._pool = _kernel(c.dims, 2)
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for level in reversed(range(c.depth)):
            self.upsample.append(
                nn.ConvTranspose3d(widths[level + 1], widths[level], self._pool, stride=self._pool)
            )
            self.up.append(_DoubleConv(2 * widths[level], widths[level], c.norm, dims=c.dims))
        self.head = nn.Conv3d(widths[0], c.out_channels, 1)

    @property
    def multiple(self) -> int:
        """Spatial sizes are padded to a multiple of this inside ``forward``."""
        return 2**self.config.depth

    @property
    def encoder(self) -> nn.ModuleList:
        """The contracting path's blocks, before the bottleneck (what sees the image's
        appearance most directly; :func:`analysis.adapt.estimate_statistics` may measure their
        statistics alone)."""
        return self.down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        pad = [(-n) % (p**self.config.depth) for n, p in zip(size, self._pool, strict=True)]
        if any(pad):
            # F.pad takes (x_lo, x_hi, y_lo, y_hi, z_lo, z_hi); replicate keeps edges neutral
            x = F.pad(x, [0, pad[2], 0, pad[1], 0, pad[0]], mode="replicate")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool3d(x, self._pool)
        x = self.bottom(x)
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips), strict=True):
            x = block(torch.cat([upsample(x), skip], dim=1))
        x = self.head(x)
        return x[..., : size[0], : size[1], : size[2]]
