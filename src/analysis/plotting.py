"""Figures shared by several notebooks: orthogonal slices, overlays, spectra, a slice viewer,
and the group comparisons of `analysis compare`.

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


#: Lengths a scale bar may take (nm): round numbers, as a reader compares them with a vesicle.
SCALE_BAR_LENGTHS_NM = (5, 10, 20, 50, 100, 200, 500, 1000)


def add_scale_bar(
    ax,
    voxel_size_nm: float,
    length_nm: float | None = None,
    *,
    width_vox: float | None = None,
    colour: str = "white",
):
    """Draw a scale bar in nm in the lower right corner of an image.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes holding an image drawn one data unit per voxel (``imshow`` without ``extent``).
    voxel_size_nm : float
        nm per data unit of ``ax``: the voxel size for an image drawn in voxels, 1 for one
        drawn in nm.
    length_nm : float, optional
        Length of the bar; by default the longest of :data:`SCALE_BAR_LENGTHS_NM` that fits
        into a quarter of the image's width (``width_vox``).
    width_vox : float, optional
        The image's width in data units; the x range of ``ax`` by default.
    colour : str

    Returns
    -------
    mpl_toolkits.axes_grid1.anchored_artists.AnchoredSizeBar
        The bar, ``length_nm / voxel_size_nm`` data units long.
    """
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    if not voxel_size_nm > 0:
        raise ValueError(f"voxel_size_nm must be positive, got {voxel_size_nm}")
    if length_nm is None:
        if width_vox is None:
            left, right = ax.get_xlim()
            width_vox = abs(right - left)
        length_nm = _bar_length_nm(width_vox * voxel_size_nm)
    bar = AnchoredSizeBar(
        ax.transData,
        length_nm / voxel_size_nm,
        f"{length_nm:g} nm",
        "lower right",
        pad=0.4,
        sep=3,
        color=colour,
        frameon=False,
        size_vertical=max(length_nm / voxel_size_nm / 25, 0.5),
        fontproperties={"size": 8},
    )
    ax.add_artist(bar)
    return bar


def _bar_length_nm(width_nm: float) -> float:
    """The longest of :data:`SCALE_BAR_LENGTHS_NM` within a quarter of ``width_nm``."""
    fitting = [n for n in SCALE_BAR_LENGTHS_NM if n <= width_nm / 4]
    return fitting[-1] if fitting else SCALE_BAR_LENGTHS_NM[0]


def _scale_bars(axes, voxel_size_nm: float | None) -> None:
    """A scale bar on each of ``axes`` (images in voxels) when the voxel size is known."""
    if voxel_size_nm:
        for ax in np.ravel(axes):
            add_scale_bar(ax, voxel_size_nm)


def t_interval(values, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of a mean: mean ± t((1 + confidence) / 2, n - 1) · sd / √n.

    With the synapse as the unit, ``values`` are the synapse means of one group; seaborn's
    ``errorbar`` takes this function as it is. Its percentile bootstrap (``("ci", 95)``) covers
    a mean of six values in only about 88 % of experiments: it is too narrow by (n - 1)/n in
    the variance and by z instead of t.

    Parameters
    ----------
    values : array-like of float, shape (n,)
    confidence : float

    Returns
    -------
    (float, float)
        Lower and upper end; (nan, nan) for fewer than two finite values.
    """
    from scipy import stats

    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        return float("nan"), float("nan")
    mean = values.mean()
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * values.std(ddof=1)
    half /= np.sqrt(len(values))
    return float(mean - half), float(mean + half)


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
        Label the axes in nm instead of voxels, and draw a scale bar (:func:`add_scale_bar`).
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
    # one bar length for all three planes, so that they read alike
    bar_nm = _bar_length_nm(min(nx, ny) * scale) if voxel_size_nm else None
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
        if voxel_size_nm:
            add_scale_bar(ax, 1.0, bar_nm)  # these axes are drawn in nm
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


