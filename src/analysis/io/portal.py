"""Real tomograms from the CZ CryoET Data Portal: one run's tomogram and its annotations.

Fetching a run goes in three steps, so that all but the network calls can be tested offline:

1. :func:`run_metadata` asks the portal (through the ``cryoet-data-portal`` client, the
   ``[portal]`` extra) for the run, its tomograms and its annotations, with the filters
   :func:`run_queries` builds, and returns them as plain dicts (the client's data model, as
   JSON);
2. :func:`select_files` chooses from that metadata the tomogram at the voxel spacing asked for
   and the vesicle and membrane annotations drawn on it (pure: no network);
3. :func:`download` fetches each file over HTTPS, resumably: a complete file is skipped, a
   partial one (``.NAME.part``) continued with an HTTP range request, and renamed into place
   only when its size is the one the portal lists. A tomogram in OME-Zarr is a folder of many
   files: :func:`download_store` lists them (with their sizes) in the portal's S3 bucket and
   fetches each so into ``.NAME.zarr.part``, renamed to ``NAME.zarr`` only when all are there
   (zarr would read a missing chunk as zeros, without a word).

:func:`fetch_run` does all three. Without internet the error says where to download by hand.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis.errors import InputFileError, ParameterError

#: The portal's web site; a run's page is ``{PORTAL_URL}/runs/{run_id}``.
PORTAL_URL = "https://cryoetdataportal.czscience.com"
#: Annotation objects fetched with a run: those whose name contains one of these words.
ANNOTATION_WORDS = ("vesicle", "membrane")
#: Annotation file formats that this package reads, best first: label or mask volumes (MRC),
#: then points (newline-delimited JSON). OME-Zarr annotations are folders and are not fetched.
ANNOTATION_FORMATS = ("mrc", "ndjson")
#: Two voxel spacings closer than this (relative) are the same spacing.
SPACING_TOLERANCE = 0.01
#: Bytes read from the network at a time.
CHUNK_BYTES = 1 << 20
#: Formats in which a run's tomogram can be fetched: one MRC file, or its multiscale OME-Zarr
#: store (a folder; full resolution and the binned levels, voxel size in the OME metadata).
TOMOGRAM_FORMATS = ("mrc", "zarr")


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch.

    Attributes
    ----------
    url : str
        HTTPS address.
    name : str
        File name in the output folder.
    size_bytes : int or None
        Size the portal lists (checked after the download), None when it lists none.
    role : str
        ``"tomogram"`` or ``"annotation"``.
    description : str
        One line for the user: what the file holds.
    listing_url : str or None
        For a folder (an OME-Zarr store): its S3 address, where its files are listed; ``url``
        is then the folder's HTTPS address and ``size_bytes`` the size of all its files.
    """

    url: str
    name: str
    size_bytes: int | None
    role: str
    description: str
    listing_url: str | None = None


def manual_download_hint(run_id: int) -> str:
    """Where to get a run by hand, for the errors of this module."""
    return (
        f"without internet, download the run by hand from {PORTAL_URL}/runs/{run_id} "
        "(Download: the tomogram as MRC and its annotations) on another machine and copy the "
        "files here"
    )


def _portal_error(run_id: int, problem: str) -> InputFileError:
    return InputFileError(f"portal run {run_id}", problem)


def run_queries(run_id: int) -> dict[str, list]:
    """The portal queries for one run: the client's model class name → its filters.

    Parameters
    ----------
    run_id : int
        The run's numeric id (as in the portal's address ``/runs/ID``).

    Returns
    -------
    dict of str to list
        Filters (``cryoet_data_portal`` expressions) for ``Run``, ``Tomogram``,
        ``Annotation``, ``AnnotationShape`` and ``AnnotationFile``. Four queries fetch the run's
        whole annotation tree, instead of one per file.
    """
    cdp = _client_module(run_id)
    run_id = int(run_id)
    return {
        "Run": [cdp.Run.id == run_id],
        "Tomogram": [cdp.Tomogram.run_id == run_id],
        "Annotation": [cdp.Annotation.run_id == run_id],
        "AnnotationShape": [cdp.AnnotationShape.annotation.run_id == run_id],
        "AnnotationFile": [cdp.AnnotationFile.annotation_shape.annotation.run_id == run_id],
    }


