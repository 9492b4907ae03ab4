"""``glassmd predict``: run an exported model on the configurations of dump files, write dumps with predictions.

Each output frame keeps the input's atoms (sorted by id), positions and per-atom columns, plus one column
per model output named as the labels are (``propensity_t10``, ...). An input column with the same name as
an output is replaced by the prediction in the output file (the input file is never modified).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from glassmd.errors import GlassmdError, InputError

__all__ = ["lammps_type_map", "predict_frame", "predict_files"]


def lammps_type_map(model_type_names: Sequence[str], types: Sequence[str] | None) -> dict[int, int]:
    """LAMMPS type -> model type index.

    Parameters
    ----------
    model_type_names : the model's type names, in model order
    types : name of LAMMPS type 1, 2, ... (as ``pair_coeff`` lists them); None: the model's order
    """
    names = list(model_type_names)
    if types is None:
        return {k + 1: k for k in range(len(names))}
    mapping = {}
    for lammps_type, name in enumerate(types, start=1):
        if name not in names:
            raise InputError(f"--types: {name!r} (LAMMPS type {lammps_type}) is not a type of the model ({names})")
        mapping[lammps_type] = names.index(name)
    return mapping


def predict_frame(module, metadata: dict, frame, type_map: dict[int, int], device: torch.device | str = "cpu",
                  where: str = "") -> np.ndarray:
    """Predictions ``[n, n_outputs]`` (label units, float64) of an exported model for one frame."""
    from glassmd.data.graph import periodic_graph
    from glassmd.train.dataset import map_types

    dtype = torch.float64 if metadata.get("dtype") == "float64" else torch.float32
    types = torch.from_numpy(map_types(frame.types, type_map, where=where))
    try:
        edge_index, edge_vec = periodic_graph(frame.positions, frame.box_lengths, float(metadata["cutoff"]))
    except InputError as exc:
        raise InputError(f"{where + ': ' if where else ''}{exc}") from None
    pos = torch.as_tensor(np.asarray(frame.positions), dtype=dtype)
    with torch.no_grad():
        out = module(pos.to(device), types.to(device), edge_index.to(device), edge_vec.to(dtype).to(device))
    return out.detach().cpu().to(torch.float64).numpy()


def _with_predictions(frame, names: Sequence[str], values: np.ndarray):
    columns = {k: v for k, v in frame.columns.items() if k not in names}
    for k, name in enumerate(names):
        columns[name] = values[:, k]
    return dataclasses.replace(frame, columns=columns)


def predict_files(model_path: str | Path, inputs: Sequence[str | Path], output: str | Path,
                  types: Sequence[str] | None = None, device: str = "cpu", quiet: bool = False) -> list[Path]:
    """Predict every frame of ``inputs`` and write the results.

    ``output`` is a dump file receiving the frames of all inputs in order, or an existing directory
    receiving one file per input under the input's name.

    Returns
    -------
    The files written.
    """
    from glassmd.data.dump import read_dump, write_dump
    from glassmd.model import load_model_file

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GlassmdError(f"--device {device}: CUDA is not available on this machine")
    module, metadata = load_model_file(model_path, map_location=device)
    module.eval()
    names = list(metadata["output_names"])
    type_map = lammps_type_map(metadata["type_names"], types)
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise InputError("no input dump files given")
    for path in inputs:
        if not path.is_file():
            raise InputError(f"input {str(path)!r} does not exist")
    output = Path(output)
    into_directory = output.is_dir()
    if into_directory:
        targets = [output / path.name for path in inputs]
    else:
        targets = [output]
    resolved_inputs = {p.resolve() for p in inputs}
    for target in targets:
        if target.resolve() in resolved_inputs:
            raise InputError(f"output {str(target)!r} is also an input: choose another output so the input is kept")

    written: list[Path] = []
    pending = []
    for path in inputs:
        frames = read_dump(path)
        result = [
            _with_predictions(frame, names, predict_frame(module, metadata, frame, type_map, device,
                                                          where=f"{path}: frame {k}"))
            for k, frame in enumerate(frames)
        ]
        if not into_directory:
            pending.extend(result)
        else:
            write_dump(output / path.name, result)
            written.append(output / path.name)
        if not quiet:
            print(f"{path}: {len(frames)} frame(s) predicted", file=sys.stderr)
    if not into_directory:
        write_dump(output, pending)
        written.append(output)
    return written
