"""A second, independent tomogram simulator, for testing networks only (never for training).

It shares no code and no modelling choice with :mod:`analysis.synthetic`, so that a network
trained on one renderer can be judged on the other: a different specimen (the electrostatic
potential of a presynaptic terminal with a dense, correlated cytoplasm, :mod:`.specimen`), a
different projector (Fourier-shear, band-limited, :mod:`.projector`), a different image
formation (exit wave through an astigmatic lens, Poisson counts from a dose,
:mod:`.microscope`) and a choice of reconstruction filters and post-filters. :data:`SHIFTS`
names single-factor and combined domain shifts of the nominal tomogram.

:func:`make_tomogram` gives the tomogram with its exact truth; :func:`write_tomogram` stores
``NAME.mrc``, ``NAME_labels.mrc``, ``NAME_vesicles.csv`` and ``NAME_testsim.json``.
"""

from analysis.testsim.params import TestSimParams
from analysis.testsim.shifts import SHIFTS, shift_params
from analysis.testsim.specimen import Specimen, make_specimen
from analysis.testsim.tomogram import (
    FILE_SUFFIXES,
    TESTSIM_VERSION,
    TestTomogram,
    finish,
    image_specimen,
    make_tomogram,
    write_tomogram,
)

__all__ = [
    "FILE_SUFFIXES",
    "SHIFTS",
    "TESTSIM_VERSION",
    "Specimen",
    "TestSimParams",
    "TestTomogram",
    "finish",
    "image_specimen",
    "make_specimen",
    "make_tomogram",
    "shift_params",
    "write_tomogram",
]