def deposition_runs(deposition_id: int, *, client=None) -> list[int]:
    """Ids of the runs that hold tomograms or annotations of a deposition (e.g. 10330 for
    CZCDP-10330), in increasing order. Needs internet."""
    cdp = _client_module(deposition_id)
    client = client if client is not None else cdp.Client()
    ids: set[int] = set()
    for relation in (cdp.Run.tomograms, cdp.Run.annotations):
        runs = _ask(
            deposition_id,
            lambda r=relation: cdp.Run.find(client, [r.deposition_id == int(deposition_id)]),
        )
        ids |= {int(run.id) for run in runs}
    return sorted(ids)


def run_metadata(run_id: int, *, client=None) -> dict[str, list[dict]]:
    """The run, its tomograms and its annotation tree as plain dicts. Needs internet.

    Parameters
    ----------
    run_id : int
    client : cryoet_data_portal.Client, optional
        A client (or a stand-in with the same ``find``); a new one by default.

    Returns
    -------
    dict
        ``runs``, ``tomograms``, ``annotations``, ``annotation_shapes``, ``annotation_files``:
        lists of each record's fields, named as in the client's data model.

    Raises
    ------
    InputFileError
        Without internet (saying where to download by hand), or for a run that does not
        exist.
    """
    cdp = _client_module(run_id)
    client = client if client is not None else cdp.Client()
    keys = {
        "Run": "runs",
        "Tomogram": "tomograms",
        "Annotation": "annotations",
        "AnnotationShape": "annotation_shapes",
        "AnnotationFile": "annotation_files",
    }
    metadata = {}
    for model, filters in run_queries(run_id).items():
        found = _ask(run_id, lambda m=model, f=filters: getattr(cdp, m).find(client, f))
        # dates become ISO strings, so that the metadata can be saved as JSON
        metadata[keys[model]] = [json.loads(json.dumps(r.to_dict(), default=str)) for r in found]
    if not metadata["runs"]:
        raise _portal_error(run_id, f"no such run on the portal ({PORTAL_URL}/runs/{run_id})")
    return metadata


def _client_module(what):
    try:
        import cryoet_data_portal
    except ImportError:
        raise InputFileError(
            f"portal run {what}",
            "fetching from the portal needs its client: pip install 'sv-analysis[portal]' "
            "(or pip install cryoet-data-portal)",
        ) from None
    return cryoet_data_portal


def _ask(run_id: int, query: Callable, store: str | None = None):
    try:
        return query()
    except Exception as err:  # requests, urllib3, gql and botocore each raise their own types
        hint = manual_download_hint(run_id)
        if store:
            hint += f", or copy the store with: aws s3 cp --no-sign-request --recursive {store} DIR"
        raise _portal_error(
            run_id, f"the portal could not be reached ({type(err).__name__}: {err}); " + hint
        ) from None


def voxel_spacings_nm(metadata: dict) -> list[float]:
    """The voxel spacings (nm) at which the run has tomograms, increasing."""
    return sorted({round(t["voxel_spacing"] / 10.0, 6) for t in metadata["tomograms"]})


