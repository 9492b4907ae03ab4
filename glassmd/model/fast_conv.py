"""Fast exact kernel of :class:`glassmd.model.conv.EquivariantConv`: the convolution in edge-aligned frames.

The reference computes, per edge and channel, every Clebsch-Gordan product of the sender's features with the
edge harmonics ``Y(n)``, sums over senders, then mixes channels. Here the same numbers are computed as

1. rotate the sender's features into the frame of the edge, where ``n`` is the polar (y) axis:
   ``x' = D(R)^T x`` with ``R y = n`` (``Y(n) = D(R) Y(y)``);
2. there ``Y(y)`` has a single non-zero component per l, so every (l_in, l_filter, l_out) product maps each
   output component m to exactly one input component (m or -m) times a constant: a gather, not a contraction
   (Passaro and Zitnick 2023, "Reducing SO(3) convolutions to SO(2)");
3. multiply by the per-edge radial weights and apply the channel mixing per edge (mixing is linear and acts
   on channels only, so it commutes with the rotation and with the sum over neighbours): one batched matrix
   product per (l_out, m) with the mixing matrix;
4. rotate the ``channels`` outputs back (``D(R)``) and sum over senders.

Equivariance of the Clebsch-Gordan product, ``C(x, D y) = D C(D^T x, y)``, makes this equal to the reference
up to rounding. The per-path constants are read off the module's own e3nn ``TensorProduct`` and the mixing
matrix off its own ``o3.Linear`` weights at construction, so both implementations share one set of parameters
(same ``state_dict``) and cannot drift apart. Everything is plain torch: it scripts and exports with the model.
"""


import copy
import math
from typing import List, Tuple

import torch
from torch import nn

__all__ = ["EdgeFrames", "FrameConvKernel", "frame_dim", "holds_edge_vectors", "reverse_frame_flip"]


def frame_dim(l_max: int) -> int:
    """Numbers per edge in the frame tensor: the Wigner matrices D^l for l = 1..l_max, row-major."""
    return sum((2 * l + 1) ** 2 for l in range(1, l_max + 1))


def holds_edge_vectors(edge_frame: torch.Tensor) -> bool:
    """Whether a convolution's per-edge frame input is the edge vectors ``[E, 3]`` (what
    :meth:`GlassGNN.edge_inputs` gives the fused kernel in training) rather than the frames ``[E, frame_dim]``."""
    return edge_frame.dim() == 2 and edge_frame.shape[1] == 3


def _fourier_features(cos_t: torch.Tensor, sin_t: torch.Tensor, order: int) -> torch.Tensor:
    """[..., 2 order + 1]: 1, cos t, sin t, cos 2t, sin 2t, ... from cos t and sin t (no trigonometric calls)."""
    feats = [torch.ones_like(cos_t)]
    c, s = cos_t, sin_t
    for _ in range(order):
        feats.append(c)
        feats.append(s)
        c, s = c * cos_t - s * sin_t, s * cos_t + c * sin_t
    return torch.stack(feats, dim=-1)


def _one_axis_rotation_coefficients(generator: torch.Tensor, order: int) -> torch.Tensor:
    """Fourier coefficients of ``exp(t X)``: [2 order + 1, d, d] with ``exp(t X) = sum_k f_k(t) A_k``.

    The entries of a Wigner matrix of one rotation axis are trigonometric polynomials of degree <= l in the
    angle, so sampling enough angles and solving the least-squares system recovers them exactly.
    """
    n_samples = 4 * order + 4
    t = torch.arange(n_samples, dtype=torch.float64) * (2 * math.pi / n_samples)
    mats = torch.matrix_exp(t[:, None, None] * generator[None])
    features = _fourier_features(torch.cos(t), torch.sin(t), order)
    coef = torch.linalg.lstsq(features, mats.reshape(n_samples, -1)).solution
    return coef.reshape(2 * order + 1, *generator.shape)


