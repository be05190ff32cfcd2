"""A study table of tomograms and their groups, and the per-tomogram tables pooled into one.

A *study table* (CSV) has one row per tomogram (one synapse) with the columns

``tomogram``
    the tomogram file (MRC, TIFF, OME-Zarr);
``group``
    its experimental group (two groups, each of at least two tomograms);
``az_mask``, ``region_mask``
    the active-zone membrane and the cytoplasm to analyse (mask MRCs or IMOD models);

and optionally ``labels`` (vesicle labels to use instead of segmenting the tomogram) and
``voxel_size_nm`` (overrides the header). Relative paths are relative to the table's folder.
:func:`read_study` checks all of it before any work starts; :func:`read_pooled` reads the
tables ``analysis active-zone`` wrote for each tomogram into one table per kind, with
``group`` and ``tomogram`` columns.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.active_zone import AZ_OUTPUT_SUFFIXES
from analysis.errors import InputFileError
from analysis.io import read_tomogram, tomogram_stem

#: Columns every study table has.
STUDY_COLUMNS = ("tomogram", "group", "az_mask", "region_mask")
#: Columns a study table may have; the path columns among them are resolved like the others.
OPTIONAL_COLUMNS = ("labels", "voxel_size_nm")
_PATH_COLUMNS = ("tomogram", "az_mask", "region_mask", "labels")
#: Voxel sizes closer than this (relative) count as the same.
VOXEL_SIZE_TOLERANCE = 1e-3


def read_study(path: str | os.PathLike, *, min_per_group: int = 2) -> pd.DataFrame:
    """Read and check a study table (module notes) before any work is done on it.

    Parameters
    ----------
    path : path
        The study CSV.
    min_per_group : int
        Fewest tomograms a group may have (a group's spread needs two).

    Returns
    -------
    pandas.DataFrame
        The table with absolute paths, a ``stem`` column (the output name of each tomogram)
        and ``voxel_size_nm`` (from the header unless given).

    Raises
    ------
    InputFileError
        Naming the study table (or the file at fault): a missing column or file, an empty
        group name, one group only or more than two, a group under ``min_per_group``
        tomograms, two tomograms with the same output name, or voxel sizes that differ.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "study table does not exist")
    try:
        study = pd.read_csv(path, dtype={"group": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"not a readable CSV study table ({err})") from None
    missing = [c for c in STUDY_COLUMNS if c not in study]
    if missing:
        raise InputFileError(
            path, f"missing column(s) {', '.join(missing)}; needs {', '.join(STUDY_COLUMNS)}"
        )
    if study.empty:
        raise InputFileError(path, "lists no tomogram")
    if study["group"].isna().any() or (study["group"].str.strip() == "").any():
        row = int(np.flatnonzero(study["group"].isna() | (study["group"].str.strip() == ""))[0])
        raise InputFileError(path, f"row {row + 2}: empty group")
    study = study.copy()
    for column in (c for c in _PATH_COLUMNS if c in study):
        study[column] = [_resolve(path, value) for value in study[column]]
    absent = [
        f"{value} ({column}, row {row + 2})"
        for column in (c for c in _PATH_COLUMNS if c in study)
        for row, value in enumerate(study[column])
        if isinstance(value, str) and not Path(value).exists()
    ]
    if absent:
        more = f" and {len(absent) - 1} more" if len(absent) > 1 else ""
        raise InputFileError(path, f"file not found: {absent[0]}{more}")
    _check_groups(path, study["group"], min_per_group)
    study["stem"] = [tomogram_stem(t) for t in study["tomogram"]]
    twice = study["stem"][study["stem"].duplicated()]
    if len(twice):
        raise InputFileError(
            path, f"two tomograms would share the output name {twice.iloc[0]!r}; rename one"
        )
    study["voxel_size_nm"] = _voxel_sizes(path, study)
    return study


def _resolve(study_path: Path, value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or str(value) == "":
        return None
    file = Path(str(value)).expanduser()
    return str(file if file.is_absolute() else (study_path.parent / file).resolve())


def _check_groups(path: Path, groups: pd.Series, min_per_group: int) -> None:
    sizes = groups.value_counts(sort=False)
    if len(sizes) < 2:
        raise InputFileError(
            path, f"one group only ({sizes.index[0]!r}); a comparison needs two groups"
        )
    if len(sizes) > 2:
        raise InputFileError(
            path,
            f"{len(sizes)} groups ({', '.join(map(repr, sizes.index))}); compare takes two: "
            "split the table into pairs of groups",
        )
    small = sizes[sizes < min_per_group]
    if len(small):
        raise InputFileError(
            path,
            f"group {small.index[0]!r} has {small.iloc[0]} tomogram(s); each group needs at "
            f"least {min_per_group} (the synapse is the unit)",
        )


def _voxel_sizes(path: Path, study: pd.DataFrame) -> list[float]:
    given = study["voxel_size_nm"] if "voxel_size_nm" in study else [np.nan] * len(study)
    sizes = [
        float(v) if pd.notna(v) else read_tomogram(t, mmap=True).voxel_size_nm
        for t, v in zip(study["tomogram"], given, strict=True)
    ]
    if max(sizes) - min(sizes) > VOXEL_SIZE_TOLERANCE * min(sizes):
        first, other = sizes[0], next(s for s in sizes if abs(s - sizes[0]) > 1e-9)
        where = study["tomogram"].iloc[sizes.index(other)]
        raise InputFileError(
            path,
            f"mixed voxel sizes ({first:.4g} nm for {study['tomogram'].iloc[0]}, {other:.4g} "
            f"nm for {where}): distances and layers would not compare; resample to one size "
            "or give voxel_size_nm",
        )
    return sizes


def study_items(study: pd.DataFrame) -> list[dict]:
    """The rows of a :func:`read_study` table as dicts, without empty optional values (the
    items of :func:`analysis.batch.run_study`)."""
    keep = [c for c in (*STUDY_COLUMNS, *OPTIONAL_COLUMNS) if c in study]
    return [
        {
            k: v
            for k, v in row.items()
            if v is not None and not (isinstance(v, float) and np.isnan(v))
        }
        for row in study[keep].to_dict("records")
    ]


def pool(tables: Mapping[str, pd.DataFrame], groups: Mapping[str, str]) -> pd.DataFrame:
    """One table of per-tomogram tables, with ``group`` and ``tomogram`` columns first.

    Parameters
    ----------
    tables : mapping of str to pandas.DataFrame
        A table per tomogram (its name).
    groups : mapping of str to str
        The group of each tomogram.
    """
    frames = [
        table.assign(group=groups[name], tomogram=name)[
            ["group", "tomogram", *[c for c in table.columns if c not in ("group", "tomogram")]]
        ]
        for name, table in tables.items()
    ]
    if not frames:
        return pd.DataFrame(columns=["group", "tomogram"])
    return pd.concat(frames, ignore_index=True)


def read_pooled(
    study: pd.DataFrame, outdir: str | os.PathLike, roles=("vesicles", "layers", "filaments")
) -> dict[str, pd.DataFrame]:
    """The tables ``analysis active-zone`` wrote for each tomogram of ``study``, pooled.

    Parameters
    ----------
    study : pandas.DataFrame
        As :func:`read_study` returns it.
    outdir : path
        Where the per-tomogram tables are (``STEM_az_vesicles.csv``, …).
    roles : sequence of str
        Which tables (keys of :data:`analysis.active_zone.AZ_OUTPUT_SUFFIXES`).

    Returns
    -------
    dict of str to pandas.DataFrame
        One pooled table per role, in the study's order.
    """
    outdir = Path(outdir)
    groups = dict(zip(study["stem"], study["group"], strict=True))
    out = {}
    for role in roles:
        tables = {}
        for stem in study["stem"]:
            file = outdir / f"{stem}{AZ_OUTPUT_SUFFIXES[role]}"
            if not file.exists():
                raise InputFileError(file, "missing: the active-zone analysis has not run")
            tables[stem] = pd.read_csv(file)
        out[role] = pool(tables, groups)
    return out