def select_files(
    metadata: dict,
    *,
    voxel_size_nm: float | None = None,
    annotations: bool = True,
    tomogram_format: str = "mrc",
) -> list[RemoteFile]:
    """Which files to fetch for a run: one tomogram and the annotations drawn on it.

    Parameters
    ----------
    metadata : dict
        From :func:`run_metadata` (or a saved copy of it).
    voxel_size_nm : float, optional
        The tomogram's voxel spacing. By default the portal's default tomogram for the run
        (``is_visualization_default``), else the coarsest spacing (the smallest file).
    annotations : bool
        Also the vesicle and membrane annotations (:data:`ANNOTATION_WORDS`) at that spacing.
    tomogram_format : {"mrc", "zarr"}
        The tomogram as one MRC file, or as its OME-Zarr store (a folder, ``listing_url`` set).

    Returns
    -------
    list of RemoteFile
        The tomogram first. Among tomograms at one spacing the portal's standard, not denoised
        one is preferred (the network was trained on tomograms as reconstructed). Per
        annotation, one file in the best format of :data:`ANNOTATION_FORMATS`.

    Raises
    ------
    InputFileError
        When the run has no tomogram in that format, or none at ``voxel_size_nm`` (the message
        lists the spacings it has).
    """
    run = metadata["runs"][0]
    run_id, run_name = int(run["id"]), str(run["name"])
    zarr = _checked_format(tomogram_format) == "zarr"
    keys = ("https_omezarr_dir", "s3_omezarr_dir") if zarr else ("https_mrc_file",)
    tomograms = [t for t in metadata["tomograms"] if all(t.get(k) for k in keys)]
    if not tomograms:
        what = "OME-Zarr" if zarr else "MRC"
        raise _portal_error(run_id, f"has no tomogram in {what} format on the portal")
    tomogram = _choose_tomogram(run_id, tomograms, voxel_size_nm, metadata)
    spacing_nm = tomogram["voxel_spacing"] / 10.0
    shape = f"{tomogram['size_z']}×{tomogram['size_y']}×{tomogram['size_x']}"
    how = f"{tomogram.get('reconstruction_method') or '?'}, {tomogram.get('processing') or '?'}"
    about = f"tomogram {tomogram['id']} of run {run_name} ({run_id}), {shape} voxels of "
    about = f"{about}{spacing_nm:.4g} nm, {how}"
    if zarr:
        size = _size(tomogram.get("file_size_omezarr"))
        name = f"{run_name}_{spacing_nm:.4g}nm.zarr"
        url, listing = tomogram["https_omezarr_dir"], tomogram["s3_omezarr_dir"]
        files = [RemoteFile(url, name, size, "tomogram", f"{about}, OME-Zarr", listing)]
    else:
        size = _size(tomogram.get("file_size_mrc"))
        name = f"{run_name}_{spacing_nm:.4g}nm.mrc"
        files = [RemoteFile(tomogram["https_mrc_file"], name, size, "tomogram", about)]
    if annotations:
        files += _annotation_files(metadata, tomogram, run_name)
    return files


def _checked_format(tomogram_format: str) -> str:
    if tomogram_format not in TOMOGRAM_FORMATS:
        raise ParameterError(
            f"tomogram format {tomogram_format!r}: choose one of {', '.join(TOMOGRAM_FORMATS)}"
        )
    return tomogram_format


def _size(value) -> int | None:
    return int(value) if value else None


def _choose_tomogram(run_id: int, tomograms: list[dict], voxel_size_nm, metadata) -> dict:
    if voxel_size_nm is not None:
        target = float(voxel_size_nm) * 10.0
        at = [
            t for t in tomograms if abs(t["voxel_spacing"] - target) <= SPACING_TOLERANCE * target
        ]
        if not at:
            have = ", ".join(f"{s:g}" for s in voxel_spacings_nm(metadata))
            raise _portal_error(
                run_id, f"has no tomogram at {voxel_size_nm:g} nm; it has {have} nm"
            )
        tomograms = at
    else:
        defaults = [t for t in tomograms if t.get("is_visualization_default")]
        coarsest = max(t["voxel_spacing"] for t in tomograms)
        tomograms = defaults or [t for t in tomograms if t["voxel_spacing"] == coarsest]

    def preference(t: dict) -> tuple:
        denoised = "denois" in str(t.get("processing", "")).lower()
        return (denoised, not t.get("is_portal_standard"), int(t["id"]))

    return min(tomograms, key=preference)


