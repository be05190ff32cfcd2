"""Voxel overlap: Dice of binary masks and soft Dice of probability maps."""

from __future__ import annotations

import numpy as np


def dice_score(pred: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Binary Dice ``2 |P ∩ T| / (|P| + |T|)`` of two masks of the same shape.

    Parameters
    ----------
    pred, target : numpy.ndarray, shape (z, y, x)
        Masks (any dtype; non-zero = foreground).
    valid : numpy.ndarray of bool, optional
        Region to score in (e.g. the cytoplasm outline); voxels outside it are ignored.

    Returns
    -------
    float
        In [0, 1]; 1.0 when both masks are empty.
    """
    pred = np.asarray(pred).astype(bool)
    target = np.asarray(target).astype(bool)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and truth {target.shape} differ in shape")
    if valid is not None:
        pred = pred & valid
        target = target & valid
    total = int(pred.sum()) + int(target.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & target).sum()) / total


def soft_dice(
    probability: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None
) -> float:
    """Soft Dice ``2 Σ p t / (Σ p + Σ t)`` of a probability map with a binary truth.

    The measure CryoVesNet reports for the network mask: confident errors cost more than
    hesitant ones. Equals :func:`dice_score` for a binary ``probability``.
    """
    p = np.asarray(probability, dtype=np.float64)
    t = np.asarray(target).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"probability {p.shape} and truth {t.shape} differ in shape")
    if valid is not None:
        p = np.where(valid, p, 0.0)
        t = t & valid
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2.0 * p[t].sum() / total)


#: Vesicles whose visible part is centred within this distance (nm) of a face are not scored by
#: the benchmarks and chapters that use :func:`interior_mask`, in the truth or the prediction:
#: the simulators cut vesicles by the faces (down to half-radius caps), and what is left of them
#: is a matter of the volume's edge, not of the network.
BORDER_NM = 10.0


def interior_mask(shape, voxel_size_nm: float, border_nm: float = BORDER_NM) -> np.ndarray:
    """Boolean (z, y, x) mask of ``shape``: True further than ``border_nm`` from every face.

    Passed as ``region_mask`` to :func:`analysis.evaluate.evaluate_segmentation`, it leaves out
    the vesicles whose visible part is centred near a face (caps of vesicles cut by the volume,
    in the truth and in the prediction alike). The margin is ``border_nm / voxel_size_nm``
    rounded up to whole voxels; ``border_nm`` defaults to :data:`BORDER_NM` (10 nm).
    """
    margin = int(np.ceil(border_nm / voxel_size_nm))
    mask = np.zeros(shape, bool)
    mask[tuple(slice(margin, max(n - margin, margin)) for n in shape)] = True
    return mask
