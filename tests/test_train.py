"""Training: it learns, it is reproducible, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.errors import ParameterError
from analysis.io import paint_ball
from analysis.models import UNet3D, UNetConfig, load, read_checkpoint, save_checkpoint
from analysis.train import (
    TrainConfig,
    TrainingVolume,
    augment,
    dice_bce_loss,
    dice_score,
    sample_patch,
    shipped_recipe,
    train,
    volume_from_files,
)

NET = UNetConfig(depth=2, base_channels=8, dropout=0.0)
PERCENTILE = {"method": "percentile"}


def _toy_volume(seed=0, shape=(24, 32, 32)):
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    paint_ball(labels, np.array([12.0, 10.0, 10.0]), 5.0, 1)
    paint_ball(labels, np.array([10.0, 22.0, 20.0]), 6.0, 2)
    image = np.where(labels > 0, -1.0, 0.0) + rng.normal(0, 0.3, shape)
    return TrainingVolume(image.astype(np.float32), (labels > 0).astype(np.uint8), name="toy")


def _cfg(**kw):
    base = dict(
        epochs=4,
        steps_per_epoch=8,
        batch_size=2,
        patch_size=16,
        val_patch_size=16,
        lr=5e-3,
        warmup_steps=4,
        seed=3,
    )
    return TrainConfig(**{**base, **kw})


def test_a_tiny_network_overfits_one_small_volume(tmp_path):
    model, history = _fit(tmp_path / "m.pt", _cfg(epochs=6, steps_per_epoch=15))
    assert history[-1]["val_dice"] > 0.9
    metrics = pd.read_csv(tmp_path / "m_metrics.csv")
    assert list(metrics.epoch) == [1, 2, 3, 4, 5, 6]
    loaded, meta = load(tmp_path / "m.pt")
    assert meta["voxel_size_nm"] == 2.0 and meta["metrics"]["epoch"] == 6
    assert meta["normalisation"]["method"] == "percentile"


def test_validation_every_few_epochs_and_after_the_last(tmp_path):
    _, history = _fit(tmp_path / "m.pt", _cfg(epochs=5, steps_per_epoch=2, val_every=2))
    measured = [np.isfinite(h["val_dice"]) for h in history]
    assert measured == [False, True, False, True, True]


def _fit(path, config, **kwargs):
    """Train the tiny network on the toy volume (validated on itself)."""
    vol = _toy_volume(shape=kwargs.pop("shape", (24, 32, 32)))
    return train(
        [vol],
        [vol],
        path,
        voxel_size_nm=2.0,
        model_config=NET,
        config=config,
        progress=False,
        **kwargs,
    )


def test_fine_tuning_keeps_the_normalisation_of_the_network_it_starts_from(tmp_path):
    zscore = {"method": "zscore", "blur_sigma_vox": 1.0}
    torch.manual_seed(0)
    start = save_checkpoint(
        tmp_path / "start.pt", UNet3D(NET), voxel_size_nm=2.0, normalisation=zscore, seed=0, data={}
    )
    one_step = _cfg(epochs=1, steps_per_epoch=1)
    _fit(tmp_path / "tuned.pt", one_step, init_from=start, stop_after_epoch=1)
    assert read_checkpoint(tmp_path / "tuned.pt")["normalisation"] == zscore
    _fit(tmp_path / "tuned.pt", _cfg(epochs=2, steps_per_epoch=1), resume=True)
    resumed = read_checkpoint(tmp_path / "tuned.pt")
    assert resumed["epoch"] == 2 and resumed["normalisation"] == zscore
    with pytest.raises(ParameterError, match="differs from"):
        _fit(tmp_path / "x.pt", one_step, init_from=start, normalisation={"method": "percentile"})
    _fit(tmp_path / "fresh.pt", one_step)
    assert read_checkpoint(tmp_path / "fresh.pt")["normalisation"]["method"] == "percentile"


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    full, _ = _fit(tmp_path / "full.pt", _cfg())
    _fit(tmp_path / "cut.pt", _cfg(), stop_after_epoch=2)
    resumed, history = _fit(tmp_path / "cut.pt", _cfg(), resume=True)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    runs = [
        _fit(tmp_path / f"{i}.pt", _cfg(epochs=1, seed=seed))[0] for i, seed in enumerate((5, 5, 6))
    ]
    w = [_weights(m) for m in runs]
    assert all(torch.equal(w[0][k], w[1][k]) for k in w[0])
    assert not all(torch.equal(w[0][k], w[2][k]) for k in w[0])


def _start(tmp_path):
    torch.manual_seed(1)
    return save_checkpoint(
        tmp_path / "start.pt",
        UNet3D(NET),
        voxel_size_nm=2.0,
        normalisation=PERCENTILE,
        seed=0,
        data={},
    )


def _distance(model, start):
    """Squared distance of a network's weights from the starting ones."""
    pairs = zip(model.parameters(), load(start)[0].parameters(), strict=True)
    return float(sum((a.detach() - b.detach()).pow(2).sum() for a, b in pairs))


