"""Figures shared by several notebooks: orthogonal slices, overlays, spectra, a slice viewer.

Every function takes (z, y, x) arrays and returns the matplotlib figure it drew, so notebooks
stay short and the drawing code stays testable.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap


def _label_colours(n: int, seed: int = 0) -> ListedColormap:
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.25, 1.0, size=(max(n, 1) + 1, 4))
    colours[:, 3] = 1.0
    colours[0] = (0, 0, 0, 0)  # background transparent
    return ListedColormap(colours)


def _robust_limits(volume: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(volume, [1, 99])
    return float(lo), float(hi)


def orthoslices(
    volume: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    centre: tuple[int, int, int] | None = None,
    voxel_size_nm: float | None = None,
    alpha: float = 0.35,
    title: str | None = None,
):
    """Central xy, xz and yz slices of a (z, y, x) volume, optionally with a label overlay.

    Parameters
    ----------
    volume : numpy.ndarray, shape (z, y, x)
    labels : numpy.ndarray, shape (z, y, x), optional
        Integer labels drawn in colour over the slices (0 transparent).
    centre : tuple of int, optional
        Voxel (z, y, x) where the three planes cross; the middle of the volume by default.
    voxel_size_nm : float, optional
        Label the axes in nm instead of voxels.
    """
    nz, ny, nx = volume.shape
    cz, cy, cx = centre or (nz // 2, ny // 2, nx // 2)
    scale = voxel_size_nm or 1.0
    unit = "nm" if voxel_size_nm else "voxels"
    vmin, vmax = _robust_limits(volume)
    planes = [
        (f"xy (z = {cz})", volume[cz], None if labels is None else labels[cz], ("x", "y")),
        (f"xz (y = {cy})", volume[:, cy], None if labels is None else labels[:, cy], ("x", "z")),
        (
            f"yz (x = {cx})",
            volume[:, :, cx],
            None if labels is None else labels[:, :, cx],
            ("y", "z"),
        ),
    ]
    widths = [nx, nx, ny]
    fig, axes = plt.subplots(
        1, 3, figsize=(12, 4.2), gridspec_kw={"width_ratios": widths}, constrained_layout=True
    )
    cmap = _label_colours(int(labels.max()) if labels is not None else 0)
    for ax, (name, img, lab, (h, v)) in zip(axes, planes, strict=True):
        extent = (0, img.shape[1] * scale, img.shape[0] * scale, 0)
        ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, extent=extent, interpolation="nearest")
        if lab is not None:
            ax.imshow(
                lab,
                cmap=cmap,
                vmin=0,
                vmax=cmap.N - 1,
                alpha=alpha * (lab > 0),
                extent=extent,
                interpolation="nearest",
            )
        ax.set_title(name)
        ax.set_xlabel(f"{h} ({unit})")
        ax.set_ylabel(f"{v} ({unit})")
    if title:
        fig.suptitle(title)
    return fig


def xz_power_spectrum(volume: np.ndarray) -> np.ndarray:
    """Log power spectrum of the (z, x) planes, averaged over y, zero frequency centred.

    The tilt axis is y, so the missing wedge shows in this plane as two empty sectors around
    the k_z axis.
    """
    spec = np.abs(np.fft.fft2(volume - volume.mean(), axes=(0, 2))) ** 2
    return np.log10(np.fft.fftshift(spec.mean(axis=1)) + 1e-12)


def missing_wedge_figure(volume: np.ndarray, max_tilt_deg: float | None = None):
    """Show the missing wedge: the xz power spectrum with the measured tilt range marked."""
    ps = xz_power_spectrum(volume)
    nz, nx = ps.shape
    fig, ax = plt.subplots(figsize=(5, 5 * nz / nx + 0.6), constrained_layout=True)
    ax.imshow(ps, cmap="magma", extent=(-0.5, 0.5, -0.5, 0.5), aspect="auto")
    ax.set_xlabel("$k_x$ (1/voxel)")
    ax.set_ylabel("$k_z$ (1/voxel)")
    ax.set_title("power spectrum of xz planes")
    if max_tilt_deg is not None:
        # Sampled directions reach max_tilt from the k_x axis; beyond them lies the wedge.
        t = np.deg2rad(max_tilt_deg)
        for sign in (1, -1):
            ax.plot([-0.5, 0.5], [sign * -0.5 * np.tan(t), sign * 0.5 * np.tan(t)], "c--", lw=1)
        ax.set_ylim(-0.5, 0.5)
    return fig


def slice_viewer(volume: np.ndarray, labels: np.ndarray | None = None, *, alpha: float = 0.35):
    """Interactive xy slice viewer (ipywidgets): a slider over z, labels drawn over the density."""
    import ipywidgets as widgets

    vmin, vmax = _robust_limits(volume)
    cmap = _label_colours(int(labels.max()) if labels is not None else 0)

    def show(z: int, overlay: bool = True):
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(volume[z], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        if overlay and labels is not None:
            ax.imshow(
                labels[z],
                cmap=cmap,
                vmin=0,
                vmax=cmap.N - 1,
                alpha=alpha * (labels[z] > 0),
                interpolation="nearest",
            )
        ax.set_title(f"z = {z}")
        plt.show()

    return widgets.interactive(
        show,
        z=widgets.IntSlider(value=volume.shape[0] // 2, min=0, max=volume.shape[0] - 1),
        overlay=widgets.Checkbox(value=labels is not None, description="annotation"),
    )
