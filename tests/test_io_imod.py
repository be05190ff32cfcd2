"""IMOD models: reading, coordinate conventions, rasterisation and the vesicle round trip."""

from __future__ import annotations

import numpy as np
import pytest
from imodmodel.models import MINX, Contour, ImodModel, Object

from analysis.errors import InputFileError
from analysis.io import (
    Tomogram,
    points_to_labels,
    points_to_sheet,
    read_annotation,
    read_imod_model,
    read_mask,
    write_mrc,
    write_vesicle_model,
)


def _circle(cz, cy, cx, r, n=48):
    """Closed outline (IMOD x, y, z) of a circle around voxel centre (cz, cy, cx)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([cx + 0.5 + r * np.cos(t), cy + 0.5 + r * np.sin(t), np.full(n, cz)])


def _sphere_outlines(centre, radius):
    """One circle per slice through a sphere, as an annotator draws a vesicle in 3dmod."""
    cz, cy, cx = centre
    out = []
    for z in range(int(np.ceil(cz - radius)), int(np.floor(cz + radius)) + 1):
        r = np.sqrt(max(radius**2 - (z - cz) ** 2, 0.0))
        if r > 0.5:
            out.append(_circle(z, cy, cx, r))
    return out


def _save(path, objects, minx=None, flags=None):
    model = ImodModel()
    for contours, kwargs in objects:
        obj = Object()
        for c in contours:
            obj.contours.append(
                c if isinstance(c, Contour) else Contour(points=c.astype(np.float32))
            )
        for key, value in kwargs.items():
            if key == "surfaces":
                for c, s in zip(obj.contours, value, strict=True):
                    c.header.surf = s
            else:
                setattr(obj.header.flags, key, value)
        obj.update_sizes()
        model.objects.append(obj)
    model.minx = minx
    if flags:
        for key, value in flags.items():
            setattr(model.header.flags, key, value)
    model.update_sizes()
    model.to_file(path)
    return path


def _ball(shape, centre, radius):
    grid = np.indices(shape)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return d2 <= radius**2


def _dice(a, b):
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_contour_stack_of_circles_rasterises_to_a_ball(tmp_path):
    shape, centre, radius = (32, 40, 40), (15.0, 20.0, 19.0), 9.0
    path = _save(tmp_path / "ves.mod", [(_sphere_outlines(centre, radius), {})])
    labels = points_to_labels(read_imod_model(path, shape=shape), shape)
    assert set(np.unique(labels)) == {0, 1}
    truth = _ball(shape, centre, radius)
    # Within one voxel: everything lies inside the ball grown by 1, and covers it shrunk by 1.
    assert not np.any((labels > 0) & ~_ball(shape, centre, radius + 1))
    assert np.all(labels[_ball(shape, centre, radius - 1)] > 0)
    assert _dice(labels > 0, truth) > 0.95
    zc, yc, xc = np.argwhere(labels > 0).mean(axis=0)
    assert (zc, yc, xc) == pytest.approx(centre, abs=0.25)


def test_voxel_centre_convention(tmp_path):
    # IMOD puts the centre of voxel (i, j, k) at x = i + 0.5, y = j + 0.5, z = k.
    pt = np.array([[3.5, 4.5, 2.0]], dtype=np.float32)
    path = _save(tmp_path / "p.mod", [([pt], {"scattered": True})])
    row = read_imod_model(path).iloc[0]
    assert (row.z_vox, row.y_vox, row.x_vox) == (2.0, 4.0, 3.0)
    assert row.kind == "scattered"


def _two_touching(centre_a, centre_b, radius):
    return _sphere_outlines(centre_a, radius), _sphere_outlines(centre_b, radius)


@pytest.mark.parametrize("layout", ["objects", "surfaces", "one_object"])
def test_closed_contours_are_grouped_into_vesicles(tmp_path, layout):
    shape = (30, 30, 60)
    a, b = _two_touching((14.0, 15.0, 15.0), (14.0, 15.0, 35.0), 8.0)
    if layout == "objects":
        objects = [(a, {}), (b, {})]
    elif layout == "surfaces":
        objects = [(a + b, {"surfaces": [1] * len(a) + [2] * len(b)})]
    else:  # all in one object, one surface: only overlap between slices separates them
        objects = [(a + b, {})]
    path = _save(tmp_path / f"{layout}.mod", objects)
    labels = points_to_labels(read_imod_model(path, shape=shape), shape)
    ids = np.unique(labels[labels > 0])
    assert len(ids) == 2
    left, right = labels[14, 15, 15], labels[14, 15, 35]
    assert left != right and left > 0 and right > 0
    # Every slice of a vesicle carries the same id.
    assert set(np.unique(labels[:, :, :25])) == {0, left}


def test_explicit_grouping_by_object_merges_one_object(tmp_path):
    shape = (30, 30, 60)
    a, b = _two_touching((14.0, 15.0, 15.0), (14.0, 15.0, 35.0), 8.0)
    path = _save(tmp_path / "one.mod", [(a + b, {})])
    points = read_imod_model(path, shape=shape)
    assert len(np.unique(points_to_labels(points, shape, grouping="object"))) == 2  # 0 and 1
    with pytest.raises(ValueError, match="grouping"):
        points_to_labels(points, shape, grouping="nonsense")


def test_open_contours_make_a_membrane_sheet_not_vesicles(tmp_path):
    shape = (5, 20, 30)
    lines = [np.array([[2.5, 10.5, z], [27.5, 10.5, z]], dtype=np.float32) for z in range(5)]
    path = _save(tmp_path / "pm.mod", [(lines, {"open": True})])
    points = read_imod_model(path, shape=shape)
    assert not points_to_labels(points, shape).any()
    sheet = points_to_sheet(points, shape)
    assert sheet.sum() == 5 * 26
    assert np.all(sheet[:, 10, 2:28])


def test_vesicle_model_round_trip_is_exact(tmp_path, rng):
    centres = rng.uniform(5, 95, size=(50, 3)).astype(np.float32).astype(np.float64)
    radii = rng.uniform(8, 12, size=50).astype(np.float32).astype(np.float64)
    path = write_vesicle_model(tmp_path / "ves.mod", centres, radii, 2.2, shape=(100, 100, 100))
    points = read_imod_model(path, voxel_size_nm=2.2, shape=(100, 100, 100))
    assert (points["kind"] == "scattered").all()
    got = points[["z_vox", "y_vox", "x_vox"]].to_numpy()
    # Stored as float32 after IMOD's +0.5 shift: exact to float32 resolution at these values.
    np.testing.assert_allclose(got, centres, rtol=0, atol=4e-6)
    np.testing.assert_array_equal(points["radius_vox"].to_numpy(), radii)
    labels = points_to_labels(points, (100, 100, 100))
    assert labels.max() == 50


def test_model_drawn_at_another_binning_is_rescaled(tmp_path):
    # A vesicle marked on a tomogram binned 2x (4.4 nm voxels) read onto the 2.2 nm tomogram.
    path = write_vesicle_model(
        tmp_path / "bin2.mod", np.array([[10.0, 20.0, 30.0]]), np.array([5.0]), 4.4
    )
    row = read_imod_model(path, voxel_size_nm=2.2).iloc[0]
    # x, y scale about the pixel edge (30 -> 60.5), z about the section as 3dmod does (10 -> 20).
    assert (row.z_vox, row.y_vox, row.x_vox, row.radius_vox) == (20.0, 40.5, 60.5, 10.0)
    # Same voxel size: unchanged.
    row = read_imod_model(path, voxel_size_nm=4.4).iloc[0]
    assert (row.z_vox, row.y_vox, row.x_vox) == (10.0, 20.0, 30.0)


def test_model_without_scale_info_takes_an_explicit_model_voxel_size(tmp_path):
    pt = np.array([[30.5, 20.5, 10.0]], dtype=np.float32)
    path = _save(tmp_path / "bare.mod", [([pt], {"scattered": True})])
    row = read_imod_model(path, voxel_size_nm=2.2).iloc[0]
    assert row.x_vox == 30.0  # nothing known about the model's binning: taken as drawn
    row = read_imod_model(path, voxel_size_nm=2.2, model_voxel_size_nm=4.4).iloc[0]
    assert row.x_vox == 60.5


def test_model_origin_shift_follows_3dmod(tmp_path):
    spacing = (20.0, 20.0, 20.0)
    minx = MINX(
        oscale=spacing,
        otrans=(0.0, 0.0, 0.0),
        orot=(0.0, 0.0, 0.0),
        cscale=spacing,
        ctrans=(0.0, 0.0, 0.0),
        crot=(0.0, 0.0, 0.0),
    )
    pt = np.array([[30.5, 20.5, 10.0]], dtype=np.float32)
    path = _save(tmp_path / "o.mod", [([pt], {"scattered": True})], minx=minx)
    # A volume whose header origin is 200 Å further along x: 10 voxels of 2 nm.
    row = read_imod_model(path, voxel_size_nm=2.0, origin_angstrom=(200.0, 0.0, 0.0)).iloc[0]
    assert (row.z_vox, row.y_vox, row.x_vox) == (10.0, 20.0, 40.0)


def test_flipped_model_is_restored_to_native_axes(tmp_path):
    pt = np.array([[3.5, 7.0, 4.5]], dtype=np.float32)  # stored as x, z, y
    path = _save(
        tmp_path / "f.mod",
        [([pt], {"scattered": True})],
        flags={"model_last_viewed_onYZ_flipped_or_rotated": True},
    )
    row = read_imod_model(path).iloc[0]
    assert (row.z_vox, row.y_vox, row.x_vox) == (7.0, 4.0, 3.0)


def test_read_annotation_on_a_tomogram(tmp_path):
    tomo = Tomogram(np.zeros((32, 40, 40), np.float32), 2.2)
    path = write_vesicle_model(
        tmp_path / "v.mod", np.array([[15.0, 20.0, 20.0]]), np.array([6.0]), 2.2
    )
    ann = read_annotation(path, tomo)
    assert ann.n_vesicles == 1
    assert ann.labels.sum() == np.count_nonzero(_ball((32, 40, 40), (15, 20, 20), 6.0))
    assert not ann.membrane.any()


def test_masks_from_a_traced_membrane_an_outlined_region_or_a_volume(tmp_path):
    shape = (5, 20, 30)
    tomo = Tomogram(np.zeros(shape, np.float32), 2.2)
    lines = [np.array([[2.5, 10.5, z], [27.5, 10.5, z]], dtype=np.float32) for z in range(5)]
    membrane = read_mask(_save(tmp_path / "pm.mod", [(lines, {"open": True})]), tomo, "AZ")
    assert membrane.sum() == 5 * 26 and membrane[:, 10, 2:28].all()  # the open contours
    square = np.array([[4.5, 4.5], [14.5, 4.5], [14.5, 14.5], [4.5, 14.5]], np.float32)
    outlines = [np.column_stack([square, np.full(4, z, np.float32)]) for z in range(1, 4)]
    region = read_mask(_save(tmp_path / "region.mod", [(outlines, {})]), tomo, "region")
    assert region[1:4].any(axis=(1, 2)).all() and not region[0].any()  # filled outlines
    assert region[2, 9, 9] and not region[2, 16, 16]
    volume = np.zeros(shape, np.int16)
    volume[2, 3:6, 7] = -1  # any non-zero voxel
    assert read_mask(write_mrc(tmp_path / "m.mrc", volume, 2.2), tomo, "AZ").sum() == 3
    # a mask's own voxel size does not matter, even IMOD's 1 Å for "unset"
    assert read_mask(write_mrc(tmp_path / "m1.mrc", volume, 0.1), tomo, "AZ").sum() == 3
    with pytest.raises(InputFileError, match=r"region mask of shape \(5, 20, 31\)"):
        read_mask(
            write_mrc(tmp_path / "w.mrc", np.ones((5, 20, 31), np.int8), 2.2), tomo, "region mask"
        )
    with pytest.raises(InputFileError, match="the AZ mask is empty") as info:
        read_mask(write_mrc(tmp_path / "e.mrc", np.zeros(shape, np.int8), 2.2), tomo, "AZ mask")
    assert str(tmp_path / "e.mrc") in str(info.value)


def _message(path, **kwargs):
    with pytest.raises(InputFileError) as info:
        read_imod_model(path, **kwargs)
    text = str(info.value)
    assert str(path) in text and "\n" not in text
    return text


def test_bad_models_give_clear_errors(tmp_path):
    good = write_vesicle_model(
        tmp_path / "good.mod", np.array([[5.0, 5.0, 5.0]]), np.array([2.0]), 2.0
    )

    not_mod = tmp_path / "tomo.mod"
    not_mod.write_bytes(b"MRC?" + bytes(200))
    assert "not an IMOD model" in _message(not_mod)

    truncated = tmp_path / "cut.mod"
    truncated.write_bytes(good.read_bytes()[:-30])
    assert "corrupt" in _message(truncated)

    empty = _save(tmp_path / "empty.mod", [([], {})])
    assert "empty" in _message(empty)

    assert "outside the tomogram" in _message(good, shape=(4, 4, 4))

    rotated = _save(
        tmp_path / "rot.mod",
        [([np.array([[1.0, 1.0, 1.0]], np.float32)], {"scattered": True})],
        flags={"model_rotx": True},
    )
    assert "rotated" in _message(rotated)
