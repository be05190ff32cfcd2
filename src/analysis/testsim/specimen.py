"""Electrostatic potential of a presynaptic terminal, with the exact truth of its vesicles.

The model, in nm and volts above vitreous ice, on a (z, y, x) grid that extends
:attr:`TestSimParams.margin_vox` beyond each x face of the output box:

* the presynaptic terminal is a large sphere; the part of its surface inside the box is the
  active-zone (AZ) plasma membrane; a cleft with adhesion rods separates it from a concentric
  postsynaptic membrane with a postsynaptic density (PSD) behind it;
* synaptic vesicles (SVs) are uniform lipid shells (4-5 nm, edges blurred by half a voxel)
  around a lumen of weak textured density; their radii are log-normal; they are placed by
  random sequential addition, many against an existing SV (a small exponential gap), a few
  docked on the AZ, with acceptance falling with distance from the AZ; SVs may be cut by any
  face of the box, but only where at least a cap of half a radius lies inside;
* the cytoplasm is dense and correlated: a thresholded power-law random field (a protein mesh),
  discrete complexes of several sizes, two-subunit ribosome-like particles, long actin-like
  filaments, proteins on the SV surfaces and short connectors and tethers;
* distractors: an elongated mitochondrion (outer and inner membrane, lamellar cristae, a dense
  matrix), an endosome (sometimes holding intraluminal vesicles), a dense-core vesicle and
  optional 10 nm gold beads on the specimen's surfaces.

Only SVs are in the label volume and the vesicle table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import erf, expit, ndtri

from analysis.io.labels import VESICLE_COLUMNS
from analysis.testsim.fields import (
    FourierCanvas,
    ball_transform,
    correlated_field,
    gaussian_transform,
)
from analysis.testsim.params import TestSimParams

#: Crowder radii (nm) and their shares of the number of crowders.
CROWDER_RADII_NM = (2.5, 3.5, 5.0, 7.0)
CROWDER_SHARES = (0.45, 0.30, 0.17, 0.08)
#: Columns of the vesicle table after :data:`analysis.io.VESICLE_COLUMNS`.
EXTRA_COLUMNS = ["membrane_thickness_nm", "lumen_potential_v", "inside_fraction"]


@dataclass
class Specimen:
    """The simulated specimen.

    Attributes
    ----------
    potential : numpy.ndarray, shape (z, y, x + 2 margin), float32
        Volts above vitreous ice; the output box is ``[:, :, margin:-margin]``.
    labels : numpy.ndarray, shape (z, y, x), int32
        One id per SV inside the output box (whole sphere, membrane included), 0 elsewhere.
    vesicles : pandas.DataFrame
        One row per labelled SV, :data:`analysis.io.VESICLE_COLUMNS` plus
        :data:`EXTRA_COLUMNS`; positions in the output box (they may lie outside it for SVs
        cut by a face).
    margin_vox : int
    """

    potential: np.ndarray
    labels: np.ndarray
    vesicles: pd.DataFrame
    margin_vox: int


@dataclass
class _Terminal:
    """The presynaptic sphere: centre (voxels, full grid) and radii (nm)."""

    centre: np.ndarray
    radius_nm: float
    cleft_nm: float


def smooth_slab(distance_nm: np.ndarray, half_width_nm: float, edge_nm: float) -> np.ndarray:
    """1 within ``half_width_nm`` of a surface (``distance_nm`` = 0), 0 outside, with edges
    blurred by a Gaussian of ``edge_nm``."""
    s = np.sqrt(2) * edge_nm
    return 0.5 * (erf((distance_nm + half_width_nm) / s) - erf((distance_nm - half_width_nm) / s))


def smooth_inside(distance_nm: np.ndarray, edge_nm: float) -> np.ndarray:
    """1 where the signed distance is negative (inside), 0 outside, blurred by ``edge_nm``."""
    return 0.5 * (1 - erf(distance_nm / (np.sqrt(2) * edge_nm)))


def _edge_nm(p: TestSimParams) -> float:
    # half a voxel: sharp enough for a 4 nm membrane, smooth enough not to alias
    return max(0.5, 0.5 * p.voxel_size_nm)


def _box(centre, reach_vox, shape):
    """Slices and open grids (voxel coordinates) of the part of a cube around ``centre``
    inside ``shape``; None if there is none."""
    centre = np.asarray(centre, dtype=float)
    lo = np.maximum(np.floor(centre - reach_vox).astype(int), 0)
    hi = np.minimum(np.ceil(centre + reach_vox).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    slices = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    return slices, np.ogrid[slices]


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation matrix (from a random unit quaternion)."""
    q = rng.standard_normal(4)
    a, b, c, d = q / np.linalg.norm(q)
    return np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
        ]
    )


