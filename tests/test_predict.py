"""Whole-tomogram prediction: resampling, normalisation, TTA, memory-mapped files."""

from __future__ import annotations

import warnings

import mrcfile
import numpy as np
import pytest
import torch
from scipy import ndimage

from analysis.errors import InputFileError
from analysis.inference import check_voxel_size, predict, predict_file, resampling_matrix, rescale
from analysis.io import read_tomogram, write_mrc
from analysis.models import Predictor, UNet3D, UNetConfig, resolve_precision
from analysis.normalise import DEFAULT_NORMALISATION


def _meta(voxel_size_nm=2.2):
    return {"voxel_size_nm": voxel_size_nm, "normalisation": dict(DEFAULT_NORMALISATION)}


class Recorder(torch.nn.Module):
    """Dark voxels → high probability: ``logit = −20·x − 5``; records the input shapes it sees."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __deepcopy__(self, memo):  # stay the same object when inference copies the network
        return self

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return -20.0 * x - 5.0


class Lopsided(torch.nn.Module):
    """Not equivariant to xy flips: looks at the voxel to its left in x."""

    def forward(self, x):
        return torch.roll(x, 1, dims=-1) * -10.0


class Nothing(torch.nn.Module):
    """Finds no vesicle anywhere."""

    def forward(self, x):
        return torch.full_like(x, -10.0)


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return UNet3D(UNetConfig(depth=1, base_channels=2, dropout=0.0)).eval()


# --- resampling ---------------------------------------------------------------------------


def test_upsampling_is_linear_interpolation_between_voxel_centres(small_volume):
    out = rescale(small_volume, (12, 14, 16))
    ref = ndimage.zoom(small_volume, 2, order=1, grid_mode=True, mode="nearest")
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_shrinking_averages_instead_of_aliasing():
    z, y, x = np.mgrid[:24, :24, :24]
    checker = ((x + y + z) % 2).astype(np.float32)  # the highest frequency there is
    plain = rescale(checker, (8, 8, 8), antialias=False)
    assert np.ptp(plain) == 1  # every third voxel: the checkerboard aliases to full contrast
    smooth = rescale(checker, (8, 8, 8))
    assert np.ptp(smooth[1:-1, 1:-1, 1:-1]) < 0.15  # the triangle filter averages it out
    np.testing.assert_allclose(smooth.mean(), 0.5, atol=0.01)


def test_resampling_weights_sum_to_one_and_keep_a_ramp():
    w = resampling_matrix(10, 7)
    np.testing.assert_allclose(w.sum(1), 1, atol=1e-6)
    ramp = np.arange(10, dtype=np.float32)
    centres = (np.arange(7) + 0.5) * 10 / 7 - 0.5
    # the sampled triangle is not exactly symmetric: a ramp comes back to within 0.02 voxel
    np.testing.assert_allclose((w @ ramp)[1:-1], centres[1:-1], atol=0.02)


def test_rescale_streams_between_memory_maps(tmp_path, rng):
    volume = rng.normal(size=(20, 16, 16)).astype(np.float32)
    src = np.memmap(tmp_path / "in.f32", np.float32, "w+", shape=volume.shape)
    src[:] = volume
    dst = np.memmap(tmp_path / "out.f32", np.float32, "w+", shape=(30, 24, 24))
    rescale(src, dst.shape, out=dst, chunk=4)
    np.testing.assert_allclose(dst, rescale(volume, (30, 24, 24)), atol=1e-6)


# --- voxel size ---------------------------------------------------------------------------


def test_voxel_size_in_angstrom_is_refused_with_the_likely_cause():
    with pytest.raises(ValueError, match="Å taken for nm"):
        check_voxel_size(22.0, 2.2)
    with pytest.raises(ValueError, match="positive"):
        check_voxel_size(0.0, 2.2)
    assert check_voxel_size(22.0, 2.2, max_rescale=20) == pytest.approx(10)
    assert check_voxel_size(1.469, 2.2) == pytest.approx(1.469 / 2.2)


def test_predict_refuses_an_implausible_voxel_size(tiny_net, small_volume):
    with pytest.raises(ValueError, match="the 2.2 nm the network was trained at"):
        predict(small_volume, 22.0, Predictor(tiny_net, _meta()))


def test_the_network_sees_the_tomogram_at_its_training_voxel_size(small_volume):
    net = Recorder()
    out = predict(small_volume, 4.4, Predictor(net, _meta(2.2)), tile=64)
    assert net.shapes[0][2:] == (12, 14, 16)  # twice as many voxels per axis
    assert out.shape == small_volume.shape and out.dtype == np.float32
    same = Recorder()
    predict(small_volume, 2.2, Predictor(same, _meta(2.2)), tile=64)
    assert same.shapes[0][2:] == small_volume.shape


def test_rescaled_prediction_of_a_smooth_map_comes_back_on_the_input_grid():
    # A dark ball: the recorder's probability is ~1 inside and ~0 outside, at any voxel size.
    z, y, x = np.mgrid[:40, :40, :40]
    ball = (((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) < 10**2).astype(np.float32)
    volume = 1.0 - ball
    direct = predict(volume, 2.2, Predictor(Recorder(), _meta(2.2)), tile=32)
    via = predict(volume, 2.9, Predictor(Recorder(), _meta(2.2)), tile=32)
    assert via.shape == volume.shape
    assert np.mean((direct > 0.5) == (via > 0.5)) > 0.99


# --- intensities ----------------------------------------------------------------------------


def test_intensity_scale_and_dtype_do_not_change_the_prediction(tiny_net, rng):
    volume = rng.normal(size=(20, 24, 24)).astype(np.float32)
    model = Predictor(tiny_net, _meta(), precision="float32")
    exact = dict(tile=16)
    ref = predict(volume, 2.2, model, **exact)
    # A float tomogram with a tiny range (the reference tool cast such data to int16 → blank)
    tiny_range = predict(volume * 1e-4 + 3.0, 2.2, model, **exact)
    np.testing.assert_allclose(tiny_range, ref, atol=1e-4)
    as_int = predict(np.round(volume * 1000).astype(np.int16), 2.2, model, **exact)
    np.testing.assert_allclose(as_int, ref, atol=1e-3)


def test_any_shape_including_smaller_than_a_tile(tiny_net, rng):
    model = Predictor(tiny_net, _meta())
    for shape in [(3, 5, 7), (40, 9, 70), (17, 33, 33)]:
        volume = rng.normal(size=shape).astype(np.float32)
        out = predict(volume, 2.2, model, tile=16, overlap=0.5)
        assert out.shape == shape and out.dtype == np.float32
        assert 0 <= out.min() and out.max() <= 1


def test_an_empty_map_warns_to_check_the_voxel_size(small_volume):
    with pytest.warns(UserWarning, match="check the voxel size"):
        predict(small_volume, 2.2, Predictor(Nothing(), _meta()))


# --- test-time augmentation ------------------------------------------------------------------


def test_tta_of_an_equivariant_network_changes_nothing(rng):
    volume = rng.normal(size=(12, 20, 20)).astype(np.float32)
    plain = predict(volume, 2.2, Predictor(Recorder(), _meta()), tile=16)
    prob, var = predict(
        volume, 2.2, Predictor(Recorder(), _meta(), tta="flips"), tile=16, return_uncertainty=True
    )
    np.testing.assert_allclose(prob, plain, atol=1e-5)
    assert var.max() < 1e-8


def test_tta_uncertainty_shows_where_views_disagree(rng):
    volume = rng.normal(size=(8, 16, 16)).astype(np.float32)
    net = Recorder()
    lopsided = Predictor(Lopsided(), _meta(), tta="flips")
    _, var = predict(volume, 2.2, lopsided, tile=16, return_uncertainty=True)
    assert var.mean() > 1e-3 and var.max() <= 0.25 + 1e-6  # a variance of values in [0, 1]
    with pytest.raises(ValueError, match="needs test-time augmentation"):
        predict(volume, 2.2, Predictor(net, _meta()), return_uncertainty=True)
    with pytest.raises(ValueError, match="tta must be one of"):
        Predictor(net, _meta(), tta="all")
    with pytest.raises(ValueError, match="move the tilt axis"):
        Predictor(net, _meta(), tta="d4")  # quarter turns put the missing wedge elsewhere
    with pytest.raises(ValueError, match="takes an analysis.models.Predictor"):
        predict(volume, 2.2, (net, _meta()))


# --- files ---------------------------------------------------------------------------------


def test_file_to_file_prediction_through_memory_maps(tmp_path, tiny_net, rng):
    from analysis.models import save_checkpoint

    volume = rng.normal(size=(20, 30, 26)).astype(np.float32)
    tomo = write_mrc(tmp_path / "tomo.mrc", volume, 2.2, origin_angstrom=(10.0, 20.0, 30.0))
    ckpt = save_checkpoint(
        tmp_path / "net.pt",
        tiny_net,
        voxel_size_nm=2.2,
        normalisation=DEFAULT_NORMALISATION,
        seed=0,
        data={},
    )
    out = predict_file(
        tomo,
        tmp_path / "prob.mrc",
        Predictor.load(ckpt, tta="flips"),
        tile=16,
        uncertainty_path=tmp_path / "var.mrc",
    )
    expected = predict(volume, 2.2, Predictor(tiny_net, _meta(), tta="flips"), tile=16)
    written = read_tomogram(out)
    np.testing.assert_allclose(written.data, expected, atol=1e-6)
    assert written.voxel_size_nm == pytest.approx(2.2)
    assert written.origin_angstrom == pytest.approx((10.0, 20.0, 30.0))
    with mrcfile.open(out) as mrc:
        assert mrc.header.dmax == pytest.approx(expected.max(), abs=1e-6)
    assert read_tomogram(tmp_path / "var.mrc").shape == volume.shape


def test_a_failed_prediction_leaves_no_output_file(tmp_path, small_volume):
    tomo = write_mrc(tmp_path / "tomo.mrc", small_volume, 22.0)
    with pytest.raises(InputFileError, match="tomo.mrc: its header.s voxel size, 22 nm"):
        predict_file(tomo, tmp_path / "prob.mrc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tomo.mrc"]


# --- the shipped network -------------------------------------------------------------------


def test_shipped_network_finds_the_vesicles_of_a_held_out_tomogram():
    from analysis.synthetic import example_files
    from analysis.train import dice_score

    files = example_files("test", seed=301, quick=True)
    tomo = read_tomogram(files["tomogram"])
    truth = read_tomogram(files["labels"]).data > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "empty map" warning
        prob = predict(tomo.data, tomo.voxel_size_nm, tile=64, overlap=0.25)
    assert dice_score(prob > 0.5, truth) > 0.95


# --- speed settings -------------------------------------------------------------------------


def test_bfloat16_and_planned_tiles_give_the_same_vesicle_mask():
    from analysis.evaluate import dice_score
    from analysis.synthetic import example_files

    files = example_files("test", seed=301, quick=True)
    tomo = read_tomogram(files["tomogram"])
    exact = predict(
        tomo.data, tomo.voxel_size_nm, Predictor.load(precision="float32"), tile=64, overlap=0.25
    )
    fast = predict(tomo.data, tomo.voxel_size_nm, Predictor.load(precision="bfloat16"))
    assert np.abs(fast - exact).mean() < 2e-3
    assert dice_score(fast > 0.5, exact > 0.5) > 0.995
    truth = read_tomogram(files["labels"]).data > 0
    assert dice_score(fast > 0.5, truth) > dice_score(exact > 0.5, truth) - 0.002
    cpu = torch.device("cpu")
    assert resolve_precision("float32", cpu) == torch.float32
    assert resolve_precision("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp8", cpu)


def test_overlap_needs_an_explicit_tile(tiny_net, rng):
    volume = rng.normal(size=(20, 24, 24)).astype(np.float32)
    with pytest.raises(ValueError, match="explicit tile"):
        predict(volume, 2.2, Predictor(tiny_net, _meta()), overlap=0.5)


_HEAP_PROBE = """
import json, resource, torch
from analysis.inference.heap import reuse_freed_memory

