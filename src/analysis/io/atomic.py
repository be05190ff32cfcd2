"""Write files atomically: a reader sees the old file or the complete new one, never a half."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from analysis.errors import InputFileError

#: File endings :func:`tomogram_stem` removes (longest first).
TOMOGRAM_SUFFIXES = (
    ".ome.zarr",
    ".ome.tiff",
    ".ome.tif",
    ".zarr",
    ".tiff",
    ".tif",
    ".mrc",
    ".rec",
    ".map",
    ".ali",
    ".st",
)


def tomogram_stem(path: str | os.PathLike) -> str:
    """The ``STEM`` of the output names for a tomogram file: its name without the file type
    (``tomo.rec`` and ``tomo.ome.zarr`` give ``tomo``; ``syn_1.469nm.mrc`` gives
    ``syn_1.469nm``, so that names differing after a dot stay different)."""
    name = Path(path).name
    for suffix in TOMOGRAM_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


@contextlib.contextmanager
def atomic_outputs(paths: dict) -> Iterator[dict]:
    """:func:`atomic_output` for several files at once: yield their temporary paths (same
    keys); all are renamed into place only when the block succeeds, none otherwise."""
    with contextlib.ExitStack() as stack:
        yield {key: stack.enter_context(atomic_output(path)) for key, path in paths.items()}


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file lives in the same folder so that the final ``os.replace`` is atomic on
    POSIX and Windows. If the block raises, the temporary file is removed and ``path`` is left
    as it was.

    Raises
    ------
    InputFileError
        If the output folder does not exist or cannot be written.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputFileError(path, f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputFileError(path, f"output folder {folder} is not writable")
    tmp = folder / f".{path.name}.tmp{os.getpid()}"
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise InputFileError(path, f"could not be written ({err.strerror or err})") from err
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
