"""Many tomograms at once: ``analysis segment`` for every tomogram of a folder, on Dask.

Each tomogram is one task running :func:`analysis.pipeline.segment_file` on a Dask worker:
a :class:`~distributed.LocalCluster` on this machine by default, a SLURM cluster through
``dask-jobqueue``, or any running scheduler given by its address. The batch

- **resumes**: a tomogram whose outputs are all present is skipped (outputs appear only when
  complete, so present means finished); ``force=True`` redoes everything;
- **keeps going**: a tomogram that fails is reported with its one-line error and the others
  go on; a task whose worker dies is retried elsewhere (``retries``);
- **reports**: a summary table (``batch_summary.csv`` in the output folder), one row per
  tomogram with ``status`` ``done`` / ``skipped`` / ``failed``, the error, seconds and the
  number of vesicles kept.

:func:`run_study` does the same for the tomograms of a study table (``analysis compare``):
segment + active-zone analysis per tomogram, resumable the same way.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis.errors import AnalysisError, InputFileError, ParameterError
from analysis.io import TOMOGRAM_SUFFIXES, atomic_output, tomogram_stem
from analysis.pipeline import output_paths
from analysis.postprocess import OUTPUT_SUFFIXES

log = logging.getLogger(__name__)

SUMMARY_NAME = "batch_summary.csv"
STUDY_SUMMARY_NAME = "study_summary.csv"
SUMMARY_COLUMNS = ["tomogram", "status", "n_vesicles", "seconds", "error"]


def find_tomograms(folder: str | os.PathLike) -> list[Path]:
    """Tomograms in ``folder`` (not recursive), sorted by name.

    Files that are outputs of this package (``*_labels.mrc``, ``*_probability.mrc``, …) and
    hidden files are left out, so an input folder may double as the output folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(folder, "input folder does not exist")
    ours = tuple(s for s in OUTPUT_SUFFIXES.values() if s.endswith(".mrc"))
    return sorted(
        p
        for p in folder.iterdir()
        if p.name.lower().endswith(TOMOGRAM_SUFFIXES)
        and not p.name.startswith(".")
        and not p.name.endswith(ours)
    )


def is_finished(tomogram: str | os.PathLike, outdir: str | os.PathLike, *, probability=True):
    """Whether every output of ``tomogram`` is already in ``outdir``."""
    paths = output_paths(tomogram, outdir)
    if not probability:
        paths.pop("probability")
    return all(p.exists() for p in paths.values())


@dataclass
class ClusterSpec:
    """Where the tasks run.

    Attributes
    ----------
    scheduler : str
        ``"local"`` (a LocalCluster here), ``"slurm"`` (dask-jobqueue), or the address of a
        running scheduler (``tcp://host:8786``).
    workers : int
        Local worker processes, or SLURM jobs.
    threads_per_worker : int
        Threads of each worker (torch uses them for the network).
    queue, account, cores, memory, walltime, gpus, job_extra : SLURM options
        Partition, account, cores and memory per job (e.g. ``"16GB"``), walltime
        (``"02:00:00"``), GPUs per job (adds ``--gres=gpu:N``) and any other ``#SBATCH`` lines.
    """

    scheduler: str = "local"
    workers: int = 2
    threads_per_worker: int = 1
    queue: str | None = None
    account: str | None = None
    cores: int = 4
    memory: str = "16GB"
    walltime: str = "01:00:00"
    gpus: int = 0
    job_extra: list[str] = field(default_factory=list)


class _DaskRecords(logging.Filter):
    """Drops the records of Dask and the libraries under it (Tornado, asyncio)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(("distributed", "tornado", "asyncio"))


def silence_dask_logs() -> None:
    """Keep Dask's own log records off this process's log handlers (the CLI's stderr).

    Dask's loggers carry their own level (INFO) and propagate to the root logger's handlers,
    whatever the root's level; and a background thread can log a traceback of a connection
    closed at shutdown after the cluster has gone. ``LocalCluster(silence_logs=...)`` only
    quietens Dask's own handlers while the cluster starts. A filter on the handlers holds
    for as long as they do (the CLI configures logging anew on each call).
    """
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _DaskRecords) for f in handler.filters):
            handler.addFilter(_DaskRecords())


def connect(spec: ClusterSpec):
    """A :class:`distributed.Client` for ``spec`` (close it when done)."""
    from distributed import Client, LocalCluster

    if spec.scheduler == "local":
        cluster = LocalCluster(
            n_workers=spec.workers,
            threads_per_worker=spec.threads_per_worker,
            processes=True,
            dashboard_address=None,
            # Dask's own messages would bury the batch's one line per failure; this quietens
            # the workers' (separate processes); silence_dask_logs does this process's.
            silence_logs=logging.INFO if log.isEnabledFor(logging.INFO) else logging.CRITICAL,
        )
        return Client(cluster)
    if spec.scheduler == "slurm":
        cluster = slurm_cluster(spec)
        cluster.scale(jobs=spec.workers)
        return Client(cluster)
    return Client(spec.scheduler)


def slurm_cluster(spec: ClusterSpec):
    """A dask-jobqueue ``SLURMCluster`` for ``spec``, not yet scaled (no job submitted).

    One Dask worker per SLURM job, with all the job's cores as threads (the network uses
    them); ``cluster.job_script()`` shows the batch script it will submit.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:  # the package's `cluster` extra, not one of its own dependencies
        raise ParameterError(
            "--scheduler slurm needs dask-jobqueue: pip install 'sv-analysis[cluster]'"
        ) from None

    extra = list(spec.job_extra)
    if spec.gpus:
        extra.append(f"--gres=gpu:{spec.gpus}")
    return SLURMCluster(
        queue=spec.queue,
        account=spec.account,
        cores=spec.cores,
        processes=1,
        memory=spec.memory,
        walltime=spec.walltime,
        job_extra_directives=extra,
    )


