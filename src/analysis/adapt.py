"""Unsupervised domain adaptation of a trained network to unlabelled tomograms (its
batch-normalisation statistics only, by default, or a mean teacher).

A network meets tomograms unlike its training data (another microscope, camera, dose,
filter, sample). When annotating is not an option, it can be adapted to them without labels:
by measuring its encoder's batch-normalisation statistics again on them (``method=
"statistics"``, the default, below), or by a mean teacher, as SynapseNet made its synaptosome
vesicle model (``method="mean-teacher"``):

* a **teacher** (the starting network) labels patches of the user's tomograms; only voxels it
  is confident about (probability ≥ ``confidence`` or ≤ 1 − ``confidence``, 0.9 as in
  SynapseNet) become pseudo-labels, the rest are ignored;
* a **student** (a copy) learns those pseudo-labels from a strongly augmented view of the same
  patch (:func:`analysis.augment.intensity`, level "robust": filters, wedge, noise, gamma), with
  the training loss (soft Dice + cross-entropy over the confident voxels), and, with weight
  ``consistency_weight``, the teacher's probability itself where the teacher is unsure
  (:func:`analysis.train.masked_bce`; since :data:`METHOD_VERSION` 3). Those voxels are
  mostly the edges of vesicles and the faint ones: left free, the student drew vesicles
  smaller under the strong augmentation, the teacher followed, and F1 fell on the independent
  simulator's 3 nm, ±50°, misaligned tomograms (calibration seeds 9103–9104: 0.948
  unadapted, 0.934 adapted; 0.940 with the soft loss);
* after every step the teacher's weights become the exponential moving average of the
  student's (``ema_decay``), so its labels improve slowly and do not chase the student's
  mistakes. Its batch-normalisation statistics are its own: running averages over the clean
  patches of the new data (:func:`update_statistics`). The student's statistics are those of
  strongly augmented patches; a teacher that took them over (as this module did before
  :data:`METHOD_VERSION` 2) normalises clean tomograms wrongly, and on the independent
  simulator's 3 nm, ±50°, misaligned tomograms lost F1 by adapting (calibration seeds: 0.904
  unadapted, 0.888 adapted; 0.908 with the statistics measured again on clean patches).

With ``method="statistics"`` nothing is learnt: only the batch-normalisation statistics are
measured again, on clean patches of the new tomograms (:func:`estimate_statistics`; AdaBN,
Li et al. 2018), and only in the encoder (``statistics_layers``), whose layers meet the
tomogram's contrast, blur and noise first; the bottleneck and decoder keep theirs. A layer
whose input has another mean and spread on the new data then normalises it as it normalised
its training data. It takes about a quarter of the mean teacher's time and no weight moves.
On the independent simulator's test seeds (``benchmarks/adaptation.py --method statistics``:
adapted on 9201–9202, scored on 9101–9102) it lifted F1 from 0.074 to 0.647 with 3 nm
alignment errors (mean teacher 0.77) and from 0.935 to 0.960 with 2 nm errors (0.952), and
cost the combined row 0.005 (mean teacher 0.019); measured in every layer, the statistics
cost the combined row 0.033 and the nominal control 0.011. On the generator's 4 nm alignment
errors (adapted on its 9201–9202, scored on 40001–40002) both methods cost F1 (0.909 →
0.884; mean teacher 0.894).

The saved checkpoint is the **teacher** (with ``method="statistics"``, the network with its
new statistics): ``analysis segment --model CKPT`` uses it like any other. It keeps the
starting network's voxel size and normalisation and records what it was adapted from and on
which tomograms. Patches are (z, y, x) at the network's voxel size; flips are shared by both
views so that pseudo-labels and student output stay aligned voxel for voxel.

Nothing here sees a label: whether an adaptation helped can only be measured on annotated
tomograms of the same domain (``benchmarks/adaptation.py`` does it on simulated ones).
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.augment import LEVELS, geometric, intensity
from analysis.errors import DataError, InputFileError, ParameterError
from analysis.inference.predict import check_voxel_size
from analysis.inference.rescale import to_network_grid
from analysis.io.atomic import atomic_output
from analysis.models import (
    UNet3D,
    checkpoint_path,
    load,
    read_checkpoint,
    save_checkpoint,
    select_device,
)
from analysis.models.keras import sha256
from analysis.normalise import DEFAULT_NORMALISATION, normalise
from analysis.train import (
    StartingPoint,
    TrainingVolume,
    dice_bce_loss,
    masked_bce,
    predict_tiles,
    sample_patch,
)

#: Below this fraction of voxels above 0.5 the starting network "finds no vesicle" in a tomogram
#: (a 128×256×256 synapse tomogram with 160 vesicles has about 5 %).
MIN_FOREGROUND_FRACTION = 1e-4
#: 2: the teacher keeps batch-norm statistics of clean patches (1: copied the student's).
#: 3: a soft loss holds the student to the teacher where the teacher is unsure.
METHOD_VERSION = 3
#: The ways to adapt: mean teacher (weights and statistics), or statistics only (AdaBN).
METHODS = ("mean-teacher", "statistics")
#: How each method is named in an adapted checkpoint's ``data["method"]``.
METHOD_NAMES = {
    "mean-teacher": "mean teacher (analysis.adapt)",
    "statistics": "batch-norm statistics only (analysis.adapt, AdaBN)",
}
#: What a checkpoint needs to be resumed by :func:`adapt`, per method.
_RNG_KEYS = ("numpy_rng_state", "torch_rng_state", "history", "epoch")
RESUME_KEYS = {
    "mean-teacher": ("student_state", "optimiser_state", *_RNG_KEYS),
    "statistics": ("measured_statistics", *_RNG_KEYS),
}
#: 1: the statistics-only method measures with dropout off (the first trial had it on).
#: 2: the encoder's statistics only (``statistics_layers``); ``prior_weight`` may keep a share
#: of the starting ones.
STATISTICS_VERSION = 2
#: Which batch-norm layers the statistics method measures again.
STATISTICS_LAYERS = ("encoder", "all")
#: Each method's version, as an adapted checkpoint records it (``data["method_version"]``).
METHOD_VERSIONS = {"mean-teacher": METHOD_VERSION, "statistics": STATISTICS_VERSION}
#: Settings that only the mean teacher uses; refused with ``method="statistics"``.
MEAN_TEACHER_ONLY = (
    "lr",
    "weight_decay",
    "ema_decay",
    "confidence",
    "consistency_weight",
    "anchor_weight",
    "augment_level",
)
#: Settings that only the statistics method uses; refused with ``method="mean-teacher"``.
STATISTICS_ONLY = ("prior_weight", "statistics_layers")
#: Columns of the per-epoch history. Mean teacher: the epoch's means of the loss, of the share
#: of confident voxels (pseudo-labelled), of the share of the teacher's foreground among them,
#: and of the teacher–student Dice. Statistics only: no loss; the same shares for the adapted
#: network on the epoch's last batch, and the Dice between its foreground and the starting
#: network's there.
HISTORY_COLUMNS = ["epoch", "step", "loss", "confident", "foreground", "agreement", "seconds"]


@dataclass
class AdaptConfig:
    """Settings of an adaptation (numbers of steps are per tomogram set).

    The defaults (300 steps of 2 patches of 48³) took about 6.5 min for two 96×192×192
    tomograms on one CPU core with the mean teacher (`benchmarks/adaptation.py`); measuring
    the statistics only over as many batches takes about a quarter of that
    (`benchmarks/adapt_speed.py`). The settings in :data:`MEAN_TEACHER_ONLY` must keep their
    defaults with ``method="statistics"``.
    """

    epochs: int = 6
    steps_per_epoch: int = 50
    batch_size: int = 2
    patch_size: int = 48
    lr: float = 1e-4
    weight_decay: float = 1e-4
    #: Teacher = decay · teacher + (1 − decay) · student after each step. SynapseNet's runs
    #: of 10⁴ steps use 0.999; these are 30× shorter, so the teacher follows faster.
    ema_decay: float = 0.99
    confidence: float = 0.9
    #: Share of patches centred on the teacher's foreground (the rest uniform).
    foreground_fraction: float = 0.5
    #: Weight of a soft loss on the voxels the teacher is unsure of (its probability as the
    #: target, :func:`analysis.train.masked_bce`). Without it nothing holds a vesicle's edge
    #: where the teacher hesitates, and the student draws vesicles smaller: on the independent
    #: simulator's 3 nm, ±50°, misaligned tomograms (calibration seeds) F1 fell by 0.014 with
    #: weight 0, by 0.008 with 0.3 and 1; 0.3 kept the gain with alignment errors (+0.041;
    #: 1: +0.031).
    consistency_weight: float = 0.3
    #: After each step the student's weights move this × the learning rate of the way back to
    #: the starting network's (L2-SP, :meth:`analysis.train.StartingPoint.pull`); 0 = off.
    #: The teacher follows the student, so nothing else keeps it near where it started.
    anchor_weight: float = 0.0
    augment_level: str = "robust"
    #: "statistics" (the default): only the batch-norm statistics are measured again on the
    #: new tomograms (:func:`estimate_statistics`), over ``epochs × steps_per_epoch`` batches
    #: of clean patches; no weight moves and nothing is learnt. Or "mean-teacher". The
    #: default since on the independent simulator's test seeds (adapted on 9201–9202, scored
    #: on 9101–9102; chosen there, after both methods had been run on them) it met what
    #: adaptation is asked for — every row below F1 0.9 gains at least 0.1, none loses more
    #: than 0.01 (the combined row 0.005, a margin within run-to-run differences) — where the
    #: mean teacher gained more with 3 nm errors (0.77 against 0.65) and lost 0.019 on the
    #: combined row. Neither holds on the generator's 4 nm alignment errors (adapted on its
    #: 9201–9202, scored on 40001–40002: 0.909 unadapted, 0.884 statistics, 0.894 mean
    #: teacher).
    method: str = "statistics"
    #: Statistics method only: which batch-norm layers are measured again, "encoder" (the
    #: contracting path, ``network.encoder``; the bottleneck and decoder keep the starting
    #: statistics) or "all". Chosen on the independent simulator's calibration seeds
    #: (adapted on 9203–9204; scored on 9103–9104, and the combined row also on 9105–9108):
    #: measured in every layer the statistics cost the combined row (3 nm voxels, ±50°,
    #: misaligned) 0.020 F1 on 9103–9104, and still 0.026 on 9105–9108 with a quarter of the
    #: starting ones kept, where the encoder's alone cost 0.001 and 0.006, for part of the
    #: gain with 3 nm alignment errors (0.516 → 0.749; every layer 0.788) and more with 2 nm
    #: errors (0.921 → 0.964; every layer 0.939).
    #: The appearance of a tomogram (contrast, blur, noise) reaches the encoder first; what
    #: the deeper layers see is meant to be the same on any data.
    statistics_layers: str = "encoder"
    #: Statistics method only: the weight of the starting network's batch-norm statistics in
    #: the adapted ones, the rest the new data's average (Schneider et al. 2020; 0 = the new
    #: data's alone). On the calibration seeds above, 0.25 (encoder only) gave 3 nm errors
    #: 0.730 instead of 0.749 and changed no other row by more than 0.007.
    prior_weight: float = 0.0
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ParameterError(f"method must be one of {METHODS}, not {self.method!r}")
        defaults = {f.name: f.default for f in fields(self)}
        changed = [k for k in self._others() if getattr(self, k) != defaults[k]]
        if changed and self.method == "statistics":
            raise ParameterError(
                "method 'statistics' learns nothing, so it takes none of the mean "
                f"teacher's settings: leave out {', '.join(changed)}, or choose method "
                "'mean-teacher'"
            )
        if changed:
            raise ParameterError(
                f"{', '.join(changed)} belongs to method 'statistics' (the mean teacher "
                "measures its statistics as it learns): leave it out, or choose method 'statistics'"
            )
        if not 0 <= self.prior_weight < 1:
            raise ParameterError(f"prior_weight must lie in [0, 1), not {self.prior_weight}")
        if self.statistics_layers not in STATISTICS_LAYERS:
            raise ParameterError(
                f"statistics_layers must be one of {STATISTICS_LAYERS}, not "
                f"{self.statistics_layers!r}"
            )
        if not 0.5 < self.confidence < 1:
            raise ParameterError(f"confidence must lie in (0.5, 1), not {self.confidence}")
        if not 0 <= self.ema_decay < 1:
            raise ParameterError(f"ema_decay must lie in [0, 1), not {self.ema_decay}")
        if self.augment_level not in LEVELS:
            raise ParameterError(f"augment_level must be one of {LEVELS}")
        if self.anchor_weight < 0:
            raise ParameterError(f"anchor_weight must be 0 or positive, not {self.anchor_weight}")
        if min(self.epochs, self.steps_per_epoch, self.batch_size, self.patch_size) < 1:
            raise ParameterError("epochs, steps_per_epoch, batch_size and patch_size must be ≥ 1")

    def _others(self) -> tuple[str, ...]:
        """The other method's settings."""
        return MEAN_TEACHER_ONLY if self.method == "statistics" else STATISTICS_ONLY

    def settings(self) -> dict:
        """The settings as a dict, without those of the other method (what a checkpoint
        records)."""
        return {k: v for k, v in asdict(self).items() if k not in self._others()}