def _unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _terminal(p: TestSimParams, full_shape, rng) -> _Terminal:
    """Place the presynaptic sphere so that its surface crosses the box at
    ``az_offset_fraction`` of the half-width on a random side (normal mostly in y-x)."""
    radius_nm = rng.uniform(*p.terminal_radius_range_nm)
    angle = rng.uniform(0, 2 * np.pi)
    tilt = rng.uniform(-0.25, 0.25)  # the AZ normal leans a little out of the y-x plane
    normal = np.array([np.sin(tilt), np.cos(tilt) * np.sin(angle), np.cos(tilt) * np.cos(angle)])
    half = (np.asarray(full_shape, dtype=float) - 1) / 2
    half[2] -= p.margin_vox
    # half-width of the box along the normal (as if it were an ellipsoid)
    reach_vox = 1 / np.sqrt(np.sum((normal / np.maximum(half, 1)) ** 2))
    centre = (
        half
        + p.margin_vox * np.array([0, 0, 1])
        + normal * (p.vox(radius_nm) - p.az_offset_fraction * reach_vox)
    )
    cleft_nm = rng.uniform(*p.cleft_width_range_nm)
    return _Terminal(centre=centre, radius_nm=radius_nm, cleft_nm=cleft_nm)


def _distance_from(centre, shape, voxel_size_nm) -> np.ndarray:
    """|p - centre| in nm over a grid of ``shape`` (float32)."""
    z, y, x = np.ogrid[tuple(slice(0, n) for n in shape)]
    d2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
    return (np.sqrt(d2) * voxel_size_nm).astype(np.float32)


@dataclass
class _Organelle:
    kind: str  # mitochondrion, endosome, dcv
    centre: np.ndarray  # voxels, full grid
    semi_axes_nm: np.ndarray  # (3,)
    rotation: np.ndarray  # (3, 3): body axes in (z, y, x)

    @property
    def bound_nm(self) -> float:
        return float(self.semi_axes_nm.max())


def _ellipsoid_distance(o: _Organelle, grids, voxel_size_nm) -> np.ndarray:
    """Approximate signed distance (nm) to the ellipsoid's surface: f / |grad f|."""
    rel = [(g - c) * voxel_size_nm for g, c in zip(grids, o.centre, strict=True)]
    body = [sum(o.rotation[i, j] * rel[i] for i in range(3)) for j in range(3)]
    scaled = [b / a for b, a in zip(body, o.semi_axes_nm, strict=True)]
    norm = np.sqrt(sum(s**2 for s in scaled)) + 1e-9
    grad = np.sqrt(sum((s / a) ** 2 for s, a in zip(scaled, o.semi_axes_nm, strict=True))) / norm
    return (norm - 1) / (grad + 1e-9)


def _place_organelles(p, terminal, full_shape, rng) -> list[_Organelle]:
    """Distractors inside the terminal, at least 40 nm from the AZ (rejection sampling)."""
    wanted = []
    if p.mitochondrion:
        r = rng.uniform(65.0, 100.0)
        wanted.append(("mitochondrion", r * np.array([1.6, 1.0, 0.85])))
    if p.endosome:
        r = rng.uniform(45.0, 70.0)
        wanted.append(("endosome", r * np.array([1.25, 1.0, 0.85])))
    if p.dense_core_vesicle:
        r = rng.uniform(34.0, 44.0)
        wanted.append(("dcv", np.array([r, r, r])))
    placed: list[_Organelle] = []
    extent = np.asarray(full_shape, dtype=float)
    for kind, axes in wanted:
        bound = p.vox(axes.max())
        for _ in range(300):
            centre = rng.uniform(0, extent)
            centre[2] = rng.uniform(p.margin_vox, extent[2] - p.margin_vox)
            depth_nm = terminal.radius_nm - np.linalg.norm(centre - terminal.centre) * (
                p.voxel_size_nm
            )
            if depth_nm < axes.max() + 40.0:
                continue
            if any(
                np.linalg.norm(centre - o.centre) < bound + p.vox(o.bound_nm) + p.vox(10.0)
                for o in placed
            ):
                continue
            placed.append(_Organelle(kind, centre, axes, _random_rotation(rng)))
            break
    return placed


