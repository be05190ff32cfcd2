"""One way to turn a model argument into a network: :func:`load`.

A model is named the same way everywhere (Python, the command line's ``--model`` and
``--init-from``, the benchmarks): None for the network shipped with the package, a name of
:data:`SHIPPED_MODELS`, ``"cryovesnet"`` for the published CryoVesNet network (fetched and
converted on first use), the path of a checkpoint (``.pt``) or of a Keras file (``.h5``), or
a ``(network, checkpoint)`` pair already in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from analysis.errors import ParameterError
from analysis.models.checkpoint import network_of, read_checkpoint
from analysis.models.keras import KERAS_SUFFIXES, fetch_cryovesnet, keras_checkpoint

_WEIGHTS = Path(__file__).parent.parent / "weights"
#: The network trained by this package on the synthetic training set, shipped inside it.
SHIPPED_WEIGHTS = _WEIGHTS / "sv_unet3d.pt"
#: Its 2-D (slice-by-slice) twin, trained the same way, for the comparison of chapter 5.
SHIPPED_2D_WEIGHTS = _WEIGHTS / "sv_unet2d.pt"
#: Networks shipped with the package, by name; None names ``"shipped"``.
SHIPPED_MODELS = {"shipped": SHIPPED_WEIGHTS, "shipped-2d": SHIPPED_2D_WEIGHTS}
#: The name of CryoVesNet's published network (:func:`analysis.models.fetch_cryovesnet`).
CRYOVESNET = "cryovesnet"


def checkpoint_path(spec: str | os.PathLike | None = None) -> Path:
    """The checkpoint file a model name or path stands for.

    A file that exists is taken as it is named (a Keras file is converted once and cached);
    otherwise ``spec`` is a name of :data:`SHIPPED_MODELS` or ``"cryovesnet"``, which is
    downloaded on first use (:func:`analysis.models.fetch_cryovesnet`). This is the only place
    where naming a model can start a download.
    """
    if spec is None:
        return SHIPPED_WEIGHTS
    if not isinstance(spec, (str, os.PathLike)):
        raise ParameterError(
            "a model is None (the shipped network), a name "
            f"({', '.join([*SHIPPED_MODELS, CRYOVESNET])}), a checkpoint or Keras file, or a "
            f"(network, checkpoint) pair; not {type(spec).__name__}"
        )
    path = Path(spec)
    if not path.exists():
        name = str(spec).lower()
        if name in SHIPPED_MODELS:
            return SHIPPED_MODELS[name]
        if name == CRYOVESNET:
            return fetch_cryovesnet()
    if path.suffix.lower() in KERAS_SUFFIXES:
        return keras_checkpoint(path)
    return path


def load(spec=None, *, device: str | torch.device | None = None) -> tuple[nn.Module, dict]:
    """The network a model argument names, with its checkpoint.

    Parameters
    ----------
    spec : None, str, path or (torch.nn.Module, dict)
        None or ``"shipped"`` (the 3-D network shipped with the package), ``"shipped-2d"``,
        ``"cryovesnet"`` (CryoVesNet's published network; downloaded, checked and converted on
        first use, or taken from the file named by ``$ANALYSIS_CRYOVESNET_H5``), the path of a
        checkpoint of this package or of a Keras ``.h5`` in CryoVesNet's layout, or a
        ``(network, checkpoint)`` pair, returned as it is.
    device : str or torch.device, optional
        Where to put the weights (the CPU by default).

    Returns
    -------
    network : torch.nn.Module
        In evaluation mode, on ``device``.
    checkpoint : dict
        The whole checkpoint (metadata included, see :mod:`analysis.models.checkpoint`).

    Raises
    ------
    InputFileError
        For a file that is missing or not a checkpoint of this package, naming it.
    """
    if isinstance(spec, tuple):
        if len(spec) != 2 or not isinstance(spec[0], nn.Module) or not isinstance(spec[1], dict):
            raise ParameterError("a model pair is (network, checkpoint dict)")
        return spec
    map_location = device if device is not None else "cpu"
    path = checkpoint_path(spec)
    payload = read_checkpoint(path, map_location)
    return network_of(payload, path).to(map_location).eval(), payload
