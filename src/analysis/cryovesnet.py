"""Former home of the published CryoVesNet network, now in :mod:`analysis.models`.

Kept so that code written against it keeps working; new code imports :mod:`analysis.models`
(the network: :class:`analysis.models.CryoVesNetUNet`; its Keras file, download and
conversion: :mod:`analysis.models.keras`; ``"cryovesnet"`` as a model: :func:`analysis.models.load`).
"""

from __future__ import annotations

from analysis.models import checkpoint_path, cryovesnet_if_available, fetch_cryovesnet

__all__ = ["cryovesnet_if_available", "fetch_cryovesnet", "resolve_model_name"]


def resolve_model_name(model):
    """The checkpoint file of a model name or path (:func:`analysis.models.checkpoint_path`);
    None stays None."""
    return None if model is None else checkpoint_path(model)
