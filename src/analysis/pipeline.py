"""One tomogram from file to vesicles: inference, then post-processing, then the output files.

:func:`segment_file` is what ``analysis segment`` (and, per tomogram, ``analysis batch``)
runs. It writes the DESIGN.md files ``STEM_probability.mrc`` (optional), ``STEM_labels.mrc``,
``STEM_vesicles.csv``, ``STEM_vesicles.mod``, ``STEM_pyto_labels.mrc`` and ``STEM_check.json``
(the domain check, :mod:`analysis.inference.domain`), all through temporary files renamed at
the end: a failed run leaves the output folder as it was (older results included) and nothing
that could be mistaken for a result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from analysis.errors import DataError, InputFileError, ParameterError
from analysis.inference import domain, predict, predict_file, spectrum
from analysis.io import atomic_output, read_mask, read_tomogram, tomogram_stem
from analysis.io.memmap import negated
from analysis.models import Predictor
from analysis.postprocess import WORK_MEMORY_BYTES, output_files, segment_vesicles, write_outputs

log = logging.getLogger(__name__)


def output_paths(tomogram: str | os.PathLike, outdir: str | os.PathLike) -> dict[str, Path]:
    """Where :func:`segment_file` writes its outputs for ``tomogram``, by role
    (:data:`analysis.postprocess.OUTPUT_SUFFIXES`)."""
    return output_files(tomogram_stem(tomogram), outdir)


def segment_file(
    tomogram: str | os.PathLike,
    outdir: str | os.PathLike,
    *,
    voxel_size_nm: float | None = None,
    model=None,
    predictor_options: dict | None = None,
    write_probability: bool = True,
    az_mask: str | os.PathLike | None = None,
    region_mask: str | os.PathLike | None = None,
    predict_options: dict | None = None,
    postprocess_options: dict | None = None,
    invert: bool | str = False,
    check: bool = True,
) -> dict[str, Path]:
    """Segment the vesicles of one tomogram file and write the outputs to ``outdir``.

    Parameters
    ----------
    tomogram : path
        MRC, TIFF or OME-Zarr; read memory-mapped.
    outdir : path
        Output folder; must exist.
    voxel_size_nm : float, optional
        Overrides the header's voxel size.
    model : None, str, path, (network, checkpoint) or analysis.models.Predictor
        The network, as :func:`analysis.models.load` takes it (the shipped one by default), or
        a predictor ready to run.
    predictor_options : dict, optional
        ``device``, ``precision`` and ``tta`` of :meth:`analysis.models.Predictor.load` (not
        with a predictor).
    write_probability : bool
        Also keep the network's probability map (``STEM_probability.mrc``).
    az_mask, region_mask : path, optional
        Active-zone membrane and analysis region (a mask of the tomogram's shape, or an IMOD
        model: :func:`analysis.io.read_mask`), put into the Pyto boundary labels.
    predict_options, postprocess_options : dict, optional
        Options of :func:`analysis.inference.predict` and
        :func:`analysis.postprocess.segment_vesicles`; ``match_spectrum`` is resolved
        here, once (:func:`analysis.inference.spectrum.matching_envelope`), and recorded in
        ``STEM_check.json``'s info (``spectrum_matched``).
    invert : bool or "auto"
        Invert the contrast (membranes bright in the file); ``"auto"`` inverts when the
        domain check's polarity finds the membranes bright.
    check : bool
        Run the domain check (:func:`analysis.inference.domain.check_tomogram`, a few
        seconds) and write ``STEM_check.json``.

    Returns
    -------
    dict of str to pathlib.Path
        The files written, by role (:data:`analysis.postprocess.OUTPUT_SUFFIXES`).
    """
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise InputFileError(outdir, "output folder does not exist")
    if isinstance(model, Predictor):
        if predictor_options:
            raise ParameterError("predictor_options go with a model name, not a Predictor")
        predictor = model
    else:
        predictor = Predictor.load(model, **(predictor_options or {}))
    predict_options = dict(predict_options or {})
    # resolved once, before the polarity check's inference: True without training spectra
    # is refused here, and "auto" becomes what it means for this network
    matched = (
        spectrum.matching_envelope(
            predictor.checkpoint, predict_options.get("match_spectrum", spectrum.DEFAULT_MATCH)
        )
        is not None
    )
    predict_options["match_spectrum"] = matched
    paths = output_paths(tomogram, outdir)
    tomo = read_tomogram(tomogram, voxel_size_nm=voxel_size_nm, mmap=True)
    masks = {
        key: None if path is None else read_mask(path, tomo, role)
        for key, path, role in (
            ("az_mask", az_mask, "active-zone mask"),
            ("region_mask", region_mask, "region mask"),
        )
    }
    start = time.perf_counter()
    log.info("%s: %s voxels of %.4g nm", tomogram, tomo.shape, tomo.voxel_size_nm)
    if invert == "auto":
        invert = domain.looks_inverted(tomo.data, tomo.voxel_size_nm, model)
        log.info("%s: contrast %s", tomogram, "inverted" if invert else "kept")
    elif not isinstance(invert, bool):
        raise ParameterError(f"invert must be True, False or 'auto', not {invert!r}")
    predict_options["invert"] = invert
    if not check:
        paths.pop("check")
    # The probability map is committed last, with the other files already in place, so
    # that a failure anywhere leaves the folder as it was.
    with contextlib.ExitStack() as stack:
        if write_probability:
            tmp = stack.enter_context(atomic_output(paths["probability"]))
            predict_file(tomogram, tmp, predictor, voxel_size_nm=voxel_size_nm, **predict_options)
            probability = read_tomogram(tmp, mmap=True).data
        else:
            paths.pop("probability")
            try:
                probability = predict(tomo.data, tomo.voxel_size_nm, predictor, **predict_options)
            except DataError as err:
                raise err.in_file(tomogram) from err
        log.info("%s: probability map in %.1f s", tomogram, time.perf_counter() - start)
        data = tomo.data
        if invert:  # post-processing looks for dark membranes
            data = negated(tomo.data, memory_limit_bytes=WORK_MEMORY_BYTES)
        try:
            vesicles = segment_vesicles(
                probability,  # memory maps stay memory maps: read a slab or a box at a time
                data,
                tomo.voxel_size_nm,
                **(postprocess_options or {}),
            )
        except DataError as err:
            raise err.in_file(tomogram) from err
        log.info(
            "%s: %d vesicles kept, %d dropped, after %.1f s",
            tomogram,
            len(vesicles.kept),
            len(vesicles.table) - len(vesicles.kept),
            time.perf_counter() - start,
        )
        if check:
            started = time.perf_counter()
            report = domain.check_tomogram(
                tomo.data,
                tomo.voxel_size_nm,
                model,
                vesicles=vesicles.table,
                invert=invert,
                name=tomogram,
                match_spectrum=matched,
                device=(predictor_options or {}).get("device", "auto"),
            )
            stack.enter_context(atomic_output(paths["check"])).write_text(report.to_json())
            log.info("%s: %s in %.1f s", tomogram, report.summary(), time.perf_counter() - started)
        write_outputs(
            vesicles,
            outdir,
            tomogram_stem(tomogram),
            tomo.voxel_size_nm,
            origin_angstrom=tomo.origin_angstrom,
            **masks,
        )
    return paths
