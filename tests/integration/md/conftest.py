"""Small Kob-Andersen configurations made once per session by the real ``glassmd simulate``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
N_SMALL = 250
N_CONFIGS = 4


def glassmd_command(*args: str, full_cli: bool = False) -> list[str]:
    """``glassmd ARGS`` of this checkout, runnable whether or not the package is installed.

    By default only the md sub-commands are loaded (``glassmd.md.commands``): the full CLI imports
    torch for the other areas, which costs seconds per process on a busy machine.
    """
    return [sys.executable, "-m", "glassmd.cli" if full_cli else "glassmd.md.commands", *args]


def glassmd_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_glassmd(*args: str, check: bool = True, full_cli: bool = False, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(
        glassmd_command(*args, full_cli=full_cli), env=glassmd_env(), capture_output=True, text=True,
        timeout=300, **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"glassmd {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def small_configs(tmp_path_factory) -> Path:
    """Four N = 250 configurations at T = 0.6 (briefly equilibrated: enough for exercising the tools)."""
    out = tmp_path_factory.mktemp("ka") / "configs"
    run_glassmd(
        "simulate", "--n", str(N_SMALL), "--temperature", "0.6", "--equilibrate", "10", "--spacing", "2",
        "--count", str(N_CONFIGS), "--melt-time", "5", "--seed", "7", "--no-progress", "-o", str(out),
    )
    return out
