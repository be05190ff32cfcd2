"""One synthetic synapse: a phantom, imaged through a tilt series, and its manual annotation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.synthetic.annotation import simulate_outlines
from analysis.synthetic.geometry import Phantom, SynapseGeometry, make_phantom
from analysis.synthetic.imaging import Microscope, image_phantom


@dataclass
class Synapse:
    """A synthetic tomogram with its truth.

    Attributes
    ----------
    tomogram : numpy.ndarray, shape (z, y, x), float32
        The reconstruction, normalised to zero mean and unit variance; membranes dark.
    phantom : Phantom
        The density and exact truth (labels, AZ mask, region mask, vesicle and filament tables).
    outlines : list
        Simulated manual annotation: (vesicle_id, points (n, 3) in z, y, x voxels) per outline.
    tilt_series : numpy.ndarray, shape (n_tilts, y, x)
    tilts_deg : numpy.ndarray
    microscope : Microscope
    seed : int
    """

    tomogram: np.ndarray
    phantom: Phantom
    outlines: list
    tilt_series: np.ndarray
    tilts_deg: np.ndarray
    microscope: Microscope = field(default_factory=Microscope)
    seed: int = 0

    @property
    def voxel_size_nm(self) -> float:
        return self.phantom.geometry.voxel_size_nm


def make_synapse(
    geometry: SynapseGeometry | None = None,
    microscope: Microscope | None = None,
    seed: int = 0,
) -> Synapse:
    """Build, image and annotate one synthetic synapse. Same seed, same numbers.

    Parameters
    ----------
    geometry : SynapseGeometry, optional
        Phantom parameters (shape, voxel size, vesicle counts and sizes, …).
    microscope : Microscope, optional
        Tilt range, defocus, SNR, … of the simulated acquisition.
    seed : int
        Seeds the phantom (``seed``), the noise (``seed + 1``) and the annotator (``seed + 2``).
    """
    geometry = geometry or SynapseGeometry()
    microscope = microscope or Microscope()
    phantom = make_phantom(geometry, seed=seed)
    imaged = image_phantom(phantom.density, geometry.voxel_size_nm, microscope, seed=seed + 1)
    tomo = imaged["tomogram"]
    tomo = ((tomo - tomo.mean()) / tomo.std()).astype(np.float32)
    outlines = simulate_outlines(phantom.vesicles, seed=seed + 2)
    return Synapse(
        tomo, phantom, outlines, imaged["tilt_series"], imaged["tilts_deg"], microscope, seed
    )
