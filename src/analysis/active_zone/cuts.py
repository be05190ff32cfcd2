"""Straight-path cuts that follow the tomogram's quality.

The straight-path test (:mod:`.paths`) keeps a pair of boundaries when the darkest path across
their gap is dark enough, in standard deviations (SD) of the remainder. How dark a filament
comes out in those units depends on the data: the more noise, the fainter every structure is
against the SD. So does the right cut — on generated tomograms the best cut for connectors
goes from −0.9 SD at a per-image SNR of 0.25 to −1.55 SD at 2, and one fixed cut loses
precision on better data (``benchmarks/filament_detection.py --snr …``).

The vesicles themselves say how good the data are: their membranes are dense structures of
known place, so their darkness, in the same SD units, measures the contrast of the
tomogram — :func:`membrane_contrast`. The cut of each kind is a straight line in that
contrast (:data:`PATH_CUT_MODEL`), fitted on generated tomograms imaged at per-image SNRs
from 0.25 to 2 — through the cuts that are best at the generator's own SNR, so that there
the default is what it was; outside that range the contrast is clipped to it. On real data
the line carries over as far as the generator's physics does (membranes of lipid density,
filaments of protein density, the same CTF and missing wedge); set the cuts yourself where
that is in doubt.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import edt
import numpy as np

from analysis.errors import DataError, ParameterError

#: Thickness of a vesicle's membrane (nm): the outer shell of a label it averages over.
MEMBRANE_NM = 4.0
#: Cut = intercept + slope × membrane contrast, per kind (SD of the remainder). Each line
#: goes through the cut chosen on generated tomograms at the generator's own SNR of 0.5
#: (seeds 501–508, at their mean contrast, 1.16): −1.2 for connectors, where their F1 is
#: within 0.005 of the best (0.773 against 0.778 at −1.05, which counts 11 % too many);
#: −0.85 for tethers, whose totals per tomogram come closest to the truth there (the best
#: F1 of tethers, at −0.65, counts 30 % too many). The slopes are those of the best pooled F1
#: on those seeds, on average over seven per-image SNRs from 0.25 to 2
#: (``benchmarks/filament_detection.py --snr 0.25 0.35 0.5 0.7 1 1.4 2``), fitted before the
#: membrane's profile was measured in the cytoplasm alone, which moved the tether cut from
#: −0.5 (:func:`~analysis.active_zone.remove_boundary_profiles`). Fitted again since (five
#: SNRs, 0.25–2), the connector slope comes out the same and the tether slope is poorly
#: determined (−0.05 on the five, −0.35 leaving out 0.7), so both are kept.
PATH_CUT_MODEL = MappingProxyType({"connector": (-0.79, -0.35), "tether": (-0.62, -0.2)})
#: Membrane contrasts of those generated tomograms (SNR 0.25 to 2); beyond, clipped.
CONTRAST_RANGE = (0.80, 2.16)


def membrane_contrast(
    tomogram: np.ndarray,
    reference: np.ndarray,
    vesicle_labels: np.ndarray,
    region: np.ndarray,
    voxel_size_nm: float,
) -> float:
    """How dark the vesicles' membranes are, in SD of ``reference`` over ``region``.

    Parameters
    ----------
    tomogram : numpy.ndarray, shape (z, y, x)
        Densities dark.
    reference : numpy.ndarray, shape (z, y, x)
        The volume whose SD over ``region`` is the unit (the remainder of the path test).
    vesicle_labels : numpy.ndarray, int, shape (z, y, x)
        Whole vesicles; their outer :data:`MEMBRANE_NM` is the membrane.
    region : numpy.ndarray of bool, shape (z, y, x)
        The cytoplasm between the boundaries.
    voxel_size_nm : float

    Returns
    -------
    float
        (mean of ``tomogram`` over the region − its mean over the membranes) / SD; positive
        when membranes are dark.
    """
    inside = np.asarray(vesicle_labels) > 0
    depth = edt.edt(inside, black_border=False, parallel=1)
    membrane = inside & (depth <= MEMBRANE_NM / voxel_size_nm)
    if not membrane.any() or not np.any(region):
        raise DataError("no vesicle membrane or no region voxel to measure the contrast on")
    values = np.asarray(tomogram)
    sd = float(np.asarray(reference)[region].std(dtype=np.float64))
    darker = values[region].mean(dtype=np.float64) - values[membrane].mean(dtype=np.float64)
    return float(darker / (sd + 1e-12))


def path_cuts(contrast: float) -> dict[str, float]:
    """The straight-path cut of each kind for a tomogram of this membrane contrast."""
    c = float(np.clip(contrast, *CONTRAST_RANGE))
    return {kind: a + b * c for kind, (a, b) in PATH_CUT_MODEL.items()}


def resolve_cuts(max_path_grey, contrast: float) -> dict[str, float] | None:
    """The cuts ``find_filaments`` applies: from "auto", one number, or one per kind.

    A mapping may give "auto" for a kind, or leave it out (the same); None (no test) stays
    None.
    """
    if max_path_grey is None:
        return None
    auto = path_cuts(contrast)
    if not isinstance(max_path_grey, Mapping):  # "auto" or a number: the same for both kinds
        max_path_grey = dict.fromkeys(auto, max_path_grey)
    cuts = {}
    for kind in auto:
        value = max_path_grey.get(kind, "auto")
        if isinstance(value, str):
            if value != "auto":
                raise ParameterError(f"max_path_grey: {value!r} is neither a number nor 'auto'")
            value = auto[kind]
        cuts[kind] = float(value)
    return cuts
