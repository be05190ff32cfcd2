"""Named domain shifts: parameter overrides of the nominal test tomogram."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

from analysis.testsim.params import TestSimParams

_NOISY = {"shift_jitter_nm": 2.0, "tilt_jitter_deg": 0.5}
_DENSE = {"cytoplasm_fill": 0.35, "crowders_per_um3": 3.5e5, "ribosomes_per_um3": 800.0}

#: Name (usable in file names) -> (description, overrides of :class:`TestSimParams`).
#: Single-factor rows change one thing of the nominal tomogram; ``combined_*`` rows several.
SHIFTS = MappingProxyType(
    {
        "nominal": ("nominal: ±60° in 2°, defocus −8 µm, 100 e/Å², 2.2 nm", {}),
        "tilt50": ("tilt ±50°", {"tilt_min_deg": -50.0, "tilt_max_deg": 50.0}),
        "tilt40": ("tilt ±40°", {"tilt_min_deg": -40.0, "tilt_max_deg": 40.0}),
        "tilt_asym": ("asymmetric tilt −45/+60°", {"tilt_min_deg": -45.0}),
        "tilt_step3": ("tilt step 3°", {"tilt_step_deg": 3.0}),
        "defocus3": ("defocus −3 µm", {"defocus_um": -3.0}),
        "defocus5": ("defocus −5 µm", {"defocus_um": -5.0}),
        "defocus12": ("defocus −12 µm", {"defocus_um": -12.0}),
        "astigmatism": ("astigmatism 1.5 µm", {"astigmatism_um": 1.5}),
        "dose40": ("low dose, 40 e/Å²", {"dose_e_per_A2": 40.0}),
        "dose200": ("high dose, 200 e/Å²", {"dose_e_per_A2": 200.0}),
        "voxel1p4": ("voxel 1.4 nm", {"voxel_size_nm": 1.4}),
        "voxel3p0": ("voxel 3.0 nm", {"voxel_size_nm": 3.0}),
        "misaligned": ("alignment errors 2 nm, 0.5°", _NOISY),
        # half as large again: a row where the networks fail outright, to measure the domain
        # check and the adaptation where they matter (F1 < 0.9)
        "misaligned3": (
            "alignment errors 3 nm, 0.75°",
            {"shift_jitter_nm": 3.0, "tilt_jitter_deg": 0.75},
        ),
        "hann": ("Hann-apodised ramp filter", {"recon_filter": "hann"}),
        "sirt": ("SIRT-like filter (15 iterations)", {"recon_filter": "sirt"}),
        "gaussian": ("Gaussian post-filter, σ 2 nm", {"post_filter": "gaussian"}),
        "nad": ("NAD post-filter", {"post_filter": "nad"}),
        "byte": ("8-bit quantisation", {"quantise_8bit": True}),
        "sparse": (
            "sparse cytoplasm",
            {"cytoplasm_fill": 0.06, "crowders_per_um3": 4.0e4, "filaments_per_um3": 80.0},
        ),
        "dense": ("dense cytoplasm", _DENSE),
        "gold": ("10 nm gold beads", {"gold_beads": 8}),
        "distractors": (
            "endosome and dense-core vesicle",
            {"endosome": True, "dense_core_vesicle": True},
        ),
        "combined_tilt50_defocus5_nad": (
            "±50°, defocus −5 µm, NAD",
            {"tilt_min_deg": -50.0, "tilt_max_deg": 50.0, "defocus_um": -5.0, "post_filter": "nad"},
        ),
        "combined_tilt40_dose40": (
            "±40°, 40 e/Å²",
            {"tilt_min_deg": -40.0, "tilt_max_deg": 40.0, "dose_e_per_A2": 40.0},
        ),
        "combined_asym_defocus12_byte": (
            "−45/+60°, defocus −12 µm, Gaussian, 8-bit",
            {
                "tilt_min_deg": -45.0,
                "defocus_um": -12.0,
                "post_filter": "gaussian",
                "quantise_8bit": True,
            },
        ),
        "combined_dense_gold_sirt": (
            "dense cytoplasm, gold, distractors, SIRT-like",
            {
                **_DENSE,
                "gold_beads": 8,
                "endosome": True,
                "dense_core_vesicle": True,
                "recon_filter": "sirt",
            },
        ),
        "combined_voxel3_tilt50_misaligned": (
            "3.0 nm voxels, ±50°, alignment errors",
            {"voxel_size_nm": 3.0, "tilt_min_deg": -50.0, "tilt_max_deg": 50.0, **_NOISY},
        ),
    }
)


def shift_params(name: str, base: TestSimParams | None = None) -> TestSimParams:
    """The parameters of a named shift: ``base`` (default: nominal) with its overrides.

    A shift of the voxel size keeps the box in nm: the shape is scaled with it (the
    default 96 × 192 × 192 at 2.2 nm becomes 151 × 302 × 302 at 1.4 nm).

    Raises
    ------
    KeyError
        For an unknown name; the message lists the known ones.
    """
    if name not in SHIFTS:
        raise KeyError(f"unknown shift {name!r}; known: {', '.join(SHIFTS)}")
    base = base or TestSimParams()
    overrides = dict(SHIFTS[name][1])
    if "voxel_size_nm" in overrides and "shape" not in overrides:
        # another voxel size images the same field of view (and specimen thickness) in nm
        scale = base.voxel_size_nm / overrides["voxel_size_nm"]
        overrides["shape"] = tuple(max(8, int(round(n * scale))) for n in base.shape)
    return dataclasses.replace(base, **overrides)
