"""Straight-path cuts from the membrane contrast: the measure, the line, and real data."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.active_zone import find_filaments
from analysis.active_zone.cuts import (
    CONTRAST_RANGE,
    membrane_contrast,
    path_cuts,
    resolve_cuts,
)
from analysis.io import paint_ball


def test_membrane_contrast_is_the_membranes_darkness_in_sd_of_the_reference():
    # One vesicle of radius 10 voxels (2 nm each): a membrane 6 nm thick at -3, a bright
    # lumen, noise around. The 4 nm shell the measure averages lies inside that membrane, so
    # the contrast is exactly (region mean + 3) / region SD; the lumen must not count.
    shape = (40, 40, 40)
    rng = np.random.default_rng(0)
    tomo = rng.normal(0.0, 1.5, shape)
    labels = np.zeros(shape, np.int32)
    paint_ball(labels, np.array([20.0, 20.0, 20.0]), 10.0, 1)
    r = np.sqrt(((np.indices(shape) - 20.0) ** 2).sum(axis=0))
    tomo[labels > 0] = 5.0
    tomo[(labels > 0) & (r > 10.0 - 3.0)] = -3.0
    region = labels == 0
    expected = (tomo[region].mean() + 3.0) / tomo[region].std()
    assert membrane_contrast(tomo, tomo, labels, region, 2.0) == pytest.approx(expected, 1e-9)
    assert expected == pytest.approx(2.0, abs=0.05)
    # the unit is the reference's SD: twice the noise there, half the contrast
    half = membrane_contrast(tomo, 2 * tomo, labels, region, 2.0)
    assert half == pytest.approx(expected / 2, 1e-9)
    with pytest.raises(ValueError, match="no vesicle membrane"):
        membrane_contrast(tomo, tomo, np.zeros(shape, np.int32), region, 2.0)


def test_cuts_get_stricter_with_contrast_and_stay_in_the_calibrated_range():
    low, high = CONTRAST_RANGE
    contrasts = np.linspace(low, high, 5)
    for kind in ("connector", "tether"):
        cuts = [path_cuts(c)[kind] for c in contrasts]
        assert np.all(np.diff(cuts) < 0)  # clearer data: a filament must be darker
        assert path_cuts(low - 1.0)[kind] == cuts[0]
        assert path_cuts(high + 1.0)[kind] == cuts[-1]
    for c in contrasts:  # a tether is imaged fainter (along the tilt axis): a looser cut
        assert path_cuts(c)["connector"] < path_cuts(c)["tether"]


def test_max_path_grey_is_auto_a_number_or_one_per_kind():
    auto = path_cuts(1.2)
    assert resolve_cuts("auto", 1.2) == auto
    assert resolve_cuts(-1.0, 1.2) == {"connector": -1.0, "tether": -1.0}
    assert resolve_cuts({"tether": -0.3}, 1.2) == {"connector": auto["connector"], "tether": -0.3}
    assert resolve_cuts({"connector": -2, "tether": "auto"}, 1.2)["tether"] == auto["tether"]
    assert resolve_cuts(None, 1.2) is None
    with pytest.raises(ValueError, match="'strict' is neither"):
        resolve_cuts("strict", 1.2)


def test_better_data_give_a_higher_contrast_and_stricter_cuts():
    # The same phantom imaged at a per-image SNR of 0.25 and of 2: find_filaments measures
    # the contrast and applies the cuts that follow from it.
    from analysis.synthetic import QUICK_GEOMETRY, SynapseGeometry, make_synapse
    from analysis.synthetic.imaging import Microscope

    results = {}
    for snr in (0.25, 2.0):
        synapse = make_synapse(SynapseGeometry(**QUICK_GEOMETRY), Microscope(snr=snr), seed=301)
        p = synapse.phantom
        results[snr] = find_filaments(synapse.tomogram, p.labels, p.az_mask, p.region_mask, 2.2)
    noisy, clear = results[0.25], results[2.0]
    assert clear.membrane_contrast > noisy.membrane_contrast + 0.8
    for kind in ("connector", "tether"):
        assert clear.path_cuts[kind] < noisy.path_cuts[kind]
    for result in (noisy, clear):
        assert result.path_cuts == path_cuts(result.membrane_contrast)
        assert (result.table["path_grey"] <= result.table["path_cut"]).all()
