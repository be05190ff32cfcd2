"""The 3D U-Net: any shape in, same shape out; checkpoints carry their metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.errors import InputFileError
from analysis.model import (
    CHECKPOINT_FORMAT_VERSION,
    UNet3D,
    UNetConfig,
    load_model,
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
    loaded, meta = load_model(path)
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
            load_model(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
        return str(info.value)

    old = tmp_path / "old.pt"
    torch.save({**payload, "format_version": 0}, old)
    assert "format version 0" in message(old)

    incomplete = tmp_path / "incomplete.pt"
    torch.save({k: v for k, v in payload.items() if k != "voxel_size_nm"}, incomplete)
    assert "lacks voxel_size_nm" in message(incomplete)

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
    from analysis.model import export_weights, read_checkpoint

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


def test_inference_network_folds_batchnorm_and_keeps_the_outputs():
    from analysis.model import inference_network

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
