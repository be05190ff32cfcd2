"""The synthetic synapse: geometry as asked, imaging as in a microscope, annotation as drawn."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.io import read_annotation, read_tomogram
from analysis.synthetic import QUICK_GEOMETRY, SynapseGeometry, example_files, make_synapse
from analysis.synthetic.geometry import make_phantom
from analysis.synthetic.imaging import Microscope, apply_ctf, image_phantom, project

GEOMETRY = SynapseGeometry(**QUICK_GEOMETRY)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(GEOMETRY, seed=3)


@pytest.fixture(scope="module")
def synapse():
    return make_synapse(GEOMETRY, seed=3)


def test_same_seed_same_numbers_other_seed_other_numbers():
    a, b, c = (make_phantom(GEOMETRY, seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a.density, b.density)
    assert a.vesicles.equals(b.vesicles)
    assert not np.array_equal(a.density, c.density)
    ta = image_phantom(a.density, 2.2, seed=1)["tomogram"]
    tb = image_phantom(b.density, 2.2, seed=1)["tomogram"]
    np.testing.assert_array_equal(ta, tb)


def test_vesicle_sizes_and_count(phantom):
    v = phantom.vesicles
    assert len(v) >= 0.8 * GEOMETRY.n_vesicles
    lo, hi = GEOMETRY.radius_range_nm
    assert v.radius_nm.between(lo, hi).all()
    assert v.radius_nm.mean() == pytest.approx(GEOMETRY.radius_mean_nm, abs=1.0)
    assert v.radius_vox.to_numpy() == pytest.approx(v.radius_nm.to_numpy() / 2.2)
    # labels are whole balls of the listed radius
    counts = np.bincount(phantom.labels.ravel())[1:]
    expected = 4 / 3 * np.pi * v.radius_vox.to_numpy() ** 3
    np.testing.assert_allclose(counts, expected, rtol=0.08)


def test_vesicles_never_overlap_and_many_nearly_touch(phantom):
    c = phantom.vesicles[["z_vox", "y_vox", "x_vox"]].to_numpy()
    r = phantom.vesicles.radius_vox.to_numpy()
    d = np.linalg.norm(c[:, None] - c[None], axis=-1)
    gap_nm = (d - r[:, None] - r[None]) * 2.2
    np.fill_diagonal(gap_nm, np.inf)
    assert gap_nm.min() >= GEOMETRY.min_gap_nm - 1e-6
    nearest = gap_nm.min(axis=1)
    assert np.mean(nearest < 5.0) > 0.2  # a realistic share of near neighbours


def test_vesicles_cluster_at_the_active_zone(phantom):
    v = phantom.vesicles
    # all on the presynaptic side, outside the membrane
    assert (v.az_distance_nm > v.radius_nm + GEOMETRY.membrane_thickness_nm / 2).all()
    # closer to the AZ than the cytoplasm at large: compare with the region's voxels
    region_y = np.argwhere(phantom.region_mask)[:, 1].mean() * 2.2
    assert v.y_nm.mean() < region_y
    assert (phantom.filaments.kind == "tether").any() and (
        phantom.filaments.kind == "connector"
    ).any()


def test_filaments_join_facing_membranes_off_the_line_of_closest_approach(phantom):
    v = phantom.vesicles.set_index("vesicle_id")
    f = phantom.filaments
    reach = GEOMETRY.filament_offset_nm / 2.2
    offsets = []
    for row in f.itertuples():
        a = np.array([row.z0_vox, row.y0_vox, row.x0_vox])
        b = np.array([row.z1_vox, row.y1_vox, row.x1_vox])
        ca = v.loc[row.vesicle_a, ["z_vox", "y_vox", "x_vox"]].to_numpy(float)
        assert np.linalg.norm(a - ca) == pytest.approx(v.loc[row.vesicle_a, "radius_vox"])
        if row.kind == "connector":
            cb = v.loc[row.vesicle_b, ["z_vox", "y_vox", "x_vox"]].to_numpy(float)
            assert np.linalg.norm(b - cb) == pytest.approx(v.loc[row.vesicle_b, "radius_vox"])
            axis = (cb - ca) / np.linalg.norm(cb - ca)
        else:  # straight down to the membrane's cytoplasmic face
            axis = np.array([0.0, -1.0, 0.0])
            assert phantom.az_mask[tuple(np.round(b - [0, 1.0, 0]).astype(int))]
        assert np.cross(b - a, axis) == pytest.approx(np.zeros(3), abs=1e-6)  # parallel
        w = a - ca
        offsets.append(np.linalg.norm(w - (w @ axis) * axis))
    assert max(offsets) <= reach + 1e-6
    assert np.median(offsets) > reach / 2  # uniform over the disc: most well off the axis


def test_filament_offsets_are_in_the_disc_also_for_an_axis_along_z():
    from analysis.synthetic.geometry import _disc_offset

    rng = np.random.default_rng(0)
    for normal in np.eye(3):  # along z the disc's basis was once NaN
        points = np.array([_disc_offset(rng, normal, 3.0) for _ in range(200)])
        assert np.isfinite(points).all()
        np.testing.assert_allclose(points @ normal, 0, atol=1e-12)
        assert np.linalg.norm(points, axis=1).max() <= 3.0 + 1e-9


def test_missing_wedge_is_visible_in_the_power_spectrum(synapse):
    spec = np.abs(np.fft.fft2(synapse.tomogram, axes=(0, 2))) ** 2
    spec = spec.mean(axis=1)
    kz = np.fft.fftfreq(spec.shape[0])[:, None]
    kx = np.fft.fftfreq(spec.shape[1])[None, :]
    angle = np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))  # from the k_x axis
    radius = np.hypot(kz, kx)
    band = (radius > 0.05) & (radius < 0.3)
    inside = spec[band & (angle > 65)].mean()  # beyond the 60° tilt: never measured
    outside = spec[band & (angle < 55)].mean()
    assert inside < 0.05 * outside


def test_noise_reaches_the_target_snr():
    ph = make_phantom(GEOMETRY, seed=4)
    mic = Microscope(snr=0.5)
    clean = apply_ctf(project(ph.density, mic.tilts_deg), 2.2, mic)
    noisy = image_phantom(ph.density, 2.2, mic, seed=9)["tilt_series"]
    snr = clean.var() / (noisy - clean).var()
    assert snr == pytest.approx(0.5, rel=0.2)


def test_membranes_are_dark_as_in_cryo_et(synapse):
    tomo = synapse.tomogram
    az = synapse.phantom.az_mask
    assert tomo[az].mean() < tomo[~az].mean() - 0.3


def test_manual_annotation_rasterises_back_to_the_truth(tmp_path):
    files = example_files("t", seed=3, quick=True, outdir=tmp_path)
    assert {p.name for p in files.values()} >= {
        "t_s3_quick.mrc",
        "t_s3_quick_labels.mrc",
        "t_s3_quick_manual.mod",
        "t_s3_quick_vesicles.csv",
        "t_s3_quick_az_mask.mrc",
        "t_s3_quick_filaments.csv",
    }
    tomo = read_tomogram(files["tomogram"])
    truth = read_tomogram(files["labels"]).data > 0
    ann = read_annotation(files["manual"], tomo)
    pred = ann.labels > 0
    dice = 2 * np.count_nonzero(pred & truth) / (np.count_nonzero(pred) + np.count_nonzero(truth))
    assert dice > 0.9
    n_truth = len(np.unique(read_tomogram(files["labels"]).data)) - 1
    assert ann.n_vesicles == n_truth


def test_sample_dataset_has_fixed_disjoint_splits(tmp_path):
    from analysis.synthetic import sample_dataset

    data = sample_dataset(quick=True, outdir=tmp_path)
    assert [len(data[s]) for s in ("train", "validation", "test")] == [2, 1, 1]
    names = [f["tomogram"].name for split in data.values() for f in split]
    assert len(set(names)) == len(names)
    again = sample_dataset(quick=True, outdir=tmp_path)  # cached: same files, not regenerated
    mtimes = [f["tomogram"].stat().st_mtime_ns for split in again.values() for f in split]
    assert mtimes == [f["tomogram"].stat().st_mtime_ns for split in data.values() for f in split]
