"""Adaptation (mean teacher, statistics only): the arithmetic, the checkpoint, resuming and bad
input."""

from __future__ import annotations

import copy
from dataclasses import replace
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import adapt as ad
from analysis import augment as aug
from analysis.errors import DataError, InputFileError, ParameterError
from analysis.io import read_tomogram
from analysis.models import SHIPPED_WEIGHTS, Predictor, UNet3D, UNetConfig, load

TINY = ad.AdaptConfig(
    epochs=2, steps_per_epoch=2, batch_size=1, patch_size=32, seed=5, method="mean-teacher"
)


@pytest.fixture(scope="module")
def crop():
    """A 48×96×96 crop of the nominal quick test tomogram (generator v3, seed 301, 2.2 nm)."""
    from analysis.synthetic import example_files

    tomo = read_tomogram(example_files("test", seed=301, quick=True)["tomogram"])
    return np.ascontiguousarray(tomo.data[8:56, 16:112, 16:112]), tomo.voxel_size_nm


def test_pseudo_labels_keep_only_confident_voxels():
    prob = torch.tensor([0.0, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0])
    target, valid = ad.pseudo_labels(prob, 0.9)
    assert target.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert valid.tolist() == [1, 1, 1, 0, 0, 0, 1, 1, 1]


def test_soft_loss_pulls_the_student_to_the_teacher_where_it_is_unsure():
    # the adaptation's soft loss is the training loss's cross-entropy with soft targets
    from analysis.train import masked_bce

    prob = torch.tensor([0.2, 0.5, 0.7, 0.99])
    unsure = torch.tensor([1.0, 1.0, 1.0, 0.0])
    logits = torch.zeros(4, requires_grad=True)
    loss = masked_bce(logits, prob, unsure)
    loss.backward()
    # d/dlogit of the mean cross-entropy: (sigmoid(logit) - p) / number of unsure voxels
    torch.testing.assert_close(logits.grad, torch.tensor([0.3, 0.0, -0.2, 0.0]) / 3)
    # at the teacher's own logits the gradient vanishes and the loss is its entropy
    exact = torch.logit(prob).requires_grad_(True)
    entropy = -(prob * prob.log() + (1 - prob) * (1 - prob).log())
    value = masked_bce(exact, prob, unsure)
    value.backward()
    torch.testing.assert_close(value, (entropy * unsure).sum() / 3)
    torch.testing.assert_close(exact.grad, torch.zeros(4), atol=1e-7, rtol=0)
    assert masked_bce(logits, prob, torch.zeros(4)).item() == 0.0


def test_ema_update_averages_weights_and_leaves_batch_statistics():
    torch.manual_seed(0)
    cfg = UNetConfig(depth=2, base_channels=4)
    teacher, student = UNet3D(cfg), UNet3D(cfg)
    for b in student.buffers():
        b.add_(3)
    before = [p.clone() for p in teacher.parameters()]
    kept = [b.clone() for b in teacher.buffers()]
    ad.ema_update(teacher, student, 0.75)
    for t, s, b in zip(teacher.parameters(), student.parameters(), before, strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * s)
    for t, b in zip(teacher.buffers(), kept, strict=True):
        assert torch.equal(t, b)


def test_teacher_statistics_follow_the_clean_patches():
    # the first batch-norm layer sees the input (one channel through a convolution): fed
    # patches of mean 5 again and again, its running mean converges to the convolution of 5,
    # and the weights do not move
    torch.manual_seed(0)
    teacher = UNet3D(UNetConfig(depth=2, base_channels=4))
    teacher.eval()
    weights = [p.clone() for p in teacher.parameters()]
    clean = torch.full((2, 1, 16, 16, 16), 5.0) + 0.1 * torch.randn(2, 1, 16, 16, 16)
    for _ in range(100):
        ad.update_statistics(teacher, clean)
    assert not teacher.training
    conv, norm = next(
        (m, n)
        for m, n in zip(teacher.modules(), list(teacher.modules())[1:], strict=False)
        if isinstance(m, torch.nn.Conv3d) and isinstance(n, torch.nn.BatchNorm3d)
    )
    with torch.no_grad():
        expected = conv(clean).mean(dim=(0, 2, 3, 4))
    torch.testing.assert_close(norm.running_mean, expected, rtol=0.02, atol=0.02)
    for p, w in zip(teacher.parameters(), weights, strict=True):
        assert torch.equal(p, w)


