"""Geometry of a synthetic presynaptic terminal, with exact ground truth.

All positions are in voxels (z, y, x) of the output volume; sizes are given in nm and converted
with ``voxel_size_nm``. The active-zone (AZ) plasma membrane is a gently curved sheet
``y = y_az(z, x)``; the presynaptic cytoplasm, with the synaptic vesicles (SVs), lies at larger
y, the synaptic cleft and the postsynaptic membrane at smaller y.

The density returned is "mass": 0 for cytosol, about 1 for lipid head groups. Imaging
(:mod:`analysis.synthetic.imaging`) turns it into cryo-ET contrast, where mass is dark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import expit

from analysis.io.rasterise import ball_box, paint_ball, plane_basis
from analysis.synthetic import scene as extra
from analysis.synthetic.scene import Scene

# Lipid bilayer: two head-group layers 3 nm apart (centre to centre) and a lighter tail core,
# about 4 nm in all, as in cryo-ET line profiles of synaptic membranes.
HEADGROUP_SIGMA_NM = 0.7
TAIL_DENSITY = 0.35


@dataclass
class SynapseGeometry:
    """Parameters of the phantom. Lengths in nm, densities relative to lipid head groups.

    The defaults describe a binned tomogram of a synaptosome, like those CryoVesNet was
    trained on, scaled down to a size that builds in seconds.
    """

    shape: tuple[int, int, int] = (128, 256, 256)
    voxel_size_nm: float = 2.2
    n_vesicles: int = 160
    #: outer radius (outer edge of the membrane) of SVs: normal, clipped to a range
    radius_mean_nm: float = 20.5
    radius_sd_nm: float = 2.0
    radius_range_nm: tuple[float, float] = (16.0, 26.0)
    membrane_thickness_nm: float = 4.0
    #: centre-to-centre distance of the bilayer's two head-group layers
    headgroup_separation_nm: float = 3.0
    lumen_density_range: tuple[float, float] = (0.12, 0.3)
    #: smallest gap between two SV outer surfaces; 1 nm makes many nearly touch
    min_gap_nm: float = 1.0
    #: SVs cluster towards the AZ: density of SV centres decays as exp(-distance / this)
    az_decay_nm: float = 60.0
    az_depth_fraction: float = 0.16  # mean height of the AZ membrane, as a fraction of y
    az_amplitude_nm: float = 12.0  # curvature of the AZ membrane
    cleft_width_nm: float = 24.0
    n_large_vesicles: int = 2
    large_radius_range_nm: tuple[float, float] = (32.0, 50.0)
    mitochondrion: bool = True
    crowder_density_per_um3: float = 6.0e4
    #: crowders are Gaussian blobs of this σ (2.5 nm: small complexes; 5 nm: ribosome-sized)
    crowder_sigma_nm: float = 2.5
    crowder_peak_range: tuple[float, float] = (0.3, 0.7)
    connector_max_gap_nm: float = 12.0
    connector_fraction: float = 0.5
    tether_max_gap_nm: float = 14.0
    tether_fraction: float = 0.6
    #: filaments: a Gaussian profile of σ = radius / 2 (FWHM ≈ 3.5 nm) at protein density;
    #: thinner or fainter ones vanish in the CTF and noise of the default imaging
    filament_radius_nm: float = 3.0
    filament_density: float = 1.0
    #: filaments run parallel to the line of closest approach of their two boundaries (a
    #: connector: the vesicles' centre line; a tether: straight down to the membrane), offset
    #: from it by up to this much, uniformly over a disc — they join facing membranes, not
    #: always at their nearest points
    filament_offset_nm: float = 4.0
    #: more content (crowded cytoplasm, cytoskeleton, organelles, gold, cut vesicles); None
    #: keeps the phantom as generator version 3 made it
    scene: Scene | None = None
    #: extra options kept for provenance (free-form)
    notes: dict = field(default_factory=dict)

    def vox(self, value_nm: float) -> float:
        """A length in nm, in voxels."""
        return value_nm / self.voxel_size_nm


def scaled_geometry(
    shape: tuple[int, int, int],
    voxel_size_nm: float = SynapseGeometry.voxel_size_nm,
    n_vesicles: int = SynapseGeometry.n_vesicles,
) -> SynapseGeometry:
    """The default phantom in a volume of another shape, as packed with vesicles.

    Parameters
    ----------
    shape : tuple of int
        Volume shape (z, y, x) in voxels.
    voxel_size_nm : float
        Voxel size (nm).
    n_vesicles : int
        Vesicles in a volume of the default shape (128 × 256 × 256 voxels); the count placed
        scales with the number of voxels, so the packing per voxel stays the same (at least 1).

    Returns
    -------
    SynapseGeometry
        Every other parameter at its default.
    """
    default_voxels = int(np.prod(SynapseGeometry.shape))
    scale = int(np.prod(shape)) / default_voxels
    return SynapseGeometry(
        shape=tuple(shape),
        voxel_size_nm=voxel_size_nm,
        n_vesicles=max(1, round(n_vesicles * scale)),
    )


@dataclass
class Phantom:
    """Density and truth of one synthetic synapse (all arrays (z, y, x))."""

    density: np.ndarray  # float32
    labels: np.ndarray  # int32, one id per SV (whole sphere incl. membrane), 0 elsewhere
    az_mask: np.ndarray  # bool, the AZ membrane bilayer
    region_mask: np.ndarray  # bool, presynaptic cytoplasm (the side of the AZ holding the SVs)
    vesicles: pd.DataFrame
    filaments: pd.DataFrame
    geometry: SynapseGeometry


def _bilayer(distance_nm: np.ndarray, half: float = 1.5) -> np.ndarray:
    """Density across a bilayer as a function of the signed distance to its mid-plane (nm).

    ``half`` is half the head-group separation (nm).
    """
    s2 = 2 * HEADGROUP_SIGMA_NM**2
    heads = np.exp(-((distance_nm - half) ** 2) / s2) + np.exp(-((distance_nm + half) ** 2) / s2)
    core = TAIL_DENSITY * np.exp(-(distance_nm**2) / (2 * 1.0**2))
    return heads + core


def _az_surface(g: SynapseGeometry, rng: np.random.Generator):
    """Height y_az(z, x) of the AZ membrane (voxels), a smooth random curved sheet."""
    nz, ny, nx = g.shape
    z = np.arange(nz)[:, None]
    x = np.arange(nx)[None, :]
    amp = g.vox(g.az_amplitude_nm)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    wavelength = rng.uniform(1.2, 2.0) * nx
    y = (
        g.az_depth_fraction * ny
        + amp * np.sin(2 * np.pi * x / wavelength + phase[0])
        + 0.4 * amp * np.sin(2 * np.pi * z / (1.5 * nz) + phase[1])
    )
    return y.astype(np.float32)


def _membrane_sheet(g, y_surface, offset_vox=0.0):
    """Bilayer density of the sheet y = y_surface + offset, and its signed distance (nm)."""
    ny = g.shape[1]
    yy = np.arange(ny, dtype=np.float32)[None, :, None]
    surface = (y_surface + offset_vox)[:, None, :]
    # Correct the vertical distance for the local slope so the bilayer keeps its thickness.
    dy_dx = np.gradient(y_surface, axis=1)[:, None, :]
    dy_dz = np.gradient(y_surface, axis=0)[:, None, :]
    distance_nm = (yy - surface) * g.voxel_size_nm / np.sqrt(1 + dy_dx**2 + dy_dz**2)
    return distance_nm


def _place_spheres(g, rng, radii_vox, allowed, existing, min_gap_vox, max_tries=200):
    """Rejection-sample non-overlapping sphere centres; ``allowed(c, r)`` gives acceptance odds."""
    centres = []
    placed_c = [c for c, _ in existing]
    placed_r = [r for _, r in existing]
    shape = np.asarray(g.shape, dtype=float)
    for r in radii_vox:
        if np.any(shape - r - 1 <= r + 1):  # does not fit in this volume at all
            centres.append(None)
            continue
        for _ in range(max_tries):
            c = rng.uniform(r + 1, shape - r - 1)
            if placed_c:
                d = np.linalg.norm(np.asarray(placed_c) - c, axis=1)
                if np.any(d < np.asarray(placed_r) + r + min_gap_vox):
                    continue
            if rng.uniform() < allowed(c, r):
                centres.append(c)
                placed_c.append(c)
                placed_r.append(r)
                break
        else:
            centres.append(None)
    return centres


def _box(centre, reach, shape):
    sl = ball_box(centre, reach, shape)
    return sl, np.ogrid[sl]


def _add_shell(density, centre, outer_r_vox, g, lumen_density, double_gap_nm=None):
    """Add a vesicle-like bilayer shell whose outer head group edge sits at ``outer_r_vox``."""
    reach = outer_r_vox + g.vox(4.0)
    sl, grids = _box(centre, reach, density.shape)
    r_nm = (
        np.sqrt(sum((gr - c) ** 2 for gr, c in zip(grids, centre, strict=True))) * g.voxel_size_nm
    )
    outer_nm = outer_r_vox * g.voxel_size_nm
    mid_nm = outer_nm - g.membrane_thickness_nm / 2
    half = g.headgroup_separation_nm / 2
    shell = _bilayer(r_nm - mid_nm, half)
    if double_gap_nm is not None:  # mitochondrion-like: an inner membrane further in
        shell = shell + _bilayer(r_nm - (mid_nm - double_gap_nm), half)
        inner_edge = mid_nm - double_gap_nm - g.membrane_thickness_nm / 2
    else:
        inner_edge = mid_nm - g.membrane_thickness_nm / 2
    lumen = lumen_density / (1 + np.exp((r_nm - inner_edge) / 0.5))
    density[sl] += (shell + lumen).astype(np.float32)


def _add_segment(density, a, b, radius_vox, value):
    """Add a cylinder (filament) from a to b (voxels) with a soft edge."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    sl, grids = _box((a + b) / 2, np.abs(b - a) / 2 + radius_vox + 2, density.shape)
    if any(s.stop <= s.start for s in sl):
        return
    ab = b - a
    length2 = float(ab @ ab) or 1.0
    t = sum((gr - ai) * d for gr, ai, d in zip(grids, a, ab, strict=True)) / length2
    t = np.clip(t, 0, 1)
    d2 = sum((gr - (ai + t * d)) ** 2 for gr, ai, d in zip(grids, a, ab, strict=True))
    density[sl] += (value * np.exp(-d2 / (2 * radius_vox**2))).astype(np.float32)


