"""fix glassgnn in a serial LAMMPS: loading, values against glassmd's own evaluation, refresh schedule."""

from __future__ import annotations

import numpy as np
import pytest


def _tolerance(reference: np.ndarray) -> float:
    # float32 model: 1e-5 relative to the size of the predictions (summation order differs)
    return 1e-5 * max(1.0, float(np.abs(reference).max()))


def _open_with_plugin(plugin):
    from glassmd.integrations.lammps_library import open_lammps

    lmp = open_lammps()
    lmp.command(f"plugin load {plugin}")
    return lmp


def _snapshot(lmp, fix_id: str, columns: int):
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR

    n = lmp.get_natoms()
    kind = LMP_TYPE_VECTOR if columns == 0 else LMP_TYPE_ARRAY
    values = np.array(lmp.numpy.extract_fix(fix_id, LMP_STYLE_ATOM, kind)[:n], dtype=float)
    ids = np.array(lmp.numpy.extract_atom("id")[:n])
    x = np.array(lmp.numpy.extract_atom("x")[:n], dtype=float)
    types = np.array(lmp.numpy.extract_atom("type")[:n])
    lo, hi = lmp.extract_box()[:2]
    order = np.argsort(ids)
    return values[order], x[order] - np.array(lo), types[order], np.array(hi) - np.array(lo)


def test_explicit_plugin_load_registers_the_style(plugin):
    lmp = _open_with_plugin(plugin)
    try:
        assert lmp.has_style("fix", "glassgnn")
    finally:
        lmp.close()


def test_entry_point_makes_lmp_autoload_the_plugin(kit, ka_data, model_file, tmp_path):
    # no `plugin load` line: the lmp launcher fills LAMMPS_PLUGIN_PATH from the lammps.plugins entry point
    result = kit.run_lmp(kit.md_input(ka_data, f"fix g all glassgnn 10 {model_file}"), tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Loaded 1 plugins from" in result.stdout
    assert "fix glassgnn: model" in result.stdout


def test_enable_autoload_for_the_python_module(plugin, monkeypatch):
    from glassmd.integrations.lammps_library import open_lammps
    from glassmd.integrations.plugin_path import enable_autoload, plugin_file

    monkeypatch.setenv("LAMMPS_PLUGIN_PATH", "")  # restored after the test
    folder = enable_autoload()
    assert (plugin_file().parent.as_posix() == folder) and plugin_file().is_file()
    lmp = open_lammps()
    try:
        assert lmp.has_style("fix", "glassgnn")
    finally:
        lmp.close()


def test_values_equal_direct_evaluation(kit, plugin, ka_data, model_file):
    lmp = _open_with_plugin(plugin)
    try:
        lmp.commands_string(kit.md_input(ka_data, f"fix g all glassgnn 5 {model_file}", steps=0))
        values, x, types, box = _snapshot(lmp, "g", 0)
        from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR

        mean = lmp.extract_fix("g", LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR)
    finally:
        lmp.close()
    reference = kit.reference_values(model_file, x, types, box)[:, 0]
    assert values.shape == (kit.n_atoms,)
    assert np.abs(values - reference).max() <= _tolerance(reference)
    assert np.std(reference) > 0  # a model with structure-dependent output, so the comparison means something
    assert mean == pytest.approx(values.mean(), rel=1e-12)


def test_several_outputs_array_and_selection(kit, plugin, ka_data, model_two_outputs):
    lmp = _open_with_plugin(plugin)
    try:
        lmp.commands_string(
            kit.md_input(
                ka_data,
                f"fix g all glassgnn 5 {model_two_outputs}\n"
                f"fix h all glassgnn 5 {model_two_outputs} output propensity_t100 types A B device cpu",
                steps=0,
            )
        )
        both, x, types, box = _snapshot(lmp, "g", 2)
        second, *_ = _snapshot(lmp, "h", 0)
        from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR

        means = [lmp.extract_fix("g", LMP_STYLE_GLOBAL, LMP_TYPE_VECTOR, k) for k in range(2)]
    finally:
        lmp.close()
    reference = kit.reference_values(model_two_outputs, x, types, box)
    assert both.shape == (kit.n_atoms, 2)
    assert np.abs(both - reference).max() <= _tolerance(reference)
    assert np.abs(second - reference[:, 1]).max() <= _tolerance(reference)
    assert means == pytest.approx(both.mean(axis=0).tolist(), rel=1e-12)


def test_group_limits_the_stored_values(kit, plugin, ka_data, model_file):
    lmp = _open_with_plugin(plugin)
    try:
        lmp.commands_string(
            kit.md_input(ka_data, f"group small type 2\nfix g small glassgnn 5 {model_file}", steps=0)
        )
        values, x, types, box = _snapshot(lmp, "g", 0)
    finally:
        lmp.close()
    reference = kit.reference_values(model_file, x, types, box)[:, 0]
    # the graph still holds every atom: group atoms get the whole-system prediction, the others 0
    assert np.abs(values[types == 2] - reference[types == 2]).max() <= _tolerance(reference)
    assert np.all(values[types == 1] == 0.0)


def test_values_refresh_only_every_n_steps(kit, ka_data, model_file, tmp_path):
    dump = tmp_path / "every.dump"
    script = kit.md_input(ka_data, f"fix g all glassgnn 4 {model_file}", steps=9, dump=dump, dump_every=1)
    result = kit.run_lmp(script, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    frames = kit.read_dump_frames(dump)
    assert sorted(frames) == list(range(10))
    for step in range(10):
        evaluated_at = step - step % 4
        np.testing.assert_array_equal(frames[step]["f_g"], frames[evaluated_at]["f_g"])
    for step in (4, 8):
        frame = frames[step]
        assert not np.array_equal(frame["f_g"], frames[step - 1]["f_g"])  # atoms moved, values refreshed
        positions = np.stack([frame["x"], frame["y"], frame["z"]], axis=1) - frame["box"][:, 0]
        box = frame["box"][:, 1] - frame["box"][:, 0]
        reference = kit.reference_values(model_file, positions, frame["type"], box)[:, 0]
        assert np.abs(frame["f_g"] - reference).max() <= _tolerance(reference)
