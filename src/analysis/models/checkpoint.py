"""Checkpoints: a network's weights with what inference needs to use it without guessing.

A checkpoint is a torch file holding (DESIGN.md) ``model_state``, ``config`` (the
architecture), ``voxel_size_nm`` (training voxel size), ``normalisation``, ``seed``, ``data``,
``metrics`` and ``format_version``; training checkpoints add optimiser, scheduler and RNG
states. ``config`` names its architecture in :data:`ARCHITECTURES` (``"architecture"``;
absent means ``"unet3d"``, as in every checkpoint written before the key existed).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from analysis.errors import InputFileError, ParameterError
from analysis.models.cryovesnet import CryoVesNetConfig, CryoVesNetUNet
from analysis.models.unet import UNet3D, UNetConfig

#: Version of the checkpoint layout; loading refuses any other.
CHECKPOINT_FORMAT_VERSION = 1
REQUIRED_CHECKPOINT_KEYS = (
    "model_state",
    "config",
    "voxel_size_nm",
    "normalisation",
    "seed",
    "data",
    "metrics",
    "format_version",
)
#: The networks a checkpoint can hold: architecture name → (config class, network class).
ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "unet3d": (UNetConfig, UNet3D),
    "cryovesnet": (CryoVesNetConfig, CryoVesNetUNet),
}


def build_network(config: dict) -> nn.Module:
    """The untrained network a checkpoint's ``config`` describes (:data:`ARCHITECTURES`).

    Raises
    ------
    KeyError
        For an architecture this package does not know.
    """
    config = dict(config)
    name = config.pop("architecture", "unet3d")
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})")
    config_class, network_class = ARCHITECTURES[name]
    return network_class(config_class(**config))


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    voxel_size_nm: float,
    normalisation: dict[str, Any],
    seed: int,
    data: dict[str, Any] | list,
    metrics: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Save a network with the metadata inference needs, atomically.

    Parameters
    ----------
    path : path
        Output ``.pt`` file.
    model : torch.nn.Module
        A network of :data:`ARCHITECTURES` (its ``config`` attribute is stored).
    voxel_size_nm : float
        Voxel size of the data the model was trained on; inference rescales to it.
    normalisation : dict
        How input patches were normalised (e.g. ``{"method": "percentile", ...}``).
    seed : int
        Seed of the training run.
    data : dict or list
        What the model was trained on (file names, seeds, …).
    metrics : dict, optional
        Validation figures at the time of saving.
    **extra
        Further entries, e.g. optimiser and scheduler states for resuming training.
    """
    from analysis.io.atomic import atomic_output

    payload = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": asdict(model.config),
        "voxel_size_nm": float(voxel_size_nm),
        "normalisation": dict(normalisation),
        "seed": int(seed),
        "data": data,
        "metrics": dict(metrics or {}),
        **extra,
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read and check a checkpoint; one clear error for anything that is not ours."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise InputFileError(
            path, f"is not a readable torch checkpoint ({type(err).__name__})"
        ) from err
    if not isinstance(payload, dict):
        raise InputFileError(path, "is not a checkpoint of this package (not a dictionary)")
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise InputFileError(
            path,
            f"has checkpoint format version {version}, this package reads version "
            f"{CHECKPOINT_FORMAT_VERSION}; convert or retrain it",
        )
    missing = [k for k in REQUIRED_CHECKPOINT_KEYS if k not in payload]
    if missing:
        raise InputFileError(path, f"checkpoint lacks {', '.join(missing)}")
    return payload


