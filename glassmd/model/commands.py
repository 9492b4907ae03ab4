"""``glassmd model info``, ``glassmd model path`` and ``glassmd export``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from glassmd.errors import GlassmdError

if TYPE_CHECKING:
    from glassmd.model.config import ModelConfig

SHIPPED_MODEL = Path(__file__).resolve().parent.parent / "shipped" / "glassgnn-ka-T0.6.pt"


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Model architecture options; defaults are the paper's.

    The parsed values stay None unless given (:func:`config_from_args` fills in the defaults), so that a
    command can tell an option the user gave from its default (:func:`given_config_options`).
    """
    from glassmd.model.config import ModelConfig

    d = ModelConfig()
    g = parser.add_argument_group("model architecture (defaults: the paper's)")
    g.add_argument("--lmax", type=int, help=f"highest rotational order (default {d.l_max})")
    g.add_argument("--channels", type=int, help=f"hidden channels per l (default {d.channels})")
    g.add_argument("--layers", type=int, help=f"convolution layers (default {d.layers})")
    g.add_argument("--cutoff", type=float, help=f"graph cutoff d_c (default {d.cutoff:g})")
    g.add_argument("--n-radial", type=int, help=f"Bessel functions (default {d.n_radial})")
    g.add_argument("--radial-hidden", type=int, help=f"radial MLP width (default {d.radial_hidden})")
    g.add_argument("--dropout", type=float, help=f"radial MLP dropout (default {d.dropout:g})")
    g.add_argument("--types", nargs="+", help=f"particle type names (default {' '.join(d.type_names)})")
    g.add_argument("--outputs", nargs="+", help="output names (default: propensity)")


# (argument attribute, option) of add_config_arguments, in the order of --help.
_CONFIG_OPTIONS = (
    ("lmax", "--lmax"), ("channels", "--channels"), ("layers", "--layers"), ("cutoff", "--cutoff"),
    ("n_radial", "--n-radial"), ("radial_hidden", "--radial-hidden"), ("dropout", "--dropout"),
    ("types", "--types"), ("outputs", "--outputs"),
)


def given_config_options(args) -> list[str]:
    """The architecture options given on the command line (``["--lmax", "--types"]``)."""
    return [option for attribute, option in _CONFIG_OPTIONS if getattr(args, attribute, None) is not None]


def config_from_args(args) -> "ModelConfig":
    from glassmd.model.config import ModelConfig

    d = ModelConfig()

    def value(attribute: str, default):
        given = getattr(args, attribute, None)
        return default if given is None else given

    outputs = tuple(args.outputs) if args.outputs else ("propensity",)
    return ModelConfig(
        l_max=value("lmax", d.l_max),
        channels=value("channels", d.channels),
        layers=value("layers", d.layers),
        cutoff=value("cutoff", d.cutoff),
        n_radial=value("n_radial", d.n_radial),
        radial_hidden=value("radial_hidden", d.radial_hidden),
        dropout=value("dropout", d.dropout),
        type_names=tuple(value("types", d.type_names)),
        output_names=outputs,
        output_times=(None,) * len(outputs),
    )


def _info(args) -> int:
    from glassmd.model import GlassGNN, count_parameters, model_from_file
    from glassmd.model.fused_kernel import fused_kernel_path

    if args.model_file:
        given = given_config_options(args)
        if given:
            raise GlassmdError(f"model info MODEL describes the file as it is; {', '.join(given)} cannot be given with it")
        model, extra = model_from_file(args.model_file)
        config = model.config
    else:
        config = config_from_args(args)
        model = GlassGNN(config)
    print(f"l_max={config.l_max} channels={config.channels} layers={config.layers} cutoff={config.cutoff:g} "
          f"types={','.join(config.type_names)} outputs={config.n_outputs}")
    print(f"triplets per layer: first {model.layers[0].conv.n_paths}, then "
          f"{model.layers[-1].conv.n_paths if config.layers > 1 else '-'}")
    print(f"parameters: {count_parameters(model)}")
    if args.model_file:
        # What a LAMMPS input needs (fix glassgnn's types and output keywords) and what the file was trained on.
        times = ", ".join("-" if t is None else f"{t:g}" for t in config.output_times)
        print(f"outputs: {' '.join(config.output_names)} (times {times})")
        print(f"dtype: {model.label_mean.dtype}".replace("torch.", ""))
        for key, value in sorted(extra.items()):
            if key not in ("format", "format_version", "implementation"):
                print(f"{key}: {json.dumps(value, sort_keys=True)}")
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
    if args.checkpoint or args.model:
        # The architecture, types, outputs and weights come from the file: an option that would change
        # them cannot be honoured, and a file that silently differs from what was asked is worse than an error.
        source = "--model" if args.model else "--checkpoint"
        ignored = given_config_options(args) + (["--seed"] if args.seed is not None else [])
        if ignored:
            raise GlassmdError(
                f"{source} exports the architecture, types, outputs and weights of {args.model or args.checkpoint} "
                f"as they are; {', '.join(ignored)} cannot be given with it"
            )
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
        torch.manual_seed(0 if args.seed is None else args.seed)
        model = GlassGNN.create(config_from_args(args), dtype or torch.float32)
    path = export_model(model, args.output)
    print(f"wrote {path}")
    return 0


def register(subparsers) -> None:
    model = subparsers.add_parser("model", help="inspect the network (parameter count, shipped model)")
    model_sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    info = model_sub.add_parser(
        "info", help="print the architecture and its parameter count, of the options or of a model file"
    )
    info.add_argument("model_file", nargs="?", metavar="MODEL",
                      help="model file to describe (its types, outputs and training), instead of the options")
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
        "--dtype", choices=["float32", "float64"], default=None,
        help="dtype of a fresh model (default float32); with --checkpoint or --model, the file's own"
    )
    export.add_argument("--seed", type=int, default=None,
                        help="initialisation seed of a fresh model (without --checkpoint or --model; default 0)")
    add_config_arguments(export)
    export.set_defaults(func=_export)
