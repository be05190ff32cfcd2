"""The exceptions of the package: what the user can fix, apart from what is a bug.

Every error a user can fix derives from :class:`AnalysisError`; the command line prints those
as one line (``error: …``, exit code 2) and anything else as an internal error (a bug, exit
code 1). Library code raises

- :class:`InputFileError` when a file (or folder) cannot be used as given: it names the file;
- :class:`ParameterError` when an option value is refused (``tta="sideways"``);
- :class:`DataError` when the values of an array cannot be analysed (a constant volume, a map
  with nothing to segment). Functions over arrays do not know the file the array came from,
  so the function that read the file re-raises it as an :class:`InputFileError` naming it.

All three are also :class:`ValueError` subclasses, as the package raised ``ValueError`` for
them before they existed. numpy's and torch's own errors are never re-wrapped as bad input:
a ``LinAlgError`` from a fit is a bug in the fit, not a problem with the tomogram.
"""

from __future__ import annotations

import os


class AnalysisError(Exception):
    """An error the user can fix: bad input, not a bug. Its message is one line."""


class InputFileError(AnalysisError, ValueError):
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


class ParameterError(AnalysisError, ValueError):
    """An option or argument value is refused: the message says which, and what is allowed."""


class DataError(AnalysisError, ValueError):
    """The values of an array cannot be analysed (e.g. a constant volume, an empty map).

    Raised by functions over arrays, which do not know where the array came from; a function
    that read it from a file re-raises it with :meth:`in_file`, naming the file.
    """

    def in_file(self, path: str | os.PathLike) -> InputFileError:
        """This problem as an :class:`InputFileError` of the file the data came from."""
        return InputFileError(path, str(self))
