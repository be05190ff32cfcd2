"""The threaded Gaussian blur is SciPy's, to the bit."""

import numpy as np
import pytest
from scipy import ndimage

from analysis.inference.gaussian import gaussian_filter


@pytest.mark.parametrize("shape", [(17, 40, 33), (64, 2, 9), (3, 5, 70)])
@pytest.mark.parametrize("sigma", [0.4, 1.5, 5.36])
@pytest.mark.parametrize("threads", [2, 3, 8])
def test_each_pass_shared_among_threads_gives_scipys_blur(shape, sigma, threads):
    volume = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    expected = ndimage.gaussian_filter(volume, sigma, mode="nearest", truncate=3.0)
    got = gaussian_filter(volume, sigma, mode="nearest", truncate=3.0, threads=threads)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, volume)  # it did blur
    # in place, and on a strided view (a memory map's slab may be one)
    in_place = volume.copy()
    gaussian_filter(in_place, sigma, mode="nearest", truncate=3.0, threads=threads, out=in_place)
    np.testing.assert_array_equal(in_place, expected)
    view = volume[:, ::2]
    np.testing.assert_array_equal(
        gaussian_filter(view, sigma, mode="reflect", threads=threads),
        ndimage.gaussian_filter(view, sigma, mode="reflect"),
    )


def test_a_volume_that_is_not_float32_is_refused():
    with pytest.raises(ValueError, match="float32"):
        gaussian_filter(np.zeros((4, 4, 4)), 1.0, threads=2)