def make_phantom(geometry: SynapseGeometry | None = None, seed: int = 0) -> Phantom:
    """Build the density and exact truth of one synthetic presynaptic terminal.

    Parameters
    ----------
    geometry : SynapseGeometry, optional
        Sizes, counts and densities; the defaults give a 128×256×256 volume at 2.2 nm.
    seed : int
        Seed of every random choice: the same seed gives the same phantom.

    Returns
    -------
    Phantom
    """
    g = geometry or SynapseGeometry()
    rng = np.random.default_rng(seed)
    nz, ny, nx = g.shape
    density = np.zeros(g.shape, dtype=np.float32)

    # Active zone membrane, the cleft and the postsynaptic membrane (a distractor).
    y_az = _az_surface(g, rng)
    d_az_nm = _membrane_sheet(g, y_az)
    half = g.headgroup_separation_nm / 2
    density += _bilayer(d_az_nm, half).astype(np.float32)
    az_mask = np.abs(d_az_nm) <= g.membrane_thickness_nm / 2
    d_post_nm = _membrane_sheet(g, y_az, -g.vox(g.cleft_width_nm + g.membrane_thickness_nm))
    density += _bilayer(d_post_nm, half).astype(np.float32)
    # cleft proteins and the postsynaptic density: a denser band beside the postsynaptic membrane
    density += (0.15 * expit((-d_post_nm - 2.0) / 1.5) * (d_post_nm > -40)).astype(np.float32)
    region_mask = d_az_nm > g.membrane_thickness_nm / 2

    def distance_to_az_vox(c):
        zi = int(np.clip(round(c[0]), 0, nz - 1))
        xi = int(np.clip(round(c[2]), 0, nx - 1))
        return c[1] - y_az[zi, xi]

    # Distractors first, far from the AZ: a mitochondrion-like double membrane and endosomes.
    obstacles = []
    # the scene's content draws from a stream of its own: without it, every draw is as in v3
    scene_rng = np.random.default_rng([seed, 2])
    if g.mitochondrion:
        r = g.vox(rng.uniform(45.0, 60.0))
        spot = _place_spheres(
            g, rng, [r], lambda c, r: float(distance_to_az_vox(c) > r + g.vox(80)), [], 0
        )[0]
        if spot is not None:
            _add_shell(density, spot, r, g, lumen_density=0.35, double_gap_nm=7.0)
            obstacles.append((spot, r))
            if g.scene is not None and g.scene.cristae:
                inner = r - g.vox(7.0 + g.membrane_thickness_nm)
                extra.cristae(density, spot, inner, g, scene_rng, lambda d: _bilayer(d, half))
    for r_nm in rng.uniform(*g.large_radius_range_nm, size=g.n_large_vesicles):
        r = g.vox(r_nm)
        spot = _place_spheres(
            g,
            rng,
            [r],
            lambda c, r: float(distance_to_az_vox(c) > r + g.vox(30)),
            obstacles,
            g.vox(3),
        )[0]
        if spot is not None:
            _add_shell(density, spot, r, g, lumen_density=rng.uniform(0.0, 0.1))
            obstacles.append((spot, r))
    if g.scene is not None:
        _add_organelles(density, g, g.scene, scene_rng, distance_to_az_vox, obstacles)

    # Synaptic vesicles, clustered towards the AZ, never overlapping, often nearly touching.
    radii_nm = np.clip(
        rng.normal(g.radius_mean_nm, g.radius_sd_nm, size=g.n_vesicles), *g.radius_range_nm
    )
    radii_nm = np.sort(radii_nm)[::-1]  # large first packs more reliably
    min_to_az_vox = g.vox(g.membrane_thickness_nm / 2 + 1.0)

    def sv_odds(c, r):
        gap = distance_to_az_vox(c) - r - min_to_az_vox
        if gap < 0:
            return 0.0
        return float(np.exp(-gap * g.voxel_size_nm / g.az_decay_nm))

    centres = _place_spheres(g, rng, g.vox(radii_nm), sv_odds, obstacles, g.vox(g.min_gap_nm), 400)
    keep = [i for i, c in enumerate(centres) if c is not None]
    centres_vox = np.array([centres[i] for i in keep]).reshape(-1, 3)
    radii_nm = radii_nm[keep]
    radii_vox = g.vox(radii_nm)
    lumen = rng.uniform(*g.lumen_density_range, size=len(keep))
    labels = np.zeros(g.shape, dtype=np.int32)
    for i, (c, r, lum) in enumerate(zip(centres_vox, radii_vox, lumen, strict=True)):
        _add_shell(density, c, r, g, lumen_density=lum)
        paint_ball(labels, c, r, i + 1)
    n_whole = len(centres_vox)
    if g.scene is not None and g.scene.n_cut_vesicles:
        cut_c, cut_r = _cut_vesicles(
            g, scene_rng, distance_to_az_vox, obstacles, centres_vox, radii_vox
        )
        cut_lumen = scene_rng.uniform(*g.lumen_density_range, size=len(cut_r))
        for i, (c, r, lum) in enumerate(zip(cut_c, cut_r, cut_lumen, strict=True)):
            _add_shell(density, c, r, g, lumen_density=lum)
            paint_ball(labels, c, r, n_whole + i + 1)
        centres_vox = np.concatenate([centres_vox, cut_c])
        radii_vox = np.concatenate([radii_vox, cut_r])
        radii_nm = radii_vox * g.voxel_size_nm
        lumen = np.concatenate([lumen, cut_lumen])

    # offsets from a stream of their own, so that they leave every other draw as it was
    offset_rng = np.random.default_rng([seed, 1])
    filaments = _add_filaments(
        density, g, rng, offset_rng, centres_vox[:n_whole], radii_vox[:n_whole], y_az
    )
    _add_crowders(density, g, rng, labels, region_mask)
    if g.scene is not None:
        extra.add_cytoplasm(density, g, g.scene, scene_rng, labels == 0)
        extra.add_gold(density, g, g.scene.n_gold, scene_rng)

    vs = g.voxel_size_nm
    az_dist = np.array([distance_to_az_vox(c) for c in centres_vox]).reshape(-1) * vs
    vesicles = pd.DataFrame(
        {
            "vesicle_id": np.arange(1, len(centres_vox) + 1),
            "z_vox": centres_vox[:, 0],
            "y_vox": centres_vox[:, 1],
            "x_vox": centres_vox[:, 2],
            "radius_vox": radii_vox,
            "z_nm": centres_vox[:, 0] * vs,
            "y_nm": centres_vox[:, 1] * vs,
            "x_nm": centres_vox[:, 2] * vs,
            "radius_nm": radii_nm,
            "membrane_thickness_nm": g.membrane_thickness_nm,
            "lumen_density": lumen,
            "az_distance_nm": az_dist,
        }
    )
    return Phantom(density, labels, az_mask, region_mask, vesicles, filaments, g)


