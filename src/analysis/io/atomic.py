"""Write files atomically: a reader sees the old file or the complete new one, never a half."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from analysis.errors import InputFileError


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
