"""Read and write tomograms (MRC, TIFF, OME-Zarr) with their voxel size.

Arrays are (z, y, x) everywhere, as ``mrcfile`` returns them. File headers give pixel spacing in
Å (MRC) or in a unit named in the metadata (TIFF, OME-Zarr); this module converts it to the one
number the rest of the package uses, ``voxel_size_nm``.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import mrcfile
import numpy as np

from analysis.errors import InputFileError
from analysis.io import mrc_header, tilt_series
from analysis.io.atomic import atomic_output
from analysis.io.formats import TIFF_SUFFIXES
from analysis.io.memmap import map_slabs, slabs

#: Relative difference between axes above which a voxel size counts as anisotropic.
ANISOTROPY_TOLERANCE = 1e-3

# MRC modes that hold complex numbers or colour, which no tomogram is.
_UNSUPPORTED_MODES = {3: "complex int16", 4: "complex float32", 16: "RGB colour"}

# Length units, as they appear in TIFF and OME-Zarr metadata, in nm.
_UNIT_IN_NM = {
    "angstrom": 0.1,
    "å": 0.1,
    "a": 0.1,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "nm": 1.0,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "micron": 1e3,
    "µm": 1e3,
    "μm": 1e3,  # Greek mu, as some writers spell it
    "um": 1e3,
    "\\u00b5m": 1e3,
    "millimeter": 1e6,
    "millimetre": 1e6,
    "mm": 1e6,
}


class MRCHeaderWarning(UserWarning):
    """An MRC header broke the MRC2014 standard but the file could still be read."""


class TiltSeriesWarning(UserWarning):
    """A stack read as a tomogram looks like a tilt series (:mod:`analysis.io.tilt_series`)."""


#: What to do with a tilt series, for the messages.
RECONSTRUCT_FIRST = (
    "Reconstruct it first (IMOD's etomo, AreTomo, Warp) and give the reconstructed volume "
    "(.rec, .mrc)"
)


@dataclass
class Tomogram:
    """A tomogram and what is needed to place it in space.

    Attributes
    ----------
    data : numpy.ndarray, shape (z, y, x), float32
        The density. A read-only ``numpy.memmap`` when read with ``mmap=True``.
    voxel_size_nm : float
        Isotropic voxel size in nm.
    origin_angstrom : tuple of float
        The header origin (x, y, z) in Å, as IMOD uses it to place models (0 when unknown).
    path : pathlib.Path or None
        The file it came from.
    decisions : dict of str to str
        How the file was read, for ``analysis info``: its format, data type (and, for bytes,
        signedness), axis order, extended header, origin and where the voxel size came from.
    """

    data: np.ndarray
    voxel_size_nm: float
    origin_angstrom: tuple[float, float, float] = (0.0, 0.0, 0.0)
    path: Path | None = None
    decisions: dict[str, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape (z, y, x) in voxels."""
        return tuple(int(n) for n in self.data.shape)


