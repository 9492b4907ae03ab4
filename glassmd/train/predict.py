"""``glassmd predict``: run an exported model on the configurations of dump files, write dumps with predictions.

Each output frame keeps the input's atoms (sorted by id), positions and per-atom columns, plus one column
per model output named as the labels are (``propensity_t10``, ...). An input column with the same name as
an output is replaced by the prediction in the output file (the input file is never modified).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from glassmd.atomic import atomic_path
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
    bad = ~np.isfinite(np.asarray(frame.positions)).all(axis=1)
    if bad.any():  # named by atom ID, as the dump file and LAMMPS know the atoms (the graph check has indices)
        raise InputError(
            f"{where + ': ' if where else ''}{int(bad.sum())} atom(s) have non-finite (NaN or inf) positions, "
            f"the first atom ID {int(np.asarray(frame.ids)[bad][0])}"
        )
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

    ``output`` is a dump file receiving the frames of all inputs in order, or a directory receiving one
    file per input under the input's name: an existing directory, or a path ending in ``/`` (created).

    All or nothing: every input is read and predicted before any output replaces its target, so a bad
    input leaves the output file or directory as it was; each output file is written atomically.

    Returns
    -------
    The files written.
    """
    from glassmd.data.dump import read_dump, write_dump
    from glassmd.model import load_model_file

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GlassmdError(f"--device {device}: CUDA is not available on this machine")
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise InputError("no input dump files given")
    for path in inputs:
        if path.is_dir():
            raise InputError(f"input {str(path)!r} is a directory; give the dump files in it")
        if not path.is_file():
            raise InputError(f"input {str(path)!r} does not exist")
    into_directory, targets = _output_targets(inputs, output)
    module, metadata = load_model_file(model_path, map_location=device)
    module.eval()
    names = list(metadata["output_names"])
    type_map = lammps_type_map(metadata["type_names"], types)

    def predicted(path: Path) -> list:
        frames = read_dump(path)
        result = [
            _with_predictions(frame, names, predict_frame(module, metadata, frame, type_map, device,
                                                          where=f"{path}: frame {k}"))
            for k, frame in enumerate(frames)
        ]
        if not quiet:
            print(f"{path}: {len(frames)} frame(s) predicted", file=sys.stderr)
        return result

    if not into_directory:
        write_dump(targets[0], [frame for path in inputs for frame in predicted(path)])
        return list(targets)
    created = _make_directories(targets[0].parent)
    try:
        # Each input's file is complete under a temporary name before the next input is read (memory holds
        # one input at a time); only when all are written do they replace their targets. The temporary names
        # keep the target's .gz, from which write_dump decides to compress.
        with contextlib.ExitStack() as staged:
            for path, target in zip(inputs, targets):
                suffix = ".partial.gz" if target.name.endswith(".gz") else ".partial"
                write_dump(staged.enter_context(atomic_path(target, suffix=suffix)), predicted(path))
    except BaseException as exc:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty
        if isinstance(exc, OSError):
            raise GlassmdError(f"cannot write the outputs in {str(targets[0].parent)!r}: {exc.strerror or exc}") from None
        raise
    return list(targets)


def _output_targets(inputs: Sequence[Path], output: str | Path) -> tuple[bool, list[Path]]:
    """(into a directory?, the files to write), checked before any input is read.

    A trailing ``/`` marks a directory even when it does not exist yet (``Path`` drops it, so it is read
    from the string as given).
    """
    text = os.fspath(output)
    marked_directory = text.endswith(("/", os.sep))
    output = Path(text)
    if marked_directory and output.exists() and not output.is_dir():
        raise InputError(f"output {text!r} names a directory, but {str(output)!r} is a file")
    into_directory = marked_directory or output.is_dir()
    if into_directory:
        targets = [output / path.name for path in inputs]
        by_name: dict[str, list[Path]] = {}
        for path in inputs:
            by_name.setdefault(path.name, []).append(path)
        clashes = {name: paths for name, paths in by_name.items() if len(paths) > 1}
        if clashes:
            name, paths = next(iter(clashes.items()))
            raise InputError(
                f"inputs {', '.join(repr(str(p)) for p in paths)} would all be written to "
                f"{str(output / name)!r} (one output file per input name); predict them into separate "
                "directories, or into one dump file"
            )
        for target in targets:
            if target.is_dir():
                raise InputError(f"output {str(target)!r} is a directory")
    else:
        if not output.parent.is_dir():
            raise InputError(f"cannot write output {text!r}: directory {str(output.parent)!r} does not exist")
        targets = [output]
    resolved_inputs = {p.resolve() for p in inputs}
    for target in targets:
        if target.resolve() in resolved_inputs:
            raise InputError(f"output {str(target)!r} is also an input: choose another output so the input is kept")
    return into_directory, targets


def _make_directories(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    created: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except OSError as exc:
            for done in reversed(created):
                with contextlib.suppress(OSError):
                    done.rmdir()
            raise GlassmdError(f"cannot create the output directory {str(path)!r}: {exc.strerror or exc}") from None
        created.append(path)
    return created

