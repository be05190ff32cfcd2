"""Speed of post-processing against a plain scipy.ndimage pipeline doing the same steps.

Input: a seeded synthetic synapse of 256 × 512 × 512 voxels at 2.2 nm with 300 vesicles
(:func:`analysis.synthetic.geometry.make_phantom`), its density as the tomogram (membranes
dark, with noise) and a probability map made from the true labels (blurred by σ = 1 voxel,
with noise) — so that touching vesicles merge in the mask as they do after a network.

Both pipelines run threshold 0.5 → components → splitting by a seeded watershed on the
distance transform → sphere fit per vesicle → outliers → overlaps → whole-sphere labels:

* ``analysis``: :func:`analysis.postprocess.segment_vesicles` (cc3d components, edt distance
  transform and the watershed per component in its bounding box);
* ``scipy`` (baseline): ``scipy.ndimage.label``, ``distance_transform_edt`` and
  ``maximum_filter`` over the whole volume and one whole-volume watershed, then the same
  sphere fit, outlier and overlap code.

It prints each pipeline's time, the ratio, and how alike their results are (vesicles kept,
Dice of the two label volumes). Run:  .venv/bin/python benchmarks/postprocess_speed.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from analysis.evaluate import dice_score
from analysis.postprocess import flag_outliers, paint_spheres, resolve_overlaps
from analysis.postprocess.spheres import fit_vesicles
from analysis.synthetic.geometry import SynapseGeometry, make_phantom

VOXEL_NM = 2.2
MIN_RADIUS_NM = 12.0


def make_inputs(shape, n_vesicles, seed=7):
    """Tomogram (membranes dark) and probability map of a seeded phantom."""
    phantom = make_phantom(SynapseGeometry(shape=shape, n_vesicles=n_vesicles), seed=seed)
    rng = np.random.default_rng(seed)
    tomogram = (-phantom.density + rng.normal(0, 0.3, shape)).astype(np.float32)
    probability = ndimage.gaussian_filter((phantom.labels > 0).astype(np.float32), 1.0)
    probability += rng.normal(0, 0.05, shape).astype(np.float32)
    return tomogram, np.clip(probability, 0, 1), phantom


def scipy_pipeline(probability, tomogram, voxel_size_nm):
    """The same steps with whole-volume scipy.ndimage operations."""
    mask = probability > 0.5
    six = ndimage.generate_binary_structure(3, 1)
    components, _ = ndimage.label(mask, structure=six)
    distance = ndimage.distance_transform_edt(mask)
    min_radius_vox = MIN_RADIUS_NM / voxel_size_nm
    size = 2 * int(round(min_radius_vox)) + 1
    peaks = (distance == ndimage.maximum_filter(distance, size=size)) & (
        distance >= 0.5 * min_radius_vox
    )
    seeds, _ = ndimage.label(peaks, structure=np.ones((3, 3, 3)))
    # Components without a seed of their own keep one label, as in analysis.postprocess.
    unseeded = np.setdiff1d(np.unique(components[mask]), np.unique(components[seeds > 0]))
    extra = np.isin(components, unseeded)
    seeds[extra] = components[extra] + seeds.max()
    labels = watershed(-distance, seeds, mask=mask)
    labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
    fits = fit_vesicles(labels, tomogram, voxel_size_nm)
    fits["radius_vox"] = fits["mask_radius_vox"]
    fits["radius_nm"] = fits["radius_vox"] * voxel_size_nm
    table = flag_outliers(fits, min_radius_nm=MIN_RADIUS_NM)
    kept = table[table["kept"]].copy()
    kept["radius_vox"] = resolve_overlaps(
        kept[["z_vox", "y_vox", "x_vox"]].to_numpy(float), kept["radius_vox"].to_numpy(float)
    )
    kept.insert(0, "vesicle_id", np.arange(1, len(kept) + 1))
    return paint_spheres(kept, probability.shape), kept


def main():
    from analysis.postprocess import segment_vesicles

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 512, 512))
    parser.add_argument("--vesicles", type=int, default=300)
    args = parser.parse_args()
    tomogram, probability, phantom = make_inputs(tuple(args.shape), args.vesicles)
    print(f"input {tuple(args.shape)}, {len(phantom.vesicles)} vesicles")

    start = time.perf_counter()
    ours = segment_vesicles(probability, tomogram, VOXEL_NM, min_radius_nm=MIN_RADIUS_NM)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    base_labels, base_kept = scipy_pipeline(probability, tomogram, VOXEL_NM)
    t_base = time.perf_counter() - start

    truth = phantom.labels > 0
    print(
        f"analysis.postprocess  {t_ours:6.1f} s  kept {len(ours.kept):4d}  "
        f"Dice with truth {dice_score(ours.labels, truth):.4f}"
    )
    print(
        f"scipy.ndimage         {t_base:6.1f} s  kept {len(base_kept):4d}  "
        f"Dice with truth {dice_score(base_labels, truth):.4f}"
    )
    print(
        f"speed-up {t_base / t_ours:.2f}x; Dice between the two {dice_score(ours.labels, base_labels):.4f}"
    )


if __name__ == "__main__":
    main()
