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


# --- Files as IMOD, SerialEM, FEI and other writers make them ----------------------------------
# Each file is written with mrcfile, then the header fields mrcfile does not set are written at
# the byte offsets of IMOD's mrc_format.txt and the MRC2014 definition.

IMOD_STAMP = 1146047817


def _patch(path, offset, dtype, value):
    raw = bytearray(path.read_bytes())
    value = np.asarray(value, dtype=dtype)
    raw[offset : offset + value.nbytes] = value.tobytes()
    path.write_bytes(bytes(raw))


def _byte_mrc(path, values, *, stamp=None, flags=0):
    """Mode-0 MRC holding the bytes of ``values`` (uint8 or int8), with IMOD's stamp or not."""
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(values.view(np.int8))
        mrc.voxel_size = 22.0
    if stamp is not None:
        _patch(path, 152, "<i4", stamp)
        _patch(path, 156, "<i4", flags)
    return path


def test_imod_unsigned_bytes_are_read_unsigned(tmp_path, rng):
    # as newstack -mode 0 / trimvol -byte write them: values 28-228, stamp set, bit 0 clear
    values = rng.integers(28, 229, size=(6, 7, 8)).astype(np.uint8)
    path = _byte_mrc(tmp_path / "byte.rec", values, stamp=IMOD_STAMP, flags=0)
    for mmap in (False, True):
        tomo = read_tomogram(path, mmap=mmap)
        np.testing.assert_array_equal(tomo.data, values.astype(np.float32))
    assert tomo.data.min() >= 28 and "unsigned" in tomo.decisions["data"]


def test_signed_bytes_by_imod_flag_and_by_the_mrc2014_rule(tmp_path, rng):
    values = rng.integers(-100, 101, size=(6, 7, 8)).astype(np.int8)
    flagged = _byte_mrc(tmp_path / "signed.mrc", values, stamp=IMOD_STAMP, flags=1)
    unstamped = _byte_mrc(tmp_path / "mrc2014.mrc", values)
    for path, why in ((flagged, "bit 0 set"), (unstamped, "MRC2014")):
        tomo = read_tomogram(path)
        np.testing.assert_array_equal(tomo.data, values.astype(np.float32))
        assert tomo.decisions["data"].startswith("bytes, signed") and why in tomo.decisions["data"]


@pytest.mark.parametrize(
    ("dtype", "mode"), [(np.int16, 1), (np.float32, 2), (np.uint16, 6), (np.float16, 12)]
)
def test_integer_float_and_half_float_modes(tmp_path, rng, dtype, mode):
    values = (rng.normal(size=(6, 7, 8)) * 1000).astype(dtype)
    if dtype == np.uint16:
        values = rng.integers(0, 65535, size=(6, 7, 8)).astype(dtype)
    path = tmp_path / "m.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(values)
        mrc.voxel_size = 22.0
    with mrcfile.open(path) as mrc:
        assert int(mrc.header.mode) == mode
    tomo = read_tomogram(path)
    assert tomo.data.dtype == np.float32
    np.testing.assert_array_equal(tomo.data, values.astype(np.float32))
    assert f"mode {mode}" in tomo.decisions["format"]


@pytest.mark.parametrize("axes", [(1, 2, 3), (3, 2, 1), (2, 1, 3), (1, 3, 2), (2, 3, 1), (3, 1, 2)])
def test_map_axes_are_transposed_to_zyx(tmp_path, small_volume, axes):
    mapc, mapr, maps = axes
    # the file's array is (sections, rows, columns); axis number k (1 = x) sits at 3 - k in zyx
    stored = np.ascontiguousarray(small_volume.transpose(3 - maps, 3 - mapr, 3 - mapc))
    path = tmp_path / "axes.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(stored)
        mrc.voxel_size = 22.0
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = axes
    for mmap in (False, True):
        tomo = read_tomogram(path, mmap=mmap)
        np.testing.assert_array_equal(tomo.data, small_volume)
    assert ("transposed" in tomo.decisions["axis order"]) == (axes != (1, 2, 3))


def test_map_axes_that_are_no_permutation_are_refused(tmp_path, small_volume):
    path = write_mrc(tmp_path / "bad_axes.mrc", small_volume, 2.2)
    _patch(path, 64, "<i4", [1, 1, 3])
    assert "map axes" in _error(path)


def _with_extended_header(path, data, ext: np.ndarray, exttyp: bytes, nint=0, nreal=0):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 22.0
        mrc.set_extended_header(ext)
        mrc.header.exttyp = exttyp
    _patch(path, 128, "<i2", [nint, nreal])
    return path


def _fei(nz, angles, kind=b"FEI1"):
    from mrcfile.dtypes import get_ext_header_dtype

    dtype = get_ext_header_dtype(kind, "<")
    ext = np.zeros(nz, dtype=dtype)
    ext["Metadata size"] = dtype.itemsize
    ext["Alpha tilt"] = angles
    return ext, dict(exttyp=kind)


def _serialem(nz, angles):
    # nreal flags 1 (tilt angle × 100, 2 bytes) + 8 (magnification / 100, 2 bytes): 4 bytes each
    ext = np.zeros((nz, 2), dtype="<i2")
    ext[:, 0] = np.round(np.asarray(angles) * 100)
    ext[:, 1] = 330
    return ext.view(np.uint8).ravel(), dict(exttyp=b"SERI", nint=4, nreal=9)