def _disc_offset(rng, normal, radius_vox):
    """A point drawn uniformly from the disc of ``radius_vox`` perpendicular to ``normal``."""
    e1, e2 = plane_basis(normal)
    rho, phi = radius_vox * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    return rho * (np.cos(phi) * e1 + np.sin(phi) * e2)


def _crossings(centre, radius, point, direction) -> tuple[float, float]:
    """The t where point + t·direction (unit) enters and leaves the sphere (centre, radius)."""
    w = point - centre
    b = float(w @ direction)
    root = np.sqrt(max(b * b - float(w @ w) + radius * radius, 0.0))
    return -b - root, -b + root


def _add_filaments(density, g, rng, offset_rng, centres, radii, y_az):
    """Connectors between neighbouring SVs and tethers from SVs to the AZ membrane."""
    rows = []
    radius_vox = g.vox(g.filament_radius_nm) / 2  # Gaussian sigma: the visible width ~ 2 sigma
    reach_vox = g.vox(g.filament_offset_nm)
    nz, _, nx = g.shape
    for i in range(len(centres)):
        for j in range(i + 1, len(centres)):
            v = centres[j] - centres[i]
            dist = float(np.linalg.norm(v))
            gap_nm = (dist - radii[i] - radii[j]) * g.voxel_size_nm
            if gap_nm <= g.connector_max_gap_nm and rng.uniform() < g.connector_fraction:
                u = v / dist
                start = centres[i] + _disc_offset(offset_rng, u, min(reach_vox, radii[j] / 2))
                a = start + u * _crossings(centres[i], radii[i], start, u)[1]
                b = start + u * _crossings(centres[j], radii[j], start, u)[0]
                _add_segment(density, a, b, radius_vox, g.filament_density)
                rows.append(("connector", i + 1, j + 1, a, b))
    down = np.array([0.0, -1.0, 0.0])
    for i, (c, r) in enumerate(zip(centres, radii, strict=True)):
        zi = int(np.clip(round(c[0]), 0, nz - 1))
        xi = int(np.clip(round(c[2]), 0, nx - 1))
        gap_nm = (c[1] - r - y_az[zi, xi]) * g.voxel_size_nm - g.membrane_thickness_nm / 2
        if gap_nm <= g.tether_max_gap_nm and rng.uniform() < g.tether_fraction:
            start = c + _disc_offset(offset_rng, down, min(reach_vox, r / 2))
            a = start + down * _crossings(c, r, start, down)[1]
            zo = int(np.clip(round(a[0]), 0, nz - 1))
            xo = int(np.clip(round(a[2]), 0, nx - 1))
            b = np.array([a[0], y_az[zo, xo] + g.vox(g.membrane_thickness_nm / 2), a[2]])
            _add_segment(density, a, b, radius_vox, g.filament_density)
            rows.append(("tether", i + 1, 0, a, b))
    vs = g.voxel_size_nm
    return pd.DataFrame(
        {
            "filament_id": np.arange(1, len(rows) + 1),
            "kind": [r[0] for r in rows],
            "vesicle_a": [r[1] for r in rows],
            "vesicle_b": [r[2] for r in rows],  # 0 = the AZ membrane (tethers)
            "z0_vox": [r[3][0] for r in rows],
            "y0_vox": [r[3][1] for r in rows],
            "x0_vox": [r[3][2] for r in rows],
            "z1_vox": [r[4][0] for r in rows],
            "y1_vox": [r[4][1] for r in rows],
            "x1_vox": [r[4][2] for r in rows],
            "length_nm": [float(np.linalg.norm(r[4] - r[3])) * vs for r in rows],
        }
    )


