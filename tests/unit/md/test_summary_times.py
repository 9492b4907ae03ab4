"""`glassmd propensity --summary DIR --json` prints the record times as they are named, not step * dt noise."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import glassmd
from glassmd.md import ka
from glassmd.md.propensity import PropensitySettings, record_steps

# 2.5 puts steps 140 and 164 on the record grid, whose products with dt = 0.005 are 0.7000000000000001 and
# 0.8200000000000001 in binary floating point.
TIMES = (2.5,)
# A float printed with a run of 0s or 9s before its last digit: binary rounding noise.
NOISE = re.compile(r"\d\.\d*(0{6,}|9{6,})\d")


def _glassmd(*args: str) -> str:
    env = dict(os.environ)
    root = str(Path(glassmd.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "glassmd.md.commands", *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _expected_times() -> list[float]:
    steps, _ = record_steps(PropensitySettings(temperature=0.6, times=TIMES, n_iso=1))
    return [float(f"{step * ka.TIMESTEP:g}") for step in steps]


def test_summary_json_times_are_clean_for_new_and_old_curve_files(tmp_path):
    noisy = [float(step * ka.TIMESTEP) for step in record_steps(PropensitySettings(temperature=0.6, times=TIMES,
                                                                                     n_iso=1))[0]]
    assert any(NOISE.search(repr(t)) for t in noisy)  # the grid does have times that print with noise
    _glassmd("simulate", "--n", "250", "--temperature", "0.6", "--equilibrate", "2", "--spacing", "1", "--count",
             "1", "--melt-time", "2", "--seed", "3", "--no-progress", "-o", str(tmp_path / "configs"))
    labels = tmp_path / "labels"
    _glassmd("propensity", str(tmp_path / "configs"), "-o", str(labels), "--temperature", "0.6", "--times",
             *map(str, TIMES), "--n-iso", "1", "--no-progress")
    (curve_file,) = labels.glob("*.fs.json")
    assert not any(NOISE.search(repr(t)) for t in json.loads(curve_file.read_text())["times"])  # clean at the source

    summary = json.loads(_glassmd("propensity", "--summary", str(labels), "--json"))
    assert not any(NOISE.search(repr(t)) for t in summary["times"]), summary["times"]
    assert summary["times"] == _expected_times() and 0.7 in summary["times"]

    # A curve file written before the times were cleaned (times = step * dt as computed) reads the same.
    curve = json.loads(curve_file.read_text())
    assert len(curve["times"]) == len(noisy)
    curve["times"] = noisy
    curve_file.write_text(json.dumps(curve))
    text = _glassmd("propensity", "--summary", str(labels), "--json")
    assert "0.7000000000000001" not in text
    assert json.loads(text)["times"] == _expected_times()
