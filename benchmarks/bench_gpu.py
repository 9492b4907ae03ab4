"""GPU timings of the model forward: glassmd's edge-frame path, the e3nn reference and the cuEquivariance peer.

Usage (on a machine with a CUDA GPU and a CUDA build of torch)::

    python benchmarks/bench_gpu.py
    python benchmarks/bench_gpu.py --sizes 4096 262144 --reference-sizes 4096 --repeats 20

The issue's GPU targets: N = 4096 forward <= 2 ms on an H100 in float32 and >= 10x the e3nn reference on the same
GPU; N = 262144 without running out of memory, <= 100 ms. Configurations are those of ``bench_model.py``
(Kob-Andersen density, spatially sorted, the paper's model config, eval mode, float32, no gradients). Times are
CUDA-event times of whole forwards after a warm-up, min and median over repeats; peak memory is
``torch.cuda.max_memory_allocated`` during one forward beyond what was allocated before it, per particle.
The fused C++ kernel is CPU-only: on a GPU glassmd runs the edge-frame convolution as torch operators ("frame").
``--device cpu`` runs the same script on the CPU, as a check of the script itself.
"""

import argparse
import copy
import os
import sys

import numpy as np
import torch

import bench_model
from bench_model import build_model, configuration


def timed(fn, repeats, device):
    """(min, median) seconds of ``fn`` over ``repeats`` calls: CUDA-event times on a GPU, else bench_model's."""
    if device.type != "cuda":
        return bench_model.timed(fn, repeats)
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
    return min(times), float(np.median(times))


def peak_bytes(fn, device):
    """Bytes allocated at the peak of one call of ``fn`` beyond those allocated before it (CUDA only)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 262144])
    parser.add_argument("--reference-sizes", type=int, nargs="+", default=[4096],
                        help="sizes at which the e3nn reference and the peer run too (default 4096)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--reference-repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"bench_gpu: no CUDA device (torch {torch.__version__}); --device cpu checks the script on the CPU")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# device {name}; torch {torch.__version__}; python {sys.version.split()[0]}; pid {os.getpid()}")
    from peers import cuequivariance_engine, cuequivariance_missing, cuequivariance_network

    model = build_model().to(device)
    implementations = {"frame": model.set_implementation("frame")}
    reference = copy.deepcopy(model).set_implementation("e3nn")
    implementations["e3nn"] = reference
    missing = cuequivariance_missing()
    if missing:
        print(f"# cuEquivariance peer: {missing}")
    else:
        implementations["cuequivariance"] = cuequivariance_network(reference)
        print(f"# cuEquivariance peer: {cuequivariance_engine(device)}")

    for n in args.sizes:
        _, types, edge_index, edge_vec = (t.to(device) for t in configuration(n, seed=n))
        print(f"# N={n}: {edge_index.shape[1]} edges")
        times = {}
        outputs = {}
        for label, module in implementations.items():
            if label != "frame" and n not in args.reference_sizes:
                continue
            repeats = args.repeats if label == "frame" else args.reference_repeats
            try:
                with torch.no_grad():
                    outputs[label] = module(types, edge_index, edge_vec)  # warm-up (and the output compared)
                    t = timed(lambda: module(types, edge_index, edge_vec), repeats, device)
                    peak = peak_bytes(lambda: module(types, edge_index, edge_vec), device)
            except torch.OutOfMemoryError as exc:
                print(f"{label:15s} N={n:7d}  out of memory: {str(exc).splitlines()[0]}")
                torch.cuda.empty_cache()
                continue
            times[label] = t
            memory = "" if peak is None else f"  peak {peak / 2**20:9.1f} MiB = {peak / n / 1024:6.2f} KiB/particle"
            print(f"{label:15s} N={n:7d}  min {t[0] * 1e3:9.2f} ms  median {t[1] * 1e3:9.2f} ms{memory}")
        for label in times:
            if label != "e3nn" and "e3nn" in times:
                err = float((outputs[label] - outputs["e3nn"]).abs().max())
                print(f"  {label} against the e3nn reference: {times['e3nn'][0] / times[label][0]:.1f}x "
                      f"(min/min), max |difference| = {err:.2e}")
        del outputs
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
