"""Every malformed dump gives one DumpFormatError naming file, frame, timestep and line; no partial reads."""

from __future__ import annotations

import gzip
import re

import pytest

from glassmd.data.dump import DumpFormatError, read_dump

GOOD_FRAME = """ITEM: TIMESTEP
{ts}
ITEM: NUMBER OF ATOMS
3
ITEM: BOX BOUNDS pp pp pp
0 5
0 5
0 5
ITEM: ATOMS id type x y z
1 1 0.5 0.5 0.5
2 2 1.5 1.5 1.5
3 1 2.5 2.5 2.5
"""


def two_frames() -> list[str]:
    return (GOOD_FRAME.format(ts=0) + GOOD_FRAME.format(ts=50)).splitlines(keepends=True)


def error_for(tmp_path, lines: list[str], name: str = "bad.dump") -> str:
    path = tmp_path / name
    path.write_text("".join(lines))
    with pytest.raises(DumpFormatError) as info:
        read_dump(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    return message


def replace_line(lines: list[str], lineno: int, text: str) -> list[str]:
    lines = list(lines)
    lines[lineno - 1] = text + "\n"
    return lines



def test_two_frame_template_is_valid(tmp_path):
    path = tmp_path / "good.dump"
    path.write_text("".join(two_frames()))
    assert [f.timestep for f in read_dump(path)] == [0, 50]


def test_truncated_inside_atoms(tmp_path):
    message = error_for(tmp_path, two_frames()[:-1])
    assert "frame 1 (timestep 50)" in message and "line 23" in message
    assert "2 of 3 atom lines" in message


def test_truncated_inside_header(tmp_path):
    message = error_for(tmp_path, two_frames()[:16])
    assert "frame 1 (timestep 50)" in message and "truncated" in message


def test_truncated_gzip_stream(tmp_path):
    data = gzip.compress("".join(two_frames()).encode())
    path = tmp_path / "cut.dump.gz"
    path.write_bytes(data[: len(data) - 30])
    with pytest.raises(DumpFormatError, match=re.escape(str(path)) + ".*(truncated|corrupt)"):
        read_dump(path)


def test_wrong_column_count(tmp_path):
    message = error_for(tmp_path, replace_line(two_frames(), 24, "2 2 1.5 1.5"))
    assert "frame 1 (timestep 50), line 24" in message and "4 values" in message and "5 columns" in message


def test_non_numeric_value(tmp_path):
    message = error_for(tmp_path, replace_line(two_frames(), 12, "3 1 2.5 abc 2.5"))
    assert "frame 0 (timestep 0), line 12" in message and "'abc'" in message and "'y'" in message


def test_non_integer_type(tmp_path):
    message = error_for(tmp_path, replace_line(two_frames(), 11, "2 1.5 1.5 1.5 1.5"))
    assert "frame 0 (timestep 0), line 11" in message and "'type'" in message


@pytest.mark.parametrize("header, missing", [("id x y z", "'type'"), ("type x y z", "'id'"), ("id type x y", "positions")])
def test_missing_required_columns(tmp_path, header, missing):
    lines = replace_line(two_frames(), 9, f"ITEM: ATOMS {header}")
    lines = [lines[i] if i < 9 else " ".join(lines[i].split()[:4]) + "\n" for i in range(12)]
    message = error_for(tmp_path, lines)
    assert "frame 0 (timestep 0), line 9" in message and missing in message


def test_duplicated_atom_ids(tmp_path):
    message = error_for(tmp_path, replace_line(two_frames(), 24, "1 1 2.5 2.5 2.5"))
    assert "frame 1 (timestep 50)" in message and "id 1 appears twice" in message
    assert "lines 22 and 24" in message


def test_number_of_atoms_larger_than_atom_lines(tmp_path):
    message = error_for(tmp_path, replace_line(two_frames(), 4, "4"))
    assert "frame 0 (timestep 0), line 13" in message and "NUMBER OF ATOMS is 4" in message


def test_number_of_atoms_smaller_than_atom_lines(tmp_path):
    message = error_for(tmp_path, replace_line(two_frames(), 4, "2"))
    assert "line 12" in message and "frame 0 has more atom lines than its NUMBER OF ATOMS" in message


def test_triclinic_box_is_refused(tmp_path):
    lines = two_frames()
    lines[4:8] = ["ITEM: BOX BOUNDS xy xz yz pp pp pp\n", "0 5 0.1\n", "0 5 0\n", "0 5 0\n"]
    message = error_for(tmp_path, lines)
    assert "triclinic boxes are not supported" in message and "line 5" in message


@pytest.mark.parametrize("flags", ["ff pp pp", "pp pp fs", "pp sm pp"])
def test_non_periodic_box_is_refused(tmp_path, flags):
    lines = two_frames()
    lines[4] = f"ITEM: BOX BOUNDS {flags}\n"
    message = error_for(tmp_path, lines)
    assert f"boundaries {flags} are not supported" in message and "line 5" in message


def test_box_bounds_without_flags_read_as_periodic(tmp_path):
    lines = two_frames()
    lines[4] = "ITEM: BOX BOUNDS\n"
    path = tmp_path / "old.dump"
    path.write_text("".join(lines))
    assert len(read_dump(path)) == 2


def test_not_a_dump_and_empty_file(tmp_path):
    message = error_for(tmp_path, ["hello world\n"])
    assert "line 1" in message and "LAMMPS text dump" in message
    assert "no frames" in error_for(tmp_path, [], name="empty.dump")
    binary = tmp_path / "binary.dump"
    binary.write_bytes(b"ITEM: TIMESTEP\n\xff\xfe\x00\x01")
    with pytest.raises(DumpFormatError, match="binary data"):
        read_dump(binary)
