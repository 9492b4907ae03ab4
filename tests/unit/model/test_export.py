"""The exported TorchScript file: round trip, metadata, layer-by-layer evaluation with ghost exchange."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from glassmd.cli import main
from glassmd.data.graph import periodic_graph
from glassmd.model import GlassGNN, ModelConfig, export_model, load_model_file


def _trained_looking(model):
    with torch.no_grad():
        for layer in model.layers:
            layer.norm.running_mean.uniform_(-0.5, 0.5)
            layer.norm.running_var.uniform_(0.5, 2.0)
            layer.norm.running_sq.uniform_(0.5, 2.0)
    model.set_label_normalization([1.5, 3.0], [0.2, 0.7])
    return model.eval()


CONFIG = ModelConfig(layers=3, output_names=("propensity_t10", "propensity_t20"), output_times=(10, 20))


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_round_trip_plain_torch_jit_load(tmp_path, ka_small, dtype, tolerance):
    positions, types, box = ka_small
    model = _trained_looking(GlassGNN.create(CONFIG, dtype))
    path = export_model(model, tmp_path / "model.pt")
    loaded = torch.jit.load(str(path))  # no glassmd code involved
    edge_index, edge_vec = periodic_graph(positions, box, 2.0)
    pos, t, ev = torch.from_numpy(positions).to(dtype), torch.from_numpy(types), edge_vec.to(dtype)
    with torch.no_grad():
        expected = model.denormalize(model(t, edge_index, ev))
        got = loaded(pos, t, edge_index, ev)
    assert got.shape == (len(types), 2) and got.dtype == dtype
    torch.testing.assert_close(got, expected, atol=tolerance, rtol=0)


def test_readme_loading_snippet_in_a_fresh_interpreter(tmp_path):
    """The README's recipe for plain torch: `import glassmd.model` alone registers the operators that
    torch.jit.load resolves when it reads the file (in this process other imports already did)."""
    model = _trained_looking(GlassGNN.create(CONFIG))
    path = export_model(model, tmp_path / "model.pt")
    script = (
        "import json, sys, torch\n"
        "import glassmd.model\n"
        "extra = {'metadata.json': ''}\n"
        "m = torch.jit.load(sys.argv[1], _extra_files=extra)\n"
        "print(json.loads(m.metadata()) == json.loads(extra['metadata.json']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_metadata_in_file_and_method(tmp_path):
    model = _trained_looking(GlassGNN.create(CONFIG))
    path = export_model(model, tmp_path / "model.pt", metadata={"training_run": "unit-test"})
    module, meta = load_model_file(path)
    assert json.loads(module.metadata()) == meta
    assert meta["format"] == "glassmd-model"
    assert meta["cutoff"] == 2.0
    assert meta["type_names"] == ["A", "B"]
    assert meta["output_names"] == ["propensity_t10", "propensity_t20"]
    assert meta["output_times"] == [10.0, 20.0]
    assert meta["label_mean"] == pytest.approx([1.5, 3.0])
    assert meta["label_std"] == pytest.approx([0.2, 0.7])
    assert meta["config"]["l_max"] == 3 and meta["training_run"] == "unit-test"
    assert ModelConfig.from_dict(meta["config"]) == CONFIG


def _split_into_ranks(positions, box, cutoff, n_ranks=2):
    """Mimic LAMMPS domain decomposition along x: per rank, owned atoms then ghost copies (periodic images
    within ``cutoff`` of the sub-domain), each ghost remembering its owner's rank and local index."""
    n = len(positions)
    owner_rank = np.minimum((positions[:, 0] / box[0] * n_ranks).astype(int), n_ranks - 1)
    local_index = np.zeros(n, dtype=int)
    for r in range(n_ranks):
        local_index[owner_rank == r] = np.arange((owner_rank == r).sum())
    shifts = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]) * box
    ranks = []
    for r in range(n_ranks):
        lo = np.array([r * box[0] / n_ranks, 0.0, 0.0]) - cutoff
        hi = np.array([(r + 1) * box[0] / n_ranks, box[1], box[2]]) + cutoff
        owned = np.flatnonzero(owner_rank == r)
        atom_ids, coords = list(owned), list(positions[owned])
        for s in shifts:
            image = positions + s
            inside = np.all((image >= lo) & (image < hi), axis=1)
            is_self = (owner_rank == r) & np.all(s == 0)
            for j in np.flatnonzero(inside & ~is_self):
                atom_ids.append(j)
                coords.append(image[j])
        atom_ids, coords = np.array(atom_ids), np.array(coords)
        n_local = len(owned)
        # Edges j -> i for local receivers only: ghosts are never updated locally.
        d = coords[None, :, :] - coords[:n_local, None, :]
        dist = np.linalg.norm(d, axis=-1)
        i, j = np.nonzero((dist < cutoff) & (dist > 0))
        ranks.append(
            dict(
                atoms=atom_ids,
                n_local=n_local,
                edge_index=torch.from_numpy(np.stack([j, i])),
                edge_vec=torch.from_numpy(coords[j] - coords[i]),
                ghost_owner=owner_rank[atom_ids[n_local:]],
                ghost_local=local_index[atom_ids[n_local:]],
            )
        )
    return ranks


