"""Importing Bapst et al. (2020) pickles and GlassBench .npz files; the restricted unpickler."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from glassmd.cli import main
from glassmd.data.dump import read_dump
from glassmd.data.importers import safe_pickle_load
from glassmd.errors import GlassmdError

INITIAL = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [9.5, 0.0, 0.0]])


def bapst_dict() -> dict:
    """Three particles, two target times; displacements chosen so that every length is a whole number."""
    t1_runs = [INITIAL + [[3, 4, 0], [0, 0, 0], [1, 0, 0]], INITIAL + [[0, 0, 1], [0, 6, 8], [0, 2, 0]]]
    t10_runs = [
        INITIAL + [[0, 3, 4], [2, 0, 0], [12, 0, 5]],  # particle 2 leaves the box: positions are absolute
        INITIAL + [[0, 0, 2], [0, 0, 0], [0, 0, 0]],
        INITIAL + [[2, 0, 0], [0, 0, 4], [0, 0, 2]],
    ]
    return {
        "positions": INITIAL.astype(np.float32),
        "types": np.array([0, 1, 0], dtype=np.int32),
        "box": np.array([10.0, 10.0, 10.0], dtype=np.float32),
        "time": np.array([0.0, 1.0, 2.5, 10.0]),
        "time_indices": np.array([1, 3]),
        "is_values": np.array([0.9, 0.44]),
        "trajectory_start_velocities": [np.zeros((3, 3)) for _ in range(3)],
        "trajectory_target_positions": [t1_runs, t10_runs],
        "metadata": {"temperature": np.float64(0.44), "pressure": 2.0, "fluid": "Kob-Andersen"},
    }


# mean over runs of |displacement|, worked out by hand from bapst_dict()
EXPECTED_T1 = [(5 + 1) / 2, (0 + 10) / 2, (1 + 2) / 2]
EXPECTED_T10 = [(5 + 2 + 2) / 3, (2 + 0 + 4) / 3, (13 + 0 + 2) / 3]


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_bapst_import_through_the_command_line(tmp_path, protocol):
    source = tmp_path / "T044_s01.pickle"
    source.write_bytes(pickle.dumps(bapst_dict(), protocol=protocol))
    out = tmp_path / "labelled"
    assert main(["import", "bapst", str(source), "-o", str(out)]) == 0

    (frame,) = read_dump(out / "T044_s01.dump")
    np.testing.assert_array_equal(frame.ids, [1, 2, 3])
    np.testing.assert_array_equal(frame.types, [1, 2, 1])
    np.testing.assert_array_equal(frame.positions, INITIAL)
    np.testing.assert_array_equal(frame.box, [[0, 10], [0, 10], [0, 10]])
    assert list(frame.columns) == ["propensity_t1", "propensity_t10"]
    assert frame.propensity_times() == [1.0, 10.0]
    np.testing.assert_allclose(frame.propensity(1), EXPECTED_T1, rtol=1e-12)
    np.testing.assert_allclose(frame.propensity(10), EXPECTED_T10, rtol=1e-12)


def test_import_keeps_existing_outputs_unless_told(tmp_path, capsys):
    source = tmp_path / "a.pickle"
    source.write_bytes(pickle.dumps(bapst_dict(), protocol=3))
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.dump").write_text("precious")
    assert main(["import", "bapst", str(source), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "a.dump").read_text() == "precious"
    assert main(["import", "bapst", str(source), "-o", str(out), "--overwrite", "--gzip"]) == 0
    assert read_dump(out / "a.dump.gz")[0].propensity_times() == [1.0, 10.0]


def test_bapst_with_missing_keys_is_a_clear_error(tmp_path, capsys):
    data = bapst_dict()
    del data["trajectory_target_positions"]
    source = tmp_path / "broken.pickle"
    source.write_bytes(pickle.dumps(data))
    assert main(["import", "bapst", str(source), "-o", str(tmp_path / "o")]) == 2
    assert "trajectory_target_positions" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


class _RunsAShellCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


class _PlainObject:
    pass


@pytest.mark.parametrize(
    "payload, referenced",
    [
        (lambda marker: _RunsAShellCommand(marker), os.system.__module__ + ".system"),
        (lambda marker: _CallsEval(), "builtins.eval"),
        (lambda marker: _PlainObject(), "_PlainObject"),
    ],
    ids=["os.system", "eval", "class"],
)
def test_malicious_pickles_are_refused_without_running_anything(tmp_path, capsys, payload, referenced):
    marker = tmp_path / "pwned_marker"
    data = bapst_dict()
    data["metadata"]["extra"] = payload(marker)
    source = tmp_path / "evil.pickle"
    source.write_bytes(pickle.dumps(data, protocol=3))

    with pytest.raises(GlassmdError, match=f"refusing to load {source}.*it references .*{referenced}"):
        safe_pickle_load(source)
    assert main(["import", "bapst", str(source), "-o", str(tmp_path / "out")]) == 2
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()
    # the same file does run its payload under plain pickle, so the refusal above is what protected us
    if referenced.endswith(".system"):
        with open(source, "rb") as f:
            pickle.load(f)
        assert marker.exists()


def test_corrupt_pickle_and_missing_file(tmp_path):
    bad = tmp_path / "cut.pickle"
    bad.write_bytes(pickle.dumps(bapst_dict())[:100])
    with pytest.raises(GlassmdError, match="not a readable pickle"):
        safe_pickle_load(bad)
    assert main(["import", "bapst", str(tmp_path / "none.pickle"), "-o", str(tmp_path)]) == 2


# ------------------------------------------------------------------------------------------- GlassBench

GB_INITIAL = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [4.0, 4.0, 4.0], [7.5, 0.5, 7.9]])
GB_TYPES = np.array([0, 1, 0, 1])


def write_glassbench(path, displacements, initial=GB_INITIAL):
    """displacements: (runs, 4, 3); stored as absolute positions, as GlassBench does."""
    np.savez(path, types=GB_TYPES, initial_positions=initial, positions=initial + np.asarray(displacements, float))


# per run and particle, (3,4,0)-style displacements with whole-number lengths
GB_EARLY = [[[0, 0, 0], [3, 4, 0], [0, 1, 0], [0, 0, 2]], [[1, 0, 0], [0, 0, 1], [0, 0, 3], [6, 8, 0]]]
GB_LATE = [[[2, 0, 0], [0, 0, 0], [0, 0, 1], [0, 0, 0]], [[0, 3, 4], [0, 2, 0], [0, 0, 5], [0, 0, 0]]]


def test_glassbench_files_of_one_configuration_merge(tmp_path):
    write_glassbench(tmp_path / "KA_n1_tc03.npz", GB_EARLY)
    write_glassbench(tmp_path / "KA_n1_tc07.npz", GB_LATE)
    write_glassbench(tmp_path / "KA_n2_tc07.npz", GB_EARLY)
    out = tmp_path / "out"
    args = ["import", "glassbench", *map(str, sorted(tmp_path.glob("*.npz"))), "-o", str(out)]
    assert main(args + ["--time", "3=0.5", "--time", "tc07=20", "--box", "8"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["KA_n1.dump", "KA_n2.dump"]

    (n1,) = read_dump(out / "KA_n1.dump")
    np.testing.assert_array_equal(n1.types, [1, 2, 1, 2])
    np.testing.assert_array_equal(n1.positions, GB_INITIAL)
    np.testing.assert_array_equal(n1.box_lengths, [8, 8, 8])
    assert n1.propensity_times() == [0.5, 20.0]
    np.testing.assert_allclose(n1.propensity(0.5), [(0 + 1) / 2, (5 + 1) / 2, (1 + 3) / 2, (2 + 10) / 2])
    np.testing.assert_allclose(n1.propensity(20), [(2 + 5) / 2, (0 + 2) / 2, (1 + 5) / 2, 0])
    (n2,) = read_dump(out / "KA_n2.dump")
    assert n2.propensity_times() == [20.0]
    np.testing.assert_allclose(n2.propensity(20), [(0 + 1) / 2, (5 + 1) / 2, (1 + 3) / 2, (2 + 10) / 2])


def test_glassbench_default_box_for_4096_particles(tmp_path):
    rng = np.random.default_rng(1)
    initial = rng.uniform(0, 15, size=(4096, 3))
    np.savez(tmp_path / "big_tc05.npz", types=(np.arange(4096) % 5 == 0).astype(int), initial_positions=initial,
             positions=(initial + [[0.0, 0.0, 0.25]])[None])
    assert main(["import", "glassbench", str(tmp_path / "big_tc05.npz"), "--time", "1e3", "-o", str(tmp_path)]) == 0
    (frame,) = read_dump(tmp_path / "big.dump")
    np.testing.assert_array_equal(frame.box_lengths, [15.05658] * 3)
    np.testing.assert_allclose(frame.propensity(1000), np.full(4096, 0.25))
    assert list(frame.columns) == ["propensity_t1000"]


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "--time"),
        (["--time", "20"], "2 time indices"),
        (["--time", "3=1", "--box", "8"], "no time given for time index 07"),
        (["--time", "3=1", "--time", "7=2"], "give --box"),
        (["--time", "3=x"], "expected T or INDEX=T"),
    ],
)
def test_glassbench_argument_errors(tmp_path, capsys, extra, message):
    write_glassbench(tmp_path / "c_tc03.npz", GB_EARLY)
    write_glassbench(tmp_path / "c_tc07.npz", GB_LATE)
    files = [str(tmp_path / "c_tc03.npz"), str(tmp_path / "c_tc07.npz")]
    assert main(["import", "glassbench", *files, "-o", str(tmp_path / "out"), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_glassbench_bad_files(tmp_path, capsys):
    write_glassbench(tmp_path / "c_tc03.npz", GB_EARLY)
    write_glassbench(tmp_path / "c_tc07.npz", GB_LATE, initial=GB_INITIAL + 0.5)
    files = [str(tmp_path / "c_tc03.npz"), str(tmp_path / "c_tc07.npz")]
    assert main(["import", "glassbench", *files, "-o", str(tmp_path), "--time", "3=1", "--time", "7=2", "--box", "8"]) == 2
    assert "initial configuration differs" in capsys.readouterr().err

    np.savez(tmp_path / "obj_tc01.npz", types=np.array([0, 1], dtype=object), initial_positions=np.zeros((2, 3)),
             positions=np.zeros((1, 2, 3)))
    np.savez(tmp_path / "nokeys_tc01.npz", coords=np.zeros((2, 3)))
    for name, expected in (("obj_tc01.npz", "unreadable array"), ("nokeys_tc01.npz", "missing array")):
        assert main(["import", "glassbench", str(tmp_path / name), "-o", str(tmp_path), "--time", "1", "--box", "8"]) == 2
        assert expected in capsys.readouterr().err
