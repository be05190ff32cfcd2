"""What else a presynaptic terminal holds: varied cytoplasm, cytoskeleton, organelles, gold.

The default phantom (:func:`analysis.synthetic.geometry.make_phantom` without a :class:`Scene`)
has a sparse cytoplasm of small protein blobs, one mitochondrion and two endosome-like vesicles.
A network trained on that learns that anything round and membrane-bounded is a synaptic vesicle
and that the space between vesicles is quiet. Real synaptic cytoplasm is crowded, and real
tomograms hold dense-core and coated vesicles, multivesicular bodies, ER, actin, microtubules
and gold fiducials. A :class:`Scene` adds them, each drawn from its own random stream so that
the default phantom stays exactly as it was.

All positions are voxels (z, y, x); lengths are nm unless the name says ``_vox``; densities are
relative to lipid head groups (mass, dark after imaging). Only synaptic vesicles (including
those cut by the volume's faces) are labelled; everything here is a hard negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from analysis.io.rasterise import ball_box, is_empty


@dataclass
class Scene:
    """Content added to the phantom beside the synaptic vesicles (counts per tomogram).

    Attributes
    ----------
    field_amplitude : float
        SD of a correlated random density field filling the cytoplasm (0: none).
    field_correlation_nm : float
        Below this length the field is smooth: its spectrum is flat up to 1 / this.
    field_exponent : float
        The field's power spectrum falls as k^(-2 exponent) beyond that (see random_field).
    n_actin, n_microtubules, n_er_tubules : int
        Straight cytoskeletal filaments (7 nm actin, 25 nm hollow microtubules) and
        ER tubules (membrane tubes of 30–60 nm diameter).
    n_dense_core, n_coated, n_endosomes : int
        Dense-core vesicles (70–100 nm, dark lumen), clathrin-coated vesicles (a vesicle under
        a spiky coat), multivesicular endosomes (100–220 nm with vesicles inside).
    cristae : bool
        Give the mitochondrion (if any) inner membrane folds.
    n_gold : int
        10 nm gold fiducials, mostly at the top and bottom of the section (they streak).
    n_cut_vesicles : int
        Synaptic vesicles whose centre lies near or beyond a face of the volume, so that only
        part of them is inside (they are vesicles and are labelled).
    """

    field_amplitude: float = 0.0
    field_correlation_nm: float = 20.0
    field_exponent: float = 2.0
    n_actin: int = 0
    n_microtubules: int = 0
    n_er_tubules: int = 0
    n_dense_core: int = 0
    n_coated: int = 0
    n_endosomes: int = 0
    cristae: bool = False
    n_gold: int = 0
    n_cut_vesicles: int = 0


def random_field(shape, voxel_size_nm, correlation_nm, exponent, rng) -> np.ndarray:
    """A Gaussian random field of unit SD with a power-law spectrum (float32, ``shape``).

    The power spectrum is ``(1 + (2π k · correlation_nm)²)^-exponent`` (k in cycles per nm, a
    Matérn field): flat below ``1 / (2π correlation_nm)`` and falling as ``k^(-2 exponent)`` beyond (in 3-D, exponents above
    1.5 give fields dominated by structure of about ``correlation_nm``, lower ones rough ones).
    """
    white = rng.standard_normal(shape, dtype=np.float32)
    spec = np.fft.rfftn(white)
    k2 = (
        sum(
            np.fft.fftfreq(n, d=voxel_size_nm).reshape([-1 if i == a else 1 for i in range(3)]) ** 2
            for a, n in enumerate(shape[:-1])
        )
        + (np.fft.rfftfreq(shape[-1], d=voxel_size_nm) ** 2)[None, None, :]
    )
    spec *= (1 + (2 * np.pi) ** 2 * k2 * correlation_nm**2) ** (-exponent / 2)
    spec[0, 0, 0] = 0
    field = np.fft.irfftn(spec, s=shape, axes=(0, 1, 2)).astype(np.float32)
    return field / max(float(field.std()), 1e-12)


def unit_vector(rng) -> np.ndarray:
    """A direction drawn uniformly from the sphere."""
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def tube(density, a, b, radius_vox, wall_sigma_vox, value, where=None) -> None:
    """Add a hollow tube (density on a cylinder of ``radius_vox``) from a to b (voxels).

    ``where`` (bool, like ``density``) limits the density added, e.g. to outside vesicles.
    A ``radius_vox`` of 0 gives a solid filament of Gaussian profile ``wall_sigma_vox``.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    reach = radius_vox + 3 * wall_sigma_vox + 1
    lo = np.maximum(np.floor(np.minimum(a, b) - reach).astype(int), 0)
    hi = np.minimum(np.ceil(np.maximum(a, b) + reach).astype(int) + 1, density.shape)
    if np.any(hi <= lo):
        return
    sl = tuple(slice(int(p), int(q)) for p, q in zip(lo, hi, strict=True))
    grids = np.ogrid[sl]
    ab = b - a
    t = sum((g - ai) * d for g, ai, d in zip(grids, a, ab, strict=True)) / max(float(ab @ ab), 1e-9)
    t = np.clip(t, 0, 1)
    dist = np.sqrt(sum((g - (ai + t * d)) ** 2 for g, ai, d in zip(grids, a, ab, strict=True)))
    add = value * np.exp(-((dist - radius_vox) ** 2) / (2 * wall_sigma_vox**2))
    if where is not None:
        add = add * where[sl]
    density[sl] += add.astype(np.float32)