def test_intensity_is_augment_without_the_flips():
    """augment() = geometric() then intensity(), with the same random numbers (so training
    runs made before the split are reproduced)."""
    image = np.random.default_rng(1).normal(size=(24, 24, 24)).astype(np.float32)
    ones = np.ones_like(image)
    a, _, _ = aug.augment(image, ones, ones, np.random.default_rng(7), level="robust")
    rng = np.random.default_rng(7)
    (flipped,) = aug.geometric((image,), rng)
    b = aug.intensity(flipped, rng, "robust")
    np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def adapted(crop, tmp_path_factory):
    """Two epochs of two steps on the crop: (checkpoint path, teacher, history)."""
    tomo, vs = crop
    out = tmp_path_factory.mktemp("adapt") / "adapted.pt"
    teacher, history = ad.adapt([tomo], [vs], out, config=TINY, names=["crop"], progress=False)
    return out, teacher, history


def test_adapt_writes_a_checkpoint_segment_can_use(crop, adapted):
    tomo, vs = crop
    out, _, history = adapted
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0 < h["confident"] <= 1 and 0 < h["foreground"] < 1 for h in history)
    net, meta = load(out)
    _, shipped = load()
    assert meta["voxel_size_nm"] == shipped["voxel_size_nm"]
    assert meta["normalisation"] == shipped["normalisation"]
    assert meta["data"]["target"] == ["crop"]
    assert meta["data"]["adapted_from"] == "sv_unet3d.pt"
    assert out.with_name("adapted_metrics.csv").read_text().startswith("epoch,step,loss")
    # the teacher moved, but only a little (EMA of a few small steps)
    _, original = load()
    moved = [
        float((meta["model_state"][k].float() - original["model_state"][k].float()).abs().max())
        for k in original["model_state"]
        if k.endswith("weight")
    ]
    assert 0 < max(moved) < 0.05

    # and it still finds vesicles in the crop, as the network inference loads
    image = torch.from_numpy(ad.prepare(tomo, vs, meta)[None, None, :48, :48, :48])
    with torch.no_grad():
        prob = torch.sigmoid(net(image))
    assert 0.01 < float((prob > 0.5).float().mean()) < 0.5


def test_adapt_resumes_to_the_same_numbers(crop, adapted, tmp_path):
    tomo, vs = crop
    whole = adapted[1]
    ad.adapt([tomo], [vs], tmp_path / "b.pt", config=TINY, progress=False, stop_after_epoch=1)
    resumed, history = ad.adapt(
        [tomo], [vs], tmp_path / "b.pt", config=TINY, resume=True, progress=False
    )
    assert len(history) == 2
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_no_vesicle_anywhere_is_one_clear_error_and_no_file(tmp_path):
    flat = np.random.default_rng(0).normal(size=(48, 64, 64)).astype(np.float32)
    out = tmp_path / "adapted.pt"
    with pytest.raises(DataError, match="finds no vesicle in any of the 1 tomograms"):
        ad.adapt([flat], [2.2], out, config=TINY, progress=False)
    assert not out.exists()


def test_a_set_too_large_for_memory_is_refused_before_work():
    with pytest.raises(DataError, match="GB of memory"):
        ad.check_memory([(4000, 40000, 40000)], [2.2], 2.2)
    ad.check_memory([(64, 64, 64)], [2.2], 2.2)


