"""``glassmd simulate`` writes readable Kob-Andersen configurations and keeps LAMMPS's log."""

from __future__ import annotations

import json

import numpy as np

from glassmd.data.dump import read_dump

from .conftest import N_CONFIGS, N_SMALL, run_glassmd


def test_configurations_have_ka_density_and_composition(small_configs):
    files = sorted(small_configs.glob("config_*.dump.gz"))
    assert [f.name for f in files] == [f"config_{k:04d}.dump.gz" for k in range(N_CONFIGS)]
    timesteps = []
    for path in files:
        (frame,) = read_dump(path)
        assert frame.n_atoms == N_SMALL
        assert np.isclose(N_SMALL / np.prod(frame.box_lengths), 1.2, rtol=1e-12)
        assert np.array_equal(frame.ids, np.arange(1, N_SMALL + 1))
        assert np.count_nonzero(frame.types == 1) == 200 and np.count_nonzero(frame.types == 2) == 50
        assert np.isfinite(frame.positions).all()
        timesteps.append(frame.timestep)
    # --spacing 2 at dt 0.005 is 400 steps
    assert np.all(np.diff(timesteps) == 400)


def test_configurations_differ_and_particles_move(small_configs):
    first, second = (read_dump(small_configs / f"config_{k:04d}.dump.gz")[0] for k in (0, 1))
    displacement = np.linalg.norm(second.positions - first.positions, axis=1)
    assert 0.01 < displacement.mean() < 2.0  # 2 time units at T = 0.6: caged, but not frozen


def test_log_and_settings_are_kept(small_configs):
    log = (small_configs / "log.lammps").read_text()
    assert "pair_coeff 1 2 1.5 0.8 2.0" in log and "fix glassmd_nvt all nvt temp 0.6 0.6" in log
    settings = json.loads((small_configs / "simulate.json").read_text())["settings"]
    assert settings["n_atoms"] == N_SMALL and settings["seed"] == 7


def test_refuses_to_overwrite_configurations(small_configs):
    before = {p.name: p.stat().st_mtime_ns for p in small_configs.iterdir()}
    result = run_glassmd("simulate", "--n", "250", "--count", "1", "--equilibrate", "0", "-o",
                         str(small_configs), check=False)
    assert result.returncode == 2
    assert "already holds" in result.stderr
    assert {p.name: p.stat().st_mtime_ns for p in small_configs.iterdir()} == before


def test_same_seed_same_configuration(tmp_path):
    args = ["simulate", "--n", "250", "--equilibrate", "1", "--melt-time", "1", "--count", "1", "--no-progress"]
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        run_glassmd(*args, "--seed", seed, "-o", str(tmp_path / name))
    content = {name: (tmp_path / name / "config_0000.dump.gz").read_bytes() for name in "abc"}
    assert content["a"] == content["b"]
    assert content["a"] != content["c"]