def read_tomogram(
    path: str | os.PathLike,
    *,
    voxel_size_nm: float | None = None,
    mmap: bool = False,
    check_finite: bool = True,
    zarr_level: int = 0,
    check_tilt_series: bool = True,
) -> Tomogram:
    """Read a tomogram from MRC, TIFF or OME-Zarr as float32 (z, y, x) with its voxel size.

    Parameters
    ----------
    path : str or os.PathLike
        An MRC file (``.mrc``, ``.rec``, ``.map``, …), a TIFF stack (``.tif``, ``.tiff``) or an
        OME-Zarr folder (``.zarr``).
    voxel_size_nm : float, optional
        Use this voxel size (nm) instead of the one in the file. Needed when the header holds
        none (0) or a wrong one, and allowed for anisotropic headers.
    mmap : bool
        Memory-map an MRC file instead of reading it into memory. A float32 file is then
        returned as a read-only ``numpy.memmap`` (no copy); other modes are converted, which
        reads them.
    check_finite : bool
        Refuse volumes with NaN or infinite voxels (checked slab by slab, in bounded memory).
    zarr_level : int
        Which resolution level of an OME-Zarr multiscale image to read (0 = full resolution).
    check_tilt_series : bool
        Look for a tilt series without header evidence (:mod:`analysis.io.tilt_series`): a
        ``.tlt``/``.rawtlt`` file beside it with one angle per image is refused; images alike
        as projections of one object give a :class:`TiltSeriesWarning`. The header's evidence
        (MRC) is always refused.

    Returns
    -------
    Tomogram

    Raises
    ------
    InputFileError
        With one line naming the file and the problem: missing file, not a tomogram, truncated
        data, 2-D image, complex or RGB data, NaN/Inf voxels, zero or anisotropic voxel size,
        a tilt series.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file or folder")
    suffix = path.suffix.lower()
    decisions: dict[str, str] = {}
    if suffix == ".zarr" or (path.is_dir() and _looks_like_zarr(path)):
        data, spacing_nm, origin = _read_ome_zarr(path, zarr_level)
        decisions["format"] = f"OME-Zarr, level {zarr_level}"
        decisions["voxel size source"] = "OME-Zarr metadata (scale and axis units)"
    elif suffix in TIFF_SUFFIXES:
        data, spacing_nm, origin = _read_tiff(path, decisions)
    else:
        data, spacing_nm, origin = _read_mrc(path, mmap, decisions)

    if data.ndim != 3 or data.shape[0] < 2:
        what = "2-D image" if data.ndim == 2 or data.ndim == 3 else f"{data.ndim}-D array"
        raise InputFileError(
            path, f"is a {what} of shape {data.shape}; a 3-D tomogram (z, y, x) is needed"
        )
    if check_finite:
        _check_finite(path, data)
    if check_tilt_series:
        _check_tilt_series(path, data)
    size = _resolve_voxel_size(path, spacing_nm, voxel_size_nm)
    decisions.setdefault("data", str(data.dtype))
    decisions["origin"] = "(x, y, z) = ({:.6g}, {:.6g}, {:.6g}) Å".format(*origin) + decisions.pop(
        "origin note", ""
    )
    source = decisions.pop("voxel size source", "file")
    decisions["voxel size"] = (
        f"{size:.6g} nm as given (voxel_size_nm, --voxel-size-nm), not the {source}"
        if voxel_size_nm is not None
        else f"{size:.6g} nm from the {source}"
    )
    return Tomogram(
        data=data, voxel_size_nm=size, origin_angstrom=origin, path=path, decisions=decisions
    )


def read_like(
    path: str | os.PathLike,
    like: Tomogram,
    role: str,
    *,
    like_role: str = "tomogram",
    mmap: bool = False,
    check_finite: bool = True,
) -> Tomogram:
    """Read a volume that belongs to ``like`` (labels, a mask, a probability map) and check
    that it has ``like``'s shape.

    The volume's own voxel size is not used (a mask's header often holds none, or IMOD's
    1 Å): it is ``like``'s.

    Parameters
    ----------
    path : str or os.PathLike
        The volume: MRC, TIFF or OME-Zarr.
    like : Tomogram
        The volume it belongs to.
    role, like_role : str
        What the two are (e.g. "region mask", "tomogram"), for the error message.
    mmap, check_finite : bool
        As for :func:`read_tomogram`.

    Raises
    ------
    InputFileError
        For a volume of another shape (and whatever :func:`read_tomogram` refuses).
    """
    # a mask or label volume can be alike slice to slice as a tilt series' images are
    volume = read_tomogram(
        path,
        voxel_size_nm=like.voxel_size_nm,
        mmap=mmap,
        check_finite=check_finite,
        check_tilt_series=False,
    )
    if volume.shape != like.shape:
        raise InputFileError(
            path, f"{role} of shape {volume.shape} differs from the {like_role}'s {like.shape}"
        )
    return volume


def _looks_like_zarr(path: Path) -> bool:
    return any((path / name).exists() for name in (".zattrs", ".zgroup", "zarr.json"))


#: Bytes per voxel of the MRC modes (mode 101 packs two voxels in a byte).
_MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 16: 3, 101: 0.5}


def _truncation(path: Path) -> str | None:
    """What is missing when the header promises more data than the file holds, else None."""
    header = np.fromfile(path, dtype="<i4", count=256)
    if len(header) < 256:
        return f"is truncated: {path.stat().st_size} bytes, less than an MRC header (1024)"
    if not 0 <= int(header[3]) < 1 << 16:  # a big-endian file: the mode reads as garbage
        header = header.byteswap()
    nx, ny, nz, mode = (int(v) for v in header[:4])
    nsymbt = int(header[23])
    if mode not in _MODE_BYTES or min(nx, ny, nz) < 1:
        return None
    expected = 1024 + nsymbt + int(np.ceil(nx * ny * nz * _MODE_BYTES[mode]))
    actual = path.stat().st_size
    if actual >= expected:
        return None
    return (
        f"is truncated: its header describes {nz} × {ny} × {nx} voxels (mode {mode}), "
        f"{expected} bytes with the header, but the file has {actual}"
    )


def _read_mrc(path: Path, mmap: bool, decisions: dict):
    """Return (data, spacing_nm (x, y, z) or None, origin Å)."""
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        mrc = opener(path, mode="r")
    except ValueError as strict_err:
        # Old-style headers written by IMOD, Pyto and older software lack the map ID or the
        # machine stamp; mrcfile reads them in permissive mode. Anything it still cannot read
        # is not an MRC file we can use.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                mrc = opener(path, mode="r", permissive=True)
            except (ValueError, OSError) as err:
                raise InputFileError(path, f"is not an MRC file ({err})") from err
        if mrc.data is None:
            problems = "; ".join(str(w.message) for w in caught) or str(strict_err)
            mrc.close()
            short = _truncation(path)
            if short:
                raise InputFileError(path, short) from strict_err
            mode = int(np.fromfile(path, dtype="<i4", count=4)[3])
            if mode in _UNSUPPORTED_MODES:
                raise InputFileError(
                    path,
                    f"holds {_UNSUPPORTED_MODES[mode]} data (MRC mode {mode}), not a density map",
                ) from strict_err
            raise InputFileError(path, f"is not a readable MRC file ({problems})") from strict_err
        if not _header_is_plausible(mrc):
            mrc.close()
            raise InputFileError(path, f"is not an MRC file ({strict_err})") from strict_err
        warnings.warn(
            f"{path}: non-standard MRC header read permissively ({strict_err})",
            MRCHeaderWarning,
            stacklevel=3,
        )
    except OSError as err:
        raise InputFileError(path, f"cannot be read ({err.strerror or err})") from err
    with mrc:
        mode = int(mrc.header.mode)
        if mode in _UNSUPPORTED_MODES:
            raise InputFileError(
                path, f"holds {_UNSUPPORTED_MODES[mode]} data (MRC mode {mode}), not a density map"
            )
        if mrc.data.ndim == 4:
            raise InputFileError(
                path, f"is a volume stack of shape {mrc.data.shape}, not one tomogram"
            )
        raw, origin = _interpret_mrc(path, mrc, decisions)
        vs = mrc.voxel_size
        spacing_nm = (float(vs.x) / 10.0, float(vs.y) / 10.0, float(vs.z) / 10.0)
        decisions["voxel size source"] = "MRC header (cella / mx, my, mz in Å)"
        if mmap and raw.dtype == np.float32 and raw is mrc.data:
            data = raw  # a read-only memmap; stays valid after the file object is closed
        else:
            data = np.ascontiguousarray(raw, dtype=np.float32)
            if data is raw or np.may_share_memory(data, mrc.data):
                data = data.copy()
    return data, spacing_nm, origin


#: What the MRC modes hold, for ``analysis info``.
_MODE_NAMES = {
    1: "int16 (mode 1)",
    2: "float32 (mode 2)",
    6: "uint16 (mode 6)",
    12: "float16 (mode 12)",
}


def _byteorder(header) -> str:
    order = header.mode.dtype.byteorder
    if order in ("=", "|"):
        return "<" if sys.byteorder == "little" else ">"
    return order


def _interpret_mrc(path: Path, mrc, decisions: dict) -> tuple[np.ndarray, tuple]:
    """The data as (z, y, x) with the right signedness, and the origin (x, y, z) in Å, by
    IMOD's and MRC2014's rules (:mod:`analysis.io.mrc_header`); refuses tilt series."""
    header = mrc.header
    order = _byteorder(header)
    imod = mrc_header.imod_fields(header.tobytes(), order)
    nsymbt = int(header.nsymbt)
    kind = mrc_header.extended_header_type(bytes(header.exttyp), nsymbt, imod)
    angles = None
    if kind != "none":
        angles = mrc_header.section_tilt_angles(
            kind, mrc.extended_header, int(header.nz), imod, order
        )
    evidence = mrc_header.tilt_series_evidence(path.suffix.lower(), imod, angles, kind)
    if evidence:
        raise InputFileError(
            path, f"is a tilt series, not a tomogram: {evidence}. {RECONSTRUCT_FIRST}"
        )
    try:
        axes, axis_note = mrc_header.axis_permutation(header.mapc, header.mapr, header.maps)
    except ValueError as err:
        raise InputFileError(path, str(err)) from None
    decisions["format"] = f"MRC, mode {int(header.mode)}"
    decisions["axis order"] = axis_note
    decisions["extended header"] = "none" if kind == "none" else f"{kind}, {nsymbt} bytes (skipped)"
    data = mrc.data
    if int(header.mode) == 0:
        signed, why = mrc_header.byte_signedness(imod)
        decisions["data"] = f"bytes, {why}"
        if not signed:
            data = data.view(np.uint8)
    else:
        decisions["data"] = _MODE_NAMES.get(int(header.mode), str(data.dtype))
    if axes is not None and data.ndim == 3:
        data = np.ascontiguousarray(np.transpose(data, axes))
    origin = (float(header.origin.x), float(header.origin.y), float(header.origin.z))
    if imod["stamp"] == mrc_header.IMOD_STAMP and imod["flags"] & mrc_header.FLAG_ORIGIN_INVERTED:
        origin = tuple(-v + 0.0 for v in origin)
        decisions["origin note"] = " (stored by IMOD with its sign inverted; undone)"
    return data, origin


def _header_is_plausible(mrc) -> bool:
    header = mrc.header
    dims = (int(header.nx), int(header.ny), int(header.nz))
    return all(0 < n < 1 << 20 for n in dims) and mrc.data is not None


def _read_tiff(path: Path, decisions: dict):
    import tifffile

    try:
        with _quiet_logger("tifffile"), tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise InputFileError(path, "is a TIFF file without images (an aborted export?)")
            page = tif.pages[0]
            data = tif.asarray()
            spacing_nm, source = _tiff_spacing_nm(tif)
            compression = getattr(page.compression, "name", str(page.compression)).lower()
            decisions["format"] = f"TIFF, {len(tif.pages)} pages, compression {compression}"
    except (tifffile.TiffFileError, ValueError, OSError) as err:
        if isinstance(err, InputFileError):
            raise
        if "imagecodecs" in str(err):
            raise InputFileError(
                path,
                "is a compressed TIFF; reading it needs the imagecodecs package "
                "(pip install imagecodecs)",
            ) from err
        raise InputFileError(path, f"is not a readable TIFF stack ({err})") from err
    if data.ndim == 4 and data.shape[-1] in (3, 4) or np.iscomplexobj(data):
        raise InputFileError(
            path, f"holds colour or complex data of shape {data.shape}, not a density map"
        )
    if source:
        decisions["voxel size source"] = source
    return data.astype(np.float32, copy=False), spacing_nm, (0.0, 0.0, 0.0)


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Hold back a library's warnings for a block: tifffile logs what it finds wrong (e.g. "contains
    no pages") before the error this module raises, which would make two messages of one."""
    import logging

    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _tiff_spacing_nm(tif) -> tuple[tuple[float, float, float] | None, str]:
    """Voxel spacing (x, y, z) in nm from ImageJ or OME metadata (None if absent), and which."""
    page = tif.pages[0]
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).lower()
    if unit in _UNIT_IN_NM and "XResolution" in page.tags:
        scale = _UNIT_IN_NM[unit]
        num, den = page.tags["XResolution"].value
        x = den / num * scale
        num, den = page.tags["YResolution"].value if "YResolution" in page.tags else (num, den)
        y = den / num * scale
        z = float(ij.get("spacing", x / scale)) * scale
        return (x, y, z), f"ImageJ metadata (unit {ij['unit']}, resolution and spacing)"
    if tif.is_ome and tif.ome_metadata:
        import re

        sizes = {}
        for axis in "XYZ":
            m = re.search(rf'PhysicalSize{axis}="([0-9.eE+-]+)"', tif.ome_metadata)
            u = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', tif.ome_metadata)
            if m:
                sizes[axis] = float(m.group(1)) * _UNIT_IN_NM.get(
                    (u.group(1) if u else "µm").lower(), 1e3
                )
        if {"X", "Y", "Z"} <= sizes.keys():
            return (sizes["X"], sizes["Y"], sizes["Z"]), "OME-XML metadata (PhysicalSizeX/Y/Z)"
    return None, ""