def test_anchoring_holds_the_weights_near_the_starting_network(tmp_path):
    start = _start(tmp_path)
    cfg = _cfg(epochs=2, steps_per_epoch=10)
    free, _ = _fit(tmp_path / "free.pt", cfg, init_from=start)
    cfg = _cfg(epochs=2, steps_per_epoch=10, anchor_weight=100.0)
    held, _ = _fit(tmp_path / "held.pt", cfg, init_from=start)
    assert _distance(free, start) > 0.05  # it did move: otherwise the comparison says nothing
    assert _distance(held, start) < 0.5 * _distance(free, start)
    assert read_checkpoint(tmp_path / "held.pt")["train_config"]["anchor_weight"] == 100.0
    # resumed, it pulls toward the same start; resumed with another weight, it is refused
    _fit(tmp_path / "cut.pt", cfg, init_from=start, stop_after_epoch=1)
    resumed, _ = _fit(tmp_path / "cut.pt", cfg, init_from=start, resume=True)
    a, b = _weights(held), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = _cfg(epochs=2, steps_per_epoch=10, anchor_weight=50.0)
    with pytest.raises(ParameterError, match="trained with anchor_weight 100.0"):
        _fit(tmp_path / "cut.pt", other, init_from=start, resume=True)


def test_distillation_holds_the_probabilities_near_the_starting_network(tmp_path):
    from analysis.train import predict_tiles

    start = _start(tmp_path)
    image = _toy_volume().image

    def change(model):  # mean absolute change of the probabilities on the toy volume
        before = predict_tiles(load(start)[0], image, 16, "cpu")
        return float(np.abs(predict_tiles(model, image, 16, "cpu") - before).mean())

    free, _ = _fit(tmp_path / "free.pt", _cfg(epochs=2, steps_per_epoch=10), init_from=start)
    cfg = _cfg(epochs=2, steps_per_epoch=10, distill_weight=20.0)
    held, _ = _fit(tmp_path / "held.pt", cfg, init_from=start)
    assert change(free) > 0.05
    assert change(held) < 0.5 * change(free)
    # resumed, the terms still refer to the starting network, not to the checkpoint resumed
    _fit(tmp_path / "cut.pt", cfg, init_from=start, stop_after_epoch=1)
    resumed, _ = _fit(tmp_path / "cut.pt", cfg, init_from=start, resume=True)
    a, b = _weights(held), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_holding_to_a_start_needs_one(tmp_path):
    with pytest.raises(ParameterError, match="init_from"):
        _fit(tmp_path / "x.pt", _cfg(epochs=1, steps_per_epoch=1, distill_weight=1.0))
    with pytest.raises(ParameterError, match="0 or positive"):
        _fit(tmp_path / "x.pt", _cfg(anchor_weight=-1.0), init_from=_start(tmp_path))


def test_volumes_smaller_than_a_patch_and_odd_shapes_work(tmp_path):
    vol = _toy_volume(shape=(11, 13, 29))
    rng = np.random.default_rng(0)
    image, target, valid = sample_patch(vol, 16, rng, foreground=True)
    assert image.shape == target.shape == valid.shape == (16, 16, 16)
    assert not valid[11:].any()  # padding is ignored
    _, history = _fit(tmp_path / "odd.pt", _cfg(epochs=1, val_patch_size=24), shape=(11, 13, 29))
    assert np.isfinite(history[0]["val_dice"])


def test_foreground_patches_contain_vesicle_voxels():
    vol = _toy_volume()
    rng = np.random.default_rng(1)
    assert all(sample_patch(vol, 8, rng, foreground=True)[1].any() for _ in range(50))


