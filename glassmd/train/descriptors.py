"""Rotation-invariant expert descriptors of Boattini, Smallenburg and Filion (2021), the ridge baseline's input.

For every particle ``i`` (Boattini, Smallenburg, Filion, "Averaging local structure to predict the dynamic
propensity in supercooled liquids", Phys. Rev. Lett. 127, 088007 (2021)):

* radial densities, one per shell centre ``r`` and neighbour species ``s``::

      G0_i(r, s) = sum_{j != i, s_j = s} exp(-(r_ij - r)^2 / (2 delta^2))

* bond-order parameters, one per ``l`` and shell centre ``r`` (all neighbour species together)::

      q_i(l, m, r) = sum_j w_ij(r) Y_lm(r_ij_hat) / sum_j w_ij(r),   w_ij(r) = exp(-(r_ij - r)^2 / (2 delta^2))
      q0_i(l, r)   = sqrt(4 pi / (2l + 1) sum_m |q_i(l, m, r)|^2)

* coarse-grained averages of all of these over the neighbourhood, level by level::

      x(n)_i = sum_{j: r_ij < r_c} exp(-r_ij / r_c) x(n-1)_j / sum_{j: r_ij < r_c} exp(-r_ij / r_c)

  where the sums include ``j = i`` (weight 1).

The descriptor vector is ``[x(0), x(1), ..., x(levels)]``; :func:`descriptor_names` names its columns.
Gaussians are truncated at ``gaussian_cutoff`` widths past the outermost shell (weights below
``exp(-gaussian_cutoff^2 / 2)``, 3.7e-6 for the default 5), which keeps the neighbour list finite.
The Appendix C of Pezzicoli, Charpiat and Landes shows that one SE(3) convolution with Gaussian radial
functions reproduces ``G0`` and ``q0``: the baseline measures what the deeper network adds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from glassmd.errors import InputError

__all__ = ["DescriptorConfig", "boattini_descriptors", "descriptor_names", "spherical_harmonics_m_nonnegative"]


def _shells(first: float, last: float, step: float) -> tuple[float, ...]:
    count = int(round((last - first) / step)) + 1
    return tuple(round(first + k * step, 10) for k in range(count))


@dataclass(frozen=True)
class DescriptorConfig:
    """Every knob of the Boattini descriptors; lengths in units of sigma_AA.

    Attributes
    ----------
    radial_centers : tuple of float
        Shell centres ``r`` of the radial densities; default 0.85, 0.95, ..., 4.95 (42 shells), from inside
        the first A-B peak (sigma_AB = 0.8) to about five particle diameters.
    radial_width : float
        Gaussian width ``delta`` of the radial shells.
    bond_order_centers : tuple of float
        Shell centres of the bond-order parameters; default 0.85, 0.95, ..., 2.95 (22 shells): the first
        two coordination shells, beyond which angular order is washed out.
    bond_order_width : float
        Gaussian width ``delta`` of the bond-order shells.
    l_values : tuple of int
        Spherical-harmonic degrees of the bond-order parameters; default 1 to 12 as in Boattini 2021.
    n_species : int
        Number of particle species (types 0 .. n_species - 1); radial densities are split by species.
    coarse_grain_radius : float
        ``r_c`` of the averaging weights ``exp(-r / r_c)``, also the cutoff of the averaging sums.
    coarse_grain_levels : int
        Number of averaging levels appended after the raw descriptors (2 in Boattini 2021).
    gaussian_cutoff : float
        Neighbours farther than ``max(centres) + gaussian_cutoff * width`` are ignored.
    """

    radial_centers: tuple[float, ...] = field(default_factory=lambda: _shells(0.85, 4.95, 0.1))
    radial_width: float = 0.1
    bond_order_centers: tuple[float, ...] = field(default_factory=lambda: _shells(0.85, 2.95, 0.1))
    bond_order_width: float = 0.1
    l_values: tuple[int, ...] = tuple(range(1, 13))
    n_species: int = 2
    coarse_grain_radius: float = 2.0
    coarse_grain_levels: int = 2
    gaussian_cutoff: float = 5.0

    def __post_init__(self) -> None:
        for name in ("radial_width", "bond_order_width", "coarse_grain_radius", "gaussian_cutoff"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise InputError(f"DescriptorConfig.{name} must be a positive number, got {value!r}")
        for name in ("radial_centers", "bond_order_centers"):
            centres = np.asarray(getattr(self, name), dtype=float)
            if centres.ndim != 1 or (centres.size and (not np.isfinite(centres).all() or (centres < 0).any())):
                raise InputError(f"DescriptorConfig.{name} must be non-negative distances, got {centres.tolist()}")
        if self.l_values and min(self.l_values) < 0:
            raise InputError(f"DescriptorConfig.l_values must be non-negative degrees, got {list(self.l_values)}")
        if self.n_species < 1:
            raise InputError(f"DescriptorConfig.n_species must be at least 1, got {self.n_species}")
        if self.coarse_grain_levels < 0:
            raise InputError(f"DescriptorConfig.coarse_grain_levels must be >= 0, got {self.coarse_grain_levels}")

    @property
    def features_per_level(self) -> int:
        return len(self.radial_centers) * self.n_species + len(self.bond_order_centers) * len(self.l_values)

    @property
    def n_features(self) -> int:
        return self.features_per_level * (self.coarse_grain_levels + 1)

    @property
    def neighbour_cutoff(self) -> float:
        """Largest distance at which any raw descriptor or average still sees a neighbour."""
        reach = [self.coarse_grain_radius]
        if self.radial_centers:
            reach.append(max(self.radial_centers) + self.gaussian_cutoff * self.radial_width)
        if self.bond_order_centers and self.l_values:
            reach.append(max(self.bond_order_centers) + self.gaussian_cutoff * self.bond_order_width)
        return float(max(reach))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> DescriptorConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown descriptor setting(s): {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def descriptor_names(config: DescriptorConfig | None = None) -> list[str]:
    """Column names of :func:`boattini_descriptors`, e.g. ``G0_s1_r1.25`` or ``q2_l6_r1.05``.

    The leading ``G``/``q`` gives the kind, the digit after it the averaging level ``n`` of ``x(n)``.
    """
    config = config or DescriptorConfig()
    level_names = [f"G{{n}}_s{s}_r{r:g}" for s in range(config.n_species) for r in config.radial_centers]
    level_names += [f"q{{n}}_l{l}_r{r:g}" for l in config.l_values for r in config.bond_order_centers]
    return [name.format(n=level) for level in range(config.coarse_grain_levels + 1) for name in level_names]


def _harmonics_parts(unit_vectors: np.ndarray, l_values) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary parts of ``Y_lm``, ``m = 0..l`` for each ``l`` in ``l_values`` in turn, as two
    (E, K) arrays, in real arithmetic (half the work of complex arrays)."""
    unit_vectors = np.asarray(unit_vectors, dtype=np.float64)
    x, y, z = unit_vectors[:, 0], unit_vectors[:, 1], unit_vectors[:, 2]
    l_values = [int(l) for l in l_values]
    l_max = max(l_values, default=0)
    wanted = set(l_values)
    offsets, k = {}, 0
    for l in l_values:
        offsets[l] = k
        k += l + 1
    # Rows per (l, m), transposed on return: contiguous writes, not strided column writes.
    real = np.empty((k, len(z)))
    imag = np.empty((k, len(z)))
    # Normalised associated Legendre functions P_lm(z) / sin(theta)^m by the three-term recursion in l;
    # the factor sin(theta)^m exp(i m phi) = ((x + i y) / r)^m is carried as (cos_m, sin_m).
    p_mm = np.full(len(z), np.sqrt(1.0 / (4.0 * np.pi)))
    cos_m, sin_m = np.ones(len(z)), np.zeros(len(z))
    for m in range(l_max + 1):
        if m > 0:
            p_mm = p_mm * np.sqrt((2.0 * m + 1.0) / (2.0 * m))
            cos_m, sin_m = cos_m * x - sin_m * y, sin_m * x + cos_m * y
        previous, current = None, p_mm
        for l in range(m, l_max + 1):
            if l == m + 1:
                previous, current = current, np.sqrt(2.0 * m + 3.0) * z * current
            elif l > m + 1:
                a = np.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
                b = np.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0))
                previous, current = current, a * (z * current - b * previous)
            if l in wanted:
                np.multiply(current, cos_m, out=real[offsets[l] + m])
                np.multiply(current, sin_m, out=imag[offsets[l] + m])
    return real.T, imag.T


