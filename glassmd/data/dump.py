"""LAMMPS text dump files (``dump custom`` / ``dump atom``) in and out.

A labelled data set is a folder of such files: each frame one configuration, with one extra per-atom
column ``propensity_t<time>`` per timescale (see ``docs/data_format.md``).

Reading accepts one or many frames, plain or gzip-compressed (recognised by its magic bytes), columns in
any order, and any of LAMMPS' coordinate styles. Positions come back unwrapped whenever the file allows it:

========================  ======================================
columns in the file       positions returned
========================  ======================================
``xu yu zu``              as written
``x y z`` + ``ix iy iz``  ``x + ix * Lx`` ...
``xsu ysu zsu``           ``xlo + xsu * Lx`` ...
``xs ys zs`` + images     ``xlo + (xs + ix) * Lx`` ...
``x y z``                 as written (wrapped)
``xs ys zs``              ``xlo + xs * Lx`` (wrapped)
========================  ======================================

Every malformed input raises :class:`DumpFormatError` naming the file, the frame (index and timestep)
and the line: a partial read is never returned silently.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import re
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from glassmd.atomic import current_umask
from glassmd.errors import GlassmdError, InputError

__all__ = [
    "DumpFormatError",
    "Frame",
    "MissingColumnError",
    "iter_dump",
    "parse_propensity_column",
    "propensity_column",
    "read_dump",
    "write_dump",
]

_GZIP_MAGIC = b"\x1f\x8b"

# Coordinate styles in order of preference: (columns, scaled, needs image flags to be unwrapped).
_IMAGE_COLUMNS = ("ix", "iy", "iz")
_POSITION_STYLES = (
    (("xu", "yu", "zu"), False, False),
    (("xsu", "ysu", "zsu"), True, False),
    (("x", "y", "z"), False, True),
    (("xs", "ys", "zs"), True, True),
)
_COORDINATE_COLUMNS = frozenset(c for cols, _, _ in _POSITION_STYLES for c in cols) | set(_IMAGE_COLUMNS)
_RESERVED_COLUMNS = _COORDINATE_COLUMNS | {"id", "type"}

_PROPENSITY_PREFIX = "propensity_t"
_PROPENSITY_RE = re.compile(r"propensity_t([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)")


class DumpFormatError(GlassmdError):
    """A dump file is missing, malformed or inconsistent; the message names file, frame and line."""


class MissingColumnError(GlassmdError, KeyError):
    """A frame lacks a requested per-atom column (a ``KeyError`` that prints as plain text)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def propensity_column(t: float) -> str:
    """Name of the per-atom column holding the propensity at time ``t``: ``f"propensity_t{t:g}"``.

    Examples
    --------
    >>> propensity_column(10.0), propensity_column(0.5), propensity_column(1e6)
    ('propensity_t10', 'propensity_t0.5', 'propensity_t1e+06')
    """
    t = float(t)
    if not math.isfinite(t):
        raise InputError(f"a propensity time must be a finite number, got {t}")
    return f"{_PROPENSITY_PREFIX}{t:g}"


def parse_propensity_column(name: str) -> float | None:
    """The time of a ``propensity_t<time>`` column name, or None for any other name.

    Examples
    --------
    >>> parse_propensity_column("propensity_t1e+06"), parse_propensity_column("c_msd[4]")
    (1000000.0, None)
    """
    match = _PROPENSITY_RE.fullmatch(name)
    return float(match.group(1)) if match else None