def pseudo_labels(
    probability: torch.Tensor, confidence: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-labels and their weights from a teacher's probabilities.

    Parameters
    ----------
    probability : torch.Tensor, any shape, values in [0, 1]
    confidence : float in (0.5, 1)

    Returns
    -------
    target : torch.Tensor, float32
        1 where ``probability`` > 0.5.
    valid : torch.Tensor, float32
        1 where the teacher is confident either way (≥ ``confidence`` or ≤ 1 − ``confidence``).
    """
    target = (probability > 0.5).float()
    valid = ((probability >= confidence) | (probability <= 1 - confidence)).float()
    return target, valid


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """Teacher weights ← ``decay`` · teacher + (1 − ``decay``) · student.

    Buffers (batch-norm running statistics) are left alone: the student's describe strongly
    augmented patches, the teacher's are kept by :func:`update_statistics`.
    """
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(decay).add_(s.detach(), alpha=1 - decay)


@torch.no_grad()
def update_statistics(teacher: torch.nn.Module, clean: torch.Tensor) -> None:
    """Move the teacher's batch-norm running statistics towards those of ``clean`` patches
    (B, 1, z, y, x): one forward pass in training mode (each layer's momentum), output unused.
    The teacher is left in evaluation mode."""
    # dropout on, as when the shipped weights learnt to follow these layers; measured with
    # dropout off (as estimate_statistics does) the teacher adapted no better on the
    # independent simulator's calibration seeds (adapted on 9203–9204, scored on 9103–9104:
    # combined row −0.017 F1 instead of −0.008, alignment errors +0.037 instead of +0.041)
    teacher.train()
    teacher(clean)
    teacher.eval()


def batch_norms(
    network: torch.nn.Module, layers: str = "all"
) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """The network's batch-normalisation layers (none with instance or group normalisation);
    with ``layers="encoder"`` only those of its contracting path (``network.encoder``).

    Raises
    ------
    ParameterError
        If ``layers`` is "encoder" and the network does not say which layers its encoder has.
    """
    if layers == "encoder":
        if not hasattr(network, "encoder"):
            raise ParameterError(
                f"a {type(network).__name__} does not say which layers are its encoder: "
                "measure the statistics of all layers"
            )
        network = network.encoder
    return [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def estimate_statistics(
    network: torch.nn.Module, batches, *, reset: bool = True, layers: str = "all"
) -> torch.nn.Module:
    """Measure a network's batch-norm statistics again on other data (AdaBN), weights fixed.

    Every batch-norm layer's running mean and variance become the plain average, over all the
    ``batches``, of the per-batch statistics of its input (momentum None), so that the layer
    normalises features of the new data as it normalised those of its training data. Li et
    al. (2018, AdaBN) found this alone adapts a network to a new domain in part
    (:func:`blend_statistics` keeps a share of the old ones). With ``layers="encoder"`` only
    the contracting path's layers are measured; the others keep their statistics and
    normalise with them while the encoder's are measured, as they will afterwards. Dropout is
    off while they are measured; the result does not depend on any random state.

    Parameters
    ----------
    network : torch.nn.Module
        Changed in place; left in evaluation mode.
    batches : iterable of torch.Tensor, (B, 1, z, y, x)
        Clean patches of the new data, normalised as the network's training data.
    reset : bool
        Start the averages afresh (False: go on averaging, as when resuming; the number of
        batches seen so far is each layer's ``num_batches_tracked``).
    layers : {"all", "encoder"}
        Which batch-norm layers to measure (:func:`batch_norms`).

    Returns
    -------
    torch.nn.Module
        ``network``.

    Raises
    ------
    ParameterError
        If the network has no batch-norm layer (nothing to measure), or no encoder that it
        names (``layers="encoder"``).
    """
    norms = batch_norms(network, layers)
    if not norms:
        raise ParameterError("the network has no batch-norm layer: its statistics cannot move")
    momenta = [m.momentum for m in norms]
    for m in norms:
        if reset:
            m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen
    # only the batch-norm layers in training mode: dropout stays off, as at inference, so
    # that the statistics are those of the features the layers will normalise (with dropout
    # on they are of thinned features, and random; Li et al. 2019 on this "variance shift";
    # on the independent simulator's calibration seeds, adapted on 9203–9204 and scored on
    # 9103–9104, dropout off gained more: 3 nm errors 0.788 F1 against 0.750)
    network.eval()
    for m in norms:
        m.train()
    try:
        for batch in batches:
            network(batch)
    finally:  # a loaded network keeps its layers' momentum for later training
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        network.eval()
    return network


@torch.no_grad()
def blend_statistics(
    network: torch.nn.Module, prior: torch.nn.Module, weight: float, layers: str = "all"
) -> torch.nn.Module:
    """Keep a share of another network's batch-norm statistics (Schneider et al. 2020).

    Every batch-norm layer's running mean and variance become ``weight`` × those of the same
    layer in ``prior`` + (1 − ``weight``) × its own: statistics measured on a few tomograms
    (:func:`estimate_statistics`) are weighted against those the network had, which rest on
    far more data.

    Parameters
    ----------
    network : torch.nn.Module
        Changed in place (its statistics measured on the new data).
    prior : torch.nn.Module
        A network of the same architecture (the starting one).
    weight : float
        In [0, 1]: 0 leaves ``network`` as it is, 1 gives it ``prior``'s statistics.
    layers : {"all", "encoder"}
        Which layers to blend (:func:`batch_norms`); the others are left as they are, bit
        for bit.

    Returns
    -------
    torch.nn.Module
        ``network``, with the blended statistics.

    Raises
    ------
    ParameterError
        If ``weight`` is outside [0, 1], or the networks' batch-norm layers differ.
    """
    if not 0 <= weight <= 1:
        raise ParameterError(f"the weight of the prior statistics must lie in [0, 1], not {weight}")
    mine, theirs = batch_norms(network, layers), batch_norms(prior, layers)
    if [m.num_features for m in mine] != [m.num_features for m in theirs]:
        raise ParameterError("the two networks' batch-norm layers differ: no statistics to blend")
    if weight == 0:
        return network
    for m, p in zip(mine, theirs, strict=True):
        m.running_mean.mul_(1 - weight).add_(p.running_mean, alpha=weight)
        m.running_var.mul_(1 - weight).add_(p.running_var, alpha=weight)
    return network


def _statistics_state(network: torch.nn.Module) -> dict:
    """The batch-norm buffers of ``network`` (means, variances, batch counts), copied."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return {k: v.detach().clone() for k, v in network.state_dict().items() if k.endswith(buffers)}


def prepare(tomogram: np.ndarray, voxel_size_nm: float, meta: dict, invert: bool = False):
    """A tomogram as the network sees it: at its voxel size, normalised as in its training.

    Parameters
    ----------
    tomogram : numpy.ndarray, (z, y, x)
    voxel_size_nm : float
    meta : dict
        The checkpoint (``voxel_size_nm``, ``normalisation``).
    invert : bool
        Flip the contrast (membranes bright in the file).

    Returns
    -------
    numpy.ndarray, float32, (z, y, x) at ``meta["voxel_size_nm"]``
    """
    ratio = check_voxel_size(voxel_size_nm, meta["voxel_size_nm"])
    tomogram = to_network_grid(tomogram, ratio)
    image = normalise(
        np.asarray(tomogram, np.float32), meta["normalisation"] or DEFAULT_NORMALISATION
    )
    return -image if invert else image


def _teacher_volume(teacher, image: np.ndarray, name: str, device) -> TrainingVolume:
    """The volume to sample patches from, its ``target`` the teacher's first foreground guess
    (only used to centre patches on vesicles, never as a label)."""
    guess = predict_tiles(teacher, image, 64, device) > 0.5
    return TrainingVolume(image=image, target=guess.astype(np.uint8), name=name)


def _batch(volumes, cfg: AdaptConfig, rng: np.random.Generator, strong_view: bool = True):
    """Clean and strongly augmented views of the same patches, (B, 1, P, P, P) each (the
    strong one empty without ``strong_view``)."""
    clean, strong = [], []
    for _ in range(cfg.batch_size):
        vol = volumes[int(rng.integers(len(volumes)))]
        foreground = rng.uniform() < cfg.foreground_fraction
        image, _, _ = sample_patch(vol, cfg.patch_size, rng, foreground)
        (image,) = geometric((image,), rng)
        clean.append(image)
        if strong_view:
            strong.append(intensity(image.copy(), rng, cfg.augment_level))

    def stack(arrays):
        return torch.from_numpy(np.stack(arrays)[:, None].astype(np.float32))

    return stack(clean), (stack(strong) if strong_view else None)


def check_memory(shapes, voxel_sizes_nm, network_voxel_size_nm: float) -> None:
    """Refuse an adaptation set that would not fit in the free memory, before any work.

    Each tomogram is held at the network's voxel size as float32 with a byte mask, and its
    first prediction needs another float32 copy: about 9 bytes per voxel.

    Raises
    ------
    DataError
        With the memory needed and free, and what to do.
    """
    voxels = sum(
        float(np.prod(s)) * (vs / network_voxel_size_nm) ** 3
        for s, vs in zip(shapes, voxel_sizes_nm, strict=True)
    )
    need = 9 * voxels
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: cannot tell, do not refuse
        return
    if need > free:
        raise DataError(
            f"adapting to these tomograms needs about {need / 1e9:.1f} GB of memory and "
            f"{free / 1e9:.1f} GB is free: give fewer tomograms, or crops of them"
        )


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    total = float(a.sum() + b.sum())
    return 1.0 if total == 0 else 2 * float((a * b).sum()) / total


def adapt(
    tomograms: list[np.ndarray],
    voxel_sizes_nm: list[float],
    checkpoint: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    names: list[str] | None = None,
    config: AdaptConfig | None = None,
    invert: bool = False,
    resume: bool = False,
    command: str = "",
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> tuple[UNet3D, list[dict]]:
    """Adapt a network to unlabelled tomograms (mean teacher, or its batch-norm statistics
    only); resumable, seeded.

    Parameters
    ----------
    tomograms : list of numpy.ndarray, (z, y, x)
        The unlabelled tomograms (any intensity scale; membranes dark unless ``invert``).
    voxel_sizes_nm : list of float
        Their voxel sizes; they are resampled to the network's.
    checkpoint : path
        Output ``.pt``, written at the end of every epoch (the adapted network, with what
        resuming needs; metrics beside it as ``*_metrics.csv``).
    model : None, path or "cryovesnet"
        The starting network (default: the shipped one), as ``analysis segment --model``.
    names : list of str, optional
        Names of the tomograms, recorded in the checkpoint.
    config : AdaptConfig, optional
        ``config.method`` chooses statistics only (default) or mean teacher.
    invert : bool
        The tomograms have bright membranes.
    resume : bool
        Continue from ``checkpoint`` if it exists (same numbers as an uninterrupted run on
        the CPU).
    command : str
        The command that started the run, recorded in the checkpoint.
    stop_after_epoch : int, optional
        Stop after this epoch, as an interruption would (for tests).
    progress : bool
        Show a progress bar.

    Returns
    -------
    (network, history)
        The adapted network (evaluation mode) and one dict per epoch (:data:`HISTORY_COLUMNS`;
        for the statistics method ``loss`` is empty and ``agreement`` is the Dice between the
        starting and the adapted network's foreground on the epoch's last batch).

    Raises
    ------
    DataError
        If the starting network finds no vesicle in any of the tomograms: there is nothing to
        teach (wrong voxel size, inverted contrast, or not a synapse); or the tomograms would
        not fit in memory.
    InputFileError
        If the network has no batch-norm layer (method "statistics"), or ``resume`` finds at
        ``checkpoint`` a file that is not an adaptation in progress by this method.
    ParameterError
        If there is not one voxel size per tomogram.
    """
    cfg = config or AdaptConfig()
    if len(tomograms) != len(voxel_sizes_nm) or not tomograms:
        raise ParameterError("give one voxel size per tomogram, and at least one tomogram")
    names = list(names or [f"tomogram {i + 1}" for i in range(len(tomograms))])
    checkpoint = Path(checkpoint)
    device = select_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    source = checkpoint_path(model)
    teacher, meta = load(source, device=device)
    if cfg.method == "statistics" and not batch_norms(teacher):
        raise InputFileError(
            source,
            "has no batch-norm layer, so it has no statistics to adapt; choose method "
            "'mean-teacher' (--method mean-teacher)",
        )
    if cfg.method == "statistics" and cfg.statistics_layers == "encoder":
        if not hasattr(teacher, "encoder") or not batch_norms(teacher, "encoder"):
            raise InputFileError(
                source,
                "does not name batch-norm layers of an encoder; adapt the statistics of all "
                "its layers (statistics_layers='all', --statistics-layers all)",
            )
    check_memory([t.shape for t in tomograms], voxel_sizes_nm, meta["voxel_size_nm"])
    volumes = []
    for tomo, vs, name in zip(tomograms, voxel_sizes_nm, names, strict=True):
        volumes.append(_teacher_volume(teacher, prepare(tomo, vs, meta, invert), name, device))
    found = [float(v.target.mean()) for v in volumes]
    if max(found) < MIN_FOREGROUND_FRACTION:
        raise DataError(
            f"the starting network finds no vesicle in any of the {len(volumes)} tomograms "
            f"(largest share of voxels above 0.5: {max(found):.1e}); check the voxel size and "
            "the contrast (membranes dark, or use invert), and that they show synapses"
        )
    data = {
        "adapted_from": source.name,
        "adapted_from_sha256": sha256(source),
        "target": names,
        "target_voxel_size_nm": [float(v) for v in voxel_sizes_nm],
        "target_foreground_at_start": found,
        "invert": invert,
        "command": command,
        "method": METHOD_NAMES[cfg.method],
        "method_version": METHOD_VERSIONS[cfg.method],
    }

    metrics_path = checkpoint.with_name(f"{checkpoint.stem}_metrics.csv")

    def save(network, history, **resume_state):
        save_checkpoint(
            checkpoint,
            network,
            voxel_size_nm=meta["voxel_size_nm"],
            normalisation=meta["normalisation"] or DEFAULT_NORMALISATION,
            seed=cfg.seed,
            data=data,
            metrics={"epoch": history[-1]["epoch"], "agreement": history[-1]["agreement"]},
            numpy_rng_state=rng.bit_generator.state,
            torch_rng_state=torch.get_rng_state(),
            history=history,
            epoch=history[-1]["epoch"],
            adapt_config=cfg.settings(),
            **resume_state,
        )
        with atomic_output(metrics_path) as tmp:
            pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)

    run = _statistics_epochs if cfg.method == "statistics" else _mean_teacher_epochs
    history = run(
        teacher,
        volumes,
        cfg,
        rng,
        _resume_state(checkpoint, cfg, data) if resume else None,
        save,
        device=device,
        stop_after_epoch=stop_after_epoch,
        progress=progress,
    )
    return teacher.eval(), history


def _resume_state(checkpoint: Path, cfg: AdaptConfig, data: dict) -> dict | None:
    """The state of an adaptation in progress at ``checkpoint`` (None if there is none yet),
    made by the same method and version, from the same network, on the same tomograms, with
    the same settings (only ``epochs`` and ``device`` may differ); ``data`` is the new run's
    record (:func:`adapt`)."""
    if not checkpoint.exists():
        return None
    state = read_checkpoint(checkpoint)
    method = cfg.method
    made_by = state.get("adapt_config", {}).get("method", "mean-teacher")
    if "adapt_config" in state and made_by != method:
        raise InputFileError(
            checkpoint,
            f"is an adaptation by method {made_by!r}: resume it with that method "
            f"(--method {made_by}), or write this one to another file",
        )
    made = state.get("data") or {}
    for key, what in (
        ("method_version", "another version of the method"),
        ("adapted_from_sha256", "another starting network"),
        ("target", "other tomograms"),
        ("invert", "the other contrast"),
    ):
        if key in made and made[key] != data[key]:
            raise InputFileError(
                checkpoint,
                f"was started with {what} ({key} {made[key]!r}): resume it as it was started, "
                "or write this one to another file",
            )
    if not all(k in state for k in RESUME_KEYS[method]):
        raise InputFileError(
            checkpoint,
            f"is not an adaptation in progress by method {method!r} (no "
            f"{', '.join(k for k in RESUME_KEYS[method] if k not in state)}), so it cannot be "
            "resumed; write the adaptation to another file",
        )
    stored, mine = state.get("adapt_config", {}), cfg.settings()
    differ = [
        k for k in mine if k in stored and k not in ("epochs", "device") and stored[k] != mine[k]
    ]
    if differ:
        raise InputFileError(
            checkpoint,
            f"was started with other settings ({', '.join(f'{k} {stored[k]!r}' for k in differ)}): "
            "resume it with those, or write this one to another file",
        )
    return state


def _restore(rng: np.random.Generator, state: dict | None) -> tuple[list[dict], int]:
    """The history so far and the first epoch to run; the random states of ``state``."""
    if state is None:
        return [], 1
    rng.bit_generator.state = state["numpy_rng_state"]
    torch.set_rng_state(state["torch_rng_state"])
    return list(state["history"]), int(state["epoch"]) + 1


def _epochs(cfg: AdaptConfig, first: int, stop_after_epoch: int | None):
    last = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, stop_after_epoch)
    return range(first, last + 1)


def _steps(cfg: AdaptConfig, epoch: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(
        range(cfg.steps_per_epoch),
        desc=f"adapt {epoch}/{cfg.epochs}",
        disable=not progress,
        leave=False,
    )


def _mean_teacher_epochs(
    teacher, volumes, cfg, rng, state, save, *, device, stop_after_epoch, progress
) -> list[dict]:
    """The mean-teacher epochs of :func:`adapt` (teacher changed in place)."""
    # held to the starting network, also when resuming (the teacher is still it here)
    start_point = StartingPoint(teacher, 0.0, cfg.anchor_weight) if cfg.anchor_weight else None
    if state is not None:
        teacher.load_state_dict(state["model_state"])
    teacher.eval()
    student = copy.deepcopy(teacher)
    if state is not None:
        student.load_state_dict(state["student_state"])
    for p in teacher.parameters():
        p.requires_grad_(False)
    optimiser = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state is not None:
        optimiser.load_state_dict(state["optimiser_state"])
    history, first = _restore(rng, state)
    step = (first - 1) * cfg.steps_per_epoch
    for epoch in _epochs(cfg, first, stop_after_epoch):
        started = time.perf_counter()
        student.train()
        sums = np.zeros(4)
        bar = _steps(cfg, epoch, progress)
        for _ in bar:
            clean, strong = (t.to(device) for t in _batch(volumes, cfg, rng))
            with torch.no_grad():
                prob = torch.sigmoid(teacher(clean))
            target, valid = pseudo_labels(prob, cfg.confidence)
            logits = student(strong)
            loss = dice_bce_loss(logits, target, valid)
            if cfg.consistency_weight:
                loss = loss + cfg.consistency_weight * masked_bce(logits, prob, 1 - valid)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if start_point is not None:
                start_point.pull(student, cfg.lr)
            ema_update(teacher, student, cfg.ema_decay)
            update_statistics(teacher, clean)
            step += 1
            sums += (
                loss.item(),
                *_label_shares(target, valid),
                _dice(target, (logits > 0).float()),
            )
            bar.set_postfix(loss=f"{loss.item():.3f}")
        history.append(_history_row(epoch, step, sums / cfg.steps_per_epoch, started))
        save(
            teacher,
            history,
            student_state={k: v.detach().cpu() for k, v in student.state_dict().items()},
            optimiser_state=optimiser.state_dict(),
        )
    return history


def _statistics_epochs(
    network, volumes, cfg, rng, state, save, *, device, stop_after_epoch, progress
) -> list[dict]:
    """The statistics-only epochs of :func:`adapt` (network changed in place): batch-norm
    statistics averaged over ``epochs × steps_per_epoch`` batches of clean patches, then
    blended with the starting ones (:func:`blend_statistics`, ``cfg.prior_weight``); only the
    layers of ``cfg.statistics_layers``. Each epoch saves
    the blended network, and the measured average (``measured_statistics``) to go on from."""
    start = copy.deepcopy(network).eval()
    if state is not None:
        network.load_state_dict(state["model_state"] | state["measured_statistics"])
    history, first = _restore(rng, state)
    batches = (first - 1) * cfg.steps_per_epoch
    for epoch in _epochs(cfg, first, stop_after_epoch):
        started = time.perf_counter()
        for _ in _steps(cfg, epoch, progress):
            clean = _batch(volumes, cfg, rng, strong_view=False)[0].to(device)
            # one batch at a time: the average goes on over calls (num_batches_tracked)
            estimate_statistics(network, [clean], reset=batches == 0, layers=cfg.statistics_layers)
            batches += 1
        adapted = blend_statistics(
            copy.deepcopy(network), start, cfg.prior_weight, cfg.statistics_layers
        )
        with torch.no_grad():  # how the last batch looks to the adapted and the starting network
            prob = torch.sigmoid(adapted(clean))
            before = (start(clean) > 0).float()
        target, valid = pseudo_labels(prob, cfg.confidence)
        summary = (np.nan, *_label_shares(target, valid), _dice(target, before))
        history.append(_history_row(epoch, batches, summary, started))
        save(adapted, history, measured_statistics=_statistics_state(network))
    blend_statistics(network, start, cfg.prior_weight, cfg.statistics_layers)
    return history


def _label_shares(target: torch.Tensor, valid: torch.Tensor) -> tuple[float, float]:
    """Share of voxels pseudo-labelled, and share of vesicle voxels among them."""
    return float(valid.mean()), float((target * valid).sum() / valid.sum().clamp_min(1))


def _history_row(epoch: int, step: int, means, started: float) -> dict:
    loss, confident, foreground, agreement = (float(v) for v in means)
    return {
        "epoch": epoch,
        "step": step,
        "loss": loss,
        "confident": confident,
        "foreground": foreground,
        "agreement": agreement,
        "seconds": round(time.perf_counter() - started, 2),
    }


def adapt_files(
    paths: list[str | os.PathLike],
    checkpoint: str | os.PathLike,
    *,
    voxel_size_nm: float | None = None,
    **kwargs,
) -> tuple[UNet3D, list[dict]]:
    """:func:`adapt` on tomogram files (MRC, TIFF, …), read with their header voxel sizes.

    ``voxel_size_nm`` overrides every header. Other keywords go to :func:`adapt`.
    """
    from analysis.io import read_tomogram

    tomos, sizes = [], []
    for path in paths:
        tomo = read_tomogram(path, voxel_size_nm=voxel_size_nm, mmap=True)
        tomos.append(tomo.data)
        sizes.append(float(tomo.voxel_size_nm))
    try:
        return adapt(tomos, sizes, checkpoint, names=[Path(p).name for p in paths], **kwargs)
    except DataError as err:  # a problem of the set of files: name them
        raise err.in_file(", ".join(os.fspath(p) for p in paths)) from err
