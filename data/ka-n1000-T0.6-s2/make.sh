#!/usr/bin/env bash
# A second, independent Kob-Andersen N = 1000, T = 0.6 set (its own melt, seed 2), made with the protocol of
# ../ka-n1000-T0.6 except that labels stop at t = 40: the models we train use t <= 40, and t = 80 would
# double the cost. Resumable: the simulation runs again only if it never finished (no configs/simulate.json),
# the labelling skips finished configurations. To run it detached, from the repository root:
#   setsid nohup bash data/ka-n1000-T0.6-s2/make.sh >> data/ka-n1000-T0.6-s2/make.log 2>&1 < /dev/null &
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
here=data/ka-n1000-T0.6-s2
if [ ! -f "$here/configs/simulate.json" ]; then
    rm -rf "$here/configs"
    .venv/bin/python -m glassmd.md.commands simulate --n 1000 --temperature 0.6 --density 1.2 \
        --equilibrate 1500 --spacing 45 --count 200 --seed 2 -o "$here/configs" --no-progress
fi
exec .venv/bin/python -m glassmd.md.commands propensity "$here/configs" -o "$here/labelled" \
    --temperature 0.6 --times 1 2.5 5 10 20 40 --n-iso 12 --seed 2 --q 7.25 "$@"
