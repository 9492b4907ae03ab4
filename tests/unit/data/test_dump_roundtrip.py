"""Reading and writing dumps: every coordinate style, gzip, several frames, propensity columns."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from glassmd.data.dump import (
    DumpFormatError,
    Frame,
    MissingColumnError,
    iter_dump,
    parse_propensity_column,
    propensity_column,
    read_dump,
    write_dump,
)
from glassmd.errors import GlassmdError


def assert_frames_identical(a: Frame, b: Frame) -> None:
    assert a.timestep == b.timestep
    np.testing.assert_array_equal(a.box, b.box)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.types, b.types)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert list(a.columns) == list(b.columns)
    for name in a.columns:
        np.testing.assert_array_equal(a.columns[name], b.columns[name])


@pytest.mark.parametrize("suffix", [".dump", ".dump.gz"])
def test_unwrapped_round_trip_is_exact_for_several_frames(tmp_path, frame_factory, suffix):
    frames = [frame_factory(seed=s, timestep=100 * s) for s in range(3)]
    path = tmp_path / f"set{suffix}"
    write_dump(path, frames)
    back = read_dump(path)
    assert len(back) == 3
    for a, b in zip(frames, back):
        assert_frames_identical(a, b)
    assert back[0].ids.dtype == np.int64 and back[0].types.dtype == np.int64
    assert back[0].positions.dtype == np.float64
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == suffix.endswith(".gz")


def test_wrapped_round_trip_restores_positions(tmp_path, frame_factory):
    frame = frame_factory(n=50)
    path = tmp_path / "wrapped.dump"
    write_dump(path, frame, coords="wrapped")
    text = path.read_text().splitlines()
    assert text[8].split()[:8] == ["ITEM:", "ATOMS", "id", "type", "x", "y", "z", "ix"]
    wrapped = np.array([line.split()[2:5] for line in text[9:]], dtype=float)
    lo, hi = frame.box[:, 0], frame.box[:, 1]
    assert ((wrapped >= lo) & (wrapped < hi)).all()
    images = np.array([line.split()[5:8] for line in text[9:]], dtype=int)
    assert (images != 0).any()  # the fixture puts atoms outside the box
    back = read_dump(path)[0]
    # x + ix * L reproduces the original up to rounding of the wrap itself
    np.testing.assert_allclose(back.positions, frame.positions, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(back.columns["propensity_t10"], frame.columns["propensity_t10"])


def _write_text(path, header_cols, rows, box=((0.0, 10.0), (-5.0, 5.0), (1.0, 3.0)), timestep=7):
    lines = ["ITEM: TIMESTEP", str(timestep), "ITEM: NUMBER OF ATOMS", str(len(rows)), "ITEM: BOX BOUNDS pp pp pp"]
    lines += [f"{lo} {hi}" for lo, hi in box]
    lines.append("ITEM: ATOMS " + header_cols)
    lines += rows
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "header, rows, expected",
    [
        # unwrapped, columns in a shuffled order
        ("xu type yu id zu", ["12.5 2 -7.0 2 1.5", "0.25 1 4.0 1 2.75"], [[0.25, 4.0, 2.75], [12.5, -7.0, 1.5]]),
        # wrapped with image flags: x + i * L with L = (10, 10, 2)
        ("id type x y z ix iy iz", ["1 1 1.0 2.0 1.5 1 -1 2", "2 2 9.5 -4.0 2.5 0 0 -1"],
         [[11.0, -8.0, 5.5], [9.5, -4.0, 0.5]]),
        # scaled: lo + s * L
        ("id type xs ys zs", ["2 1 0.5 0.5 0.5", "1 2 0.1 0.9 0.0"], [[1.0, 4.0, 1.0], [5.0, 0.0, 2.0]]),
        # scaled with images: lo + (s + i) * L
        ("id type xs ys zs ix iy iz", ["1 1 0.5 0.25 0.5 -1 1 3"], [[-5.0, 7.5, 8.0]]),
        # scaled unwrapped
        ("id type xsu ysu zsu", ["1 1 1.5 -0.5 2.0"], [[15.0, -10.0, 5.0]]),
        # plain x y z without images: as given
        ("id type x y z", ["1 1 3.0 -4.5 2.0"], [[3.0, -4.5, 2.0]]),
    ],
)
def test_every_coordinate_style_gives_sorted_cartesian_positions(tmp_path, header, rows, expected):
    frame = read_dump(_write_text(tmp_path / "in.dump", header, rows))[0]
    np.testing.assert_allclose(frame.positions, expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(frame.ids, np.arange(1, len(rows) + 1))
    assert frame.timestep == 7
    assert frame.columns == {}


def test_unwrapped_columns_win_over_wrapped_ones_and_extra_columns_are_kept(tmp_path):
    path = _write_text(tmp_path / "in.dump", "id type x y z xu yu zu vx propensity_t3",
                       ["2 1 1 1 1 11 21 1 0.5 0.75", "1 2 2 2 2 2 2 2 -0.5 0.125"])
    frame = read_dump(path)[0]
    np.testing.assert_array_equal(frame.positions, [[2, 2, 2], [11, 21, 1]])
    np.testing.assert_array_equal(frame.types, [2, 1])
    assert list(frame.columns) == ["vx", "propensity_t3"]
    np.testing.assert_array_equal(frame.columns["vx"], [-0.5, 0.5])
    np.testing.assert_array_equal(frame.propensity(3), [0.125, 0.75])


def test_units_and_time_items_and_gzip_detected_by_content(tmp_path):
    text = ("ITEM: UNITS\nlj\nITEM: TIME\n0.5\nITEM: TIMESTEP\n100\nITEM: NUMBER OF ATOMS\n1\n"
            "ITEM: BOX BOUNDS pp pp pp\n0 1\n0 1\n0 1\nITEM: ATOMS id type x y z\n1 1 0.5 0.5 0.5\n"
            "ITEM: TIME\n1.0\nITEM: TIMESTEP\n200\nITEM: NUMBER OF ATOMS\n1\n"
            "ITEM: BOX BOUNDS pp pp pp\n0 1\n0 1\n0 1\nITEM: ATOMS id type x y z\n1 1 0.25 0.5 0.5\n")
    path = tmp_path / "no_suffix.txt"  # compressed although the name does not say so
    path.write_bytes(gzip.compress(text.encode()))
    frames = list(iter_dump(path))
    assert [f.timestep for f in frames] == [100, 200]
    assert frames[1].positions[0, 0] == 0.25


def test_propensity_helpers(frame_factory):
    assert propensity_column(10) == "propensity_t10"
    assert propensity_column(0.5) == "propensity_t0.5"
    assert propensity_column(1e6) == "propensity_t1e+06"
    assert parse_propensity_column("propensity_t1e+06") == 1e6
    assert parse_propensity_column("propensity_t0.5") == 0.5
    for name in ("propensity_t", "propensity_tx", "c_msd[4]", "propensity_t1_0", "propensity_tnan"):
        assert parse_propensity_column(name) is None
    frame = frame_factory()
    assert frame.propensity_times() == [0.5, 10.0]
    np.testing.assert_array_equal(frame.propensity(10.0), frame.columns["propensity_t10"])
    np.testing.assert_array_equal(frame.box_lengths, [4.75, 4.0, 5.123456789012345])
    with pytest.raises(MissingColumnError, match=r"propensity_t20.*0\.5, 10") as info:
        frame.propensity(20)
    assert isinstance(info.value, GlassmdError) and isinstance(info.value, KeyError)


def test_propensity_accepts_other_spellings_of_the_same_time(tmp_path):
    path = _write_text(tmp_path / "in.dump", "id type x y z propensity_t10.0", ["1 1 0 0 1.5 4.5"])
    assert read_dump(path)[0].propensity(10) == pytest.approx([4.5])


def test_write_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, frame_factory):
    path = tmp_path / "keep.dump"
    write_dump(path, frame_factory())
    before = path.read_bytes()
    bad = frame_factory()
    bad.columns["broken"] = np.zeros(3)  # wrong length
    with pytest.raises(GlassmdError, match="broken"):
        write_dump(path, [frame_factory(), bad])
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.dump"]  # no temporary file left behind


def test_write_rejects_bad_arguments(tmp_path, frame_factory):
    with pytest.raises(GlassmdError, match="coords"):
        write_dump(tmp_path / "a.dump", frame_factory(), coords="scaled")
    with pytest.raises(GlassmdError, match="no frames"):
        write_dump(tmp_path / "a.dump", [])
    with pytest.raises(GlassmdError, match="does not exist"):
        write_dump(tmp_path / "missing" / "a.dump", frame_factory())
    reserved = frame_factory()
    reserved.columns["xu"] = np.zeros(7)
    with pytest.raises(GlassmdError, match="reserved"):
        write_dump(tmp_path / "a.dump", reserved)
    with pytest.raises(GlassmdError, match="is a directory"):
        write_dump(tmp_path, frame_factory())
    not_finite = frame_factory()
    not_finite.positions[2, 1] = np.nan
    with pytest.raises(GlassmdError, match="non-finite"):
        write_dump(tmp_path / "a.dump", not_finite, coords="wrapped")
    assert sorted(os.listdir(tmp_path)) == []


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DumpFormatError, match="no such dump file"):
        read_dump(tmp_path / "nope.dump")
    with pytest.raises(DumpFormatError, match="is a directory"):
        read_dump(tmp_path)
