"""Read IMOD models (.mod) as point tables in tomogram voxels, and write vesicles as models.

IMOD's own coordinates are (x, y, z) with the centre of voxel (i, j, k) at
(i + 0.5, j + 0.5, k): x and y are measured from the pixel edge, z is the section index. This
module is the only place where that order and that half-voxel shift appear; everything it returns
is in (z, y, x) voxel indices of the tomogram (``z_vox, y_vox, x_vox``), voxel centres at
integers.

The binary format is parsed by the ``imodmodel`` library.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
from imodmodel import parsers as _imod_parsers
from imodmodel.models import MINX, Contour, ImodModel, Object

from analysis.errors import InputFileError
from analysis.io.atomic import atomic_output
from analysis.io.tomogram import Tomogram

#: Columns of the point table returned by :func:`read_imod_model`.
POINT_COLUMNS = [
    "object_id",
    "contour_id",
    "point_id",
    "surface",
    "kind",
    "z_vox",
    "y_vox",
    "x_vox",
    "radius_vox",
]

# IMOD's half-pixel convention for x and y (see the module docstring).
_XY_EDGE_OFFSET = 0.5
# Points may lie this far (voxels) beyond the outermost voxel centre before they count as outside:
# a hand-drawn outline hugging the image border reaches half a voxel past the last centre.
_OUTSIDE_TOLERANCE_VOX = 1.0
# IMOD's unit code for nm in the model header.
_IMOD_UNITS_NM = -9


class _StrictReader:
    """File wrapper that fails on a short read.

    ``imodmodel`` reads chunk after chunk until it meets ``IEOF``; on a truncated file it would
    read empty chunks for ever. Raising on the first short read turns that into a clear error.
    """

    def __init__(self, fh):
        self._fh = fh

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if n is not None and n > 0 and len(data) < n:
            raise EOFError("file ends in the middle of a chunk (truncated?)")
        return data


def _parse(path: Path) -> ImodModel:
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"IMOD":
                raise InputFileError(path, "is not an IMOD model (no 'IMOD' signature)")
            fh.seek(0)
            return _imod_parsers.parse_model(_StrictReader(fh))
    except InputFileError:
        raise
    except FileNotFoundError as err:
        raise InputFileError(path, "no such file") from err
    except (EOFError, struct.error, ValueError, IndexError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"is a corrupt IMOD model ({err})") from err


def model_voxel_size_nm(model: ImodModel) -> float | None:
    """Voxel size (nm) of the image a model was drawn on, or None when the model does not say.

    3dmod records the loaded image's pixel spacing (Å) in the MINX chunk; otherwise the model
    header's pixel size counts when its unit is nm. A spacing of exactly 1 is what IMOD writes for
    images without a pixel size, so it counts as unknown.
    """
    size = None
    if model.minx is not None and float(model.minx.cscale[0]) > 0:
        size = float(model.minx.cscale[0]) / 10.0
        if size == 0.1:  # 1 Å: the placeholder
            size = None
    if size is None and model.header.units == _IMOD_UNITS_NM and model.header.pixelsize > 0:
        size = float(model.header.pixelsize)
        if size == 1.0:
            size = None
    return size


def read_imod_model(
    path: str | os.PathLike,
    *,
    like: Tomogram | None = None,
    voxel_size_nm: float | None = None,
    origin_angstrom: tuple[float, float, float] | None = None,
    shape: tuple[int, int, int] | None = None,
    model_voxel_size_nm: float | None = None,
) -> pd.DataFrame:
    """Read an IMOD model into a table of points in the voxel coordinates of a tomogram.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.mod`` file.
    like : Tomogram, optional
        The tomogram the points are wanted in; sets ``voxel_size_nm``, ``origin_angstrom`` and
        ``shape`` at once.
    voxel_size_nm : float, optional
        Voxel size of the target tomogram. When it differs from the voxel size the model was
        drawn at (a different binning), coordinates and sphere sizes are scaled, as 3dmod does.
    origin_angstrom : tuple of float, optional
        Header origin (x, y, z, Å) of the target tomogram; shifts the model like 3dmod does when
        the model was drawn on a volume with another origin (e.g. a sub-volume).
    shape : tuple of int, optional
        Shape (z, y, x) of the target tomogram; points outside it raise an error.
    model_voxel_size_nm : float, optional
        Voxel size the model was drawn at, for models that do not record it (no MINX chunk).

    Returns
    -------
    pandas.DataFrame
        One row per point with columns :data:`POINT_COLUMNS`: IMOD object and contour index
        (from 0), point index within its contour, surface number, ``kind`` (``"closed"``,
        ``"open"`` or ``"scattered"``), position ``z_vox, y_vox, x_vox`` and sphere radius
        ``radius_vox`` (scattered points; NaN otherwise), all in target voxels.

    Raises
    ------
    InputFileError
        Not an IMOD model, corrupt or truncated, empty, saved rotated, or points outside
        ``shape``.
    """
    path = Path(path)
    if like is not None:
        voxel_size_nm = like.voxel_size_nm if voxel_size_nm is None else voxel_size_nm
        origin_angstrom = like.origin_angstrom if origin_angstrom is None else origin_angstrom
        shape = like.shape if shape is None else shape
    model = _parse(path)
    if model.header.flags.model_rotx:
        raise InputFileError(
            path,
            "was saved with the volume rotated about X in 3dmod; reload it, undo the rotation "
            "(Edit > Image > Flip/Rotate) and save it again",
        )
    table = _points_table(model)
    if table.empty:
        raise InputFileError(path, "is an empty IMOD model (no points)")
    xyz = table[["x", "y", "z"]].to_numpy(dtype=np.float64)
    if model.header.flags.model_last_viewed_onYZ_flipped_or_rotated:
        xyz = xyz[:, [0, 2, 1]]  # stored with Y and Z exchanged; restore the native order
    radius = table["size"].to_numpy(dtype=np.float64)

    scale, shift = _model_to_target(model, voxel_size_nm, origin_angstrom, model_voxel_size_nm)
    xyz = xyz * scale + shift
    radius = radius * scale[0]
    out = pd.DataFrame(
        {
            "object_id": table["object_id"].to_numpy(),
            "contour_id": table["contour_id"].to_numpy(),
            "point_id": table["point_id"].to_numpy(),
            "surface": table["surface"].to_numpy(),
            "kind": table["kind"].to_numpy(),
            "z_vox": xyz[:, 2],
            "y_vox": xyz[:, 1] - _XY_EDGE_OFFSET,
            "x_vox": xyz[:, 0] - _XY_EDGE_OFFSET,
            "radius_vox": radius,
        },
        columns=POINT_COLUMNS,
    )
    if shape is not None:
        _check_inside(path, out, shape)
    return out


def _points_table(model: ImodModel) -> pd.DataFrame:
    rows = []
    for o, obj in enumerate(model.objects):
        oflags = obj.header.flags
        for c, contour in enumerate(obj.contours):
            pts = np.asarray(contour.points, dtype=np.float64).reshape(-1, 3)
            if len(pts) == 0:
                continue
            if oflags.scattered:
                kind = "scattered"
            elif oflags.open or contour.header.flags.open:
                kind = "open"
            else:
                kind = "closed"
            if kind == "scattered":
                sizes = contour.point_sizes
                default = float(obj.header.pdrawsize)
                if sizes is None or len(sizes) != len(pts):
                    size = np.full(len(pts), default)
                else:
                    # IMOD stores -1 for "use the object's default size".
                    size = np.where(np.asarray(sizes) < 0, default, np.asarray(sizes, dtype=float))
            else:
                size = np.full(len(pts), np.nan)
            rows.append(
                pd.DataFrame(
                    {
                        "object_id": o,
                        "contour_id": c,
                        "point_id": np.arange(len(pts)),
                        "surface": int(contour.header.surf),
                        "kind": kind,
                        "x": pts[:, 0],
                        "y": pts[:, 1],
                        "z": pts[:, 2],
                        "size": size,
                    }
                )
            )
    if not rows:
        return pd.DataFrame(
            columns=[
                "object_id",
                "contour_id",
                "point_id",
                "surface",
                "kind",
                "x",
                "y",
                "z",
                "size",
            ]
        )
    return pd.concat(rows, ignore_index=True)


def _model_to_target(model, voxel_size_nm, origin_angstrom, drawn_at_nm):
    """Scale and shift (per x, y, z) from model coordinates to the target image, as 3dmod does.

    3dmod maps a model onto a newly loaded image through absolute coordinates:
    ``absolute = p * old_spacing - old_origin`` and ``p_new = (absolute + new_origin) /
    new_spacing``, with spacing and origin in Å from the MINX chunk and the image header.
    """
    old_nm = drawn_at_nm or model_voxel_size_nm(model)
    if old_nm is None or voxel_size_nm is None:
        return np.ones(3), np.zeros(3)
    scale = old_nm / float(voxel_size_nm)
    old_origin = np.asarray(model.minx.ctrans if model.minx is not None else (0.0, 0.0, 0.0))
    new_origin = old_origin if origin_angstrom is None else np.asarray(origin_angstrom, float)
    shift = (new_origin - old_origin) / (float(voxel_size_nm) * 10.0)
    return np.full(3, scale), shift


def _check_inside(path: Path, points: pd.DataFrame, shape) -> None:
    zyx = points[["z_vox", "y_vox", "x_vox"]].to_numpy()
    upper = np.asarray(shape, dtype=float) - 1 + _OUTSIDE_TOLERANCE_VOX
    outside = np.any((zyx < -_OUTSIDE_TOLERANCE_VOX) | (zyx > upper), axis=1)
    if outside.any():
        first = zyx[outside][0]
        raise InputFileError(
            path,
            f"{int(outside.sum())} of {len(zyx)} points lie outside the tomogram of shape "
            f"(z, y, x) = {tuple(shape)}, e.g. at (z, y, x) = ({first[0]:.1f}, {first[1]:.1f}, "
            f"{first[2]:.1f}); was the model drawn on another tomogram or binning?",
        )


def zyx_to_imod(zyx_vox: np.ndarray) -> np.ndarray:
    """Voxel positions (z, y, x) to IMOD point coordinates (x, y, z), float32."""
    zyx = np.asarray(zyx_vox, dtype=np.float64).reshape(-1, 3)
    return np.column_stack(
        [zyx[:, 2] + _XY_EDGE_OFFSET, zyx[:, 1] + _XY_EDGE_OFFSET, zyx[:, 0]]
    ).astype(np.float32)


def new_model(
    voxel_size_nm: float,
    *,
    shape: tuple[int, int, int] | None = None,
    origin_angstrom: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> ImodModel:
    """An empty IMOD model that records the tomogram's size, voxel size and origin.

    The MINX chunk holds the image spacing and origin as 3dmod writes them, so that 3dmod (and
    :func:`read_imod_model`) rescale the model when it is opened on another binning.
    """
    model = ImodModel()
    if shape is not None:
        model.header.zmax, model.header.ymax, model.header.xmax = (int(n) for n in shape)
    model.header.pixelsize = float(voxel_size_nm)
    model.header.units = _IMOD_UNITS_NM
    model.header.flags.otrans_has_image_origin_values = True
    spacing = (float(voxel_size_nm) * 10.0,) * 3
    origin = tuple(float(v) for v in origin_angstrom)
    zero = (0.0, 0.0, 0.0)
    model.minx = MINX(
        oscale=spacing, otrans=origin, orot=zero, cscale=spacing, ctrans=origin, crot=zero
    )
    return model


def write_model(path: str | os.PathLike, model: ImodModel) -> Path:
    """Write an IMOD model atomically (temporary file, then rename)."""
    model.update_sizes()
    with atomic_output(path) as tmp:
        model.to_file(tmp)
    return Path(path)


def write_vesicle_model(
    path: str | os.PathLike,
    centres_vox: np.ndarray,
    radii_vox: np.ndarray,
    voxel_size_nm: float,
    *,
    shape: tuple[int, int, int] | None = None,
    origin_angstrom: tuple[float, float, float] = (0.0, 0.0, 0.0),
    name: str = "synaptic vesicles",
) -> Path:
    """Write vesicles as an IMOD model of scattered points with sphere sizes, atomically.

    3dmod shows each point as a sphere of its own radius. The model records the voxel size and
    origin (MINX chunk), so 3dmod rescales it when it is opened on a tomogram of another binning.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.mod`` file.
    centres_vox : numpy.ndarray, shape (n, 3)
        Vesicle centres (z, y, x) in voxels.
    radii_vox : numpy.ndarray, shape (n,)
        Vesicle radii in voxels.
    voxel_size_nm : float
        Voxel size of the tomogram the centres refer to.
    shape : tuple of int, optional
        Tomogram shape (z, y, x), recorded in the model header.
    origin_angstrom : tuple of float
        Tomogram header origin (x, y, z) in Å.
    name : str
        Object name shown in 3dmod.
    """
    centres = np.asarray(centres_vox, dtype=np.float64).reshape(-1, 3)
    radii = np.asarray(radii_vox, dtype=np.float64).reshape(-1)
    if len(radii) != len(centres):
        raise ValueError(f"{len(centres)} centres but {len(radii)} radii")
    xyz = zyx_to_imod(centres)
    model = new_model(voxel_size_nm, shape=shape, origin_angstrom=origin_angstrom)
    obj = Object(color=(0.0, 0.8, 1.0))
    obj.header.name = name
    obj.header.flags.scattered = True
    obj.header.pdrawsize = int(round(float(np.median(radii)))) if len(radii) else 0
    if len(xyz):
        contour = Contour(points=xyz, point_sizes=radii.astype(np.float32))
        obj.contours.append(contour)
    obj.update_sizes()
    model.objects.append(obj)
    return write_model(path, model)


__all__ = [
    "POINT_COLUMNS",
    "new_model",
    "write_model",
    "zyx_to_imod",
    "model_voxel_size_nm",
    "read_imod_model",
    "write_vesicle_model",
]
