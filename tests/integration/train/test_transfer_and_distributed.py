"""Transfer learning (frozen backbone) and torchrun data parallelism."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from glassmd.train.config import load_config
from glassmd.train.trainer import TrainOptions, train


def test_freeze_backbone_retrains_only_the_readout(tmp_path, labelled_dir, small_config_file, reference_run):
    config = load_config(small_config_file, {"training": {"epochs": 2}, "evaluation": {"baseline": False}})
    result = train(TrainOptions(inputs=[labelled_dir], run_dir=tmp_path / "transfer", config=config, times=[10.0],
                                init=reference_run / "model.pt", freeze_backbone=True, device="cpu", progress=False))
    assert result.finished
    before = torch.load(reference_run / "best.ckpt", weights_only=False)["model_state"]
    after = torch.load(tmp_path / "transfer" / "last.ckpt", weights_only=False)["model_state"]
    changed = {k for k in after if not k.startswith("label_") and after[k].shape == before[k].shape
               and not torch.equal(after[k], before[k])}
    # One output instead of two: the readout is new; everything else, running statistics included, is kept.
    assert after["readout.linear.weight"].shape[0] == 1
    assert changed <= {"readout.linear.weight", "readout.linear.bias"}
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("layers.0.conv.radial"))


@pytest.mark.skipif(shutil.which("torchrun") is None and not (
        __import__("pathlib").Path(sys.executable).with_name("torchrun").exists()), reason="torchrun not installed")
def test_torchrun_two_processes_match_one_process(tmp_path, labelled_dir, child_env):
    """batch_size 2, forward_size 1: two gloo ranks compute the gradient one process accumulates."""
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"l_max": 1, "layers": 2, "dropout": 0.1},
        "training": {"epochs": 1, "batch_size": 2, "forward_size": 1, "dtype": "float64", "seed": 3},
        "split": {"train": 0.5, "validation": 0.5, "test": 0.0},
        "evaluation": {"baseline": False},
    }))
    torchrun = shutil.which("torchrun") or str(__import__("pathlib").Path(sys.executable).with_name("torchrun"))
    common = [str(labelled_dir), "--times", "10", "-c", str(config), "--device", "cpu", "--no-progress"]
    single = subprocess.run([sys.executable, "-m", "glassmd.train", *common, "-o", str(tmp_path / "one")],
                            env=child_env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "glassmd.train", *common, "-o",
                             str(tmp_path / "two")], env=child_env, capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr[-3000:]
    assert "2 process(es)" in double.stdout

    a = torch.load(tmp_path / "one" / "last.ckpt", weights_only=False)
    b = torch.load(tmp_path / "two" / "last.ckpt", weights_only=False)
    assert [r["train_loss"] for r in a["history"]] == pytest.approx([r["train_loss"] for r in b["history"]], rel=1e-9)
    for key, value in a["model_state"].items():
        if "running_" in key or not value.is_floating_point():
            continue  # batch-norm running averages follow rank 0's chunks only (documented)
        torch.testing.assert_close(b["model_state"][key], value, rtol=1e-9, atol=1e-10, msg=key)


def test_config_yaml_of_an_init_run_describes_the_init_architecture(tmp_path, labelled_dir, small_config_file,
                                                                    reference_run):
    # The config asks for 3 layers and l_max 2; --init brings the reference run's 2 layers and l_max 1, which
    # are what is trained, so the run's config.yaml must say so.
    config = load_config(small_config_file, {"model": {"layers": 3, "l_max": 2}, "training": {"epochs": 1},
                                             "evaluation": {"baseline": False}})
    run_dir = tmp_path / "init"
    train(TrainOptions(inputs=[labelled_dir], run_dir=run_dir, config=config, times=[10.0],
                       init=reference_run / "model.pt", device="cpu", progress=False))
    written = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
    exported = json.loads(torch.jit.load(str(run_dir / "model.pt")).metadata())["config"]
    assert (written["layers"], written["l_max"]) == (exported["layers"], exported["l_max"]) == (2, 1)
