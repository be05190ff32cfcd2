"""Parameters of the independent test simulator, with realistic defaults."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TestSimParams:
    """Specimen and microscope of one simulated tomogram.

    Lengths are in nm unless the name says otherwise; potentials are in volts above vitreous
    ice (what a cryo-EM image measures: the mean inner potential of the specimen minus that of
    the ice around it). The defaults describe a binned tomogram of a synaptosome's active zone
    recorded at 300 kV: ±60° in 2° steps, defocus −8 µm, 100 e/Å² in all, 2.2 nm voxels.
    """

    __test__ = False  # not a pytest class, despite the name

    # --- volume -------------------------------------------------------------------------
    shape: tuple[int, int, int] = (96, 192, 192)
    voxel_size_nm: float = 2.2

    # --- synaptic vesicles ----------------------------------------------------------------
    #: outer radius (outer edge of the membrane): log-normal, clipped to ``sv_radius_range_nm``
    sv_radius_median_nm: float = 19.8
    sv_radius_log_sd: float = 0.09
    sv_radius_range_nm: tuple[float, float] = (16.0, 26.0)
    #: each SV's membrane is a uniform lipid shell of a thickness drawn from this range
    sv_membrane_range_nm: tuple[float, float] = (4.0, 5.0)
    sv_membrane_potential_v: float = 1.2
    sv_lumen_potential_range_v: tuple[float, float] = (0.15, 0.4)
    #: fraction of the presynaptic cytoplasm the SVs fill (before rejections)
    sv_fill_fraction: float = 0.24
    #: acceptance of an SV falls from 1 at the AZ to ``sv_far_acceptance`` over this length
    sv_cluster_decay_nm: float = 100.0
    sv_far_acceptance: float = 0.2
    #: share of SVs placed against an existing SV (gap 0.5 nm + exponential, this mean)
    sv_contact_share: float = 0.55
    sv_contact_gap_nm: float = 1.5
    #: share of SVs placed against the AZ membrane (docked)
    sv_docked_share: float = 0.06

    # --- plasma membranes and cleft -----------------------------------------------------------
    #: the presynaptic terminal is a sphere of this radius; the AZ is the part in the box
    terminal_radius_range_nm: tuple[float, float] = (350.0, 700.0)
    #: where the AZ crosses the box: fraction of the half-width from the centre
    az_offset_fraction: float = 0.62
    membrane_thickness_nm: float = 4.5
    membrane_potential_v: float = 1.0
    cleft_width_range_nm: tuple[float, float] = (18.0, 24.0)
    psd_thickness_nm: float = 35.0

    # --- cytoplasm ---------------------------------------------------------------------------
    protein_potential_v: float = 1.6
    #: a thresholded correlated random field: this fraction of the cytoplasm is protein mesh
    cytoplasm_fill: float = 0.22
    cytoplasm_correlation_nm: float = 18.0
    cytoplasm_exponent: float = 3.0
    #: the mesh is less compact than a folded protein
    mesh_potential_v: float = 0.7
    #: discrete protein complexes (radius 2.5-7 nm), per µm³ of cytoplasm
    crowders_per_um3: float = 2.0e5
    #: ribosome-like particles (two subunits, about 25 nm), per µm³
    ribosomes_per_um3: float = 400.0
    #: actin-like filaments (7 nm thick, 100-400 nm long), per µm³
    filaments_per_um3: float = 250.0

    # --- distractors -------------------------------------------------------------------------
    mitochondrion: bool = True
    endosome: bool = False
    dense_core_vesicle: bool = False
    gold_beads: int = 0
    gold_potential_v: float = 25.0

    # --- microscope --------------------------------------------------------------------------
    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    tilt_step_deg: float = 2.0
    defocus_um: float = -8.0  # negative = underfocus
    astigmatism_um: float = 0.3  # difference between the two principal defoci
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.07
    bfactor_nm2: float = 2.0  # envelope exp(-B k² / 4)
    #: total dose over the tilt series, split evenly over the tilts
    dose_e_per_A2: float = 100.0
    detector_dqe: float = 0.7
    #: inelastic mean free path at 300 kV; an energy filter removes those electrons
    inelastic_mfp_nm: float = 350.0
    #: residual alignment errors: per-tilt image shift (SD, nm) and tilt angle error (SD, °)
    shift_jitter_nm: float = 0.6
    tilt_jitter_deg: float = 0.2

    # --- reconstruction and post-processing --------------------------------------------------
    recon_filter: str = "ramp"  # ramp, shepp-logan, hann, sirt
    sirt_iterations: int = 15
    post_filter: str = "none"  # none, gaussian, nad
    gaussian_sigma_nm: float = 2.0
    nad_iterations: int = 10
    quantise_8bit: bool = False

    @property
    def tilts_deg(self) -> np.ndarray:
        """Nominal tilt angles, degrees, from ``tilt_min_deg`` to ``tilt_max_deg``."""
        n = int(round((self.tilt_max_deg - self.tilt_min_deg) / self.tilt_step_deg)) + 1
        return np.linspace(self.tilt_min_deg, self.tilt_max_deg, n)

    @property
    def margin_vox(self) -> int:
        """Specimen simulated beyond each x face: every ray through the output box stays on
        the detector at any tilt (the slab continues sideways, as a real one does)."""
        nz, _, nx = self.shape
        a, b = (nx - 1) / 2, (nz - 1) / 2
        return int(np.ceil(np.hypot(a, b) - a)) + 8

    def vox(self, value_nm: float) -> float:
        """A length in nm, in voxels."""
        return value_nm / self.voxel_size_nm