@dataclass
class Frame:
    """One configuration of a dump file.

    Attributes
    ----------
    timestep : int
    box : (3, 2) float64 array
        Lower and upper bounds of the orthogonal box, one row per axis.
    ids : (n,) int64 array
        Atom ids, sorted ascending.
    types : (n,) int64 array
        LAMMPS atom types (1-based).
    positions : (n, 3) float64 array
        Cartesian positions, unwrapped when the file allowed it (``xu`` or image flags), else as given.
    columns : dict of str to (n,) float64 array
        Every other per-atom column by name, e.g. ``"propensity_t10"``.
    """

    timestep: int
    box: np.ndarray
    ids: np.ndarray
    types: np.ndarray
    positions: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def box_lengths(self) -> np.ndarray:
        """(3,) edge lengths ``hi - lo``."""
        box = np.asarray(self.box, dtype=np.float64)
        return box[:, 1] - box[:, 0]

    @property
    def n_atoms(self) -> int:
        return len(self.ids)

    def propensity_times(self) -> list[float]:
        """Times of the ``propensity_t<time>`` columns, ascending."""
        times = (parse_propensity_column(name) for name in self.columns)
        return sorted(t for t in times if t is not None)

    def propensity(self, t: float) -> np.ndarray:
        """Per-atom propensity at time ``t``.

        Raises
        ------
        MissingColumnError
            When the frame has no column for ``t``; the message lists the times it has.
        """
        name = propensity_column(t)
        if name in self.columns:
            return self.columns[name]
        # Columns written by other tools may spell the same time differently ("propensity_t10.0").
        wanted = float(f"{float(t):g}")
        for column in self.columns:
            if parse_propensity_column(column) == wanted:
                return self.columns[column]
        have = ", ".join(f"{x:g}" for x in self.propensity_times()) or "none"
        raise MissingColumnError(
            f"no column {name!r} in frame at timestep {self.timestep}; propensity times present: {have}"
        )


# --------------------------------------------------------------------------------------------- reading


def read_dump(path: str | os.PathLike) -> list[Frame]:
    """All frames of a LAMMPS text dump file (plain or gzip).

    Raises
    ------
    DumpFormatError
        When the file is missing, empty or malformed; the message names file, frame and line.
    """
    frames = list(iter_dump(path))
    if not frames:
        raise DumpFormatError(f"{path}: contains no frames (empty file)")
    return frames


def iter_dump(path: str | os.PathLike) -> Iterator[Frame]:
    """Frames of a LAMMPS text dump file one at a time, without holding the whole file in memory."""
    path = Path(path)
    stream = _open_text(path)
    reader = _LineReader(path, stream)
    try:
        yield from _parse_frames(reader)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise reader.error(f"compressed data is truncated or corrupt ({exc})") from None
    except UnicodeDecodeError:
        raise reader.error(
            "binary data where text was expected; is this a LAMMPS text dump?", reader.lineno + 1
        ) from None
    finally:
        stream.close()


def _open_text(path: Path) -> io.TextIOBase:
    try:
        with open(path, "rb") as raw:
            magic = raw.read(2)
        if magic == _GZIP_MAGIC:
            return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline=None)
        return open(path, encoding="utf-8", newline=None)
    except FileNotFoundError:
        raise DumpFormatError(f"{path}: no such dump file") from None
    except IsADirectoryError:
        raise DumpFormatError(f"{path}: is a directory, not a dump file") from None
    except OSError as exc:
        raise DumpFormatError(f"{path}: cannot be read ({exc.strerror or exc})") from None


class _LineReader:
    """Lines of a file with their 1-based numbers, and errors that say where they happened."""

    def __init__(self, path: Path, stream: io.TextIOBase):
        self.path = path
        self.stream = stream
        self.lineno = 0
        self.frame_index = 0
        self.timestep: int | None = None

    def next(self) -> str | None:
        line = self.stream.readline()
        if not line:
            return None
        self.lineno += 1
        return line

    def take(self, count: int) -> list[str]:
        lines = list(islice(self.stream, count))
        self.lineno += len(lines)
        return lines

    def where(self, lineno: int | None = None) -> str:
        frame = f"frame {self.frame_index}"
        if self.timestep is not None:
            frame += f" (timestep {self.timestep})"
        return f"{self.path}: {frame}, line {self.lineno if lineno is None else lineno}"

    def error(self, message: str, lineno: int | None = None) -> DumpFormatError:
        return DumpFormatError(f"{self.where(lineno)}: {message}")


