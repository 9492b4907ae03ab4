#!/usr/bin/env bash
# Kob-Andersen MD at T = 0.6 with fix glassgnn, then a picture of the predicted propensity.
# Uses the shipped model when this glassmd has one (`glassmd model path`), else exports a freshly
# initialised model (its predictions are not trained: the example then only shows the mechanics).
# Environment: NP = MPI ranks (default 2), VENV = environment with glassmd (default: the repository's .venv).
# Writes ka.dump, ka.log and propensity.png beside this script (replacing those of an earlier run).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV=${VENV:-$(cd "$here/../.." && pwd)/.venv}
bin="$VENV/bin"
NP=${NP:-2}
cd "$here"

if model=$("$bin/glassmd" model path 2>/dev/null); then
    echo "using the shipped model $model"
else
    model="$here/model.pt"
    echo "no shipped model: exporting an untrained one to $model"
    "$bin/glassmd" export -o "$model" --outputs propensity_t10
fi

if [ "$NP" -gt 1 ]; then
    OMP_NUM_THREADS=1 "$bin/mpiexec" -n "$NP" "$bin/lmp" -in in.ka -var model "$model" -log ka.log
else
    OMP_NUM_THREADS=1 "$bin/lmp" -in in.ka -var model "$model" -log ka.log
fi
"$bin/python" render.py ka.dump -o propensity.png
echo "outputs in $here: ka.dump (f_prop per atom), ka.log, propensity.png"