def _read_ome_zarr(path: Path, level: int):
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as err:  # zarr raises several unrelated types for a folder it cannot read
        raise InputFileError(path, f"is not a readable OME-Zarr image ({err})") from err
    attrs = attrs.get("ome", attrs)  # OME-NGFF 0.5 nests its metadata under "ome"
    if "multiscales" not in attrs:
        raise InputFileError(path, "is a Zarr folder without OME 'multiscales' metadata")
    ms = attrs["multiscales"][0]
    datasets = ms["datasets"]
    if not 0 <= level < len(datasets):
        raise InputFileError(
            path, f"has {len(datasets)} resolution levels; level {level} does not exist"
        )
    axes = [a if isinstance(a, dict) else {"name": a} for a in ms.get("axes", [])]
    names = [a["name"] for a in axes] or ["z", "y", "x"][-3:]
    scale = [1.0] * len(names)
    for transform in datasets[level].get("coordinateTransformations", []) + ms.get(
        "coordinateTransformations", []
    ):
        if transform.get("type") == "scale":
            scale = [s * t for s, t in zip(scale, transform["scale"], strict=True)]
    data = np.asarray(group[datasets[level]["path"]], dtype=np.float32)
    # Drop singleton time/channel axes so that (z, y, x) remain.
    keep = [i for i, n in enumerate(names) if n in ("z", "y", "x")]
    data = data.reshape([data.shape[i] for i in keep]) if len(keep) == 3 else data
    units = {a["name"]: a.get("unit", "") for a in axes}
    spacing = {}
    for i, n in enumerate(names):
        if n in ("x", "y", "z"):
            factor = _UNIT_IN_NM.get(str(units.get(n, "")).lower())
            if factor is None:
                return data, None, (0.0, 0.0, 0.0)
            spacing[n] = scale[i] * factor
    return data, (spacing["x"], spacing["y"], spacing["z"]), (0.0, 0.0, 0.0)