def _parse_frames(reader: _LineReader) -> Iterator[Frame]:
    while True:
        frame = _parse_frame(reader)
        if frame is None:
            return
        yield frame
        reader.frame_index += 1
        reader.timestep = None


def _parse_frame(reader: _LineReader) -> Frame | None:
    """The next frame, or None at a clean end of file (only blank lines left)."""
    timestep = n_atoms = box = None
    started = False
    while True:
        line = reader.next()
        if line is None:
            if started:
                raise reader.error("file ends before the frame's 'ITEM: ATOMS' section (truncated file)")
            return None
        text = line.strip()
        if not text:
            continue
        if not text.startswith("ITEM:"):
            if reader.lineno == 1:
                hint = "; is this a LAMMPS text dump?"
            elif reader.frame_index > 0 and not started:
                hint = f" (frame {reader.frame_index - 1} has more atom lines than its NUMBER OF ATOMS?)"
            else:
                hint = ""
            raise reader.error(f"expected an 'ITEM:' line, found {_short(text)}{hint}")
        started = True
        item = text[len("ITEM:"):].strip()
        if item == "TIMESTEP":
            timestep = _read_int(reader, "TIMESTEP")
            reader.timestep = timestep
        elif item == "NUMBER OF ATOMS":
            n_atoms = _read_int(reader, "NUMBER OF ATOMS")
            if n_atoms < 0:
                raise reader.error(f"NUMBER OF ATOMS is negative ({n_atoms})")
        elif item.startswith("BOX BOUNDS"):
            box = _read_box(reader, item)
        elif item in ("UNITS", "TIME"):  # written by dump_modify units/time yes; not needed here
            if reader.next() is None:
                raise reader.error(f"file ends after 'ITEM: {item}' (truncated file)")
        elif item.startswith("ATOMS"):
            missing = [name for name, value in
                       (("TIMESTEP", timestep), ("NUMBER OF ATOMS", n_atoms), ("BOX BOUNDS", box))
                       if value is None]
            if missing:
                raise reader.error(f"'ITEM: ATOMS' comes before {', '.join('ITEM: ' + m for m in missing)}")
            return _read_atoms(reader, item.split()[1:], timestep, n_atoms, box)
        else:
            raise reader.error(f"unknown section 'ITEM: {item}'")


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _read_int(reader: _LineReader, item: str) -> int:
    line = reader.next()
    if line is None:
        raise reader.error(f"file ends after 'ITEM: {item}' (truncated file)")
    words = line.split()
    try:
        if len(words) != 1:
            raise ValueError
        return int(words[0])
    except ValueError:
        raise reader.error(f"ITEM: {item} must be followed by an integer, found {_short(line.strip())}") from None


def _read_box(reader: _LineReader, item: str) -> np.ndarray:
    words = item.split()[2:]
    if any(w in ("xy", "xz", "yz", "abc", "origin") for w in words):
        raise reader.error(
            f"triclinic boxes are not supported ('ITEM: {item}'); glassmd needs an orthogonal box"
        )
    # The graph is periodic in x, y and z (minimum image); a fixed or shrink-wrapped boundary would be joined to
    # its far side. A header without flags (very old LAMMPS) says nothing and is taken as periodic.
    if words and words != ["pp", "pp", "pp"]:
        raise reader.error(
            f"boundaries {' '.join(words)} are not supported ('ITEM: {item}'); glassmd needs a box periodic in "
            "x, y and z (boundary p p p, written as 'pp pp pp')"
        )
    box = np.empty((3, 2))
    for axis in range(3):
        line = reader.next()
        if line is None:
            raise reader.error("file ends inside 'ITEM: BOX BOUNDS' (truncated file)")
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError
            box[axis] = float(parts[0]), float(parts[1])
        except ValueError:
            raise reader.error(
                f"box bounds line must hold two numbers 'lo hi', found {_short(line.strip())}"
            ) from None
    if not np.isfinite(box).all() or (box[:, 1] <= box[:, 0]).any():
        raise reader.error(f"box bounds must be finite with hi > lo, got {box.tolist()}")
    return box


