#!/usr/bin/env bash
# Label, or continue labelling, the configurations of this data set (resumable: finished configurations are
# skipped, half-written files of a killed run discarded). To run it detached, from the repository root:
#   setsid nohup bash data/ka-n1000-T0.6/label.sh >> data/ka-n1000-T0.6/propensity.log 2>&1 &
# Equivalent to `glassmd propensity ...` with the same arguments; glassmd.md.commands loads only the md
# sub-commands, so a long batch job does not depend on the rest of the package importing cleanly.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
exec .venv/bin/python -m glassmd.md.commands propensity data/ka-n1000-T0.6/configs \
    -o data/ka-n1000-T0.6/labelled \
    --temperature 0.6 --times 1 2.5 5 10 20 40 80 --n-iso 12 --seed 1 --q 7.25 "$@"
