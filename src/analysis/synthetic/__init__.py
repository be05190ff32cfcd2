"""Seeded synthetic synapse tomograms with exact ground truth.

:func:`make_synapse` builds a phantom (:mod:`.geometry`), images it through a simulated tilt
series and weighted back-projection (:mod:`.imaging`), and simulates a manual IMOD annotation
(:mod:`.annotation`). :func:`write_synapse` stores everything under the file names fixed in
DESIGN.md; :func:`sample_dataset` caches a train/validation/test set on first use.
"""

from analysis.synthetic.files import (
    GENERATOR_VERSION,
    QUICK_GEOMETRY,
    QUICK_SPLIT_SIZE,
    SPLIT_SEEDS,
    default_data_dir,
    example_files,
    sample_dataset,
    synapse_paths,
    write_synapse,
)
from analysis.synthetic.geometry import Phantom, SynapseGeometry, make_phantom, scaled_geometry
from analysis.synthetic.imaging import Microscope
from analysis.synthetic.synapse import Synapse, make_synapse

__all__ = [
    "GENERATOR_VERSION",
    "QUICK_SPLIT_SIZE",
    "QUICK_GEOMETRY",
    "SPLIT_SEEDS",
    "sample_dataset",
    "synapse_paths",
    "default_data_dir",
    "example_files",
    "Microscope",
    "Phantom",
    "Synapse",
    "SynapseGeometry",
    "make_phantom",
    "make_synapse",
    "scaled_geometry",
    "write_synapse",
]