def _read_atoms(reader: _LineReader, names: list[str], timestep: int, n_atoms: int, box: np.ndarray) -> Frame:
    header_line = reader.lineno
    _check_atom_columns(reader, names)
    n_columns = len(names)
    lines = reader.take(n_atoms)
    first_line = header_line + 1

    data = _parse_atom_block(lines, n_columns) if len(lines) == n_atoms else None
    if data is None:
        raise _atom_block_error(reader, lines, names, n_atoms, first_line)

    column = {name: data[:, k] for k, name in enumerate(names)}
    ids = _integer_column(reader, column["id"], "id", first_line)
    types = _integer_column(reader, column["type"], "type", first_line)

    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    repeated = np.flatnonzero(ids[1:] == ids[:-1])
    if repeated.size:
        first, second = sorted((int(order[repeated[0]]), int(order[repeated[0] + 1])))
        raise reader.error(
            f"atom id {int(ids[repeated[0]])} appears twice (lines {first_line + first} and "
            f"{first_line + second}); {repeated.size} duplicated id(s) in all",
            first_line + second,
        )

    positions = _positions(reader, column, names, box, first_line)[order]
    extra = {
        name: np.ascontiguousarray(values[order])
        for name, values in column.items()
        if name not in _RESERVED_COLUMNS
    }
    return Frame(
        timestep=timestep,
        box=box,
        ids=ids,
        types=types[order],
        positions=np.ascontiguousarray(positions),
        columns=extra,
    )


def _check_atom_columns(reader: _LineReader, names: list[str]) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise reader.error(f"column {name!r} appears twice in 'ITEM: ATOMS'")
        seen.add(name)
    for required in ("id", "type"):
        if required not in seen:
            raise reader.error(f"'ITEM: ATOMS' has no {required!r} column (columns: {' '.join(names) or 'none'})")
    if not any(set(cols) <= seen for cols, _, _ in _POSITION_STYLES):
        raise reader.error(
            "'ITEM: ATOMS' has no complete set of positions (x y z, xs ys zs, xu yu zu or xsu ysu zsu); "
            f"columns: {' '.join(names)}"
        )
    images = seen & set(_IMAGE_COLUMNS)
    if images and images != set(_IMAGE_COLUMNS):
        raise reader.error(f"image flags must come as ix iy iz together, found only {' '.join(sorted(images))}")


