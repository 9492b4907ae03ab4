"""Rebuilding a model from a training checkpoint.

A checkpoint is a ``torch.save`` dict holding at least ``"model_config"`` (``ModelConfig.to_dict()``) and
``"model_state"`` (the ``GlassGNN`` state dict, label normalisation included); trainers may add more keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from glassmd.errors import ModelFileError
from glassmd.model.config import ModelConfig
from glassmd.model.network import GlassGNN

__all__ = ["model_from_checkpoint", "checkpoint_payload", "TRAINING_CHECKPOINT_FORMAT"]

# The "format" entry of glassmd train's checkpoints (last.ckpt, best.ckpt), by which a file is recognised.
TRAINING_CHECKPOINT_FORMAT = "glassmd-train-checkpoint"


def checkpoint_payload(model: GlassGNN) -> dict:
    """The model part of a checkpoint (the keys :func:`model_from_checkpoint` reads)."""
    return {"model_config": model.config.to_dict(), "model_state": model.state_dict()}


def model_from_checkpoint(path: str | os.PathLike) -> GlassGNN:
    from glassmd.model.file_errors import archive_kind, first_file_in, torch_error_line

    path = Path(path)
    if path.is_dir():
        inside = first_file_in(path, ("best.ckpt", "last.ckpt"))
        raise ModelFileError(
            f"checkpoint {str(path)!r} is a directory, not a checkpoint"
            + (f"; did you mean {str(inside)!r}?" if inside else "")
        )
    if not path.is_file():
        raise ModelFileError(f"checkpoint {str(path)!r} does not exist")
    if archive_kind(path) == "torchscript":
        # torch.load would hand it to torch.jit.load and return a module, not a checkpoint dict.
        raise ModelFileError(
            f"checkpoint {str(path)!r} is an exported (TorchScript) model, not a training checkpoint; "
            "`glassmd export --model` writes a model file again"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelFileError(
            f"checkpoint {str(path)!r} is not a readable checkpoint (corrupt or not a checkpoint): "
            f"{torch_error_line(exc)}"
        ) from None
    if not isinstance(payload, dict) or "model_config" not in payload or "model_state" not in payload:
        raise ModelFileError(f"checkpoint {str(path)!r} has no 'model_config'/'model_state': not a glassmd checkpoint")
    dtype = next(v for v in payload["model_state"].values() if v.is_floating_point()).dtype
    model = GlassGNN.create(ModelConfig.from_dict(payload["model_config"]), dtype)
    model.load_state_dict(payload["model_state"])
    return model
