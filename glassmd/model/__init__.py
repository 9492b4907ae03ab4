"""The SE(3)-equivariant graph network of Pezzicoli, Charpiat and Landes, and its export for LAMMPS."""

from glassmd.model.checkpoint import checkpoint_payload, model_from_checkpoint
from glassmd.model.config import ModelConfig
from glassmd.model.export import ExportedGlassGNN, export_model, load_model_file, model_from_file, model_metadata
from glassmd.model.network import GlassGNN, count_parameters

__all__ = [
    "ModelConfig",
    "GlassGNN",
    "count_parameters",
    "ExportedGlassGNN",
    "export_model",
    "load_model_file",
    "model_from_file",
    "model_metadata",
    "checkpoint_payload",
    "model_from_checkpoint",
]