def _sv_radii(p: TestSimParams, n: int, rng) -> np.ndarray:
    r = p.sv_radius_median_nm * np.exp(p.sv_radius_log_sd * rng.standard_normal(n))
    return np.clip(r, *p.sv_radius_range_nm)


def _place_vesicles(p, terminal, organelles, full_shape, rng):
    """Random sequential addition of SV centres (voxels, full grid) and radii (nm)."""
    vox = p.voxel_size_nm
    nz, ny, nfull = full_shape
    nx, m = p.shape[2], p.margin_vox
    d_mid = terminal.radius_nm - p.membrane_thickness_nm / 2  # inner face of the AZ membrane
    # presynaptic volume inside the box, from a coarse sample of the grid
    sample = np.stack(np.meshgrid(*[np.linspace(0, n - 1, 24) for n in full_shape]), -1)
    inside = np.linalg.norm(sample.reshape(-1, 3) - terminal.centre, axis=1) * vox < d_mid
    volume_nm3 = inside.mean() * nz * ny * nfull * vox**3
    mean_sv_nm3 = 4 / 3 * np.pi * p.sv_radius_median_nm**3
    target = int(round(p.sv_fill_fraction * volume_nm3 / mean_sv_nm3))

    centres = np.empty((max(target, 1), 3))
    radii = np.empty(max(target, 1))
    n = 0
    obstacle_c = np.array([o.centre for o in organelles]).reshape(-1, 3)
    obstacle_r = np.array([p.vox(o.bound_nm + 3.0) for o in organelles])
    min_gap_vox = p.vox(0.5)
    crop_lo, crop_hi = m, m + nx - 1
    for _ in range(200 * max(target, 1)):
        if n >= target:
            break
        r_nm = _sv_radii(p, 1, rng)[0]
        r = p.vox(r_nm)
        move = rng.uniform()
        if move < p.sv_docked_share:
            point = rng.uniform(0, full_shape)
            direction = point - terminal.centre
            direction /= np.linalg.norm(direction)
            gap = rng.uniform(0.5, 2.5)
            c = terminal.centre + direction * p.vox(d_mid - gap - r_nm)
            docked = True
        elif n and move < p.sv_docked_share + p.sv_contact_share:
            j = rng.integers(n)
            gap = 0.5 + rng.exponential(p.sv_contact_gap_nm)
            c = centres[j] + _unit_vectors(1, rng)[0] * (radii[j] + r + p.vox(gap))
            docked = False
        else:
            c = rng.uniform(0, full_shape)
            docked = False
        # a cut SV shows at least a cap of half its radius; in the x margin, none of it
        if np.any(c[:2] < -0.5 * r) or np.any(c[:2] > np.array([nz, ny]) - 1 + 0.5 * r):
            continue
        if not (0 <= c[2] <= nfull - 1):
            continue
        in_crop = crop_lo - 0.5 * r <= c[2] <= crop_hi + 0.5 * r
        clear_of_crop = c[2] < crop_lo - r - 1 or c[2] > crop_hi + r + 1
        if not (in_crop or clear_of_crop):
            continue
        depth_nm = d_mid - np.linalg.norm(c - terminal.centre) * vox - r_nm
        if depth_nm < 0.5:
            continue
        if n and np.any(np.linalg.norm(centres[:n] - c, axis=1) < radii[:n] + r + min_gap_vox):
            continue
        if len(obstacle_r) and np.any(np.linalg.norm(obstacle_c - c, axis=1) < obstacle_r + r):
            continue
        keep = p.sv_far_acceptance + (1 - p.sv_far_acceptance) * np.exp(
            -depth_nm / p.sv_cluster_decay_nm
        )
        if not docked and rng.uniform() > keep:
            continue
        centres[n], radii[n] = c, r
        n += 1
    return centres[:n], radii[:n] * vox


