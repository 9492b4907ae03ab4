"""Peers for the benchmarks: the paper network with the same parameters and outputs, run by other engines.

cuEquivariance (NVIDIA; ``pip install "glassmd[peers]"``): each layer's Clebsch-Gordan products are its channel-wise
tensor product, ``cuequivariance_torch.ChannelWiseTensorProduct``, with the gather of the senders and the sum over
the receivers fused into the call (``indices_1``, ``indices_out``). It runs CUDA kernels where the
``cuequivariance-ops-torch`` package is installed and its torch fallback elsewhere (the CPU). Its SO(3)
Clebsch-Gordan coefficients and path normalization are e3nn's; it lists the paths by l_out (stable in e3nn's
order), so the radial filters' last layer is permuted once to that order and the outputs are gathered back to
e3nn's before the channel mixing. Everything else (radial MLPs, mixing, batch norms, readout) is a copy of
the e3nn reference's own modules, so the peer computes the reference's function: the benchmarks print the difference.

OpenEquivariance is not on the package registries this project installs from, so it has no peer here.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

__all__ = ["cuequivariance_network", "cuequivariance_missing", "cuequivariance_engine"]


def cuequivariance_missing() -> Optional[str]:
    """Why the cuEquivariance peer cannot run here, or None."""
    try:
        import cuequivariance  # noqa: F401
        import cuequivariance_torch  # noqa: F401
    except ImportError as exc:
        return f"cuequivariance-torch is not installed ({exc}); pip install \"glassmd[peers]\""
    return None


def cuequivariance_engine(device: torch.device) -> str:
    """Which of cuEquivariance's engines runs the products on ``device``."""
    try:
        import cuequivariance_ops_torch  # noqa: F401
    except ImportError:
        return "its torch fallback (cuequivariance-ops-torch not installed)"
    return "its CUDA kernels" if device.type == "cuda" else "its torch fallback (CPU)"


