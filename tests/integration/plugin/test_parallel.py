"""fix glassgnn under MPI: every rank evaluates its own atoms, ghost features exchanged layer by layer.

The same MD run on 1, 2 and 4 ranks must give the same per-atom values for every atom, also on steps
between evaluations (values follow atoms migrating between ranks).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

# Reneighbour (and so migrate atoms) every step, so that stored values cross ranks between evaluations.
NEIGH_EVERY_STEP = "neigh_modify every 1 delay 0 check no"


def _run(kit, ka_data, model_file, folder, ranks):
    dump = folder / "values.dump"
    script = kit.md_input(
        ka_data,
        f"fix g all glassgnn 5 {model_file}",
        steps=10,
        dump=dump,
        dump_every=1,
        before_fix=NEIGH_EVERY_STEP,
    )
    result = kit.run_lmp(script, folder, ranks=ranks)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return kit.read_dump_frames(dump), result.stdout


@pytest.fixture(scope="module")
def serial_frames(kit, ka_data, model_file, tmp_path_factory):
    frames, _ = _run(kit, ka_data, model_file, tmp_path_factory.mktemp("serial"), 1)
    return frames


@pytest.mark.parametrize("ranks", [2, 4])
def test_parallel_values_equal_serial(kit, ka_data, model_file, tmp_path, serial_frames, ranks):
    frames, stdout = _run(kit, ka_data, model_file, tmp_path, ranks)
    assert f"on {ranks} procs for 10 steps" in stdout  # the atoms really are split over the ranks
    assert sorted(frames) == sorted(serial_frames)
    for step, frame in frames.items():
        reference = serial_frames[step]
        np.testing.assert_array_equal(frame["id"], reference["id"])
        scale = max(1.0, float(np.abs(reference["f_g"]).max()))
        assert np.abs(frame["f_g"] - reference["f_g"]).max() <= 1e-5 * scale, f"step {step}"
