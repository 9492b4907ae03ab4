"""The model file the LAMMPS plugin and other tools load: one self-contained TorchScript file.

The file needs no glassmd classes, but a model exported with the default ``fused`` implementation calls the
operators ``glassmd::interaction_eval`` (evaluation) and ``glassmd::frame_conv_factored`` (older files:
``glassmd::frame_conv_eval`` and ``glassmd::frame_conv``, still registered): load them after ``import glassmd.model`` (or
``torch.ops.load_library(glassmd.model.fused_kernel.fused_kernel_path())``); a model switched to
``set_implementation("frame")`` before export loads with plain ``torch.jit.load`` anywhere. Its metadata (cutoff, particle type
names and order, outputs, label normalisation, model config, versions) is stored twice: as the extra file
``metadata.json`` and as the module's ``metadata()`` method, so a C++ or Python caller gets it either way.

All export logic lives here so that another artefact (torch.export / AOTInductor) can be added beside
TorchScript without touching the rest of glassmd.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Optional, Tuple

import torch
from torch import nn

from glassmd.atomic import atomic_path
import glassmd
from glassmd.errors import ModelFileError
from glassmd.model.config import ModelConfig
from glassmd.model.fused_kernel import fused_kernel_available
from glassmd.model.network import GlassGNN

__all__ = [
    "ExportedGlassGNN",
    "export_model",
    "load_model_file",
    "model_from_file",
    "model_metadata",
    "MODEL_FORMAT",
    "FORMAT_VERSION",
]

MODEL_FORMAT = "glassmd-model"
FORMAT_VERSION = 1
_METADATA_FILE = "metadata.json"


class ExportedGlassGNN(nn.Module):
    """Inference wrapper of :class:`GlassGNN` with the call signature other tools rely on.

    ``forward(pos, types, edge_index, edge_vec) -> [n, n_outputs]`` in label units. The same computation is
    available step by step, so that a caller (the MPI-parallel LAMMPS fix) can refresh the hidden features of
    ghost atoms between layers:

    >>> node_attr = m.node_attributes(types)            # doctest: +SKIP
    >>> edge_index, edge_feat = m.prepare_edges(edge_index, edge_vec)  # doctest: +SKIP
    >>> h = torch.zeros(n, 0)                           # doctest: +SKIP
    >>> for k in range(m.num_layers()):                 # doctest: +SKIP
    ...     h = m.layer(k, h, node_attr, edge_index, edge_feat)
    ...     # exchange h of ghost atoms here
    >>> y = m.readout(h)                                # doctest: +SKIP

    ``prepare_edges`` may reorder the edges (pairs i -> j, j -> i side by side for the fused kernel, see
    :meth:`GlassGNN.edge_inputs`) and then returns fewer rows of edge features than edges: pass both on
    unchanged. ``edge_features(edge_vec)`` gives the features of the edges in their own order.
    """

    def __init__(self, model: GlassGNN, metadata_json: str):
        super().__init__()
        self.model = model
        self._metadata_json = metadata_json
        self._n_types = model.n_types
        self._num_layers = len(model.layers)
        self._feature_dim = model.feature_dim
        self._sh_dim = model.edge_embedding.sh_dim
        # Edge features: [harmonics | radial basis] for the e3nn reference, [radial basis | Wigner matrices] for
        # the edge-frame kernels (glassmd.model.fast_conv), which need no harmonics; computed once and shared
        # by all layers.
        self._use_edge_frames = bool(model.use_edge_frames)
        self._radial_begin = 0 if self._use_edge_frames else self._sh_dim
        self._radial_end = self._radial_begin + model.edge_embedding.n_radial

    @torch.jit.export
    def metadata(self) -> str:
        return self._metadata_json

    @torch.jit.export
    def num_layers(self) -> int:
        return self._num_layers

    @torch.jit.export
    def feature_dim(self) -> int:
        return self._feature_dim

    @torch.jit.export
    def node_attributes(self, types: torch.Tensor) -> torch.Tensor:
        if types.numel() > 0:
            if int(types.min()) < 0 or int(types.max()) >= self._n_types:
                raise RuntimeError(
                    "particle type out of range: the model knows types 0.."
                    + str(self._n_types - 1)
                    + " but got "
                    + str(int(types.min()))
                    + ".."
                    + str(int(types.max()))
                )
        return self.model.node_attributes(types)

    @torch.jit.export
    def edge_features(self, edge_vec: torch.Tensor) -> torch.Tensor:
        edge_vec = self._checked_edge_vec(edge_vec)
        if self._use_edge_frames:
            return self.model.edge_frame_rows(edge_vec)
        sh, radial = self.model.edge_embedding(edge_vec)
        return torch.cat([sh, radial], dim=1)

    @torch.jit.export
    def prepare_edges(self, edge_index: torch.Tensor, edge_vec: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(edge_index, edge_feat)`` for :meth:`layer`: the edges possibly reordered into pairs, and their
        features (one row per pair and per unpaired edge when paired)."""
        edge_vec = self._checked_edge_vec(edge_vec)
        if self._use_edge_frames:
            return self.model.edge_frame_features(edge_index, edge_vec)
        return edge_index, self.edge_features(edge_vec)

    def _checked_edge_vec(self, edge_vec: torch.Tensor) -> torch.Tensor:
        # NaN and inf propagate into the sum: one reduction instead of four passes over the edges (edge vectors
        # shorter than the cutoff cannot overflow it)
        if not bool(torch.isfinite(edge_vec.sum())):
            raise RuntimeError("edge vectors contain NaN or inf: check the positions")
        return edge_vec.to(self.model.label_mean.dtype)

    def _split_edge_features(
        self, edge_feat: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """(harmonics, radial basis, frames) of :meth:`edge_features`; the unused ones empty or None."""
        edge_sh = edge_feat[:, : self._radial_begin]
        edge_radial = edge_feat[:, self._radial_begin : self._radial_end]
        if self._use_edge_frames:
            return edge_sh, edge_radial, edge_feat[:, self._radial_end :]
        return edge_sh, edge_radial, None

    @torch.jit.export
    def layer(
        self,
        k: int,
        h: torch.Tensor,
        node_attr: torch.Tensor,
        edge_index: torch.Tensor,
        edge_feat: torch.Tensor,
    ) -> torch.Tensor:
        edge_sh, edge_radial, edge_frame = self._split_edge_features(edge_feat)
        for i, layer in enumerate(self.model.layers):
            if i == k:
                return layer(h, node_attr, edge_index, edge_sh, edge_radial, edge_frame)
        raise RuntimeError("layer index " + str(k) + " out of range: the model has " + str(self._num_layers))

    @torch.jit.export
    def readout(self, h: torch.Tensor) -> torch.Tensor:
        return self.model.denormalize(self.model.readout(h))

    def forward(
        self,
        pos: torch.Tensor,
        types: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vec: torch.Tensor,
    ) -> torch.Tensor:
        if not bool(torch.isfinite(pos).all()):
            raise RuntimeError("positions contain NaN or inf")
        if types.shape[0] != pos.shape[0]:
            raise RuntimeError("types and pos disagree on the number of particles")
        node_attr = self.node_attributes(types)
        edge_index, edge_sh, edge_radial, edge_frame = self.model.edge_inputs(
            edge_index, self._checked_edge_vec(edge_vec)
        )
        h = node_attr.new_zeros((node_attr.shape[0], 0))
        for layer in self.model.layers:
            h = layer(h, node_attr, edge_index, edge_sh, edge_radial, edge_frame)
        return self.model.denormalize(self.model.readout(h))


def model_metadata(model: GlassGNN, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata stored in a model file."""
    config: ModelConfig = model.config
    meta = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "glassmd_version": glassmd.__version__,
        "torch_version": torch.__version__,
        "cutoff": config.cutoff,
        "type_names": list(config.type_names),
        "output_names": list(config.output_names),
        "output_times": list(config.output_times),
        "label_mean": model.label_mean.tolist(),
        "label_std": model.label_std.tolist(),
        "num_layers": config.layers,
        "feature_dim": model.feature_dim,
        "dtype": str(model.label_mean.dtype).replace("torch.", ""),
        "implementation": model.implementation,
        "config": config.to_dict(),
    }
    if extra:
        meta.update(extra)
    return meta


def export_model(model: GlassGNN, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (in eval mode) as a TorchScript file at ``path``, atomically.

    Parameters
    ----------
    model : GlassGNN
        Its dtype (float32 or float64) is the dtype of the file.
    path : path-like
    metadata : dict, optional
        Extra metadata entries (e.g. training run information).

    Returns
    -------
    Path of the written file.
    """
    import copy

    path = Path(path)
    model = copy.deepcopy(model).eval()
    meta_json = json.dumps(model_metadata(model, metadata), sort_keys=True)
    wrapper = ExportedGlassGNN(model, meta_json)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript deprecation notices: it is what the plugin loads today
        scripted = torch.jit.script(wrapper)
    with atomic_path(path) as tmp:
        torch.jit.save(scripted, str(tmp), _extra_files={_METADATA_FILE: meta_json})
    return path


def load_model_file(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Load an exported model file; returns ``(module, metadata)``.

    Raises
    ------
    ModelFileError
        If the file is missing, is not a TorchScript archive, carries no glassmd metadata, or was written
        by an incompatible glassmd.
    """
    from glassmd.model.file_errors import archive_kind, first_file_in, torch_error_line

    path = Path(path)
    if path.is_dir():
        inside = first_file_in(path, ("model.pt",))
        raise ModelFileError(
            f"model file {str(path)!r} is a directory, not a model file"
            + (f"; did you mean {str(inside)!r}?" if inside else "")
        )
    if not path.is_file():
        raise ModelFileError(f"model file {str(path)!r} does not exist")
    extra = {_METADATA_FILE: ""}
    fused_kernel_available()  # registers the glassmd:: operators that exported models call
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path), map_location=map_location, _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError/ValueError with long C++ traces for junk files
        kind = archive_kind(path)
        if kind in ("training checkpoint", "checkpoint"):
            # The commonest mix-up: a run's best.ckpt / last.ckpt given where its exported model.pt belongs.
            exported = first_file_in(path.parent, ("model.pt",)) if path.name != "model.pt" else None
            raise ModelFileError(
                f"model file {str(path)!r} is a glassmd {kind}, not an exported model; export it with "
                f"`glassmd export --checkpoint {path} -o model.pt`"
                + (f" (or use {str(exported)!r}, the model exported beside it)" if exported else "")
            ) from None
        if kind == "torch.save":
            raise ModelFileError(
                f"model file {str(path)!r} was written by torch.save, not exported as a TorchScript model; "
                "write one with `glassmd export`"
            ) from None
        raise ModelFileError(
            f"model file {str(path)!r} is not a readable TorchScript model (corrupt or not a model): "
            f"{torch_error_line(exc)}"
        ) from None
    if not extra[_METADATA_FILE]:
        raise ModelFileError(
            f"model file {str(path)!r} is a TorchScript file but not a glassmd model (no {_METADATA_FILE}); "
            "write one with `glassmd export`"
        )
    try:
        meta = json.loads(extra[_METADATA_FILE])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"model file {str(path)!r} has corrupt metadata: {exc}") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"model file {str(path)!r} is not a glassmd model (format {meta.get('format')!r})")
    if int(meta.get("format_version", -1)) > FORMAT_VERSION:
        raise ModelFileError(
            f"model file {str(path)!r} has format version {meta.get('format_version')}, newer than this glassmd "
            f"({glassmd.__version__}) reads ({FORMAT_VERSION}); upgrade glassmd"
        )
    return module, meta


def model_from_file(path: str | os.PathLike) -> tuple[GlassGNN, dict[str, Any]]:
    """The :class:`GlassGNN` (eval mode) of a model file and the file's own metadata entries (training run
    information and the like, not those :func:`model_metadata` recomputes).

    A model file carries the code of the glassmd that wrote it; ``export_model(*model_from_file(old), new)``
    writes the same weights with this glassmd's code (``glassmd export --model``).
    """
    module, meta = load_model_file(path)
    if "config" not in meta:
        raise ModelFileError(f"model file {str(path)!r} metadata has no 'config'; it cannot be exported again")
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(str(meta.get("dtype", "float32")))
    if dtype is None:
        raise ModelFileError(f"model file {str(path)!r} has an unknown dtype {meta.get('dtype')!r}")
    model = GlassGNN.create(ModelConfig.from_dict(meta["config"]), dtype)
    prefix = "model."
    # A TorchScript module's state_dict also holds the non-persistent buffers (constants rebuilt here).
    wanted = set(model.state_dict())
    state = {k[len(prefix) :]: v for k, v in module.state_dict().items() if k[len(prefix) :] in wanted}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"model file {str(path)!r} does not match its own config: {exc}") from None
    own = set(model_metadata(model))
    return model.eval(), {k: v for k, v in meta.items() if k not in own}