def _paint_vesicles(p, potential, occupancy, labels, centres, radii_nm, lumen_field, rng):
    """Add SV shells and lumens; fill labels (id = index + 1) and occupancy. Returns the
    membrane thickness and lumen potential drawn for each SV."""
    vox, edge = p.voxel_size_nm, _edge_nm(p)
    thickness = rng.uniform(*p.sv_membrane_range_nm, size=len(radii_nm))
    lumen_v = rng.uniform(*p.sv_lumen_potential_range_v, size=len(radii_nm))
    for i, (c, r_nm) in enumerate(zip(centres, radii_nm, strict=True)):
        found = _box(c, p.vox(r_nm + 3 * edge) + 1, potential.shape)
        if found is None:
            continue
        sl, grids = found
        rho = np.sqrt(sum((g - ci) ** 2 for g, ci in zip(grids, c, strict=True))) * vox
        t = thickness[i]
        shell = smooth_slab(rho - (r_nm - t / 2), t / 2, edge)
        lumen = smooth_inside(rho - (r_nm - t), edge)
        texture = np.clip(1 + 0.4 * lumen_field[sl], 0, None)
        potential[sl] += (p.sv_membrane_potential_v * shell + lumen_v[i] * lumen * texture).astype(
            np.float32
        )
        occupancy[sl] = np.maximum(occupancy[sl], smooth_inside(rho - r_nm, edge))
        labels[sl][rho <= r_nm] = i + 1
    return thickness, lumen_v


def _paint_organelle(p, o: _Organelle, potential, occupancy, mesh, rng) -> None:
    """Add one distractor's membranes and contents."""
    vox, edge = p.voxel_size_nm, _edge_nm(p)
    t = p.membrane_thickness_nm
    found = _box(o.centre, p.vox(o.bound_nm * 1.7 + 3 * edge) + 1, potential.shape)
    if found is None:
        return
    sl, grids = found
    d = _ellipsoid_distance(o, grids, vox)  # negative inside
    inside = smooth_inside(d, edge)
    add = p.membrane_potential_v * smooth_slab(d + t / 2, t / 2, edge)
    if o.kind == "mitochondrion":
        gap = rng.uniform(6.0, 8.0)
        inner = d + t + gap  # distance to the inner membrane's outer face
        add += p.membrane_potential_v * smooth_slab(inner + t / 2, t / 2, edge)
        matrix = smooth_inside(inner + t, edge)
        # lamellar cristae: double membranes on parallel planes across the matrix
        rel = [(g - c) * vox for g, c in zip(grids, o.centre, strict=True)]
        normal = o.rotation[:, 0]  # across the long axis
        along = sum(n * r for n, r in zip(normal, rel, strict=True))
        spacing = rng.uniform(22.0, 32.0)
        phase = rng.uniform(0, spacing)
        plane = (along - phase + spacing / 2) % spacing - spacing / 2
        width = rng.uniform(6.0, 10.0)  # intracristal space
        in_crista = smooth_inside(inner + t + 12.0, edge)  # cristae stop short of the boundary
        cristae = smooth_slab(np.abs(plane) - width / 2 - t / 2, t / 2, edge) * in_crista
        space = smooth_inside(np.abs(plane) - width / 2, edge) * in_crista
        add += p.membrane_potential_v * cristae
        add += 0.6 * matrix * (1 - space) * (1 - cristae) * (1 + 0.5 * mesh[sl]).clip(0)
    elif o.kind == "endosome":
        add += 0.08 * smooth_inside(d + t, edge)
        if rng.uniform() < 0.5:  # intraluminal vesicles: small shells near the centre
            for _ in range(rng.integers(1, 4)):
                r_ilv = rng.uniform(14.0, 22.0)
                offset = _unit_vectors(1, rng)[0] * rng.uniform(0, 0.4) * o.semi_axes_nm.min()
                c = o.centre + offset / vox
                rho = np.sqrt(sum((g - ci) ** 2 for g, ci in zip(grids, c, strict=True))) * vox
                add += p.membrane_potential_v * smooth_slab(rho - (r_ilv - t / 2), t / 2, edge)
    elif o.kind == "dcv":
        add += 1.0 * smooth_inside(d + t + rng.uniform(4.0, 7.0), edge)
    potential[sl] += add.astype(np.float32)
    occupancy[sl] = np.maximum(occupancy[sl], inside)