def test_bad_settings_are_refused():
    with pytest.raises(ParameterError, match="confidence"):
        ad.AdaptConfig(method="mean-teacher", confidence=0.4)
    with pytest.raises(ParameterError, match="ema_decay"):
        ad.AdaptConfig(method="mean-teacher", ema_decay=1.0)
    with pytest.raises(ParameterError, match="anchor_weight"):
        ad.AdaptConfig(method="mean-teacher", anchor_weight=-1.0)
    with pytest.raises(ParameterError, match="method must be one of"):
        ad.AdaptConfig(method="adabn")


def test_an_anchor_holds_the_adapted_network_near_its_start(crop, tmp_path):
    from dataclasses import replace

    tomo, vs = crop
    _, original = load()

    def moved(anchor):  # squared distance of the adapted weights from the shipped ones
        # a large rate and a teacher that is the student, so that four steps move it far
        fast = dict(epochs=1, steps_per_epoch=4, lr=1e-2, ema_decay=0.0)
        cfg = replace(TINY, anchor_weight=anchor, **fast)
        net, _ = ad.adapt([tomo], [vs], tmp_path / f"{anchor}.pt", config=cfg, progress=False)
        state = net.state_dict()
        return sum(
            float((state[k].float() - v.float()).pow(2).sum())
            for k, v in original["model_state"].items()
            if k.endswith("weight")
        )

    free, held = moved(0.0), moved(50.0)
    assert free > 1.0  # the free run moved: otherwise the comparison says nothing
    assert held < 0.5 * free


