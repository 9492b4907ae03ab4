"""What ``fix glassgnn`` calls: an exported model evaluated layer by layer on a rank's share of atoms.

The LAMMPS plugin (``plugin/fix_glassgnn.cpp``) builds, on every rank, a graph whose nodes are that rank's
local atoms followed by the ghost atoms within the model cutoff of them, and whose edges ``j -> i`` run to
local atoms only. It then calls, through the Cython bridge (``plugin/bridge.pyx``):

1. :meth:`LayerwiseEvaluator.begin` with the node types and edges,
2. :meth:`LayerwiseEvaluator.layer` once per layer, refreshing the ghost rows of the features from their
   owners (LAMMPS forward communication) between calls,
3. :meth:`LayerwiseEvaluator.readout` for the local atoms.

When no rank has ghost nodes that need refreshing (one rank: every ghost is a periodic image of a local
atom, and is that atom's node), steps 2 and 3 are one call, :meth:`LayerwiseEvaluator.predict`.

Local features depend only on edges to local receivers, so the result equals the model's ``forward`` on
the whole periodic system, whatever the number of ranks. Arrays come in as numpy views of LAMMPS memory
(float64); the model runs in its own dtype (float32 for exported models) on its device.

Examples
--------
The same calls the plugin makes, on a whole periodic configuration held by one process (no ghosts):

>>> ev = LayerwiseEvaluator("model.pt")                                  # doctest: +SKIP
>>> edge_index, edge_vec = periodic_graph(positions, box, ev.cutoff)     # doctest: +SKIP
>>> values = ev.evaluate(types, edge_index.numpy(), edge_vec.numpy())    # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from glassmd.errors import GlassmdError, ModelFileError

__all__ = ["LayerwiseEvaluator", "select_device", "describe_exception", "THREADS_ENV", "JIT_OPTIMIZE_ENV"]

# Torch threads per process (per MPI rank) when the fix does not say otherwise; 1 keeps ranks from
# oversubscribing the cores they share.
THREADS_ENV = "GLASSMD_TORCH_THREADS"
# TorchScript's profiling executor spends its first calls profiling and fusing; for these small
# per-step graphs that costs several evaluations' worth of time and gains nothing measurable, so the
# plugin runs the scripted code unoptimised unless this is set to 1.
JIT_OPTIMIZE_ENV = "GLASSMD_JIT_OPTIMIZE"

_REQUIRED_METHODS = ("num_layers", "feature_dim", "node_attributes", "edge_features", "layer", "readout")


def describe_exception(exc: BaseException) -> str:
    """One readable message for an exception raised while the plugin called Python.

    glassmd's own errors already say what to do; anything else (a torch error inside the model, a
    missing module) is shown with its type so the user can tell where it came from.
    """
    if isinstance(exc, GlassmdError):
        return str(exc)
    text = str(exc).strip()
    if isinstance(exc, ModuleNotFoundError):
        import sys

        return (
            f"{type(exc).__name__}: {text} (Python {sys.executable}; install glassmd in that environment, "
            "or set GLASSMD_PYTHON to the python of an environment that has it)"
        )
    if "TorchScript interpreter" in text:
        # TorchScript wraps the model's own exception in a listing of the scripted code: keep its last
        # line, which names the original exception and message.
        text = [line for line in text.splitlines() if line.strip()][-1].strip()
        return f"exception inside the model: {text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def select_device(device: str = "auto", local_rank: int = 0):
    """The torch device for a rank.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``auto`` takes a GPU when torch sees one. ``cuda`` without a GPU is an error rather than a
        silent fall-back, since the user asked for it. ``cuda:K`` pins a device.
    local_rank : int
        Rank of this process among those on the same node; ranks are spread over the node's GPUs.
    """
    import torch

    name = device.lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise GlassmdError(
                f"device {device} requested but torch {torch.__version__} sees no GPU "
                "(CPU-only build or no visible device); use device cpu or auto"
            )
        if ":" in name:
            return torch.device(name)
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    raise GlassmdError(f"unknown device {device!r}: expected cpu, cuda or auto")


def _default_threads() -> int:
    value = os.environ.get(THREADS_ENV, "1")
    try:
        threads = int(value)
    except ValueError:
        raise GlassmdError(f"{THREADS_ENV}={value!r} is not an integer number of threads") from None
    if threads < 1:
        raise GlassmdError(f"{THREADS_ENV}={value!r} must be at least 1")
    return threads


class LayerwiseEvaluator:
    """An exported glassmd model, evaluated one message-passing layer at a time.

    Parameters
    ----------
    path : str or Path
        Model file written by ``glassmd export``.
    device : str
        ``auto`` (default), ``cpu`` or ``cuda``; see :func:`select_device`.
    threads : int, optional
        Torch intra-op threads for this process; 0 or None reads ``GLASSMD_TORCH_THREADS`` (default 1).
    local_rank : int
        Node-local MPI rank, to pick a GPU.

    Attributes
    ----------
    cutoff : float
    num_layers, feature_dim : int
    type_names, output_names : tuple of str
    output_times : tuple of float or None
    device : torch.device
    dtype : torch.dtype
    """

    def __init__(self, path, device: str = "auto", threads: int | None = None, local_rank: int = 0):
        import torch

        from glassmd.model import load_model_file

        self.path = Path(path)
        self.device = select_device(device, local_rank)
        torch.set_num_threads(threads if threads and threads > 0 else _default_threads())
        module, meta = load_model_file(self.path, map_location=self.device)
        missing = [name for name in _REQUIRED_METHODS if not hasattr(module, name)]
        if missing:
            raise ModelFileError(
                f"model file {str(self.path)!r} lacks the layer-by-layer methods {', '.join(missing)} that "
                "fix glassgnn needs; export it again with this glassmd (`glassmd export`)"
            )
        for key in ("cutoff", "type_names", "output_names"):
            if key not in meta:
                raise ModelFileError(
                    f"model file {str(self.path)!r} metadata has no {key!r}; export it again with `glassmd export`"
                )
        self.module = module.eval()
        self._prepares_edges = hasattr(module, "prepare_edges")
        self.metadata = meta
        self.cutoff = float(meta["cutoff"])
        self.type_names = tuple(str(t) for t in meta["type_names"])
        self.output_names = tuple(str(t) for t in meta["output_names"])
        self.output_times = tuple(meta.get("output_times") or [None] * len(self.output_names))
        self.num_layers = int(module.num_layers())
        self.feature_dim = int(module.feature_dim())
        self.dtype = getattr(torch, str(meta.get("dtype", "float32")))
        self._graph = None
        self._jit_optimize = os.environ.get(JIT_OPTIMIZE_ENV, "0") == "1"

    def _context(self):
        import contextlib

        import torch

        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(torch.jit.optimized_execution(self._jit_optimize))
        return stack

    def describe(self) -> str:
        """One line for the LAMMPS log: file, cutoff, types, outputs, size, device."""
        return (
            f"{self.path} (cutoff {self.cutoff:g}, types {' '.join(self.type_names)}, "
            f"outputs {' '.join(self.output_names)}, {self.num_layers} layers x {self.feature_dim} features, "
            f"{self.dtype} on {self.device})"
        )

    def begin(self, types: np.ndarray, senders: np.ndarray, receivers: np.ndarray, edge_vec: np.ndarray) -> None:
        """Set the graph of the coming layer calls.

        Parameters
        ----------
        types : (n,) int array
            0-based model types of all nodes (local atoms first).
        senders, receivers : (E,) int arrays
            Edge ``senders[e] -> receivers[e]`` (node indices).
        edge_vec : (E, 3) float array
            ``x_sender - x_receiver``.
        """
        import torch

        # The previous graph's arrays (30 MB of edge features at N = 4096) go first, so that the allocator hands
        # their memory to the new ones: two alive at once made it map fresh pages every few evaluations, and
        # faulting them in cost 20 ms.
        self._graph = None
        with self._context():
            # torch.tensor copies: the inputs are read-only views of LAMMPS memory.
            types_t = torch.tensor(np.asarray(types), dtype=torch.int64, device=self.device)
            edge_index = torch.tensor(
                np.stack([np.asarray(senders), np.asarray(receivers)]), dtype=torch.int64, device=self.device
            ).reshape(2, -1)
            vec = torch.tensor(np.asarray(edge_vec), dtype=self.dtype, device=self.device).reshape(-1, 3)
            if self._prepares_edges:
                edge_index, edge_feat = self.module.prepare_edges(edge_index, vec)
            else:  # model files exported before prepare_edges
                edge_feat = self.module.edge_features(vec)
            self._graph = (types_t.shape[0], self.module.node_attributes(types_t), edge_index, edge_feat)

    def layer(self, k: int, features_in: np.ndarray | None, features_out: np.ndarray) -> None:
        """Run layer ``k`` and write the first ``len(features_out)`` nodes' features into ``features_out``.

        ``features_in`` holds the previous layer's features of all nodes (ignored for ``k = 0``).
        """
        import torch

        if self._graph is None:
            raise RuntimeError("layer() called before begin()")
        n, node_attr, edge_index, edge_feat = self._graph
        with self._context():
            if k == 0 or features_in is None:
                h = torch.zeros((n, 0), dtype=self.dtype, device=self.device)
            else:
                h = torch.tensor(np.asarray(features_in), dtype=self.dtype, device=self.device)
            out = self.module.layer(int(k), h, node_attr, edge_index, edge_feat)
            if out.shape != (n, self.feature_dim):
                raise RuntimeError(
                    f"layer {k} returned features of shape {tuple(out.shape)}, expected ({n}, {self.feature_dim})"
                )
            np.copyto(features_out, out[: features_out.shape[0]].detach().cpu().numpy())

    def predict(self, values_out: np.ndarray) -> None:
        """All layers and the readout on the graph of :meth:`begin`, for the first ``len(values_out)`` nodes.

        For a process whose ghost nodes need no refresh between layers (one rank, where every ghost is an
        image of a local atom): the features stay in the model's dtype and on its device throughout,
        instead of a float64 round trip through LAMMPS memory per layer.
        """
        import torch

        if self._graph is None:
            raise RuntimeError("predict() called before begin()")
        n, node_attr, edge_index, edge_feat = self._graph
        with self._context():
            h = torch.zeros((n, 0), dtype=self.dtype, device=self.device)
            for k in range(self.num_layers):
                h = self.module.layer(k, h, node_attr, edge_index, edge_feat)
            y = self.module.readout(h[: values_out.shape[0]])
            np.copyto(values_out, y.detach().cpu().numpy().reshape(values_out.shape))

    def readout(self, features: np.ndarray, values_out: np.ndarray) -> None:
        """Predictions (label units) of the nodes whose last-layer features are given."""
        import torch

        with self._context():
            h = torch.tensor(np.asarray(features), dtype=self.dtype, device=self.device)
            y = self.module.readout(h)
            np.copyto(values_out, y.detach().cpu().numpy().reshape(values_out.shape))

    def evaluate(self, types: np.ndarray, edge_index: np.ndarray, edge_vec: np.ndarray) -> np.ndarray:
        """All layers on a graph held whole by this process (no ghosts): ``[n, n_outputs]`` float64."""
        edge_index = np.asarray(edge_index)
        self.begin(types, edge_index[0], edge_index[1], edge_vec)
        values = np.empty((len(types), len(self.output_names)))
        self.predict(values)
        return values