def overlay_rgb(
    image: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    alpha: float = 0.35,
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """A 2-D slice as an RGB array (uint8), grey density with labels blended in colour.

    Parameters
    ----------
    image : numpy.ndarray, shape (y, x)
    labels : numpy.ndarray, shape (y, x), optional
        0 = background (not coloured), positive ids coloured as in :func:`orthoslices`.
    limits : tuple of float, optional
        Grey-level range; the 1st and 99th percentiles of ``image`` by default.
    """
    lo, hi = limits or _robust_limits(image)
    grey = np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    if labels is not None:
        colours = _label_colours(int(labels.max()))
        tint = colours(labels)[..., :3]
        mask = (labels > 0)[..., None]
        rgb = np.where(mask, (1 - alpha) * rgb + alpha * tint, rgb)
    return (rgb * 255).round().astype(np.uint8)


def slice_viewer(volume: np.ndarray, labels: np.ndarray | None = None, *, alpha: float = 0.35):
    """Interactive xy slice viewer (ipywidgets): a slider over z, labels drawn over the density.

    The slice is drawn straight into an ``Image`` widget (no matplotlib figure per move of the
    slider). A live widget needs a running kernel: notebooks tag the cell that shows it
    ``skip-execution``, because headless execution (nbclient, used by the book build and the
    tests) intermittently stalls for the whole cell timeout after a widget is displayed.
    """
    import io as _bytes_io

    import ipywidgets as widgets
    from matplotlib.image import imsave

    limits = _robust_limits(volume)
    slider = widgets.IntSlider(
        value=volume.shape[0] // 2, min=0, max=volume.shape[0] - 1, description="z"
    )
    overlay = widgets.Checkbox(
        value=labels is not None, description="annotation", disabled=labels is None
    )
    picture = widgets.Image(format="png")

    def draw(_change=None) -> None:
        z = slider.value
        rgb = overlay_rgb(
            volume[z],
            labels[z] if labels is not None and overlay.value else None,
            alpha=alpha,
            limits=limits,
        )
        buffer = _bytes_io.BytesIO()
        imsave(buffer, rgb, format="png")
        picture.value = buffer.getvalue()

    slider.observe(draw, names="value")
    overlay.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([slider, overlay]), picture])


def learning_curves(history):
    """Training loss and validation Dice per epoch (seaborn), from a training history.

    Parameters
    ----------
    history : pandas.DataFrame or list of dict
        Columns ``epoch``, ``train_loss``, ``val_dice`` (as written by ``analysis.train``), and
        optionally ``run``: one line per run (the parts of an averaged network,
        :func:`analysis.models.training_history`).
    """
    import pandas as pd
    import seaborn as sns

    frame = pd.DataFrame(history)
    by_run = {"hue": "run"} if "run" in frame else {}
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    sns.lineplot(data=frame, x="epoch", y="train_loss", marker="o", ax=ax_loss, **by_run)
    ax_loss.set_ylabel("training loss (Dice + BCE)")
    validated = frame.dropna(subset=["val_dice"])  # epochs without validation have none
    sns.lineplot(
        data=validated,
        x="epoch",
        y="val_dice",
        marker="o",
        ax=ax_dice,
        **(by_run or {"color": "tab:green"}),
    )
    ax_dice.set_ylabel("validation Dice")
    ax_dice.set_ylim(0, 1)
    best = frame["val_dice"].max()
    ax_dice.axhline(best, ls="--", color="grey", lw=1)
    ax_dice.set_title(f"best {best:.3f}")
    return fig