@pytest.mark.parametrize("paired", [False, True])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_layer_by_layer_with_ghost_exchange_equals_forward(tmp_path, ka_small, dtype, tolerance, paired):
    """As the fix runs it: per rank, local atoms and ghosts; with prepare_edges (paired edges, the ghost edges
    unpaired) or edge_features (every edge its own row)."""
    positions, types, box = ka_small
    model = _trained_looking(GlassGNN.create(CONFIG, dtype))
    module, _ = load_model_file(export_model(model, tmp_path / "model.pt"))
    edge_index, edge_vec = periodic_graph(positions, box, 2.0)
    with torch.no_grad():
        expected = module(torch.from_numpy(positions).to(dtype), torch.from_numpy(types), edge_index, edge_vec.to(dtype))
        ranks = _split_into_ranks(positions, box, 2.0)
        assert all(len(r["atoms"]) > r["n_local"] for r in ranks), "the test needs ghost atoms"
        for r in ranks:
            r["node_attr"] = module.node_attributes(torch.from_numpy(types[r["atoms"]]))
            if paired:
                r["edge_index"], r["edge_feat"] = module.prepare_edges(r["edge_index"], r["edge_vec"].to(dtype))
                feat = r["edge_feat"]  # edge blocks (glassmd::edge_blocks): the last row holds the lane kinds
                n_pairs = int((feat[:, -1] == 2).sum()) if feat.dim() == 3 else r["edge_index"].shape[1] - feat.shape[0]
                assert 0 < 2 * n_pairs < r["edge_index"].shape[1]
            else:
                r["edge_feat"] = module.edge_features(r["edge_vec"].to(dtype))
            r["h"] = torch.zeros(len(r["atoms"]), 0, dtype=dtype)
        for k in range(module.num_layers()):
            for r in ranks:
                r["h"] = module.layer(k, r["h"], r["node_attr"], r["edge_index"], r["edge_feat"])
                assert r["h"].shape == (len(r["atoms"]), module.feature_dim())
            for r in ranks:  # forward communication: owners' values overwrite ghost rows
                r["h"][r["n_local"] :] = torch.stack(
                    [ranks[o]["h"][i] for o, i in zip(r["ghost_owner"], r["ghost_local"])]
                )
        got = torch.empty_like(expected)
        for r in ranks:
            got[r["atoms"][: r["n_local"]]] = module.readout(r["h"][: r["n_local"]])
    torch.testing.assert_close(got, expected, atol=tolerance, rtol=0)


def test_export_command_writes_a_loadable_untrained_model(tmp_path):
    out = tmp_path / "fresh.pt"
    assert main(["export", "-o", str(out), "--lmax", "1", "--layers", "2"]) == 0
    _, meta = load_model_file(out)
    assert meta["config"]["l_max"] == 1 and meta["num_layers"] == 2


def test_export_from_checkpoint(tmp_path, ka_small):
    from glassmd.model import checkpoint_payload

    positions, types, box = ka_small
    model = _trained_looking(GlassGNN.create(CONFIG))
    torch.save(checkpoint_payload(model), tmp_path / "best.ckpt")
    assert main(["export", "-o", str(tmp_path / "m.pt"), "--checkpoint", str(tmp_path / "best.ckpt")]) == 0
    module, _ = load_model_file(tmp_path / "m.pt")
    edge_index, edge_vec = periodic_graph(positions, box, 2.0)
    with torch.no_grad():
        expected = model.denormalize(model(torch.from_numpy(types), edge_index, edge_vec.float()))
        got = module(torch.from_numpy(positions).float(), torch.from_numpy(types), edge_index, edge_vec.float())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_export_again_from_a_model_file(tmp_path, ka_small):
    """`glassmd export --model OLD -o NEW`: same weights, same metadata entries, this glassmd's code."""
    positions, types, box = ka_small
    model = _trained_looking(GlassGNN.create(CONFIG))
    old = export_model(model, tmp_path / "old.pt", {"training": {"run": "somewhere"}})
    assert main(["export", "--model", str(old), "-o", str(tmp_path / "new.pt")]) == 0
    (old_module, old_meta), (new_module, new_meta) = load_model_file(old), load_model_file(tmp_path / "new.pt")
    assert new_meta == old_meta
    edge_index, edge_vec = periodic_graph(positions, box, 2.0)
    args = (torch.from_numpy(positions).float(), torch.from_numpy(types), edge_index, edge_vec.float())
    with torch.no_grad():
        torch.testing.assert_close(new_module(*args), old_module(*args), atol=1e-6, rtol=0)
    assert main(["export", "--model", str(old), "--checkpoint", "x.ckpt", "-o", str(tmp_path / "both.pt")]) == 2
    assert not (tmp_path / "both.pt").exists()


def test_export_does_not_leave_partial_files_on_failure(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"the user's previous model")
    with pytest.raises(Exception):
        export_model(object(), target)  # not a model: fails before anything is written
    assert target.read_bytes() == b"the user's previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
