"""``glassmd model info``, ``glassmd model path`` and ``glassmd export``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from glassmd.errors import GlassmdError

if TYPE_CHECKING:
    from glassmd.model.config import ModelConfig

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "shipped" / "glassgnn-ka-T0.6.pt"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Model architecture options; defaults are the paper's."""
    from glassmd.model.config import ModelConfig

    d = ModelConfig()
    g = parser.add_argument_group("model architecture (defaults: the paper's)")
    g.add_argument("--lmax", type=int, default=d.l_max, help=f"highest rotational order (default {d.l_max})")
    g.add_argument("--channels", type=int, default=d.channels, help=f"hidden channels per l (default {d.channels})")
    g.add_argument("--layers", type=int, default=d.layers, help=f"convolution layers (default {d.layers})")
    g.add_argument("--cutoff", type=float, default=d.cutoff, help=f"graph cutoff d_c (default {d.cutoff:g})")
    g.add_argument("--n-radial", type=int, default=d.n_radial, help=f"Bessel functions (default {d.n_radial})")
    g.add_argument("--radial-hidden", type=int, default=d.radial_hidden, help="radial MLP width (default 16)")
    g.add_argument("--dropout", type=float, default=d.dropout, help=f"radial MLP dropout (default {d.dropout:g})")
    g.add_argument("--types", nargs="+", default=list(d.type_names), help="particle type names (default A B)")
    g.add_argument("--outputs", nargs="+", default=None, help="output names (default: propensity)")


def config_from_args(args) -> "ModelConfig":
    from glassmd.model.config import ModelConfig

    outputs = tuple(args.outputs) if args.outputs else ("propensity",)
    return ModelConfig(
        l_max=args.lmax,
        channels=args.channels,
        layers=args.layers,
        cutoff=args.cutoff,
        n_radial=args.n_radial,
        radial_hidden=args.radial_hidden,
        dropout=args.dropout,
        type_names=tuple(args.types),
        output_names=outputs,
        output_times=(None,) * len(outputs),
    )


def _info(args) -> int:
    from glassmd.model import GlassGNN, count_parameters
    from glassmd.model.fused_kernel import fused_kernel_path

    config = config_from_args(args)
    model = GlassGNN(config)
    print(f"l_max={config.l_max} channels={config.channels} layers={config.layers} cutoff={config.cutoff:g} "
          f"types={','.join(config.type_names)} outputs={config.n_outputs}")
    print(f"triplets per layer: first {model.layers[0].conv.n_paths}, then "
          f"{model.layers[-1].conv.n_paths if config.layers > 1 else '-'}")
    print(f"parameters: {count_parameters(model)}")
    kernel = fused_kernel_path()
    print(f"CPU kernel: {'fused (' + str(kernel) + ')' if kernel else 'torch ops (glassmd was built without its kernel)'}")
    return 0


def _path(args) -> int:
    if not SHIPPED_MODEL.is_file():
        raise GlassmdError(f"no shipped model in this installation (expected {SHIPPED_MODEL})")
    print(SHIPPED_MODEL)
    return 0


def _export(args) -> int:
    import torch

    from glassmd.model import GlassGNN, export_model, model_from_checkpoint, model_from_file

    dtype = {None: None, "float32": torch.float32, "float64": torch.float64}[args.dtype]
    if args.checkpoint and args.model:
        raise GlassmdError("give --checkpoint or --model, not both")
    if args.model:
        model, metadata = model_from_file(args.model)
        if dtype is not None and model.label_mean.dtype != dtype:
            raise GlassmdError(f"{args.model} holds a {model.label_mean.dtype} model; omit --dtype to export it as is")
        print(f"wrote {export_model(model, args.output, metadata)}")
        return 0
    if args.checkpoint:
        model = model_from_checkpoint(args.checkpoint)
        if dtype is not None and model.label_mean.dtype != dtype:
            raise GlassmdError(
                f"checkpoint {args.checkpoint} holds a {model.label_mean.dtype} model; omit --dtype to export it as is"
            )
    else:
        torch.manual_seed(args.seed)
        model = GlassGNN.create(config_from_args(args), dtype or torch.float32)
    path = export_model(model, args.output)
    print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    model = subparsers.add_parser("model", help="inspect the network (parameter count, shipped model)")
    model_sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    info = model_sub.add_parser("info", help="print the architecture and its parameter count")
    add_config_arguments(info)
    info.set_defaults(func=_info)
    path = model_sub.add_parser("path", help="print the path of the shipped model file")
    path.set_defaults(func=_path)

    export = subparsers.add_parser(
        "export",
        help="write a TorchScript model file for fix glassgnn",
        description="Write a self-contained TorchScript model file (loads with torch.jit.load). With "
        "--checkpoint, the trained model of that checkpoint; with --model, the weights and metadata of an "
        "existing model file written again with this glassmd's code (a model file carries the code of the "
        "glassmd that wrote it, so this brings newer, faster kernels to an old model); without either, a "
        "freshly initialised model of the given architecture (for tests and benchmarks).",
    )
    export.add_argument("-o", "--output", required=True, help="model file to write (e.g. model.pt)")
    export.add_argument("--checkpoint", help="training checkpoint to export")
    export.add_argument("--model", help="model file to write again with this glassmd (same weights)")
    export.add_argument(
        "--dtype", choices=["float32", "float64"], default=None, help="float32 unless the checkpoint says otherwise"
    )
    export.add_argument("--seed", type=int, default=0, help="initialisation seed without --checkpoint")
    add_config_arguments(export)
    export.set_defaults(func=_export)
