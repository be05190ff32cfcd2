"""The varied generator (scene content, imaging options, resampling) and robust augmentation."""

import numpy as np
import pytest

from analysis import augment as aug
from analysis.synthetic import QUICK_GEOMETRY, SynapseGeometry
from analysis.synthetic.geometry import make_phantom
from analysis.synthetic.imaging import (
    RECONSTRUCTION_FILTERS,
    post_filter,
    quantise,
    reconstruction_weight,
)
from analysis.synthetic.scene import Scene, random_field
from analysis.synthetic.variety import draw_conditions, make_varied_synapse, quick_conditions

SMALL = {**QUICK_GEOMETRY, "shape": (48, 96, 96), "n_vesicles": 12}


def test_an_empty_scene_leaves_the_phantom_as_version_3_made_it():
    plain = make_phantom(SynapseGeometry(**SMALL), seed=11)
    empty = make_phantom(SynapseGeometry(**SMALL, scene=Scene()), seed=11)
    np.testing.assert_array_equal(plain.density, empty.density)
    np.testing.assert_array_equal(plain.labels, empty.labels)


def test_scene_content_is_added_but_never_labelled():
    scene = Scene(field_amplitude=0.2, n_actin=5, n_gold=3, n_coated=2, n_dense_core=1)
    plain = make_phantom(SynapseGeometry(**SMALL), seed=11)
    busy = make_phantom(SynapseGeometry(**SMALL, scene=scene), seed=11)
    assert busy.density.max() > 5  # gold is far denser than any membrane
    assert plain.density.max() < 3
    # only synaptic vesicles carry labels: one id per table row, nothing else
    ids = np.unique(busy.labels)
    assert set(ids[ids > 0]) == set(busy.vesicles["vesicle_id"])
    assert busy.density[busy.labels == 0].std() > plain.density[plain.labels == 0].std()


def test_cut_vesicles_cross_the_faces_and_are_labelled_in_part():
    g = SynapseGeometry(**SMALL, scene=Scene(n_cut_vesicles=6))
    ph = make_phantom(g, seed=5)
    shape = np.asarray(g.shape)
    table = ph.vesicles
    centres = table[["z_vox", "y_vox", "x_vox"]].to_numpy()
    r = table["radius_vox"].to_numpy()
    cut = np.any((centres - r[:, None] < 0) | (centres + r[:, None] > shape - 1), axis=1)
    assert cut.sum() >= 3
    counts = np.bincount(ph.labels.ravel(), minlength=len(table) + 1)[1:]
    full = 4 / 3 * np.pi * r**3
    assert np.all(counts[cut] < 0.95 * full[cut])  # only part of each is inside
    assert np.all(counts[cut] > 0)
    assert np.all(np.abs(counts[~cut] / full[~cut] - 1) < 0.1)


def test_random_field_has_unit_sd_and_its_correlation_length():
    rng = np.random.default_rng(0)
    short = random_field((32, 32, 32), 1.0, 1.0, 3.0, rng)
    long = random_field((32, 32, 32), 1.0, 6.0, 3.0, rng)

    def lag1(f):
        return np.corrcoef(f[:, :, :-1].ravel(), f[:, :, 1:].ravel())[0, 1]

    assert short.std() == pytest.approx(1.0, rel=1e-3)
    assert lag1(long) > 0.95 > 0.85 > lag1(short)


@pytest.mark.parametrize("kind", RECONSTRUCTION_FILTERS)
def test_reconstruction_weights_are_ramps_at_low_frequency(kind):
    assert reconstruction_weight(np.array([0.002]), kind)[0] == pytest.approx(0.004, rel=0.05)
    ramp = reconstruction_weight(np.array([0.3]), "ramp")[0]
    if kind in ("sirt", "hamming"):  # both smooth: weaker than the ramp at high frequency
        assert reconstruction_weight(np.array([0.3]), kind)[0] < 0.8 * ramp


def test_unknown_filters_are_refused():
    with pytest.raises(ValueError, match="reconstruction filter"):
        reconstruction_weight(np.array([0.1]), "art")
    with pytest.raises(ValueError, match="post filter"):
        post_filter(np.zeros((4, 4, 4), np.float32), "wiener")


