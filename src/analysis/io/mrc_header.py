"""What an MRC header says about how to read its data, by IMOD's and MRC2014's rules.

``mrcfile`` reads the bytes; this module decides what they mean where the standards and the
programs that write tomograms differ:

- **Mode 0 (bytes)** is signed in MRC2014 but unsigned in files IMOD writes (``newstack -mode
  0``, ``trimvol -byte``). IMOD marks its files with ``imodStamp`` = 1146047817 at byte 152 and
  says in bit 0 of ``imodFlags`` (byte 156) whether its bytes are signed. Without the stamp
  the MRC2014 rule holds: signed.
- **Axis order**: ``mapc``, ``mapr``, ``maps`` name the axis (1 = x, 2 = y, 3 = z) that runs
  along the file's columns, rows and sections. Tomograms are nearly always 1, 2, 3; anything
  else is transposed to (z, y, x).
- **Origin**: bit 2 of ``imodFlags`` says IMOD stored the origin with its sign inverted.
- **Extended headers** (FEI ``FEI1``/``FEI2``, SerialEM ``SERI``, Agard/old FEI) are skipped by
  ``mrcfile``; their per-section tilt angles, and IMOD's own tilt fields, tell a tilt series
  from a tomogram.

All offsets are those of IMOD's ``mrc_format.txt`` and the MRC2014 paper (Cheng et al.,
*J. Struct. Biol.* 2015).
"""

from __future__ import annotations

import numpy as np

from analysis.io.formats import TILT_SERIES_SUFFIXES

#: ``imodStamp`` of files written by IMOD (or software that follows its flags): "IMOD" as int32.
IMOD_STAMP = 1146047817
#: ``imodFlags`` bits.
FLAG_SIGNED_BYTES = 1
FLAG_ORIGIN_INVERTED = 4
#: Tilt angles spanning at least this many degrees over the sections mark a tilt series.
TILT_RANGE_DEG = 10.0

_AXES = {1: "x", 2: "y", 3: "z"}
# Bytes per section of each SerialEM flag in nreal: tilt angle, piece coordinates, stage
# position, magnification, intensity, exposure dose (IMOD's mrc_format.txt).
_SERIALEM_BYTES = {1: 2, 2: 6, 4: 4, 8: 2, 16: 2, 32: 4}


def imod_fields(raw_header: bytes, byteorder: str = "<") -> dict[str, int]:
    """IMOD's fields of a 1024-byte MRC header.

    Parameters
    ----------
    raw_header : bytes
        The first 1024 bytes of the file.
    byteorder : str
        ``"<"`` or ``">"``, as the file's machine stamp says.

    Returns
    -------
    dict
        ``stamp`` and ``flags`` (``imodStamp``, ``imodFlags``), ``nint`` and ``nreal`` (the
        extended header's layout), ``idtype`` (1 = tilt series in IMOD's old tilt fields) and
        ``tilt_increment`` (``vd1``: 100 × the tilt increment in degrees).
    """

    def field(offset: int, kind: str) -> int:
        return int(np.frombuffer(raw_header, dtype=byteorder + kind, count=1, offset=offset)[0])

    return {
        "nint": field(128, "i2"),
        "nreal": field(130, "i2"),
        "stamp": field(152, "i4"),
        "flags": field(156, "i4"),
        "idtype": field(160, "i2"),
        "tilt_increment": field(168, "i2"),
    }


def byte_signedness(imod: dict[str, int]) -> tuple[bool, str]:
    """Whether mode-0 bytes are signed, and why.

    Returns
    -------
    signed : bool
    reason : str
        For ``analysis info``, e.g. ``"unsigned (IMOD stamp, imodFlags bit 0 clear)"``.
    """
    if imod["stamp"] == IMOD_STAMP:
        if imod["flags"] & FLAG_SIGNED_BYTES:
            return True, "signed (IMOD stamp, imodFlags bit 0 set)"
        return False, "unsigned (IMOD stamp, imodFlags bit 0 clear)"
    return True, "signed (no IMOD stamp: the MRC2014 rule for mode 0)"


def axis_permutation(mapc: int, mapr: int, maps: int) -> tuple[tuple[int, int, int] | None, str]:
    """How to transpose the file's (section, row, column) array to (z, y, x).

    Parameters
    ----------
    mapc, mapr, maps : int
        The header's axis numbers (1 = x, 2 = y, 3 = z) of columns, rows and sections.

    Returns
    -------
    axes : tuple of int or None
        The ``numpy.transpose`` axes, or None when the file is already (z, y, x) (also for
        0, 0, 0, which old files write for "unset").
    description : str
        E.g. ``"columns x, rows y, sections z"``.

    Raises
    ------
    ValueError
        When the three are not a permutation of 1, 2, 3.
    """
    given = (int(mapc), int(mapr), int(maps))
    if given in ((1, 2, 3), (0, 0, 0)):
        note = "" if given == (1, 2, 3) else " (mapc/mapr/maps unset: the default)"
        return None, "columns x, rows y, sections z" + note
    if sorted(given) != [1, 2, 3]:
        raise ValueError(
            f"has map axes (mapc, mapr, maps) = {given}; they must be 1, 2, 3 in some order"
        )
    # the array's axes are (sections, rows, columns); put the one that holds z first, …
    source = {number: axis for axis, number in enumerate(reversed(given))}
    axes = (source[3], source[2], source[1])
    description = ", ".join(
        f"{role} {_AXES[n]}" for role, n in zip(("columns", "rows", "sections"), given, strict=True)
    )
    return axes, description + " (transposed to z, y, x)"