def test_cli_adapts_and_refuses_a_set_without_vesicles(crop, tmp_path, capsys):
    from analysis.cli import main
    from analysis.io import write_mrc

    tomo, vs = crop
    write_mrc(tmp_path / "crop.mrc", tomo, vs)
    out = tmp_path / "adapted.pt"
    args = ["adapt", str(tmp_path / "crop.mrc"), "--out", str(out), "--method", "mean-teacher"]
    assert main([*args, "--epochs", "1", "--steps-per-epoch", "1", "--quiet", "--no-compare"]) == 0
    assert not (tmp_path / "adapted_changes.csv").exists()
    assert load(out)[1]["data"]["target"] == ["crop.mrc"]
    assert load(out)[1]["data"]["method"].startswith("mean teacher")
    stats = tmp_path / "stats.pt"  # the default method
    args = ["adapt", str(tmp_path / "crop.mrc"), "--out", str(stats)]
    assert main([*args, "--epochs", "1", "--steps-per-epoch", "2", "-q"]) == 0
    printed = capsys.readouterr()
    assert "statistics of the encoder's layers measured again on 2 batches" in printed.out
    # then both networks segment the tomogram, and what changed is written and printed
    changes = pd.read_csv(tmp_path / "stats_changes.csv")
    assert changes["tomogram"].tolist() == ["crop.mrc"] and changes["found_before"][0] >= 5
    line = f"crop.mrc: {changes['found_before'][0]} vesicles before, {changes['found_after'][0]}"
    assert line in printed.out
    assert ("warning:" in printed.err) == (changes["new"][0] <= changes["lost"][0])
    assert load(stats)[1]["data"]["method"].startswith("batch-norm statistics")

    write_mrc(tmp_path / "noise.mrc", np.random.default_rng(0).normal(size=(48, 64, 64)), vs)
    capsys.readouterr()
    code = main(["adapt", str(tmp_path / "noise.mrc"), "--out", str(tmp_path / "n.pt"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "noise.mrc" in err[0] and "no vesicle" in err[0]
    assert not (tmp_path / "n.pt").exists()


def test_resuming_from_a_network_that_is_not_an_adaptation_is_refused(crop, tmp_path):
    import shutil

    tomo, vs = crop
    shutil.copy(SHIPPED_WEIGHTS, tmp_path / "x.pt")
    with pytest.raises(InputFileError, match="not an adaptation in progress"):
        ad.adapt([tomo], [vs], tmp_path / "x.pt", config=TINY, resume=True, progress=False)


def _first_conv_and_norm(net):
    modules = list(net.modules())
    return next(
        (m, n)
        for m, n in zip(modules, modules[1:], strict=False)
        if isinstance(m, torch.nn.Conv3d) and isinstance(n, torch.nn.BatchNorm3d)
    )


def test_estimated_statistics_are_the_average_over_all_batches():
    # two batches of means 2 and 6: the first layer's running mean is the average of the
    # convolution's per-batch means, not a moving average weighted to the last batch
    torch.manual_seed(0)
    net = UNet3D(UNetConfig(depth=2, base_channels=4)).eval()
    weights = [p.clone() for p in net.parameters()]
    noise = 0.1 * torch.randn(2, 1, 16, 16, 16)
    batches = [noise + 2.0, noise + 6.0]
    ad.estimate_statistics(net, batches)
    conv, norm = _first_conv_and_norm(net)
    with torch.no_grad():
        means = [conv(b).mean(dim=(0, 2, 3, 4)) for b in batches]
    torch.testing.assert_close(norm.running_mean, (means[0] + means[1]) / 2)
    assert int(norm.num_batches_tracked) == 2
    assert not net.training and norm.momentum == 0.1  # the layer's own momentum is back
    for p, w in zip(net.parameters(), weights, strict=True):
        assert torch.equal(p, w)

    # going on without a reset continues the same average
    again = copy.deepcopy(net)
    ad.estimate_statistics(again, batches[:1])
    ad.estimate_statistics(again, batches[1:], reset=False)
    for a, b in zip(net.buffers(), again.buffers(), strict=True):
        torch.testing.assert_close(a, b)


def test_blended_statistics_keep_a_share_of_the_prior_ones():
    # old mean 0.5 and variance 3, new ones measured: weight 0.25 gives a quarter of the old
    torch.manual_seed(0)
    prior = UNet3D(UNetConfig(depth=2, base_channels=4)).eval()
    _, prior_norm = _first_conv_and_norm(prior)
    prior_norm.running_mean.fill_(0.5)
    prior_norm.running_var.fill_(3.0)
    net = ad.estimate_statistics(copy.deepcopy(prior), [torch.randn(2, 1, 16, 16, 16) + 4.0])
    _, norm = _first_conv_and_norm(net)
    measured_mean, measured_var = norm.running_mean.clone(), norm.running_var.clone()
    assert not torch.allclose(measured_mean, prior_norm.running_mean)
    ad.blend_statistics(net, prior, 0.25)
    torch.testing.assert_close(norm.running_mean, 0.25 * 0.5 + 0.75 * measured_mean)
    torch.testing.assert_close(norm.running_var, 0.25 * 3.0 + 0.75 * measured_var)
    for p, q in zip(net.parameters(), prior.parameters(), strict=True):
        assert torch.equal(p, q)  # weights untouched
    with pytest.raises(ParameterError, match=r"must lie in \[0, 1\], not 1.5"):
        ad.blend_statistics(net, prior, 1.5)
    other = UNet3D(UNetConfig(depth=2, base_channels=8))
    with pytest.raises(ParameterError, match="batch-norm layers differ"):
        ad.blend_statistics(net, other, 0.5)

    # the settings: statistics method only, and within their ranges
    with pytest.raises(ParameterError, match=r"prior_weight must lie in \[0, 1\)"):
        ad.AdaptConfig(method="statistics", prior_weight=1.0)
    with pytest.raises(ParameterError, match="statistics_layers must be one of"):
        ad.AdaptConfig(method="statistics", statistics_layers="decoder")
    with pytest.raises(ParameterError, match="prior_weight belongs to method 'statistics'"):
        ad.AdaptConfig(method="mean-teacher", prior_weight=0.25)
    with pytest.raises(ParameterError, match="statistics_layers belongs to method 'statistics'"):
        ad.AdaptConfig(method="mean-teacher", statistics_layers="all")


def test_encoder_statistics_leave_the_other_layers_alone():
    torch.manual_seed(0)
    net = UNet3D(UNetConfig(depth=2, base_channels=4)).eval()
    before = copy.deepcopy(net.state_dict())
    ad.estimate_statistics(net, [torch.randn(2, 1, 16, 16, 16) + 3.0], layers="encoder")
    moved = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith("down.") for k in moved)
    assert {k for k in before if k.startswith("down.") and k.endswith("running_mean")} <= moved
    # blending the encoder's with the old ones leaves the other layers bit for bit
    blended = ad.blend_statistics(copy.deepcopy(net), UNet3D(net.config).eval(), 0.1, "encoder")
    for k, v in blended.state_dict().items():
        if not k.startswith("down."):
            assert torch.equal(v, net.state_dict()[k]), k
    # the published network's encoder is its two "down" levels: four layers of batch norm
    from analysis.models.cryovesnet import CryoVesNetUNet

    assert len(ad.batch_norms(CryoVesNetUNet(), "encoder")) == 4
    plain = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3), torch.nn.BatchNorm3d(2))
    with pytest.raises(ParameterError, match="Sequential does not say which layers"):
        ad.estimate_statistics(plain, [torch.zeros(1, 1, 8, 8, 8)], layers="encoder")


