"""Simulated manual annotation: what a person draws around each vesicle in IMOD's 3dmod."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from imodmodel.models import Contour, Object

from analysis.io.imod import new_model, write_model, zyx_to_imod


def simulate_outlines(
    vesicles: pd.DataFrame,
    seed: int = 0,
    *,
    jitter_vox: float = 0.3,
    points_per_outline: int = 20,
    pole_fraction: float = 0.35,
) -> list[tuple[int, np.ndarray]]:
    """Closed outlines, one per slice per vesicle, with an annotator's small errors.

    Parameters
    ----------
    vesicles : pandas.DataFrame
        Truth table with ``z_vox, y_vox, x_vox, radius_vox`` and ``vesicle_id``.
    seed : int
        Seed of the annotator's jitter.
    jitter_vox : float
        Standard deviation (voxels) of the per-slice error in outline centre and radius, and of
        the point-by-point wobble along the outline.
    points_per_outline : int
        Points clicked around each outline.
    pole_fraction : float
        Slices where the vesicle's cross-section radius is below this fraction of its radius are
        not drawn: near the poles the missing wedge hides the membrane and annotators stop.

    Returns
    -------
    list of (vesicle_id, numpy.ndarray of shape (n, 3))
        Outline points in voxel coordinates (z, y, x).
    """
    rng = np.random.default_rng(seed)
    out = []
    for row in vesicles.itertuples(index=False):
        r = float(row.radius_vox)
        for z in range(int(np.ceil(row.z_vox - r)), int(np.floor(row.z_vox + r)) + 1):
            rz = np.sqrt(max(r**2 - (z - row.z_vox) ** 2, 0.0))
            if rz < pole_fraction * r or rz < 1.0:
                continue
            cy = row.y_vox + rng.normal(0, jitter_vox)
            cx = row.x_vox + rng.normal(0, jitter_vox)
            rr = rz + rng.normal(0, jitter_vox)
            t = np.sort(rng.uniform(0, 2 * np.pi, points_per_outline))
            wobble = rng.normal(0, jitter_vox / 2, points_per_outline)
            pts = np.column_stack(
                [
                    np.full(points_per_outline, float(z)),
                    cy + (rr + wobble) * np.sin(t),
                    cx + (rr + wobble) * np.cos(t),
                ]
            )
            out.append((int(row.vesicle_id), pts))
    return out


def write_outline_model(
    path: str | os.PathLike,
    outlines: list[tuple[int, np.ndarray]],
    voxel_size_nm: float,
    shape: tuple[int, int, int],
) -> Path:
    """Write outlines as an IMOD model: one object, one surface number per vesicle.

    This is the layout of many manual SV segmentations; :func:`analysis.io.read_annotation`
    groups the contours back into vesicles by surface.
    """
    model = new_model(voxel_size_nm, shape=shape)
    obj = Object(color=(1.0, 0.8, 0.0))
    obj.header.name = "synaptic vesicles (manual)"
    for vesicle_id, pts in outlines:
        contour = Contour(points=zyx_to_imod(pts))
        contour.header.surf = vesicle_id
        obj.contours.append(contour)
    obj.update_sizes()
    model.objects.append(obj)
    return write_model(path, model)
