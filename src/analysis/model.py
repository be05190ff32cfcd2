"""Former home of the networks and checkpoints, now :mod:`analysis.models`.

Kept so that code written against it keeps working; new code imports :mod:`analysis.models`
(:func:`analysis.models.load` replaces ``load_model`` and ``load_shipped_model``).
"""

from __future__ import annotations

from analysis.models import (
    CHECKPOINT_FORMAT_VERSION,
    SHIPPED_2D_WEIGHTS,
    SHIPPED_WEIGHTS,
    UNet3D,
    UNetConfig,
    build_network,
    export_weights,
    inference_network,
    load,
    read_checkpoint,
    save_checkpoint,
    select_device,
)

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "SHIPPED_2D_WEIGHTS",
    "SHIPPED_WEIGHTS",
    "UNet3D",
    "UNetConfig",
    "build_network",
    "export_weights",
    "inference_network",
    "load_model",
    "load_shipped_model",
    "read_checkpoint",
    "save_checkpoint",
    "select_device",
]


def load_model(path, map_location="cpu"):
    """``analysis.models.load(path, device=map_location)``."""
    return load(path, device=map_location)


def load_shipped_model(map_location="cpu", *, dims: int = 3):
    """``analysis.models.load("shipped")`` (``"shipped-2d"`` for ``dims=2``)."""
    return load("shipped" if dims == 3 else "shipped-2d", device=map_location)