def _annotation_files(metadata: dict, tomogram: dict, run_name: str) -> list[RemoteFile]:
    annotations = {
        a["id"]: a
        for a in metadata["annotations"]
        if any(word in str(a.get("object_name", "")).lower() for word in ANNOTATION_WORDS)
    }
    shapes = {
        s["id"]: s for s in metadata["annotation_shapes"] if s["annotation_id"] in annotations
    }
    best: dict[int, dict] = {}
    for f in metadata["annotation_files"]:
        shape = shapes.get(f["annotation_shape_id"])
        if (
            shape is None
            or f.get("format") not in ANNOTATION_FORMATS
            or not f.get("https_path")
            # a mask drawn on another spacing does not fit the tomogram's grid
            or f.get("tomogram_voxel_spacing_id") != tomogram.get("tomogram_voxel_spacing_id")
        ):
            continue
        key = shape["annotation_id"]
        rank = ANNOTATION_FORMATS.index(f["format"])
        if key not in best or rank < ANNOTATION_FORMATS.index(best[key]["format"]):
            best[key] = {**f, "shape_type": shape.get("shape_type")}
    files = []
    for annotation_id, f in sorted(best.items()):
        a = annotations[annotation_id]
        truth = ", ground truth" if a.get("ground_truth_status") else ""
        kind = f"{f.get('shape_type')}, {f['format']}, {a.get('method_type') or '?'}{truth}"
        about = f"annotation {annotation_id}: {a.get('object_name')} ({kind})"
        name = f"{run_name}_{Path(f['https_path']).name}"
        size = _size(f.get("file_size"))
        files.append(RemoteFile(f["https_path"], name, size, "annotation", about))
    return files


OpenUrl = Callable[[str, int], tuple[Iterable[bytes], int | None, bool]]