def _check_tilt_series(path: Path, data: np.ndarray) -> None:
    evidence = tilt_series.angle_file_evidence(path, data.shape[0])
    if evidence:
        raise InputFileError(
            path,
            f"is a tilt series, not a tomogram: {evidence}. {RECONSTRUCT_FIRST} (if it is a "
            "reconstruction, move the angle file away)",
        )
    evidence = tilt_series.statistics_evidence(data)
    if evidence:
        warnings.warn(
            f"{path}: looks like a tilt series, not a tomogram: {evidence}. {RECONSTRUCT_FIRST}; "
            "if it is a tomogram, ignore this warning",
            TiltSeriesWarning,
            stacklevel=3,
        )


def _check_finite(path: Path, data: np.ndarray, slab: int = 16) -> None:
    # slab by slab, so that a memory-mapped tomogram stays on disk after the check
    bad = sum(int(np.count_nonzero(~np.isfinite(planes))) for planes in slabs(data, slab))
    if bad:
        raise InputFileError(path, f"contains {bad} NaN or infinite voxels; fix or mask them first")


#: Voxel sizes (nm) a tomogram can plausibly have: 1 Å to 100 Å. Outside, a size was almost
#: surely written in the wrong unit (nm where Å belong, or the reverse).
PLAUSIBLE_VOXEL_NM = (0.1, 10.0)


