"""Import public glassy-dynamics data sets as labelled dumps.

Two formats are understood:

* **bapst** -- the pickles of Bapst et al., Nature Physics 16, 448 (2020) (DeepMind ``glassy_dynamics``):
  one configuration per file with iso-configurational trajectories at several target times.
* **glassbench** -- the ``.npz`` files of GlassBench / BOTAN (Jung et al. 2023, Shiba et al. 2023):
  one configuration at one time point per file, named with a time index such as ``_tc07``.

The propensity of particle i at time t is the iso-configurational mean ``<|r_i(t) - r_i(0)|>`` over runs.
Output frames use LAMMPS types 1 = A and 2 = B, ids 1..N, and one ``propensity_t<time>`` column per time.
"""

from __future__ import annotations

import io
import os
import pickle
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glassmd.data.dump import Frame, propensity_column, write_dump
from glassmd.errors import GlassmdError, InputError

__all__ = [
    "GLASSBENCH_BOX_4096",
    "ImportedConfiguration",
    "SafeUnpickler",
    "glassbench_frames",
    "import_files",
    "iso_configurational_propensity",
    "load_bapst",
    "load_glassbench",
    "safe_pickle_load",
]

# Kob-Andersen at number density 1.2 with N = 4096: (4096 / 1.2) ** (1/3).
GLASSBENCH_BOX_4096 = 15.05658

_TIME_INDEX_RE = re.compile(r"_tc(\d+)")


# --------------------------------------------------------------------------------- restricted pickles


def _numpy_multiarray():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _numpy_numeric():
    try:
        from numpy._core import numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import numeric
    return numeric


