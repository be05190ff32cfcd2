"""The 3D U-Net: any shape in, same shape out; checkpoints carry their metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.errors import InputFileError
from analysis.models import (
    CHECKPOINT_FORMAT_VERSION,
    UNet3D,
    UNetConfig,
    load,
    save_checkpoint,
    select_device,
)

TINY = UNetConfig(depth=2, base_channels=4, dropout=0.0)


@pytest.mark.parametrize("shape", [(8, 8, 8), (7, 13, 5), (1, 1, 1), (16, 9, 33)])
def test_any_shape_comes_back_with_the_same_shape(shape):
    torch.manual_seed(0)
    net = UNet3D(TINY).eval()
    with torch.inference_mode():
        out = net(torch.randn(2, 1, *shape))
    assert out.shape == (2, 1, *shape)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "none"])
def test_every_normalisation_builds_and_runs(norm):
    net = UNet3D(UNetConfig(depth=1, base_channels=4, norm=norm)).eval()
    with torch.inference_mode():
        assert net(torch.randn(1, 1, 6, 6, 6)).shape == (1, 1, 6, 6, 6)


def test_depth_and_width_set_the_architecture():
    net = UNet3D(UNetConfig(depth=3, base_channels=8))
    assert net.multiple == 8
    assert len(net.down) == 3 and len(net.up) == 3
    assert net.bottom[0].out_channels == 64
    with pytest.raises(ValueError, match="norm"):
        UNetConfig(norm="layer")


def test_odd_sizes_are_padded_by_replicating_the_edge_and_cropped_back():
    torch.manual_seed(1)
    net = UNet3D(TINY).eval()
    x = torch.randn(1, 1, 11, 10, 9)
    padded = torch.nn.functional.pad(x, [0, 3, 0, 2, 0, 1], mode="replicate")  # to 12 x 12 x 12
    with torch.inference_mode():
        out = net(x)
        reference = net(padded)[..., :11, :10, :9]
    torch.testing.assert_close(out, reference)


def test_checkpoint_round_trip_keeps_outputs_and_metadata(tmp_path):
    torch.manual_seed(2)
    net = UNet3D(TINY).eval()
    path = save_checkpoint(
        tmp_path / "m.pt",
        net,
        voxel_size_nm=2.2,
        normalisation={"method": "percentile"},
        seed=7,
        data={"train": ["a.mrc"]},
        metrics={"val_dice": 0.9},
    )
    loaded, meta = load(path)
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), net(x))
    assert meta["voxel_size_nm"] == 2.2 and meta["seed"] == 7
    assert meta["config"]["base_channels"] == 4
    assert meta["format_version"] == CHECKPOINT_FORMAT_VERSION
    assert not loaded.training


def test_bad_checkpoints_are_refused_with_one_line(tmp_path):
    net = UNet3D(TINY)
    good = save_checkpoint(
        tmp_path / "m.pt", net, voxel_size_nm=2.2, normalisation={}, seed=0, data={}
    )
    payload = torch.load(good, weights_only=True)

    def message(path):
        with pytest.raises(InputFileError) as info:
            load(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        return str(info.value)

    old = tmp_path / "old.pt"
    torch.save({**payload, "format_version": 0}, old)
    assert "format version 0" in message(old)

    incomplete = tmp_path / "incomplete.pt"
    torch.save({k: v for k, v in payload.items() if k != "voxel_size_nm"}, incomplete)
    assert "lacks voxel_size_nm" in message(incomplete)

    alien = tmp_path / "alien.pt"
    torch.save({**payload, "config": {**payload["config"], "architecture": "vnet"}}, alien)
    assert "unknown architecture 'vnet'" in message(alien)

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert "not a readable torch checkpoint" in message(junk)

    wrong = tmp_path / "wrong.pt"
    torch.save({**payload, "config": {**payload["config"], "base_channels": 8}}, wrong)
    assert "do not fit" in message(wrong)


def test_device_selection_falls_back_to_cpu():
    device = select_device()
    expected = "cuda" if torch.cuda.is_available() else device.type
    assert device.type == expected
    assert select_device("cpu").type == "cpu"
    with pytest.raises(ValueError):
        select_device("tpu")


def test_exported_weights_drop_training_state_and_keep_the_curve(tmp_path):
    from analysis.models import export_weights, read_checkpoint

    net = UNet3D(TINY)
    history = [{"epoch": 1, "train_loss": 1.0, "val_dice": 0.5}]
    full = save_checkpoint(
        tmp_path / "full.pt",
        net,
        voxel_size_nm=2.2,
        normalisation={},
        seed=0,
        data={"train": ["/abs/a.mrc"]},
        optimiser_state={"x": torch.ones(1000)},
        history=history,
        train_config={"epochs": 1},
    )
    small = export_weights(full, tmp_path / "small.pt", data={"train": ["a.mrc"]})
    payload = read_checkpoint(small)
    assert "optimiser_state" not in payload
    assert payload["metrics"]["history"] == history
    assert payload["data"] == {"train": ["a.mrc"]}
    assert small.stat().st_size < full.stat().st_size


def test_averaged_weights_are_the_mean_of_the_parts(tmp_path):
    from analysis.errors import ParameterError
    from analysis.models import average_weights, provenance, read_checkpoint, training_history

    torch.manual_seed(0)
    nets = [UNet3D(TINY) for _ in range(3)]
    with torch.no_grad():  # distinct batch-norm statistics, and a counter that must not average
        for i, net in enumerate(nets):
            for module in net.modules():
                if isinstance(module, torch.nn.BatchNorm3d):
                    module.running_mean.fill_(float(i))
                    module.num_batches_tracked.fill_(10 * (i + 1))
    kw = dict(voxel_size_nm=2.2, normalisation={"method": "percentile"}, seed=0)
    paths = [
        save_checkpoint(
            tmp_path / f"n{i}.pt", n, data={"i": i, "train": ["a.mrc", f"t{i % 2}.mrc"]}, **kw
        )
        for i, n in enumerate(nets)
    ]
    out = average_weights(paths, tmp_path / "soup.pt")
    soup = read_checkpoint(out)["model_state"]
    parts = [net.state_dict() for net in nets]
    for key, value in soup.items():
        if value.is_floating_point():
            expected = sum(p[key] for p in parts) / 3
            torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
    bn_mean = next(v for k, v in soup.items() if k.endswith("running_mean"))
    assert torch.allclose(bn_mean, torch.ones_like(bn_mean))  # (0 + 1 + 2) / 3
    assert next(v for k, v in soup.items() if k.endswith("num_batches_tracked")) == 10
    data = read_checkpoint(out)["data"]
    assert data["averaged"] == ["n0.pt", "n1.pt", "n2.pt"]
    assert data["train"] == ["a.mrc", "t0.mrc", "t1.mrc"]  # the union, in order
    assert [part["i"] for part in data["parts"]] == [0, 1, 2]
    assert training_history(read_checkpoint(out)) == []  # no part recorded a curve
    curve = [{"epoch": 1, "train_loss": 0.5, "val_dice": 0.7}]
    with_curve = save_checkpoint(
        tmp_path / "c.pt", nets[1], data={}, metrics={"history": curve}, **kw
    )
    assert training_history(read_checkpoint(with_curve)) == curve
    out = average_weights([paths[0], with_curve], tmp_path / "soup2.pt")
    assert training_history(read_checkpoint(out)) == [{**curve[0], "run": "part 2"}]
    # a soup of a soup: the inner parts' curves and commands are found, depth first
    tuned = save_checkpoint(
        tmp_path / "t.pt",
        nets[2],
        data={"command": "analysis train t.pt"},
        metrics={"history": curve},
        **kw,
    )
    nested = read_checkpoint(average_weights([out, tuned], tmp_path / "soup3.pt", command="avg"))
    assert [row["run"] for row in training_history(nested)] == ["part 1.2", "part 2"]
    steps = provenance(nested)
    assert [s["step"] for s in steps] == ["", "part 1", "part 1.1", "part 1.2", "part 2"]
    assert steps[0]["command"] == "avg" and steps[-1]["command"] == "analysis train t.pt"
    assert steps[2]["generator"] == ""  # not recorded

    other = save_checkpoint(tmp_path / "other.pt", nets[0], data={}, **{**kw, "voxel_size_nm": 1.1})
    with pytest.raises(ParameterError, match="other.pt: its voxel_size_nm"):
        average_weights([paths[0], other], tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()
    with pytest.raises(ParameterError, match="at least two"):
        average_weights(paths[:1], tmp_path / "bad.pt")


def test_inference_network_folds_batchnorm_and_keeps_the_outputs():
    from analysis.models import inference_network

    torch.manual_seed(1)
    net = UNet3D(UNetConfig(depth=2, base_channels=4))
    net.train()
    with torch.no_grad():  # give the norms non-trivial running statistics
        for _ in range(3):
            net(torch.randn(2, 1, 16, 16, 16) * 3 + 1)
    net.eval()
    fast = inference_network(net)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())  # original intact
    x = torch.randn(2, 1, 20, 18, 16)
    with torch.inference_mode():
        np.testing.assert_allclose(fast(x).numpy(), net(x).numpy(), atol=1e-4)


def test_a_2d_network_segments_each_slice_on_its_own(tmp_path):
    torch.manual_seed(0)
    net = UNet3D(UNetConfig(depth=2, base_channels=4, dims=2)).eval()
    assert all(m.kernel_size[0] == 1 for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    volume = torch.randn(1, 1, 7, 20, 28)
    with torch.no_grad():
        whole = net(volume)
        changed = volume.clone()
        changed[:, :, 3] += 5.0  # only slice 3 differs
        after = net(changed)
    same = torch.isclose(whole, after).flatten(3).all(-1).flatten()  # per slice
    assert same.tolist() == [True, True, True, False, True, True, True]
    with pytest.raises(ValueError, match="dims must be 2 or 3"):
        UNetConfig(dims=4)


# --- one way to load a model ----------------------------------------------------------------


def test_a_model_is_named_the_same_way_everywhere(tmp_path, monkeypatch):
    from analysis.errors import ParameterError
    from analysis.models import SHIPPED_2D_WEIGHTS, SHIPPED_WEIGHTS, checkpoint_path

    monkeypatch.chdir(tmp_path)  # no file in the way of a name
    assert checkpoint_path(None) == checkpoint_path("shipped") == SHIPPED_WEIGHTS
    assert checkpoint_path("Shipped-2D") == SHIPPED_2D_WEIGHTS
    net, meta = load("shipped-2d")
    assert meta["config"]["dims"] == 2 and net.config.dims == 2 and not net.training
    pair = (UNet3D(TINY), {"voxel_size_nm": 1.0, "normalisation": {}})
    assert load(pair) is pair
    with pytest.raises(InputFileError, match="shipped-3d: no such checkpoint file"):
        load("shipped-3d")
    with pytest.raises(InputFileError, match="missing.h5: no such file"):
        load(tmp_path / "missing.h5")
    with pytest.raises(ParameterError, match="not int"):
        load(3)
    # a file of that name is the file, not the shipped network
    save_checkpoint("shipped", UNet3D(TINY), voxel_size_nm=1.0, normalisation={}, seed=0, data={})
    assert load("shipped")[1]["voxel_size_nm"] == 1.0


def test_models_imports_no_other_part_of_the_package():
    import subprocess
    import sys

    code = (
        "import sys, analysis.models; "
        "print(sorted(m for m in sys.modules if m.startswith('analysis.') "
        "and not m.startswith(('analysis.models', 'analysis.errors', 'analysis.io'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the predictor --------------------------------------------------------------------------


class _Dark(torch.nn.Module):
    """Dark voxels are vesicles: ``logit = −4·x``."""

    def forward(self, x):
        return -4.0 * x


class _LooksLeft(torch.nn.Module):
    """Not equivariant to xy flips: sees the voxel to its left in x."""

    def forward(self, x):
        return torch.roll(x, 1, dims=-1) * -4.0


def test_the_predictor_gives_probabilities_of_a_batch_of_tiles():
    from analysis.models import Predictor

    predictor = Predictor(_Dark(), {"voxel_size_nm": 2.2}, device="cpu", precision="float32")
    tiles = np.zeros((3, 1, 4, 6, 6), np.float32)
    tiles[1] = 1.0  # bright: probability sigmoid(-4)
    prob = predictor(tiles)
    assert prob.shape == (3, 1, 4, 6, 6) and prob.dtype == np.float32
    np.testing.assert_allclose(prob[0], 0.5)
    np.testing.assert_allclose(prob[1], 1 / (1 + np.exp(4.0)), rtol=1e-6)
    assert predictor.voxel_size_nm == 2.2 and predictor.n_views == 1
    with pytest.raises(ValueError, match="needs test-time augmentation"):
        predictor(tiles, uncertainty=True)
    with pytest.raises(ValueError, match=r"\(N, 1, z, y, x\)"):
        predictor(tiles[:, 0])


def test_the_predictor_averages_its_views_and_their_variance_is_the_uncertainty():
    from analysis.models import Predictor

    tiles = np.zeros((1, 1, 2, 4, 4), np.float32)
    tiles[..., 0] = 1.0  # a bright first column: seen only by the views that do not flip x
    lopsided = Predictor(_LooksLeft(), device="cpu", precision="float32", tta="flips")
    out = lopsided(tiles, uncertainty=True)
    assert out.shape == (1, 2, 2, 4, 4)
    bright, dark = 1 / (1 + np.exp(4.0)), 0.5
    # column 1 sees column 0 (bright) unflipped, column 2 (dark) flipped: half the views each
    np.testing.assert_allclose(out[0, 0, :, :, 1], (bright + dark) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[0, 1, :, :, 1], ((dark - bright) / 2) ** 2, rtol=1e-5)
    assert lopsided.with_tta("none").network is lopsided.network  # not prepared again
    np.testing.assert_allclose(lopsided.with_tta("none")(tiles)[0, 0, :, :, 1], bright, rtol=1e-6)
    equivariant = Predictor(_Dark(), device="cpu", precision="float32", tta="flips")
    prob, var = equivariant(tiles, uncertainty=True)[0]
    plain = Predictor(_Dark(), device="cpu", precision="float32")(tiles)[0, 0]
    np.testing.assert_allclose(prob, plain, atol=1e-6)
    assert var.max() < 1e-12
