"""The independent test simulator: known geometry in, known numbers out; small volumes."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import erf

import analysis.testsim
from analysis.io import VESICLE_COLUMNS, read_tomogram
from analysis.testsim import (
    SHIFTS,
    TestSimParams,
    image_specimen,
    make_specimen,
    make_tomogram,
    shift_params,
    write_tomogram,
)
from analysis.testsim.microscope import image_intensity
from analysis.testsim.postfilter import perona_malik, quantise_8bit
from analysis.testsim.projector import back_project, filter_weights, project

SMALL = TestSimParams(shape=(32, 80, 80))


@pytest.fixture(scope="module")
def small():
    return make_tomogram(SMALL, seed=11)


def _ball(shape, centre, radius, edge=0.7):
    z, y, x = np.indices(shape, dtype=float)
    d = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
    return (0.5 * (1 + erf((radius - d) / (np.sqrt(2) * edge)))).astype(np.float32)


# --- projector -------------------------------------------------------------------------------


@pytest.mark.parametrize("tilt", [-45.0, 0.0, 30.0])
def test_projection_of_a_ball_is_its_chord_at_the_rotated_position(tilt):
    # (z, x) = (+3, -10) from the centre projects to u = x cos t + z sin t (tilt axis y)
    shape, r = (40, 2, 256), 8.0
    centre = ((shape[0] - 1) / 2 + 3, 0, (shape[2] - 1) / 2 - 10)
    sino = project(_ball(shape, centre, r), np.array([tilt]))[0, 0]
    u = np.arange(shape[2]) - (shape[2] - 1) / 2
    t = np.deg2rad(tilt)
    u0 = -10 * np.cos(t) + 3 * np.sin(t)
    assert u[np.argmax(sino)] == pytest.approx(u0, abs=1.0)
    assert sino.max() == pytest.approx(2 * r, rel=0.02)  # chord through the centre
    assert sino.sum() == pytest.approx(np.pi * r**2, rel=0.02)  # the ball's cross-section


def test_filtered_back_projection_restores_the_density_from_a_wide_tilt_range():
    shape = (16, 2, 192)
    centre = ((shape[0] - 1) / 2, 0, (shape[2] - 1) / 2)
    ball = _ball(shape, centre, 6.0)
    tilts = np.arange(-75.0, 75.5, 1.0)
    rec = back_project(project(ball, tilts), tilts, shape[0])
    # the 30° missing wedge takes a little from the centre (0.90 with ±80°, 0.78 with ±70°)
    assert rec[8, 0, 96] == pytest.approx(1.0, abs=0.2)
    assert np.abs(rec[:, :, :40]).max() < 0.05  # far from the ball


def test_filters_shape_the_ramp_as_documented():
    n = 64
    f = np.arange(n // 2 + 1) / n
    assert np.allclose(filter_weights(n, "ramp"), f)
    assert filter_weights(n, "hann")[-1] == pytest.approx(0.0, abs=1e-12)
    sirt = filter_weights(n, "sirt", sirt_iterations=8)
    assert sirt[1] == pytest.approx(f[1])  # lowest frequency: the full ramp
    assert sirt[-1] < 0.4 * f[-1]  # high frequencies: far below the ramp
    with pytest.raises(ValueError, match="recon_filter"):
        filter_weights(n, "wiener")


# --- microscope ------------------------------------------------------------------------------


def test_mass_is_dark_in_underfocus():
    phase = np.zeros((1, 64, 64), dtype=np.float32)
    phase[0, 28:36, 28:36] = 0.2  # a protein-sized phase object
    intensity = image_intensity(phase, 2.2, TestSimParams(), astigmatism_angle=0.0)
    assert intensity[0, 28:36, 28:36].mean() < 0.97
    assert intensity[0, :8, :8].mean() == pytest.approx(1.0, abs=0.02)


def test_lower_dose_gives_lower_snr_against_the_noiseless_reconstruction():
    specimen = make_specimen(SMALL, np.random.default_rng(4))

    def recon(dose, noise=True):
        p = dataclasses.replace(SMALL, dose_e_per_A2=dose)
        return image_specimen(specimen, p, np.random.default_rng(5), noise=noise)

    clean = recon(100.0, noise=False)

    def snr(volume):
        gain = float((volume * clean).sum() / (clean * clean).sum())
        return (gain * clean).var() / (volume - gain * clean).var()

    low, high = snr(recon(20.0)), snr(recon(500.0))
    assert low < 0.5 * high
    assert np.allclose(recon(20.0, noise=False), clean, atol=1e-4)  # dose only sets the noise


def test_missing_wedge_lies_in_kz_kx_beyond_the_tilt_range():
    p = dataclasses.replace(SMALL, shape=(48, 48, 64), tilt_min_deg=-40.0, tilt_max_deg=40.0)
    tomo = make_tomogram(p, seed=3).tomogram
    power = np.abs(np.fft.fftn(tomo - tomo.mean())) ** 2
    kz = np.fft.fftfreq(p.shape[0])[:, None, None]
    ky = np.fft.fftfreq(p.shape[1])[None, :, None]
    kx = np.fft.fftfreq(p.shape[2])[None, None, :]
    k_zx = np.sqrt(kz**2 + kx**2)
    band = (k_zx > 0.08) & (k_zx < 0.3)
    angle = np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))  # 0 = along kx
    measured = np.broadcast_to(band & (angle < 30), power.shape)
    missing = np.broadcast_to(band & (angle > 55), power.shape)
    assert power[missing].mean() < 0.1 * power[measured].mean()
    # along the tilt axis nothing is missing: the ky axis carries as much as kx does
    on_ky = np.broadcast_to((np.abs(kz) + np.abs(kx) == 0) & (np.abs(ky) > 0.08), power.shape)
    on_kx = np.broadcast_to((kz == 0) & (ky == 0) & (np.abs(kx) > 0.08), power.shape)
    assert power[on_ky].mean() > 0.3 * power[on_kx].mean()


# --- specimen and truth ----------------------------------------------------------------------


def test_same_seed_same_numbers_other_seed_other_numbers(small):
    again = make_tomogram(SMALL, seed=11)
    other = make_tomogram(SMALL, seed=12)
    assert np.array_equal(small.tomogram, again.tomogram)
    assert np.array_equal(small.labels, again.labels)
    pd.testing.assert_frame_equal(small.vesicles, again.vesicles)
    assert not np.array_equal(small.labels, other.labels)
    assert not np.allclose(small.tomogram, other.tomogram)


def test_tomogram_is_normalised_float32(small):
    t = small.tomogram
    assert t.dtype == np.float32 and t.shape == SMALL.shape
    assert abs(t.mean()) < 1e-3 and t.std() == pytest.approx(1.0, rel=1e-3)


def test_labels_are_the_table_spheres_and_nothing_else(small):
    table, labels = small.vesicles, small.labels
    assert list(table.columns[: len(VESICLE_COLUMNS)]) == VESICLE_COLUMNS
    assert set(np.unique(labels)) - {0} == set(table["vesicle_id"])
    assert np.allclose(table["radius_nm"], table["radius_vox"] * SMALL.voxel_size_nm)
    assert table["radius_nm"].between(16, 26).all()
    z, y, x = np.indices(labels.shape)
    covered = np.zeros(labels.shape, dtype=bool)
    for row in table.itertuples():
        d2 = (z - row.z_vox) ** 2 + (y - row.y_vox) ** 2 + (x - row.x_vox) ** 2
        ball = d2 <= row.radius_vox**2
        assert np.array_equal(labels == row.vesicle_id, ball)
        covered |= ball
    assert np.array_equal(covered, labels > 0)  # no label on any distractor


def test_whole_vesicles_have_the_volume_and_centre_of_their_row():
    p = dataclasses.replace(SMALL, shape=(56, 112, 112))
    result = make_specimen(p, np.random.default_rng(5))
    table = result.vesicles
    shape = np.array(p.shape)
    centres = table[["z_vox", "y_vox", "x_vox"]].to_numpy()
    r = table["radius_vox"].to_numpy()
    whole = np.all((centres - r[:, None] > 0) & (centres + r[:, None] < shape - 1), axis=1)
    assert whole.sum() >= 5
    for row in table[whole].itertuples():
        voxels = np.argwhere(result.labels == row.vesicle_id)
        assert len(voxels) == pytest.approx(4 / 3 * np.pi * row.radius_vox**3, rel=0.05)
        assert np.allclose(voxels.mean(axis=0), [row.z_vox, row.y_vox, row.x_vox], atol=0.3)


def test_vesicles_cut_by_the_faces_are_labelled(small):
    table = small.vesicles
    counts = np.bincount(small.labels.ravel())[table["vesicle_id"]]
    fraction = counts / (4 / 3 * np.pi * table["radius_vox"].to_numpy() ** 3)
    assert np.allclose(table["inside_fraction"], fraction)
    cut = fraction < 0.9
    assert cut.sum() >= 3
    # every cut vesicle keeps at least a cap of half its radius inside (about 15 %)
    assert fraction.min() > 0.12
    centres = table[["z_vox", "y_vox", "x_vox"]].to_numpy()
    outside = np.any((centres < 0) | (centres > np.array(SMALL.shape) - 1), axis=1)
    assert outside.any()  # some centres lie beyond a face


def test_membranes_are_dark(small):
    table, tomo = small.vesicles, small.tomogram
    z, y, x = np.indices(tomo.shape)
    shell = np.zeros(tomo.shape, dtype=bool)
    for row in table.itertuples():
        rho = np.sqrt((z - row.z_vox) ** 2 + (y - row.y_vox) ** 2 + (x - row.x_vox) ** 2)
        thickness = row.membrane_thickness_nm / SMALL.voxel_size_nm
        shell |= (rho <= row.radius_vox) & (rho >= row.radius_vox - thickness)
    assert tomo[shell].mean() < tomo.mean() - 0.3


def test_every_shift_builds_a_tiny_tomogram():
    tiny = TestSimParams(shape=(12, 32, 32))
    for name in SHIFTS:
        params = shift_params(name, tiny)
        result = make_tomogram(params, seed=1)
        assert result.tomogram.shape == params.shape, name
        assert np.isfinite(result.tomogram).all(), name
        assert result.voxel_size_nm == params.voxel_size_nm
    assert shift_params("tilt50").tilts_deg[[0, -1]].tolist() == [-50.0, 50.0]
    assert shift_params("voxel1p4").shape == (151, 302, 302)  # the same box in nm
    with pytest.raises(KeyError, match="known: nominal"):
        shift_params("tilt 50")


def test_shift_names_are_file_name_safe():
    for name in SHIFTS:
        assert name.replace("_", "").isalnum() and name.isascii(), name


def test_imaging_shifts_keep_the_specimen():
    nominal = make_tomogram(TestSimParams(shape=(16, 48, 48)), seed=7)
    shifted = make_tomogram(shift_params("defocus3", TestSimParams(shape=(16, 48, 48))), seed=7)
    assert np.array_equal(nominal.labels, shifted.labels)
    assert not np.allclose(nominal.tomogram, shifted.tomogram)


# --- post-filters ------------------------------------------------------------------------------


def test_perona_malik_smooths_noise_but_keeps_an_edge():
    rng = np.random.default_rng(0)
    step = np.zeros((16, 16, 32), dtype=np.float32)
    step[..., 16:] = 4.0
    noisy = step + rng.normal(size=step.shape).astype(np.float32)
    out = perona_malik(noisy, iterations=20)
    assert (out - step)[..., 2:14].std() < 0.5  # noise down by more than half
    assert out[..., 17:].mean() - out[..., :15].mean() > 3.6  # the edge survives


def test_quantise_8bit_keeps_256_levels():
    volume = np.random.default_rng(0).normal(size=(8, 8, 8))
    q = quantise_8bit(volume)
    assert q.min() == 0 and q.max() == 255
    assert np.array_equal(q, np.rint(q))


# --- files and independence ------------------------------------------------------------------


def test_write_tomogram_writes_the_design_files(small, tmp_path):
    paths = write_tomogram(small, tmp_path, "t1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "t1.mrc",
        "t1_labels.mrc",
        "t1_testsim.json",
        "t1_vesicles.csv",
    ]
    tomo = read_tomogram(paths["tomogram"])
    assert tomo.voxel_size_nm == pytest.approx(SMALL.voxel_size_nm, rel=1e-4)
    assert np.allclose(tomo.data, small.tomogram)
    assert np.array_equal(np.asarray(read_tomogram(paths["labels"]).data), small.labels)
    table = pd.read_csv(paths["vesicles"])
    assert np.allclose(table[VESICLE_COLUMNS], small.vesicles[VESICLE_COLUMNS])


def test_no_import_from_the_training_generator():
    package = Path(analysis.testsim.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                assert "synthetic" not in name, f"{path.name} imports {name}"
                if name.startswith("analysis"):
                    assert name.split(".")[1] in ("io", "testsim"), f"{path.name}: {name}"