def _resolve_voxel_size(path: Path, spacing_nm, override: float | None) -> float:
    if override is not None:
        if not (math.isfinite(override) and override > 0):
            raise InputFileError(
                path, f"voxel_size_nm={override} given; it must be a positive number"
            )
        _check_plausible(path, float(override), "the voxel size given (--voxel-size-nm)")
        return float(override)
    if spacing_nm is None or min(spacing_nm) <= 0 or not all(map(math.isfinite, spacing_nm)):
        raise InputFileError(
            path,
            "has no voxel size in its header; pass voxel_size_nm=… (e.g. --voxel-size-nm on the "
            "command line)",
        )
    x, y, z = spacing_nm
    if all(abs(v - 0.1) < 1e-7 for v in spacing_nm):
        raise InputFileError(
            path,
            "has a voxel size of 1 Å in its header, IMOD's value for 'not set'; pass "
            "voxel_size_nm=… (e.g. --voxel-size-nm) or set it (IMOD: alterheader -del)",
        )
    if max(abs(y - x), abs(z - x)) > ANISOTROPY_TOLERANCE * x:
        raise InputFileError(
            path,
            f"has an anisotropic voxel size (x, y, z) = ({x:.4g}, {y:.4g}, {z:.4g}) nm; resample "
            "it to isotropic voxels or pass voxel_size_nm=… if the header is wrong",
        )
    _check_plausible(path, float(x), "its header's voxel size")
    return float(x)


