"""Boattini 2021 descriptors: hand-checked values and invariance under rotation, translation, permutation."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from scipy.special import sph_harm_y

from glassmd.errors import InputError
from glassmd.train.descriptors import (
    DescriptorConfig,
    boattini_descriptors,
    descriptor_names,
    spherical_harmonics_m_nonnegative,
)

BIG_BOX = np.array([40.0, 40.0, 40.0])


def _liquid_like(n, density=1.2, seed=0):
    """Random particles kept at least 0.7 apart, so distances resemble a dense liquid's."""
    rng = np.random.default_rng(seed)
    box = np.full(3, (n / density) ** (1 / 3))
    points = []
    while len(points) < n:
        trial = rng.uniform(0, box)
        if points:
            d = np.asarray(points) - trial
            d -= np.round(d / box) * box
            if (np.einsum("ij,ij->i", d, d) < 0.7**2).any():
                continue
        points.append(trial)
    types = (rng.random(n) < 0.2).astype(np.int64)
    return np.asarray(points), types, box


def _column(config, name):
    return descriptor_names(config).index(name)


def test_spherical_harmonics_match_scipy_up_to_condon_shortley_phase():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(40, 3))
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    ours = spherical_harmonics_m_nonnegative(u, 12)
    theta = np.arccos(u[:, 2])
    phi = np.mod(np.arctan2(u[:, 1], u[:, 0]), 2 * np.pi)
    for l in range(13):
        for m in range(l + 1):
            reference = (-1) ** m * sph_harm_y(l, m, theta, phi)
            np.testing.assert_allclose(ours[:, l * (l + 1) // 2 + m], reference, atol=1e-12)


def test_radial_density_two_and_three_particles_by_hand():
    delta = 0.1
    config = DescriptorConfig(
        radial_centers=(0.9, 1.0, 1.3), radial_width=delta, bond_order_centers=(), coarse_grain_levels=0
    )
    # Particle 0 (A) with a B at 1.0 and another A at 1.2 on the other side.
    pos = np.array([[5.0, 5.0, 5.0], [6.0, 5.0, 5.0], [5.0, 3.8, 5.0]])
    types = np.array([0, 1, 0])
    x = boattini_descriptors(pos, types, BIG_BOX, config=config)

    def g(r_ij, r):
        return np.exp(-((r_ij - r) ** 2) / (2 * delta**2))

    r12 = np.hypot(1.0, 1.2)
    expected_0 = [g(1.2, 0.9), g(1.2, 1.0), g(1.2, 1.3), g(1.0, 0.9), g(1.0, 1.0), g(1.0, 1.3)]
    expected_1 = [g(1.0, 0.9), g(1.0, 1.0), g(1.0, 1.3), 0.0, 0.0, 0.0]
    expected_1[0] += g(r12, 0.9)
    expected_1[1] += g(r12, 1.0)
    expected_1[2] += g(r12, 1.3)
    np.testing.assert_allclose(x[0], expected_0, rtol=1e-12)
    np.testing.assert_allclose(x[1], expected_1, rtol=1e-12)
    assert x[0, _column(config, "G0_s1_r1")] == pytest.approx(1.0)


def test_bond_order_single_neighbour_is_one_and_centrosymmetric_pair_kills_odd_l():
    config = DescriptorConfig(radial_centers=(), bond_order_centers=(1.0,), coarse_grain_levels=0)
    two = boattini_descriptors(np.array([[5.0, 5, 5], [5.3, 5.6, 5.74]]), np.array([0, 1]), BIG_BOX, config=config)
    # One neighbour: sum_m |Y_lm|^2 = (2l + 1) / (4 pi) (addition theorem), so q_l = 1 for every l.
    np.testing.assert_allclose(two, 1.0, rtol=1e-12)

    direction = np.array([0.36, -0.48, 0.8])
    three = boattini_descriptors(
        np.array([[5.0, 5, 5], 5 + direction, 5 - direction]), np.array([0, 0, 1]), BIG_BOX, config=config
    )
    centre = dict(zip(descriptor_names(config), three[0]))
    for l in range(1, 13):
        assert centre[f"q0_l{l}_r1"] == pytest.approx(1.0 if l % 2 == 0 else 0.0, abs=1e-12)


def test_coarse_graining_by_hand():
    rc = 2.0
    config = DescriptorConfig(
        radial_centers=(1.5,), bond_order_centers=(), coarse_grain_radius=rc, coarse_grain_levels=2
    )
    pos = np.array([[5.0, 5.0, 5.0], [6.5, 5.0, 5.0], [9.0, 5.0, 5.0]])  # 0-1 at 1.5, 1-2 at 2.5 > r_c
    x = boattini_descriptors(pos, np.array([0, 1, 1]), BIG_BOX, config=config)
    raw, level1, level2 = x[:, 0:2], x[:, 2:4], x[:, 4:6]
    w = np.exp(-1.5 / rc)
    np.testing.assert_allclose(level1[0], (raw[0] + w * raw[1]) / (1 + w), rtol=1e-12)
    np.testing.assert_allclose(level1[2], raw[2], rtol=1e-12)
    np.testing.assert_allclose(level2[1], (level1[1] + w * level1[0]) / (1 + w), rtol=1e-12)


def test_arbitrary_rotation_of_an_isolated_cluster():
    positions, types, _ = _liquid_like(150, seed=3)
    centred = positions - positions.mean(axis=0)
    assert np.linalg.norm(centred, axis=1).max() + DescriptorConfig().neighbour_cutoff < 20.0  # no pair wraps
    rotation = Rotation.random(random_state=7).as_matrix()
    reference = boattini_descriptors(centred + BIG_BOX / 2, types, BIG_BOX)
    rotated = boattini_descriptors(centred @ rotation.T + BIG_BOX / 2, types, BIG_BOX)
    np.testing.assert_allclose(rotated, reference, rtol=1e-9, atol=1e-10)
    assert np.abs(reference).max() > 0


def test_cube_symmetry_rotation_and_translation_of_a_periodic_liquid():
    positions, types, box = _liquid_like(300, seed=4)
    reference = boattini_descriptors(positions, types, box)
    # 90 degrees about z, then 120 degrees about the body diagonal: both map the periodic cube onto itself.
    quarter_turn = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    diagonal_turn = np.array([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]])
    for rotation in (quarter_turn, diagonal_turn @ quarter_turn):
        np.testing.assert_allclose(
            boattini_descriptors(positions @ rotation.T, types, box), reference, rtol=1e-9, atol=1e-10
        )
    shifted = positions + np.array([1.7, -3.2, 12.9])
    np.testing.assert_allclose(boattini_descriptors(shifted, types, box), reference, rtol=1e-9, atol=1e-10)


def test_a_generic_rotation_of_a_periodic_liquid_changes_the_descriptors():
    """Guards the test above: rotating without the box's symmetry is not an invariance of a periodic system."""
    positions, types, box = _liquid_like(300, seed=4)
    rotation = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    assert not np.allclose(
        boattini_descriptors(positions @ rotation.T, types, box), boattini_descriptors(positions, types, box)
    )


def test_permuting_particles_permutes_rows():
    positions, types, box = _liquid_like(200, seed=5)
    order = np.random.default_rng(0).permutation(len(types))
    reference = boattini_descriptors(positions, types, box)
    permuted = boattini_descriptors(positions[order], types[order], box)
    np.testing.assert_allclose(permuted, reference[order], rtol=1e-12, atol=1e-12)


def test_names_match_columns_and_default_size():
    config = DescriptorConfig()
    names = descriptor_names(config)
    assert len(names) == len(set(names)) == config.n_features == 3 * (42 * 2 + 22 * 12)
    x = boattini_descriptors(np.array([[0.0, 0, 0], [1.0, 0, 0]]), np.array([0, 1]), BIG_BOX)
    assert x.shape == (2, config.n_features)
    assert DescriptorConfig.from_dict(config.to_dict()) == config


def test_bad_input_is_named():
    with pytest.raises(InputError, match="0-based"):
        boattini_descriptors(np.zeros((2, 3)) + [[0, 0, 0], [1, 0, 0]], np.array([1, 2]), BIG_BOX)
    with pytest.raises(InputError, match="NaN"):
        boattini_descriptors(np.array([[0.0, 0, np.nan]]), np.array([0]), BIG_BOX)
    with pytest.raises(InputError, match="radial_width"):
        DescriptorConfig(radial_width=0.0)