def extended_header_type(exttyp: bytes, nsymbt: int, imod: dict[str, int]) -> str:
    """A short name for the extended header: ``FEI1``, ``FEI2``, ``SerialEM``, ``Agard`` …"""
    if nsymbt <= 0:
        return "none"
    name = exttyp.decode("ascii", "replace").strip("\0 ")
    if name == "SERI":
        return "SerialEM"
    if name in ("FEI1", "FEI2"):
        return name
    if name == "AGAR":
        return "Agard"
    if not name and imod["nreal"] > 0:
        # older files name no type; IMOD tells the two layouts apart by whether nint is the
        # number of bytes SerialEM's flags in nreal call for
        serialem_bytes = sum(n for bit, n in _SERIALEM_BYTES.items() if imod["nreal"] & bit)
        return "SerialEM" if serialem_bytes == imod["nint"] else "Agard"
    return name or "unknown"


def section_tilt_angles(
    kind: str, extended: np.ndarray, nz: int, imod: dict[str, int], byteorder: str = "<"
) -> np.ndarray | None:
    """The tilt angle (degrees) of each section recorded in an extended header, if any.

    Parameters
    ----------
    kind : str
        From :func:`extended_header_type`.
    extended : numpy.ndarray
        The extended header's bytes (``mrcfile``'s ``extended_header``).
    nz : int
        Number of sections.
    imod : dict
        From :func:`imod_fields`.
    byteorder : str
        The file's byte order.

    Returns
    -------
    numpy.ndarray of float, shape (nz,), or None
    """
    raw = np.asarray(extended).tobytes()
    if kind in ("FEI1", "FEI2"):
        from mrcfile.dtypes import get_ext_header_dtype

        dtype = get_ext_header_dtype(kind.encode(), byteorder)
        if len(raw) < nz * dtype.itemsize:
            return None
        records = np.frombuffer(raw, dtype=dtype, count=nz)
        return records["Alpha tilt"].astype(float)
    if kind == "SerialEM":
        # nint = bytes per section; nreal = flags of what they hold; bit 0: tilt angle × 100 as
        # the first int16 of each section
        per_section = imod["nint"]
        if not imod["nreal"] & 1 or per_section < 2 or len(raw) < nz * per_section:
            return None
        shorts = np.frombuffer(raw, dtype=byteorder + "i2", count=nz * per_section // 2)
        return shorts.reshape(nz, per_section // 2)[:, 0] / 100.0
    if kind == "Agard":
        # nint int32 then nreal float32 per section; the first real is the tilt angle (FEI's
        # extended header before FEI1, as IMOD reads it)
        per_section = 4 * (imod["nint"] + imod["nreal"])
        if imod["nreal"] < 1 or per_section <= 0 or len(raw) < nz * per_section:
            return None
        words = np.frombuffer(raw, dtype=byteorder + "f4", count=nz * per_section // 4)
        return words.reshape(nz, per_section // 4)[:, imod["nint"]].astype(float)
    return None


def tilt_series_evidence(
    suffix: str, imod: dict[str, int], tilt_angles: np.ndarray | None, kind: str
) -> str | None:
    """Why a file is a tilt series rather than a tomogram, or None if nothing says so.

    Parameters
    ----------
    suffix : str
        The file's ending, lower case.
    imod : dict
        From :func:`imod_fields`.
    tilt_angles : numpy.ndarray or None
        From :func:`section_tilt_angles`.
    kind : str
        The extended header's type, for the message.
    """
    if suffix in TILT_SERIES_SUFFIXES:
        stack = "raw" if suffix == ".st" else "aligned"
        return f"its ending {suffix} is IMOD's for a {stack} tilt series"
    if tilt_angles is not None and len(tilt_angles) >= 3:
        finite = tilt_angles[np.isfinite(tilt_angles)]
        if finite.size and np.ptp(finite) >= TILT_RANGE_DEG:
            return (
                f"its {kind} extended header gives each section a tilt angle "
                f"({finite.min():.0f}° to {finite.max():.0f}°)"
            )
    if imod["idtype"] in (1, 2) and imod["tilt_increment"] != 0:
        return (
            f"its header's tilt fields (idtype {imod['idtype']}, tilt increment "
            f"{imod['tilt_increment'] / 100:.2f}°) describe a tilt series"
        )
    return None
