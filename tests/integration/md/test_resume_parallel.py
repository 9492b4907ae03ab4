"""Interrupted, resumed and parallel labelling give the same files as one uninterrupted serial run."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import N_CONFIGS, glassmd_command, glassmd_env, run_glassmd

# Long enough per configuration (about a second) that a kill after the first output finds work left.
LABEL_ARGS = ["--temperature", "0.6", "--times", "2.5", "5", "--n-iso", "4", "--seed", "5", "--no-progress"]


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _curves_without_timing(outputs: dict[str, bytes]) -> dict:
    curves = {}
    for name, content in outputs.items():
        if name.endswith(".fs.json"):
            curve = json.loads(content)
            curve.pop("wall_seconds")
            curves[name] = curve
    return curves


def _assert_same_labels(folder: Path, reference: dict[str, bytes]) -> None:
    outputs = _outputs(folder)
    # Nothing but complete outputs: no staging folder, lock or temporary file is left behind.
    assert sorted(outputs) == sorted(reference)
    for name, content in reference.items():
        if name.endswith(".dump.gz"):
            assert outputs[name] == content, f"{name} differs from the uninterrupted run"
    assert _curves_without_timing(outputs) == _curves_without_timing(reference)


@pytest.fixture(scope="module")
def inputs(small_configs, tmp_path_factory) -> Path:
    # A private copy: the source paths recorded in the outputs are then identical for every run here.
    folder = tmp_path_factory.mktemp("inputs") / "configs"
    folder.mkdir()
    for path in sorted(small_configs.glob("config_*.dump.gz")):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference")
    run_glassmd("propensity", str(inputs), "-o", str(out), *LABEL_ARGS)
    outputs = _outputs(out)
    assert len([n for n in outputs if n.endswith(".dump.gz")]) == N_CONFIGS
    return outputs


def test_killed_run_resumes_without_redoing_work(inputs, reference, tmp_path):
    out = tmp_path / "labels"
    process = subprocess.Popen(
        glassmd_command("propensity", str(inputs), "-o", str(out), *LABEL_ARGS),
        env=glassmd_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*.dump.gz")) and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.dump.gz")}
    assert 1 <= len(finished) < N_CONFIGS, "the kill should come while work is left"

    result = run_glassmd("propensity", str(inputs), "-o", str(out), *LABEL_ARGS)
    assert f"{N_CONFIGS - len(finished)} configurations labelled, {len(finished)} already done" in result.stdout
    # Configurations finished before the kill were not computed again.
    assert {n: (out / n).stat().st_mtime_ns for n in finished} == finished
    _assert_same_labels(out, reference)

    again = run_glassmd("propensity", str(inputs), "-o", str(out), *LABEL_ARGS)
    assert f"0 configurations labelled, {N_CONFIGS} already done" in again.stdout


def test_worker_processes_give_the_same_labels(inputs, reference, tmp_path):
    out = tmp_path / "labels"
    run_glassmd("propensity", str(inputs), "-o", str(out), "--jobs", "2", *LABEL_ARGS)
    _assert_same_labels(out, reference)


@pytest.mark.mpi
def test_mpi_ranks_give_the_same_labels(inputs, reference, tmp_path):
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        pytest.skip(f"no mpiexec beside {sys.executable}")
    out = tmp_path / "labels"
    result = subprocess.run(
        [str(mpiexec), "-n", "2", *glassmd_command("propensity", str(inputs), "-o", str(out), *LABEL_ARGS)],
        env=glassmd_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("configurations labelled") == 1  # rank 0 reports
    _assert_same_labels(out, reference)


def _children(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_the_worker_processes(inputs, tmp_path):
    # A scheduler's time limit sends SIGTERM: workers left running would finish their configurations and write
    # them into a folder whose lock died with the parent.
    out = tmp_path / "labels"
    process = subprocess.Popen(
        glassmd_command("propensity", str(inputs), "-o", str(out), "--jobs", "2", *LABEL_ARGS),
        env=glassmd_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and process.poll() is None:
            workers = [p for p in _children(process.pid) if _alive(p)]
            if len(workers) >= 2 and list(out.glob("*.dump.gz")):
                break  # the workers are busy with the next configurations
            time.sleep(0.01)
        assert process.poll() is None and list(out.glob("*.dump.gz")), "the parent should be running"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    written = sorted(p.name for p in out.glob("*.dump.gz"))
    assert len(written) < N_CONFIGS, "the signal should come while work is left"
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), "worker processes outlived the terminated parent"
    assert sorted(p.name for p in out.glob("*.dump.gz")) == written, "outputs written after the parent ended"
