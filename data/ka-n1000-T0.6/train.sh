#!/usr/bin/env bash
# Stage 1 of the shipped model (stage 2: data/ka-T0.6-both/train.sh), from this data set: runs/glassgnn-ka-T0.6 (resumable: run the same command again
# after an interruption). The exported model, its config, split and report are then copied into
# glassmd/shipped/ by hand (see glassmd/shipped/README.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
run=runs/glassgnn-ka-T0.6
if [ -f "$run/last.ckpt" ]; then
    exec .venv/bin/python -m glassmd.train --resume "$run" "$@"
fi
exec .venv/bin/python -m glassmd.train data/ka-n1000-T0.6/labelled -c data/ka-n1000-T0.6/train.yaml -o "$run" "$@"
