"""The networks, their checkpoints, and one way to load and run them.

- :func:`load` turns any model argument (the shipped network, a checkpoint, a Keras file,
  ``"cryovesnet"``) into ``(network, checkpoint)``;
- :class:`Predictor` holds a network ready to predict (device, precision, test-time
  augmentation) and is called on batches of tiles; :func:`analysis.inference.predict` runs it
  over a whole tomogram;
- :class:`UNet3D` (this package's network) and :class:`CryoVesNetUNet` (the published one);
  checkpoints are saved and read by :mod:`.checkpoint`, whose :data:`ARCHITECTURES` registry
  says which network a checkpoint holds.
"""

from analysis.models.checkpoint import (
    ARCHITECTURES,
    CHECKPOINT_FORMAT_VERSION,
    average_weights,
    build_network,
    export_weights,
    provenance,
    read_checkpoint,
    save_checkpoint,
    training_history,
)
from analysis.models.cryovesnet import CryoVesNetConfig, CryoVesNetUNet
from analysis.models.keras import (
    CRYOVESNET_NORMALISATION,
    CRYOVESNET_SHA256,
    CRYOVESNET_URL,
    CRYOVESNET_VOXEL_SIZE_NM,
    LOCAL_WEIGHTS_VARIABLE,
    convert_cryovesnet,
    cryovesnet_if_available,
    default_cache_dir,
    fetch_cryovesnet,
    load_keras_weights,
)
from analysis.models.loading import (
    SHIPPED_2D_WEIGHTS,
    SHIPPED_MODELS,
    SHIPPED_WEIGHTS,
    checkpoint_path,
    load,
)
from analysis.models.predictor import (
    PRECISIONS,
    TTA_MODES,
    Predictor,
    inference_network,
    resolve_precision,
    select_device,
)
from analysis.models.unet import UNet3D, UNetConfig

__all__ = [
    "ARCHITECTURES",
    "CHECKPOINT_FORMAT_VERSION",
    "CRYOVESNET_NORMALISATION",
    "CRYOVESNET_SHA256",
    "CRYOVESNET_URL",
    "CRYOVESNET_VOXEL_SIZE_NM",
    "LOCAL_WEIGHTS_VARIABLE",
    "PRECISIONS",
    "SHIPPED_2D_WEIGHTS",
    "SHIPPED_MODELS",
    "SHIPPED_WEIGHTS",
    "TTA_MODES",
    "CryoVesNetConfig",
    "CryoVesNetUNet",
    "Predictor",
    "UNet3D",
    "UNetConfig",
    "build_network",
    "checkpoint_path",
    "convert_cryovesnet",
    "cryovesnet_if_available",
    "default_cache_dir",
    "average_weights",
    "export_weights",
    "fetch_cryovesnet",
    "inference_network",
    "load",
    "load_keras_weights",
    "provenance",
    "read_checkpoint",
    "resolve_precision",
    "save_checkpoint",
    "training_history",
    "select_device",
]
