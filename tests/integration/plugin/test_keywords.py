"""fix glassgnn's keywords as a user meets them: device values, property messages whose suggested command works
when pasted, non-finite positions named by atom ID, and the examples of docs/fix_glassgnn.rst as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

READ_KA = "units lj\natom_style atomic\nread_data {data}\n"
DOC = Path(__file__).resolve().parents[3] / "docs" / "fix_glassgnn.rst"


def _open(plugin, cmdargs=None):
    from glassmd.integrations.lammps_library import open_lammps

    instance = open_lammps(cmdargs)
    if plugin is not None:
        instance.command(f"plugin load {plugin}")
    return instance


def _error(plugin, script: str) -> str:
    """The LAMMPS error that ``script`` stops with, in a fresh instance."""
    lmp = _open(plugin)
    try:
        with pytest.raises(Exception) as info:
            lmp.commands_string(script)
    finally:
        lmp.close()
    return str(info.value)


# ---------------------------------------------------------------------------------------------------------- device


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_devices_are_accepted_by_the_parser(plugin, ka_data, model_file, device):
    script = READ_KA.format(data=ka_data) + f"fix g all glassgnn 10 {model_file} device {device}\nrun 0"
    if torch.cuda.is_available():
        lmp = _open(plugin)
        try:
            lmp.commands_string(script)
        finally:
            lmp.close()
        return
    # no GPU: past the parser, the model loader refuses it in one clear line (no silent CPU fall-back)
    text = _error(plugin, script)
    assert "device must be" not in text, text
    assert "Fix glassgnn" in text and f"device {device} requested" in text and "GPU" in text, text


@pytest.mark.parametrize("device", ["cuda:x", "gpu", "cuda:", "cuda0", "CPU", "cuda:0:1"])
def test_malformed_device_is_rejected(plugin, ka_data, model_file, device):
    text = _error(plugin, READ_KA.format(data=ka_data) + f"fix g all glassgnn 10 {model_file} device {device}")
    assert f"Fix glassgnn: device must be auto, cpu, cuda or cuda:K (K a GPU index), got {device}" in text, text


# -------------------------------------------------------------------------------------------------------- property


def _suggestions(text: str) -> tuple[str, str | None]:
    """The ``fix ID all property/atom ...`` command a message suggests, and the ``property NAME`` it says to use."""
    command = re.search(r"`(fix ID all property/atom [^`]*)`", text)
    assert command, text
    keyword = re.search(r"`(property [^`]*)`", text)
    return command.group(1), keyword.group(1) if keyword else None


@pytest.mark.parametrize(
    "outputs, before, keyword, expected",
    [
        # nothing defined yet: the name as given, the shape of the stored values
        (None, "", "property propensity", "fix ID all property/atom d2_propensity 2"),
        (None, "", "property d_prop", "fix ID all property/atom d2_prop 2"),
        (None, "", "property d2_prop", "fix ID all property/atom d2_prop 2"),
        ("output propensity_t10", "", "property d2_prop", "fix ID all property/atom d_prop"),
        # the name is taken by a property of another shape or type: a free name instead
        (None, "fix p all property/atom d_prop", "property prop", "fix ID all property/atom d2_prop_g 2"),
        (None, "fix p all property/atom d2_prop 3", "property d2_prop", "fix ID all property/atom d2_prop_g 2"),
        ("output propensity_t100", "fix p all property/atom i_prop d_prop_g", "property prop",
         "fix ID all property/atom d_prop_g_2"),
    ],
)
def test_property_message_suggests_a_command_that_works(plugin, kit, ka_data, model_two_outputs, outputs, before,
                                                        keyword, expected):
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR

    def fix_line(property_keyword):
        return f"fix g all glassgnn 10 {model_two_outputs} {outputs or ''} {property_keyword}\n"

    head = READ_KA.format(data=ka_data) + kit.ka_pair + before + "\n"
    text = _error(plugin, head + fix_line(keyword))
    command, use = _suggestions(text)
    assert command == expected, text
    assert "[" not in command, text  # d2_name[n] is not LAMMPS syntax

    # pasted before the fix (with the property keyword the message names, if any), it makes the fix work
    lmp = _open(plugin)
    try:
        lmp.commands_string(head + command + "\n" + fix_line(use or keyword) + "run 0")
        n = lmp.get_natoms()
        if outputs:
            fix_values = np.array(lmp.numpy.extract_fix("g", LMP_STYLE_ATOM, LMP_TYPE_VECTOR)[:n])
        else:
            fix_values = np.array(lmp.numpy.extract_fix("g", LMP_STYLE_ATOM, LMP_TYPE_ARRAY)[:n])
        property_name = command.split()[4]
        stored = np.array(lmp.numpy.extract_atom(property_name)[:n])
    finally:
        lmp.close()
    assert stored.shape == fix_values.shape
    assert np.abs(fix_values).max() > 0  # the model ran
    np.testing.assert_array_equal(stored, fix_values)


@pytest.mark.parametrize("value", ["d2_prop[2]", "i_prop", "i2_prop", "d_", "d2_a-b"])
def test_property_that_fix_property_atom_cannot_define_is_rejected(plugin, ka_data, model_file, value):
    text = _error(plugin, READ_KA.format(data=ka_data) + f"fix g all glassgnn 10 {model_file} property {value}")
    assert "Fix glassgnn: property must name a floating-point per-atom property of fix property/atom" in text, text
    assert f"got {value}" in text, text


# ------------------------------------------------------------------------------------------ non-finite positions


@pytest.mark.parametrize("bad_ids", [(7,), (42, 3)])
def test_non_finite_position_names_the_atom_id(plugin, kit, ka_data, model_file, bad_ids):
    # A NaN or inf force at step 1 makes these atoms' positions non-finite at step 2, an evaluation step. No
    # reneighboring in between, so LAMMPS's own check (at reneighboring) does not see them first.
    lmp = _open(plugin)
    try:
        lmp.commands_string(kit.md_input(ka_data, f"fix g all glassgnn 2 {model_file}", steps=0))
        lmp.commands_string("neigh_modify every 1000 delay 1000 check no\nfix ext all external pf/callback 1 1")

        def force(caller, step, nlocal, tag, x, f):
            f[:] = 0.0
            if step == 1:
                for k, atom_id in enumerate(bad_ids):
                    f[int(np.flatnonzero(tag == atom_id)[0]), k % 3] = np.nan if k == 0 else np.inf

        lmp.set_fix_external_callback("ext", force, lmp)
        with pytest.raises(Exception) as info:
            lmp.command("run 4")
    finally:
        lmp.close()
    text = str(info.value)
    if len(bad_ids) == 1:
        assert f"Fix glassgnn: atom {bad_ids[0]} has a non-finite position (NaN or inf) at step 2" in text, text
    else:
        assert (f"Fix glassgnn: {len(bad_ids)} atoms have non-finite positions (NaN or inf), the lowest-numbered "
                f"atom {min(bad_ids)} at step 2") in text, text
    assert "index" not in text, text


# ------------------------------------------------------------------------------------------ documented examples


def _shipped_model() -> str:
    result = subprocess.run([str(Path(sys.executable).parent / "glassmd"), "model", "path"], capture_output=True,
                            text=True)
    if result.returncode != 0:
        pytest.skip(f"no shipped model: {result.stderr.strip()}")
    return result.stdout.strip()


def _documented_examples() -> list[list[str]]:
    """The LAMMPS code blocks of the examples, split at blank lines into the examples they hold."""
    text = DOC.read_text()
    section = text[text.index("Examples\n"):text.index("Description\n")]
    examples = []
    for block in re.findall(r"\.\. code-block:: LAMMPS\n\n((?:   .*\n|\n)+)", section):
        for chunk in re.split(r"\n\s*\n", block):
            lines = [line[3:] for line in chunk.splitlines() if line.strip()]
            if lines:
                examples.append(lines)
    return examples


def test_documented_examples_run_as_written(plugin, kit, ka_data, tmp_path):
    # As the documentation runs them: `lmp -var model $(glassmd model path)`, and for the plugin load line
    # `-var glassmd_plugin $(glassmd plugin-path --file)` in a LAMMPS that does not load the plugin by itself
    # (here the library, with no plugin loaded otherwise: the fix style exists only if that line loaded it).
    model = _shipped_model()
    examples = _documented_examples()
    assert any(line.startswith("plugin load") for lines in examples for line in lines)
    assert sum(1 for lines in examples if any(" glassgnn " in line for line in lines)) >= 2
    for k, lines in enumerate(examples):
        folder = tmp_path / f"example{k}"
        folder.mkdir()
        lines = [line.replace("out.dump", str(folder / "out.dump")) for line in lines]
        loads = [line for line in lines if line.startswith("plugin load")]
        rest = "\n".join(line for line in lines if not line.startswith("plugin load"))
        if loads:
            rest += f"\nfix doc all glassgnn 100 {model} output propensity_t10"
            lmp = _open(None, ["-var", "model", model, "-var", "glassmd_plugin", str(plugin)])
        else:
            lmp = _open(plugin, ["-var", "model", model])
        script = "\n".join(loads) + "\n" + kit.md_input(ka_data, rest, steps=100)
        try:
            try:
                lmp.commands_string(script)
            except Exception as exc:
                pytest.fail(f"documented example {lines} fails: {exc}")
        finally:
            lmp.close()
        if any(line.startswith("dump") for line in lines):
            frame = kit.read_dump_frames(folder / "out.dump")[0]
            columns = [name for name in frame if name.startswith("f_prop")]
            assert columns, f"{lines}: {list(frame)}"
            assert all(np.abs(frame[name]).max() > 0 for name in columns), lines