def _walk(start, direction, length_nm, step_nm, persistence_nm, rng) -> np.ndarray:
    """Points (n, 3, nm) of a worm-like chain starting at ``start`` (nm)."""
    n = max(int(length_nm / step_nm), 2)
    points = np.empty((n, 3))
    points[0] = start
    d = direction / np.linalg.norm(direction)
    bend = np.sqrt(step_nm / persistence_nm)
    for i in range(1, n):
        d = d + bend * rng.standard_normal(3)
        d /= np.linalg.norm(d)
        points[i] = points[i - 1] + step_nm * d
    return points


def _segment_points(a, b, step) -> np.ndarray:
    n = max(int(np.ceil(np.linalg.norm(b - a) / step)), 1) + 1
    return a + np.linspace(0, 1, n)[:, None] * (b - a)


def _line_weight(p, sigma_nm, potential_v, step_vox) -> float:
    """Weight of impulses spaced ``step_vox`` apart that, blurred by a Gaussian of
    ``sigma_nm``, give a filament of peak ``potential_v``."""
    return potential_v * 2 * np.pi * p.vox(sigma_nm) ** 2 * step_vox


def _cytoplasm_particles(p, canvas, terminal, centres, radii_nm, full_shape, rng) -> None:
    """Crowders, ribosomes, filaments, SV surface proteins, connectors and tethers."""
    vox = p.voxel_size_nm
    extent = np.asarray(full_shape, dtype=float)
    volume_um3 = float(np.prod(extent)) * (vox / 1000) ** 3
    per_voxel = 1 / vox**3  # a kernel of volume V nm³ covers V / vox³ voxels

    def add_balls(points, radius_nm, potential_v):
        if len(points):
            kernel = ball_transform(canvas.k, radius_nm, _edge_nm(p)) * per_voxel
            canvas.add(canvas.impulses(points) * (potential_v * kernel))

    def add_lines(points, sigma_nm, potential_v, step_vox):
        if len(points):
            weight = _line_weight(p, sigma_nm, potential_v, step_vox)
            canvas.add(canvas.impulses(points, weight) * gaussian_transform(canvas.k, sigma_nm))

    # discrete complexes, and proteins sitting on each SV
    n_crowders = rng.poisson(p.crowders_per_um3 * volume_um3)
    classes = rng.choice(len(CROWDER_RADII_NM), size=n_crowders, p=CROWDER_SHARES)
    points = rng.uniform(0, extent, size=(n_crowders, 3))
    surface = {0: [], 2: []}
    for c, r_nm in zip(centres, radii_nm, strict=True):
        k = rng.poisson(5)
        surface[0].append(c + _unit_vectors(k, rng) * p.vox(r_nm + 2.5))
        if rng.uniform() < 0.7:  # one large pump-like complex standing off the membrane
            surface[2].append(c + _unit_vectors(1, rng) * p.vox(r_nm + 5.5))
    for i, radius_nm in enumerate(CROWDER_RADII_NM):
        chosen = [points[classes == i]] + surface.get(i, [])
        add_balls(
            np.concatenate(chosen) if chosen else np.empty((0, 3)), radius_nm, p.protein_potential_v
        )

    # ribosome-like particles: a large and a small subunit side by side
    n_ribo = rng.poisson(p.ribosomes_per_um3 * volume_um3)
    large = rng.uniform(0, extent, size=(n_ribo, 3))
    small = large + _unit_vectors(n_ribo, rng) * p.vox(9.5)
    # RNA-rich: denser than most proteins
    add_balls(large, 8.5, 1.25 * p.protein_potential_v)
    add_balls(small, 6.0, 1.25 * p.protein_potential_v)

    # actin-like filaments: worm-like chains, persistence length 2 µm
    n_fil = rng.poisson(p.filaments_per_um3 * volume_um3)
    step_nm = 0.5 * vox
    chains = [
        _walk(
            rng.uniform(0, extent) * vox,
            rng.standard_normal(3),
            rng.uniform(100.0, 400.0),
            step_nm,
            2000.0,
            rng,
        )
        / vox
        for _ in range(n_fil)
    ]
    add_lines(
        np.concatenate(chains) if chains else np.empty((0, 3)), 2.5, p.protein_potential_v, 0.5
    )

    # connectors between close SVs, tethers from SVs to the AZ membrane
    short = []
    for i in range(len(centres)):
        d = np.linalg.norm(centres - centres[i], axis=1) * vox - radii_nm - radii_nm[i]
        for j in np.flatnonzero((d > 0) & (d < 10.0)):
            if j > i and rng.uniform() < 0.5:
                u = (centres[j] - centres[i]) / np.linalg.norm(centres[j] - centres[i])
                a = centres[i] + u * p.vox(radii_nm[i])
                b = centres[j] - u * p.vox(radii_nm[j])
                short.append(_segment_points(a, b, 0.5))
        out = centres[i] - terminal.centre
        out /= np.linalg.norm(out)
        gap = (
            terminal.radius_nm
            - p.membrane_thickness_nm / 2
            - np.linalg.norm(centres[i] - terminal.centre) * vox
            - radii_nm[i]
        )
        if 0 < gap < 25.0 and rng.uniform() < 0.6:
            a = centres[i] + out * p.vox(radii_nm[i])
            short.append(_segment_points(a, a + out * p.vox(gap), 0.5))
    add_lines(
        np.concatenate(short) if short else np.empty((0, 3)), 1.5, 0.8 * p.protein_potential_v, 0.5
    )