def _parse_atom_block(lines: list[str], n_columns: int) -> np.ndarray | None:
    """The block as an (n, n_columns) array, or None when it is malformed (then diagnosed line by line)."""
    if not lines:
        return np.empty((0, n_columns))
    try:
        data = np.loadtxt(lines, dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        return None
    return data if data.shape == (len(lines), n_columns) else None


def _atom_block_error(
    reader: _LineReader, lines: list[str], names: list[str], n_atoms: int, first_line: int
) -> DumpFormatError:
    """The first problem in an atom block that did not parse, located to its line."""
    for offset, line in enumerate(lines):
        if line.startswith("ITEM:"):
            return reader.error(
                f"found {_short(line.strip())} after {offset} atom lines, but NUMBER OF ATOMS is {n_atoms}",
                first_line + offset,
            )
    if len(lines) < n_atoms:
        return reader.error(
            f"file ends after {len(lines)} of {n_atoms} atom lines (truncated file, "
            "or NUMBER OF ATOMS does not match the atom lines)"
        )
    for offset, line in enumerate(lines):
        words = line.split()
        if len(words) != len(names):
            return reader.error(
                f"atom line has {len(words)} values but 'ITEM: ATOMS' names {len(names)} columns "
                f"({' '.join(names)})",
                first_line + offset,
            )
        for name, word in zip(names, words):
            try:
                float(word)
            except ValueError:
                return reader.error(f"non-numeric value {word!r} in column {name!r}", first_line + offset)
    return reader.error("atom data could not be parsed")


def _integer_column(reader: _LineReader, values: np.ndarray, name: str, first_line: int) -> np.ndarray:
    bad = ~np.isfinite(values) | (values != np.round(values))
    if name in ("id", "type"):
        bad |= values < 1
    if bad.any():
        offset = int(np.flatnonzero(bad)[0])
        raise reader.error(
            f"column {name!r} must hold positive integers, found {values[offset]!r}", first_line + offset
        )
    return values.astype(np.int64)


def _positions(reader: _LineReader, column: dict, names: list[str], box: np.ndarray, first_line: int) -> np.ndarray:
    lo = box[:, 0]
    length = box[:, 1] - box[:, 0]
    has_images = set(_IMAGE_COLUMNS) <= set(names)
    # Prefer a style that yields unwrapped positions, then the wrapped ones.
    candidates = [s for s in _POSITION_STYLES if not s[2] or has_images] + [s for s in _POSITION_STYLES if s[2]]
    for cols, scaled, needs_images in candidates:
        if not set(cols) <= column.keys():
            continue
        pos = np.stack([column[c] for c in cols], axis=1)
        if needs_images and has_images:
            images = np.stack([_image_column(reader, column[c], c, first_line) for c in _IMAGE_COLUMNS], axis=1)
            if scaled:
                return lo + (pos + images) * length
            return pos + images * length
        if scaled:
            return lo + pos * length
        return pos
    raise AssertionError("unreachable: _check_atom_columns ensured a position style")  # pragma: no cover


def _image_column(reader: _LineReader, values: np.ndarray, name: str, first_line: int) -> np.ndarray:
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        offset = int(np.flatnonzero(bad)[0])
        raise reader.error(f"image flag {name!r} must be an integer, found {values[offset]!r}", first_line + offset)
    return values


# --------------------------------------------------------------------------------------------- writing


def write_dump(path: str | os.PathLike, frames: Frame | Iterable[Frame], coords: str = "unwrapped") -> None:
    """Write frames as a LAMMPS ``dump custom`` text file, atomically.

    Parameters
    ----------
    path : path-like
        Output file; a name ending in ``.gz`` is gzip-compressed. The file appears complete or not at all
        (written to a temporary file in the same folder, then renamed over ``path``).
    frames : Frame or iterable of Frame
    coords : {"unwrapped", "wrapped"}
        ``"unwrapped"`` writes ``id type xu yu zu``; ``"wrapped"`` writes ``id type x y z ix iy iz``.
        Any other per-atom columns follow, in each frame's ``columns`` order. Floats are written with
        Python's shortest round-trip representation, so unwrapped positions and columns read back exactly.
    """
    if coords not in ("unwrapped", "wrapped"):
        raise InputError(f"coords must be 'unwrapped' or 'wrapped', got {coords!r}")
    frames = [frames] if isinstance(frames, Frame) else list(frames)
    if not frames:
        raise InputError(f"no frames to write to {path}")
    for index, frame in enumerate(frames):
        _check_frame(frame, index)
        if coords == "wrapped" and not np.isfinite(np.asarray(frame.positions, dtype=np.float64)).all():
            raise InputError(
                f"frame {index} (timestep {frame.timestep}): non-finite positions cannot be wrapped into the box"
            )

    _atomic_write(Path(path), (_format_frame(frame, coords) for frame in frames))


def _check_frame(frame: Frame, index: int) -> None:
    def fail(message: str) -> InputError:
        return InputError(f"frame {index} (timestep {frame.timestep}): {message}")

    n = len(np.asarray(frame.ids))
    box = np.asarray(frame.box, dtype=np.float64)
    if box.shape != (3, 2) or not np.isfinite(box).all() or (box[:, 1] <= box[:, 0]).any():
        raise fail(f"box must be a (3, 2) array of finite lo/hi bounds with hi > lo, got {box.tolist()}")
    if np.asarray(frame.types).shape != (n,):
        raise fail(f"types has shape {np.asarray(frame.types).shape}, expected ({n},)")
    if np.asarray(frame.positions).shape != (n, 3):
        raise fail(f"positions has shape {np.asarray(frame.positions).shape}, expected ({n}, 3)")
    for name, values in frame.columns.items():
        if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
            raise fail(f"column name {name!r} must be a non-empty word without spaces")
        if name in _RESERVED_COLUMNS:
            raise fail(f"column name {name!r} is reserved for ids, types and coordinates")
        if np.asarray(values).shape != (n,):
            raise fail(f"column {name!r} has shape {np.asarray(values).shape}, expected ({n},)")


def _format_frame(frame: Frame, coords: str) -> str:
    box = np.asarray(frame.box, dtype=np.float64)
    positions = np.asarray(frame.positions, dtype=np.float64)
    header = [
        "ITEM: TIMESTEP",
        str(int(frame.timestep)),
        "ITEM: NUMBER OF ATOMS",
        str(len(frame.ids)),
        "ITEM: BOX BOUNDS pp pp pp",
        *(f"{lo!r} {hi!r}" for lo, hi in box.tolist()),
    ]
    fields: list[Iterable[str]] = [
        map(str, np.asarray(frame.ids, dtype=np.int64).tolist()),
        map(str, np.asarray(frame.types, dtype=np.int64).tolist()),
    ]
    if coords == "unwrapped":
        names = ["id", "type", "xu", "yu", "zu"]
        fields += [map(repr, positions[:, k].tolist()) for k in range(3)]
    else:
        names = ["id", "type", "x", "y", "z", "ix", "iy", "iz"]
        wrapped, images = _wrap(positions, box)
        fields += [map(repr, wrapped[:, k].tolist()) for k in range(3)]
        fields += [map(str, images[:, k].tolist()) for k in range(3)]
    for name, values in frame.columns.items():
        names.append(name)
        fields.append(map(repr, np.asarray(values, dtype=np.float64).tolist()))
    header.append("ITEM: ATOMS " + " ".join(names))
    rows = map(" ".join, zip(*fields))
    return "\n".join(header) + "\n" + "".join(row + "\n" for row in rows)


def _wrap(positions: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, length = box[:, 0], box[:, 1] - box[:, 0]
    images = np.floor((positions - lo) / length)
    wrapped = positions - images * length
    # Rounding can leave a coordinate exactly on the upper bound; LAMMPS keeps [lo, hi).
    on_upper = wrapped >= lo + length
    images = np.where(on_upper, images + 1, images)
    wrapped = np.where(on_upper, wrapped - length, wrapped)
    return wrapped, images.astype(np.int64)


def _atomic_write(path: Path, chunks: Iterable[str]) -> None:
    """Write ``chunks`` into a temporary file beside ``path``, then rename it over ``path``."""
    folder = path.parent
    if not folder.is_dir():
        raise GlassmdError(f"cannot write {path}: folder {folder} does not exist")
    if path.is_dir():
        raise GlassmdError(f"cannot write {path}: it is a directory")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise GlassmdError(f"cannot write in {folder}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as raw:
            if path.name.endswith(".gz"):
                # filename="" and mtime=0 keep the temporary name and the clock out of the gzip header.
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as zipped:
                    for chunk in chunks:
                        zipped.write(chunk.encode("ascii"))
            else:
                for chunk in chunks:
                    raw.write(chunk.encode("ascii"))
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp_name, 0o666 & ~current_umask())  # mkstemp creates 0600
        os.replace(tmp_name, path)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise GlassmdError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