def test_a_network_without_batch_norm_has_no_statistics_to_adapt(crop, tmp_path):
    from analysis.models import save_checkpoint
    from analysis.normalise import DEFAULT_NORMALISATION

    net = UNet3D(UNetConfig(depth=2, base_channels=4, norm="group"))
    with pytest.raises(ParameterError, match="no batch-norm layer"):
        ad.estimate_statistics(net, [torch.zeros(1, 1, 8, 8, 8)])
    # and adapt says so, naming the network, before any tomogram is predicted
    group = save_checkpoint(
        tmp_path / "group.pt",
        net,
        voxel_size_nm=2.2,
        normalisation=DEFAULT_NORMALISATION,
        seed=0,
        data={},
    )
    cfg = ad.AdaptConfig(method="statistics")

    def never(*args, **kwargs):
        raise AssertionError("a tomogram was predicted before the network was checked")

    with (
        mock.patch.object(ad, "_teacher_volume", never),
        pytest.raises(InputFileError, match="group.pt.*no batch-norm layer"),
    ):
        ad.adapt([crop[0]], [crop[1]], tmp_path / "s.pt", model=group, config=cfg)


STATS = ad.AdaptConfig(
    epochs=2, steps_per_epoch=3, batch_size=1, patch_size=32, seed=5, method="statistics"
)