def test_nad_smooths_noise_but_keeps_an_edge_gaussian_blurs():
    rng = np.random.default_rng(1)
    step = np.zeros((16, 16, 32), np.float32)
    step[..., 16:] = 4.0
    noisy = step + rng.normal(0, 0.5, step.shape).astype(np.float32)
    nad = post_filter(noisy, "nad", 2.0)
    gauss = post_filter(noisy, "gaussian", 2.0)
    assert nad[..., 2:12].std() < 0.6 * noisy[..., 2:12].std()
    # the step between x = 15 and 16 stays sharp after diffusion, not after the blur
    assert (nad[..., 16] - nad[..., 15]).mean() > 3.0
    assert (gauss[..., 16] - gauss[..., 15]).mean() < 2.0


def test_quantise_stores_256_grey_levels():
    v = np.random.default_rng(2).normal(size=(8, 16, 16)).astype(np.float32)
    q = quantise(v, 8)
    assert q.min() == 0 and q.max() == 255
    np.testing.assert_array_equal(q, np.rint(q))
    assert np.corrcoef(q.ravel(), v.ravel())[0, 1] > 0.99


def test_conditions_are_seeded_and_vary():
    a, b, c = draw_conditions(3), draw_conditions(3), draw_conditions(4)
    assert a.describe() == b.describe()
    assert a.describe() != c.describe()
    sizes = [draw_conditions(s).geometry.voxel_size_nm for s in range(40)]
    assert min(sizes) >= 1.1 and max(sizes) <= 3.2 and np.ptp(sizes) > 1.2


def test_a_varied_synapse_keeps_its_truth_through_resampling():
    seed = next(s for s in range(10001, 10100) if draw_conditions(s).geometry.voxel_size_nm > 2.6)
    cond = quick_conditions(draw_conditions(seed))
    syn = make_varied_synapse(seed, cond)
    again = make_varied_synapse(seed, cond)
    np.testing.assert_array_equal(syn.tomogram, again.tomogram)
    assert syn.tomogram.shape == syn.labels.shape == (48, 96, 96)
    # every whole vesicle's label is centred on its table row after resampling (voxels)
    table = syn.vesicles.set_index("vesicle_id")
    from scipy import ndimage

    ids = np.unique(syn.labels)[1:]
    com = np.array(ndimage.center_of_mass(syn.labels > 0, syn.labels, ids))
    rows = table.loc[ids]
    expected = rows[["z_vox", "y_vox", "x_vox"]].to_numpy()
    r = rows["radius_vox"].to_numpy()
    top = np.asarray(syn.labels.shape) - 1
    inside = np.all((expected - r[:, None] >= 0) & (expected + r[:, None] <= top), axis=1)
    assert inside.sum() >= 3
    assert np.abs(com[inside] - expected[inside]).max() < 0.3
    # and the membranes (dark) sit on the labels' rims in the resampled tomogram
    rim = (syn.labels > 0) & ~ndimage.binary_erosion(syn.labels > 0, iterations=2)
    assert syn.tomogram[rim].mean() < syn.tomogram.mean() - 0.2


def test_missing_wedge_removes_what_a_tilt_series_cannot_see():
    z, x = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    along_z = np.broadcast_to(np.cos(2 * np.pi * 8 * z / 32)[:, None, :], (32, 8, 32))
    along_x = np.broadcast_to(np.cos(2 * np.pi * 8 * x / 32)[:, None, :], (32, 8, 32))
    assert np.abs(aug.missing_wedge(along_z.astype(np.float32), 60)).max() < 1e-5
    np.testing.assert_allclose(
        aug.missing_wedge(along_x.astype(np.float32), 60), along_x, atol=1e-5
    )


def test_intensity_augmentations_keep_what_they_should():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(16, 16, 16)).astype(np.float32)
    inverted = aug.invert(image)
    assert inverted.mean() == pytest.approx(image.mean(), abs=1e-5)
    assert inverted.std() == pytest.approx(image.std(), rel=1e-5)
    assert np.corrcoef(inverted.ravel(), image.ravel())[0, 1] == pytest.approx(-1)
    assert aug.spectrum_filter(image, rng).mean() == pytest.approx(image.mean(), abs=1e-4)
    assert aug.lower_resolution(image, 2.0).shape == image.shape
    assert aug.lower_resolution(image, 2.0).std() < 0.7 * image.std()
    with pytest.raises(ValueError, match="augmentation level"):
        aug.augment(image, image, image, rng, level="heavy")


