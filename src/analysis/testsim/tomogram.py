"""Make one tomogram of the independent simulator with its exact truth, and write it."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.io import write_mrc
from analysis.io.atomic import atomic_outputs
from analysis.testsim.microscope import record_tilt_series
from analysis.testsim.params import TestSimParams
from analysis.testsim.postfilter import post_filter, quantise_8bit
from analysis.testsim.projector import back_project, project
from analysis.testsim.specimen import Specimen, make_specimen

#: Version of the simulator's models; bump it when a tomogram for a given seed changes.
TESTSIM_VERSION = 1


@dataclass
class TestTomogram:
    """A simulated tomogram and its exact truth.

    Attributes
    ----------
    tomogram : numpy.ndarray, shape (z, y, x), float32
        Zero mean, unit variance; membranes and mass dark.
    labels : numpy.ndarray, shape (z, y, x), int32
        One id per synaptic vesicle (whole sphere, membrane included); 0 elsewhere, also on
        every distractor.
    vesicles : pandas.DataFrame
        One row per label: ``vesicle_id, z_vox, y_vox, x_vox, radius_vox, z_nm, y_nm, x_nm,
        radius_nm`` (radius to the outer edge of the membrane), ``membrane_thickness_nm``,
        ``lumen_potential_v``, ``inside_fraction`` (share of the sphere inside the box; at least
        about 0.15). Centres of vesicles cut by a face may lie outside the box.
    voxel_size_nm : float
    params : TestSimParams
    seed : int
    """

    __test__ = False

    tomogram: np.ndarray
    labels: np.ndarray
    vesicles: pd.DataFrame
    voxel_size_nm: float
    params: TestSimParams
    seed: int


def _streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for the specimen and the microscope: a change of imaging
    leaves the specimen of a seed as it was."""
    specimen, microscope = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(specimen), np.random.default_rng(microscope)


def image_specimen(
    specimen: Specimen, params: TestSimParams, rng: np.random.Generator, *, noise: bool = True
) -> np.ndarray:
    """Record a tilt series of a specimen and reconstruct it (unnormalised, mass dark).

    Parameters
    ----------
    specimen : Specimen
    params : TestSimParams
    rng : numpy.random.Generator
        Tilt errors, astigmatism direction, shot noise, image shifts.
    noise : bool
        False: the reconstruction at infinite dose (same alignment errors).

    Returns
    -------
    numpy.ndarray, shape ``params.shape``, float32
    """
    nominal = params.tilts_deg
    true_tilts = nominal + rng.standard_normal(len(nominal)) * params.tilt_jitter_deg
    projected = project(specimen.potential, true_tilts)
    images = record_tilt_series(projected, params, true_tilts, rng, noise=noise)
    volume = back_project(
        images,
        nominal,
        params.shape[0],
        recon_filter=params.recon_filter,
        sirt_iterations=params.sirt_iterations,
    )
    m = specimen.margin_vox
    return np.ascontiguousarray(volume[:, :, m : m + params.shape[2]])


def finish(volume: np.ndarray, params: TestSimParams) -> np.ndarray:
    """Post-filter, optionally quantise to 8 bits, and normalise to zero mean, unit variance."""
    volume = post_filter(
        volume,
        params.post_filter,
        params.voxel_size_nm,
        params.gaussian_sigma_nm,
        params.nad_iterations,
    )
    if params.quantise_8bit:
        volume = quantise_8bit(volume)
    volume = (volume - volume.mean()) / (volume.std() or 1.0)
    return volume.astype(np.float32)


def make_tomogram(
    params: TestSimParams | None = None, seed: int = 0, *, noise: bool = True
) -> TestTomogram:
    """Simulate one tomogram of a presynaptic terminal with its exact vesicle truth.

    Parameters
    ----------
    params : TestSimParams, optional
        Specimen and microscope; the defaults are the nominal tomogram (96 × 192 × 192 at
        2.2 nm). See :data:`SHIFTS` for named variations.
    seed : int
        Same seed, same numbers. The specimen depends only on the seed and the specimen
        parameters, so that imaging shifts of a seed show the same terminal.
    noise : bool
        False: the reconstruction of the expected (noise-free) tilt series.

    Returns
    -------
    TestTomogram
    """
    params = params or TestSimParams()
    specimen_rng, microscope_rng = _streams(seed)
    specimen = make_specimen(params, specimen_rng)
    volume = image_specimen(specimen, params, microscope_rng, noise=noise)
    return TestTomogram(
        tomogram=finish(volume, params),
        labels=specimen.labels,
        vesicles=specimen.vesicles,
        voxel_size_nm=params.voxel_size_nm,
        params=params,
        seed=seed,
    )


#: The files :func:`write_tomogram` writes: key -> what follows NAME in the file name.
FILE_SUFFIXES = {
    "tomogram": ".mrc",
    "labels": "_labels.mrc",
    "vesicles": "_vesicles.csv",
    "provenance": "_testsim.json",
}


def write_tomogram(result: TestTomogram, outdir: str | os.PathLike, name: str) -> dict[str, Path]:
    """Write ``NAME.mrc``, ``NAME_labels.mrc``, ``NAME_vesicles.csv`` and
    ``NAME_testsim.json`` (simulator version, seed, parameters) into ``outdir``.

    All four are written to temporary files and renamed only when all are complete.

    Returns
    -------
    dict
        The paths written, by the keys of :data:`FILE_SUFFIXES`.
    """
    paths = {key: Path(outdir) / f"{name}{suffix}" for key, suffix in FILE_SUFFIXES.items()}
    provenance = {
        "simulator": "analysis.testsim",
        "version": TESTSIM_VERSION,
        "seed": result.seed,
        "params": dataclasses.asdict(result.params),
    }
    with atomic_outputs(paths) as tmp:
        write_mrc(tmp["tomogram"], result.tomogram, result.voxel_size_nm)
        write_mrc(tmp["labels"], result.labels, result.voxel_size_nm)
        result.vesicles.to_csv(tmp["vesicles"], index=False)
        tmp["provenance"].write_text(json.dumps(provenance, indent=1))
    return paths
