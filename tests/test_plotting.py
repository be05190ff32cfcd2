"""Figures and the slice viewer draw what they are given."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.image import imread

from analysis import plotting


def test_overlay_rgb_keeps_background_grey_and_tints_labels():
    image = np.tile(np.linspace(0, 1, 8), (8, 1))
    labels = np.zeros((8, 8), int)
    labels[2:4, 2:4] = 1
    rgb = plotting.overlay_rgb(image, labels, limits=(0, 1))
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    background = rgb[labels == 0]
    assert np.all(background[:, 0] == background[:, 1])  # grey: r == g == b
    tinted = rgb[labels == 1].astype(int)
    assert np.any(tinted[:, 0] != tinted[:, 1]) or np.any(tinted[:, 1] != tinted[:, 2])
    assert rgb[0, 0, 0] == 0 and rgb[0, -1, 0] == 255


def test_slice_viewer_redraws_when_the_slider_moves():
    volume = np.zeros((4, 6, 6), np.float32)
    volume[1] = 1.0
    viewer = plotting.slice_viewer(volume)
    slider = viewer.children[0].children[0]
    picture = viewer.children[1]
    slider.value = 0
    dark = imread(io.BytesIO(picture.value))
    slider.value = 1
    bright = imread(io.BytesIO(picture.value))
    assert dark.shape[:2] == (6, 6)
    assert bright[..., :3].mean() > dark[..., :3].mean()


def test_orthoslices_and_wedge_figures_have_their_panels():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(8, 10, 12)).astype(np.float32)
    fig = plotting.orthoslices(volume, (volume > 1).astype(int), voxel_size_nm=2.0)
    assert len(fig.axes) == 3 and fig.axes[0].get_xlabel() == "x (nm)"
    fig = plotting.missing_wedge_figure(volume, max_tilt_deg=60)
    assert plotting.xz_power_spectrum(volume).shape == (8, 12)
    assert len(fig.axes) == 1


def test_training_figures():
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_dice": 0.3 + 0.1 * e} for e in (1, 2, 3)]
    fig = plotting.learning_curves(history)
    assert "best 0.600" in fig.axes[1].get_title()
    # the parts of an averaged network: one line each; epochs without validation are skipped
    runs = [{**row, "run": "part 1"} for row in history] + [
        {"epoch": 1, "train_loss": 0.5, "val_dice": float("nan"), "run": "part 2"},
        {"epoch": 2, "train_loss": 0.4, "val_dice": 0.8, "run": "part 2"},
    ]
    fig = plotting.learning_curves(runs)
    assert len(fig.axes[0].get_lines()) >= 2 and "best 0.800" in fig.axes[1].get_title()
    volume = np.zeros((3, 8, 8), np.float32)
    truth = np.zeros((3, 8, 8), np.uint8)
    truth[1, 2:5, 2:5] = 1
    prob = truth.astype(np.float32)
    prob[1, 6, 6] = 0.9  # one false positive
    fig = plotting.prediction_figure(volume, prob, truth, z=1)
    agreement = fig.axes[2].get_images()[0].get_array()
    assert tuple(agreement[6, 6]) == (0.9, 0.2, 0.2) and tuple(agreement[3, 3]) == (1, 1, 1)
    fig = plotting.patch_gallery([(volume, truth)], ["a"])
    assert fig.axes[0].get_title() == "a"


def test_map_panels_share_one_colour_scale_and_draw_the_grid():
    a = np.zeros((10, 10))
    b = np.full((10, 10), 2.0)
    fig = plotting.map_panels({"a": a, "b": b}, grid=([5], [3, 7]), label="p")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert [im.get_clim() for im in images] == [(0.0, 2.0), (0.0, 2.0)]
    assert len(fig.axes[0].lines) == 3 and fig.axes[0].get_title() == "a"


def test_sphere_sections_draw_one_circle_per_sphere_cut_by_the_slice():
    import pandas as pd

    table = pd.DataFrame(
        {
            "z_vox": [5.0, 5.0, 30.0],
            "y_vox": [10.0, 20.0, 10.0],
            "x_vox": [10.0, 20.0, 10.0],
            "radius_vox": [4.0, 3.0, 4.0],  # the third does not reach z = 5
            "kept": [True, False, True],
            "drop_reason": ["", "too small", ""],
        }
    )
    fig = plotting.sphere_sections(np.zeros((32, 32, 32)), table, z=5)
    circles = fig.axes[0].patches
    assert len(circles) == 2
    assert circles[0].radius == 4.0 and circles[1].get_edgecolor()[0] == 1.0  # dropped: red
    assert [t.get_text() for t in fig.axes[0].texts] == ["too small"]


def test_radial_profiles_plot_the_median_of_the_kept_vesicles():
    profile = np.r_[np.zeros(16), -np.ones(4), np.zeros(10)]
    fig = plotting.radial_profiles(
        [profile, profile, profile + 1], [10.0, 10.0, 10.0], kept=[True, True, False]
    )
    median = [line for line in fig.axes[0].lines if line.get_label() == "median (kept)"][0]
    x, y = median.get_data()
    assert y[np.argmin(np.abs(x - 0.9))] == -1.0  # the membrane dip just inside r = radius
    assert (
        len(plotting.label_panels(np.zeros((8, 8)), {"a": None, "b": np.ones((8, 8), int)}).axes)
        == 2
    )


def test_vesicles_3d_places_one_marker_per_vesicle_in_nm():
    import pandas as pd

    table = pd.DataFrame(
        {
            "z_vox": [1.0, 2.0],
            "y_vox": [3.0, 4.0],
            "x_vox": [5.0, 6.0],
            "radius_vox": [2.0, 4.0],
            "n_tethers": [0, 2],
        }
    )
    membrane = np.zeros((4, 8, 8), bool)
    membrane[:, 0, :] = True
    fig = plotting.vesicles_3d(table, colour_by="n_tethers", membrane=membrane, voxel_size_nm=2.0)
    vesicles = fig.axes[0].collections[-1]
    x, z, y = vesicles._offsets3d
    assert list(x) == [10.0, 12.0] and list(z) == [2.0, 4.0] and list(y) == [6.0, 8.0]
    assert len(fig.axes) == 2  # the plot and its colour bar


def test_score_heatmap_puts_each_score_in_its_cell():
    import pandas as pd

    summary = pd.DataFrame(
        {
            "simulator": ["testsim", "testsim", "testsim", "testsim"],
            "row": ["nominal", "nominal", "tilt50", "tilt50"],
            "network": ["a", "b", "a", "b"],
            "f1": [0.91, 0.5, 0.25, 1.0],
        }
    )
    fig = plotting.score_heatmap(summary, row_labels={"tilt50": "tilt ±50°"})
    ax = fig.axes[0]
    cells = {t.get_text() for t in ax.texts}
    assert cells == {"0.91", "0.50", "0.25", "1.00"}
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "testsim: nominal",
        "testsim: tilt ±50°",
    ]
    image = ax.images[0].get_array()
    assert image[1, 0] == 0.25 and image[0, 1] == 0.5
    plt.close(fig)


def test_score_heatmap_names_rows_by_simulator_and_description():
    import pandas as pd

    summary = pd.DataFrame(
        {
            "simulator": ["testsim", "generator"],
            "row": ["nominal", "nominal"],
            "description": ["100 e/Å²", "SNR 0.5"],
            "network": ["a", "a"],
            "f1": [0.9, 1.0],
        }
    )
    fig = plotting.score_heatmap(summary)
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert names == ["testsim: 100 e/Å²", "generator: SNR 0.5"]
    plt.close(fig)


def test_scale_bar_is_its_length_over_the_voxel_size():
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((100, 200)))
    bar = plotting.add_scale_bar(ax, voxel_size_nm=2.0, length_nm=50)
    assert bar.size_bar.get_children()[0].get_width() == 25.0  # 50 nm / 2 nm a voxel
    assert bar.txt_label.get_text() == "50 nm"
    # by default the longest round length within a quarter of the width: 400 nm / 4 = 100 nm
    bar = plotting.add_scale_bar(ax, voxel_size_nm=2.0)
    assert bar.size_bar.get_children()[0].get_width() == 50.0
    assert bar.txt_label.get_text() == "100 nm"
    plt.close(fig)


def test_image_figures_get_a_scale_bar_when_the_voxel_size_is_known():
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    def bars(ax):
        return [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]

    volume = np.zeros((8, 40, 40), np.float32)
    fig = plotting.label_panels(volume[4], {"a": None}, voxel_size_nm=2.0)
    (bar,) = bars(fig.axes[0])  # 80 nm wide: 20 nm, 10 voxels
    assert bar.size_bar.get_children()[0].get_width() == 10.0
    fig = plotting.label_panels(volume[4], {"a": None})
    assert not bars(fig.axes[0])
    # orthoslices draw in nm: the bar is as many axis units long as it has nm
    fig = plotting.orthoslices(volume, voxel_size_nm=2.0)
    assert [bars(ax)[0].size_bar.get_children()[0].get_width() for ax in fig.axes] == [20.0] * 3
    # a gallery of patches at their own voxel sizes: 40 voxels are 40 nm or 200 nm wide
    patch = (volume, volume > 0)
    fig = plotting.patch_gallery([patch, patch], voxel_size_nm=[1.0, 5.0])
    labels = [bars(ax)[0].txt_label.get_text() for ax in fig.axes[:2]]
    assert labels == ["10 nm", "50 nm"]  # the top row: one patch a column
    plt.close("all")


def test_t_interval_of_six_values():
    values = [1, 2, 3, 4, 5, 6]
    # 3.5 ± t(0.975, 5) · sd / √6 = 3.5 ± 2.5706 · 1.8708 / 2.4495
    low, high = plotting.t_interval(values)
    assert np.isclose(low, 1.536686, atol=1e-6) and np.isclose(high, 5.463314, atol=1e-6)
    assert np.isnan(plotting.t_interval([1.0])).all()


def test_group_figures_draw_the_t_interval_over_synapses():
    import pandas as pd

    per_synapse = pd.DataFrame({"group": ["a"] * 6 + ["b"] * 6, "m": [1, 2, 3, 4, 5, 6] + [9] * 6})
    fig = plotting.synapse_points(per_synapse, {"m": "measure (unit)"})
    ax = fig.axes[0]
    ends = [np.nanmin(line.get_ydata()) for line in ax.lines if len(line.get_ydata()) > 2]
    assert np.isclose(ends[0], 1.536686, atol=1e-6)
    assert ax.get_ylabel() == "measure (unit)"
    plt.close(fig)


def test_fractions_by_distance_draws_one_group_or_two():
    import pandas as pd

    values = [0.2, 0.4, 0.3, 0.1, 0.3, 0.2]
    per_bin = pd.DataFrame(
        {"from_nm": [0, 0, 0, 5, 5, 5], "to_nm": [5, 5, 5, 10, 10, 10], "tethered": values}
    )
    for groups in (["a"] * 6, ["a", "b", "a", "b", "a", "b"]):  # one group used to crash
        fig = plotting.fractions_by_distance(per_bin.assign(group=groups), {"tethered": "t"})
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0-5", "5-10"]
        assert ax.get_ylabel() == "t"
        plt.close(fig)