def spherical_harmonics_m_nonnegative(unit_vectors: np.ndarray, l_max: int) -> np.ndarray:
    """Orthonormal complex spherical harmonics ``Y_lm`` for ``0 <= m <= l <= l_max``, without the
    Condon-Shortley phase.

    Only ``m >= 0`` is computed: for real weights ``|q_{l,-m}| = |q_{l,m}|``, so the rotation invariants
    need no more. Uses the standard stable three-term recursion in ``l`` at fixed ``m``; far faster than
    calling ``scipy.special.sph_harm_y`` per ``(l, m)``.

    Parameters
    ----------
    unit_vectors : (E, 3) array of unit vectors
    l_max : int

    Returns
    -------
    (E, (l_max + 1) (l_max + 2) / 2) complex array, column ``l (l + 1) / 2 + m`` holding ``Y_lm``.
    """
    real, imag = _harmonics_parts(unit_vectors, range(l_max + 1))
    return real + 1j * imag


def _neighbours(positions: np.ndarray, box_lengths: np.ndarray, cutoff: float):
    """Full periodic neighbour list sorted by centre particle: (centre i, neighbour j, distance, vector)."""
    from vesin import NeighborList

    wrapped = positions - np.floor(positions / box_lengths) * box_lengths
    # vesin lists every periodic image within the cutoff, so boxes smaller than twice the cutoff are
    # handled exactly (each image is a distinct neighbour, as in the infinite periodic system).
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, vec = nl.compute(points=wrapped, box=np.diag(box_lengths), periodic=True, quantities="ijD")
    dist = np.sqrt(np.einsum("ij,ij->i", vec, vec))
    keep = (dist < cutoff) & (dist > 0)
    i, j, vec, dist = i[keep], j[keep], vec[keep], dist[keep]
    order = np.argsort(i, kind="stable")
    return i[order].astype(np.int64), j[order].astype(np.int64), dist[order], vec[order]