def _agard(nz, angles):
    # FEI's older layout as IMOD reads it: 32 floats per section, the tilt angle first
    ext = np.zeros((nz, 32), dtype="<f4")
    ext[:, 0] = angles
    return ext.view(np.uint8).ravel(), dict(exttyp=b"\0\0\0\0", nint=0, nreal=32)


@pytest.mark.parametrize("writer", [_fei, _serialem, _agard], ids=["FEI1", "SerialEM", "Agard"])
def test_extended_headers_are_skipped_and_their_tilt_angles_read(tmp_path, small_volume, writer):
    nz = small_volume.shape[0]
    ext, fields = writer(nz, np.zeros(nz))  # a volume whose sections share one tilt
    path = _with_extended_header(tmp_path / "ext.mrc", small_volume, ext, **fields)
    tomo = read_tomogram(path)
    np.testing.assert_array_equal(tomo.data, small_volume)
    assert f"{ext.nbytes} bytes (skipped)" in tomo.decisions["extended header"]

    ext, fields = writer(nz, np.linspace(-60, 60, nz))  # a tilt series
    stack = _with_extended_header(tmp_path / "stack.mrc", small_volume, ext, **fields)
    message = _error(stack)
    assert "tilt series" in message and "-60° to 60°" in message


def test_tilt_series_by_file_ending_and_by_imod_tilt_fields(tmp_path, small_volume):
    for suffix in (".st", ".ali"):
        path = write_mrc(tmp_path / f"ts{suffix}", small_volume, 2.2)
        assert f"ending {suffix}" in _error(path)
    path = write_mrc(tmp_path / "idtype.mrc", small_volume, 2.2)
    _patch(path, 160, "<i2", 1)  # idtype 1 = tilt series
    _patch(path, 168, "<i2", 200)  # vd1 = 100 × tilt increment (2°)
    assert "tilt increment 2.00°" in _error(path)


def test_imod_inverted_origin_is_undone(tmp_path, small_volume):
    path = write_mrc(tmp_path / "o.mrc", small_volume, 2.2, origin_angstrom=(-10.0, -20.0, 5.0))
    assert read_tomogram(path).origin_angstrom == (-10.0, -20.0, 5.0)
    _patch(path, 152, "<i4", [IMOD_STAMP, 4 | 1])  # bit 2: origin stored with its sign inverted
    tomo = read_tomogram(path)
    assert tomo.origin_angstrom == (10.0, 20.0, -5.0)
    assert "inverted" in tomo.decisions["origin"]


@pytest.mark.parametrize(
    ("angstrom", "phrase"),
    [(0.5, "below the 1 Å"), (1.0, "IMOD's value for 'not set'"), (220.0, "Å taken for nm")],
)
def test_implausible_header_voxel_sizes_name_the_fix(tmp_path, small_volume, angstrom, phrase):
    path = write_mrc(tmp_path / "v.mrc", small_volume, angstrom / 10)
    message = _error(path)
    assert phrase in message and "--voxel-size-nm" in message
    assert read_tomogram(path, voxel_size_nm=2.2).voxel_size_nm == 2.2  # the way out
    assert "above the 100 Å" in _error(path, voxel_size_nm=22.0)


def test_decisions_name_the_voxel_size_source(mrc_path):
    assert (
        read_tomogram(mrc_path)
        .decisions["voxel size"]
        .endswith("MRC header (cella / mx, my, mz in Å)")
    )
    assert "as given" in read_tomogram(mrc_path, voxel_size_nm=2.0).decisions["voxel size"]


@pytest.mark.parametrize("compression", ["lzw", "zlib"])
def test_compressed_imagej_tiff_as_fiji_exports_it(tmp_path, small_volume, compression):
    import tifffile

    path = tmp_path / f"{compression}.tif"
    tifffile.imwrite(
        path,
        small_volume,
        imagej=True,
        compression=compression,  # LZW, or Deflate (zlib): Fiji's usual compressed exports
        resolution=(1 / 14.69, 1 / 14.69),
        metadata={"spacing": 14.69, "unit": "angstrom", "axes": "ZYX"},
    )
    tomo = read_tomogram(path)
    np.testing.assert_array_equal(tomo.data, small_volume)
    assert tomo.voxel_size_nm == pytest.approx(1.469, rel=1e-5)
    assert {"lzw": "lzw", "zlib": "adobe_deflate"}[compression] in tomo.decisions["format"]
    assert "ImageJ metadata (unit angstrom" in tomo.decisions["voxel size"]


def test_ome_tiff_voxel_size_from_physical_sizes(tmp_path, small_volume):
    import tifffile

    path = tmp_path / "tomo.ome.tif"
    sizes = {"PhysicalSizeX": 1.348, "PhysicalSizeY": 1.348, "PhysicalSizeZ": 1.348}
    units = {f"{k}Unit": "nm" for k in sizes}
    tifffile.imwrite(path, small_volume, ome=True, metadata={"axes": "ZYX", **sizes, **units})
    tomo = read_tomogram(path)
    np.testing.assert_array_equal(tomo.data, small_volume)
    assert tomo.voxel_size_nm == pytest.approx(1.348)
    assert "OME-XML" in tomo.decisions["voxel size"]


def test_tiff_without_images_is_one_clear_error(tmp_path):
    path = tmp_path / "aborted.tif"
    path.write_bytes(b"II*\0" + b"\0" * 4)  # a header whose first image directory is at 0
    assert "TIFF file without images" in _error(path)
