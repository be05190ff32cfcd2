"""A tomogram larger than the memory the process may use still segments.

The cached full-size synthetic tomogram of ``end_to_end.py`` (261 × 1024 × 1024 at 1.469 nm,
1 GiB) is tiled 2 × 2 in y and x into a 261 × 2048 × 2048 tomogram (4 GiB, about 4000
vesicles). ``analysis segment`` then runs on it in a Linux memory cgroup limited to 3 GiB —
the kernel's hard limit, page cache included, as a cluster's job scheduler sets it — and the
script reports wall time, exit status, the cgroup's peak usage and failure count, the
process's peak resident memory and the number of vesicles found.

Setting the limit needs a writable cgroup v1 memory controller (root in a container) or
cgroup v2 with ``systemd-run``; where neither is available the run is made without a limit
and says so.

Run:  .venv/bin/python benchmarks/larger_than_memory.py [--limit-gib 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CGROUP_V1 = Path("/sys/fs/cgroup/memory")


def make_mosaic(source: Path, target: Path, reps: tuple[int, int] = (2, 2)) -> None:
    """Tile ``source`` ``reps`` times in y and x into ``target``, a slab at a time."""
    from analysis.io import open_mrc_output, read_tomogram
    from analysis.io.memmap import release_pages

    tomo = read_tomogram(source, mmap=True)
    nz, ny, nx = tomo.shape
    shape = (nz, ny * reps[0], nx * reps[1])
    with open_mrc_output(target, shape, tomo.voxel_size_nm) as out:
        for k in range(0, nz, 8):
            out[k : k + 8] = np.tile(tomo.data[k : k + 8], (1, *reps))
            release_pages(out)
            release_pages(tomo.data)


def limited_command(argv: list[str], limit_bytes: int):
    """(command, cgroup folder or None, how the limit is set) for running ``argv`` limited."""
    if (CGROUP_V1 / "memory.limit_in_bytes").exists() and os.access(CGROUP_V1, os.W_OK):
        group = CGROUP_V1 / f"sv-analysis-{os.getpid()}"
        group.mkdir(exist_ok=True)
        (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
        swap = group / "memory.memsw.limit_in_bytes"
        if swap.exists():
            swap.write_text(str(limit_bytes))  # no escape into swap
        # the shell moves itself into the group, then becomes the command
        shell = f"echo $$ > {group}/cgroup.procs && exec " + " ".join(argv)
        return ["sh", "-c", shell], group, "cgroup v1 memory.limit_in_bytes"
    if shutil.which("systemd-run"):
        prefix = ["systemd-run", "--user", "--scope", "-p", f"MemoryMax={limit_bytes}"]
        return prefix + argv, None, "systemd-run MemoryMax"
    return argv, None, "none (no cgroup available: run without a limit)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-gib", type=float, default=3.0)
    args = parser.parse_args()
    cache = ROOT / "data" / "cache"
    source = cache / "e2e_261x1024x1024_1.469nm.mrc"
    if not source.exists():
        raise SystemExit(f"{source} is missing: run benchmarks/end_to_end.py first")
    big = cache / "big_261x2048x2048_1.469nm.mrc"
    if not big.exists():
        start = time.perf_counter()
        make_mosaic(source, big)
        print(f"made {big.name} in {time.perf_counter() - start:.0f} s")
    outdir = cache / "big_out"
    shutil.rmtree(outdir, ignore_errors=True)
    outdir.mkdir()
    limit = int(args.limit_gib * 1024**3)
    analysis = str(Path(sys.executable).with_name("analysis"))
    argv = [analysis, "segment", str(big), "--out", str(outdir), "--quiet"]
    command, group, how = limited_command(argv, limit)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    size_gib = big.stat().st_size / 1024**3
    print(f"tomogram {big.name}: {size_gib:.2f} GiB; memory limit {args.limit_gib:g} GiB ({how})")
    print(f"exit status {result.returncode} after {elapsed:.0f} s; peak RSS {peak_rss:.0f} MiB")
    if group is not None:
        usage = int((group / "memory.max_usage_in_bytes").read_text()) / 1024**2
        fails = int((group / "memory.failcnt").read_text())
        print(f"cgroup peak usage {usage:.0f} MiB (page cache included), limit hits {fails}")
        group.rmdir()
    if result.returncode:
        print(result.stderr[-3000:])
        raise SystemExit(1)
    import pandas as pd

    from analysis.pipeline import output_paths

    table = pd.read_csv(output_paths(big, outdir)["vesicles"])
    print(
        f"{int(table['kept'].sum())} vesicles kept; outputs: {sorted(p.name for p in outdir.iterdir())}"
    )


if __name__ == "__main__":
    main()
