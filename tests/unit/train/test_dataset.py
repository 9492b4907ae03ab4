"""Labelled data sets: discovery, checks, the split file and batching of graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from glassmd.data.dump import write_dump
from glassmd.errors import InputError
from glassmd.train.dataset import (
    build_configurations,
    collate,
    find_dump_files,
    load_labelled_set,
    make_split,
    map_types,
    read_split,
    synthetic_frames,
    write_split,
)


@pytest.fixture
def data_dir(tmp_path):
    frames = synthetic_frames(5, 96, times=(10.0, 20.0), seed=3)
    folder = tmp_path / "data"
    folder.mkdir()
    write_dump(folder / "a.dump", frames[:2])
    write_dump(folder / "b.dump.gz", frames[2:])
    (folder / "notes.txt").write_text("not a dump")
    return folder


def test_directory_expands_to_its_dumps_and_ids_name_file_and_frame(data_dir):
    files = find_dump_files([data_dir])
    assert [f.name for f in files] == ["a.dump", "b.dump.gz"]
    labelled = load_labelled_set(files, [10.0, 20.0])
    assert labelled.ids == ["a.dump#0", "a.dump#1", "b.dump.gz#0", "b.dump.gz#1", "b.dump.gz#2"]


def test_same_file_names_in_two_folders_are_told_apart_by_their_folders(tmp_path):
    frames = synthetic_frames(3, 96, times=(10.0,))
    for run, part in (("run1", frames[:1]), ("run2", frames[1:])):
        (tmp_path / run).mkdir()
        write_dump(tmp_path / run / "config.dump", part)
    files = find_dump_files([tmp_path / "run1", tmp_path / "run2", tmp_path / "run1" / "config.dump"])
    assert len(files) == 2
    labelled = load_labelled_set(files, [10.0])
    assert labelled.ids == ["run1/config.dump#0", "run2/config.dump#0", "run2/config.dump#1"]
    assert np.array_equal(labelled.subset(["run2/config.dump#1"])[0].positions, frames[2].positions)


def test_one_dump_with_and_without_gzip_is_refused(tmp_path):
    frames = synthetic_frames(2, 96, times=(10.0,))
    write_dump(tmp_path / "x.dump", frames)
    write_dump(tmp_path / "x.dump.gz", frames)
    with pytest.raises(InputError, match="with and without gzip"):
        find_dump_files([tmp_path])


def test_missing_label_names_file_frame_and_present_times(data_dir):
    with pytest.raises(InputError) as info:
        load_labelled_set(find_dump_files([data_dir]), [10.0, 50.0])
    message = str(info.value)
    assert "a.dump" in message and "frame 0" in message and "propensity_t50" in message and "10, 20" in message


def test_mismatched_particle_counts_name_both_configurations(data_dir):
    write_dump(data_dir / "c.dump", synthetic_frames(1, 80, times=(10.0, 20.0)))
    with pytest.raises(InputError, match=r"a\.dump#0 has 96 particles, c\.dump#0 has 80"):
        load_labelled_set(find_dump_files([data_dir]), [10.0])


def test_missing_inputs_and_empty_directories(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        find_dump_files([tmp_path / "nope"])
    with pytest.raises(InputError, match="holds no dump files"):
        find_dump_files([tmp_path])


def test_split_is_a_seeded_partition_and_round_trips(tmp_path):
    ids = [f"f.dump#{k}" for k in range(10)]
    split = make_split(ids, {"train": 0.5, "validation": 0.3, "test": 0.2}, seed=7)
    assert [len(split[k]) for k in ("train", "validation", "test")] == [5, 3, 2]
    assert sorted(sum(split.values(), [])) == sorted(ids)
    assert split == make_split(ids, {"train": 0.5, "validation": 0.3, "test": 0.2}, seed=7)
    assert split != make_split(ids, {"train": 0.5, "validation": 0.3, "test": 0.2}, seed=8)
    path = tmp_path / "split.json"
    write_split(path, split)
    assert json.loads(path.read_text()) == split
    assert read_split(path, ids) == split
    with pytest.raises(InputError, match="not in the inputs"):
        read_split(path, ids[:5])
    path.write_text(json.dumps({"train": ["x"], "validation": ["x"], "test": []}))
    with pytest.raises(InputError, match="both 'train' and 'validation'"):
        read_split(path)


def test_unmapped_lammps_type_is_an_error():
    assert map_types(np.array([1, 2, 2]), {1: 0, 2: 1}).tolist() == [0, 1, 1]
    with pytest.raises(InputError, match=r"LAMMPS atom type\(s\) \[3\]"):
        map_types(np.array([1, 3]), {1: 0, 2: 1})


def test_batches_concatenate_graphs_with_offsets(data_dir):
    labelled = load_labelled_set(find_dump_files([data_dir]), [10.0, 20.0])
    configs = build_configurations(labelled, labelled.ids[:3], [10.0, 20.0], {1: 0, 2: 1}, [0], cutoff=2.0)
    batch = collate(configs)
    n = [c.num_nodes for c in configs]
    assert batch.sizes == n and batch.types.shape == (sum(n),) and batch.labels.shape == (sum(n), 2)
    e0, e1 = configs[0].edge_index.shape[1], configs[1].edge_index.shape[1]
    assert torch.equal(batch.edge_index[:, e0 : e0 + e1], configs[1].edge_index + n[0])
    assert batch.loss_mask.sum() == sum(int((c.types == 0).sum()) for c in configs)
    frame = labelled.frames[1]
    assert np.allclose(configs[1].labels[:, 1].numpy(), frame.propensity(20.0), rtol=1e-6)
