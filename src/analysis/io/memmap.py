"""Memory-mapped arrays for volumes larger than memory.

A memory-mapped tomogram counts towards the resident memory of the process for every page
that has been touched, until the mapping is closed. Streaming code calls
:func:`release_pages` after each slab so that resident memory stays bounded by the slab, not
by the file: the operating system keeps the data in its page cache (and writes dirty pages
back), the process just stops holding them.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def release_pages(array) -> None:
    """Let the OS drop resident pages of a memory-mapped array (no-op for other arrays).

    Data are not lost: dirty pages of a writable mapping are written to the file first (so
    the release also bounds the unwritten data the kernel holds), clean pages are re-read
    when needed. Works on Linux and macOS; elsewhere it does nothing.
    """
    handle = getattr(array, "_mmap", None)
    if not isinstance(array, np.memmap) or handle is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    if array.mode != "r":
        # Write dirty pages now: left to the kernel, a fast writer can fill a memory-limited
        # container (cgroup v1 does not throttle writeback per group) and be killed.
        handle.flush()
    with contextlib.suppress(OSError, ValueError):
        handle.madvise(mmap.MADV_DONTNEED)


def slabs(array, planes: int = 16) -> Iterator[np.ndarray]:
    """Yield ``array[k : k + planes]`` along z, releasing memory-mapped pages after each."""
    for k in range(0, array.shape[0], planes):
        yield array[k : k + planes]
        release_pages(array)


def map_slabs(fn, out: np.ndarray, *inputs, planes: int = 16) -> np.ndarray:
    """``out[k : k + planes] = fn(*(x[k : k + planes] for x in inputs))`` for every slab.

    For per-voxel work on volumes that may be memory maps larger than memory: the pages of
    ``out`` and of the inputs are released after each slab. An input may be ``None``
    (passed on as ``None``); ``out`` may be one of the inputs. Returns ``out``.
    """
    for k in range(0, out.shape[0], planes):
        sl = slice(k, k + planes)
        out[sl] = fn(*(None if x is None else x[sl] for x in inputs))
        for array in (out, *inputs):
            release_pages(array)
    return out


def work_array(
    shape: tuple[int, ...],
    dtype=np.float32,
    *,
    memory_limit_bytes: int,
    folder: str | os.PathLike | None = None,
) -> np.ndarray:
    """A zero-filled work array: in memory when small, else on disk as a memory map.

    The file of a large array is created in ``folder`` (the system's temporary folder by
    default) and unlinked at once: the data live as long as the array does, and nothing is
    left behind after a crash. Pass the array to :func:`release_pages` after each slab of
    work, so that the process does not keep its pages resident.

    Parameters
    ----------
    shape : tuple of int
    dtype : numpy dtype
    memory_limit_bytes : int
        Arrays larger than this go to disk.
    folder : path, optional
    """
    dtype = np.dtype(dtype)
    if int(np.prod(shape)) * dtype.itemsize <= memory_limit_bytes:
        return np.zeros(shape, dtype)
    handle, name = tempfile.mkstemp(prefix="sv-analysis-", suffix=".work", dir=folder)
    try:
        array = np.memmap(name, dtype, "w+", shape=tuple(shape))  # a new file reads as zeros
    finally:
        os.close(handle)
        with contextlib.suppress(OSError):  # Windows cannot unlink an open file; it stays
            Path(name).unlink()
    return array


def negated(volume, *, memory_limit_bytes: int, folder: str | os.PathLike | None = None):
    """``-volume`` as float32, slab by slab into a :func:`work_array` (on disk when larger
    than ``memory_limit_bytes``): the contrast of a tomogram inverted without reading it
    into memory at once. ``volume`` is (z, y, x), possibly a memory map."""
    out = work_array(volume.shape, np.float32, memory_limit_bytes=memory_limit_bytes, folder=folder)
    return map_slabs(np.negative, out, volume)