def _segment_task(tomogram: str, outdir: str, options: dict, threads: int) -> dict:
    """Run on a worker: segment one tomogram; never raises for bad input."""
    import torch

    from analysis.pipeline import segment_file

    torch.set_num_threads(max(threads, 1))
    start = time.perf_counter()
    try:
        paths = segment_file(tomogram, outdir, **options)
    except AnalysisError as err:  # bad input and refused values: reported, not retried
        return {"status": "failed", "error": str(err), "seconds": time.perf_counter() - start}
    table = pd.read_csv(paths["vesicles"], usecols=["kept"])
    return {
        "status": "done",
        "n_vesicles": int(table["kept"].sum()),
        "seconds": time.perf_counter() - start,
        "error": "",
    }


def run_batch(
    tomograms: list[str | os.PathLike],
    outdir: str | os.PathLike,
    *,
    client=None,
    spec: ClusterSpec | None = None,
    options: dict | None = None,
    force: bool = False,
    retries: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Segment ``tomograms`` into ``outdir`` on a Dask cluster; returns the summary table.

    Parameters
    ----------
    tomograms : list of path
    outdir : path
        Created if missing; ``batch_summary.csv`` is written there too.
    client : distributed.Client, optional
        Use this client; otherwise one is made from ``spec`` and closed at the end.
    spec : ClusterSpec, optional
        Default: a LocalCluster of two single-threaded workers.
    options : dict, optional
        Keyword arguments of :func:`analysis.pipeline.segment_file` (model, voxel size,
        ``predict_options``, ``postprocess_options``, …).
    force : bool
        Redo tomograms whose outputs exist.
    retries : int
        Times a task is resubmitted when its worker dies.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    options = dict(options or {})
    spec = spec or ClusterSpec()
    rows, todo = [], []
    with_probability = options.get("write_probability", True)
    for tomogram in map(Path, tomograms):
        if not force and is_finished(tomogram, outdir, probability=with_probability):
            rows.append({"tomogram": str(tomogram), "status": "skipped", "error": ""})
            log.info("%s: outputs present, skipped", tomogram)
        else:
            todo.append(tomogram)
    if todo:  # nothing left to do needs no cluster (and as_completed would want one)
        rows += _run_on_cluster(todo, outdir, client, spec, options, retries, progress)
    return _write_summary(rows, outdir / SUMMARY_NAME)


def _write_summary(rows: list[dict], path: Path) -> pd.DataFrame:
    """The summary table of a batch, by tomogram, written to ``path``."""
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary = summary.sort_values("tomogram", kind="stable").reset_index(drop=True)
    with atomic_output(path) as tmp:
        summary.to_csv(tmp, index=False)
    return summary


def _progress(iterable, total: int, show: bool):
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="tomograms", unit="tomogram")


def _run_on_cluster(
    todo, outdir, client, spec, options, retries, progress, task=_segment_task
) -> list[dict]:
    """Run ``task(item, outdir, options, threads)`` for each item of ``todo`` (a tomogram, or
    a dict with its ``tomogram``); one summary row per item."""
    from distributed import as_completed

    rows = []
    own = client is None
    if own:
        client = connect(spec)
    try:
        futures = {
            client.submit(
                task,
                item if isinstance(item, dict) else str(item),
                str(outdir),
                options,
                spec.threads_per_worker,
                key=f"{task.__name__.strip('_')}-{_tomogram(item).name}-{time.time_ns()}",
                retries=retries,
                pure=False,
            ): _tomogram(item)
            for item in todo
        }
        for future in _progress(as_completed(futures), len(futures), progress):
            tomogram = futures[future]
            try:
                result = future.result()
            except Exception as err:  # the task died (worker killed, out of memory, …)
                result = {"status": "failed", "error": f"{tomogram}: {type(err).__name__}: {err}"}
            rows.append({"tomogram": str(tomogram), **result})
            log.info("%s: %s %s", tomogram, result["status"], result.get("error", ""))
    finally:
        if own:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    return rows