def _padded_rows(centre: np.ndarray, first: int, last: int, starts: np.ndarray):
    """Edge indices of particles first..last-1 laid out as a dense (rows, max_neighbours) table.

    Returns the table (padding points at edge 0) and a boolean mask of real entries.
    """
    counts = starts[first + 1 : last + 1] - starts[first:last]
    width = max(int(counts.max(initial=0)), 1)
    lo, hi = starts[first], starts[last]
    edges = np.arange(lo, hi)
    rows = centre[lo:hi] - first
    cols = edges - starts[centre[lo:hi]]
    table = np.zeros((last - first, width), dtype=np.int64)
    mask = np.zeros((last - first, width), dtype=bool)
    table[rows, cols] = edges
    mask[rows, cols] = True
    return table, mask


def _raw_descriptors(
    i, j, dist, vec, species, n, config: DescriptorConfig, chunk: int, edge_chunk: int = 1 << 16
) -> np.ndarray:
    radial_c = np.asarray(config.radial_centers, dtype=np.float64)
    bond_c = np.asarray(config.bond_order_centers, dtype=np.float64)
    l_values = np.asarray(config.l_values, dtype=np.int64)
    n_radial = radial_c.size * config.n_species
    out = np.zeros((n, config.features_per_level), dtype=np.float64)

    radial_reach = (radial_c.max() + config.gaussian_cutoff * config.radial_width) if radial_c.size else -1.0
    bond_reach = (bond_c.max() + config.gaussian_cutoff * config.bond_order_width) if bond_c.size else -1.0

    if radial_c.size:
        from scipy.sparse import csr_matrix

        sel = np.flatnonzero(dist < radial_reach)
        # Row i * n_species + s of this sparse matrix picks the edges of particle i to species s, so one
        # sparse product sums the shell weights per particle and neighbour species.
        rows = i[sel] * config.n_species + species[j[sel]]
        per_species = np.zeros((n * config.n_species, radial_c.size))
        for first in range(0, sel.size, edge_chunk):
            part = slice(first, min(first + edge_chunk, sel.size))
            weights = np.exp(-((dist[sel[part], None] - radial_c) ** 2) / (2 * config.radial_width**2))
            count = weights.shape[0]
            pick = csr_matrix((np.ones(count), (rows[part], np.arange(count))), shape=(per_species.shape[0], count))
            per_species += pick @ weights
        out[:, :n_radial] = per_species.reshape(n, n_radial)

    if bond_c.size and l_values.size:
        sel = dist < bond_reach
        bi, bdist, bvec = i[sel], dist[sel], vec[sel]
        bstarts = np.searchsorted(bi, np.arange(n + 1))
        n_columns = int((l_values + 1).sum())
        # |q_lm|^2 summed over -l..l equals |q_l0|^2 + 2 sum_{m>0} |q_lm|^2.
        multiplicity = np.array([1.0 if m == 0 else 2.0 for l in l_values for m in range(l + 1)])
        degree_of = np.repeat(np.arange(l_values.size), l_values + 1)
        # (K, n_degrees) matrix summing m-weighted |q_lm|^2 into each degree, scaled by 4 pi / (2l + 1).
        to_degree = np.zeros((n_columns, l_values.size))
        to_degree[np.arange(n_columns), degree_of] = multiplicity * (4 * np.pi / (2 * l_values[degree_of] + 1))
        harmonics = np.concatenate(_harmonics_parts(bvec / bdist[:, None], l_values), axis=1)
        for first in range(0, n, chunk):
            last = min(first + chunk, n)
            table, mask = _padded_rows(bi, first, last, bstarts)
            weights = np.exp(-((bdist[table][..., None] - bond_c) ** 2) / (2 * config.bond_order_width**2))
            weights *= mask[..., None]
            # Padding entries have zero weight, so their harmonics need no masking.
            sums = np.matmul(weights.transpose(0, 2, 1), harmonics[table])  # (rows, shells, 2K)
            per_degree = (sums[..., :n_columns] ** 2 + sums[..., n_columns:] ** 2) @ to_degree
            norm = weights.sum(axis=1)  # (rows, shells)
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.sqrt(per_degree) / norm[..., None]
            # A particle with no neighbour near a shell has no bond order there: 0, not NaN.
            q = np.where(norm[..., None] > 0, q, 0.0)
            out[first:last, n_radial:] = q.transpose(0, 2, 1).reshape(last - first, -1)
    return out