def open_https(url: str, start: int, *, timeout_s: float = 60.0):
    """Open ``url`` from byte ``start`` on.

    Returns
    -------
    chunks : iterable of bytes
    total_bytes : int or None
        The whole file's size, from the response headers.
    resumed : bool
        True when the server sends the file from ``start`` on (HTTP 206), False when it sends
        it from the beginning.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "sv-analysis"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    response = urllib.request.urlopen(request, timeout=timeout_s)
    resumed = response.status == 206
    total = None
    if resumed and "/" in response.headers.get("Content-Range", ""):
        total = int(response.headers["Content-Range"].rsplit("/", 1)[1])
    elif response.headers.get("Content-Length"):
        total = int(response.headers["Content-Length"]) + (start if resumed else 0)

    def chunks():
        with response:
            while block := response.read(CHUNK_BYTES):
                yield block

    return chunks(), total, resumed


def download(
    remote: RemoteFile,
    folder: str | os.PathLike,
    *,
    run_id: int,
    progress: bool = True,
    open_url: OpenUrl | None = None,
) -> Path:
    """Fetch one file into ``folder``, resumably.

    A file already there with the listed size is kept (nothing is fetched). Otherwise the
    bytes go to ``.NAME.part``; an earlier partial download is continued with a range
    request where the server allows it, and started again where it does not. The file is
    renamed to ``NAME`` only when complete, its size checked against the portal's listing (or
    the server's when the portal lists none).

    Parameters
    ----------
    remote : RemoteFile
    folder : path
        Must exist.
    run_id : int
        For the messages.
    progress : bool
        A tqdm progress bar.
    open_url : callable, optional
        ``open_url(url, start) -> (chunks, total_bytes, resumed)``; :func:`open_https` by
        default (tests pass a stand-in).

    Returns
    -------
    pathlib.Path
        The complete file.
    """
    from tqdm import tqdm

    folder = Path(folder)
    target = folder / remote.name
    if target.exists() and (
        remote.size_bytes is None or target.stat().st_size == remote.size_bytes
    ):
        return target
    # a name may hold folders (a file of an OME-Zarr store): the part file sits beside it
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.part")
    start = part.stat().st_size if part.exists() else 0
    if remote.size_bytes is not None and start > remote.size_bytes:
        start = 0  # not the same file: start again
    if remote.size_bytes is None or start < remote.size_bytes:
        try:
            chunks, total, resumed = (open_url or open_https)(remote.url, start)
            start = start if resumed else 0
            expected = remote.size_bytes or total
            with (
                open(part, "ab" if start else "wb") as out,
                tqdm(
                    total=expected,
                    initial=start,
                    unit="B",
                    unit_scale=True,
                    desc=remote.name,
                    disable=not progress,
                ) as bar,
            ):
                for block in chunks:
                    out.write(block)
                    bar.update(len(block))
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", None) or err
            raise _portal_error(
                run_id,
                f"{remote.url} could not be downloaded ({reason}); the part fetched is kept in "
                f"{part} and a new run continues it; " + manual_download_hint(run_id),
            ) from None
    else:
        expected = remote.size_bytes
    size = part.stat().st_size
    if expected is not None and size != expected:
        raise _portal_error(
            run_id,
            f"{remote.url} arrived with {size} bytes, {expected} expected; run the command "
            "again to continue it",
        )
    os.replace(part, target)
    return target


ListStore = Callable[[str], list[tuple[str, int]]]


def list_s3(s3_url: str) -> list[tuple[str, int]]:
    """The files under an S3 folder (``s3://bucket/prefix``) and their sizes, anonymously.

    Listing a folder needs S3's API (HTTPS serves files, not listings), as the portal's client
    does for its own ``download_omezarr``; ``boto3`` comes with the client.

    Returns
    -------
    list of (str, int)
        Each file's path relative to the folder, and its size in bytes.
    """
    from urllib.parse import urlparse

    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    parsed = urlparse(s3_url)
    prefix = parsed.path.lstrip("/").rstrip("/") + "/"
    s3 = boto3.client("s3", config=Config(signature_version=UNSIGNED))
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc, Prefix=prefix):
        for item in page.get("Contents", []):
            if not item["Key"].endswith("/"):  # folder markers
                files.append((item["Key"][len(prefix) :], int(item["Size"])))
    return files


def download_store(
    remote: RemoteFile,
    folder: str | os.PathLike,
    *,
    run_id: int,
    progress: bool = True,
    open_url: OpenUrl | None = None,
    list_store: ListStore | None = None,
) -> Path:
    """Fetch a folder (an OME-Zarr store) into ``folder / remote.name``, resumably.

    Its files are listed at ``remote.listing_url`` with their sizes and each is fetched by
    :func:`download` (complete files kept, partial ones continued, each size checked against
    the listing) into ``.NAME.part``, which is renamed to ``NAME`` only when every file is
    there: zarr reads a missing chunk as its fill value (zeros), so a half-fetched store must
    never look like a store.

    Parameters
    ----------
    remote : RemoteFile
        With ``listing_url`` (S3) and ``url`` (the same folder over HTTPS).
    folder : path
        Must exist.
    run_id : int
        For the messages.
    progress : bool
        One tqdm progress bar over the store's bytes.
    open_url : callable, optional
        As for :func:`download`.
    list_store : callable, optional
        ``list_store(s3_url) -> [(relative path, size in bytes), …]``; :func:`list_s3` by
        default (tests pass a stand-in).

    Returns
    -------
    pathlib.Path
        The complete store.
    """
    from tqdm import tqdm

    folder = Path(folder)
    target = folder / remote.name
    listing = _ask(run_id, lambda: (list_store or list_s3)(remote.listing_url), remote.listing_url)
    if not listing:
        raise _portal_error(run_id, f"the portal lists no files in {remote.listing_url}")
    for relative, _ in listing:
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            raise _portal_error(run_id, f"the listing of {remote.listing_url} names {relative}")
    if target.is_dir() and _complete(target, listing):
        return target
    staging = folder / f".{remote.name}.part"
    if target.is_dir() and not staging.exists():
        os.replace(target, staging)  # the portal's store changed since: complete it
    total = sum(size for _, size in listing)
    with tqdm(
        total=total, unit="B", unit_scale=True, desc=remote.name, disable=not progress
    ) as bar:
        for relative, size in listing:
            url = f"{remote.url.rstrip('/')}/{relative}"
            part = RemoteFile(url, relative, size, remote.role, remote.description)
            download(part, staging, run_id=run_id, progress=False, open_url=open_url)
            bar.update(size)
    os.replace(staging, target)
    return target


def _complete(store: Path, listing: list[tuple[str, int]]) -> bool:
    return all(
        (store / relative).is_file() and (store / relative).stat().st_size == size
        for relative, size in listing
    )


def fetch_run(
    run_id: int,
    out: str | os.PathLike,
    *,
    voxel_size_nm: float | None = None,
    annotations: bool = True,
    tomogram_format: str = "mrc",
    progress: bool = True,
    client=None,
    open_url: OpenUrl | None = None,
    list_store: ListStore | None = None,
) -> dict[str, list[Path] | Path]:
    """Fetch a run's tomogram (MRC or OME-Zarr) and its vesicle and membrane annotations into
    ``out``.

    Parameters
    ----------
    run_id : int
        The run's id (the portal's address ``/runs/ID``).
    out : path
        Output folder (created if missing). Running the same call again skips complete files
        and continues partial ones.
    voxel_size_nm : float, optional
        The tomogram's voxel spacing; see :func:`select_files`.
    annotations : bool
        Also fetch the annotations.
    tomogram_format : {"mrc", "zarr"}
        The tomogram as one MRC file (``NAME.mrc``) or as its OME-Zarr store (``NAME.zarr``,
        all resolution levels; :func:`analysis.io.read_tomogram` reads it with its voxel size).
    progress : bool
        Progress bars.
    client, open_url, list_store
        Stand-ins for the portal client, the HTTPS download and the S3 listing (for tests).

    Returns
    -------
    dict
        ``tomogram`` (path), ``annotations`` (list of paths) and ``metadata`` (the run's
        metadata as JSON, ``run_ID.json``, with what was chosen).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputFileError(out, "is a file; the output must be a folder")
    _checked_format(tomogram_format)  # before any network call
    metadata = run_metadata(run_id, client=client)
    files = select_files(
        metadata,
        voxel_size_nm=voxel_size_nm,
        annotations=annotations,
        tomogram_format=tomogram_format,
    )
    out.mkdir(parents=True, exist_ok=True)
    from analysis.io.atomic import atomic_output

    record = out / f"run_{int(run_id)}.json"
    with atomic_output(record) as tmp:
        chosen = [f.__dict__ for f in files]
        tmp.write_text(json.dumps({"chosen": chosen, "metadata": metadata}, indent=1))
    paths = [
        download_store(
            f, out, run_id=run_id, progress=progress, open_url=open_url, list_store=list_store
        )
        if f.listing_url
        else download(f, out, run_id=run_id, progress=progress, open_url=open_url)
        for f in files
    ]
    return {"tomogram": paths[0], "annotations": paths[1:], "metadata": record}


