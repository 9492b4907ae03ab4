"""Labelled configurations for training: reading, checking, splitting, graphs and batches.

A labelled data set is any number of LAMMPS dump files (or directories of ``*.dump`` / ``*.dump.gz``),
each frame one configuration whose extra per-atom columns ``propensity_t<time>`` hold the labels.
A configuration is named ``"<file name>#<frame index>"``; these ids are what ``split.json`` lists. When
files from different folders share a name (``run1/config_0000.dump``, ``run2/config_0000.dump``), every
file is named by its path below the folder the inputs have in common instead.

Each configuration's periodic graph is built once (:func:`glassmd.data.graph.periodic_graph` at the
model cutoff) and a batch is the concatenation of several graphs, node indices offset, as in
torch_geometric.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from glassmd.atomic import atomic_write_text
from glassmd.errors import GlassmdError, InputError

__all__ = [
    "Batch",
    "Configuration",
    "LabelledSet",
    "SPLIT_NAMES",
    "build_configurations",
    "collate",
    "configuration_id",
    "configuration_names",
    "find_dump_files",
    "load_labelled_set",
    "make_split",
    "map_types",
    "read_split",
    "synthetic_frames",
    "write_split",
]

SPLIT_NAMES = ("train", "validation", "test")
_DUMP_SUFFIXES = (".dump", ".dump.gz", ".lammpstrj", ".lammpstrj.gz")


def configuration_id(file_name: str, frame_index: int) -> str:
    """``"<file name>#<frame index>"``, the name a configuration has in ``split.json``."""
    return f"{file_name}#{frame_index}"


def configuration_names(files: Sequence[str | Path]) -> list[str]:
    """The name each file gives its configurations' ids: the bare file name, unless two files share it.

    Data sets made by the same script in several folders repeat their file names. Then every file is
    named by its path relative to the inputs' common folder, so that the ids of a split stay readable and
    the same whatever the working directory.
    """
    paths = [Path(f).resolve() for f in files]
    bare = [p.name for p in paths]
    if len(set(bare)) == len(bare):
        return bare
    root = Path(os.path.commonpath([p.parent for p in paths]))
    return [p.relative_to(root).as_posix() for p in paths]


def find_dump_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files and directories into dump files (directories: ``*.dump`` and ``*.dump.gz``, sorted).

    Raises
    ------
    InputError
        An input that does not exist, a directory without dump files, or nothing at all.
    """
    files: list[Path] = []
    if not inputs:
        raise InputError("no input dump files given")
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_DUMP_SUFFIXES))
            if not found:
                raise InputError(f"directory {str(path)!r} holds no dump files (*.dump or *.dump.gz)")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"input {str(path)!r} does not exist")
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    # x.dump beside x.dump.gz (an import repeated with --gzip) is almost surely one configuration twice, which
    # could land in both the training and the test set.
    by_stem: dict[Path, Path] = {}
    for resolved, f in unique.items():
        stem = resolved.with_name(resolved.name.removesuffix(".gz"))
        if stem in by_stem:
            raise InputError(f"{str(by_stem[stem])!r} and {str(f)!r} are one dump with and without gzip: "
                             "keep one of them (each would be read as its own configurations)")
        by_stem[stem] = f
    return list(unique.values())


@dataclass
class LabelledSet:
    """Frames of labelled dumps, in file then frame order, with their ids and source files."""

    ids: list[str]
    frames: list  # list[glassmd.data.dump.Frame]
    sources: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, ids: Iterable[str]) -> list:
        index = {cid: k for k, cid in enumerate(self.ids)}
        return [self.frames[index[cid]] for cid in ids]


def load_labelled_set(files: Sequence[str | Path], times: Sequence[float] | None) -> LabelledSet:
    """Read every frame of ``files`` and check they can be trained on together.

    Parameters
    ----------
    files : paths of dump files
    times : timescales whose labels must be present in every frame (None: do not check labels)

    Raises
    ------
    InputError
        A frame lacking ``propensity_t<time>`` for an asked time (naming file, frame and the times it does
        have), non-finite labels, or frames with different particle counts (naming both files).
    """
    from glassmd.data.dump import MissingColumnError, propensity_column, read_dump

    ids: list[str] = []
    frames: list = []
    sources: list[str] = []
    first: tuple[str, int] | None = None
    for path, name in zip(files, configuration_names(files)):
        for index, frame in enumerate(read_dump(path)):
            cid = configuration_id(name, index)
            n = len(frame.ids)
            if first is None:
                first = (cid, n)
            elif n != first[1]:
                raise InputError(
                    f"particle counts differ between configurations: {first[0]} has {first[1]} particles, "
                    f"{cid} has {n}; all configurations of a data set must have the same number of particles"
                )
            for t in times or ():
                column = propensity_column(t)
                try:
                    values = np.asarray(frame.propensity(t))
                except MissingColumnError:
                    have = frame.propensity_times()
                    have_text = ", ".join(f"{h:g}" for h in have) if have else "none"
                    raise InputError(
                        f"{path}: frame {index} (timestep {frame.timestep}) has no label column {column!r} "
                        f"for timescale {t:g}; timescales labelled there: {have_text}"
                    ) from None
                if not np.isfinite(values).all():
                    raise InputError(f"{path}: frame {index}: column {column!r} holds non-finite values")
            ids.append(cid)
            frames.append(frame)
            sources.append(str(path))
    if not frames:
        raise InputError("the input dump files hold no configurations")
    return LabelledSet(ids=ids, frames=frames, sources=sources)