def prediction_figure(
    image: np.ndarray,
    probability: np.ndarray,
    target: np.ndarray,
    z: int,
    *,
    voxel_size_nm: float | None = None,
):
    """One xy slice: the tomogram, the predicted probability, and prediction vs truth.

    Parameters
    ----------
    image, probability, target : numpy.ndarray, shape (z, y, x)
    z : int
        The slice shown.
    voxel_size_nm : float, optional
        Draw a scale bar in nm on each panel.
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5), constrained_layout=True)
    lo, hi = _robust_limits(image[z])
    axes[0].imshow(image[z], cmap="gray", vmin=lo, vmax=hi)
    axes[0].set_title(f"tomogram, z = {z}")
    im = axes[1].imshow(probability[z], cmap="magma", vmin=0, vmax=1)
    fig.colorbar(im, ax=axes[1], shrink=0.8, label="vesicle probability")
    axes[1].set_title("network output")
    pred = probability[z] > 0.5
    truth = target[z] > 0
    # true positives white, false positives red, false negatives blue
    rgb = np.zeros(pred.shape + (3,))
    rgb[pred & truth] = 1.0
    rgb[pred & ~truth] = (0.9, 0.2, 0.2)
    rgb[~pred & truth] = (0.2, 0.4, 1.0)
    axes[2].imshow(rgb)
    axes[2].set_title("agreement (white), false pos. (red), missed (blue)")
    for ax in axes:
        ax.set_axis_off()
    _scale_bars(axes, voxel_size_nm)
    return fig


def patch_gallery(patches, titles=None, *, voxel_size_nm: float | None = None):
    """Central xy slices of training patches: image on top, label outline below.

    Parameters
    ----------
    patches : list of (image, target) pairs, each (z, y, x)
    titles : list of str, optional
    voxel_size_nm : float or list of float, optional
        Draw a scale bar in nm under each patch (one voxel size, or one per patch).
    """
    n = len(patches)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.4), constrained_layout=True, squeeze=False)
    for i, (image, target) in enumerate(patches):
        z = image.shape[0] // 2
        lo, hi = _robust_limits(image)
        axes[0, i].imshow(image[z], cmap="gray", vmin=lo, vmax=hi)
        axes[1, i].imshow(image[z], cmap="gray", vmin=lo, vmax=hi)
        axes[1, i].contour(target[z], levels=[0.5], colors="yellow", linewidths=1)
        if titles:
            axes[0, i].set_title(titles[i])
        for ax in axes[:, i]:
            ax.set_axis_off()
        if voxel_size_nm is not None:
            _scale_bars(axes[:, i], np.broadcast_to(voxel_size_nm, (n,))[i])
    return fig


def map_panels(
    panels: dict[str, np.ndarray],
    *,
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = None,
    label: str = "",
    grid: tuple[list[int], list[int]] | None = None,
    voxel_size_nm: float | None = None,
):
    """A row of 2-D maps on one colour scale, e.g. the same slice under different settings.

    Parameters
    ----------
    panels : dict of str to numpy.ndarray, each (y, x)
        Title → image.
    cmap, vmin, vmax : colour map and limits shared by all panels (default: their range).
    label : str
        Colour-bar label.
    grid : (list of int, list of int), optional
        y and x positions of lines to draw on every panel (e.g. tile borders).
    voxel_size_nm : float, optional
        Draw a scale bar in nm on each panel.
    """
    images = list(panels.values())
    vmin = min(float(np.min(i)) for i in images) if vmin is None else vmin
    vmax = max(float(np.max(i)) for i in images) if vmax is None else vmax
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.4), constrained_layout=True, squeeze=False)
    for ax, (title, image) in zip(axes[0], panels.items(), strict=True):
        im = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
        if grid is not None:
            for y in grid[0]:
                ax.axhline(y - 0.5, color="cyan", lw=0.6, alpha=0.7)
            for x in grid[1]:
                ax.axvline(x - 0.5, color="cyan", lw=0.6, alpha=0.7)
        ax.set_title(title)
        ax.set_axis_off()
    _scale_bars(axes, voxel_size_nm)
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label=label)
    return fig


def label_panels(
    image: np.ndarray, panels: dict, *, alpha: float = 0.45, voxel_size_nm: float | None = None
):
    """A row of the same 2-D slice with different label images blended in colour.

    Parameters
    ----------
    image : numpy.ndarray, shape (y, x)
        The tomogram slice.
    panels : dict of str to numpy.ndarray or None
        Title → label slice (y, x), 0 = background; ``None`` shows the slice alone.
    voxel_size_nm : float, optional
        Draw a scale bar in nm on each panel.
    """
    limits = _robust_limits(image)
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.4), constrained_layout=True, squeeze=False)
    for ax, (title, labels) in zip(axes[0], panels.items(), strict=True):
        ax.imshow(overlay_rgb(image, labels, alpha=alpha, limits=limits))
        ax.set_title(title)
        ax.set_axis_off()
    _scale_bars(axes, voxel_size_nm)
    return fig


#: Colours of the outcome of a vesicle in figures: kept, dropped, and per detection outcome.
OUTCOME_COLOURS = {
    "kept": "lime",
    "dropped": "red",
    "true positive": "lime",
    "false positive": "red",
    "missed": "deepskyblue",
}


def sphere_sections(
    image: np.ndarray,
    table,
    z: int,
    *,
    colour_by: str = "kept",
    voxel_size_nm: float | None = None,
    ax=None,
):
    """A tomogram slice with the cross-section of every sphere of a vesicle table.

    Parameters
    ----------
    image : numpy.ndarray, shape (z, y, x)
    table : pandas.DataFrame
        Vesicle table (``z_vox, y_vox, x_vox, radius_vox``). With ``colour_by="kept"`` its
        ``kept`` column colours circles green (kept) or red (dropped, with ``drop_reason``
        written beside it); otherwise ``colour_by`` names a column of outcome names from
        :data:`OUTCOME_COLOURS`.
    z : int
        The slice; spheres cut by it are drawn with their radius in that plane.
    voxel_size_nm : float, optional
        Draw a scale bar in nm.
    """
    from matplotlib.patches import Circle

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * image.shape[1] / image.shape[2]))
    lo, hi = _robust_limits(image[z])
    ax.imshow(image[z], cmap="gray", vmin=lo, vmax=hi)
    for row in table.itertuples():
        half = row.radius_vox**2 - (row.z_vox - z) ** 2
        if half <= 0:
            continue
        if colour_by == "kept":
            outcome = "kept" if row.kept else "dropped"
        else:
            outcome = getattr(row, colour_by)
        colour = OUTCOME_COLOURS[outcome]
        ax.add_patch(Circle((row.x_vox, row.y_vox), np.sqrt(half), fill=False, ec=colour, lw=1))
        if colour_by == "kept" and not row.kept:
            ax.text(row.x_vox, row.y_vox, row.drop_reason, color=colour, fontsize=7, ha="center")
    ax.set_axis_off()
    ax.set_title(f"z = {z}")
    _scale_bars(ax, voxel_size_nm)
    return ax.figure


def radial_profiles(profiles, radii_vox, *, bin_vox: float = 0.5, kept=None, ax=None):
    """Radial density profiles against the distance from the centre scaled by the radius.

    Parameters
    ----------
    profiles : list of numpy.ndarray
        Mean density in shells of ``bin_vox`` voxels around each vesicle's centre.
    radii_vox : array of float
        Each vesicle's radius (outer edge of the membrane); r / radius = 1 is that edge.
    kept : array of bool, optional
        Dropped vesicles are drawn in red.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    kept = np.ones(len(profiles), bool) if kept is None else np.asarray(kept, bool)
    grid = np.linspace(0, 1.5, 61)
    scaled = []
    for profile, radius, keep in zip(profiles, radii_vox, kept, strict=True):
        r = (np.arange(len(profile)) + 0.5) * bin_vox / radius
        ok = np.isfinite(profile)
        if ok.sum() < 2:
            continue
        values = np.interp(grid, r[ok], profile[ok], right=np.nan)
        ax.plot(grid, values, color="grey" if keep else "red", lw=0.5, alpha=0.3 if keep else 0.8)
        if keep:
            scaled.append(values)
    if scaled:
        stack = np.array(scaled)
        covered = np.isfinite(stack).any(axis=0)  # beyond the longest profile: nothing to show
        median = np.full(len(grid), np.nan)
        median[covered] = np.nanmedian(stack[:, covered], axis=0)
        ax.plot(grid, median, color="black", lw=2.5, label="median (kept)")
        ax.legend()
    ax.axvline(1.0, color="lime", ls="--", lw=1)
    ax.set_xlabel("distance from centre / radius")
    ax.set_ylabel("tomogram density (a.u.)")
    return ax.figure