def _check_plausible(path: Path, size_nm: float, what: str) -> None:
    low, high = PLAUSIBLE_VOXEL_NM
    if size_nm < low:
        raise InputFileError(
            path,
            f"{what}, {size_nm:.4g} nm ({10 * size_nm:.4g} Å), is below the {10 * low:g} Å any "
            "tomogram has (was a size in nm written where Å belong?); fix the header (in Å; "
            "IMOD: alterheader -del) or pass --voxel-size-nm in nm",
        )
    if size_nm > high:
        raise InputFileError(
            path,
            f"{what}, {size_nm:.4g} nm ({10 * size_nm:.4g} Å), is above the {10 * high:g} Å a "
            "tomogram for vesicle analysis has (was a size in Å taken for nm?); fix the header "
            "(in Å; IMOD: alterheader -del) or pass --voxel-size-nm in nm",
        )


def write_mrc(
    path: str | os.PathLike,
    data: np.ndarray,
    voxel_size_nm: float,
    *,
    origin_angstrom: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Path:
    """Write a float map or an integer label volume as MRC, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Output file. It is written to a temporary file beside it and renamed at the end, so a
        crash never leaves a half-written file under this name.
    data : numpy.ndarray, shape (z, y, x)
        Floating-point data are written as float32 (mode 2). Booleans and integers are written
        as the smallest MRC integer mode that holds them (int8, int16 or uint16); larger label
        values fall back to float32, which holds integers exactly up to 2**24.
    voxel_size_nm : float
        Isotropic voxel size in nm (written to the header in Å).
    origin_angstrom : tuple of float
        Header origin (x, y, z) in Å.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if not isinstance(data, np.ndarray):
        data = np.asarray(data)
    if data.ndim != 3:
        raise InputFileError(
            path, f"cannot write a {data.ndim}-D array as a tomogram; (z, y, x) expected"
        )
    if not (voxel_size_nm and voxel_size_nm > 0):
        raise InputFileError(
            path, f"cannot write voxel size {voxel_size_nm} nm; it must be positive"
        )
    out = _mrc_dtype(data)
    # slab by slab: a memory-mapped volume larger than memory is never loaded whole
    with open_mrc_output(
        path, data.shape, voxel_size_nm, origin_angstrom=origin_angstrom, dtype=out
    ) as target:
        map_slabs(lambda planes: planes, target, data, planes=_PLANES)
    return path


@contextlib.contextmanager
def open_mrc_output(
    path: str | os.PathLike,
    shape: tuple[int, int, int],
    voxel_size_nm: float,
    *,
    origin_angstrom: tuple[float, float, float] = (0.0, 0.0, 0.0),
    dtype=np.float32,
) -> Iterator[np.memmap]:
    """Create an MRC and yield its data as a writable (z, y, x) memory map.

    For outputs larger than memory. The file is written under a temporary name and renamed
    to ``path`` when the block ends without an error (removed otherwise); the header's
    minimum, maximum, mean and RMS are computed slab by slab on the way out.

    Parameters
    ----------
    path : path
    shape : tuple of int
        (z, y, x).
    voxel_size_nm : float
        Written to the header in Å.
    origin_angstrom : tuple of float
        Header origin (x, y, z) in Å.
    dtype : numpy dtype
        float32 (mode 2, the default), int8 (0), int16 (1) or uint16 (6).
    """
    path = Path(path)
    mode = _MRC_MODES[np.dtype(dtype)]
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputFileError(path, f"cannot write a volume of shape {shape}; (z, y, x) expected")
    if not (voxel_size_nm and voxel_size_nm > 0):
        raise InputFileError(
            path, f"cannot write voxel size {voxel_size_nm} nm; it must be positive"
        )
    with atomic_output(path) as tmp:
        with mrcfile.new_mmap(tmp, shape=shape, mrc_mode=mode, overwrite=True) as mrc:
            mrc.voxel_size = float(voxel_size_nm) * 10.0
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin_angstrom
            yield mrc.data
            _set_header_stats(mrc)
            _label(mrc)


def _label(mrc) -> None:
    """Name the writer in the header, without mrcfile's time stamp: the same data written
    twice give the same bytes (reproducible outputs)."""
    from analysis import __version__

    mrc.header.label[0] = f"sv-analysis {__version__} (mrcfile)".ljust(80)[:80]


def _set_header_stats(mrc, slab: int = 2) -> None:
    """dmin, dmax, dmean and rms of a memory-mapped MRC, without loading it whole."""
    data = mrc.data
    lo, hi, total, squares = np.inf, -np.inf, 0.0, 0.0
    for planes in slabs(data, slab):
        planes = np.asarray(planes, dtype=np.float64)
        lo, hi = min(lo, planes.min()), max(hi, planes.max())
        total += planes.sum()
        squares += np.square(planes).sum()
    mean = total / data.size
    mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = lo, hi, mean
    mrc.header.rms = np.sqrt(max(squares / data.size - mean**2, 0.0))


#: MRC modes of the dtypes written.
_MRC_MODES = {
    np.dtype(np.int8): 0,
    np.dtype(np.int16): 1,
    np.dtype(np.float32): 2,
    np.dtype(np.uint16): 6,
}
# Planes copied at a time when writing.
_PLANES = 16


def _mrc_dtype(data: np.ndarray) -> np.dtype:
    if data.dtype == bool:
        return np.dtype(np.int8)
    if np.issubdtype(data.dtype, np.integer):
        lo, hi = 0, 0
        for planes in slabs(data, _PLANES):
            if planes.size:
                lo, hi = min(lo, int(planes.min())), max(hi, int(planes.max()))
        for dtype in (np.int8, np.int16, np.uint16):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return np.dtype(dtype)
        return np.dtype(np.float32)
    if np.iscomplexobj(data):
        raise ValueError("complex data cannot be written as a tomogram")
    return np.dtype(np.float32)
