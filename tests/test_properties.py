"""Property-based tests and a fuzzing run of the readers, with a fixed, deterministic budget.

Round trips of random volumes and models through the writers and readers; the bounds and
symmetries of the metrics; and mutated or random bytes fed to the MRC and IMOD readers, which
must either read them or refuse them with :class:`analysis.errors.InputFileError` — never
crash with another exception.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from analysis.errors import InputFileError
from analysis.evaluate import dice_score, match_vesicles, soft_dice
from analysis.io import (
    MRCHeaderWarning,
    read_imod_model,
    read_tomogram,
    write_mrc,
    write_vesicle_model,
)

# derandomize: the same examples on every run, so CI cannot fail at random
BUDGET = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# one slice is a 2-D image, which the tomogram reader refuses by design
shapes = st.tuples(st.integers(2, 7), st.integers(1, 7), st.integers(1, 7))
voxel_sizes = st.floats(0.15, 10.0, allow_nan=False)  # the plausible range (1–100 Å)


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="prop_"))


@BUDGET
@given(
    volume=shapes.flatmap(lambda s: arrays(np.float32, s, elements=st.floats(-1e6, 1e6, width=32))),
    voxel_size_nm=voxel_sizes,
)
def test_float_volumes_survive_an_mrc_round_trip(volume, voxel_size_nm):
    path = write_mrc(_scratch() / "v.mrc", volume, voxel_size_nm)
    back = read_tomogram(path)
    np.testing.assert_array_equal(back.data, volume)
    assert abs(back.voxel_size_nm - voxel_size_nm) <= 1e-5 * voxel_size_nm


@BUDGET
@given(labels=shapes.flatmap(lambda s: arrays(np.int32, s, elements=st.integers(0, 40000))))
def test_label_volumes_survive_an_mrc_round_trip(labels):
    path = write_mrc(_scratch() / "l.mrc", labels, 2.2)
    np.testing.assert_array_equal(read_tomogram(path).data, labels)


@BUDGET
@given(
    n=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    voxel_size_nm=st.floats(0.5, 10.0),
)
def test_vesicle_models_survive_an_imod_round_trip(n, seed, voxel_size_nm):
    rng = np.random.default_rng(seed)
    shape = (30, 40, 50)
    centres = rng.uniform(0, 1, (n, 3)) * (np.array(shape) - 1)
    radii = rng.uniform(1, 8, n)
    folder = _scratch()
    path = write_vesicle_model(folder / "m.mod", centres, radii, voxel_size_nm, shape=shape)
    like = read_tomogram(write_mrc(folder / "t.mrc", np.zeros(shape, np.float32), voxel_size_nm))
    points = read_imod_model(path, like=like)
    np.testing.assert_allclose(points[["z_vox", "y_vox", "x_vox"]].to_numpy(), centres, atol=1e-3)
    np.testing.assert_allclose(points["radius_vox"], radii, atol=1e-3)


masks = shapes.flatmap(lambda s: st.tuples(arrays(bool, s), arrays(bool, s)))


@BUDGET
@given(pair=masks)
def test_dice_is_bounded_symmetric_and_one_only_for_equal_masks(pair):
    a, b = pair
    d = dice_score(a, b)
    assert 0.0 <= d <= 1.0
    assert d == dice_score(b, a)
    assert (d == 1.0) == bool(np.array_equal(a, b) or (not a.any() and not b.any()))
    assert abs(soft_dice(a.astype(float), b) - d) < 1e-12


@BUDGET
@given(seed=st.integers(0, 2**16), n_true=st.integers(0, 8), n_pred=st.integers(0, 8))
def test_matching_is_one_to_one_and_only_pairs_centres_inside(seed, n_true, n_pred):
    rng = np.random.default_rng(seed)

    def table(n):
        return pd.DataFrame(
            {
                "vesicle_id": np.arange(1, n + 1),
                "z_vox": rng.uniform(0, 30, n),
                "y_vox": rng.uniform(0, 30, n),
                "x_vox": rng.uniform(0, 30, n),
                "radius_vox": rng.uniform(2, 8, n),
            }
        )

    truth, pred = table(n_true), table(n_pred)
    m = match_vesicles(pred, truth, 1.0)
    assert m["true_id"].is_unique and m["pred_id"].is_unique
    radius = truth.set_index("vesicle_id").loc[m["true_id"], "radius_vox"].to_numpy()
    assert (m["distance_nm"].to_numpy(float) < radius).all()


def _valid_mrc_bytes() -> bytes:
    path = write_mrc(_scratch() / "ok.mrc", np.arange(60, dtype=np.float32).reshape(3, 4, 5), 2.2)
    return path.read_bytes()


def _valid_mod_bytes() -> bytes:
    centres = np.array([[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]])
    return write_vesicle_model(_scratch() / "ok.mod", centres, [2.0, 3.0], 2.2).read_bytes()


def _mutations(valid: bytes):
    """Random bytes, and the valid file with bytes overwritten, cut short or extended."""
    flips = st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), max_size=8)
    return st.one_of(
        st.binary(max_size=2048),
        flips.map(lambda fs: _apply(valid, fs)),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        st.binary(min_size=1, max_size=64).map(lambda tail: valid + tail),
    )


def _apply(valid: bytes, flips) -> bytes:
    out = bytearray(valid)
    for at, value in flips:
        out[at] = value
    return bytes(out)


FUZZ = settings(BUDGET, max_examples=150)


@FUZZ
@given(blob=_mutations(_valid_mrc_bytes()))
def test_fuzzed_mrc_files_are_read_or_refused_cleanly(blob):
    path = _scratch() / "f.mrc"
    path.write_bytes(blob)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MRCHeaderWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            tomo = read_tomogram(path)
        except InputFileError as err:
            assert str(path) in str(err)
            return
    assert tomo.data.ndim == 3 and tomo.voxel_size_nm > 0


@FUZZ
@given(blob=_mutations(_valid_mod_bytes()))
def test_fuzzed_imod_models_are_read_or_refused_cleanly(blob):
    path = _scratch() / "f.mod"
    path.write_bytes(blob)
    try:
        points = read_imod_model(path)
    except InputFileError as err:
        assert str(path) in str(err)
        return
    assert isinstance(points, pd.DataFrame)
