"""A run continued from a restart file gives the values of an uninterrupted run (keyword property).

Evaluations every 10 steps; the restart is written at step 15, between two evaluations, so the continued
run must take the saved values from the fix property/atom rather than evaluate at its start.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

PROPERTY = "fix p all property/atom d_glass ghost no"


def test_restart_continues_with_saved_values(kit, ka_data, model_file, tmp_path):
    fix = f"fix g all glassgnn 10 {model_file} property glass"
    whole = tmp_path / "whole"
    result = kit.run_lmp(
        kit.md_input(ka_data, fix, steps=30, dump=whole / "v.dump", dump_every=5, before_fix=PROPERTY), whole
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    first = tmp_path / "first"
    script = kit.md_input(ka_data, fix, steps=15, before_fix=PROPERTY) + f"write_restart {first / 'ka.restart'}\n"
    result = kit.run_lmp(script, first)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    second = tmp_path / "second"
    script = f"""
read_restart {first / 'ka.restart'}
{kit.ka_pair}fix nve all nve
{PROPERTY}
{fix}
dump d all custom 5 {second / 'v.dump'} id type x y z f_g d_glass
dump_modify d sort id format float %.10g
run 15
"""
    result = kit.run_lmp(script, second)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Resetting global fix info from restart file" in result.stdout

    uninterrupted = kit.read_dump_frames(whole / "v.dump")
    continued = kit.read_dump_frames(second / "v.dump")
    assert sorted(continued) == [15, 20, 25, 30]
    for step, frame in continued.items():
        reference = uninterrupted[step]["f_g"]
        scale = max(1.0, float(np.abs(reference).max()))
        assert np.abs(frame["f_g"] - reference).max() <= 1e-5 * scale, f"step {step}"
        np.testing.assert_array_equal(frame["f_g"], frame["d_glass"])  # the property mirrors the fix
    # step 15 holds the step-10 values, unchanged from before the restart
    assert not np.allclose(continued[15]["f_g"], continued[20]["f_g"])
