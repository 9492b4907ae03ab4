"""Ridge baseline: recovers a planted linear signal, picks the penalty on validation, runs from the CLI."""

import json

import numpy as np
import pytest

from glassmd.cli import main
from glassmd.data.dump import Frame, propensity_column, write_dump
from glassmd.train.baseline import _fit_ridge, run_baseline
from glassmd.train.config import load_config
from glassmd.train.dataset import find_dump_files, load_labelled_set, make_split
from glassmd.train.descriptors import DescriptorConfig, boattini_descriptors, descriptor_names

N_PARTICLES = 150
SIGNAL = "G0_s0_r1.05"  # density of A neighbours in the first shell


def _liquid_like(rng, n, density=1.2):
    box = np.full(3, (n / density) ** (1 / 3))
    points = []
    while len(points) < n:
        trial = rng.uniform(0, box)
        if points:
            d = np.asarray(points) - trial
            d -= np.round(d / box) * box
            if (np.einsum("ij,ij->i", d, d) < 0.75**2).any():
                continue
        points.append(trial)
    return np.asarray(points), box


def _frames(count, seed, times=(10.0, 20.0), noise=0.5, shuffle_labels=False, n_particles=N_PARTICLES):
    """Configurations whose propensity at time t is t/10 * (one standardised descriptor) + noise."""
    rng = np.random.default_rng(seed)
    # The one shell the label depends on; the other descriptors do not change its value (beyond the
    # 5-width Gaussian truncation, a 1e-6 effect), so computing it alone keeps the test fast.
    only_signal = DescriptorConfig(radial_centers=(1.05,), bond_order_centers=(), coarse_grain_levels=0)
    column = descriptor_names(only_signal).index(SIGNAL)
    frames = []
    for k in range(count):
        positions, box = _liquid_like(rng, n_particles)
        types = np.where(np.arange(n_particles) < 0.8 * n_particles, 1, 2).astype(np.int64)
        signal = boattini_descriptors(positions, types - 1, box, config=only_signal)[:, column]
        signal = (signal - 3.0) / 1.5  # roughly standardised; the exact scale is irrelevant to Pearson
        columns = {}
        for t in times:
            label = t / 10 * (signal + noise * rng.standard_normal(n_particles))
            columns[propensity_column(t)] = rng.permutation(label) if shuffle_labels else label
        frames.append(Frame(timestep=100 * k, box=np.stack([np.zeros(3), box], axis=1),
                            ids=np.arange(1, n_particles + 1, dtype=np.int64), types=types,
                            positions=positions, columns=columns))
    return frames


@pytest.fixture(scope="module")
def data():
    return {"train": _frames(8, seed=1), "validation": _frames(2, seed=2), "test": _frames(2, seed=3)}


@pytest.fixture(scope="module")
def cache():
    return {}


@pytest.fixture(scope="module")
def report(data, cache):
    return run_baseline(data["train"], data["validation"], data["test"], [10.0, 20.0], n_resamples=500,
                        descriptor_cache=cache)


def test_recovers_a_planted_linear_signal(report):
    # Label noise of half the signal's spread caps the Pearson coefficient near 1 / sqrt(1 + 0.5^2) = 0.89.
    for key in ("10", "20"):
        row = report["times"][key]
        assert row["test"]["value"] > 0.75
        assert row["validation_pearson"] > 0.75
        assert row["test"]["low"] < row["test"]["value"] < row["test"]["high"]
        assert row["test_per_configuration"]["mean"] > 0.7
    assert report["particles"] == {"train": 8 * 120, "validation": 2 * 120, "test": 2 * 120}  # A particles only
    assert report["n_features"] == DescriptorConfig().n_features


def test_penalty_is_chosen_on_validation_not_test(data, report, cache):
    for row in report["times"].values():
        assert row["validation_pearson"] == max(c for c in row["validation_curve"] if c is not None)
        assert row["alpha"] == report["alphas"][int(np.nanargmax(row["validation_curve"]))]
    # Replacing the test set by one with meaningless labels must not move the penalty or validation score.
    garbage_test = _frames(2, seed=4, shuffle_labels=True)
    other = run_baseline(data["train"], data["validation"], garbage_test, [10.0, 20.0], n_resamples=200,
                         descriptor_cache=cache)
    assert len(cache) == 8 + 2 + 2 + 2  # the shared frames were described once
    for key, row in report["times"].items():
        assert other["times"][key]["alpha"] == row["alpha"]
        assert other["times"][key]["validation_pearson"] == row["validation_pearson"]
        assert abs(other["times"][key]["test"]["value"]) < 0.3


