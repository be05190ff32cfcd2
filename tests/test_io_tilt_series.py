"""A tilt series given where a tomogram is expected, without header evidence.

Tilt series and tomograms are the package's own: the generator's (v3) imaging of a phantom
(``image_phantom``: ±60°, noise at SNR 0.5 per image) and the independent simulator's
tomograms, so the rule is measured on data whose truth is known.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from analysis.errors import InputFileError
from analysis.io import TiltSeriesWarning, read_like, read_tomogram, write_mrc
from analysis.io import tilt_series as ts


@pytest.fixture(scope="module")
def imaged():
    """A thin phantom (32 × 256 × 256) imaged at ±60° in 3° steps: 41 images of 256 × 256,
    shaped as a binned tilt series is, and its reconstruction."""
    from analysis.synthetic import Microscope, scaled_geometry
    from analysis.synthetic.geometry import make_phantom
    from analysis.synthetic.imaging import image_phantom

    geometry = scaled_geometry((32, 256, 256))
    phantom = make_phantom(geometry, seed=1)
    return image_phantom(phantom.density, geometry.voxel_size_nm, Microscope(tilt_step_deg=3), 2)


def _no_warning(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TiltSeriesWarning)
        return read_tomogram(path)


def test_a_tilt_series_without_header_evidence_is_warned_about(tmp_path, imaged):
    series = imaged["tilt_series"]
    assert series.shape == (41, 256, 256)
    assert ts.profile_ratio(series) > 0.9
    path = write_mrc(tmp_path / "stack.mrc", series, 1.5)
    with pytest.warns(TiltSeriesWarning) as caught:
        read_tomogram(path)
    message = str(caught[0].message)
    assert message.startswith(f"{path}: looks like a tilt series") and "etomo" in message
    # the same stack given as a mask of a tomogram: a mask may be alike slice to slice
    with warnings.catch_warnings():
        warnings.simplefilter("error", TiltSeriesWarning)
        read_like(path, read_tomogram(path, check_tilt_series=False), "mask")


def test_the_statistics_rule_stays_quiet_on_tomograms(tmp_path, imaged):
    from analysis import testsim
    from analysis.synthetic import make_synapse, scaled_geometry
    from analysis.testsim import TestSimParams

    # the reconstruction of the tilt series above: 8 times as wide as thick, but its slices
    # part with depth
    assert ts.profile_ratio(imaged["tomogram"]) < 0.8
    _no_warning(write_mrc(tmp_path / "thin.mrc", imaged["tomogram"], 1.5))
    # the generator's (thin 48 × 96 × 96 and the quick 64 × 128 × 128) and the independent
    # simulator's tomograms, judged without the shape gate: all below the ratio
    tomograms = [make_synapse(scaled_geometry((48, 96, 96)), seed=s).tomogram for s in (5, 6)]
    tomograms.append(make_synapse(scaled_geometry((64, 128, 128)), seed=301).tomogram)
    tomograms.append(testsim.make_tomogram(TestSimParams(shape=(48, 96, 96)), seed=3).tomogram)
    ratios = [ts.profile_ratio(t) for t in tomograms]
    assert max(ratios) < 0.78, ratios
    for i, tomogram in enumerate(tomograms):
        _no_warning(write_mrc(tmp_path / f"t{i}.mrc", tomogram, 1.5))


def test_only_stacks_shaped_like_tilt_series_are_judged(imaged):
    series = imaged["tilt_series"]
    assert ts.statistics_evidence(series) is not None
    # too few images, or images too small for the count: not judged
    assert ts.statistics_evidence(series[5:-6]) is None  # 30 images
    assert ts.statistics_evidence(series[:, :200, :200]) is None  # 200 < 6 × 41
    # profiles of pure noise say nothing
    noise = np.random.default_rng(0).normal(size=(41, 256, 256)).astype(np.float32)
    assert ts.profile_ratio(noise) == 0.0


def test_a_tilt_angle_file_beside_the_stack_is_refused(tmp_path):
    stack = np.random.default_rng(0).normal(size=(41, 24, 24)).astype(np.float32)
    path = write_mrc(tmp_path / "tomo.mrc", stack, 1.5)
    np.savetxt(tmp_path / "tomo.rawtlt", np.linspace(-60, 60, 41), fmt="%.2f")
    with pytest.raises(InputFileError) as info:
        read_tomogram(path)
    message = str(info.value)
    assert "tomo.rawtlt beside it lists 41 tilt angles (-60° to 60°), one per image" in message
    assert "etomo" in message and "\n" not in message

    # IMOD's reconstruction sits beside its tilt series' angle file
    (tmp_path / "tomo.tlt").write_text((tmp_path / "tomo.rawtlt").read_text())
    _no_warning(write_mrc(tmp_path / "tomo.rec", stack, 1.5))
    # another number of angles than images, or a file of no numbers: no evidence
    np.savetxt(tmp_path / "tomo.rawtlt", np.linspace(-60, 60, 61), fmt="%.2f")
    (tmp_path / "tomo.tlt").write_text("not angles\n")
    _no_warning(path)