def vesicles_3d(
    table,
    *,
    colour_by: str | None = None,
    colour_label: str | None = None,
    membrane=None,
    voxel_size_nm=1.0,
    ax=None,
):
    """Vesicles as spheres in 3-D (nm), optionally coloured by a column, above the AZ.

    Parameters
    ----------
    table : pandas.DataFrame
        Vesicle table (``z_vox, y_vox, x_vox, radius_vox``).
    colour_by : str, optional
        Column whose values colour the vesicles (e.g. ``n_tethers``), with a colour bar.
    colour_label : str, optional
        The colour bar's label in words (e.g. "tethers per vesicle"); ``colour_by`` by default.
    membrane : numpy.ndarray of bool, shape (z, y, x), optional
        The AZ membrane, drawn as a thinned point cloud.
    voxel_size_nm : float
        Scale of the axes.
    """
    if ax is None:
        fig = plt.figure(figsize=(7, 6))
        ax = fig.add_subplot(projection="3d")
    if membrane is not None:
        points = np.argwhere(membrane)[:: max(1, int(membrane.sum()) // 4000)]
        ax.scatter(
            points[:, 2] * voxel_size_nm,
            points[:, 0] * voxel_size_nm,
            points[:, 1] * voxel_size_nm,
            s=1,
            c="grey",
            alpha=0.3,
        )
    zyx = table[["z_vox", "y_vox", "x_vox"]].to_numpy(float) * voxel_size_nm
    # marker area grows with the square of the radius, as a sphere's outline does
    size = (table["radius_vox"].to_numpy(float) * voxel_size_nm) ** 2 / 4
    colour = table[colour_by] if colour_by else "tab:blue"
    drawn = ax.scatter(
        zyx[:, 2],
        zyx[:, 0],
        zyx[:, 1],
        s=size,
        c=colour,
        cmap="viridis",
        alpha=0.8,
        edgecolors="k",
        linewidths=0.3,
    )
    if colour_by:
        ax.figure.colorbar(drawn, ax=ax, shrink=0.6, label=colour_label or colour_by)
    ax.set_xlabel("x (nm)")
    ax.set_ylabel("z (nm)")
    ax.set_zlabel("y (nm), away from the AZ")
    return ax.figure


def score_heatmap(
    summary,
    metric: str = "f1",
    *,
    label: str | None = None,
    row_labels=None,
    ax=None,
    vmin: float = 0.5,
):
    """A heat map of one score per (simulator, row) and network, e.g. the cross-domain matrix.

    Parameters
    ----------
    summary : pandas.DataFrame
        Long table with columns ``simulator``, ``row``, ``network`` and ``metric``
        (``benchmarks/cross_domain.py`` writes one).
    metric : str
        Column to show; the cells are annotated with it to two decimals.
    label : str, optional
        The colour bar's label in words (e.g. "vesicle F1"); ``metric`` by default.
    row_labels : mapping, optional
        Display name per row name or per (simulator, row); by default the table's
        ``description`` column, where it has one.
    vmin : float
        Lower end of the colour scale (scores below it share its colour).
    """
    table = summary.pivot_table(
        index=["simulator", "row"], columns="network", values=metric, sort=False
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 1.3 * table.shape[1], 0.8 + 0.32 * len(table)))
    image = ax.imshow(table.to_numpy(), cmap="RdYlGn", vmin=vmin, vmax=1.0, aspect="auto")
    for (i, j), value in np.ndenumerate(table.to_numpy()):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
    if row_labels is None and "description" in summary:
        described = summary.drop_duplicates(["simulator", "row"])
        keys = zip(described["simulator"], described["row"], strict=True)
        row_labels = dict(zip(keys, described["description"], strict=True))
    labels = row_labels or {}
    names = [
        f"{sim}: {labels.get((sim, row), labels.get(row, row))}"
        for sim, row in table.index.to_list()
    ]
    ax.set_yticks(range(len(table)), names, fontsize=8)
    ax.set_xticks(range(table.shape[1]), table.columns, rotation=30, ha="right")
    ax.figure.colorbar(image, ax=ax, label=label or metric, fraction=0.04)
    return ax.figure


def synapse_points(per_synapse, measures, *, group: str = "group"):
    """One panel per measure: each synapse a point, over its group's mean and the 95 %
    Student-t interval of that mean over synapses (:func:`t_interval`).

    Parameters
    ----------
    per_synapse : pandas.DataFrame
        One row per synapse (:func:`analysis.stats.synapse_measures`).
    measures : dict of str to str
        Columns to show and their axis labels.
    """
    import seaborn as sns

    fig, axes = plt.subplots(
        1, len(measures), figsize=(2.6 * len(measures), 3.4), constrained_layout=True
    )
    for ax, (column, label) in zip(np.atleast_1d(axes), measures.items(), strict=True):
        sns.stripplot(per_synapse, x=group, y=column, hue=group, ax=ax, alpha=0.6, legend=False)
        sns.pointplot(
            per_synapse,
            x=group,
            y=column,
            ax=ax,
            color="k",
            errorbar=t_interval,
            linestyle="none",
            marker="_",
            markersize=20,
            capsize=0.15,
        )
        ax.set_xlabel("")
        ax.set_ylabel(label)
    return fig


def fractions_by_distance(per_bin, columns, *, group: str = "group"):
    """Per distance bin, each synapse a point and each group's mean with its 95 % Student-t
    interval over synapses (:func:`t_interval`).

    Parameters
    ----------
    per_bin : pandas.DataFrame
        One row per synapse and bin (:func:`analysis.stats.synapse_bins`).
    columns : dict of str to str
        Columns to show (e.g. ``tethered``) and their axis labels.
    """
    import seaborn as sns

    table = per_bin.assign(
        bin=[f"{a:g}-{b:g}" for a, b in zip(per_bin["from_nm"], per_bin["to_nm"], strict=True)]
    )
    # seaborn divides the dodge by (number of groups - 1): one group must not dodge
    several = table[group].nunique() > 1
    fig, axes = plt.subplots(
        1, len(columns), figsize=(5.5 * len(columns), 3.6), constrained_layout=True
    )
    for ax, (column, label) in zip(np.atleast_1d(axes), columns.items(), strict=True):
        sns.stripplot(table, x="bin", y=column, hue=group, dodge=several, alpha=0.35, ax=ax)
        sns.pointplot(
            table,
            x="bin",
            y=column,
            hue=group,
            dodge=0.4 if several else False,
            errorbar=t_interval,
            linestyle="none",
            capsize=0.1,
            ax=ax,
            legend=False,
        )
        ax.set_xlabel("vesicle membrane to AZ membrane (nm)")
        ax.set_ylabel(label)
    return fig


def density_profiles(density, *, group: str = "group", ax=None):
    """Vesicle volume fraction against distance from the AZ: each group's mean over synapses
    with its 95 % Student-t band (:func:`t_interval`; data: :func:`analysis.stats.layer_density`).
    """
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    sns.lineplot(
        density,
        x="distance_nm",
        y="volume_fraction",
        hue=group,
        errorbar=t_interval,
        ax=ax,
    )
    ax.set_xlabel("distance from the AZ membrane (nm)")
    ax.set_ylabel("vesicle volume fraction")
    return ax.figure