def chord(shape, rng, length_vox) -> tuple[np.ndarray, np.ndarray]:
    """End points of a straight segment of ``length_vox`` through a random point of ``shape``."""
    centre = rng.uniform(0, 1, 3) * np.asarray(shape)
    half = unit_vector(rng) * length_vox / 2
    return centre - half, centre + half


def add_cytoplasm(density, g, scene: Scene, rng, free) -> None:
    """The crowded cytoplasm: a correlated density field, actin and microtubules.

    ``free`` (bool, z, y, x) is True outside synaptic vesicles; nothing is added inside them.
    """
    vs = g.voxel_size_nm
    if scene.field_amplitude > 0:
        field = random_field(
            density.shape, vs, scene.field_correlation_nm, scene.field_exponent, rng
        )
        density += (scene.field_amplitude * field * free).astype(np.float32)
    for _ in range(scene.n_actin):
        a, b = chord(density.shape, rng, g.vox(rng.uniform(60, 400)))
        tube(density, a, b, 0.0, g.vox(2.2), rng.uniform(0.5, 1.0), free)
    for _ in range(scene.n_microtubules):
        a, b = chord(density.shape, rng, g.vox(rng.uniform(300, 900)))
        tube(density, a, b, g.vox(10.5), g.vox(2.0), rng.uniform(0.6, 1.0), free)


def add_gold(density, g, n, rng) -> np.ndarray:
    """10 nm gold beads (very dense), mostly near the section's top and bottom; centres (vox)."""
    centres = []
    nz = density.shape[0]
    for _ in range(n):
        z = rng.choice([rng.uniform(0, 0.15), rng.uniform(0.85, 1.0), rng.uniform(0, 1)])
        c = np.array([z * nz, *rng.uniform(0, 1, 2) * np.asarray(density.shape[1:])])
        r = g.vox(rng.uniform(4.5, 5.5))
        sl = ball_box(c, r + 2, density.shape)
        if is_empty(sl):
            continue
        d = np.sqrt(sum((gr - ci) ** 2 for gr, ci in zip(np.ogrid[sl], c, strict=True)))
        density[sl] += (rng.uniform(8.0, 15.0) / (1 + np.exp((d - r) / 0.4))).astype(np.float32)
        centres.append(c)
    return np.asarray(centres).reshape(-1, 3)


def coat(density, centre, radius_vox, g, rng) -> None:
    """A clathrin-like coat: dense spots on a sphere 10 nm outside the membrane."""
    n = int(4 * np.pi * (radius_vox * g.voxel_size_nm + 10) ** 2 / 60)  # one per ~60 nm²
    dirs = rng.standard_normal((n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    spots = np.asarray(centre) + dirs * (radius_vox + g.vox(rng.uniform(8, 12)))
    impulses = np.zeros(density.shape, np.float32)
    inside = np.all((spots >= 0) & (spots < np.asarray(density.shape)), axis=1)
    np.add.at(impulses, tuple(spots[inside].astype(int).T), 1.0)
    sigma = g.vox(2.0)
    density += ndimage.gaussian_filter(impulses, sigma) * np.float32(
        0.8 * (2 * np.pi * sigma**2) ** 1.5
    )


def cristae(density, centre, inner_radius_vox, g, rng, bilayer) -> None:
    """Inner-membrane folds of a mitochondrion: bilayer sheets across the matrix."""
    sl = ball_box(centre, inner_radius_vox, density.shape)
    if is_empty(sl):
        return
    grids = np.ogrid[sl]
    rel = [gr - c for gr, c in zip(grids, centre, strict=True)]
    r = np.sqrt(sum(x**2 for x in rel))
    normal = unit_vector(rng)
    inside = r < inner_radius_vox - g.vox(3)
    for offset in np.linspace(-0.7, 0.7, int(rng.integers(3, 7))) * inner_radius_vox:
        d_nm = (sum(x * n for x, n in zip(rel, normal, strict=True)) - offset) * g.voxel_size_nm
        # a crista is a flattened sac: two bilayers 8 nm apart, ending before the far side
        sheet = bilayer(d_nm - 4) + bilayer(d_nm + 4)
        density[sl] += (sheet * inside * (r < rng.uniform(0.6, 0.95) * inner_radius_vox)).astype(
            np.float32
        )
