"""Time per training epoch on N=1000 configurations (CPU), with the paper's model unless told otherwise.

Uses the reference data set when given (--data DIR of labelled dumps, split 8:2 into training and validation
whatever --configs says), else synthetic configurations
(uniform random at density 1.2, glassmd.train.dataset.synthetic_frames). Prints seconds per epoch and per
configuration for the forward+backward training pass and for evaluation.

    python benchmarks/bench_train.py [--configs 8] [--particles 1000] [--lmax 3] [--layers 8] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="directory of labelled dumps (default: synthetic)")
    parser.add_argument("--time", type=float, default=10.0, help="timescale label to train on")
    parser.add_argument("--configs", type=int, default=8, help="training configurations per epoch")
    parser.add_argument("--particles", type=int, default=1000)
    parser.add_argument("--lmax", type=int, default=3)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed (the first one is reported apart)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from glassmd.data.dump import write_dump
    from glassmd.train.config import TrainConfig
    from glassmd.train.dataset import synthetic_frames
    from glassmd.train.trainer import TrainOptions, train

    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            inputs = [args.data]
        else:
            frames = synthetic_frames(args.configs + 2, args.particles, times=(args.time,), seed=0)
            write_dump(Path(tmp) / "synthetic.dump", frames)
            inputs = [Path(tmp) / "synthetic.dump"]
        n_total = args.configs + 2
        config = TrainConfig.from_dict({
            "model": {"l_max": args.lmax, "layers": args.layers},
            "training": {"epochs": args.epochs, "batch_size": args.batch_size},
            "split": {"train": args.configs / n_total, "validation": 2 / n_total, "test": 0.0},
            "evaluation": {"baseline": False},
        })
        start = time.perf_counter()
        train(TrainOptions(inputs=inputs, run_dir=Path(tmp) / "run", config=config, times=[args.time],
                           device="cpu", progress=False))
        total = time.perf_counter() - start
        import csv

        import json

        with open(Path(tmp) / "run" / "metrics.csv") as fh:
            rows = list(csv.DictReader(fh))
        split = json.loads((Path(tmp) / "run" / "split.json").read_text())
    n_train, n_val = len(split["train"]), len(split["validation"])
    seconds = [float(r["seconds"]) for r in rows]
    steady = seconds[1:] or seconds
    per_epoch = sum(steady) / len(steady)
    print(f"CPU threads: {torch.get_num_threads()}; model l_max={args.lmax} layers={args.layers}; "
          f"{n_train} training configurations of N={args.particles} (+{n_val} validation), batch {args.batch_size}")
    print(f"first epoch:        {seconds[0]:.2f} s")
    print(f"epoch (steady):     {per_epoch:.2f} s   = {per_epoch / n_train:.3f} s per training configuration "
          "(forward+backward, plus its share of validation)")
    print(f"whole run:          {total:.2f} s (graphs, {args.epochs} epochs, export)")


if __name__ == "__main__":
    main()