def _cleft_rods(p, canvas, terminal, full_shape, rng) -> None:
    """Adhesion proteins spanning the cleft, about one per 400 nm² of membrane."""
    vox = p.voxel_size_nm
    extent = np.asarray(full_shape, dtype=float)
    area_nm2 = extent[0] * max(extent[1], extent[2]) * vox**2
    rods = []
    for _ in range(rng.poisson(area_nm2 / 400.0)):
        direction = rng.uniform(0, extent) - terminal.centre
        direction /= np.linalg.norm(direction)
        a = terminal.centre + direction * p.vox(terminal.radius_nm)
        b = a + direction * p.vox(terminal.cleft_nm + p.membrane_thickness_nm)
        if np.all((a >= -5) & (a <= extent + 5)):
            rods.append(_segment_points(a, b, 0.5))
    if rods:
        weight = _line_weight(p, 1.2, 0.5 * p.protein_potential_v, 0.5)
        canvas.add(
            canvas.impulses(np.concatenate(rods), weight) * gaussian_transform(canvas.k, 1.2)
        )


def _gold(p, potential, rng) -> None:
    """10 nm gold beads on the specimen's top and bottom surfaces, inside the output box."""
    vox, edge = p.voxel_size_nm, _edge_nm(p)
    nz, ny, _ = potential.shape
    for _ in range(p.gold_beads):
        r_nm = rng.normal(5.0, 0.3)
        z = rng.choice([0.0, nz - 1.0]) + rng.uniform(-0.3, 0.3) * p.vox(r_nm)
        c = np.array([z, rng.uniform(0, ny - 1), rng.uniform(0, p.shape[2] - 1) + p.margin_vox])
        found = _box(c, p.vox(r_nm + 3 * edge) + 1, potential.shape)
        if found is None:
            continue
        sl, grids = found
        rho = np.sqrt(sum((g - ci) ** 2 for g, ci in zip(grids, c, strict=True))) * vox
        potential[sl] += (p.gold_potential_v * smooth_inside(rho - r_nm, edge)).astype(np.float32)


def _vesicle_table(p, centres, radii_nm, thickness, lumen_v, labels_crop) -> tuple:
    """Keep the SVs that have voxels in the output box, renumber them 1..n in placement
    order, and tabulate them in output-box coordinates."""
    counts = np.bincount(labels_crop.ravel(), minlength=len(radii_nm) + 1)
    kept = np.flatnonzero(counts[1:]) + 1
    lookup = np.zeros(len(radii_nm) + 1, dtype=np.int32)
    lookup[kept] = np.arange(1, len(kept) + 1)
    labels = lookup[labels_crop]
    idx = kept - 1
    c = centres[idx] - np.array([0.0, 0.0, p.margin_vox])
    r = radii_nm[idx]
    table = pd.DataFrame(
        {
            "vesicle_id": np.arange(1, len(kept) + 1),
            "z_vox": c[:, 0],
            "y_vox": c[:, 1],
            "x_vox": c[:, 2],
            "radius_vox": r / p.voxel_size_nm,
            "z_nm": c[:, 0] * p.voxel_size_nm,
            "y_nm": c[:, 1] * p.voxel_size_nm,
            "x_nm": c[:, 2] * p.voxel_size_nm,
            "radius_nm": r,
            "membrane_thickness_nm": thickness[idx],
            "lumen_potential_v": lumen_v[idx],
            # share of the sphere's voxels inside the box (below 1 for SVs cut by a face)
            "inside_fraction": counts[kept] / (4 / 3 * np.pi * (r / p.voxel_size_nm) ** 3),
        }
    )
    return labels, table[[*VESICLE_COLUMNS, *EXTRA_COLUMNS]]


