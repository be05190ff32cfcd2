"""What an adaptation changed on the tomograms it was adapted to, without labels.

``analysis adapt`` cannot score the network it writes: the tomograms have no labels. What it
can do is segment them with the starting and the adapted network and say which vesicles
changed: found by both, **lost** (the starting network's, no longer found) and **new** (found by
the adapted network alone), matched as the evaluation matches predictions to the truth
(:func:`analysis.evaluate.match_vesicles`: the other's centre inside the vesicle's radius).

Adaptation is meant to find vesicles the network missed. When it adds no more vesicles than it
loses, it did not do that, and the starting network is the safer choice until annotated
vesicles say otherwise (:func:`adaptation_warning`). Each network runs as ``analysis
segment`` would run it (:func:`compare_networks`, ``match_spectrum="auto"``): the shipped
network on spectrum-matched tomograms, an adapted one, which has no training spectra, on the
tomograms as they are. On the adaptation benchmark (book, chapter 7: test, calibration and
fresh seeds) the warning fired, against the matched shipped network, on every row where the
statistics method lost 0.01 F1 or more, and never where it gained more than 0.005. It does not
see false vesicles: a method that adds false ones looks as if it gained.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import DataError, ParameterError
from analysis.evaluate import match_vesicles
from analysis.inference.spectrum import DEFAULT_MATCH
from analysis.io.atomic import atomic_output
from analysis.io.memmap import negated
from analysis.postprocess import TABLE_COLUMNS, WORK_MEMORY_BYTES

#: Columns of :func:`compare_networks`' table, one row per tomogram.
CHANGE_COLUMNS = ("tomogram", "found_before", "found_after", "lost", "new")


def vesicle_changes(before: pd.DataFrame, after: pd.DataFrame, voxel_size_nm: float) -> dict:
    """The vesicles two segmentations of one tomogram share, and those only one has.

    Parameters
    ----------
    before, after : pandas.DataFrame
        Vesicle tables (DESIGN.md columns ``vesicle_id``, ``z_vox``, ``y_vox``, ``x_vox``,
        ``radius_vox``) of the same tomogram, in voxels of the same grid; rows with
        ``kept`` False (dropped by the post-processing) are left out.
    voxel_size_nm : float
        Voxel size of that grid, nm.

    Returns
    -------
    dict
        ``found_before``, ``found_after``: the kept vesicles of each; ``lost``: those of
        ``before`` that no vesicle of ``after`` matches; ``new``: those of ``after`` that no
        vesicle of ``before`` matches (one-to-one, :func:`analysis.evaluate.match_vesicles`
        with ``before`` in the place of the truth: a vesicle of ``after`` matches one of
        ``before`` whose radius its centre lies within).
    """
    before, after = (t[t["kept"]] if "kept" in t else t for t in (before, after))
    matched = len(match_vesicles(after, before, voxel_size_nm))
    return {
        "found_before": len(before),
        "found_after": len(after),
        "lost": len(before) - matched,
        "new": len(after) - matched,
    }


def kept_vesicles(probability, tomogram, voxel_size_nm: float) -> pd.DataFrame:
    """The vesicles ``analysis segment`` keeps, with its default post-processing.

    Parameters
    ----------
    probability : numpy.ndarray, float, shape (z, y, x)
        The network's map.
    tomogram : numpy.ndarray, shape (z, y, x)
        The tomogram, membranes dark.
    voxel_size_nm : float
        Voxel size, nm.

    Returns
    -------
    pandas.DataFrame
        The kept rows of :func:`analysis.postprocess.segment_vesicles`' table; empty where
        no voxel of the map is above its threshold (0.5): a network that marks nothing
        finds no vesicle. A map that is vesicle nearly everywhere raises its
        :class:`~analysis.errors.DataError`.
    """
    from analysis.postprocess import segment_vesicles

    if not np.any(np.asarray(probability) > 0.5):
        return pd.DataFrame(columns=[*TABLE_COLUMNS])
    table = segment_vesicles(probability, tomogram, voxel_size_nm).table
    return table[table["kept"]]


def compare_networks(
    tomograms,
    voxel_sizes_nm,
    before,
    after,
    *,
    names=None,
    invert: bool = False,
    device: str = "auto",
    match_spectrum: bool | str = DEFAULT_MATCH,
) -> pd.DataFrame:
    """Segment each tomogram with two networks and count what changed.

    Parameters
    ----------
    tomograms : list of numpy.ndarray, shape (z, y, x)
        Membranes dark unless ``invert``; memory maps are read a slab at a time where the
        inference and post-processing allow.
    voxel_sizes_nm : list of float
        Their voxel sizes, nm.
    before, after : None, str, path or analysis.models.Predictor
        The networks, as :meth:`analysis.models.Predictor.load` takes them (None: the
        shipped one): typically the starting network and the adapted checkpoint.
    names : list of str, optional
        Names of the tomograms for the table (default "tomogram 1", …).
    invert : bool
        The tomograms have bright membranes (as ``analysis adapt --invert``).
    device : str
        Where the networks run ("auto": a GPU if there is one).
    match_spectrum : bool or "auto"
        As for :func:`analysis.inference.predict`, for both networks. ``"auto"`` (default)
        runs each as ``analysis segment`` would: the shipped network on spectrum-matched
        tomograms, an adapted one (no training spectra of its own) on the tomograms as they
        are — so the counts weigh the adapted network against the starting one as a user
        would otherwise segment with it.

    Returns
    -------
    pandas.DataFrame
        :data:`CHANGE_COLUMNS`, one row per tomogram (:func:`vesicle_changes`).

    Raises
    ------
    ParameterError
        If there is not one voxel size (and one name, if given) per tomogram.
    DataError
        If a network marks nearly every voxel as vesicle (its message names the tomogram
        and which network).
    """
    from analysis.inference import predict
    from analysis.models import Predictor

    names = list(names or [f"tomogram {i + 1}" for i in range(len(tomograms))])
    if not len(tomograms) == len(voxel_sizes_nm) == len(names):
        raise ParameterError("give one voxel size (and one name, if any) per tomogram")
    predictors = [
        net if isinstance(net, Predictor) else Predictor.load(net, device=device)
        for net in (before, after)
    ]
    rows = []
    for tomo, vs, name in zip(tomograms, voxel_sizes_nm, names, strict=True):
        # as analysis segment does: the network inverts its input itself, the post-processing
        # is given dark membranes
        dark = negated(tomo, memory_limit_bytes=WORK_MEMORY_BYTES) if invert else tomo
        tables = []
        for which, predictor in zip(("starting", "adapted"), predictors, strict=True):
            probability = predict(tomo, vs, predictor, invert=invert, match_spectrum=match_spectrum)
            try:
                tables.append(kept_vesicles(probability, dark, vs))
            except DataError as err:
                raise DataError(f"{name}, segmented by the {which} network: {err}") from err
        rows.append({"tomogram": name, **vesicle_changes(*tables, vs)})
    return pd.DataFrame(rows, columns=list(CHANGE_COLUMNS))


def adaptation_warning(changes: pd.DataFrame) -> str | None:
    """Warn when adaptation added no more vesicles than it lost.

    Parameters
    ----------
    changes : pandas.DataFrame
        :func:`compare_networks`' table (columns ``lost`` and ``new``), pooled over its rows.

    Returns
    -------
    str or None
        The warning, or None when the adapted network found more new vesicles than it lost.
    """
    lost, new = int(changes["lost"].sum()), int(changes["new"].sum())
    if new > lost:
        return None
    return (
        f"the adapted network finds {new} vesicle(s) the starting one did not, and no longer "
        f"finds {lost} that it did: adaptation did not find missed vesicles here; keep the "
        "starting network unless a few annotated vesicles show the adapted one is better "
        "(analysis evaluate)"
    )


def compare_files(
    paths,
    before,
    after,
    *,
    voxel_size_nm: float | None = None,
    invert: bool = False,
    device: str = "auto",
    match_spectrum: bool | str = DEFAULT_MATCH,
    out: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """:func:`compare_networks` on tomogram files.

    Parameters
    ----------
    paths : list of path
        Tomogram files (MRC, TIFF, …), read memory-mapped with their header voxel sizes.
    before, after, invert, device, match_spectrum
        As :func:`compare_networks`.
    voxel_size_nm : float, optional
        Overrides every header's voxel size, nm.
    out : path, optional
        Also write the table here (CSV), complete or not at all.

    Returns
    -------
    pandas.DataFrame
        :func:`compare_networks`' table, the tomograms named by their file names.

    Raises
    ------
    InputFileError
        Where :func:`compare_networks` raises a DataError, naming the files.
    """
    from analysis.io import read_tomogram

    tomos = [read_tomogram(path, voxel_size_nm=voxel_size_nm, mmap=True) for path in paths]
    try:
        table = compare_networks(
            [t.data for t in tomos],
            [float(t.voxel_size_nm) for t in tomos],
            before,
            after,
            names=[Path(p).name for p in paths],
            invert=invert,
            device=device,
            match_spectrum=match_spectrum,
        )
    except DataError as err:
        raise err.in_file(", ".join(os.fspath(p) for p in paths)) from err
    if out is not None:
        with atomic_output(out) as tmp:
            table.to_csv(tmp, index=False)
    return table
