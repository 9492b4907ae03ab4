"""CPU timings of the model forward: the fused kernel and the torch edge-frame path against the e3nn reference.

Usage::

    python benchmarks/bench_model.py --threads 2
    python benchmarks/bench_model.py --threads 1 --sizes 1000 4096 --repeats 5

Configurations are uniform random positions at the Kob-Andersen density 1.2 (about 40 directed edges per
particle at d_c = 2), 80:20 types, sorted by spatial bin as LAMMPS keeps its atoms (``--unsorted``: random
memory order). Timings are wall-clock, float32, the paper's model config; the minimum and
median over repeats are printed because the machine may be shared (the load average is printed too).
Peak memory per particle is the growth of the peak resident set (``VmHWM``, reset to the current one before the
forward; ``ru_maxrss`` would carry the parent's peak across fork/exec) during one forward, measured in a fresh
subprocess per size.
"""

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


SPATIAL_SORT = True


def configuration(n, seed=0, density=1.2, cutoff=2.0):
    from glassmd.data.graph import periodic_graph

    rng = np.random.default_rng(seed)
    box = np.full(3, (n / density) ** (1 / 3))
    pos = rng.random((n, 3)) * box
    if SPATIAL_SORT:
        # LAMMPS keeps atoms sorted by spatial bin (atom_modify sort, on by default), so neighbours in space
        # are neighbours in memory. Uniform random positions in random order would instead time the cache
        # misses of a layout no simulation hands the model (--unsorted shows them).
        n_bins = np.maximum(1, np.floor(box / (cutoff / 2))).astype(np.int64)
        bins = np.minimum((pos / box * n_bins).astype(np.int64), n_bins - 1)
        key = (bins[:, 2] * n_bins[1] + bins[:, 1]) * n_bins[0] + bins[:, 0]
        pos = pos[np.argsort(key, kind="stable")]
    edge_index, edge_vec = periodic_graph(pos, box, cutoff)
    types = torch.as_tensor((rng.random(n) < 0.2).astype(np.int64))
    return (
        torch.as_tensor(pos, dtype=torch.float32),
        types,
        torch.as_tensor(edge_index),
        torch.as_tensor(edge_vec, dtype=torch.float32),
    )


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def build_model():
    from glassmd.model import GlassGNN, ModelConfig

    torch.manual_seed(0)
    model = GlassGNN(ModelConfig())
    graph = configuration(500, seed=1)
    model.train()
    with torch.no_grad():  # realistic batch-norm statistics
        model(*graph[1:])
    return model.eval()


