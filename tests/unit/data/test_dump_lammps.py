"""Dumps written by LAMMPS itself read back identically to LAMMPS' own per-atom arrays."""

from __future__ import annotations

import numpy as np
import pytest

from glassmd.data.dump import read_dump, write_dump


def lammps_state(lmp) -> dict[str, np.ndarray]:
    """Owned atoms sorted by id: ids, types, wrapped x, image flags (ix, iy, iz), box lo and edge lengths."""
    nlocal = lmp.extract_global("nlocal")
    ids = np.array(lmp.numpy.extract_atom("id")[:nlocal], dtype=np.int64)
    order = np.argsort(ids)
    packed = np.array(lmp.numpy.extract_atom("image")[:nlocal], dtype=np.int64)
    # LAMMPS packs three image counts into one integer: 10 bits each (21 with -DLAMMPS_BIGBIG), offset by 2^(bits-1)
    bits = 10 if lmp.numpy.extract_atom("image").dtype.itemsize == 4 else 21
    mask, offset = (1 << bits) - 1, 1 << (bits - 1)
    images = np.stack([((packed >> (k * bits)) & mask) - offset for k in range(3)], axis=1)
    boxlo, boxhi, *_ = lmp.extract_box()
    return {
        "ids": ids[order],
        "types": np.array(lmp.numpy.extract_atom("type")[:nlocal], dtype=np.int64)[order],
        "x": np.array(lmp.numpy.extract_atom("x")[:nlocal], dtype=np.float64)[order],
        "images": images[order],
        "lo": np.array(boxlo, dtype=np.float64),
        "lengths": np.array(boxhi, dtype=np.float64) - np.array(boxlo, dtype=np.float64),
    }


@pytest.fixture(scope="module")
def state(ka_lammps):
    state = lammps_state(ka_lammps)
    assert (state["images"] != 0).any(), "the run should carry atoms across the periodic boundaries"
    return state


def test_wrapped_with_image_flags_is_exact(ka_lammps, state, tmp_path):
    path = tmp_path / "wrapped.dump"
    ka_lammps.command(f"write_dump all custom {path} id type x y z ix iy iz modify format float %.17g")
    frame = read_dump(path)[0]
    np.testing.assert_array_equal(frame.ids, state["ids"])
    np.testing.assert_array_equal(frame.types, state["types"])
    np.testing.assert_array_equal(frame.positions, state["x"] + state["images"] * state["lengths"])
    np.testing.assert_array_equal(frame.box[:, 0], state["lo"])
    np.testing.assert_array_equal(frame.box_lengths, state["lengths"])
    assert frame.columns == {}


@pytest.mark.parametrize(
    "style",
    [
        "custom {path} id type xu yu zu modify format float %.17g",
        "custom {path} type xsu ysu zsu id modify format float %.17g",
        "custom {path} id type xs ys zs ix iy iz modify format float %.17g",
        'atom {path} modify image yes format line "%d %d %.17g %.17g %.17g %d %d %d"',
    ],
    ids=["xu", "xsu", "xs+image", "atom-style"],
)
def test_other_coordinate_styles_give_the_unwrapped_positions(ka_lammps, state, tmp_path, style):
    path = tmp_path / "styled.dump"
    ka_lammps.command("write_dump all " + style.format(path=path))
    frame = read_dump(path)[0]
    np.testing.assert_array_equal(frame.ids, state["ids"])
    np.testing.assert_array_equal(frame.types, state["types"])
    # scaled coordinates go through x * (1/L) and back, so they agree to rounding only
    np.testing.assert_allclose(frame.positions, state["x"] + state["images"] * state["lengths"], rtol=0, atol=1e-12)


def test_trajectory_of_several_frames_and_our_rewrite(ka_lammps, tmp_path):
    path = tmp_path / "traj.dump"
    ka_lammps.commands_string(f"""
        dump traj all custom 20 {path} id type x y z ix iy iz vx
        dump_modify traj format float %.17g
        run 40
        undump traj
    """)
    frames = read_dump(path)
    steps = [f.timestep for f in frames]
    assert steps == [steps[0], steps[0] + 20, steps[0] + 40]
    state = lammps_state(ka_lammps)
    last = frames[-1]
    np.testing.assert_array_equal(last.positions, state["x"] + state["images"] * state["lengths"])
    assert not np.array_equal(frames[0].positions, last.positions)
    nlocal = ka_lammps.extract_global("nlocal")
    order = np.argsort(ka_lammps.numpy.extract_atom("id")[:nlocal])
    np.testing.assert_array_equal(last.columns["vx"], ka_lammps.numpy.extract_atom("v")[:nlocal][order, 0])

    # Our own writer reproduces every frame exactly, and LAMMPS can read its output back.
    ours = tmp_path / "ours.dump"
    write_dump(ours, frames)
    for a, b in zip(frames, read_dump(ours)):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.columns["vx"], b.columns["vx"])
    ka_lammps.command("run 10")  # move away from the written state, so reading it back is visible
    moved = lammps_state(ka_lammps)
    assert not np.allclose(moved["x"] + moved["images"] * moved["lengths"], last.positions, rtol=0, atol=1e-6)
    ka_lammps.command(f"read_dump {ours} {steps[-1]} x y z vx box yes")
    after = lammps_state(ka_lammps)
    np.testing.assert_allclose(after["x"] + after["images"] * after["lengths"], last.positions, rtol=0, atol=1e-12)