@pytest.mark.parametrize("level", ["physics", "robust"])
def test_augmentation_keeps_the_tilt_axis_and_moves_image_and_labels_together(level):
    rng = np.random.default_rng(2)
    image = np.zeros((4, 6, 8), np.float32)
    target = np.zeros((4, 6, 8), np.uint8)
    image[1, 0, 7] = 10.0
    target[1, 0, 7] = 1
    seen = set()
    for _ in range(40):
        img, tgt, valid = augment(image, target, np.ones_like(target, bool), rng, level=level)
        # a 90-degree turn would swap y and x (the tilt axis) and change the shape
        assert img.shape == tgt.shape == valid.shape == (4, 6, 8)
        z, y, x = np.argwhere(tgt)[0]
        assert (z, y, x) in {(zz, yy, xx) for zz in (1, 2) for yy in (0, 5) for xx in (0, 7)}
        seen.add((z, y, x))
        if level == "physics":
            assert img[z, y, x] == img.max()  # the bright voxel moved with its label
        assert valid.all()
    assert len(seen) == 8  # every flip happens


def test_loss_and_dice_on_known_cases():
    target = torch.zeros(1, 1, 4, 4, 4)
    target[..., :2, :, :] = 1
    valid = torch.ones_like(target)
    perfect = (target * 2 - 1) * 20
    wrong = -perfect
    assert dice_bce_loss(perfect, target, valid) < 0.01
    assert dice_bce_loss(wrong, target, valid) > 1.0
    # ignored voxels do not count: a wrong prediction there costs nothing
    mixed = perfect.clone()
    mixed[..., 3, :, :] = 20.0
    valid[..., 3, :, :] = 0
    assert dice_bce_loss(mixed, target, valid) < 0.01
    a = np.zeros((4, 4), bool)
    a[:2] = True
    assert dice_score(a, a) == 1.0
    assert dice_score(a, ~a) == 0.0
    assert dice_score(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_training_volume_from_synthetic_files(tmp_path):
    from analysis.synthetic import example_files

    files = example_files("tv", seed=2, quick=True, outdir=tmp_path)
    vol, voxel = volume_from_files(files["tomogram"], files["manual"], region=files["region_mask"])
    assert voxel == pytest.approx(2.2)
    assert vol.image.dtype == np.float32 and abs(float(np.median(vol.image))) < 1e-3
    assert vol.target.any() and vol.ignore.any()
    truth, _ = volume_from_files(files["tomogram"], files["labels"])
    assert dice_score(vol.target, truth.target) > 0.9


def test_the_shipped_recipe_is_what_the_shipped_checkpoint_records(tmp_path):
    # each training step of the recipe has the options its part of the shipped network
    # recorded (steps 2-4 are parts 1.1-1.3, steps 6-7 the starts of parts 2-3, 8-9 parts 2-3)
    from analysis.models import SHIPPED_WEIGHTS, provenance

    recipe = shipped_recipe(tmp_path)
    assert [argv[0] for argv in recipe].count("average-weights") == 2
    assert recipe[-1][-1] == str(tmp_path / "sv_unet3d_soup2.pt")
    steps = {s["step"]: s for s in provenance(read_checkpoint(SHIPPED_WEIGHTS))}
    assert set(steps) == {"", "part 1", "part 1.1", "part 1.2", "part 1.3", "part 2", "part 3"}

    def options(text):
        words = text.split()
        keys = ("--varied", "--epochs", "--steps-per-epoch", "--lr", "--seed", "--augment-level")
        return {k: words[words.index(k) + 1] for k in keys}

    recorded = [
        steps["part 1.1"]["command"],
        steps["part 1.2"]["command"],
        steps["part 1.3"]["command"],
        steps["part 2"]["init_from"].split("made by: ")[1],
        steps["part 3"]["init_from"].split("made by: ")[1],
        steps["part 2"]["command"],
        steps["part 3"]["command"],
    ]
    trainings = [recipe[i] for i in (1, 2, 3, 5, 6, 7, 8)]
    for argv, text in zip(trainings, recorded, strict=True):
        assert options(" ".join(argv)) == options(text)
    # every fine-tuning starts from a checkpoint an earlier step wrote
    written = set()
    for argv in recipe:
        if "--init-from" in argv:
            assert argv[argv.index("--init-from") + 1] in written
        for path in argv[1:] if argv[0] == "average-weights" else []:
            assert path in written or path == "--out" or path == argv[-1]
        written.add(argv[-1] if argv[0] == "average-weights" else argv[1])
