#!/usr/bin/env bash
# Stage 2 of the shipped model: continue the stage-1 model (bash data/ka-n1000-T0.6/train.sh, which
# writes runs/glassgnn-ka-T0.6) on both reference sets. Writes runs/glassgnn-ka-T0.6-both; resumable: run
# the same command again after an interruption. The exported model, config, split and report are then
# copied into glassmd/shipped/ (see ../../glassmd/shipped/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
here=data/ka-T0.6-both
run=runs/glassgnn-ka-T0.6-both
if [ -f "$run/last.ckpt" ]; then
    exec .venv/bin/python -m glassmd.train --resume "$run" "$@"
fi
.venv/bin/python "$here/make_split.py" "$here/split.json"
exec .venv/bin/python -m glassmd.train data/ka-n1000-T0.6/labelled data/ka-n1000-T0.6-s2/labelled \
    -c "$here/train.yaml" --split "$here/split.json" --init runs/glassgnn-ka-T0.6/model.pt -o "$run" "$@"