def status_kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def reset_peak_rss():
    """Return the heap's free memory to the system (glibc ``malloc_trim``) and set the peak resident set
    (VmHWM) to the current one (Linux: "5" into clear_refs), so that the growth measured is the forward's own:
    otherwise memory freed after building the graph, or a peak left by it, hides the forward's allocations."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def memory_child(n, implementation):
    from glassmd.model import GlassGNN, ModelConfig

    torch.set_num_threads(1)
    model = GlassGNN(ModelConfig()).eval().set_implementation(implementation)  # weights do not matter here
    graph = configuration(n)
    with torch.no_grad():
        model(*configuration(80, seed=2)[1:])  # load kernels with a tiny graph: keeps the baseline low
        reset_peak_rss()
        before = status_kib("VmRSS")
        model(*graph[1:])
        after = status_kib("VmHWM")
    print(json.dumps({"n": n, "kib": after - before}))


def peer_line(reference, graph, fast, repeats):
    """The cuEquivariance peer (benchmarks/peers.py) of the reference network at N = 1000, or why it is absent."""
    from peers import cuequivariance_engine, cuequivariance_missing, cuequivariance_network

    missing = cuequivariance_missing()
    if missing:
        print(f"# cuEquivariance peer: {missing}")
        return
    with torch.no_grad():
        peer = cuequivariance_network(reference)
        peer(*graph)
        t = timed(lambda: peer(*graph), repeats)
        err = float((peer(*graph) - reference(*graph)).abs().max())
    print(f"cuEquivariance peer     N=1000  min {t[0] * 1e3:9.1f} ms  median {t[1] * 1e3:9.1f} ms"
          f"  fused kernel {t[0] / fast[0]:.1f}x faster; max |peer - reference| = {err:.2e}"
          f"  ({cuequivariance_engine(graph[0].device)})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4096, 16384, 32768])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-repeats", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--unsorted", action="store_true",
                        help="particles in random memory order instead of LAMMPS's spatial sort")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory-implementation", default="fused", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global SPATIAL_SORT
    SPATIAL_SORT = not args.unsorted
    if args.memory_child:
        memory_child(args.memory_child, args.memory_implementation)
        return

    torch.set_num_threads(args.threads)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"# CPU {cpu}; {os.cpu_count()} cores; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(f"# python {platform.python_version()}; load average at start {os.getloadavg()}")
    print(f"# particles {'in random memory order' if args.unsorted else 'sorted by spatial bin, as LAMMPS keeps them'}")
    from glassmd.model import export_model, load_model_file

    model = build_model()
    results = {}

    # N = 1000: reference, fast, exported file, training step.
    pos, types, edge_index, edge_vec = configuration(1000)
    print(f"# N=1000: {edge_index.shape[1]} edges ({edge_index.shape[1] / 1000:.1f} per particle)")
    with torch.no_grad():
        reference = copy.deepcopy(model).set_implementation("e3nn")
        reference(types, edge_index, edge_vec)
        ref = timed(lambda: reference(types, edge_index, edge_vec), args.reference_repeats)
        frame = copy.deepcopy(model).set_implementation("frame")
        frame(types, edge_index, edge_vec)
        frm = timed(lambda: frame(types, edge_index, edge_vec), args.repeats)
        fast = model.set_implementation("fused")
        fast(types, edge_index, edge_vec)
        fst = timed(lambda: fast(types, edge_index, edge_vec), args.repeats)
        err = float((fast(types, edge_index, edge_vec) - reference(types, edge_index, edge_vec)).abs().max())
    print(f"reference e3nn forward  N=1000  min {ref[0] * 1e3:9.1f} ms  median {ref[1] * 1e3:9.1f} ms")
    print(f"edge frames, torch ops  N=1000  min {frm[0] * 1e3:9.1f} ms  median {frm[1] * 1e3:9.1f} ms"
          f"  {ref[0] / frm[0]:.1f}x the reference")
    print(f"fused kernel            N=1000  min {fst[0] * 1e3:9.1f} ms  median {fst[1] * 1e3:9.1f} ms"
          f"  {ref[0] / fst[0]:.1f}x the reference")
    print(f"speed-up fused/reference (min/min) {ref[0] / fst[0]:.1f}x   max |fused - reference| = {err:.2e}")
    results["reference_1000"], results["fast_1000"] = ref, fst
    peer_line(reference, (types, edge_index, edge_vec), fst, args.reference_repeats)

    with tempfile.TemporaryDirectory() as tmp:
        module, _ = load_model_file(export_model(model, os.path.join(tmp, "m.pt")))
        with torch.no_grad():
            module(pos, types, edge_index, edge_vec)
            exp = timed(lambda: module(pos, types, edge_index, edge_vec), args.repeats)
    print(f"exported TorchScript    N=1000  min {exp[0] * 1e3:9.1f} ms  median {exp[1] * 1e3:9.1f} ms")

    train_model = copy.deepcopy(model).train()

    def train_step():
        train_model.zero_grad(set_to_none=True)
        y = train_model(types, edge_index, edge_vec)
        (y**2).mean().backward()

    def train_forward():  # the forward that the step differentiates: batch statistics, dropout, saved inputs
        train_model(types, edge_index, edge_vec)

    train_step()
    trn = timed(train_step, args.repeats)
    trf = timed(train_forward, args.repeats)
    print(f"training-mode forward   N=1000  min {trf[0] * 1e3:9.1f} ms  median {trf[1] * 1e3:9.1f} ms")
    print(
        f"training step (fwd+bwd) N=1000  min {trn[0] * 1e3:9.1f} ms  median {trn[1] * 1e3:9.1f} ms"
        f"  = {trn[0] / fst[0]:.1f}x the eval forward, {trn[0] / trf[0]:.1f}x the training-mode forward"
    )

    # Scaling with N.
    print("# scaling of the fused eval forward")
    for n in args.sizes:
        graph = configuration(n, seed=n)
        with torch.no_grad():
            if n != 1000:
                model(*graph[1:])
            t = fst if n == 1000 else timed(lambda: model(*graph[1:]), args.repeats)
        print(f"fused forward N={n:6d}  min {t[0] * 1e3:9.1f} ms  median {t[1] * 1e3:9.1f} ms  {t[0] / n * 1e6:7.1f} us/particle")

    if not args.no_memory:
        print("# peak RSS growth during one forward (fresh subprocess per size, 1 thread)")
        for impl in ("fused", "e3nn"):
            for n in args.sizes if impl == "fused" else args.sizes[:2]:
                out = subprocess.run(
                    [sys.executable, __file__, "--memory-child", str(n), "--memory-implementation", impl]
                    + (["--unsorted"] if args.unsorted else []),
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                kib = json.loads(out.strip().splitlines()[-1])["kib"]
                print(f"{impl:6s} N={n:6d}  {kib / 1024:8.1f} MiB  {kib / n:6.2f} KiB/particle")
    print(f"# load average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
