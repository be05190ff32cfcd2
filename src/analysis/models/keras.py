"""CryoVesNet's published weights: the Keras file, its download and its conversion.

CryoVesNet (Khosrozadeh et al., J Cell Biol 2024) ships a Keras 2.9 network trained on manually
segmented rat-synaptosome tomograms (``cryovesnet/weights/weights.h5`` of its repository, GPL-3).
The file is not part of this package: :func:`fetch_cryovesnet` downloads it on demand, checks
its SHA-256, converts it with :func:`convert_cryovesnet` into a checkpoint of this package
(:class:`analysis.models.CryoVesNetUNet`, voxel size and normalisation recorded) and caches
that, so that ``--model cryovesnet`` works everywhere a checkpoint does (inference,
post-processing, evaluation, fine-tuning, the command line). Any other Keras file of the same
layout is converted once by :func:`keras_checkpoint`.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

from analysis.errors import InputFileError
from analysis.models.checkpoint import save_checkpoint
from analysis.models.cryovesnet import CONVOLUTIONS, CryoVesNetUNet

CRYOVESNET_URL = "https://github.com/Zuber-group/CryoVesNet/raw/main/cryovesnet/weights/weights.h5"
CRYOVESNET_SHA256 = "495748b7ad5daaa0f8895b49497798a9331a70ce84b3a227c7e387a930f15f37"
#: Voxel size (nm) and input normalisation of the published network.
CRYOVESNET_VOXEL_SIZE_NM = 2.2
CRYOVESNET_NORMALISATION = {"method": "zscore", "blur_sigma_vox": 1.0}
#: Environment variable naming a local copy of the published ``weights.h5`` to use instead of
#: downloading it.
LOCAL_WEIGHTS_VARIABLE = "ANALYSIS_CRYOVESNET_H5"
#: File name endings of Keras weights files.
KERAS_SUFFIXES = (".h5", ".hdf5")


def _dataset(group, name: str, path) -> np.ndarray:
    """``group[name]`` (e.g. ``kernel:0``) as an array; a clear error when absent."""
    if name not in group:
        raise InputFileError(path, f"lacks {group.name}/{name}: not the CryoVesNet Keras layout")
    return np.asarray(group[name], dtype=np.float32)


def load_keras_weights(h5_path: str | os.PathLike) -> CryoVesNetUNet:
    """Build :class:`CryoVesNetUNet` and fill it from CryoVesNet's Keras HDF5 file.

    Keras kernels are (kz, ky, kx, in, out) over (z, y, x) inputs and cross-correlate, as torch
    does, so a kernel becomes a torch weight by moving its two last axes to the front.
    BatchNormalization layers ``batch_normalization``, ``…_1`` … ``…_9`` follow the
    convolutions in network order.
    """
    import h5py

    path = Path(h5_path)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise InputFileError(path, f"is not a readable HDF5 file ({err})") from None
    net = CryoVesNetUNet()
    with handle, torch.no_grad():
        weights = handle["model_weights"] if "model_weights" in handle else handle

        def layer(name):
            if name not in weights:
                raise InputFileError(path, f"has no layer {name!r}: not CryoVesNet's network")
            group = weights[name]
            return group[name] if name in group else group

        for i, (name, _, _) in enumerate(CONVOLUTIONS):
            conv, norm, _ = net.blocks[name]
            g = layer(name)
            kernel = _dataset(g, "kernel:0", path)
            if kernel.shape != (3, 3, 3, conv.in_channels, conv.out_channels):
                raise InputFileError(path, f"{name} kernel has shape {kernel.shape}")
            conv.weight.copy_(torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2).copy()))
            conv.bias.copy_(torch.from_numpy(_dataset(g, "bias:0", path)))
            bn = layer("batch_normalization" + (f"_{i}" if i else ""))
            norm.weight.copy_(torch.from_numpy(_dataset(bn, "gamma:0", path)))
            norm.bias.copy_(torch.from_numpy(_dataset(bn, "beta:0", path)))
            norm.running_mean.copy_(torch.from_numpy(_dataset(bn, "moving_mean:0", path)))
            norm.running_var.copy_(torch.from_numpy(_dataset(bn, "moving_variance:0", path)))
        g = layer("conv3d")
        kernel = _dataset(g, "kernel:0", path)
        net.head.weight.copy_(torch.from_numpy(kernel.transpose(4, 3, 0, 1, 2).copy()))
        net.head.bias.copy_(torch.from_numpy(_dataset(g, "bias:0", path)))
    return net.eval()


def sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_cryovesnet(h5_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write the Keras weights as a checkpoint of this package (voxel size, normalisation)."""
    net = load_keras_weights(h5_path)
    return save_checkpoint(
        out,
        net,
        voxel_size_nm=CRYOVESNET_VOXEL_SIZE_NM,
        normalisation=CRYOVESNET_NORMALISATION,
        seed=0,
        data={
            "source": "CryoVesNet published weights (rat synaptosomes, manual segmentation)",
            "file": Path(h5_path).name,
            "sha256": sha256(h5_path),
            "licence": "GPL-3.0 (CryoVesNet repository)",
        },
    )


