"""Reading and writing tomograms: round trips, old headers, TIFF, OME-Zarr and bad input."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest

import analysis.io.memmap as memmap_io
from analysis.errors import InputFileError
from analysis.io import MRCHeaderWarning, read_tomogram, write_mrc


def test_mrc_round_trip_keeps_data_voxel_size_and_origin(tmp_path, small_volume):
    path = write_mrc(tmp_path / "a.mrc", small_volume, 1.469, origin_angstrom=(10.0, 20.0, 30.0))
    tomo = read_tomogram(path)
    assert tomo.data.dtype == np.float32
    assert tomo.data.shape == (6, 7, 8)
    np.testing.assert_array_equal(tomo.data, small_volume)
    assert tomo.voxel_size_nm == pytest.approx(1.469, rel=1e-6)
    assert tomo.origin_angstrom == (10.0, 20.0, 30.0)
    with mrcfile.open(path) as mrc:  # the header holds Å, as MRC requires
        assert float(mrc.voxel_size.x) == pytest.approx(14.69, rel=1e-6)


def test_mmap_returns_memmap_without_copy(mrc_path, small_volume):
    tomo = read_tomogram(mrc_path, mmap=True)
    assert isinstance(tomo.data, np.memmap)
    np.testing.assert_array_equal(tomo.data, small_volume)


@pytest.mark.parametrize(
    ("labels", "mode"),
    [(np.array([0, 1, 100]), 0), (np.array([0, 5000]), 1), (np.array([0, 60000]), 6)],
)
def test_label_volumes_are_written_in_the_smallest_integer_mode(tmp_path, labels, mode):
    data = np.zeros((3, 4, 5), dtype=np.int64)
    data.flat[: len(labels)] = labels
    path = write_mrc(tmp_path / "labels.mrc", data, 2.0)
    with mrcfile.open(path) as mrc:
        assert int(mrc.header.mode) == mode
        np.testing.assert_array_equal(mrc.data, data)


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path, small_volume):
    path = tmp_path / "x.mrc"
    write_mrc(path, small_volume, 2.0)
    write_mrc(path, small_volume * 2, 2.0)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mrc"]
    np.testing.assert_array_equal(read_tomogram(path).data, small_volume * 2)


def test_failed_write_keeps_the_old_file(tmp_path, small_volume, monkeypatch):
    path = write_mrc(tmp_path / "x.mrc", small_volume, 2.0)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # the disk fills up after the first slab is written
    with monkeypatch.context() as patch, pytest.raises(InputFileError, match="No space left"):
        patch.setattr(memmap_io, "release_pages", broken)
        write_mrc(path, small_volume * 3, 2.0)
    np.testing.assert_array_equal(read_tomogram(path).data, small_volume)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mrc"]


def test_old_style_header_is_read_with_a_warning(mrc_path, small_volume):
    raw = bytearray(mrc_path.read_bytes())
    raw[208:216] = b"\0" * 8  # no map ID, no machine stamp: as old IMOD / Pyto files
    mrc_path.write_bytes(bytes(raw))
    with pytest.warns(MRCHeaderWarning, match="tomo.mrc"):
        tomo = read_tomogram(mrc_path)
    np.testing.assert_array_equal(tomo.data, small_volume)
    assert tomo.voxel_size_nm == pytest.approx(2.2)


def test_voxel_size_override_wins(mrc_path):
    assert read_tomogram(mrc_path, voxel_size_nm=1.0).voxel_size_nm == 1.0


def _error(path, **kwargs) -> str:
    with pytest.raises(InputFileError) as info:
        read_tomogram(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_bad_inputs_give_one_line_naming_file_and_problem(tmp_path, small_volume, mrc_path):
    text = tmp_path / "notes.mrc"
    text.write_text("this is not a tomogram\n" * 20)
    assert "not an MRC" in _error(text)

    assert "no such file" in _error(tmp_path / "missing.mrc")

    truncated = tmp_path / "truncated.mrc"
    truncated.write_bytes(mrc_path.read_bytes()[:-50])
    assert "truncated" in _error(truncated)

    flat = write_mrc(tmp_path / "flat.mrc", small_volume[:1], 2.0)
    assert "2-D image" in _error(flat)

    bad = small_volume.copy()
    bad[1, 2, 3] = np.nan
    bad[2, 2, 3] = np.inf
    assert "2 NaN or infinite" in _error(write_mrc(tmp_path / "nan.mrc", bad, 2.0))

    zero = tmp_path / "zero.mrc"
    with mrcfile.new(zero) as mrc:
        mrc.set_data(small_volume)
    assert "no voxel size" in _error(zero)
    assert read_tomogram(zero, voxel_size_nm=2.0).voxel_size_nm == 2.0

    aniso = tmp_path / "aniso.mrc"
    with mrcfile.new(aniso) as mrc:
        mrc.set_data(small_volume)
        mrc.voxel_size = (22.0, 22.0, 44.0)
    assert "anisotropic" in _error(aniso)

    cplx = tmp_path / "complex.mrc"
    with mrcfile.new(cplx) as mrc:
        mrc.set_data(small_volume.astype(np.complex64))
        mrc.voxel_size = 22.0
    assert "complex" in _error(cplx)


def test_tiff_stack_with_imagej_spacing(tmp_path, small_volume):
    import tifffile

    path = tmp_path / "stack.tif"
    # ImageJ metadata: resolution in pixels per unit, z spacing in units.
    tifffile.imwrite(
        path,
        small_volume,
        imagej=True,
        resolution=(1 / 0.0022, 1 / 0.0022),
        metadata={"spacing": 0.0022, "unit": "micron", "axes": "ZYX"},
    )
    tomo = read_tomogram(path)
    np.testing.assert_array_equal(tomo.data, small_volume)
    assert tomo.voxel_size_nm == pytest.approx(2.2, rel=1e-4)


def test_tiff_without_spacing_needs_an_explicit_voxel_size(tmp_path, small_volume):
    import tifffile

    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, small_volume)
    assert "no voxel size" in _error(path)
    assert read_tomogram(path, voxel_size_nm=1.5).voxel_size_nm == 1.5


def _write_ome_zarr(path, data, scale_angstrom):
    """Minimal OME-NGFF 0.4 image as the CZ CryoET Data Portal serves it (units in Å)."""
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.create_array("0", data=data)
    root.create_array("1", data=data[::2, ::2, ::2])
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": n, "type": "space", "unit": "angstrom"} for n in "zyx"],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [scale_angstrom] * 3}],
                },
                {
                    "path": "1",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [2 * scale_angstrom] * 3}
                    ],
                },
            ],
        }
    ]


def test_ome_zarr_levels_and_voxel_size(tmp_path, small_volume):
    path = tmp_path / "tomo.zarr"
    _write_ome_zarr(path, small_volume, 13.48)
    tomo = read_tomogram(path)
    np.testing.assert_array_equal(tomo.data, small_volume)
    assert tomo.voxel_size_nm == pytest.approx(1.348)
    binned = read_tomogram(path, zarr_level=1)
    assert binned.shape == (3, 4, 4)
    assert binned.voxel_size_nm == pytest.approx(2.696)
    assert "level 5" in _error(path, zarr_level=5)


def test_zarr_folder_without_ome_metadata_is_refused(tmp_path):
    folder = tmp_path / "plain.zarr"
    folder.mkdir()
    (folder / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    assert "multiscales" in _error(folder)


def test_writing_into_missing_or_read_only_folder_fails_clearly(
    tmp_path, small_volume, monkeypatch
):
    with pytest.raises(InputFileError, match="does not exist"):
        write_mrc(tmp_path / "nope" / "x.mrc", small_volume, 2.0)
    # Permissions cannot be tested for real as root (CI runs as root), so the check is driven
    # through os.access, which is what it asks.
    import analysis.io.atomic as atomic

    monkeypatch.setattr(atomic.os, "access", lambda *a, **k: False)
    with pytest.raises(InputFileError, match="not writable"):
        write_mrc(tmp_path / "x.mrc", small_volume, 2.0)
    assert not (tmp_path / "x.mrc").exists()


def test_output_stems_drop_the_file_type_only():
    from analysis.io import tomogram_stem

    assert tomogram_stem("/data/tomo.rec") == "tomo"
    assert tomogram_stem("tomo.ome.zarr") == "tomo"
    assert tomogram_stem("TS_01.MRC") == "TS_01"
    # dots inside a name are kept, so that two tomograms never share their outputs
    assert tomogram_stem("syn_1.469nm.mrc") == "syn_1.469nm"
    assert tomogram_stem("syn.2023.06.rec") != tomogram_stem("syn.2023.07.rec")
    assert tomogram_stem("stack.unknown") == "stack"
