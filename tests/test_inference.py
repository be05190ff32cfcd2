"""Stitching: with an identity function the blended output equals the input exactly."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.inference import blend_window, sliding_window, tile_grid, tile_starts


@pytest.mark.parametrize("mode", ["gaussian", "cosine", "constant"])
@pytest.mark.parametrize(
    ("shape", "tile", "overlap"),
    [
        ((37, 50, 23), 16, 0.25),
        ((16, 16, 16), 16, 0.5),
        ((5, 70, 9), (8, 32, 8), 0.0),
        ((64, 64, 64), 24, 0.6),
        ((3, 4, 5), 16, 0.25),
    ],
)
def test_identity_network_gives_back_the_input(shape, tile, overlap, mode):
    volume = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    calls = []

    def identity(batch):
        calls.append(len(batch))
        return batch

    out = sliding_window(volume, identity, tile, overlap=overlap, batch_size=3, mode=mode)
    assert out.shape == volume.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, volume, rtol=1e-5, atol=1e-6)
    assert max(calls) <= 3  # several tiles per call, never more than the batch size


def test_tiles_cover_the_volume_and_the_last_one_ends_at_the_border():
    assert tile_starts(10, 16, 12) == [0]
    assert tile_starts(40, 16, 12) == [0, 12, 24]
    starts = tile_starts(100, 32, 24)
    assert starts[-1] == 100 - 32 and starts[0] == 0
    assert all(b - a <= 24 for a, b in zip(starts, starts[1:], strict=False))


def test_blending_weighs_the_tile_centre_most():
    w = blend_window((9, 9, 9), "gaussian")
    assert w[4, 4, 4] == w.max() == 1.0
    assert w[0, 0, 0] < 0.01 and w.min() > 0
    c = blend_window((9, 9, 9), "cosine")
    assert c[4, 4, 4] == 1.0 and c[0, 4, 4] < c[2, 4, 4]
    with pytest.raises(ValueError):
        blend_window((4, 4, 4), "linear")


def test_overlapping_predictions_are_blended_smoothly():
    # A function whose output depends on the tile position shows seams unless blended:
    # each tile returns a constant, its own index. Gaussian blending gives a smooth ramp.
    volume = np.zeros((16, 16, 64), np.float32)
    counter = iter(range(100))

    def per_tile_constant(batch):
        return np.stack([np.full(b.shape, float(next(counter))) for b in batch])

    out = sliding_window(volume, per_tile_constant, 16, overlap=0.5, batch_size=1, mode="gaussian")
    profile = out[8, 8]
    jumps = np.abs(np.diff(profile))
    assert jumps.max() < 0.5  # no step of a whole tile index between neighbouring voxels
    assert profile[0] < profile[-1]


def test_planned_tiles_cover_the_volume_with_the_margin_and_little_waste():
    from analysis.inference import plan_tiles

    shape = (174, 684, 684)  # 261 × 1024 × 1024 at 1.469 nm, on the network's 2.2 nm grid
    tile, overlap = plan_tiles(shape)
    assert tile == (96, 184, 184)
    tile, starts = tile_grid(shape, tile, overlap)
    assert [len(s) for s in starts] == [2, 4, 4]
    for n, t, s in zip(shape, tile, starts, strict=True):
        assert t % 8 == 0 and s[0] == 0 and s[-1] + t == n
        assert min(t - step for step in np.diff(s)) >= 16  # neighbours share ≥ 16 voxels
    computed = len(starts[0]) * len(starts[1]) * len(starts[2]) * np.prod(tile)
    assert computed / np.prod(shape) < 1.3  # 64³ tiles overlapping by 0.25: 2.5
    # a volume smaller than the largest tile is one tile of its own size
    assert plan_tiles((40, 100, 120)) == ((40, 100, 120), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="margin"):
        plan_tiles(shape, max_tile=16)