def map_types(lammps_types: np.ndarray, type_map: dict[int, int], where: str = "") -> np.ndarray:
    """LAMMPS atom types to 0-based model types; an unmapped LAMMPS type is an :class:`InputError`."""
    lammps_types = np.asarray(lammps_types, dtype=np.int64)
    present = np.unique(lammps_types)
    missing = [int(t) for t in present if int(t) not in type_map]
    if missing:
        mapped = ", ".join(f"{k}" for k in sorted(type_map))
        raise InputError(
            f"{where + ': ' if where else ''}LAMMPS atom type(s) {missing} have no model type; "
            f"the type mapping covers LAMMPS types {mapped}"
        )
    lookup = np.full(int(present.max()) + 1, -1, dtype=np.int64)
    for k, v in type_map.items():
        if k < lookup.size:
            lookup[k] = v
    return lookup[lammps_types]


# --------------------------------------------------------------------------------------------------
# Split


def make_split(ids: Sequence[str], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Random split of configuration ids into train / validation / test.

    Counts are the fractions times the number of configurations, rounded so they add up (largest
    remainders first); the order inside each part is the input order.
    """
    n = len(ids)
    raw = np.array([fractions[name] * n for name in SPLIT_NAMES])
    counts = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    parts: dict[str, list[str]] = {}
    start = 0
    for name, count in zip(SPLIT_NAMES, counts):
        chosen = sorted(order[start : start + count].tolist())
        parts[name] = [ids[k] for k in chosen]
        start += count
    return parts


def write_split(path: str | Path, split: dict[str, list[str]]) -> None:
    """Write ``split.json`` atomically."""
    atomic_write_text(Path(path), json.dumps({name: list(split[name]) for name in SPLIT_NAMES}, indent=1) + "\n")


def read_split(path: str | Path, ids: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Read a ``split.json``; with ``ids``, check that it only names configurations that exist.

    Raises
    ------
    InputError
        Not a split file, a configuration in two parts, or an id absent from ``ids``.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"split file {str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"split file {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(name), list) for name in SPLIT_NAMES):
        raise InputError(f"split file {str(path)!r} must hold lists 'train', 'validation' and 'test'")
    unknown_parts = sorted(set(data) - set(SPLIT_NAMES))
    if unknown_parts:
        raise InputError(f"split file {str(path)!r} has unknown part(s) {unknown_parts}")
    split = {name: [str(x) for x in data[name]] for name in SPLIT_NAMES}
    seen: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for cid in split[name]:
            if cid in seen:
                raise InputError(f"split file {str(path)!r} lists {cid!r} in both {seen[cid]!r} and {name!r}")
            seen[cid] = name
    if ids is not None:
        known = set(ids)
        missing = [cid for cid in seen if cid not in known]
        if missing:
            raise InputError(
                f"split file {str(path)!r} names {len(missing)} configuration(s) not in the inputs, "
                f"e.g. {missing[0]!r}"
            )
    return split


# --------------------------------------------------------------------------------------------------
# Graphs and batches


@dataclass
class Configuration:
    """One configuration ready for the network: its graph, model types, labels and loss mask."""

    id: str
    types: torch.Tensor  # (n,) int64 model types
    edge_index: torch.Tensor  # (2, E) int64, row 0 sender
    edge_vec: torch.Tensor  # (E, 3)
    labels: torch.Tensor  # (n, n_times) label units
    loss_mask: torch.Tensor  # (n,) bool: particles the loss and metrics use

    @property
    def num_nodes(self) -> int:
        return int(self.types.shape[0])


def build_configurations(
    labelled: LabelledSet,
    ids: Sequence[str],
    times: Sequence[float],
    type_map: dict[int, int],
    loss_type_ids: Sequence[int],
    cutoff: float,
    dtype: torch.dtype = torch.float32,
) -> list[Configuration]:
    """Graphs (built once, at ``cutoff``), types, labels and loss masks of the configurations ``ids``."""
    from glassmd.data.graph import periodic_graph

    index = {cid: k for k, cid in enumerate(labelled.ids)}
    loss_ids = torch.tensor(sorted(loss_type_ids), dtype=torch.int64)
    out: list[Configuration] = []
    for cid in ids:
        frame = labelled.frames[index[cid]]
        types = torch.from_numpy(map_types(frame.types, type_map, where=cid))
        try:
            edge_index, edge_vec = periodic_graph(frame.positions, frame.box_lengths, cutoff)
        except InputError as exc:
            raise InputError(f"configuration {cid}: {exc}") from None
        labels = np.stack([np.asarray(frame.propensity(t), dtype=np.float64) for t in times], axis=1)
        out.append(
            Configuration(
                id=cid,
                types=types,
                edge_index=edge_index,
                edge_vec=edge_vec.to(dtype),
                labels=torch.from_numpy(labels).to(dtype),
                loss_mask=torch.isin(types, loss_ids),
            )
        )
    return out


@dataclass
class Batch:
    """Several configurations as one graph (node indices of each offset by the nodes before it)."""

    types: torch.Tensor
    edge_index: torch.Tensor
    edge_vec: torch.Tensor
    labels: torch.Tensor
    loss_mask: torch.Tensor
    sizes: list[int]  # nodes per configuration, in order

    def to(self, device: torch.device) -> "Batch":
        return Batch(
            types=self.types.to(device),
            edge_index=self.edge_index.to(device),
            edge_vec=self.edge_vec.to(device),
            labels=self.labels.to(device),
            loss_mask=self.loss_mask.to(device),
            sizes=self.sizes,
        )


def collate(configurations: Sequence[Configuration]) -> Batch:
    """Concatenate configurations into one disconnected graph."""
    if not configurations:
        raise GlassmdError("cannot build a batch from no configurations")
    if len(configurations) == 1:
        c = configurations[0]
        return Batch(c.types, c.edge_index, c.edge_vec, c.labels, c.loss_mask, [c.num_nodes])
    offsets = np.cumsum([0] + [c.num_nodes for c in configurations[:-1]])
    return Batch(
        types=torch.cat([c.types for c in configurations]),
        edge_index=torch.cat([c.edge_index + int(o) for c, o in zip(configurations, offsets)], dim=1),
        edge_vec=torch.cat([c.edge_vec for c in configurations]),
        labels=torch.cat([c.labels for c in configurations]),
        loss_mask=torch.cat([c.loss_mask for c in configurations]),
        sizes=[c.num_nodes for c in configurations],
    )


# --------------------------------------------------------------------------------------------------
# Synthetic data (tests, benchmarks, examples)


def synthetic_frames(n_configurations: int, n_particles: int, times: Sequence[float] = (10.0,),
                     density: float = 1.2, fraction_a: float = 0.8, seed: int = 0, noise: float = 0.3) -> list:
    """Labelled frames of uniformly random configurations with a structure-dependent synthetic propensity.

    The label of timescale ``t`` is ``log(1 + t) * z + noise * N(0, 1)``, with ``z`` the standardised number of
    neighbours within 1.2 of each particle: learnable from the local structure, imperfectly.
    Types: ``round(fraction_a * n)`` particles of LAMMPS type 1, the rest type 2.
    """
    from glassmd.data.dump import Frame, propensity_column

    rng = np.random.default_rng(seed)
    length = (n_particles / density) ** (1.0 / 3.0)
    n_a = int(round(fraction_a * n_particles))
    frames = []
    for k in range(n_configurations):
        positions = rng.uniform(0.0, length, size=(n_particles, 3))
        types = np.where(np.arange(n_particles) < n_a, 1, 2).astype(np.int64)
        delta = positions[:, None, :] - positions[None, :, :]
        delta -= np.round(delta / length) * length
        dist2 = np.einsum("ijk,ijk->ij", delta, delta)
        counts = (dist2 < 1.2**2).sum(axis=1) - 1
        z = (counts - counts.mean()) / max(counts.std(), 1e-12)
        columns = {
            propensity_column(t): np.log1p(t) * z + noise * rng.standard_normal(n_particles) for t in times
        }
        frames.append(Frame(
            timestep=1000 * k,
            box=np.array([[0.0, length]] * 3),
            ids=np.arange(1, n_particles + 1, dtype=np.int64),
            types=types,
            positions=positions,
            columns=columns,
        ))
    return frames