def network_of(payload: dict, path: str | os.PathLike) -> nn.Module:
    """The network of a checkpoint read from ``path``, its weights filled in (training mode).

    Raises
    ------
    InputFileError
        Naming ``path``, for an unknown architecture or weights that do not fit it.
    """
    try:
        model = build_network(payload["config"])
        model.load_state_dict(payload["model_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip("'\"").splitlines()[0]
        raise InputFileError(
            path, f"weights do not fit the recorded configuration ({first})"
        ) from err
    return model


def export_weights(checkpoint: str | os.PathLike, out: str | os.PathLike, **metadata: Any) -> Path:
    """Write a model-only copy of a training checkpoint (no optimiser or RNG state).

    The learning curve (``history``) is kept in ``metrics``; ``metadata`` entries replace those
    of the checkpoint (e.g. a portable ``data`` description).
    """
    payload = read_checkpoint(checkpoint)
    model = network_of(payload, checkpoint)
    metrics = {**payload["metrics"], "history": payload.get("history", [])}
    fields = {k: payload[k] for k in ("voxel_size_nm", "normalisation", "seed", "data")}
    fields.update(metadata)
    extra = {"train_config": payload["train_config"]} if "train_config" in payload else {}
    return save_checkpoint(out, model, metrics=metrics, **fields, **extra)


def average_weights(
    checkpoints: list[str | os.PathLike],
    out: str | os.PathLike,
    command: str | None = None,
    **metadata: Any,
) -> Path:
    """Write a network whose weights are the mean of several networks' weights (a model soup).

    Networks fine-tuned from one parent on the same data, but with other seeds or run lengths,
    err in different places on data none of them was trained on; the mean of their weights
    (Wortsman et al. 2022, "Model soups") keeps what they share and is often more robust than
    any of them, at no cost at inference. Only networks that start from one parent should be
    averaged: independent trainings do not share a basin and their mean is no network at all.

    Parameters
    ----------
    checkpoints : list of path
        Two or more checkpoints (training or model-only) of one architecture, trained at the
        same voxel size with the same normalisation.
    out : path
        The averaged network, model-only (as :func:`export_weights` writes). Its ``data``
        records the parts' ``data`` and the union of their ``train`` and ``validation``
        tomograms, in order, and its ``metrics`` the parts' metrics and learning curves
        (:func:`training_history`).
    command : str, optional
        How the soup was made (recorded as ``data["command"]``; the CLI records itself).
    **metadata
        Entries that replace the first checkpoint's (e.g. ``data``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ParameterError
        Fewer than two checkpoints, or checkpoints that differ in architecture, voxel size or
        normalisation (naming the first that differs).
    """
    if len(checkpoints) < 2:
        raise ParameterError("averaging needs at least two checkpoints")
    payloads = [read_checkpoint(path) for path in checkpoints]
    first = payloads[0]
    for path, payload in zip(checkpoints[1:], payloads[1:], strict=True):
        for key in ("config", "voxel_size_nm", "normalisation"):
            if payload[key] != first[key]:
                raise ParameterError(
                    f"{path}: its {key} ({payload[key]}) differs from that of "
                    f"{checkpoints[0]} ({first[key]}); only networks of one kind can be averaged"
                )
    model = network_of(first, checkpoints[0])
    state = model.state_dict()
    for key, value in state.items():
        if value.is_floating_point():  # weights and batch-norm statistics; not step counters
            mean = torch.stack([p["model_state"][key].float() for p in payloads]).mean(0)
            state[key] = mean.to(value.dtype)
    model.load_state_dict(state)
    fields = {k: first[k] for k in ("voxel_size_nm", "normalisation", "seed")}
    parts = [p.get("data") or {} for p in payloads]
    fields["data"] = {
        # the soup has seen every part's tomograms: the domain check finds its reference by them
        **{
            split: list(dict.fromkeys(name for part in parts for name in part.get(split) or []))
            for split in ("train", "validation")
        },
        "averaged": [Path(path).name for path in checkpoints],
        "parts": parts,
    }
    if command:
        fields["data"]["command"] = command
    # each part's learning curve (a training checkpoint keeps it beside its metrics)
    fields["metrics"] = {"parts": [metrics_with_history(p) for p in payloads]}
    fields.update(metadata)
    return save_checkpoint(out, model, **fields)


def metrics_with_history(payload: dict) -> dict:
    """A checkpoint's metrics with its learning curve (``history``), which a training
    checkpoint keeps beside them: what a network made from it records of it."""
    return {**(payload.get("metrics") or {}), **_history_of(payload)}


def _history_of(payload: dict) -> dict:
    history = payload.get("history") or (payload.get("metrics") or {}).get("history")
    return {"history": list(history)} if history else {}


def training_history(meta: dict) -> list[dict]:
    """The learning curve a checkpoint records, one dict per validated or trained epoch.

    For a network made by :func:`average_weights` the curves of its parts, each row with a
    ``run`` key: ``"part 1"``, ``"part 2"``, … in the order they were averaged, and
    ``"part 1.2"`` for the second part of a first part that was itself averaged (parts that
    record no curve are left out). A fine-tuning that records the curves of the network it
    started from (``metrics["start"]``) adds them as ``"start"``, ``"start.1"``,
    ``"start.start"``, … (as :func:`provenance` names the steps), and its own rows are then
    ``"final step"``. Empty if the checkpoint records none.
    """
    rows = _histories(meta.get("metrics") or {}, meta, "")
    if any("run" in row for row in rows):
        rows = [row if "run" in row else {**row, "run": "final step"} for row in rows]
    return rows


def _histories(metrics: dict, payload: dict, run: str) -> list[dict]:
    parts = metrics.get("parts")
    if parts is None:
        history = _history_of(payload).get("history") or metrics.get("history") or []
        rows = [{**row, "run": run} if run else dict(row) for row in history]
    else:
        rows = [
            row
            for i, part in enumerate(parts, start=1)
            for row in _histories(part, {}, _part_name(run, i))
        ]
    if metrics.get("start"):
        rows += _histories(metrics["start"], {}, f"{run}.start" if run else "start")
    return rows


def provenance(meta: dict) -> list[dict]:
    """How a network was made, as its checkpoint records it: one dict per step.

    The checkpoint's own step first (``step`` ""), then, for a network made by
    :func:`average_weights`, its parts depth first (``"part 1"``, ``"part 1.2"``, …), and for a
    fine-tuning that records the network it started from (``data["start"]``, written by
    ``analysis train --init-from``), that network's steps (``"start"``; ``"start.1"`` for the
    first part of a start that was averaged, ``"start.start"`` for the start of a start,
    ``"part 2.start"`` for the start of a soup's second part). Each dict
    has ``step``, ``command`` (the command that made it), ``generator`` (the synthetic data's
    generator versions, and seeds where recorded) and ``init_from`` (the network it was
    fine-tuned from); a field the checkpoint does not record is "".
    """
    return _steps(meta.get("data") or {}, "")


def _steps(data: dict, step: str) -> list[dict]:
    fields = {key: str(data.get(key) or "") for key in ("command", "generator", "init_from")}
    rows = [{"step": step, **fields}]
    for i, part in enumerate(data.get("parts") or [], start=1):
        rows += _steps(part, _part_name(step, i))
    if data.get("start"):
        rows += _steps(data["start"], f"{step}.start" if step else "start")
    return rows


def _part_name(parent: str, i: int) -> str:
    """The name of the ``i``-th part of a soup named ``parent`` ("" for the network itself)."""
    return f"{parent}.{i}" if parent else f"part {i}"
