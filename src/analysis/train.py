"""Training the 3D U-Net on patches: sampling, augmentation, loss, loop, checkpoints, resume.

Everything random draws from one ``numpy.random.Generator`` and torch's seeded generator, both
stored in every checkpoint, so an interrupted run resumed from its last checkpoint continues
bit-identically on the CPU.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from analysis.augment import augment
from analysis.errors import ParameterError
from analysis.evaluate.metrics import dice_score
from analysis.models import (
    Predictor,
    UNet3D,
    UNetConfig,
    build_network,
    load,
    read_checkpoint,
    save_checkpoint,
    select_device,
)
from analysis.models.checkpoint import metrics_with_history
from analysis.normalise import DEFAULT_NORMALISATION, normalise


@dataclass
class TrainingVolume:
    """One annotated tomogram, ready for patch sampling (all arrays (z, y, x)).

    Attributes
    ----------
    image : numpy.ndarray, float32
        The normalised tomogram.
    target : numpy.ndarray, uint8
        1 inside vesicles, 0 outside.
    ignore : numpy.ndarray of bool, optional
        True where the annotation says nothing (e.g. outside the annotated cell outline): these
        voxels do not count in the loss or the validation Dice.
    name : str
    """

    image: np.ndarray
    target: np.ndarray
    ignore: np.ndarray | None = None
    name: str = ""

    def __post_init__(self):
        if self.image.shape != self.target.shape:
            raise ValueError(
                f"{self.name}: tomogram {self.image.shape} and labels {self.target.shape} differ in shape"
            )
        if self.ignore is not None and self.ignore.shape != self.image.shape:
            raise ValueError(f"{self.name}: ignore mask {self.ignore.shape} differs in shape")
        valid = self.target if self.ignore is None else self.target & ~self.ignore
        self._foreground = np.flatnonzero(valid.ravel())


def volume_from_files(
    tomogram: str | os.PathLike,
    labels: str | os.PathLike,
    *,
    region: str | os.PathLike | None = None,
    normalisation: dict | None = None,
) -> tuple[TrainingVolume, float]:
    """Load a training volume from a tomogram and its annotation.

    Parameters
    ----------
    tomogram : path
        MRC, TIFF or OME-Zarr tomogram.
    labels : path
        A label volume (MRC, non-zero = vesicle) or an IMOD model (``.mod``) drawn on it.
    region : path, optional
        Mask (MRC, non-zero = annotated) or IMOD model of closed outlines delimiting where the
        annotation is complete; everything outside is ignored in the loss.
    normalisation : dict, optional
        Intensity normalisation (:data:`analysis.normalise.DEFAULT_NORMALISATION`).

    Returns
    -------
    (TrainingVolume, voxel_size_nm)
    """
    from analysis.io import read_annotation, read_like, read_tomogram

    tomo = read_tomogram(tomogram)

    def mask_of(path, role):
        if Path(path).suffix.lower() == ".mod":
            return read_annotation(path, tomo).labels > 0
        return read_like(path, tomo, role, check_finite=False).data > 0

    target = mask_of(labels, "labels").astype(np.uint8)
    ignore = None if region is None else ~mask_of(region, "region")
    image = normalise(tomo.data, normalisation)
    return TrainingVolume(image, target, ignore, Path(tomogram).name), tomo.voxel_size_nm


@dataclass
class TrainConfig:
    """Training hyper-parameters (patch sizes in voxels)."""

    epochs: int = 30
    steps_per_epoch: int = 60
    batch_size: int = 4
    patch_size: int = 48
    foreground_fraction: float = 0.6
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    #: fine-tuning only: weight of a cross-entropy term that keeps the network's probabilities
    #: close to those of the network it starts from, on the same patches (learning without
    #: forgetting, Li & Hoiem 2018); 0 turns it off
    distill_weight: float = 0.0
    #: fine-tuning only: after each step the weights move this × the learning rate of the way
    #: back to the starting ones (a decoupled form of L2-SP, Li et al. 2018, applied apart
    #: from the gradient as AdamW decays weights); 0 turns it off. BatchNorm running
    #: statistics are not held: training re-estimates them from its batches
    anchor_weight: float = 0.0
    augment: bool = True
    #: "robust" adds Fourier and intensity augmentation to "physics" (see analysis.augment)
    augment_level: str = "robust"
    val_patch_size: int = 64
    #: validate every this many epochs (and after the last): whole-tomogram validation can
    #: cost as much as an epoch's steps on a CPU
    val_every: int = 1
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # mixed precision, used on CUDA only
    extra: dict = field(default_factory=dict)


# --- patches -------------------------------------------------------------------------------


def _patch_slices(shape, corner, size):
    return tuple(slice(c, c + s) for c, s in zip(corner, size, strict=True))


def _pad_to(array: np.ndarray, size, mode: str) -> np.ndarray:
    pad = [(0, max(0, s - n)) for s, n in zip(size, array.shape, strict=True)]
    if any(p[1] for p in pad):
        return np.pad(array, pad, mode=mode)
    return array


def sample_patch(vol: TrainingVolume, size: int, rng: np.random.Generator, foreground: bool):
    """Cut one cubic patch (image, target, valid) from ``vol``.

    With ``foreground`` the patch contains a vesicle voxel at a random position; otherwise its
    corner is uniform over the volume. Volumes smaller than the patch are padded (reflected
    image, ignored padding).
    """
    shape = np.asarray(vol.image.shape)
    extent = np.minimum(shape, size)
    if foreground and len(vol._foreground):
        centre = np.asarray(
            np.unravel_index(vol._foreground[rng.integers(len(vol._foreground))], shape)
        )
        offset = rng.integers(0, extent)
        corner = np.clip(centre - offset, 0, shape - extent)
    else:
        corner = np.asarray(
            [rng.integers(0, n - e + 1) for n, e in zip(shape, extent, strict=True)]
        )
    sl = _patch_slices(shape, corner, extent)
    valid = np.ones(tuple(extent), bool) if vol.ignore is None else ~vol.ignore[sl]
    cube = (size,) * 3
    image = _pad_to(vol.image[sl], cube, "reflect" if min(extent) > 1 else "edge")
    target = _pad_to(vol.target[sl], cube, "constant")
    valid = _pad_to(valid, cube, "constant")
    return image, target, valid


def make_batch(volumes, cfg: TrainConfig, rng: np.random.Generator):
    """A batch of patches as tensors (B, 1, P, P, P): image, target, valid."""
    images, targets, valids = [], [], []
    for _ in range(cfg.batch_size):
        vol = volumes[int(rng.integers(len(volumes)))]
        patch = sample_patch(vol, cfg.patch_size, rng, rng.uniform() < cfg.foreground_fraction)
        if cfg.augment:
            patch = augment(*patch, rng, level=cfg.augment_level)
        for lst, a in zip((images, targets, valids), patch, strict=True):
            lst.append(a)

    def stack(arrays, dtype):
        return torch.from_numpy(np.stack(arrays)[:, None].astype(dtype))

    return stack(images, np.float32), stack(targets, np.float32), stack(valids, np.float32)


# --- loss and metric -----------------------------------------------------------------------


def masked_bce(logits, target, weight):
    """Binary cross-entropy of ``logits`` against ``target`` (labels, or a teacher's
    probabilities), averaged over the voxels where ``weight`` is 1; 0 where there are none."""
    total = F.binary_cross_entropy_with_logits(logits, target, weight=weight, reduction="sum")
    return total / weight.sum().clamp_min(1.0)


def dice_bce_loss(logits, target, valid, dice_weight: float = 1.0, bce_weight: float = 1.0):
    """Soft Dice + binary cross-entropy over the valid voxels of a batch."""
    bce = masked_bce(logits, target, valid)
    prob = torch.sigmoid(logits) * valid
    inter = (prob * target).sum()
    dice = 1 - (2 * inter + 1.0) / (prob.sum() + (target * valid).sum() + 1.0)
    return dice_weight * dice + bce_weight * bce


def predict_tiles(model, image: np.ndarray, tile: int, device, batch: int = 4) -> np.ndarray:
    """Probability map of a whole, already normalised volume from non-overlapping tiles.

    The quick tiling used for validation during training; whole tomograms are predicted by
    :func:`analysis.inference.predict`, with overlaps, resampling and normalisation.

    Parameters
    ----------
    model : torch.nn.Module or analysis.models.Predictor
        A network (a float32 copy prepared for prediction is run; ``model`` is left as it
        is), or a predictor.
    image : numpy.ndarray, float32, shape (z, y, x)
    tile : int
        Tile edge (voxels).
    device : str or torch.device
    batch : int
        Tiles per forward pass.
    """
    from analysis.inference.tiling import sliding_window

    if not isinstance(model, Predictor):
        model = Predictor(model, device=device, precision="float32")
    return sliding_window(
        image,
        lambda cubes: model(cubes[:, None])[:, 0],
        tile,
        overlap=0.0,
        batch_size=batch,
        mode="constant",
    )


def validation_dice(model, volumes, tile: int, device) -> float:
    """Mean Dice (probability > 0.5) over whole validation volumes."""
    predictor = Predictor(model, device=device, precision="float32")
    scores = []
    for vol in volumes:
        prob = predict_tiles(predictor, vol.image, tile, device)
        valid = None if vol.ignore is None else ~vol.ignore
        scores.append(dice_score(prob > 0.5, vol.target, valid))
    return float(np.mean(scores)) if scores else float("nan")


class StartingPoint:
    """What a fine-tuning is held to: the network it starts from, frozen.

    Parameters
    ----------
    network : torch.nn.Module
        The starting network; a frozen copy is kept, ``network`` itself is left as it is.
    distill_weight, anchor_weight : float
        Weight of the distillation term, and share of the pull per unit learning rate
        (:class:`TrainConfig`). Neither holds the BatchNorm running statistics, which
        training re-estimates from its own batches.
    """

    def __init__(self, network: torch.nn.Module, distill_weight: float, anchor_weight: float):
        import copy

        if distill_weight < 0 or anchor_weight < 0:
            raise ParameterError("distill and anchor weights must be 0 or positive")
        self.network = copy.deepcopy(network).eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        self.distill_weight = distill_weight
        self.anchor_weight = anchor_weight

    def penalty(self, image, logits, valid):
        """The distillation term added to the loss of one batch (a 0-d tensor)."""
        if not self.distill_weight:
            return logits.new_zeros(())
        with torch.no_grad():
            target = torch.sigmoid(self.network(image).float())
        return self.distill_weight * masked_bce(logits, target, valid)

    def pull(self, model, lr: float) -> None:
        """After an optimiser step: move every weight ``lr · anchor_weight`` of the way back to
        its starting value.

        Apart from the gradient on purpose: as a squared distance in the loss, the pull passes
        through Adam's normalisation, which makes it a step of the full learning rate back and
        forth around the start for every weight the labels leave alone; applied here, its
        strength is that of ``anchor_weight`` alone.
        """
        if not self.anchor_weight:
            return
        share = min(lr * self.anchor_weight, 1.0)
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), self.network.parameters(), strict=True):
                p.lerp_(p0, share)


# --- the loop ------------------------------------------------------------------------------


def _schedule(cfg: TrainConfig):
    total = max(cfg.epochs * cfg.steps_per_epoch, 1)
    warm = min(cfg.warmup_steps, total - 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = (step - warm) / max(total - warm, 1)
        return float(
            0.5 * (1 + np.cos(np.pi * min(progress, 1.0)))
        )  # python float: checkpoints load weights-only

    return factor


METRIC_COLUMNS = ["epoch", "step", "train_loss", "val_dice", "lr", "seconds"]


def _inherited_normalisation(given: dict | None, recorded: dict | None) -> dict | None:
    """The normalisation of a network trained on from one that recorded ``recorded``."""
    if given is not None and recorded and dict(given) != dict(recorded):
        raise ParameterError(
            f"normalisation {given} differs from {recorded}, that of the network trained on: "
            "normalise the volumes as it was trained (or leave normalisation out)"
        )
    return recorded or given


def _check_same_hold(state: dict, cfg: TrainConfig, checkpoint: Path) -> None:
    """Refuse to resume a run with other distillation or anchor weights than it started with."""
    before = state.get("train_config") or {}
    for key in ("distill_weight", "anchor_weight"):
        if float(before.get(key, 0.0)) != float(getattr(cfg, key)):
            raise ParameterError(
                f"{checkpoint} was trained with {key} {before.get(key, 0.0)}, not "
                f"{getattr(cfg, key)}: resume it with the same setting"
            )


def _write_metrics(path: Path, history: list[dict]) -> None:
    from analysis.io.atomic import atomic_output

    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS)
        writer.writeheader()
        writer.writerows(history)


def train(
    train_volumes: list[TrainingVolume],
    val_volumes: list[TrainingVolume],
    checkpoint: str | os.PathLike,
    *,
    voxel_size_nm: float,
    model_config: UNetConfig | None = None,
    config: TrainConfig | None = None,
    data: dict | None = None,
    resume: bool = False,
    init_from: str | os.PathLike | None = None,
    normalisation: dict | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> tuple[UNet3D, list[dict]]:
    """Train (or fine-tune, or resume training of) a 3D U-Net.

    Parameters
    ----------
    train_volumes, val_volumes : list of TrainingVolume
    checkpoint : path
        Written at the end of every epoch (model, optimiser, scheduler, RNG states, history);
        the metrics go beside it as ``<checkpoint stem>_metrics.csv``.
    voxel_size_nm : float
        Voxel size of the training data, recorded for inference.
    model_config : UNetConfig, optional
        Architecture of a new network (ignored when resuming or fine-tuning).
    config : TrainConfig, optional
    data : dict, optional
        Description of the training data, stored in the checkpoint.
    resume : bool
        Continue from ``checkpoint`` if it exists, bit-identically on the CPU.
    init_from : str, path or (network, checkpoint), optional
        Start from the weights of this network (fine-tuning) instead of random ones, named as
        :func:`analysis.models.load` takes it: a checkpoint, a shipped name, a Keras ``.h5``
        or ``"cryovesnet"`` (CryoVesNet's published network).
    normalisation : dict, optional
        How the volumes were normalised, recorded for inference: by default that of the
        network fine-tuned (``init_from``) or resumed, else
        :data:`analysis.normalise.DEFAULT_NORMALISATION`. A fine-tuned network keeps the
        normalisation of the one it starts from: normalise the volumes with it
        (:func:`volume_from_files`); another one is refused.
    stop_after_epoch : int, optional
        Stop after this epoch, as an interruption would (used to test resuming).
    progress : bool
        Show a progress bar.

    Returns
    -------
    (model, history)
        The trained model (evaluation mode) and one dict per epoch with :data:`METRIC_COLUMNS`.
    """
    from tqdm.auto import tqdm

    cfg = config or TrainConfig()
    checkpoint = Path(checkpoint)
    device = select_device(cfg.device)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    held = cfg.distill_weight or cfg.anchor_weight
    if held and init_from is None:
        raise ParameterError(
            "distill_weight and anchor_weight hold a fine-tuning to the network it starts "
            "from: give init_from (--init-from)"
        )
    resuming = resume and checkpoint.exists()
    # the starting network, read once: the model of a new fine-tuning, and what a held one
    # (also when resumed) is held to
    started = load(init_from) if init_from is not None and (held or not resuming) else None
    state = None
    start_metrics = None  # the curves of the network fine-tuned, kept with its own
    start_point = None
    if held:
        start_point = StartingPoint(started[0], cfg.distill_weight, cfg.anchor_weight)
        start_point.network.to(device)
    if resuming:
        state = read_checkpoint(checkpoint)
        model = build_network(state["config"])
        model.load_state_dict(state["model_state"])
        normalisation = _inherited_normalisation(normalisation, state["normalisation"])
        start_metrics = (state.get("metrics") or {}).get("start")
        _check_same_hold(state, cfg, checkpoint)
    elif started is not None:
        model, start = started
        normalisation = _inherited_normalisation(normalisation, start["normalisation"])
        start_metrics = metrics_with_history(start)
    else:
        model = UNet3D(model_config)
    model.to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, _schedule(cfg))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: list[dict] = []
    first_epoch = 1
    if state is not None:
        optimiser.load_state_dict(state["optimiser_state"])
        scheduler.load_state_dict(state["scheduler_state"])
        rng.bit_generator.state = state["numpy_rng_state"]
        torch.set_rng_state(state["torch_rng_state"])
        history = list(state["history"])
        first_epoch = int(state["epoch"]) + 1

    metrics_path = checkpoint.with_name(f"{checkpoint.stem}_metrics.csv")
    step = (first_epoch - 1) * cfg.steps_per_epoch
    for epoch in range(first_epoch, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        losses = []
        bar = tqdm(
            range(cfg.steps_per_epoch),
            desc=f"epoch {epoch}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        for _ in bar:
            image, target, valid = (t.to(device) for t in make_batch(train_volumes, cfg, rng))
            optimiser.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=use_amp):
                logits = model(image)
            loss = dice_bce_loss(logits.float(), target, valid, cfg.dice_weight, cfg.bce_weight)
            if start_point is not None:
                loss = loss + start_point.penalty(image, logits.float(), valid)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            if start_point is not None:
                start_point.pull(model, optimiser.param_groups[0]["lr"])
            scheduler.step()
            step += 1
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        if epoch % max(cfg.val_every, 1) == 0 or epoch == cfg.epochs:
            val = validation_dice(model, val_volumes, cfg.val_patch_size, device)
        else:
            val = float("nan")
        history.append(
            {
                "epoch": epoch,
                "step": step,
                "train_loss": float(np.mean(losses)),
                "val_dice": val,
                "lr": float(scheduler.get_last_lr()[0]),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        if progress:
            print(f"epoch {epoch}: loss {history[-1]['train_loss']:.4f}, validation Dice {val:.4f}")
        save_checkpoint(
            checkpoint,
            model,
            voxel_size_nm=voxel_size_nm,
            normalisation=normalisation or DEFAULT_NORMALISATION,
            seed=cfg.seed,
            data=data or {},
            metrics={"val_dice": val, "epoch": epoch}
            | ({"start": start_metrics} if start_metrics else {}),
            optimiser_state=optimiser.state_dict(),
            scheduler_state=scheduler.state_dict(),
            numpy_rng_state=rng.bit_generator.state,
            torch_rng_state=torch.get_rng_state(),
            history=history,
            epoch=epoch,
            train_config=asdict(cfg),
        )
        _write_metrics(metrics_path, history)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            break
    return model.eval(), history


def shipped_recipe(cache_dir: str | os.PathLike) -> list[list[str]]:
    """The commands that made the shipped network, as ``analysis`` argument lists.

    Ten steps (book chapter 2, section 6): the first network on the nominal synthetic set; its
    fine-tuning on the nominal and varied (version 1 at the time) sets; two fine-tunings of that
    on varied version 2 and the mean of the three (the third shipped network); two fine-tunings
    of the mean on varied version 3, one more of each on twice as many tomograms, and the mean
    of those two with the third network. Run in order, each writes a checkpoint in
    ``cache_dir``, and the last step writes the network made as the shipped one was (today's
    generator makes varied version 3 only, so the same recipe, not the same bytes).

    Returns
    -------
    list of list of str
        One argument list per step, for :func:`analysis.cli.main` (or ``analysis`` in a shell).
    """
    cache = Path(cache_dir)

    def ckpt(name: str) -> str:
        return str(cache / f"sv_unet3d_{name}.pt")

    def robust(out, init, varied, epochs, lr, seed):
        return [
            "train", ckpt(out), "--synthetic", "--varied", str(varied), "--epochs", str(epochs),
            "--steps-per-epoch", "100", "--val-every", "5", "--lr", lr, "--seed", str(seed),
            "--augment-level", "robust", "--init-from", ckpt(init),
        ]  # fmt: skip

    first = ["train", ckpt("first"), "--synthetic", "--epochs", "30", "--steps-per-epoch", "60"]
    return [
        first + ["--seed", "0", "--augment-level", "physics"],
        robust("v2_train", "first", 96, 10, "1e-3", 0),
        robust("v3_train", "v2_train", 96, 10, "5e-4", 1),
        robust("v4_train", "v2_train", 96, 20, "5e-4", 2),
        ["average-weights", ckpt("v2_train"), ckpt("v3_train"), ckpt("v4_train")]
        + ["--out", ckpt("soup")],
        robust("v6_train", "soup", 96, 10, "5e-4", 1),
        robust("v7_train", "soup", 96, 10, "5e-4", 2),
        robust("v8_train", "v6_train", 192, 10, "3e-4", 3),
        robust("v9_train", "v7_train", 192, 10, "3e-4", 4),
        ["average-weights", ckpt("soup"), ckpt("v8_train"), ckpt("v9_train")]
        + ["--out", ckpt("soup2")],
    ]