def vesicle_annotation(paths: Iterable[str | os.PathLike]) -> Path | None:
    """The first fetched annotation that is a volume (MRC) of vesicles, or None.

    Parameters
    ----------
    paths : iterable of path
        The ``annotations`` of :func:`fetch_run` (named after the portal's files, which name
        the annotated object).
    """
    for path in map(Path, paths):
        if path.suffix.lower() == ".mrc" and "vesicle" in path.name.lower():
            return path
    return None


def annotation_labels(path: str | os.PathLike, like) -> np.ndarray:
    """A portal segmentation (MRC) as one label per object, on the tomogram ``like``.

    Instance segmentations keep their ids; a binary mask (``SegmentationMask``) is split into
    connected components (26-connected), so vesicles that touch in the mask count as one.

    Parameters
    ----------
    path : path
        The annotation's MRC file.
    like : Tomogram
        The tomogram it was drawn on (shape checked).

    Returns
    -------
    numpy.ndarray of int32, shape (z, y, x)
    """
    import cc3d

    from analysis.io.tomogram import read_like

    volume = read_like(path, like, "annotation", check_finite=False).data
    ids = np.unique(volume)
    if len(ids) <= 2:
        return cc3d.connected_components(volume > 0, connectivity=26).astype(np.int32)
    return volume.astype(np.int32)
