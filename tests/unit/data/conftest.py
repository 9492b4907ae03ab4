"""Fixtures for the data-layer tests: small frames and a real LAMMPS run that crosses the boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from glassmd.data.dump import Frame

KA_SETUP = """
units lj
atom_style atomic
boundary p p p
region box block 0 5.5 0 5.5 0 5.5
create_box 2 box
create_atoms 1 random 160 12345 box overlap 0.8
create_atoms 2 random 40 54321 box overlap 0.7
mass * 1.0
pair_style lj/cut 2.5
pair_coeff 1 1 1.0 1.0 2.5
pair_coeff 1 2 1.5 0.8 2.0
pair_coeff 2 2 0.5 0.88 2.2
neighbor 0.3 bin
minimize 1.0e-4 1.0e-6 100 1000
reset_timestep 0
velocity all create 2.0 4928459 loop geom
timestep 0.005
fix integrate all nve
run 400
"""


def make_frame(n: int = 7, timestep: int = 100, seed: int = 0, with_columns: bool = True) -> Frame:
    """A frame with awkward floats (many digits, negatives, values outside the box) for round trips."""
    rng = np.random.default_rng(seed)
    box = np.array([[-1.25, 3.5], [0.0, 4.0], [2.0, 7.123456789012345]])
    lengths = box[:, 1] - box[:, 0]
    positions = box[:, 0] + rng.uniform(-1.5, 2.5, size=(n, 3)) * lengths
    columns = {}
    if with_columns:
        columns = {"propensity_t10": rng.random(n) * 3, "propensity_t0.5": rng.random(n) / 7, "c_msd[4]": rng.normal(size=n)}
    return Frame(
        timestep=timestep,
        box=box,
        ids=np.arange(1, n + 1, dtype=np.int64) * 3,
        types=rng.integers(1, 3, size=n).astype(np.int64),
        positions=positions,
        columns=columns,
    )


@pytest.fixture
def frame_factory():
    """``frame_factory(n=7, timestep=100, seed=0, with_columns=True)`` -> a fresh :class:`Frame`."""
    return make_frame


@pytest.fixture(scope="module")
def ka_lammps():
    """A small Kob-Andersen-like LAMMPS system after a short hot run, so atoms carry non-zero image flags."""
    from glassmd.integrations.lammps_library import open_lammps

    lmp = open_lammps()
    lmp.commands_string(KA_SETUP)
    yield lmp
    lmp.close()
