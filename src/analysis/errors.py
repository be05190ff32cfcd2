"""The one exception type for bad input, shared by every module and the CLI."""

from __future__ import annotations

import os


class InputFileError(ValueError):
    """A file (or folder) cannot be used as given.

    The message is one line, ``"<path>: <problem>"``, so that the command line can print it as
    it is and a user knows which file to fix and what is wrong with it.

    Parameters
    ----------
    path : str or os.PathLike
        The file or folder at fault.
    problem : str
        What is wrong, and where possible what to do about it.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