def _allowed_globals() -> dict[tuple[str, str], object]:
    """The only globals a data pickle may reference: what numpy arrays and scalars need to rebuild."""
    import codecs

    multiarray = _numpy_multiarray()
    allowed: dict[tuple[str, str], object] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "ndarray")] = np.ndarray
        allowed[(module, "dtype")] = np.dtype
    # Protocol-5 pickles rebuild arrays from a raw buffer.
    numeric = _numpy_numeric()
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "_frombuffer")] = numeric._frombuffer
    # Protocol-2 pickles (Python 2 era) store array bytes as latin-1 text re-encoded by codecs.encode.
    allowed[("_codecs", "encode")] = codecs.encode
    # numpy >= 1.25 pickles dtypes by their class, e.g. numpy.dtypes.Float64DType.
    for name in dir(np.dtypes):
        if name.endswith("DType"):
            allowed[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds plain containers and numpy arrays, and refuses everything else.

    ``find_class`` is the only way a pickle reaches code; refusing unknown names there means a crafted file
    (``os.system``, ``builtins.eval``, any class) raises before anything it names is called.
    """

    _allowed: dict[tuple[str, str], object] | None = None

    def __init__(self, file, *, source: str = "pickle"):
        super().__init__(file)
        self._source = source
        if SafeUnpickler._allowed is None:
            SafeUnpickler._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise GlassmdError(
                f"refusing to load {self._source}: it references {module}.{name}, which is not part of a "
                "plain data file (only dicts, lists, numbers, strings and numpy arrays are accepted)"
            ) from None


def safe_pickle_load(path: str | os.PathLike):
    """Load a data pickle through :class:`SafeUnpickler`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise GlassmdError(f"{path}: no such file") from None
    except OSError as exc:
        raise GlassmdError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return SafeUnpickler(io.BytesIO(data), source=str(path)).load()
    except GlassmdError:
        raise
    except Exception as exc:  # malformed pickles raise many types (UnpicklingError, EOFError, ValueError...)
        raise GlassmdError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------- common pieces


@dataclass
class ImportedConfiguration:
    """One configuration with its propensities, before it becomes a dump frame."""

    name: str
    positions: np.ndarray  # (n, 3)
    types: np.ndarray  # (n,) 0 = A, 1 = B
    box_lengths: np.ndarray  # (3,)
    propensities: dict[float, np.ndarray]  # time -> (n,)

    def to_frame(self) -> Frame:
        n = len(self.types)
        columns: dict[str, np.ndarray] = {}
        for t in sorted(self.propensities):
            name = propensity_column(t)
            if name in columns:
                raise InputError(
                    f"{self.name}: two target times print as the same column {name!r}; "
                    "times must differ in their first 6 significant digits"
                )
            columns[name] = np.asarray(self.propensities[t], dtype=np.float64)
        return Frame(
            timestep=0,
            box=np.stack([np.zeros(3), np.asarray(self.box_lengths, dtype=np.float64)], axis=1),
            ids=np.arange(1, n + 1, dtype=np.int64),
            types=np.asarray(self.types, dtype=np.int64) + 1,
            positions=np.asarray(self.positions, dtype=np.float64),
            columns=columns,
        )


def iso_configurational_propensity(initial: np.ndarray, final_per_run: np.ndarray) -> np.ndarray:
    """Mean over runs of each particle's displacement length.

    Parameters
    ----------
    initial : (n, 3) array
        Positions at time 0.
    final_per_run : (runs, n, 3) array
        Absolute (unwrapped) positions at time t, one set per iso-configurational run.
    """
    displacement = np.asarray(final_per_run, dtype=np.float64) - np.asarray(initial, dtype=np.float64)
    return np.linalg.norm(displacement, axis=-1).mean(axis=0)


def _check_types(source: str, types: np.ndarray) -> np.ndarray:
    types = np.asarray(types)
    if types.ndim != 1:
        raise InputError(f"{source}: 'types' must be one-dimensional, got shape {types.shape}")
    if not np.isin(types, (0, 1)).all():
        bad = np.unique(types[~np.isin(types, (0, 1))])[:5].tolist()
        raise InputError(f"{source}: 'types' must be 0 (A) or 1 (B), found {bad}")
    return types.astype(np.int64)


def _check_positions(source: str, key: str, positions, shape: tuple) -> np.ndarray:
    try:
        array = np.asarray(positions, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{source}: {key!r} is not a numeric array") from None
    if array.ndim != len(shape) or any(want is not None and have != want for have, want in zip(array.shape, shape)):
        readable = "(" + ", ".join("runs" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{source}: {key!r} has shape {array.shape}, expected {readable}")
    if not np.isfinite(array).all():
        raise InputError(f"{source}: {key!r} holds NaN or infinite values")
    return array


# --------------------------------------------------------------------------------- Bapst et al. 2020

_BAPST_KEYS = ("positions", "types", "box", "time", "time_indices", "trajectory_target_positions")


def load_bapst(path: str | os.PathLike) -> ImportedConfiguration:
    """Read one Bapst et al. (2020) pickle: positions, types, box and the propensity at every target time.

    The target times are ``time[time_indices]``; at each, the propensity is the mean over
    ``trajectory_target_positions[k]`` (one (n, 3) array per run) of ``|r(t) - positions|``.
    """
    path = Path(path)
    source = str(path)
    data = safe_pickle_load(path)
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a dict, found {type(data).__name__}")
    missing = [k for k in _BAPST_KEYS if k not in data]
    if missing:
        raise InputError(f"{source}: missing key(s) {', '.join(missing)}; is this a Bapst et al. 2020 file?")

    types = _check_types(source, data["types"])
    n = len(types)
    positions = _check_positions(source, "positions", data["positions"], (n, 3))
    box = _check_positions(source, "box", data["box"], (3,))
    if (box <= 0).any():
        raise InputError(f"{source}: box edges must be positive, got {box.tolist()}")

    times = np.asarray(data["time"], dtype=np.float64).reshape(-1)
    time_indices = np.asarray(data["time_indices"]).reshape(-1)
    targets = data["trajectory_target_positions"]
    if len(targets) != len(time_indices):
        raise InputError(
            f"{source}: {len(targets)} entries in 'trajectory_target_positions' but "
            f"{len(time_indices)} in 'time_indices'"
        )
    propensities: dict[float, np.ndarray] = {}
    for k, index in enumerate(time_indices):
        if not (np.issubdtype(time_indices.dtype, np.integer) and 0 <= index < len(times)):
            raise InputError(f"{source}: time_indices[{k}] = {index!r} is not an index into 'time' ({len(times)})")
        t = float(times[index])
        if not np.isfinite(t) or t <= 0:
            raise InputError(f"{source}: target time {t!r} (time_indices[{k}]) must be positive")
        runs = _check_positions(
            source, f"trajectory_target_positions[{k}]", np.asarray(targets[k], dtype=np.float64), (None, n, 3)
        )
        if len(runs) == 0:
            raise InputError(f"{source}: no runs in trajectory_target_positions[{k}]")
        if t in propensities:
            raise InputError(f"{source}: target time {t:g} appears twice in 'time_indices'")
        propensities[t] = iso_configurational_propensity(positions, runs)
    return ImportedConfiguration(
        name=_strip_suffixes(path.name), positions=positions, types=types, box_lengths=box, propensities=propensities
    )


# --------------------------------------------------------------------------------- GlassBench / BOTAN


def glassbench_time_index(path: str | os.PathLike) -> tuple[str, int | None]:
    """Split a GlassBench file name into (configuration name, time index); the index is None when absent.

    Examples
    --------
    >>> glassbench_time_index("KA_T0.44_n3_tc07.npz")
    ('KA_T0.44_n3', 7)
    """
    stem = _strip_suffixes(Path(path).name)
    matches = list(_TIME_INDEX_RE.finditer(stem))
    if not matches:
        return stem, None
    last = matches[-1]  # a run label could also contain "_tc"; the time index is the last one
    return stem[: last.start()] + stem[last.end():], int(last.group(1))


def load_glassbench(
    path: str | os.PathLike, time: float, box_lengths: Sequence[float] | None = None
) -> ImportedConfiguration:
    """Read one GlassBench / BOTAN ``.npz`` file holding one time point.

    Parameters
    ----------
    path : path-like
        File with ``types`` (n,), ``initial_positions`` (n, 3) and ``positions`` (runs, n, 3) absolute
        positions at the file's time point.
    time : float
        The time of that point (the file stores only an index).
    box_lengths : 3 floats, optional
        Box edges; by default the cubic box of edge 15.05658 when n = 4096, else an error.
    """
    path = Path(path)
    source = str(path)
    if not np.isfinite(time) or time <= 0:
        raise InputError(f"{source}: the time must be a positive number, got {time!r}")
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise GlassmdError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise GlassmdError(f"{path}: not a readable .npz file ({exc})") from None
    with archive:
        if not hasattr(archive, "files"):
            raise InputError(f"{source}: holds a single array, expected an .npz archive")
        missing = [k for k in ("types", "initial_positions", "positions") if k not in archive.files]
        if missing:
            raise InputError(
                f"{source}: missing array(s) {', '.join(missing)} (found {', '.join(archive.files) or 'none'}); "
                "is this a GlassBench file?"
            )
        try:
            types = _check_types(source, archive["types"])
            n = len(types)
            initial = _check_positions(source, "initial_positions", archive["initial_positions"], (n, 3))
            final = _check_positions(source, "positions", archive["positions"], (None, n, 3))
        except ValueError as exc:  # object arrays need pickle, which is refused
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{source}: unreadable array ({exc})") from None
    if len(final) == 0:
        raise InputError(f"{source}: 'positions' holds no runs")
    if box_lengths is None:
        if n != 4096:
            raise InputError(
                f"{source}: {n} particles; the default box (edge {GLASSBENCH_BOX_4096}) is for 4096, give --box"
            )
        box = np.full(3, GLASSBENCH_BOX_4096)
    else:
        box = np.asarray(box_lengths, dtype=np.float64).reshape(-1)
        if box.size == 1:
            box = np.repeat(box, 3)
        if box.shape != (3,) or not np.isfinite(box).all() or (box <= 0).any():
            raise InputError(f"box must be one or three positive lengths, got {list(box_lengths)}")
    name, _ = glassbench_time_index(path)
    return ImportedConfiguration(
        name=name,
        positions=initial,
        types=types,
        box_lengths=box,
        propensities={float(time): iso_configurational_propensity(initial, final)},
    )


def glassbench_frames(
    paths: Iterable[str | os.PathLike],
    times: dict[int | None, float],
    box_lengths: Sequence[float] | None = None,
) -> dict[str, Frame]:
    """Labelled frames from GlassBench files, one per configuration, merging files that differ only by time.

    Parameters
    ----------
    paths : iterable of path-like
    times : dict
        Time of each time index found in the file names; or a single entry with key ``None`` used for every
        file, allowed when all files share one time index (or have none).
    box_lengths : optional
        See :func:`load_glassbench`.
    """
    paths = [Path(p) for p in paths]
    named = [(path, *glassbench_time_index(path)) for path in paths]
    if None in times:
        if len(times) > 1:
            raise InputError("give either one plain --time T or --time INDEX=T pairs, not both")
        indices = sorted({index for _, _, index in named}, key=lambda i: -1 if i is None else i)
        if len(indices) > 1:
            raise InputError(
                f"the files hold {len(indices)} time indices ({', '.join(_index_label(i) for i in indices)}); "
                "give the time of each with --time INDEX=T, e.g. --time 7=1000"
            )
    grouped: dict[str, list[tuple[Path, float]]] = {}
    for path, name, index in named:
        time = times[None] if None in times else times.get(index)
        if time is None:
            raise InputError(
                f"{path}: no time given for time index {_index_label(index)}; "
                "use --time INDEX=T for each index in the file names, e.g. --time 7=1000"
            )
        grouped.setdefault(name, []).append((path, time))

    frames: dict[str, Frame] = {}
    for name, members in grouped.items():
        merged: ImportedConfiguration | None = None
        for path, time in members:
            config = load_glassbench(path, time, box_lengths)
            if merged is None:
                merged = config
                continue
            if len(config.types) != len(merged.types) or not (
                np.array_equal(config.types, merged.types) and np.array_equal(config.positions, merged.positions)
            ):
                raise InputError(
                    f"{path}: its initial configuration differs from {members[0][0]}, although the names say "
                    "they are the same configuration at different times"
                )
            if time in merged.propensities:
                raise InputError(f"{path}: time {time:g} given twice for configuration {name}")
            merged.propensities.update(config.propensities)
        frames[name] = merged.to_frame()
    return frames


# --------------------------------------------------------------------------------- writing a data set


def import_files(
    fmt: str,
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    times: dict[int | None, float] | None = None,
    box_lengths: Sequence[float] | None = None,
    gzip: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Convert public data files into a labelled data set folder; return the dumps written.

    Every input is read and checked before the first output is written, and existing outputs are kept
    unless ``overwrite`` is true.
    """
    if not paths:
        raise InputError("no input files given")
    for path in paths:
        if not Path(path).is_file():
            raise GlassmdError(f"{path}: no such file")
    if fmt == "bapst":
        if times:
            raise InputError("--time applies to glassbench files only; Bapst files store their times")
        if box_lengths is not None:
            raise InputError("--box applies to glassbench files only; Bapst files store their box")
        frames: dict[str, Frame] = {}
        for path in paths:
            config = load_bapst(path)
            if config.name in frames:
                raise InputError(f"{path}: two input files would both be written as {config.name}")
            frames[config.name] = config.to_frame()
    elif fmt == "glassbench":
        if not times:
            raise InputError("glassbench files store no time value: give it with --time T (or --time INDEX=T)")
        frames = glassbench_frames(paths, times, box_lengths)
    else:
        raise InputError(f"unknown import format {fmt!r}; expected 'bapst' or 'glassbench'")

    out_dir = Path(out_dir)
    suffix = ".dump.gz" if gzip else ".dump"
    targets = {name: out_dir / f"{name}{suffix}" for name in frames}
    if not overwrite:
        existing = [str(p) for p in targets.values() if p.exists()]
        if existing:
            raise GlassmdError(
                f"{len(existing)} output file(s) exist already, e.g. {existing[0]}; use --overwrite to replace them"
            )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GlassmdError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
    for name, frame in frames.items():
        write_dump(targets[name], frame)
    return list(targets.values())


def _index_label(index: int | None) -> str:
    return "(none in the name)" if index is None else f"{index:02d}"


def _strip_suffixes(name: str) -> str:
    for suffix in (".gz", ".pickle", ".pkl", ".npz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name
