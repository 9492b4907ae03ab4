"""``glassmd train``, ``glassmd predict`` and ``glassmd baseline``."""

from __future__ import annotations

import argparse

from glassmd.errors import GlassmdError

__all__ = ["add_predict_arguments", "add_train_arguments", "predict_command", "register", "train_command"]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="labelled dump files (propensity_t<time> columns) or directories of *.dump / *.dump.gz")
    parser.add_argument("--times", type=float, nargs="+", metavar="T",
                        help="timescale(s) to learn, one output each (overrides 'times' in the config)")
    parser.add_argument("-c", "--config", metavar="YAML",
                        help="configuration file; absent keys keep the defaults (glassmd train --print-config)")
    parser.add_argument("-o", "--run-dir", metavar="DIR", help="new (or empty) directory for the run's files")
    parser.add_argument("--split", metavar="SPLIT_JSON", help="reuse this split.json instead of drawing a split")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    parser.add_argument("--init", metavar="MODEL_OR_CKPT",
                        help="start from the weights of an exported model or checkpoint (transfer learning)")
    parser.add_argument("--freeze-backbone", action="store_true",
                        help="train only the readout (needs --init): transfer to a new state point")
    parser.add_argument("--epochs", type=int, help="override training.epochs")
    parser.add_argument("--seed", type=int, help="override training.seed")
    parser.add_argument("--max-epochs-this-run", type=int, metavar="N",
                        help="stop after N epochs in this invocation; continue later with --resume")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--print-config", action="store_true",
                        help="print the configuration that would be used (defaults filled in) and exit")


def train_command(args) -> int:
    import torch.distributed

    try:
        return _train_or_resume(args)
    finally:
        # Under torchrun: tear the process group down before the interpreter exits; leaving gloo's threads
        # to interpreter shutdown can abort the process ("terminate called without an active exception").
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train_or_resume(args) -> int:
    from glassmd.train.config import load_config

    if args.resume:
        # A resumed run repeats the original exactly (same data, split, schedule and seeds), so everything
        # that defines a run comes from RUN_DIR; an option that would change it is refused rather than
        # ignored. (More epochs would need a config.yaml that no longer describes the finished report.)
        given = [name for name, value in (
            ("input files", args.inputs), ("--times", args.times), ("--config", args.config),
            ("--run-dir", args.run_dir), ("--split", args.split), ("--init", args.init),
            ("--freeze-backbone", args.freeze_backbone), ("--epochs", args.epochs is not None),
            ("--seed", args.seed is not None), ("--print-config", args.print_config),
        ) if value]
        if given:
            raise GlassmdError(
                f"--resume RUN_DIR continues the run exactly as configured in RUN_DIR (inputs, config, split, "
                f"--init); {', '.join(given)} cannot be given with it (start a new run with -o to change them)"
            )
        from glassmd.train.trainer import resume

        result = resume(args.resume, device=args.device, max_epochs_this_run=args.max_epochs_this_run,
                        progress=not args.no_progress)
        return 0 if result is not None else 1

    overrides: dict = {}
    if args.epochs is not None:
        overrides.setdefault("training", {})["epochs"] = args.epochs
    if args.seed is not None:
        overrides.setdefault("training", {})["seed"] = args.seed
    config = load_config(args.config, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config.with_times(args.times).to_dict(), sort_keys=False), end="")
        return 0
    if not args.inputs:
        raise GlassmdError("no input dump files given")
    if not args.run_dir:
        raise GlassmdError("give the run directory with -o/--run-dir DIR")
    from glassmd.train.trainer import TrainOptions, train

    train(TrainOptions(
        inputs=args.inputs, run_dir=args.run_dir, config=config, times=args.times, split_file=args.split,
        device=args.device, init=args.init, freeze_backbone=args.freeze_backbone,
        max_epochs_this_run=args.max_epochs_this_run, progress=not args.no_progress,
    ))
    return 0


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="exported model file (model.pt of a training run)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT.dump", help="dump files (any number of frames)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="output dump file (all frames), or a directory (one file per input, under the "
                             "input's name): an existing one, or a path ending in / (created)")
    parser.add_argument("--types", nargs="+", metavar="NAME",
                        help="model type name of LAMMPS type 1, 2, ... (default: the model's type order)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress lines (one per input file, on stderr)")


def predict_command(args) -> int:
    from glassmd.train.predict import predict_files

    predict_files(args.model, args.inputs, args.output, types=args.types, device=args.device, quiet=args.quiet)
    return 0


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train the network on labelled dump files",
        description="Train the SE(3)-equivariant network to predict dynamical propensity from labelled dumps. "
                    "Also runnable as `python -m glassmd.train` and under torchrun.")
    add_train_arguments(train)
    train.set_defaults(func=train_command)

    predict = subparsers.add_parser(
        "predict", help="predict propensities of dump configurations with an exported model",
        description="Run an exported model on every frame of dump files; write dumps with one column per "
                    "output (propensity_t<time>), atoms sorted by id.")
    add_predict_arguments(predict)
    predict.set_defaults(func=predict_command)

    try:
        from glassmd.train.baseline import add_baseline_arguments, baseline_command
    except ModuleNotFoundError as exc:
        if exc.name != "glassmd.train.baseline":
            raise
        return
    baseline = subparsers.add_parser(
        "baseline", help="ridge regression on expert structural features (Boattini et al. 2021)",
        description="Fit the expert-feature ridge baseline on labelled dumps and report its test Pearson.")
    add_baseline_arguments(baseline)
    baseline.set_defaults(func=baseline_command)