class CuequivarianceConv(nn.Module):
    """:class:`glassmd.model.conv.EquivariantConv` (e3nn reference path) with its tensor product, gather and
    scatter done by ``cuequivariance_torch.ChannelWiseTensorProduct`` calls. It takes over ``conv``'s radial MLP
    (whose last rows it permutes) and mixing.

    cuEquivariance's fast kernels need one multiplicity for all inputs of a product, and a layer's input has 6
    channels of l = 0 (4 hidden, 2 types) and 4 of l > 0. So the input blocks are cut into pieces of ``channels``
    and the rest (6x0 -> 4x0 + 2x0), one product per multiplicity: 4x0+4x1+4x2+4x3 and 2x0 (the first layer: 2x0).
    Each (path, channel) of e3nn maps to one of a product's, which fixes a permutation of the radial filters'
    weights (applied once to their last layer's rows) and of the outputs (a gather before the mixing)."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        import cuequivariance as cue
        import cuequivariance_torch as cuet

        e3nn_tp = conv.tp
        device, dtype = conv.mix.weight.device, conv.mix.weight.dtype
        sh_ls = [ir.l for _, ir in e3nn_tp.irreps_in2]
        l_max = max(ir.l for _, ir in e3nn_tp.irreps_out)
        channels = max(mul for mul, _ in e3nn_tp.irreps_in1)
        # Input pieces (block, first channel, mul, l), grouped by mul.
        pieces: dict = {}
        for block, (mul, ir) in enumerate(e3nn_tp.irreps_in1):
            for first in range(0, mul, channels):
                size = min(channels, mul - first)
                pieces.setdefault(size, []).append((block, first, size, ir.l))
        in_off = [0]
        for mul, ir in e3nn_tp.irreps_in1:
            in_off.append(in_off[-1] + mul * ir.dim)
        # e3nn's weight offset of each path.
        w_off = [0]
        for ins in e3nn_tp.instructions:
            w_off.append(w_off[-1] + ins.path_shape[0])
        path_of = {(ins.i_in1, ins.i_in2, e3nn_tp.irreps_out[p][1].l): p for p, ins in enumerate(e3nn_tp.instructions)}

        self.products = nn.ModuleList()
        input_columns, weight_order, output_place = [], [], {}
        peer_o = 0
        for mul, group in sorted(pieces.items(), reverse=True):
            tp = cuet.ChannelWiseTensorProduct(
                cue.Irreps("SO3", "+".join(f"{size}x{l}" for _, _, size, l in group)),
                cue.Irreps("SO3", "+".join(str(l) for l in sh_ls)),
                filter_irreps_out=[cue.SO3(l) for l in range(l_max + 1)],
                layout=cue.mul_ir,
                shared_weights=False,
                internal_weights=False,
                dtype=dtype,
                math_dtype=dtype,
                device=device,
            )
            columns = []
            for block, first, size, l in group:
                start = in_off[block] + first * (2 * l + 1)
                columns.extend(range(start, start + size * (2 * l + 1)))
            input_columns.append(torch.tensor(columns, device=device))
            # The product's paths: e3nn's enumeration (piece, harmonic, l_out), then stable by l_out.
            paths = [
                (piece, i_sh, lo)
                for piece in range(len(group))
                for i_sh, lf in enumerate(sh_ls)
                for lo in range(abs(group[piece][3] - lf), min(group[piece][3] + lf, l_max) + 1)
            ]
            paths.sort(key=lambda path: path[2])
            found = [(m.mul, m.ir.l) for m in tp.irreps_out]
            if found != [(mul, lo) for _, _, lo in paths] or tp.weight_numel != mul * len(paths):
                raise RuntimeError(
                    f"cuEquivariance's channel-wise paths {found} are not e3nn's ordered by l_out: this version "
                    "orders them otherwise"
                )
            for piece, i_sh, lo in paths:
                block, first, size, _ = group[piece]
                p = path_of[(block, i_sh, lo)]
                d = 2 * lo + 1
                for u in range(size):
                    weight_order.append(w_off[p] + first + u)
                    output_place[(p, first + u)] = range(peer_o + u * d, peer_o + (u + 1) * d)
                peer_o += size * d
            self.products.append(tp)
        self.weight_split = [tp.weight_numel for tp in self.products]
        for k, columns in enumerate(input_columns):
            self.register_buffer(f"input_columns_{k}", columns)
        order = []
        for p in range(len(e3nn_tp.instructions)):
            mul, _ = e3nn_tp.irreps_out[p]
            for u in range(mul):
                order.extend(output_place[(p, u)])
        self.register_buffer("output_order", torch.tensor(order, device=device))
        # The radial filters' last layer, its rows put in the products' weight order (an output ReLU commutes).
        self.radial = conv.radial
        last = self.radial.net[4]
        rows = torch.tensor(weight_order, device=device)
        with torch.no_grad():
            last.weight.copy_(last.weight[rows])
            last.bias.copy_(last.bias[rows])
        self.mix = conv.mix

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_sh: torch.Tensor,
        edge_radial: torch.Tensor,
        edge_frame: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The call of :class:`EquivariantConv` on the e3nn path (``edge_frame`` None)."""
        weights = self.radial(edge_radial).split(self.weight_split, dim=1)
        summed = [
            tp(
                x.index_select(1, getattr(self, f"input_columns_{k}")),
                edge_sh,
                w.contiguous(),
                indices_1=edge_index[0],
                indices_out=edge_index[1],
                size_out=x.shape[0],
            )
            for k, (tp, w) in enumerate(zip(self.products, weights))
        ]
        return self.mix(torch.cat(summed, dim=1).index_select(1, self.output_order))


def cuequivariance_network(model: nn.Module) -> nn.Module:
    """The cuEquivariance peer of ``model`` (a GlassGNN): a copy on the e3nn reference path whose convolutions are
    :class:`CuequivarianceConv`; the layers, embedding and readout run as in the reference."""
    reason = cuequivariance_missing()
    if reason:
        raise RuntimeError(reason)
    import warnings

    # It warns on every call that it falls back to torch where its CUDA kernels are missing: cuequivariance_engine
    # says so once.
    warnings.filterwarnings("ignore", message=".*cuequivariance_ops_torch is not available.*")
    peer = copy.deepcopy(model).set_implementation("e3nn")
    for layer in peer.layers:
        layer.conv = CuequivarianceConv(layer.conv)
    return peer