def _add_crowders(density, g, rng, labels, region_mask):
    """Protein complexes in the cytosol: small dense blobs outside the vesicles."""
    from scipy import ndimage

    volume_um3 = np.prod(g.shape) * (g.voxel_size_nm / 1000.0) ** 3
    n = rng.poisson(g.crowder_density_per_um3 * volume_um3)
    pos = (rng.uniform(0, 1, size=(n, 3)) * np.asarray(g.shape)).astype(int)
    free = (labels[tuple(pos.T)] == 0) & region_mask[tuple(pos.T)]
    pos = pos[free]
    impulses = np.zeros(g.shape, dtype=np.float32)
    sigma_vox = g.vox(g.crowder_sigma_nm)
    # weight so that a blob's peak density is in crowder_peak_range after smoothing
    peak = rng.uniform(*g.crowder_peak_range, size=len(pos)) * (2 * np.pi * sigma_vox**2) ** 1.5
    np.add.at(impulses, tuple(pos.T), peak.astype(np.float32))
    density += ndimage.gaussian_filter(impulses, sigma_vox)


def _add_organelles(density, g, scene, rng, distance_to_az_vox, obstacles) -> None:
    """Hard negatives away from the AZ: dense-core and coated vesicles, multivesicular
    endosomes and ER tubules; each becomes an obstacle that synaptic vesicles avoid."""

    def place(radius_vox):
        far = g.vox(20)
        spot = _place_spheres(
            g, rng, [radius_vox], lambda c, r: float(distance_to_az_vox(c) > r + far), obstacles, 1
        )[0]
        if spot is not None:
            obstacles.append((spot, radius_vox))
        return spot

    for _ in range(scene.n_dense_core):
        r = g.vox(rng.uniform(35, 50))
        if (c := place(r)) is not None:
            _add_shell(density, c, r, g, lumen_density=rng.uniform(0.4, 0.8))
    for _ in range(scene.n_coated):
        r = g.vox(rng.uniform(20, 32))
        if (c := place(r + g.vox(14))) is not None:
            _add_shell(density, c, r, g, lumen_density=rng.uniform(0.1, 0.3))
            extra.coat(density, c, r, g, rng)
    for _ in range(scene.n_endosomes):
        r = g.vox(rng.uniform(50, 110))
        if (c := place(r)) is not None:
            _add_shell(density, c, r, g, lumen_density=rng.uniform(0.0, 0.06))
            for _ in range(int(rng.integers(0, 9))):  # intraluminal vesicles
                ri = g.vox(rng.uniform(12, 22))
                room = r - ri - g.vox(g.membrane_thickness_nm + 2)
                if room > 0:
                    offset = extra.unit_vector(rng) * room * rng.uniform() ** (1 / 3)
                    _add_shell(density, c + offset, ri, g, rng.uniform(0.05, 0.2))
    half = g.headgroup_separation_nm / 2
    wall = g.vox(HEADGROUP_SIGMA_NM)
    for _ in range(scene.n_er_tubules):
        radius = g.vox(rng.uniform(15, 30))
        a, b = extra.chord(g.shape, rng, g.vox(rng.uniform(100, 400)))
        a_keep = [distance_to_az_vox(p) > radius + g.vox(20) for p in (a, b, (a + b) / 2)]
        if not all(a_keep):
            continue
        for shift in (-half, half):
            extra.tube(density, a, b, radius + g.vox(shift), wall, 1.0)
        length = float(np.linalg.norm(b - a))
        for t in np.linspace(0, 1, max(int(length / radius), 1) + 1):
            obstacles.append((a + t * (b - a), radius + g.vox(2)))