def make_specimen(p: TestSimParams, rng: np.random.Generator) -> Specimen:
    """Build the potential and exact SV truth of one presynaptic terminal.

    Parameters
    ----------
    p : TestSimParams
        Sizes, counts and potentials (the microscope fields are not used here).
    rng : numpy.random.Generator
        Source of every random choice.

    Returns
    -------
    Specimen
    """
    vox, edge = p.voxel_size_nm, _edge_nm(p)
    m = p.margin_vox
    full_shape = (p.shape[0], p.shape[1], p.shape[2] + 2 * m)
    terminal = _terminal(p, full_shape, rng)
    organelles = _place_organelles(p, terminal, full_shape, rng)
    centres, radii_nm = _place_vesicles(p, terminal, organelles, full_shape, rng)

    potential = np.zeros(full_shape, dtype=np.float32)
    occupancy = np.zeros(full_shape, dtype=np.float32)
    labels = np.zeros(full_shape, dtype=np.int32)

    # plasma membranes, regions of cytoplasm (presynaptic, cleft, postsynaptic)
    r_nm = _distance_from(terminal.centre, full_shape, vox)
    t = p.membrane_thickness_nm
    pre_d = r_nm - terminal.radius_nm  # signed distance to the AZ membrane's mid-plane
    post_d = pre_d - terminal.cleft_nm - t
    potential += p.membrane_potential_v * (
        smooth_slab(pre_d, t / 2, edge) + smooth_slab(post_d, t / 2, edge)
    )
    occupancy = np.maximum(occupancy, smooth_slab(pre_d, t / 2, edge))
    occupancy = np.maximum(occupancy, smooth_slab(post_d, t / 2, edge))
    pre = smooth_inside(pre_d + t / 2, edge)
    post = 1 - smooth_inside(post_d - t / 2, edge)
    cleft = np.clip(1 - pre - post, 0, 1)
    region = pre + 0.35 * cleft + 0.9 * post
    psd = post * smooth_inside(post_d - t / 2 - p.psd_thickness_nm, 4.0)
    del r_nm, pre_d, post_d, pre, post, cleft

    mesh_field = correlated_field(
        full_shape, vox, p.cytoplasm_correlation_nm, p.cytoplasm_exponent, rng
    )
    lumen_field = correlated_field(full_shape, vox, 4.0, 2.0, rng)
    for o in organelles:
        _paint_organelle(p, o, potential, occupancy, mesh_field, rng)
    thickness, lumen_v = _paint_vesicles(
        p, potential, occupancy, labels, centres, radii_nm, lumen_field, rng
    )
    del lumen_field

    # dense cytoplasm: mesh + particles, kept out of membranes, SVs and organelles
    threshold = ndtri(1 - p.cytoplasm_fill) if 0 < p.cytoplasm_fill < 1 else np.inf
    mesh = p.mesh_potential_v * expit((mesh_field - threshold) / 0.2)
    mesh += 0.4 * psd * (1 + 0.5 * mesh_field).clip(0)
    canvas = FourierCanvas(full_shape, vox, pad_vox=int(np.ceil(p.vox(12.0))) + 2)
    _cytoplasm_particles(p, canvas, terminal, centres, radii_nm, full_shape, rng)
    _cleft_rods(p, canvas, terminal, full_shape, rng)
    particles = canvas.volume()
    potential += (mesh + particles) * region * (1 - occupancy)
    _gold(p, potential, rng)

    crop = slice(m, m + p.shape[2])
    labels_out, table = _vesicle_table(p, centres, radii_nm, thickness, lumen_v, labels[:, :, crop])
    return Specimen(
        potential=potential.astype(np.float32), labels=labels_out, vesicles=table, margin_vox=m
    )
