"""CryoVesNet's Keras weights: layout, conversion, exactness against a numpy reference.

(:mod:`analysis.models.cryovesnet`, the network; :mod:`analysis.models.keras`, its file.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage, special

from analysis.errors import InputFileError
from analysis.models import read_checkpoint
from analysis.models.cryovesnet import CONVOLUTIONS
from analysis.models.keras import (
    CRYOVESNET_NORMALISATION,
    CRYOVESNET_SHA256,
    LOCAL_WEIGHTS_VARIABLE,
    convert_cryovesnet,
    fetch_cryovesnet,
    load_keras_weights,
    sha256,
)

#: The published weights, where this machine has them (developers' and CI's shared folder,
#: or a copy named by ANALYSIS_CRYOVESNET_H5); tests that need them skip elsewhere.
PUBLISHED_H5 = next(
    (
        p
        for p in (
            Path(os.environ.get(LOCAL_WEIGHTS_VARIABLE) or "/nonexistent"),
            Path(__file__).resolve().parents[2] / "shared" / "cryovesnet" / "weights.h5",
        )
        if p.is_file()
    ),
    None,
)
needs_published = pytest.mark.skipif(
    PUBLISHED_H5 is None, reason="the published CryoVesNet weights.h5 is not on this machine"
)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Converted weights go to the test's folder, not the user's cache; no local copy of the
    published weights is used unless a test names one."""
    monkeypatch.setenv("ANALYSIS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(LOCAL_WEIGHTS_VARIABLE, raising=False)


IN_CHANNELS = {
    "down_level_0_no_0": 1,
    "down_level_0_no_1": 16,
    "down_level_1_no_0": 16,
    "down_level_1_no_1": 32,
    "middle_0": 32,
    "middle_2": 64,
    "up_level_1_no_0": 64,
    "up_level_1_no_2": 32,
    "up_level_0_no_0": 32,
    "up_level_0_no_2": 16,
}


def make_keras_h5(path, seed=0):
    """An HDF5 file laid out as Keras 2.9 saves CryoVesNet's model, with random values."""
    import h5py

    rng = np.random.default_rng(seed)
    params = {}
    with h5py.File(path, "w") as f:
        weights = f.create_group("model_weights")
        for i, (name, _, out) in enumerate(CONVOLUTIONS):
            g = weights.create_group(name).create_group(name)
            k = rng.normal(0, 0.15, (3, 3, 3, IN_CHANNELS[name], out)).astype(np.float32)
            b = rng.normal(0, 0.1, out).astype(np.float32)
            g["kernel:0"], g["bias:0"] = k, b
            bn_name = "batch_normalization" + (f"_{i}" if i else "")
            bn = weights.create_group(bn_name).create_group(bn_name)
            stats = {
                "gamma:0": rng.uniform(0.5, 1.5, out),
                "beta:0": rng.normal(0, 0.1, out),
                "moving_mean:0": rng.normal(0, 0.2, out),
                "moving_variance:0": rng.uniform(0.5, 2.0, out),
            }
            for key, value in stats.items():
                bn[key] = value.astype(np.float32)
            params[name] = (k, b, {k2: v.astype(np.float32) for k2, v in stats.items()})
        g = weights.create_group("conv3d").create_group("conv3d")
        k = rng.normal(0, 0.3, (1, 1, 1, 16, 1)).astype(np.float32)
        b = np.array([0.1], np.float32)
        g["kernel:0"], g["bias:0"] = k, b
        params["conv3d"] = (k, b, None)
    return params


def keras_reference(volume, params):
    """CryoVesNet's forward pass written out in numpy, channels last, as Keras computes it."""

    def conv(x, kernel, bias):
        kz, ky, kx = kernel.shape[:3]
        pad = [(kz // 2,) * 2, (ky // 2,) * 2, (kx // 2,) * 2, (0, 0)]
        xp = np.pad(x, pad)
        out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
        for dz in range(kz):
            for dy in range(ky):
                for dx in range(kx):
                    window = xp[dz : dz + x.shape[0], dy : dy + x.shape[1], dx : dx + x.shape[2]]
                    out += window @ kernel[dz, dy, dx].astype(np.float64)
        return out + bias

    def block(x, name):
        k, b, bn = params[name]
        y = conv(x, k, b)
        y = (y - bn["moving_mean:0"]) / np.sqrt(bn["moving_variance:0"] + 1e-3)
        return np.maximum(y * bn["gamma:0"] + bn["beta:0"], 0)

    def pool(x):
        z, y, w, c = x.shape
        return x.reshape(z // 2, 2, y // 2, 2, w // 2, 2, c).max(axis=(1, 3, 5))

    def up(x):
        return x.repeat(2, 0).repeat(2, 1).repeat(2, 2)

    x = ndimage.gaussian_filter(volume.astype(np.float64), 1.0, mode="nearest")[..., None]
    s0 = block(block(x, "down_level_0_no_0"), "down_level_0_no_1")
    s1 = block(block(pool(s0), "down_level_1_no_0"), "down_level_1_no_1")
    m = block(block(pool(s1), "middle_0"), "middle_2")
    u1 = block(block(np.concatenate([up(m), s1], -1), "up_level_1_no_0"), "up_level_1_no_2")
    u0 = block(block(np.concatenate([up(u1), s0], -1), "up_level_0_no_0"), "up_level_0_no_2")
    k, b, _ = params["conv3d"]
    return special.expit(conv(u0, k, b)[..., 0])


def test_the_converted_network_equals_the_keras_computation(tmp_path):
    params = make_keras_h5(tmp_path / "weights.h5")
    net = load_keras_weights(tmp_path / "weights.h5")
    volume = np.random.default_rng(1).normal(size=(8, 12, 16)).astype(np.float32)
    with torch.no_grad():
        ours = torch.sigmoid(net(torch.from_numpy(volume)[None, None]))[0, 0].numpy()
    reference = keras_reference(volume, params)
    assert ours.shape == volume.shape
    assert np.abs(ours - reference).max() < 1e-5
    assert reference.std() > 0.01  # the comparison is not between two constants


def test_conversion_writes_a_checkpoint_the_pipeline_loads(tmp_path):
    from analysis.inference import predict
    from analysis.models import Predictor, inference_network, load

    make_keras_h5(tmp_path / "weights.h5")
    checkpoint = convert_cryovesnet(tmp_path / "weights.h5", tmp_path / "cvn.pt")
    net, meta = load(checkpoint)
    assert meta["voxel_size_nm"] == 2.2 and meta["normalisation"] == CRYOVESNET_NORMALISATION
    assert meta["config"]["architecture"] == "cryovesnet"
    assert meta["data"]["sha256"] == sha256(tmp_path / "weights.h5")
    x = torch.randn(1, 1, 12, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # BatchNorm folded into the convolutions: same outputs
        fast = inference_network(net)(x.contiguous(memory_format=torch.channels_last_3d))
        plain = net(x)
        assert (fast - plain).abs().max() < 1e-5 * plain.abs().max()
    tomogram = np.random.default_rng(2).normal(size=(20, 40, 40)).astype(np.float32)
    keras = Predictor.load(tmp_path / "weights.h5", precision="float32")
    probability = predict(tomogram, 2.2, keras, progress=False)
    assert probability.shape == tomogram.shape
    assert probability.min() >= 0 and probability.max() <= 1
    # converted once, into the cache, under the file's name and digest
    cached = tmp_path / "cache" / f"weights_{sha256(tmp_path / 'weights.h5')[:12]}.pt"
    assert keras.checkpoint["data"] == read_checkpoint(cached)["data"]
    same = predict(tomogram, 2.2, Predictor(net, meta, precision="float32"), progress=False)
    np.testing.assert_array_equal(same, probability)


def test_download_is_checked_and_offline_is_one_clear_error(tmp_path):
    make_keras_h5(tmp_path / "weights.h5")
    url = (tmp_path / "weights.h5").as_uri()
    with pytest.raises(ValueError, match="could not be downloaded .* pass the .h5 file"):
        fetch_cryovesnet(tmp_path / "c1", url="http://127.0.0.1:9/weights.h5", timeout_s=5)
    with pytest.raises(ValueError, match="SHA-256 .* expected"):
        fetch_cryovesnet(tmp_path / "c2", url=url, expected_sha256="0" * 64)
    assert not list((tmp_path / "c2").glob("*.h5"))  # the wrong file is not kept
    good = fetch_cryovesnet(
        tmp_path / "c3", url=url, expected_sha256=sha256(tmp_path / "weights.h5")
    )
    assert good.name == "cryovesnet.pt" and good.exists()


def test_the_cli_runs_with_model_cryovesnet(tmp_path, monkeypatch):
    from analysis.cli import main
    from analysis.io import read_tomogram, write_mrc

    make_keras_h5(tmp_path / "weights.h5")
    (tmp_path / "cache").mkdir()
    convert_cryovesnet(tmp_path / "weights.h5", tmp_path / "cache" / "cryovesnet.pt")
    tomo = write_mrc(
        tmp_path / "t.mrc",
        np.random.default_rng(3).normal(size=(16, 32, 32)).astype(np.float32),
        2.2,
    )
    out = tmp_path / "p.mrc"
    assert main(["predict", str(tomo), "--out", str(out), "--model", "cryovesnet", "--quiet"]) == 0
    assert read_tomogram(out).shape == (16, 32, 32)


def test_fine_tuning_from_the_keras_weights_keeps_architecture_and_normalisation(tmp_path):
    from analysis.cli import main
    from analysis.synthetic import example_files

    make_keras_h5(tmp_path / "weights.h5")
    files = example_files("test", seed=301, quick=True)
    out = tmp_path / "tuned.pt"
    args = [
        "train",
        str(out),
        "--tomogram",
        str(files["tomogram"]),
        "--labels",
        str(files["labels"]),
        "--epochs",
        "1",
        "--steps-per-epoch",
        "2",
        "--batch-size",
        "1",
        "--patch-size",
        "16",
        "--init-from",
        str(tmp_path / "weights.h5"),
    ]
    assert main(args) == 0
    tuned = read_checkpoint(out)
    assert tuned["config"]["architecture"] == "cryovesnet"
    assert tuned["normalisation"] == CRYOVESNET_NORMALISATION


def test_availability_is_a_path_or_the_reason(tmp_path, monkeypatch):
    from analysis.models import keras as cryovesnet

    monkeypatch.setattr(cryovesnet, "CRYOVESNET_URL", "http://127.0.0.1:9/weights.h5")
    monkeypatch.setattr(
        cryovesnet.fetch_cryovesnet,
        "__kwdefaults__",
        {**cryovesnet.fetch_cryovesnet.__kwdefaults__, "url": "http://127.0.0.1:9/weights.h5"},
    )
    path, reason = cryovesnet.cryovesnet_if_available(timeout_s=5)
    assert path is None and "could not be downloaded" in reason
    make_keras_h5(tmp_path / "weights.h5")
    convert_cryovesnet(tmp_path / "weights.h5", tmp_path / "cache" / "cryovesnet.pt")
    path, reason = cryovesnet.cryovesnet_if_available()
    assert path == tmp_path / "cache" / "cryovesnet.pt" and reason == ""


def test_a_local_copy_named_by_the_variable_is_checked(tmp_path, monkeypatch):
    make_keras_h5(tmp_path / "weights.h5")
    monkeypatch.setenv(LOCAL_WEIGHTS_VARIABLE, str(tmp_path / "weights.h5"))
    with pytest.raises(InputFileError, match="not the published network"):
        fetch_cryovesnet(tmp_path / "c1")
    monkeypatch.setenv(LOCAL_WEIGHTS_VARIABLE, str(tmp_path / "missing.h5"))
    with pytest.raises(InputFileError, match="ANALYSIS_CRYOVESNET_H5"):
        fetch_cryovesnet(tmp_path / "c2")
    monkeypatch.setenv(LOCAL_WEIGHTS_VARIABLE, str(tmp_path / "weights.h5"))
    checkpoint = fetch_cryovesnet(tmp_path / "c3", expected_sha256=sha256(tmp_path / "weights.h5"))
    assert checkpoint == tmp_path / "c3" / "cryovesnet.pt" and checkpoint.exists()


@needs_published
def test_the_published_weights_segment_a_generated_tomogram(tmp_path, monkeypatch, capsys):
    """``--model cryovesnet`` with the real file: the network trained on real synaptosomes
    finds the vesicles of the quick held-out synthetic tomogram (generator v3, seed 301)."""
    import json

    from analysis.cli import main
    from analysis.synthetic import example_files

    assert sha256(PUBLISHED_H5) == CRYOVESNET_SHA256
    monkeypatch.setenv(LOCAL_WEIGHTS_VARIABLE, str(PUBLISHED_H5))
    files = example_files("test", seed=301, quick=True)
    out = tmp_path / "out"
    out.mkdir()
    assert (
        main(["segment", str(files["tomogram"]), "--out", str(out), "--model", "cryovesnet"]) == 0
    )
    stem = files["tomogram"].stem
    capsys.readouterr()
    args = ["evaluate", "--pred", str(out / f"{stem}_labels.mrc"), "--truth", str(files["labels"])]
    assert main([*args, "--json"]) == 0
    scores = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert scores["f1"] >= 0.85 and scores["dice"] >= 0.75
