"""Spectrum matching on known spectra: the slab filter is the whole-volume filter, the fit
follows the gains, a blurred volume gets its spectrum back, and a network without a
reference spectrum is refused before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from analysis.errors import ParameterError
from analysis.inference import predict, spectrum
from analysis.io import read_tomogram
from analysis.models import Predictor, UNet3D, UNetConfig
from analysis.normalise import DEFAULT_NORMALISATION, centre_and_scale

VS = 2.2


def _structured(shape, sigma, seed=0):
    noise = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    return ndimage.gaussian_filter(noise, sigma)


def _shape_of_spectrum(volume):
    """Radial log amplitude of the normalised central crop, less its mean: the spectrum's
    shape, which is all that counts once the filtered volume is normalised again."""
    centre, scale = centre_and_scale(volume)
    crop = (spectrum.central_crop(volume, spectrum.CROP_SHAPE) - centre) / scale
    log_amplitude = spectrum.radial_log_amplitude(spectrum.power_spectrum(crop), VS)
    return log_amplitude - np.nanmean(log_amplitude), log_amplitude


def test_the_filter_a_slab_at_a_time_is_the_whole_volume_filter(tmp_path):
    volume = _structured((75, 20, 24), 1.0)
    weights = np.array([1.5, 0.3, -0.8, 0.2, 0.1, -0.05, 0.4, -0.2, 0.0])
    # by hand: the Gaussians as a cascade (each from the one before), truncated at 3 sigma
    expected, blurred, previous = weights[0] * volume, volume, 0.0
    for w, sigma in zip(weights[1:], spectrum.SIGMAS_VOX, strict=True):
        step = np.sqrt(sigma**2 - previous**2)
        blurred = ndimage.gaussian_filter(blurred, step, mode="nearest", truncate=3.0)
        expected += w * blurred
        previous = sigma
    whole = spectrum.apply_gain_filter(volume, weights)
    np.testing.assert_allclose(whole, expected, atol=1e-5)
    # memory maps in and out, slabs of 4 planes (margin 28 for the first seven Gaussians: the
    # middle slabs have real planes on both sides, the first and last reach the faces)
    source = np.memmap(tmp_path / "in.f32", np.float32, "w+", shape=volume.shape)
    source[:] = volume
    out = np.memmap(tmp_path / "out.f32", np.float32, "w+", shape=volume.shape)
    spectrum.apply_gain_filter(source, weights, out=out, planes=4)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match="cannot write into the volume"):
        spectrum.apply_gain_filter(source, weights, out=source, planes=4)
    # on three threads, slab by slab as above: the same numbers to the bit
    threaded = np.memmap(tmp_path / "threads.f32", np.float32, "w+", shape=volume.shape)
    spectrum.apply_gain_filter(source, weights, out=threaded, planes=4, threads=3)
    np.testing.assert_array_equal(threaded, out)


def _impulse_response_spectrum(weights, n=96):
    """The filter's transfer function measured with an impulse (its reach, 45 voxels, stays
    inside the box), and the frequencies (cycles/voxel) it is sampled at."""
    impulse = np.zeros((n, n, n), np.float32)
    impulse[n // 2, n // 2, n // 2] = 1.0
    response = spectrum.apply_gain_filter(impulse, weights)
    f = np.fft.fftfreq(n)
    return np.fft.fftn(np.fft.ifftshift(response)).real, (f[:, None, None], f[None, :, None], f)


@pytest.mark.parametrize(
    "gains, rtol",
    [
        # smooth: within 5 % but the finest bin (0.90 of its gain, against the taper beyond)
        (np.geomspace(1.0, 4.0, 11), 0.1),
        # testsim defocus -3 um, seed 9103: a plateau, a step down, 1 from 9 nm periods on
        ([2.3, 2.4, 2.82, 2.64, 2.6, 2.16, 1.48, 1.1, 1.0, 1.0, 1.0], 0.12),
    ],
)
def test_the_filter_as_applied_follows_the_gains(gains, rtol):
    gains = np.asarray(gains)
    weights = spectrum.gain_weights(gains, VS)
    measured, (fz, fy, fx) = _impulse_response_spectrum(weights)
    # the model of the filter is the filter: sampled, truncated, cascaded kernels
    np.testing.assert_allclose(spectrum.filter_response(weights, fz, fy, fx), measured, atol=1e-5)
    radius = np.sqrt(fz**2 + fy**2 + fx**2)
    edges = np.asarray(spectrum.SPECTRUM_EDGES_PER_NM) * VS  # cycles/voxel
    bins = np.digitize(radius, edges) - 1
    means = np.array([measured[bins == i].mean() for i in range(len(gains))])
    np.testing.assert_allclose(means, gains, rtol=rtol)
    # finer than any bin: never above the largest gain, and tapered towards 1 in the corners
    assert measured[radius > 0.5].max() < 1.05 * gains.max()
    assert abs(measured[radius > 0.8].mean() - 1.0) < 0.5 * abs(means[-1] - 1.0) + 0.05


def test_unit_gains_change_nothing_and_cost_no_filtering():
    unit = spectrum.gain_weights(np.ones(11), VS)
    np.testing.assert_array_equal(unit, np.eye(len(spectrum.SIGMAS_VOX) + 1)[0])
    volume = _structured((12, 16, 16), 1.0)
    np.testing.assert_array_equal(spectrum.apply_gain_filter(volume, unit), volume)


def test_gains_bring_each_bin_into_the_range_and_no_further():
    own = [0.0, 0.0, 0.0, 0.0, np.nan]
    low = [-1.0, np.log(2.0), 5.0, -5.0, 0.0]
    high = [1.0, 3.0, 6.0, -4.0, 1.0]
    # inside: unchanged; below: raised to the low end; far below or above: limited; unknown: 1
    gains = spectrum.spectrum_gains(own, low, high)
    np.testing.assert_allclose(gains, [1.0, 2.0, 4.0, 0.25, 1.0])


def test_matching_gives_a_blurred_volume_the_spectrum_of_the_sharp_one():
    sharp = _structured(spectrum.CROP_SHAPE, 0.7)
    shape_sharp, target = _shape_of_spectrum(sharp)
    blurred = ndimage.gaussian_filter(sharp, 0.6)
    shape_blurred, _ = _shape_of_spectrum(blurred)
    centre, scale = centre_and_scale(blurred)
    envelope = (target, target)  # a range of one spectrum: the sharp volume's
    matched, gains = spectrum.match_spectrum(blurred, VS, envelope, centre=centre, scale=scale)
    shape_matched, _ = _shape_of_spectrum(matched)
    before = np.sqrt(np.nanmean((shape_blurred - shape_sharp) ** 2))
    after = np.sqrt(np.nanmean((shape_matched - shape_sharp) ** 2))
    assert before > 0.3  # the finest bin lost a factor 3 against the coarsest
    assert after < before / 4  # 0.36 -> 0.04 when written
    assert gains[-1] > gains[0]  # the fine bins are raised most


def test_crop_boxes_sit_at_their_fraction_of_the_free_range():
    box = spectrum.crop_box((100, 50, 10), (20, 20, 20), (0.0, 0.5, 1.0))
    assert box == (slice(0, 20), slice(15, 35), slice(0, 10))  # x: the whole (shorter) axis
    box = spectrum.crop_box((100, 50, 10), (20, 20, 20), (1.0, 0.2, 0.5))
    assert box == (slice(80, 100), slice(6, 26), slice(0, 10))
    volume = np.arange(100 * 50 * 10, dtype=np.float32).reshape(100, 50, 10)
    np.testing.assert_array_equal(
        spectrum.central_crop(volume, (20, 20, 20)), volume[40:60, 15:35, :]
    )


def _grid_spectrum(volume):
    centre, scale = centre_and_scale(volume)
    crops = [(crop - centre) / scale for crop in spectrum.grid_crops(volume)]
    return spectrum.grid_log_amplitude(crops, VS), (centre, scale)


def test_matching_follows_the_whole_tomogram_not_its_centre():
    """A tomogram whose central crop holds a third of the contrast of the rest (a full-size
    tomogram's centre may be all cytoplasm), against a range made around the spectrum of the
    same tomogram without the dim centre (± 0.3): one central crop would raise the coarse bins
    over twice (as it did on the full-size nominal tomogram); the grid leaves it as it is."""
    shape = (64, 384, 384)  # wide: most grid crops miss the dim centre, as in a full-size one
    structure = _structured(shape, 1.5, seed=1)
    noise = 0.02 * np.random.default_rng(2).normal(size=shape).astype(np.float32)
    own, _ = _grid_spectrum(structure + noise)
    envelope = (own - 0.3, own + 0.3)
    dim = np.ones(shape, np.float32)
    dim[spectrum.crop_box(shape, spectrum.CROP_SHAPE)] = 1 / 3
    volume = structure * ndimage.gaussian_filter(dim, 3.0) + noise  # no sharp edges
    grid, (centre, scale) = _grid_spectrum(volume)
    central = spectrum.radial_log_amplitude(
        spectrum.power_spectrum(
            (spectrum.central_crop(volume, spectrum.CROP_SHAPE) - centre) / scale
        ),
        VS,
    )
    # the structure's bins (periods 60-10 nm) fall ln 3 - 0.3 below; the noise's stay
    assert spectrum.spectrum_gains(central, *envelope)[:5].min() > 2.0
    weights, gains = spectrum.matching_filter(volume, VS, envelope, centre=centre, scale=scale)
    np.testing.assert_allclose(gains, spectrum.spectrum_gains(grid, *envelope))
    np.testing.assert_array_equal(gains, 1.0)
    assert spectrum.is_identity(weights)


def test_a_reference_without_grid_spectra_is_matched_only_when_asked_and_then_refused():
    shipped = Predictor.load().checkpoint
    old = [
        {k: v for k, v in ref.items() if k != "grid_log_amplitude"}
        for ref in spectrum.load_references()
    ]
    assert spectrum.matching_envelope(shipped, "auto", old) is None
    with pytest.raises(ParameterError, match="predates spectra over a grid"):
        spectrum.matching_envelope(shipped, True, old)


def test_a_network_without_a_reference_spectrum_is_refused():
    torch.manual_seed(0)
    net = UNet3D(UNetConfig(depth=1, base_channels=2, dropout=0.0)).eval()
    meta = {"voxel_size_nm": VS, "normalisation": dict(DEFAULT_NORMALISATION)}
    volume = _structured((16, 16, 16), 1.0)
    with pytest.raises(ParameterError, match="no reference spectrum"):
        predict(volume, VS, Predictor(net, meta), match_spectrum=True)


def test_a_tomogram_like_the_training_data_is_left_nearly_as_it_is():
    from analysis.synthetic import example_files

    tomo = read_tomogram(example_files("test", seed=301, quick=True)["tomogram"])
    predictor = Predictor.load()
    meta = predictor.checkpoint
    centre, scale = centre_and_scale(tomo.data, meta["normalisation"])
    envelope = spectrum.reference_envelope(meta)
    _, gains = spectrum.match_spectrum(
        tomo.data, tomo.voxel_size_nm, envelope, centre=centre, scale=scale
    )
    # inside the training data's range from periods of 12 nm down (1.12-1.32 above: this
    # half-size tomogram holds less coarse contrast than the full-size training ones)
    np.testing.assert_allclose(gains[4:], 1.0, atol=0.05)
    assert gains.max() < 1.4
    plain = predict(tomo.data, tomo.voxel_size_nm, predictor, match_spectrum=False) > 0.5
    matched = predict(tomo.data, tomo.voxel_size_nm, predictor, match_spectrum=True) > 0.5
    dice = 2 * (plain & matched).sum() / (plain.sum() + matched.sum())
    assert plain.mean() > 0.05 and dice > 0.97


def test_auto_matches_where_the_training_spectra_are_known_and_only_there():
    shipped = Predictor.load().checkpoint
    low, high = spectrum.reference_envelope(shipped)
    for setting in (True, "auto"):
        got = spectrum.matching_envelope(shipped, setting)
        np.testing.assert_array_equal(got[0], low)
        np.testing.assert_array_equal(got[1], high)
    assert spectrum.matching_envelope(shipped, False) is None
    elsewhere = {"voxel_size_nm": VS, "data": {"train": ["someone else's tomogram"]}}
    assert spectrum.matching_envelope(elsewhere, "auto") is None
    # the 2-D network's reference is six alike tomograms: a range of one imaging condition
    two_d = Predictor.load("shipped-2d").checkpoint
    assert spectrum.matching_envelope(two_d, "auto") is None
    assert spectrum.matching_envelope(two_d, True) is not None
    assert spectrum.matching_envelope(elsewhere, False) is None
    with pytest.raises(ParameterError, match="no reference spectrum"):
        spectrum.matching_envelope(elsewhere, True)
    with pytest.raises(ParameterError, match="True, False or 'auto'"):
        spectrum.matching_envelope(shipped, "yes")


def test_auto_on_a_network_without_training_spectra_is_plain_inference():
    torch.manual_seed(0)
    net = UNet3D(UNetConfig(depth=1, base_channels=2, dropout=0.0)).eval()
    meta = {"voxel_size_nm": VS, "normalisation": dict(DEFAULT_NORMALISATION)}
    volume = _structured((16, 16, 16), 1.0)
    plain = predict(volume, VS, Predictor(net, meta), match_spectrum=False)
    auto = predict(volume, VS, Predictor(net, meta), match_spectrum="auto")
    np.testing.assert_array_equal(auto, plain)


def test_segment_file_records_whether_the_spectrum_was_matched(tmp_path):
    import json

    from analysis.pipeline import segment_file
    from analysis.synthetic import example_files

    source = example_files("test", seed=301, quick=True)["tomogram"]
    # by default ("auto") matched for the shipped network, whose varied training is known
    for options, matched in (({}, True), ({"match_spectrum": False}, False)):
        out = tmp_path / str(matched)
        out.mkdir()
        paths = segment_file(source, out, write_probability=False, predict_options=options)
        info = json.loads(paths["check"].read_text())["info"]
        assert info["spectrum_matched"] is matched


def test_the_checks_spectrum_at_another_voxel_size_is_the_segmentations():
    """The domain check reads its grid of crops from the tomogram as it is, at 1.5 nm here;
    the segmentation resamples the whole tomogram to the network's 2.2 nm first and normalises
    after, which narrows the range (the noise is averaged down). The check carries the scale
    over, so both see nearly the same spectrum, and so the same gains."""
    from analysis.inference import domain
    from analysis.inference.rescale import rescale, rescaled_shape
    from analysis.synthetic import example_files

    tomo = read_tomogram(example_files("test", seed=301, quick=True)["tomogram"])
    fine = rescale(np.asarray(tomo.data, np.float32), rescaled_shape(tomo.data.shape, VS / 1.5))
    fine += np.random.default_rng(0).normal(0, fine.std(), fine.shape).astype(np.float32)
    meta = Predictor.load().checkpoint
    envelope = spectrum.reference_envelope(meta)
    resampled = rescale(fine, rescaled_shape(fine.shape, 1.5 / VS))
    centre, scale = centre_and_scale(resampled, meta["normalisation"])
    _, gains = spectrum.matching_filter(resampled, VS, envelope, centre=centre, scale=scale)
    centre_fine, scale_fine = centre_and_scale(fine, meta["normalisation"])
    assert scale / scale_fine < 0.8  # the resampling narrows the range
    own = domain.matching_log_amplitude(fine, 1.5, VS, centre=centre_fine, scale=scale_fine)
    assert gains.min() < 0.9  # the noise lifts the fine bands: something to match
    np.testing.assert_allclose(spectrum.spectrum_gains(own, *envelope), gains, rtol=0.05)


def test_the_domain_checks_tta_sees_the_crop_the_segmentation_sees():
    """With matching, the check's TTA runs on the central crop of the matched tomogram (cut
    from a wider crop, so the filter's faces do not show): the same numbers as the check of
    the tomogram filtered whole beforehand."""
    from analysis.inference import domain
    from analysis.synthetic import example_files

    tomo = read_tomogram(example_files("test", seed=301, quick=True)["tomogram"])
    assert tomo.voxel_size_nm == pytest.approx(VS)  # no rescaling: whole and crop compare
    blurred = ndimage.gaussian_filter(np.asarray(tomo.data, np.float32), 1.5)
    predictor = Predictor.load()
    plain = domain.domain_features(blurred, VS, predictor, match_spectrum=False)
    matched = domain.domain_features(blurred, VS, predictor, match_spectrum=True)
    meta = predictor.checkpoint
    centre, scale = centre_and_scale(blurred, meta["normalisation"])
    envelope = spectrum.reference_envelope(meta)
    # the check reads its grid of crops itself: the same spectrum as the segmentation's
    own = domain.matching_log_amplitude(blurred, VS, VS, centre=centre, scale=scale)
    weights, gains = spectrum.matching_filter(blurred, VS, envelope, centre=centre, scale=scale)
    np.testing.assert_allclose(spectrum.spectrum_gains(own, *envelope), gains, rtol=1e-6)
    assert gains.max() > 1.3  # the blur took fine detail: the filter does something
    whole = spectrum.apply_gain_filter(blurred, weights)
    reference = domain.domain_features(whole, VS, predictor, match_spectrum=False)
    assert plain["spectrum_matched"] == 0.0 and matched["spectrum_matched"] == 1.0
    for key in ("tta_disagreement", "foreground", "ambiguous"):
        assert matched[key] == pytest.approx(reference[key], rel=1e-4, abs=1e-6)
    assert matched["tta_disagreement"] != pytest.approx(plain["tta_disagreement"], rel=0.01)
    assert matched["log_amplitude"] == plain["log_amplitude"]  # the tomogram as it is