def default_cache_dir() -> Path:
    """``$ANALYSIS_CACHE_DIR``, else ``~/.cache/sv-analysis``."""
    return Path(os.environ.get("ANALYSIS_CACHE_DIR", Path.home() / ".cache" / "sv-analysis"))


def fetch_cryovesnet(
    cache_dir: str | os.PathLike | None = None,
    *,
    url: str = CRYOVESNET_URL,
    expected_sha256: str = CRYOVESNET_SHA256,
    timeout_s: float = 60.0,
) -> Path:
    """The converted CryoVesNet checkpoint, downloading and converting it on first use.

    Returns the path of ``cryovesnet.pt`` in the cache. A copy of the published ``.h5`` named
    by the environment variable :data:`LOCAL_WEIGHTS_VARIABLE` is used instead of the download
    (a lab's shared copy, or a machine without internet). Either is checked against
    ``expected_sha256``; without internet the error says where to get the file by hand (then
    pass the ``.h5`` path as the model, or name it in the variable).
    """
    from analysis.io import atomic_output

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    checkpoint = cache / "cryovesnet.pt"
    if checkpoint.exists():
        return checkpoint
    cache.mkdir(parents=True, exist_ok=True)
    local = os.environ.get(LOCAL_WEIGHTS_VARIABLE, "")
    if local:
        h5 = Path(local)
        if not h5.is_file():
            raise InputFileError(h5, f"no such file (named by {LOCAL_WEIGHTS_VARIABLE})")
        if sha256(h5) != expected_sha256:
            raise InputFileError(
                h5, f"is not the published network: SHA-256 differs from {expected_sha256[:12]}…"
            )
        return convert_cryovesnet(h5, checkpoint)
    h5 = cache / "cryovesnet_weights.h5"
    if not h5.exists():
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                with atomic_output(h5) as tmp:
                    tmp.write_bytes(response.read())
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise InputFileError(
                url,
                f"could not be downloaded ({reason}); without internet, download it "
                f"elsewhere, check its SHA-256 ({expected_sha256[:12]}…) and pass the .h5 "
                "file as the model",
            ) from None
    digest = sha256(h5)
    if digest != expected_sha256:
        h5.unlink()
        raise InputFileError(
            url, f"downloaded file has SHA-256 {digest[:12]}…, expected {expected_sha256[:12]}…"
        )
    return convert_cryovesnet(h5, checkpoint)


def keras_checkpoint(h5_path: str | os.PathLike) -> Path:
    """The checkpoint of a CryoVesNet-layout Keras file, converted once and cached.

    The cached file (in :func:`default_cache_dir`) is named after the file's stem and the first
    12 hex digits of its SHA-256, so a changed file is converted again.
    """
    h5 = Path(h5_path)
    if not h5.exists():
        raise InputFileError(h5, "no such file")
    out = default_cache_dir() / f"{h5.stem}_{sha256(h5)[:12]}.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    return out if out.exists() else convert_cryovesnet(h5, out)


def cryovesnet_if_available(timeout_s: float = 10.0) -> tuple[Path | None, str]:
    """``(checkpoint, "")`` when the published weights are cached or can be fetched, else
    ``(None, reason)`` — for notebooks that compare with them where there is internet."""
    try:
        return fetch_cryovesnet(timeout_s=timeout_s), ""
    except InputFileError as err:
        return None, str(err)
