"""A killed run continued with --resume ends with exactly the weights of an uninterrupted run (CPU)."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import torch

from glassmd.train.trainer import resume


def _assert_same_state(a_dir, b_dir):
    a = torch.load(a_dir / "last.ckpt", weights_only=False)
    b = torch.load(b_dir / "last.ckpt", weights_only=False)
    assert a["epoch"] == b["epoch"]
    assert a["model_state"].keys() == b["model_state"].keys()
    for key in a["model_state"]:
        assert torch.equal(a["model_state"][key], b["model_state"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for key in sa:
            assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key])), key
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    best_a = torch.load(a_dir / "best.ckpt", weights_only=False)
    best_b = torch.load(b_dir / "best.ckpt", weights_only=False)
    assert best_a["epoch"] == best_b["epoch"]
    for key in best_a["model_state"]:
        assert torch.equal(best_a["model_state"][key], best_b["model_state"][key]), key


def test_stop_after_an_epoch_then_resume_is_bit_identical(
    tmp_path, train_command, child_env, reference_run, training_threads
):
    run_dir = tmp_path / "stopped"
    cmd = train_command(run_dir, "--max-epochs-this-run", "1")
    done = subprocess.run(cmd, env=child_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "continue with: glassmd train --resume" in done.stdout
    assert torch.load(run_dir / "last.ckpt", weights_only=False)["epoch"] == 1
    assert not (run_dir / "model.pt").exists()

    result = resume(run_dir, device="cpu", progress=False)
    assert result.finished
    _assert_same_state(reference_run, run_dir)
    assert (run_dir / "model.pt").is_file()


def test_sigkill_mid_run_then_resume_is_bit_identical(
    tmp_path, train_command, child_env, reference_run, training_threads
):
    run_dir = tmp_path / "killed"
    child = subprocess.Popen(train_command(run_dir), env=child_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    killed = False
    while time.monotonic() < deadline and child.poll() is None:
        metrics = run_dir / "metrics.csv"
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:  # header + 2 epochs
            child.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    child.wait(timeout=60)
    if not killed:
        pytest.fail(f"the run ended before it could be killed: {child.stderr.read().decode()[-2000:]}")
    child.stderr.close()
    epoch = torch.load(run_dir / "last.ckpt", weights_only=False)["epoch"]
    assert 2 <= epoch <= 4

    result = resume(run_dir, device="cpu", progress=False)
    assert result.finished
    _assert_same_state(reference_run, run_dir)