def _cut_vesicles(g, rng, distance_to_az_vox, obstacles, centres, radii):
    """Synaptic vesicles cut by the volume's faces: centres up to half a radius outside."""
    placed_c = [c for c, _ in obstacles] + list(centres)
    placed_r = [r for _, r in obstacles] + list(radii)
    out_c, out_r = [], []
    shape = np.asarray(g.shape, float)
    for _ in range(g.scene.n_cut_vesicles):
        r = g.vox(float(np.clip(rng.normal(g.radius_mean_nm, g.radius_sd_nm), *g.radius_range_nm)))
        for _ in range(50):
            c = rng.uniform(0, 1, 3) * shape
            axis = int(rng.integers(3))
            depth = rng.uniform(-0.5, 0.7) * r  # centre this far inside the face
            c[axis] = depth if rng.uniform() < 0.5 else shape[axis] - depth
            if distance_to_az_vox(c) < r + g.vox(g.membrane_thickness_nm):
                continue
            gaps = np.linalg.norm(np.asarray(placed_c).reshape(-1, 3) - c, axis=1)
            if np.any(gaps < np.asarray(placed_r) + r + g.vox(g.min_gap_nm)):
                continue
            out_c.append(c)
            out_r.append(r)
            placed_c.append(c)
            placed_r.append(r)
            break
    return np.asarray(out_c).reshape(-1, 3), np.asarray(out_r, dtype=float)