class EdgeFrames(nn.Module):
    """Edge vectors -> Wigner matrices ``D^l(R_e)``, l = 1..l_max, of a rotation taking the y axis to the edge.

    With e3nn's angles (``beta`` from the y axis, ``alpha`` about it), ``D^l = exp(alpha X_y) exp(beta X_x)``.
    Both factors are trigonometric polynomials of the angles, so ``D`` is one matrix product of the outer
    product of the angle harmonics (computed from the vector's components, without trigonometric calls) with
    constant coefficients. Returns ``[E, frame_dim(l_max)]`` in the dtype of ``edge_vec``.

    Parameters
    ----------
    l_max : int
    """

    def __init__(self, l_max: int):
        super().__init__()
        from e3nn import o3

        self.l_max = l_max
        self.dim = frame_dim(l_max)
        order = max(l_max, 1)
        n_f = 2 * order + 1
        blocks, alpha_blocks, beta_blocks = [], [], []
        dtype = torch.get_default_dtype()
        for l in range(1, l_max + 1):
            torch.set_default_dtype(torch.float64)  # e3nn builds the generators in the default dtype
            try:
                gens = o3.so3_generators(l)
            finally:
                torch.set_default_dtype(dtype)
            a = _one_axis_rotation_coefficients(gens[1], order)  # about y, angle alpha
            b = _one_axis_rotation_coefficients(gens[0], order)  # about x, angle beta
            prod = torch.einsum("jab,kbc->jkac", a, b).reshape(n_f * n_f, -1)
            blocks.append(prod)
            alpha_blocks.append(a.reshape(n_f, -1))
            beta_blocks.append(b.reshape(n_f, -1))
        empty = torch.zeros(n_f, 0, dtype=torch.float64)
        basis = torch.cat(blocks, dim=1) if blocks else torch.zeros(n_f * n_f, 0, dtype=torch.float64)
        self.order = order

        # The least-squares fit leaves ~1e-17 where the coefficients are exactly zero; in float32 some become
        # subnormal, and a matrix product with subnormal operands runs 40x slower.
        def clean(c: torch.Tensor) -> torch.Tensor:
            return torch.where(c.abs() < 1e-12, torch.zeros_like(c), c)

        self.register_buffer("basis", clean(basis).to(dtype), persistent=False)
        # The factors A(alpha), B(beta) separately, for the C++ kernel glassmd::edge_frames (float64: it
        # keeps only the non-zero terms, and multiplies in the dtype of the edges).
        alpha = torch.cat(alpha_blocks, 1) if alpha_blocks else empty
        beta = torch.cat(beta_blocks, 1) if beta_blocks else empty
        self.register_buffer("alpha_coef", clean(alpha), persistent=False)
        self.register_buffer("beta_coef", clean(beta), persistent=False)
        from glassmd.model.fused_kernel import fused_kernel_available

        self.use_kernel = fused_kernel_available()

    def forward(self, edge_vec: torch.Tensor) -> torch.Tensor:
        """The frames ``[E, dim]``."""
        if self._runs_kernel(edge_vec):
            return torch.ops.glassmd.edge_frames(edge_vec, self.alpha_coef, self.beta_coef, self.l_max)
        return self.torch_forward(edge_vec)

    def rows(self, edge_vec: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
        """``[E, n + dim]``: each edge's row of ``prefix`` ``[E, n]`` followed by its frame, in one array (the
        per-edge array of the fused kernels: radial basis and frames side by side)."""
        if self._runs_kernel(edge_vec):
            # model files exported by earlier glassmd versions call glassmd::edge_frames_out, which stays registered
            return torch.ops.glassmd.edge_frame_rows(edge_vec, prefix, self.alpha_coef, self.beta_coef, self.l_max)
        return torch.cat([prefix, self.torch_forward(edge_vec)], dim=1)

    def _runs_kernel(self, edge_vec: torch.Tensor) -> bool:
        return self.use_kernel and edge_vec.device.type == "cpu" and not edge_vec.requires_grad

    def torch_forward(self, edge_vec: torch.Tensor) -> torch.Tensor:
        """The frames in torch ops (any device, differentiable); the C++ kernel computes the same."""
        n = edge_vec / torch.linalg.vector_norm(edge_vec, dim=1, keepdim=True)
        x, y, z = n[:, 0], n[:, 1], n[:, 2]
        rho2 = x * x + z * z
        on_axis = rho2 <= 0
        rho = torch.sqrt(torch.where(on_axis, torch.ones_like(rho2), rho2))
        # alpha = atan2(x, z) (0 on the axis, where any alpha is a valid frame), beta = acos(y)
        cos_a = torch.where(on_axis, torch.ones_like(z), z / rho)
        sin_a = torch.where(on_axis, torch.zeros_like(x), x / rho)
        sin_b = torch.where(on_axis, torch.zeros_like(rho), rho)
        fa = _fourier_features(cos_a, sin_a, self.order)
        fb = _fourier_features(y, sin_b, self.order)
        outer = (fa[:, :, None] * fb[:, None, :]).reshape(n.shape[0], -1)
        return outer @ self.basis.to(outer.dtype)


def reverse_frame_flip(l_max: int) -> torch.Tensor:
    """Signs ``s`` [frame_dim] with ``EdgeFrames(-n) = EdgeFrames(n) * s`` for every direction ``n``.

    The frame of ``-n`` is that of ``n`` followed by a half turn about an axis normal to the polar one, which is
    diagonal (signs ``S_m``) in the real harmonics: ``D(-n) = D(n) S``, a sign per column, and ``s`` repeats
    ``S_m`` down each column of every ``D^l``. The fused kernel evaluates the edge j -> i with the frame of
    i -> j this way (``glassmd::frame_conv_eval`` with paired edges). Derived numerically from
    :class:`EdgeFrames` itself, and checked, so it follows any change of frame convention.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        frames = EdgeFrames(l_max)
    finally:
        torch.set_default_dtype(previous)
    n = torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    forward, backward = frames(n), frames(-n)
    flip = torch.ones(frames.dim, dtype=torch.float64)
    offset = 0
    for l in range(1, l_max + 1):
        d = 2 * l + 1
        a = forward[:, offset : offset + d * d].reshape(-1, d, d)
        b = backward[:, offset : offset + d * d].reshape(-1, d, d)
        column_sign = torch.where((a * b).sum(dim=(0, 1)) < 0, -1.0, 1.0)  # [d]
        flip[offset : offset + d * d] = column_sign.repeat(d)
        offset += d * d
    if not torch.allclose(backward, forward * flip, atol=1e-12):
        raise RuntimeError("the edge frame of -n is not a column sign flip of that of n: check EdgeFrames")
    return flip


class FrameConvKernel(nn.Module):
    """Constants of the edge-frame evaluation of one :class:`EquivariantConv`, and the evaluation.

    Holds only non-persistent buffers and plain integers: the parameters stay those of the convolution (its
    radial MLP output and ``mix.weight`` are passed in), so the ``state_dict`` is unchanged.

    Parameters
    ----------
    conv : EquivariantConv
        The reference module whose ``tp`` (path constants) and ``mix`` (weight layout) are read.
    """

    rot_in: List[List[int]]
    lo_meta: List[List[int]]
    frame_offsets: List[int]

    def __init__(self, conv: nn.Module):
        super().__init__()
        from e3nn import o3

        irreps_in = conv.irreps_in
        irreps_out = conv.irreps_out
        channels = conv.channels
        self.channels = channels
        self.dim_in = irreps_in.dim
        self.dim_out = irreps_out.dim
        l_max = max(ir.l for _, ir in irreps_out)
        self.l_max = l_max

        in_offsets: List[int] = []
        offset = 0
        for mul, ir in irreps_in:
            in_offsets.append(offset)
            offset += mul * ir.dim

        # Rotation of the input blocks with l >= 1: (x offset, multiplicity, l, frame offset).
        frame_offsets = [0] * (l_max + 2)
        for l in range(1, l_max + 1):
            frame_offsets[l + 1] = frame_offsets[l] + (2 * l + 1) ** 2
        rot_in: List[List[int]] = []
        for (mul, ir), off in zip(irreps_in, in_offsets):
            if ir.l > 0:
                rot_in.append([off, mul, ir.l, frame_offsets[ir.l]])
        self.rot_in = rot_in
        self.frame_offsets = frame_offsets

        # Path constants in the edge frame, read off the e3nn module itself (float64 copy).
        tp = copy.deepcopy(conv.tp).to(torch.float64)
        sh_irreps = conv.irreps_sh
        y_axis = o3.spherical_harmonics(
            [ir.l for _, ir in sh_irreps], torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), True, "component"
        )
        probe_rows = []
        for (mul, ir), off in zip(irreps_in, in_offsets):
            for s in range(ir.dim):
                probe_rows.append(off + s)  # channel 0 of every input block, each component
        probe = torch.zeros(len(probe_rows), self.dim_in, dtype=torch.float64)
        probe[torch.arange(len(probe_rows)), torch.tensor(probe_rows)] = 1.0
        with torch.no_grad():
            response = tp(
                probe,
                y_axis.expand(len(probe_rows), -1),
                torch.ones(len(probe_rows), tp.weight_numel, dtype=torch.float64),
            )
        row_of = {r: i for i, r in enumerate(probe_rows)}

        tp_out_offsets = []
        offset = 0
        for mul, ir in tp.irreps_out:
            tp_out_offsets.append(offset)
            offset += mul * ir.dim
        weight_offsets = []
        offset = 0
        for ins in tp.instructions:
            weight_offsets.append(offset)
            offset += ins.path_shape[0] * ins.path_shape[1]

        mix_ins = [ins for ins in conv.mix.instructions if ins.i_in != -1]
        mix_offsets = {}
        offset = 0
        for ins in mix_ins:
            mix_offsets[ins.i_in] = (offset, ins.path_weight, ins.path_shape)
            offset += ins.path_shape[0] * ins.path_shape[1]

        # Per l_out: K = sum of multiplicities of its paths; gather index into the rotated input for every
        # (m, path, channel), column of the radial weights for every (path, channel), and the mixing matrix
        # [2 l_out + 1, channels, K] as (index into mix.weight, constant factor).
        src_all: List[torch.Tensor] = []
        widx_all: List[torch.Tensor] = []
        midx_all: List[torch.Tensor] = []
        mcoef_all: List[torch.Tensor] = []
        lo_meta: List[List[int]] = []  # [l_out, K, src offset, widx offset, mix offset, out offset]
        tol = 1e-10
        out_offset = 0
        counts = [0, 0, 0]
        for lo in range(l_max + 1):
            d_lo = 2 * lo + 1
            paths = [p for p, ins in enumerate(tp.instructions) if tp.irreps_out[ins.i_out].ir.l == lo]
            k_total = sum(tp.instructions[p].path_shape[0] for p in paths)
            src = torch.zeros(d_lo, k_total, dtype=torch.long)
            widx = torch.zeros(k_total, dtype=torch.long)
            midx = torch.zeros(d_lo, channels, k_total, dtype=torch.long)
            mcoef = torch.zeros(d_lo, channels, k_total, dtype=torch.float64)
            k0 = 0
            for p in paths:
                ins = tp.instructions[p]
                mul = ins.path_shape[0]
                i_in = ins.i_in1
                d_li = irreps_in[i_in].ir.dim
                out_off = tp_out_offsets[ins.i_out]
                # B[m, s]: output component m of channel 0 for input component s of channel 0.
                b = torch.stack(
                    [response[row_of[in_offsets[i_in] + s], out_off : out_off + d_lo] for s in range(d_li)], dim=1
                )
                m_off, pw, shape = mix_offsets[ins.i_out]
                if shape != (mul, channels):
                    raise RuntimeError(f"unexpected mixing layout {shape} for path {p}")
                for m in range(d_lo):
                    nz = torch.nonzero(b[m].abs() > tol).flatten().tolist()
                    if len(nz) > 1:
                        raise RuntimeError(
                            f"edge-frame product of path {p} is not diagonal in m: row {m} has {len(nz)} terms"
                        )
                    if not nz:
                        continue  # |m| > min(l_in, l_out): index 0 with factor 0
                    s = nz[0]
                    g = float(b[m, s])
                    for u in range(mul):
                        src[m, k0 + u] = in_offsets[i_in] + u * d_li + s
                        for c in range(channels):
                            midx[m, c, k0 + u] = m_off + u * channels + c
                            mcoef[m, c, k0 + u] = g * pw
                for u in range(mul):
                    widx[k0 + u] = weight_offsets[p] + u
                k0 += mul
            lo_meta.append([lo, k_total, counts[0], counts[1], counts[2], out_offset])
            counts[0] += src.numel()
            counts[1] += widx.numel()
            counts[2] += midx.numel()
            out_offset += d_lo * channels
            src_all.append(src.flatten())
            widx_all.append(widx)
            midx_all.append(midx.flatten())
            mcoef_all.append(mcoef.flatten())
        self.lo_meta = lo_meta
        # Edges per block of the torch path: on the CPU 2048 keep a block's intermediates (about 2,000 values per
        # edge at l_max = 3) in the L2 cache; on a GPU every block costs a round of some 25 kernel launches, so
        # blocks are as large as memory comfortably allows (2^18 edges: about 2 GB of intermediates).
        self.chunk_size = 2048
        self.device_chunk_size = 1 << 18
        dtype = torch.get_default_dtype()
        self.register_buffer("src_index", torch.cat(src_all), persistent=False)
        self.register_buffer("weight_index", torch.cat(widx_all), persistent=False)
        self.register_buffer("mix_index", torch.cat(midx_all), persistent=False)
        self.register_buffer("mix_coef", torch.cat(mcoef_all).to(dtype), persistent=False)
        # The plan of the fused kernel: the same tables, plus which (m, path, channel) products are non-zero.
        active = torch.cat(
            [(m.reshape(2 * meta[0] + 1, channels, -1) != 0).any(1).flatten() for m, meta in zip(mcoef_all, lo_meta)]
        )
        self.register_buffer("active", active.to(torch.long), persistent=False)
        self.register_buffer("rot_in_table", torch.tensor(rot_in, dtype=torch.long).reshape(-1, 4), persistent=False)
        self.register_buffer("lo_meta_table", torch.tensor(lo_meta, dtype=torch.long), persistent=False)
        # Edge outputs are laid out (l_out, m, channel); the features are e3nn's (l_out, channel, m).
        perm = []
        for lo in range(l_max + 1):
            d_lo = 2 * lo + 1
            base = lo_meta[lo][5]
            for c in range(channels):
                for m in range(d_lo):
                    perm.append(base + m * channels + c)
        self.register_buffer("out_perm", torch.tensor(perm, dtype=torch.long), persistent=False)
        self.register_buffer("reverse_flip", reverse_frame_flip(l_max).to(dtype), persistent=False)
        # The frame constants, for the evaluation kernel to compute the frames of edge blocks (glassmd::edge_blocks)
        frames = EdgeFrames(l_max)
        self.register_buffer("frame_alpha_coef", frames.alpha_coef, persistent=False)
        self.register_buffer("frame_beta_coef", frames.beta_coef, persistent=False)

    def mix_matrices(self, mix_weight: torch.Tensor) -> torch.Tensor:
        """The mixing matrices ``[d, channels, K]`` per l_out (flat), with the path constants folded in."""
        return mix_weight.index_select(0, self.mix_index) * self.mix_coef

    def prepare(self, x: torch.Tensor, mix_weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-call constants: the node features feature-major ``[dim_in, n]`` and the mixing matrices."""
        return x.t().contiguous(), self.mix_matrices(mix_weight)

    def fused(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        radial_hidden: torch.Tensor,
        radial_weight: torch.Tensor,
        radial_bias: torch.Tensor,
        radial_output_relu: bool,
        edge_frame: torch.Tensor,
        mix_weight: torch.Tensor,
    ) -> torch.Tensor:
        """The whole convolution, including the last layer of the radial MLP, by the fused C++ kernel
        ``glassmd::frame_conv_factored`` (CPU; see ``csrc/``). It is given the mixing matrices as their factors
        (:meth:`mix_matrices`), so that its backward sums the gradient of ``mix_weight`` directly: one sum per
        weight, not one per product of the matrices.

        ``edge_frame`` is the frames ``[E, frame_dim]``, or the edge vectors ``[E, 3]``: the kernel then computes
        each block's frames itself, in the forward and again in the backward (reading 83 precomputed values per
        edge back took longer, twice per layer).

        (Model files exported before it existed call ``glassmd::frame_conv``, with the matrices themselves,
        which stays registered.)"""
        vectors = holds_edge_vectors(edge_frame)
        return torch.ops.glassmd.frame_conv_factored(
            x,
            edge_index,
            radial_hidden,
            radial_weight,
            radial_bias,
            radial_output_relu,
            edge_frame,
            mix_weight,
            self.mix_index,
            self.mix_coef,
            self.rot_in_table,
            self.lo_meta_table,
            self.src_index,
            self.weight_index,
            self.active,
            self.dim_out,
            self.channels,
            self.frame_alpha_coef if vectors else None,
            self.frame_beta_coef if vectors else None,
        )

    def fused_train(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        basis: torch.Tensor,
        edge_vec: torch.Tensor,
        radial: List[torch.Tensor],
        draws: torch.Tensor,
        drop: bool,
        mean: torch.Tensor,
        var: torch.Tensor,
        sums: torch.Tensor,
        eps: float,
        radial_output_relu: bool,
        mix_weight: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`fused` with the radial MLP's hidden layer computed in the kernels too
        (``glassmd::frame_conv_train``): ``radial`` is ``[W1, b1, gamma, beta, W2, b2]``, the batch statistics come
        from ``glassmd::radial_statistics`` (:meth:`RadialMLP.kernel_hidden`). Edges may come paired
        (:meth:`GlassGNN.edge_inputs`): ``basis`` and ``edge_vec`` then have one row per pair and per unpaired
        edge, and ``draws`` one value per edge."""
        return torch.ops.glassmd.frame_conv_train(
            x,
            edge_index,
            basis,
            edge_vec,
            radial,
            draws,
            drop,
            mean,
            var,
            sums,
            eps,
            radial_output_relu,
            [mix_weight, self.mix_index, self.mix_coef],
            [
                self.rot_in_table,
                self.lo_meta_table,
                self.src_index,
                self.weight_index,
                self.active,
                self.frame_alpha_coef,
                self.frame_beta_coef,
                self.reverse_flip,
            ],
            self.dim_out,
            self.channels,
        )

    def frames_of_vectors(self, edge_vec: torch.Tensor) -> torch.Tensor:
        """The frames ``[E, frame_dim]`` of edge vectors ``[E, 3]`` (``glassmd::edge_frames``, CPU)."""
        return torch.ops.glassmd.edge_frames(edge_vec, self.frame_alpha_coef, self.frame_beta_coef, self.l_max)

    def fused_eval(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_radial: torch.Tensor,
        first_weight: torch.Tensor,
        first_bias: torch.Tensor,
        radial_weight: torch.Tensor,
        radial_bias: torch.Tensor,
        radial_output_relu: bool,
        edge_frame: torch.Tensor,
        mix_weight: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`fused` for evaluation without gradients: the kernel ``glassmd::frame_conv_eval`` also runs the
        first radial layer, from the Bessel basis ``edge_radial`` (batch norm folded by
        :meth:`RadialMLP.evaluation_layers`).

        Edges may come paired (:meth:`GlassGNN.edge_inputs`): ``edge_radial`` and ``edge_frame`` then have
        fewer rows than ``edge_index`` has columns, one per pair and one per unpaired edge; or they are the two
        parts of ``glassmd::edge_blocks`` (radial basis; edge vectors and lane kinds), and the kernel computes
        the frames from the vectors."""
        return torch.ops.glassmd.frame_conv_eval(
            x,
            edge_index,
            edge_radial,
            first_weight,
            first_bias,
            radial_weight,
            radial_bias,
            radial_output_relu,
            edge_frame,
            self.mix_matrices(mix_weight),
            self.rot_in_table,
            self.lo_meta_table,
            self.src_index,
            self.weight_index,
            self.active,
            self.dim_out,
            self.channels,
            self.reverse_flip,
            self.frame_alpha_coef,
            self.frame_beta_coef,
        )

    def messages(
        self,
        x_t: torch.Tensor,
        sender: torch.Tensor,
        radial_weights: torch.Tensor,
        edge_frame: torch.Tensor,
        mix: torch.Tensor,
    ) -> torch.Tensor:
        """Mixed messages of a block of edges, rotated back to the global frame: ``[msg_dim, n_edges]``.

        Everything is feature-major (edges last) so that every step is a broadcast over contiguous edges
        or one batched matrix product with the mixing matrix; blocks of a few thousand edges keep the
        intermediates in cache.
        """
        n_edges = sender.shape[0]
        c = self.channels
        frame = edge_frame.t().contiguous()  # [frame_dim, edges]
        xs = x_t.index_select(1, sender)
        # Rotate every l >= 1 block of the sender's features into the edge frame: x'_m' = sum_m D_mm' x_m.
        parts: List[torch.Tensor] = []
        prev = 0
        for blk in self.rot_in:
            off, mul, l, foff = blk[0], blk[1], blk[2], blk[3]
            d = 2 * l + 1
            if off > prev:
                parts.append(xs[prev:off])
            rot = frame[foff : foff + d * d].reshape(d, d, n_edges)
            block = xs[off : off + mul * d].reshape(mul, d, 1, n_edges)
            parts.append((block * rot.unsqueeze(0)).sum(1).reshape(mul * d, n_edges))
            prev = off + mul * d
        if prev < self.dim_in:
            parts.append(xs[prev:])
        xr = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]

        w_t = radial_weights.t()
        outs: List[torch.Tensor] = []
        for meta in self.lo_meta:
            lo, k, s_off, w_off, m_off = meta[0], meta[1], meta[2], meta[3], meta[4]
            d = 2 * lo + 1
            gathered = xr.index_select(0, self.src_index[s_off : s_off + d * k]).reshape(d, k, n_edges)
            weights = w_t.index_select(0, self.weight_index[w_off : w_off + k]).reshape(1, k, n_edges)
            z = torch.bmm(mix[m_off : m_off + d * k * c].reshape(d, c, k), gathered * weights)  # [d, C, edges]
            if lo == 0:
                outs.append(z.reshape(c, n_edges))
            else:
                # Back to the global frame: z_m' = sum_m D_m'm z_m.
                foff = self.frame_offsets[lo]
                rot = frame[foff : foff + d * d].reshape(d, d, 1, n_edges)
                outs.append((rot * z.unsqueeze(0)).sum(1).reshape(d * c, n_edges))
        return torch.cat(outs, dim=0)

    def finish(self, summed: torch.Tensor) -> torch.Tensor:
        """``[msg_dim, n]`` sums over neighbours -> ``[n, dim_out]`` features in e3nn's layout."""
        return summed.index_select(0, self.out_perm).t().contiguous()

    def forward(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        radial_weights: torch.Tensor,
        edge_frame: torch.Tensor,
        mix_weight: torch.Tensor,
    ) -> torch.Tensor:
        """The whole convolution for precomputed radial weights (all edges in one block)."""
        x_t, mix = self.prepare(x, mix_weight)
        msg = self.messages(x_t, edge_index[0], radial_weights, edge_frame, mix)
        summed = torch.zeros(self.dim_out, x.shape[0], dtype=msg.dtype, device=msg.device)
        summed.index_add_(1, edge_index[1], msg)
        return self.finish(summed)
