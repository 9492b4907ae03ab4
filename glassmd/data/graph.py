"""Periodic neighbour graphs: the edges the network convolves over.

Edges are directed, ``edge_index[0]`` the sender j and ``edge_index[1]`` the receiver i, for every pair
with ``|x_j - x_i| < cutoff`` under the minimum-image convention, and ``edge_vec = x_j - x_i`` with the
periodic image already resolved. Neighbour search is vesin's (cell lists, O(N)).
"""

from __future__ import annotations

import numpy as np
import torch

from glassmd.errors import InputError

__all__ = ["check_configuration", "periodic_graph"]


def check_configuration(positions: np.ndarray, box: np.ndarray, cutoff: float) -> None:
    """Raise :class:`InputError` for inputs the model cannot evaluate meaningfully.

    Parameters
    ----------
    positions : (n, 3) array
    box : (3,) array of orthogonal box edge lengths
    cutoff : float
        Graph cutoff; the box must be longer than twice it in every direction, since the minimum-image
        convention then gives each pair at most one edge.
    """
    positions = np.asarray(positions)
    box = np.asarray(box, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise InputError(f"positions must have shape (n, 3), got {positions.shape}")
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{int(bad.sum())} particle(s) have non-finite (NaN or inf) positions, the first at index {first}"
        )
    if box.shape != (3,) or not np.isfinite(box).all() or (box <= 0).any():
        raise InputError(f"box must be 3 positive edge lengths, got {box.tolist()}")
    if (box <= 2 * cutoff).any():
        raise InputError(
            f"box edges {box.tolist()} must all exceed twice the model cutoff ({2 * cutoff:g}); "
            "smaller periodic boxes are not supported"
        )


def periodic_graph(
    positions: np.ndarray | torch.Tensor,
    box: np.ndarray | torch.Tensor,
    cutoff: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed edges within ``cutoff`` in an orthogonal periodic box.

    Parameters
    ----------
    positions : (n, 3) array-like
        Cartesian positions; they need not be wrapped into the box.
    box : (3,) array-like
        Orthogonal box edge lengths.
    cutoff : float

    Returns
    -------
    edge_index : (2, E) int64 tensor
        Row 0 the sender j, row 1 the receiver i; sorted by receiver.
    edge_vec : (E, 3) tensor, dtype of ``positions`` (float64 for numpy input)
        ``x_j - x_i`` of the nearest periodic image.
    """
    from vesin import NeighborList

    dtype = positions.dtype if isinstance(positions, torch.Tensor) else torch.float64
    pos = positions.detach().cpu().numpy() if isinstance(positions, torch.Tensor) else np.asarray(positions)
    box_np = box.detach().cpu().numpy() if isinstance(box, torch.Tensor) else np.asarray(box)
    pos = pos.astype(np.float64)
    box_np = box_np.astype(np.float64).reshape(3)
    check_configuration(pos, box_np, cutoff)
    wrapped = pos - np.floor(pos / box_np) * box_np
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, d = nl.compute(points=wrapped, box=np.diag(box_np), periodic=True, quantities="ijD")
    # vesin's D is x_j - x_i + shift (the vector from i to the image of j); keep strictly inside cutoff.
    keep = np.einsum("ij,ij->i", d, d) < cutoff * cutoff
    i, j, d = i[keep], j[keep], d[keep]
    order = np.lexsort((j, i))
    i, j, d = i[order], j[order], d[order]
    # The image vector from wrapped positions equals the one from the given positions up to a lattice
    # vector; recompute it from the originals so rounding does not depend on wrapping.
    vec = pos[j] - pos[i]
    vec -= np.round((vec - d) / box_np) * box_np
    edge_index = torch.from_numpy(np.stack([j, i]).astype(np.int64))
    return edge_index, torch.from_numpy(vec).to(dtype)