def test_streamed_ridge_equals_the_direct_solution():
    rng = np.random.default_rng(5)
    n_features, times, alphas = 6, [1.0], [1e-3, 1.0]

    class Piece:
        def __init__(self, x, y):
            self.x, self.y = x, y

        def propensity(self, t):
            return self.y

    pieces = []
    for _ in range(3):
        x = rng.normal(size=(40, n_features)) * [1, 2, 3, 50, 0.1, 1] + [0, 100, 5, 0, 0, 7]
        pieces.append(Piece(x, x @ rng.normal(size=n_features) + rng.normal(size=40)))
    mean, scale, y_mean, weights, n = _fit_ridge(pieces, lambda p: (p.x, np.ones(len(p.x), bool)), times, alphas)
    x = np.concatenate([p.x for p in pieces])
    y = np.concatenate([p.y for p in pieces])
    z = (x - x.mean(0)) / x.std(0)
    for k, alpha in enumerate(alphas):
        direct = np.linalg.solve(z.T @ z / len(z) + alpha * np.eye(n_features), z.T @ (y - y.mean()) / len(z))
        np.testing.assert_allclose(weights[k, :, 0], direct, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(scale, x.std(0), rtol=1e-10)
    assert n == 120 and y_mean[0] == pytest.approx(y.mean())


def test_command_line_with_default_and_explicit_split(tmp_path, capsys):
    frames = _frames(10, seed=6, times=(10.0,), n_particles=60)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_dump(data_dir / "a.dump", frames[:6])
    write_dump(data_dir / "b.dump.gz", frames[6:])
    out = tmp_path / "report.json"
    status = main(["baseline", str(data_dir), "--times", "10", "-o", str(out), "--bootstrap", "200"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "alpha" in printed and "test r" in printed
    written = json.loads(out.read_text())
    split = written["split"]
    # Without --split: the split `glassmd train` draws with its default configuration (0.5/0.4/0.1, seed 0).
    assert [len(split[k]) for k in ("train", "validation", "test")] == [5, 4, 1]
    defaults = load_config(None).split
    trainer_split = make_split(load_labelled_set(find_dump_files([data_dir]), [10.0]).ids, defaults, defaults["seed"])
    assert split == trainer_split
    row = written["times"]["10"]
    assert row["test"]["n"] == 48 and row["test"]["n_resamples"] == 200
    assert row["alpha"] in written["alphas"] and -1 <= row["test"]["value"] <= 1

    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": [f"a.dump#{k}" for k in range(6)],
                                      "validation": ["b.dump.gz#0", "b.dump.gz#1"], "test": ["b.dump.gz#2"]}))
    out2 = tmp_path / "report2.json"
    assert main(["baseline", str(data_dir), "--split", str(split_file), "-o", str(out2), "--bootstrap", "100"]) == 0
    second = json.loads(out2.read_text())
    assert second["configurations"] == {"train": 6, "validation": 2, "test": 1}
    assert list(second["times"]) == ["10"]  # times default to the labelled ones


def test_command_line_errors_are_one_line(tmp_path, capsys):
    frames = _frames(3, seed=7, times=(10.0,), n_particles=60)
    path = tmp_path / "few.dump"
    write_dump(path, frames)
    assert main(["baseline", str(path), "--times", "10"]) == 2
    assert "split leaves no configuration" in capsys.readouterr().err
    assert main(["baseline", str(path), "--times", "99"]) == 2
    assert "99" in capsys.readouterr().err
    bad_split = tmp_path / "split.json"
    bad_split.write_text(json.dumps({"train": ["few.dump#0"], "validation": ["few.dump#1"], "test": ["nope#0"]}))
    assert main(["baseline", str(path), "--split", str(bad_split)]) == 2
    assert "nope#0" in capsys.readouterr().err
