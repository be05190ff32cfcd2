"""Synthetic synapses on disk: the DESIGN.md file names, cached examples and the sample data set."""

from __future__ import annotations

import os
from pathlib import Path

from analysis.io import write_mrc
from analysis.io.atomic import atomic_output
from analysis.synthetic.annotation import write_outline_model
from analysis.synthetic.geometry import SynapseGeometry
from analysis.synthetic.synapse import Synapse, make_synapse

#: Version of the generator's output; cached examples of another version are regenerated.
#: 2: filaments of 3 nm radius at protein density (were 1.6 nm at 0.55: invisible after imaging).
#: 3: filaments offset by up to 4 nm from the line of closest approach of their boundaries.
GENERATOR_VERSION = 3

#: Shape and vesicle count of the quick examples (tests, ANALYSIS_QUICK=1).
QUICK_GEOMETRY = {"shape": (64, 128, 128), "n_vesicles": 40, "n_large_vesicles": 1}

_FILE_ROLES = ("tomogram", "labels", "az_mask", "region_mask", "manual", "vesicles", "filaments")


def synapse_paths(outdir: str | os.PathLike, name: str) -> dict[str, Path]:
    """The DESIGN.md file names of a synthetic synapse ``name`` in ``outdir``, by role."""
    outdir = Path(outdir)
    suffix = {
        "tomogram": ".mrc",
        "manual": "_manual.mod",
        "vesicles": "_vesicles.csv",
        "filaments": "_filaments.csv",
    }
    return {role: outdir / f"{name}{suffix.get(role, f'_{role}.mrc')}" for role in _FILE_ROLES}


def write_synapse(synapse: Synapse, outdir: str | os.PathLike, name: str) -> dict[str, Path]:
    """Write a synthetic synapse under the DESIGN.md file names; returns them by role."""
    Path(outdir).mkdir(parents=True, exist_ok=True)
    files = synapse_paths(outdir, name)
    p = synapse.phantom
    vs = synapse.voxel_size_nm
    for role, volume in (
        ("tomogram", synapse.tomogram),
        ("labels", p.labels),
        ("az_mask", p.az_mask),
        ("region_mask", p.region_mask),
    ):
        write_mrc(files[role], volume, vs)
    write_outline_model(files["manual"], synapse.outlines, vs, p.labels.shape)
    for role, table in (("vesicles", p.vesicles), ("filaments", p.filaments)):
        with atomic_output(files[role]) as tmp:
            table.to_csv(tmp, index=False)
    return files


def default_data_dir() -> Path:
    """Folder for generated data: ``$ANALYSIS_DATA_DIR``, else ``data/generated`` of the
    repository holding the working directory, else ``~/.cache/sv-analysis``."""
    if os.environ.get("ANALYSIS_DATA_DIR"):
        return Path(os.environ["ANALYSIS_DATA_DIR"])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "data" / "README.md").exists() and (folder / "pyproject.toml").exists():
            return folder / "data" / "generated"
    return Path.home() / ".cache" / "sv-analysis"


def example_files(
    name: str = "example",
    *,
    seed: int = 1,
    quick: bool = False,
    outdir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Paths of a synthetic example tomogram and its truth, generated on first use.

    Parameters
    ----------
    name : str
        File stem; ``quick`` examples get ``_quick`` appended so both sizes can coexist.
    seed : int
        Seed of :func:`make_synapse`.
    quick : bool
        A small volume (64×128×128) for tests and quick runs, instead of 128×256×256.
    outdir : path, optional
        Where to keep the files; :func:`default_data_dir` by default.

    Returns
    -------
    dict
        Paths by role: tomogram, labels, az_mask, region_mask, manual, vesicles, filaments.
    """
    outdir = Path(outdir) if outdir is not None else default_data_dir()
    stem = f"{name}_s{seed}" + ("_quick" if quick else "")
    files = synapse_paths(outdir, stem)
    # Files made by an older generator are made again, so cached data match the code.
    stamp = outdir / f".{stem}.generator"
    current = stamp.exists() and stamp.read_text().strip() == str(GENERATOR_VERSION)
    if not (current and all(p.exists() for p in files.values())):
        geometry = SynapseGeometry(**QUICK_GEOMETRY) if quick else SynapseGeometry()
        files = write_synapse(make_synapse(geometry, seed=seed), outdir, stem)
        stamp.write_text(f"{GENERATOR_VERSION}\n")
    return files


#: Seeds of the cached sample data set, per split. Fixed: the book's numbers depend on them.
SPLIT_SEEDS = {
    "train": (101, 102, 103, 104, 105, 106),
    "validation": (201, 202),
    "test": (301, 302, 303),
}
#: How many tomograms per split a quick data set keeps.
QUICK_SPLIT_SIZE = {"train": 2, "validation": 1, "test": 1}


def sample_dataset(
    *, quick: bool = False, outdir: str | os.PathLike | None = None
) -> dict[str, list[dict[str, Path]]]:
    """The train / validation / test sample data set, generated on first use and cached.

    Parameters
    ----------
    quick : bool
        Fewer, smaller tomograms (see :data:`QUICK_SPLIT_SIZE`, :data:`QUICK_GEOMETRY`).
    outdir : path, optional
        Cache folder; :func:`default_data_dir` by default.

    Returns
    -------
    dict
        For each split, a list of file dictionaries as returned by :func:`example_files`.
    """
    out = {}
    for split, seeds in SPLIT_SEEDS.items():
        chosen = seeds[: QUICK_SPLIT_SIZE[split]] if quick else seeds
        out[split] = [example_files(split, seed=s, quick=quick, outdir=outdir) for s in chosen]
    return out
