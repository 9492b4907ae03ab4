"""The SE(3)-equivariant graph network of Pezzicoli, Charpiat and Landes, and its export for LAMMPS."""

from glassmd.model.checkpoint import checkpoint_payload, model_from_checkpoint
from glassmd.model.config import ModelConfig
from glassmd.model.export import ExportedGlassGNN, export_model, load_model_file, model_from_file, model_metadata
from glassmd.model.fused_kernel import fused_kernel_available
from glassmd.model.network import GlassGNN, count_parameters

# Exported model files call glassmd:: operators, and torch.jit.load resolves them all when it reads a file: the
# documented way to load one with plain torch is `import glassmd.model` first, so the import registers them.
fused_kernel_available()

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
