"""Each notebook's execution time in a book build, for the "Time to run" statements.

``make book`` executes every notebook (myst-nb, ``execute_notebooks: force``) and keeps each
one's run time in the Sphinx environment. This script reads them from a finished build and
writes ``book/notebook_times.csv`` (notebook, seconds, commit, mode, machine), which
tests/test_book.py holds every notebook's "Time to run" statement to (within 2×).

Run after a full build from a fresh clone on the machine the statements are about:
    make book && .venv/bin/python benchmarks/book_times.py _build --machine "2 CPU cores, no GPU"
(the book's own "Build report" page shows the same figures for the build it belongs to).
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
from pathlib import Path

import pandas as pd

from analysis.io.atomic import atomic_output

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "book" / "notebook_times.csv"


def read_times(build_dir: Path) -> pd.DataFrame:
    """(notebook, seconds) of every executed notebook of the build in ``build_dir``."""
    pickled = build_dir / ".doctrees" / "environment.pickle"
    if not pickled.exists():
        raise SystemExit(f"{pickled}: no Sphinx environment; build the book first (make book)")
    with open(pickled, "rb") as handle:
        env = pickle.load(handle)  # the build's own file, written by Sphinx
    rows = [
        {"notebook": Path(doc).name, "seconds": round(data["exec_data"]["runtime"], 1)}
        for doc, data in sorted(getattr(env, "nb_metadata", {}).items())
        if data.get("exec_data") and data["exec_data"].get("runtime") is not None
    ]
    if not rows:
        raise SystemExit(f"{pickled}: the build executed no notebook")
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path, help="the book's _build folder")
    parser.add_argument("--machine", default="2 CPU cores, no GPU")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    times = read_times(args.build)
    # the commit that was built: the clone that holds the _build folder, not this checkout
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=args.build.resolve().parent,
        capture_output=True,
        text=True,
    ).stdout.strip()
    times["commit"] = commit
    times["mode"] = "quick" if os.environ.get("ANALYSIS_QUICK") == "1" else "full"
    times["machine"] = args.machine
    with atomic_output(args.out) as tmp:
        times.to_csv(tmp, index=False)
    print(times.to_string(index=False))


if __name__ == "__main__":
    main()