def faults_of_second_allocation():
    # torch, as the network allocates (numpy asks for huge pages, which hide the effect)
    torch.ones(2**24).sum()  # 64 MB, allocated and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    # then 60 MB: a block of the same size may not fit the freed one once torch's 64-byte
    # alignment is added, depending on where the heap lies (address randomisation)
    torch.ones(2**24 - 2**20).sum()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

def resident_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20

outside = faults_of_second_allocation()
with reuse_freed_memory() as applied:
    inside = faults_of_second_allocation()
    kept = resident_mb()
print(json.dumps(dict(applied=applied, outside=outside, inside=inside, kept=kept,
                      returned=resident_mb(), pages=2**26 // resource.getpagesize())))
"""


def test_large_freed_blocks_are_reused_inside_the_tile_loop_only():
    """64 MB blocks: fresh pages (faulted in, zeroed) each time, except inside the context,
    which keeps them in the process and hands them back to the system on exit."""
    import json
    import subprocess
    import sys

    # a fresh process: earlier tests leave free blocks in this one's heap, to be reused
    run = subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    probe = json.loads(run.stdout)
    if not probe["applied"]:
        pytest.skip("not glibc: malloc is left as it is")
    pages = probe["pages"]
    assert probe["outside"] > pages // 2  # glibc's default: the block is mapped anew
    assert probe["inside"] < pages // 20  # reused: nearly no new pages
    assert probe["kept"] - probe["returned"] > 48  # held, and given back on exit
