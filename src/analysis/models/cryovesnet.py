"""CryoVesNet's published network (Khosrozadeh et al., J Cell Biol 2024) in torch.

The network is CSBDeep's 3-D U-Net: depth 2, 16 base filters, two 3×3×3 convolutions per level,
each followed by BatchNormalization (ε = 10⁻³) and ReLU; 2×2×2 max pooling; a 64- then 32-filter
bottom; nearest-neighbour upsampling, concatenation [upsampled, skip]; a final 1×1×1
convolution with a sigmoid. Its authors blur the tomogram (Gaussian, σ = 1 voxel) and z-score
it over the whole volume at 2.2 nm voxels, membranes dark; the blur is the network's first
(fixed) layer here and the z-score its checkpoint's normalisation. Its weights come from the
authors' Keras file (:mod:`analysis.models.keras`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: Keras convolution names in network order, with their input and output channels
#: (the first convolution of each up level takes the upsampled and the skip maps together).
CONVOLUTIONS = (
    ("down_level_0_no_0", 1, 16),
    ("down_level_0_no_1", 16, 16),
    ("down_level_1_no_0", 16, 32),
    ("down_level_1_no_1", 32, 32),
    ("middle_0", 32, 64),
    ("middle_2", 64, 32),
    ("up_level_1_no_0", 32 + 32, 32),
    ("up_level_1_no_2", 32, 16),
    ("up_level_0_no_0", 16 + 16, 16),
    ("up_level_0_no_2", 16, 16),
)


@dataclass
class CryoVesNetConfig:
    """Architecture record of :class:`CryoVesNetUNet`, as stored in checkpoints."""

    architecture: str = "cryovesnet"
    blur_sigma_vox: float = 1.0
    bn_epsilon: float = 1e-3


def _block(cin: int, cout: int, eps: float) -> nn.Sequential:
    # Conv → BN → ReLU as in CSBDeep's conv_block3 (BN folding in inference finds the pair).
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout, eps=eps), nn.ReLU(inplace=True)
    )


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(4 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    return torch.tensor(np.einsum("i,j,k->ijk", g, g, g), dtype=torch.float32)[None, None]


class CryoVesNetUNet(nn.Module):
    """CryoVesNet's network in torch; ``forward`` takes (batch, 1, z, y, x), returns logits.

    The fixed Gaussian blur of the authors' preprocessing is the first layer (replicate
    padding at the borders); the sigmoid of the last Keras layer is left to the caller, as
    for :class:`analysis.models.UNet3D`.
    """

    def __init__(self, config: CryoVesNetConfig | None = None):
        super().__init__()
        self.config = config or CryoVesNetConfig()
        eps = self.config.bn_epsilon
        self.blocks = nn.ModuleDict(
            {name: _block(cin, cout, eps) for name, cin, cout in CONVOLUTIONS}
        )
        self.head = nn.Conv3d(16, 1, 1)
        self.register_buffer("blur", _gaussian_kernel(self.config.blur_sigma_vox), False)

    multiple = 4  # two 2× poolings

    @property
    def encoder(self) -> nn.ModuleList:
        """The contracting path's blocks, before the middle ones (as
        :attr:`analysis.models.UNet3D.encoder`)."""
        return nn.ModuleList(m for name, m in self.blocks.items() if name.startswith("down_"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        r = self.blur.shape[-1] // 2
        x = F.conv3d(F.pad(x, [r] * 6, mode="replicate"), self.blur.to(x.dtype))
        pad = [(-n) % self.multiple for n in size]
        if any(pad):
            x = F.pad(x, [0, pad[2], 0, pad[1], 0, pad[0]], mode="replicate")
        b = self.blocks
        skip0 = b["down_level_0_no_1"](b["down_level_0_no_0"](x))
        skip1 = b["down_level_1_no_1"](b["down_level_1_no_0"](F.max_pool3d(skip0, 2)))
        x = b["middle_2"](b["middle_0"](F.max_pool3d(skip1, 2)))
        x = torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skip1], dim=1)
        x = b["up_level_1_no_2"](b["up_level_1_no_0"](x))
        x = torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skip0], dim=1)
        x = b["up_level_0_no_2"](b["up_level_0_no_0"](x))
        x = self.head(x)
        return x[..., : size[0], : size[1], : size[2]]