def test_alignment_errors_blur_what_was_sharp():
    from analysis.synthetic.imaging import Microscope, image_phantom

    density = np.zeros((24, 48, 48), np.float32)
    density[12, 24, 24] = 50.0  # a point of mass
    exact = Microscope(snr=1e6)
    sloppy = Microscope(snr=1e6, shift_error_nm=4.0, tilt_error_deg=1.0)
    sharp = image_phantom(density, 2.0, exact, seed=1)["tomogram"]
    blurred = image_phantom(density, 2.0, sloppy, seed=1)["tomogram"]
    again = image_phantom(density, 2.0, sloppy, seed=1)["tomogram"]
    np.testing.assert_array_equal(blurred, again)
    # mass is dark: the point's darkest value is fainter when the series is misaligned
    assert blurred.min() / blurred.std() > 0.8 * (sharp.min() / sharp.std())


def test_varied_splits_never_share_a_seed():
    from analysis.errors import ParameterError
    from analysis.synthetic.variety import VARIED_SEEDS, varied_dataset

    seen = [set(seeds) for seeds in VARIED_SEEDS.values()]
    assert sum(map(len, seen)) == len(set().union(*seen))  # disjoint
    assert set(VARIED_SEEDS) == {"train", "validation", "test", "faint"}
    with pytest.raises(ParameterError, match="split must be one of"):
        varied_dataset("holdout", 1)


def test_the_faint_tier_keeps_the_draw_but_its_alignment_errors():
    from analysis.synthetic.variety import (
        FAINT_SHIFT_ERROR_NM,
        FAINT_TILT_ERROR_DEG,
        draw_conditions,
        draw_faint_conditions,
    )

    for seed in (12001, 12002, 12003):
        base, faint = draw_conditions(seed), draw_faint_conditions(seed)
        assert faint.geometry == base.geometry
        assert FAINT_SHIFT_ERROR_NM[0] <= faint.microscope.shift_error_nm <= FAINT_SHIFT_ERROR_NM[1]
        assert FAINT_TILT_ERROR_DEG[0] <= faint.microscope.tilt_error_deg <= FAINT_TILT_ERROR_DEG[1]
        for name in ("snr", "defocus_um", "tilt_min_deg", "recon_filter", "post_filter"):
            assert getattr(faint.microscope, name) == getattr(base.microscope, name), name
    assert draw_faint_conditions(12001) == draw_faint_conditions(12001)


def test_the_faint_split_keeps_only_draws_of_faint_vesicles(tmp_path, monkeypatch):
    """Draws outside FAINT_CONTRAST are left out and remembered; the kept ones are the first
    seeds whose contrast is in range. The contrast is stood in for by a table per seed."""
    import analysis.contrast as contrast_module
    import analysis.synthetic.variety as variety
    from analysis.errors import ParameterError

    made = []
    real = variety.make_varied_synapse
    monkeypatch.setattr(
        variety, "make_varied_synapse", lambda seed, c: made.append(seed) or real(seed, c)
    )
    contrast = {12001: 0.9, 12002: 0.3, 12003: 0.05, 12004: 0.5}  # kept: 12002 and 12004
    monkeypatch.setattr(
        contrast_module, "vesicle_contrast", lambda tomogram, labels: contrast[made[-1]]
    )
    monkeypatch.setattr(variety, "VARIED_SEEDS", {"faint": range(12001, 12005)})
    files = variety.varied_dataset("faint", 2, outdir=tmp_path, quick=True)
    assert [f["tomogram"].name for f in files] == [
        "varied_faint_s12002_quick.mrc",
        "varied_faint_s12004_quick.mrc",
    ]
    assert sorted(p.name for p in tmp_path.glob(".*.skip")) == [
        ".varied_faint_s12001_quick.skip",
        ".varied_faint_s12003_quick.skip",
    ]
    assert not list(tmp_path.glob("varied_faint_s12001*"))  # nothing of a draw left out
    made.clear()
    assert variety.varied_dataset("faint", 2, outdir=tmp_path, quick=True) == files
    assert made == []  # cached, the left-out ones too
    with pytest.raises(ParameterError, match="keeps 2 tomograms, not 3"):
        variety.varied_dataset("faint", 3, outdir=tmp_path, quick=True)
