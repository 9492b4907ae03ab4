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
"$py" -m pip install -q -e ".[test]"
echo "glassmd environment ready: $VENV"