def _tomogram(item) -> Path:
    return Path(item["tomogram"] if isinstance(item, dict) else item)


def study_finished(tomogram: str | os.PathLike, outdir: str | os.PathLike) -> bool:
    """Whether the active-zone tables of ``tomogram`` are already in ``outdir``."""
    from analysis.active_zone import AZ_OUTPUT_SUFFIXES

    stem = tomogram_stem(tomogram)
    return all((Path(outdir) / f"{stem}{s}").exists() for s in AZ_OUTPUT_SUFFIXES.values())


def study_outputs(tomogram: str | os.PathLike, outdir: str | os.PathLike) -> list[Path]:
    """Every file :func:`run_study` may write for ``tomogram`` in ``outdir``."""
    from analysis.active_zone import AZ_OUTPUT_SUFFIXES

    stem = tomogram_stem(tomogram)
    return [
        *output_paths(tomogram, outdir).values(),
        *(Path(outdir) / f"{stem}{s}" for s in AZ_OUTPUT_SUFFIXES.values()),
    ]


def check_study_outputs(items: list[dict], outdir: str | os.PathLike) -> None:
    """Refuse an output folder where a study's outputs would overwrite one of its inputs
    (e.g. ``NAME_labels.mrc`` of a synthetic synapse), before any work starts."""
    roles = ("tomogram", "az_mask", "region_mask", "labels")
    inputs = {Path(item[r]).resolve() for item in items for r in roles if item.get(r)}
    for item in items:
        for path in study_outputs(item["tomogram"], outdir):
            if path.resolve() in inputs:
                raise InputFileError(
                    path, "is an input of the study and would be overwritten: choose another --out"
                )


def _study_task(item: dict, outdir: str, options: dict, threads: int) -> dict:
    """Run on a worker: segment one tomogram of a study (unless it comes with labels), then
    analyse its active zone; never raises for bad input."""
    import torch

    from analysis.active_zone import analyse_files
    from analysis.pipeline import segment_file

    torch.set_num_threads(max(threads, 1))
    start = time.perf_counter()
    tomogram, voxel_size_nm = item["tomogram"], item.get("voxel_size_nm")
    try:
        labels, table = item.get("labels"), None
        if not labels:
            segmented = output_paths(tomogram, outdir)
            segmented.pop("probability")
            if not all(p.exists() for p in segmented.values()):
                segment_file(
                    tomogram,
                    outdir,
                    voxel_size_nm=voxel_size_nm,
                    write_probability=False,
                    **options.get("segment", {}),
                )
            labels, table = segmented["labels"], segmented["vesicles"]
        paths = analyse_files(
            tomogram,
            labels,
            item["az_mask"],
            item["region_mask"],
            outdir,
            vesicles=table,
            voxel_size_nm=voxel_size_nm,
            **options.get("active_zone", {}),
        )
    except AnalysisError as err:  # bad input and refused values: reported, not retried
        return {"status": "failed", "error": str(err), "seconds": time.perf_counter() - start}
    return {
        "status": "done",
        "n_vesicles": len(pd.read_csv(paths["vesicles"], usecols=["vesicle_id"])),
        "seconds": time.perf_counter() - start,
        "error": "",
    }


def run_study(
    items: list[dict],
    outdir: str | os.PathLike,
    *,
    client=None,
    spec: ClusterSpec | None = None,
    options: dict | None = None,
    force: bool = False,
    retries: int = 1,
    progress: bool = True,
) -> pd.DataFrame:
    """Segment and analyse the active zone of every tomogram of a study on a Dask cluster.

    Parameters
    ----------
    items : list of dict
        Per tomogram: ``tomogram``, ``az_mask``, ``region_mask``, and optionally ``labels``
        (use these vesicles instead of segmenting) and ``voxel_size_nm`` (the rows of
        :func:`analysis.stats.read_study`).
    outdir : path
        Created if missing; gets each tomogram's ``segment`` and ``active-zone`` files and
        ``study_summary.csv`` (:data:`SUMMARY_COLUMNS`).
    options : dict, optional
        ``{"segment": {...}, "active_zone": {...}}``: keyword arguments of
        :func:`analysis.pipeline.segment_file` and :func:`analysis.active_zone.analyse_files`.
    client, spec, force, retries, progress
        As for :func:`run_batch`. A tomogram whose active-zone tables are present is skipped
        (and one whose segmentation is present is not segmented again).
    """
    check_study_outputs(items, outdir)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    spec = spec or ClusterSpec()
    rows, todo = [], []
    for item in items:
        if not force and study_finished(item["tomogram"], outdir):
            rows.append({"tomogram": str(item["tomogram"]), "status": "skipped", "error": ""})
        else:
            todo.append(dict(item))
    if todo:
        rows += _run_on_cluster(
            todo, outdir, client, spec, dict(options or {}), retries, progress, _study_task
        )
    return _write_summary(rows, outdir / STUDY_SUMMARY_NAME)