def boattini_descriptors(
    positions: np.ndarray,
    types: np.ndarray,
    box_lengths: np.ndarray,
    *,
    config: DescriptorConfig | None = None,
    chunk: int = 128,
) -> np.ndarray:
    """Boattini 2021 descriptors of every particle of one configuration.

    Parameters
    ----------
    positions : (n, 3) array
        Cartesian positions in an orthogonal periodic box; need not be wrapped.
    types : (n,) int array
        0-based species (0 = A, 1 = B, ...), below ``config.n_species``.
    box_lengths : (3,) array
        Orthogonal box edge lengths. Boxes smaller than twice the neighbour cutoff are fine: every
        periodic image is counted.
    config : DescriptorConfig, optional
        Defaults to :class:`DescriptorConfig()` (1044 features).
    chunk : int
        Particles processed together; bounds the memory of the padded neighbour tables.

    Returns
    -------
    (n, config.n_features) float64 array, columns named by :func:`descriptor_names`.

    Examples
    --------
    >>> import numpy as np
    >>> config = DescriptorConfig(radial_centers=(1.0,), bond_order_centers=(), coarse_grain_levels=0)
    >>> x = boattini_descriptors(np.array([[0.0, 0, 0], [1.0, 0, 0]]), np.array([0, 1]),
    ...                          np.array([20.0, 20, 20]), config=config)
    >>> x.tolist()  # particle 0 sees one B at the shell centre, particle 1 one A
    [[0.0, 1.0], [1.0, 0.0]]
    """
    config = config or DescriptorConfig()
    positions = np.asarray(positions, dtype=np.float64)
    types = np.asarray(types)
    box_lengths = np.asarray(box_lengths, dtype=np.float64).reshape(-1)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise InputError(f"positions must have shape (n, 3), got {positions.shape}")
    n = positions.shape[0]
    if types.shape != (n,):
        raise InputError(f"types must have shape ({n},) to match positions, got {types.shape}")
    if not np.issubdtype(types.dtype, np.integer):
        raise InputError(f"types must be integers (0-based species), got dtype {types.dtype}")
    if n and (types.min() < 0 or types.max() >= config.n_species):
        bad = types[(types < 0) | (types >= config.n_species)][0]
        raise InputError(f"species {int(bad)} is outside 0..{config.n_species - 1} (types must be 0-based)")
    if not np.isfinite(positions).all():
        raise InputError("positions contain NaN or inf")
    if box_lengths.shape != (3,) or not np.isfinite(box_lengths).all() or (box_lengths <= 0).any():
        raise InputError(f"box_lengths must be 3 positive numbers, got {box_lengths.tolist()}")
    if n == 0:
        return np.zeros((0, config.n_features))

    i, j, dist, vec = _neighbours(positions, box_lengths, config.neighbour_cutoff)
    level = _raw_descriptors(i, j, dist, vec, types.astype(np.int64), n, config, max(int(chunk), 1))
    levels = [level]
    if config.coarse_grain_levels:
        from scipy.sparse import csr_matrix, identity

        near = dist < config.coarse_grain_radius
        weights = csr_matrix((np.exp(-dist[near] / config.coarse_grain_radius), (i[near], j[near])), shape=(n, n))
        weights = weights + identity(n, format="csr")  # the particle itself, r = 0, weight 1
        row_sums = np.asarray(weights.sum(axis=1)).ravel()
        for _ in range(config.coarse_grain_levels):
            level = (weights @ level) / row_sums[:, None]
            levels.append(level)
    return np.concatenate(levels, axis=1)