def test_statistics_adaptation_moves_only_the_statistics_and_resumes(crop, adapted, tmp_path):
    tomo, vs = crop
    out = tmp_path / "stats.pt"
    net, history = ad.adapt([tomo], [vs], out, config=STATS, names=["crop"], progress=False)
    assert [h["step"] for h in history] == [3, 6]
    assert all(np.isnan(h["loss"]) and 0 < h["agreement"] <= 1 for h in history)
    _, meta = load(out)
    assert meta["data"]["method"].startswith("batch-norm statistics only")
    assert meta["data"]["method_version"] == ad.STATISTICS_VERSION
    # the checkpoint records the statistics method's settings, not the mean teacher's
    assert (
        meta["adapt_config"]["statistics_layers"] == "encoder" and "lr" not in meta["adapt_config"]
    )
    _, shipped = load()
    statistics = ("running_mean", "running_var")

    def changed(state):
        return {k for k, v in shipped["model_state"].items() if not torch.equal(v, state[k])}

    # the encoder's running means and variances are measured again; nothing else moved
    moved = changed(meta["model_state"])
    encoder_vars = {
        k for k in shipped["model_state"] if k.startswith("down.") and k.endswith("_var")
    }
    assert encoder_vars <= moved
    assert all(k.startswith("down.") for k in moved)
    assert all(k.endswith((*statistics, "num_batches_tracked")) for k in moved)
    assert int(meta["model_state"]["down.0.1.num_batches_tracked"]) == 6
    # all layers when asked
    every = ad.adapt(
        [tomo], [vs], tmp_path / "all.pt", config=replace(STATS, statistics_layers="all"),
        progress=False,
    )[0].state_dict()  # fmt: skip
    assert {k for k in shipped["model_state"] if k.endswith("running_var")} <= changed(every)

    # a quarter of the shipped statistics kept: a quarter theirs, three quarters those measured
    blended_cfg = replace(STATS, prior_weight=0.25)
    blended, blended_history = ad.adapt(
        [tomo], [vs], tmp_path / "blend.pt", config=blended_cfg, progress=False
    )
    for k in moved:
        if k.endswith(statistics):
            expected = 0.25 * shipped["model_state"][k] + 0.75 * net.state_dict()[k]
            torch.testing.assert_close(blended.state_dict()[k], expected)

    # interrupted after the first epoch and resumed: the same numbers
    part = tmp_path / "part.pt"
    ad.adapt([tomo], [vs], part, config=blended_cfg, progress=False, stop_after_epoch=1)
    resumed, again = ad.adapt([tomo], [vs], part, config=blended_cfg, resume=True, progress=False)

    def without_time(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    pd.testing.assert_frame_equal(
        pd.DataFrame(without_time(again)), pd.DataFrame(without_time(blended_history))
    )
    for a, b in zip(blended.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)

    # nor on other tomograms
    with pytest.raises(InputFileError, match="started with other tomograms"):
        ad.adapt([tomo], [vs], part, config=blended_cfg, names=["x"], resume=True, progress=False)
    # nor with other settings (here the encoder's statistics, resumed over all layers)
    with pytest.raises(InputFileError, match=r"other settings \(statistics_layers 'encoder'\)"):
        other = replace(blended_cfg, statistics_layers="all")
        ad.adapt([tomo], [vs], part, config=other, resume=True, progress=False)

    # a mean-teacher run cannot be resumed as a statistics one, and the error says how
    with pytest.raises(InputFileError, match="by method 'mean-teacher': resume it with that"):
        ad.adapt([tomo], [vs], adapted[0], config=STATS, resume=True, progress=False)


def test_mean_teacher_settings_are_refused_for_the_statistics_method():
    with pytest.raises(
        ParameterError,
        match="leave out anchor_weight, augment_level, or choose method 'mean-teacher'$",
    ):
        ad.AdaptConfig(method="statistics", anchor_weight=300.0, augment_level="physics")
    ad.AdaptConfig(method="statistics", epochs=2, steps_per_epoch=7, batch_size=4)


def _vesicles(centres, radius=10.0, kept=None):
    table = pd.DataFrame(np.asarray(centres, float), columns=["z_vox", "y_vox", "x_vox"])
    table.insert(0, "vesicle_id", np.arange(1, len(table) + 1))
    table["radius_vox"] = radius
    if kept is not None:
        table["kept"] = kept
    return table


def test_vesicle_changes_counts_the_lost_and_the_new():
    from analysis.adaptation_report import vesicle_changes

    before = _vesicles([(20, 20, 20), (20, 60, 20), (20, 20, 60)])
    after = _vesicles(
        # the first two moved by 3 voxels (inside their radius: the same vesicles), the third
        # is gone but for a dropped candidate, two are new far away
        [(23, 20, 20), (20, 63, 20), (20, 20, 60), (60, 60, 60), (60, 20, 60)],
        kept=[True, True, False, True, True],
    )
    assert vesicle_changes(before, after, 2.0) == {
        "found_before": 3,
        "found_after": 4,
        "lost": 1,
        "new": 2,
    }
    # a vesicle moved by more than its radius is another vesicle: one lost, one new
    far = _vesicles([(20, 20, 20)]), _vesicles([(20, 20, 32)])
    assert vesicle_changes(*far, 2.0) == {"found_before": 1, "found_after": 1, "lost": 1, "new": 1}
    # the starting network's radius decides: a small new vesicle 7 voxels from the centre of
    # a large old one (radius 10) is the same; the other way round (old radius 3) it is not
    big, small = _vesicles([(20, 20, 20)], radius=10.0), _vesicles([(20, 20, 27)], radius=3.0)
    assert vesicle_changes(big, small, 2.0)["lost"] == 0
    assert vesicle_changes(small, big, 2.0)["lost"] == 1


def test_adaptation_warning_needs_more_new_than_lost():
    from analysis.adaptation_report import adaptation_warning

    def table(lost, new):
        return pd.DataFrame({"lost": lost, "new": new})

    assert adaptation_warning(table([1, 2], [30, 0])) is None
    warning = adaptation_warning(table([4, 2], [3, 0]))
    assert "finds 3 vesicle(s) the starting one did not" in warning and "finds 6" in warning
    assert adaptation_warning(table([2], [2])) is not None  # as many found as lost
    assert adaptation_warning(table([0], [0])) is not None  # nothing changed: nothing gained


def test_kept_vesicles_of_an_empty_map_is_empty_and_a_full_map_an_error():
    from analysis.adaptation_report import kept_vesicles

    tomo = np.random.default_rng(0).normal(size=(24, 24, 24)).astype(np.float32)
    assert kept_vesicles(np.zeros_like(tomo), tomo, 2.0).empty
    with pytest.raises(DataError, match="not a vesicle map"):
        kept_vesicles(np.ones_like(tomo), tomo, 2.0)


def test_compare_networks_of_one_network_with_itself_changes_nothing(crop):
    from analysis.adaptation_report import adaptation_warning, compare_networks

    tomo, vs = crop
    changes = compare_networks([tomo], [vs], None, "shipped", names=["crop"])
    assert list(changes.columns) == ["tomogram", "found_before", "found_after", "lost", "new"]
    same = changes.iloc[0]
    assert same.tomogram == "crop"
    assert same.found_before == same.found_after >= 5  # the crop holds vesicles
    assert same.lost == same.new == 0
    assert adaptation_warning(changes) is not None
    # the same tomogram with bright membranes, inverted back: the same vesicles ...
    inverted = compare_networks([-tomo], [vs], None, None, invert=True)
    # ... which needs the post-processing to see dark membranes too: given the bright ones it
    # keeps another number of vesicles
    from analysis.adaptation_report import kept_vesicles
    from analysis.inference import predict

    # as compare_networks runs the shipped network by default: as analysis segment does
    # (spectrum matched); unmatched, it keeps another number of vesicles on this crop
    shipped = Predictor.load(None)
    probability = predict(-tomo, vs, shipped, invert=True)
    plain = predict(-tomo, vs, shipped, invert=True, match_spectrum=False)
    assert len(kept_vesicles(plain, tomo, vs)) != same.found_before
    assert len(kept_vesicles(probability, tomo, vs)) == same.found_before
    assert len(kept_vesicles(probability, -tomo, vs)) != same.found_before
    assert inverted.iloc[0].found_before == same.found_before
    assert inverted.iloc[0].lost == inverted.iloc[0].new == 0


def test_cli_says_the_network_is_written_when_the_comparison_fails(crop, tmp_path, capsys):
    from analysis.cli import main
    from analysis.io import write_mrc

    tomo, vs = crop
    write_mrc(tmp_path / "crop.mrc", tomo, vs)
    out = tmp_path / "stats.pt"
    args = ["adapt", str(tmp_path / "crop.mrc"), "--out", str(out), "--epochs", "1"]
    broken = DataError("95% of the voxels have a vesicle probability above 0.5")
    with mock.patch("analysis.adaptation_report.compare_networks", side_effect=broken):
        code = main([*args, "--steps-per-epoch", "1", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {out}: written, but comparing it") and "crop.mrc" in err[0]
    assert out.exists() and not (tmp_path / "stats_changes.csv").exists()
