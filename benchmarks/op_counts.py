"""Vector operations per pair of edges of the fused CPU kernels, counted from the model's own plan: the
evaluation forward against the training forward and backward.

Usage::

    python benchmarks/op_counts.py               # the paper's configuration
    python benchmarks/op_counts.py --lmax 1

Why: the issue asks for a training step of at most 4x "the forward". The training kernels do more arithmetic per
edge than the evaluation kernel, for reasons of the model, not of the code: dropout draws a mask per directed
edge, so the two directions of a pair need a radial filter each in training, where evaluation computes one per
pair and shares it (and sums twin products of the mix for both directions at once). This script counts that
arithmetic, so the measured ratios (benchmarks/bench_model.py) can be read against it.

One operation is one SIMD multiply or multiply-add over a block of edges, counted per pair (two directed edges):
- radial: the hidden layer (n_basis x hidden) once per pair, the last layer (n_w x hidden) per filter;
- mix: per non-zero (m, path-channel) product, s = M w then z += s x per channel (evaluation: twin products
  of one source share s, s = M0 w0 + M1 w1, and the two directions share it too);
- rotations: each input block into the edge frame and each output block back, dense (2l+1)^2 per channel;
- backward: the forward recomputed up to the mix (filters, inputs into the frame), the output gradient rotated into the frame, the mix's three gradients
  (inputs, filters, mixing weights: about 2 products per entry and channel plus 2 per weight and channel), the
  radial layer's two (hidden values and weights), the input gradient rotated back.
Gathers, scatters and the zeros the evaluation kernel skips are not counted.
"""

from __future__ import annotations

import argparse

from glassmd.model import GlassGNN, ModelConfig


def layer_counts(layer) -> dict:
    from glassmd.model.fast_conv import FrameConvKernel

    conv = layer.conv
    kernel = next(m for m in conv.modules() if isinstance(m, FrameConvKernel))
    channels = kernel.channels
    entries = int(kernel.active.sum())
    k_total = sum(meta[1] for meta in kernel.lo_meta)
    n_w = conv.tp.weight_numel
    linears = [m for m in conv.radial.modules() if type(m).__name__ == "Linear"]
    n_basis, hidden = linears[0].in_features, linears[0].out_features
    rot_in = sum(mul * (2 * l + 1) ** 2 for _, mul, l, _ in kernel.rot_in)
    rot_out = sum(channels * (2 * lo + 1) ** 2 for lo in range(1, kernel.l_max + 1))
    twins = 0
    for lo, k_l, src_off, _, _, _ in kernel.lo_meta:
        d = 2 * lo + 1
        src = kernel.src_index[src_off : src_off + d * k_l].reshape(d, k_l)
        active = kernel.active[src_off : src_off + d * k_l].reshape(d, k_l)
        for m in range(d):
            sources = src[m][active[m] != 0].tolist()
            twins += len(sources) - len(set(sources))
    first, last = n_basis * hidden, n_w * hidden
    rotations = 2 * rot_in + 2 * rot_out  # both directions
    evaluation = first + last + (entries - 2 * twins) * 3 * channels + twins * 4 * channels + rotations
    train_forward = first + 2 * last + 2 * entries * 2 * channels + rotations
    mix_grads = 2 * entries * channels + 2 * k_total * channels
    train_backward = (first + 2 * last + 2 * rot_in  # the forward recomputed up to the mix
                      + 2 * rot_out + 2 * rot_in  # gradient rotations
                      + 2 * mix_grads + 2 * 2 * last + first)  # per direction; hidden-layer sums per pair
    return {"evaluation": evaluation, "training forward": train_forward, "training backward": train_backward}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lmax", type=int, default=ModelConfig().l_max)
    parser.add_argument("--layers", type=int, default=ModelConfig().layers)
    args = parser.parse_args()
    model = GlassGNN(ModelConfig(l_max=args.lmax, layers=args.layers))
    totals = {"evaluation": 0, "training forward": 0, "training backward": 0}
    print(f"# vector operations per pair of edges, l_max={args.lmax}, {args.layers} layers")
    for k, layer in enumerate(model.layers):
        counts = layer_counts(layer)
        print(f"layer {k}: " + ", ".join(f"{name} {value}" for name, value in counts.items()))
        for name, value in counts.items():
            totals[name] += value
    step = totals["training forward"] + totals["training backward"]
    print("total: " + ", ".join(f"{name} {value}" for name, value in totals.items()))
    print(f"training step / evaluation forward     {step / totals['evaluation']:.2f}x")
    print(f"training step / training-mode forward  {step / totals['training forward']:.2f}x")


if __name__ == "__main__":
    main()
