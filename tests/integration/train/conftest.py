"""Shared small data and one reference training run for the training tests.

Data: uniform random configurations at density 1.2 (120 particles, 80:20 types) whose synthetic propensity
depends on the number of neighbours within 1.2 (glassmd.train.dataset.synthetic_frames), written with
glassmd.data.dump.write_dump. Model: l_max 1, 2 layers, so that a run takes seconds on one core.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

import glassmd
from glassmd.data.dump import write_dump
from glassmd.train.dataset import synthetic_frames

TIMES = (10.0, 20.0)
# Torch threads of every training process in these tests (the reference run and the children alike).
TRAIN_THREADS = 1
N_PARTICLES = 120

SMALL_CONFIG = {
    "model": {"l_max": 1, "layers": 2, "channels": 4, "dropout": 0.1},
    "optimizer": {"lr": 1.0e-2},
    "scheduler": {"milestones": [3], "gamma": 0.5},
    "training": {"epochs": 4, "batch_size": 2, "seed": 5},
    "split": {"train": 0.5, "validation": 0.25, "test": 0.25, "seed": 1},
    "evaluation": {"bootstrap_samples": 200, "baseline": True},
}


def subprocess_env() -> dict:
    """Environment for `python -m glassmd...` children: this checkout importable (same threads as us)."""
    env = dict(os.environ)
    # Bit-identical comparisons need the same torch thread count in every process (float sums are
    # split differently across threads); earlier tests in this process may have changed ours.
    env["OMP_NUM_THREADS"] = str(TRAIN_THREADS)
    root = str(Path(glassmd.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def labelled_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("labelled")
    frames = synthetic_frames(8, N_PARTICLES, times=TIMES, seed=11)
    write_dump(folder / "part1.dump", frames[:5])
    write_dump(folder / "part2.dump.gz", frames[5:])
    return folder


@pytest.fixture(scope="session")
def small_config_file(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("config") / "small.yaml", SMALL_CONFIG)


@pytest.fixture
def training_threads():
    """In-process training in this test uses the thread count of the child processes (bit-identical
    sums); what earlier tests left in this process does not matter."""
    before = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory, labelled_dir, small_config_file) -> Path:
    """A complete, uninterrupted run (all artefacts), trained in a child process exactly like the
    interrupted runs it is compared with (same environment and thread count): float results of the fast
    kernels may depend on the process's memory layout, not only on the inputs."""
    import subprocess

    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    command = [sys.executable, "-m", "glassmd.train", str(labelled_dir), "--times", *map(str, TIMES), "-c",
               str(small_config_file), "-o", str(run_dir), "--device", "cpu", "--no-progress"]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (run_dir / "model.pt").is_file()
    return run_dir


@pytest.fixture(scope="session")
def train_command(labelled_dir, small_config_file):
    """``python -m glassmd.train`` on the shared data and config, into ``run_dir``, plus extra arguments."""

    def command(run_dir: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "glassmd.train", str(labelled_dir), "--times", *map(str, TIMES), "-c",
                str(small_config_file), "-o", str(run_dir), "--device", "cpu", "--no-progress", *extra]

    return command


@pytest.fixture(scope="session")
def child_env() -> dict:
    return subprocess_env()
