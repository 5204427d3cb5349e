"""The GNN-space supernet: every path runs, weights are shared, checkpoints resume exactly."""
from __future__ import annotations

import dataclasses
import random
import re

import optuna
import pytest
import torch

from nas.supernet import (
    GNNSupernet, SupernetTrainConfig, build_supernet, has_checkpoint, load_supernet, parse_options, read_meta,
    train_supernet,
)
from search_spaces.gnn import (
    ACTIVATIONS, NORMS, SKIPS, GNNArchitecture, GNNSpace, LayerSpec,
)


@dataclasses.dataclass
class TinyTask:
    """The part of :class:`nas.tasks.Task` the supernet code reads, over an inline graph."""

    data: object
    name: str = "tiny"
    level: str = "node"
    num_features: int = 4
    num_classes: int = 3


def _arch(*layers: LayerSpec, skip: str = "none") -> GNNArchitecture:
    return GNNArchitecture(layers=layers, skip=skip)


def _supernet(**options) -> GNNSupernet:
    torch.manual_seed(0)
    return GNNSupernet(4, 3, "node", **{"max_depth": 2, "widths": (16,), **options})


def test_every_candidate_path_runs_and_matches_the_extracted_model(tiny_graph) -> None:
    supernet = _supernet(widths=(16,)).eval()
    d = tiny_graph
    for op in supernet.ops:
        for width in supernet.widths:
            if width % op.heads:
                continue
            layer = LayerSpec(op.conv, width, op.heads, aggregation=op.aggregation, norm="batch")
            for arch in (_arch(layer), _arch(LayerSpec("gcn", 16), layer, skip="residual")):
                out = supernet(d.x, d.edge_index, arch=arch)
                assert out.shape == (6, 3) and torch.isfinite(out).all(), op.name
                expected = supernet.extract(arch).eval()(d.x, d.edge_index)
                torch.testing.assert_close(out, expected, msg=f"{op.name} {arch.short()}")


@pytest.fixture(scope="module")
def small_supernet() -> GNNSupernet:
    return _supernet(widths=(16, 32), convs=("gcn", "gat", "sage")).eval()


@pytest.mark.parametrize("skip", SKIPS)
@pytest.mark.parametrize("norm", NORMS)
def test_skips_norms_and_activations_match_the_stand_alone_model(
    tiny_graph, small_supernet, skip, norm,
) -> None:
    supernet = small_supernet
    for activation in ACTIVATIONS:
        arch = _arch(LayerSpec("sage", 16, norm=norm, activation=activation),
                     LayerSpec("gat", 32, 2, norm=norm), skip=skip)
        out = supernet(tiny_graph.x, tiny_graph.edge_index, arch=arch)
        model = supernet.extract(arch).eval()
        torch.testing.assert_close(out, model(tiny_graph.x, tiny_graph.edge_index))


def test_gradients_reach_only_the_path(tiny_graph) -> None:
    supernet = _supernet()
    arch = _arch(LayerSpec("gcn", 16), LayerSpec("gin", 16, aggregation="max"))
    supernet(tiny_graph.x, tiny_graph.edge_index, arch=arch).sum().backward()
    used = {id(p) for m in supernet.path_modules(arch) for p in m.parameters()}
    for name, param in supernet.named_parameters():
        assert (param.grad is not None) == (id(param) in used), name


def test_architectures_sharing_an_op_share_its_module_and_tensors(tiny_graph) -> None:
    supernet = _supernet()
    a = _arch(LayerSpec("gcn", 16, activation="relu"), LayerSpec("sage", 16))
    b = _arch(LayerSpec("gcn", 16, activation="tanh", dropout=0.1), LayerSpec("gat", 16, 2), skip="jk_cat")
    assert supernet.path_modules(a)[0] is supernet.path_modules(b)[0]
    assert supernet.path_modules(a)[1] is not supernet.path_modules(b)[1]
    before = supernet.extract(b).layers[0].conv.lin.weight.clone()
    optimizer = torch.optim.SGD(supernet.parameters(), lr=0.5)
    supernet(tiny_graph.x, tiny_graph.edge_index, arch=a).square().sum().backward()
    optimizer.step()
    after = supernet.extract(b).layers[0].conv.lin.weight
    assert not torch.equal(before, after)  # training a's path moved b's first layer


def test_project_maps_widths_and_heads_and_rejects_what_it_cannot_cover() -> None:
    supernet = _supernet(widths=(32, 64), heads=(1, 4))
    arch = _arch(LayerSpec("gat", 128, 8), LayerSpec("gcn", 16))
    projected = supernet.project(arch)
    assert [(l.width, l.heads) for l in projected.layers] == [(64, 4), (32, 1)]
    with pytest.raises(ValueError, match="not covered"):
        supernet.project(arch, strict=True)
    deep = supernet.project(_arch(*[LayerSpec("gcn", 64)] * 3, skip="residual"))
    assert deep.depth == 2 and deep.skip == "residual"
    assert supernet.project(_arch(*[LayerSpec("gcn", 64)] * 3, skip="jk_cat")).depth == 2
    narrow = GNNSupernet(4, 3, convs=("gcn",), widths=(16,))
    with pytest.raises(ValueError, match="conv 'sage' is not in the supernet"):
        narrow.project(_arch(LayerSpec("sage", 16)))


def test_covered_dropouts_map_sample_and_reject_bad_rates(tmp_path) -> None:
    supernet = _supernet(dropouts=("0.5",))  # as the CLI's --option dropouts=0.5 passes it
    assert supernet.dropouts == (0.5,) and supernet.config()["dropouts"] == [0.5]
    arch = _arch(LayerSpec("gcn", 16, dropout=0.1), LayerSpec("gcn", 16, dropout=0.7))
    assert [l.dropout for l in supernet.project(arch).layers] == [0.5, 0.5]
    with pytest.raises(ValueError, match="dropouts \\[0.5\\]"):
        supernet.project(arch, strict=True)
    rng = random.Random(0)
    assert {l.dropout for _ in range(30) for l in supernet.sample(rng).layers} == {0.5}
    assert _supernet(dropouts=(0.2, 0.5)).project(_arch(LayerSpec("gcn", 16, dropout=0.3))).layers[0].dropout == 0.2
    with pytest.raises(ValueError, match=r"dropout 0.45 is not among the choices \[0.0, 0.1"):
        _supernet(dropouts=(0.45,))
    with pytest.raises(ValueError, match="dropout 'high' is not among"):
        _supernet(dropouts=("high",))


def test_split_by_norm_gives_each_norm_its_own_convolution_weights(tiny_graph) -> None:
    supernet = _supernet(convs=("gcn", "sage"), split=("norm",)).eval()
    plain, batch = _arch(LayerSpec("gcn", 16, norm="none")), _arch(LayerSpec("gcn", 16, norm="batch"))
    assert supernet.path_modules(plain)[0] is not supernet.path_modules(batch)[0]
    other = _arch(LayerSpec("gcn", 16, norm="batch", activation="tanh", dropout=0.1))
    assert supernet.path_modules(other)[0] is supernet.path_modules(batch)[0]
    assert len(supernet.convs[0]) == 3 * len(_supernet(convs=("gcn", "sage")).convs[0])
    for arch in (plain, batch, _arch(LayerSpec("sage", 16, norm="layer"), LayerSpec("gcn", 16), skip="jk_cat")):
        out = supernet(tiny_graph.x, tiny_graph.edge_index, arch=arch)
        torch.testing.assert_close(out, supernet.extract(arch).eval()(tiny_graph.x, tiny_graph.edge_index))
    assert supernet.config()["split"] == ["norm"]
    with pytest.raises(ValueError, match="could not resolve split choice 'width'"):
        _supernet(split=("width",))


def test_split_by_depth_gives_each_path_depth_its_own_weights(tiny_graph) -> None:
    supernet = _supernet(convs=("gcn", "sage"), max_depth=3, split=("depth",)).eval()
    one = _arch(LayerSpec("gcn", 16))
    two = _arch(LayerSpec("gcn", 16), LayerSpec("sage", 16))
    other_two = _arch(LayerSpec("gcn", 16, norm="batch"), LayerSpec("gcn", 16))
    assert supernet.path_modules(one)[0] is not supernet.path_modules(two)[0]
    assert supernet.path_modules(one)[-1] is not supernet.path_modules(two)[-1]  # classifier too
    assert supernet.path_modules(two)[0] is supernet.path_modules(other_two)[0]
    plain = _supernet(convs=("gcn", "sage"), max_depth=3)
    # position 0 serves depths 1-3, position 2 only depth 3
    assert len(supernet.convs[0]) == 3 * len(plain.convs[0])
    assert len(supernet.convs[2]) == len(plain.convs[2])
    three = _arch(LayerSpec("sage", 16), LayerSpec("gcn", 16), LayerSpec("gcn", 16), skip="jk_cat")
    for arch in (one, two, three):
        out = supernet(tiny_graph.x, tiny_graph.edge_index, arch=arch)
        torch.testing.assert_close(out, supernet.extract(arch).eval()(tiny_graph.x, tiny_graph.edge_index))
    both = _supernet(convs=("gcn",), split=("norm", "depth"))
    assert len(both.convs[0]) == len(NORMS) * 2


def test_supernet_options_parse_from_key_value_pairs() -> None:
    options = parse_options(["max_depth=3", "widths=32,64", "split=norm", "dropouts=0.5"])
    assert options == {"max_depth": 3, "widths": (32, 64), "split": ("norm",), "dropouts": ("0.5",)}
    with pytest.raises(ValueError, match="'max_depth' must look like KEY=VALUE"):
        parse_options(["max_depth"])


@pytest.mark.parametrize("option, message", [
    ("max_depth=", "'max_depth=' has no value"),
    ("max_depth=x", "max_depth 'x' must be an integer in [1, 4]"),
    ("widths=abc", "width 'abc' is not among the choices [16, 32, 64, 128, 256]"),
    ("heads=x", "heads 'x' is not among the choices [1, 2, 4, 8]"),
])
def test_malformed_option_values_name_the_value_and_the_choices(option, message, capsys, tmp_path) -> None:
    from nas.cli import main

    assert main(["supernet", "train", "--dataset", "cora", "--out", str(tmp_path / "sn"),
                 "--option", option]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "sn").exists()


def test_a_task_level_the_space_cannot_build_is_bad_input(mnist_available, capsys, tmp_path) -> None:
    from nas.cli import main

    assert main(["supernet", "train", "--dataset", "mnist14", "--out", str(tmp_path / "sn")]) == 2
    err = capsys.readouterr().err
    assert "space 'gnn' cannot build models for 'image' tasks; it supports ['node', 'graph']" in err
    assert not (tmp_path / "sn").exists()


def test_samples_are_covered_and_trial_params_round_trip() -> None:
    supernet = _supernet(widths=(16, 32), max_depth=3)
    space = GNNSpace(max_depth=3)
    rng = random.Random(0)
    for _ in range(50):
        arch = supernet.sample(rng)
        assert supernet.project(arch, strict=True) == arch
        assert space.suggest(optuna.trial.FixedTrial(supernet.trial_params(arch))) == arch
        assert supernet.from_decisions(supernet.to_decisions(arch)).layers[0].conv == arch.layers[0].conv


def test_build_supernet_names_bad_options() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['depth'\].*max_depth"):
        build_supernet("gnn", TinyTask(None), depth=2)
    with pytest.raises(ValueError, match="could not resolve supernet space 'cnn'"):
        build_supernet("cnn", TinyTask(None))


def _train(task, out, epochs: int):
    supernet = _supernet(widths=(16,), convs=("gcn", "gat", "sage", "linear"))
    config = SupernetTrainConfig(epochs=epochs, seed=3, device="cpu", checkpoint_every=2)
    return supernet, train_supernet(supernet, task, config, out=out)


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_graph, tmp_path) -> None:
    task = TinyTask(tiny_graph)
    straight, result = _train(task, tmp_path / "a", epochs=6)
    _train(task, tmp_path / "b", epochs=3)
    resumed, again = _train(task, tmp_path / "b", epochs=6)
    assert again.resumed_from == 3 and again.epochs == 6 and again.steps == result.steps == 6
    assert again.history == pytest.approx(result.history, abs=0)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name
    loaded, meta = load_supernet(tmp_path / "b")
    assert meta["epoch"] == 6 and meta["dataset"] == "tiny"
    for p, q in zip(straight.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(p, q)


def test_resume_refuses_another_supernet(tiny_graph, tmp_path) -> None:
    _train(TinyTask(tiny_graph), tmp_path, epochs=1)
    assert has_checkpoint(tmp_path) and read_meta(tmp_path)["supernet"]["widths"] == [16]
    other = GNNSupernet(4, 3, widths=(32,), convs=("gcn", "gat", "sage", "linear"))
    with pytest.raises(ValueError, match=re.escape(
            "holds a supernet checkpoint of other options, trained with widths [16], not widths [32]; ")):
        train_supernet(other, TinyTask(tiny_graph), SupernetTrainConfig(epochs=2, device="cpu"), out=tmp_path)


def test_resume_on_another_dataset_names_the_dataset_not_both_supernet_configs(tiny_graph, tmp_path) -> None:
    """Another --dataset (other feature and class counts) was refused with both supernets' whole
    configs ('with supernet {...'in_channels': 4...}, not {...}'), naming no dataset."""
    _train(TinyTask(tiny_graph), tmp_path, epochs=1)
    other = GNNSupernet(5, 2, widths=(16,), convs=("gcn", "gat", "sage", "linear"))
    task = TinyTask(tiny_graph, name="other", num_features=5, num_classes=2)
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path} holds a supernet checkpoint with dataset 'tiny', not 'other'; ")):
        train_supernet(other, task, SupernetTrainConfig(epochs=2, device="cpu"), out=tmp_path)


def test_resume_refuses_other_training_settings_but_not_more_epochs_or_another_device(
    tiny_graph, tmp_path,
) -> None:
    """Continuing a checkpoint with another seed, sampling or optimiser setting would report one
    run under another's settings; more epochs, another device or checkpoint interval continue it."""
    task = TinyTask(tiny_graph)
    _train(task, tmp_path, epochs=2)  # seed 3, lr 5e-3
    before = read_meta(tmp_path)
    for change, message in (({"seed": 4}, "trained with seed 3, not seed 4"),
                            ({"lr": 1e-2}, "trained with lr 0.005, not lr 0.01"),
                            ({"sampling": "fair", "weight_decay": 0.0},
                             "sampling 'uniform', weight_decay 0.0005, not sampling 'fair', "
                             "weight_decay 0.0")):
        config = SupernetTrainConfig(**{"epochs": 4, "seed": 3, "device": "cpu", **change})
        supernet = _supernet(widths=(16,), convs=("gcn", "gat", "sage", "linear"))
        with pytest.raises(ValueError, match=re.escape(message)):
            train_supernet(supernet, task, config, out=tmp_path)
        assert read_meta(tmp_path) == before  # the checkpoint is left as it was
    supernet = _supernet(widths=(16,), convs=("gcn", "gat", "sage", "linear"))
    config = SupernetTrainConfig(epochs=4, seed=3, device="cpu", checkpoint_every=1)
    assert train_supernet(supernet, task, config, out=tmp_path).resumed_from == 2


def test_checkpoint_holds_no_pickle(tiny_graph, tmp_path) -> None:
    _train(TinyTask(tiny_graph), tmp_path, epochs=4)  # two checkpoints: the first one is removed
    files = read_meta(tmp_path)["files"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["supernet.json", files["weights"], files["optimizer"]])
    assert all(name.endswith((".json", ".safetensors")) for name in names)


@pytest.mark.parametrize("failing_write", [1, 2, 3])  # weights, optimizer state, JSON
def test_a_run_killed_while_checkpointing_resumes_from_one_whole_checkpoint(
    tiny_graph, tmp_path, monkeypatch, failing_write: int,
) -> None:
    """Killed between the writes of a checkpoint (epoch 4), the folder still holds epoch 2's
    weights, optimizer state and epoch together, so a resume continues like an uninterrupted run
    (before: epoch 4's weights with epoch 2's optimizer state and epoch)."""

    task = TinyTask(tiny_graph)
    straight, result = _train(task, tmp_path / "a", epochs=6)
    _train(task, tmp_path / "b", epochs=2)
    import storage.store

    writes, atomic = [], storage.store.replace_atomically

    def killed(path, write):
        writes.append(path)
        if len(writes) == failing_write:
            raise KeyboardInterrupt(f"killed before writing {path.name}")
        atomic(path, write)

    monkeypatch.setattr(storage.store, "replace_atomically", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(task, tmp_path / "b", epochs=4)
    monkeypatch.setattr(storage.store, "replace_atomically", atomic)
    loaded, meta = load_supernet(tmp_path / "b")
    assert meta["epoch"] == 2
    resumed, again = _train(task, tmp_path / "b", epochs=6)
    assert again.resumed_from == 2 and again.history == pytest.approx(result.history, abs=0)
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


def test_a_checkpoint_without_files_entry_still_resumes(tiny_graph, tmp_path) -> None:
    """Checkpoints written before ``files`` existed (fixed tensor file names) load and resume."""
    import json

    task = TinyTask(tiny_graph)
    straight, result = _train(task, tmp_path / "a", epochs=4)
    _train(task, tmp_path / "b", epochs=2)
    meta = json.loads((tmp_path / "b" / "supernet.json").read_text())
    files = meta.pop("files")
    (tmp_path / "b" / files["weights"]).rename(tmp_path / "b" / "supernet.safetensors")
    (tmp_path / "b" / files["optimizer"]).rename(tmp_path / "b" / "optimizer.safetensors")
    (tmp_path / "b" / "supernet.json").write_text(json.dumps(meta))
    assert has_checkpoint(tmp_path / "b") and load_supernet(tmp_path / "b")[1]["epoch"] == 2
    resumed, again = _train(task, tmp_path / "b", epochs=4)
    assert again.resumed_from == 2 and again.history == pytest.approx(result.history, abs=0)
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(
        ["supernet.json", *read_meta(tmp_path / "b")["files"].values()])  # the old files went


def test_overwrite_trains_from_scratch_and_replaces_the_checkpoint_in_one_step(
    tiny_graph, tmp_path, monkeypatch,
) -> None:
    """A checkpoint of other settings was refused with no way to train over it but deleting it
    by hand; with overwrite it is trained from scratch, the old checkpoint whole until the new
    run's first checkpoint replaces it (killed before that, the old one still resumes)."""
    import storage.store

    task = TinyTask(tiny_graph)
    _train(task, tmp_path / "b", epochs=2)  # seed 3
    before = read_meta(tmp_path / "b")

    def seed_4(out, overwrite=False):
        supernet = _supernet(widths=(16,), convs=("gcn", "gat", "sage", "linear"))
        config = SupernetTrainConfig(epochs=2, seed=4, device="cpu", checkpoint_every=2)
        return supernet, train_supernet(supernet, task, config, out=out, overwrite=overwrite)

    with pytest.raises(ValueError, match=r"trained with seed 3, not seed 4; .* pass --overwrite"):
        seed_4(tmp_path / "b")
    write = storage.store.replace_atomically

    def killed(path, content):
        if path.name == "supernet.json":
            raise KeyboardInterrupt("killed before the commit")
        return write(path, content)

    monkeypatch.setattr(storage.store, "replace_atomically", killed)
    with pytest.raises(KeyboardInterrupt):
        seed_4(tmp_path / "b", overwrite=True)
    monkeypatch.undo()
    assert read_meta(tmp_path / "b") == before and load_supernet(tmp_path / "b")[1]["epoch"] == 2
    straight, result = seed_4(tmp_path / "a")
    again, replaced = seed_4(tmp_path / "b", overwrite=True)
    assert replaced.resumed_from == 0 and replaced.history == pytest.approx(result.history, abs=0)
    assert read_meta(tmp_path / "b")["train"]["seed"] == 4
    for (name, p), q in zip(straight.state_dict().items(), load_supernet(tmp_path / "b")[0].state_dict().values()):
        assert torch.equal(p, q), name
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(
        ["supernet.json", *read_meta(tmp_path / "b")["files"].values()])  # the old files went


def test_a_checkpoint_naming_tensor_files_outside_its_folder_is_refused(tiny_graph, tmp_path) -> None:
    """``files`` of supernet.json was read as any path (``../x.safetensors`` loaded a file of
    another folder); it names files of the checkpoint's folder only, as an export's spec does."""
    import json

    _train(TinyTask(tiny_graph), tmp_path / "b", epochs=2)
    meta = json.loads((tmp_path / "b" / "supernet.json").read_text())
    (tmp_path / "x.safetensors").write_bytes((tmp_path / "b" / meta["files"]["weights"]).read_bytes())
    (tmp_path / "b" / "supernet.json").write_text(json.dumps(
        {**meta, "files": {**meta["files"], "weights": "../x.safetensors"}}))
    with pytest.raises(ValueError, match=r"names '../x.safetensors' for supernet.safetensors, not a file"):
        load_supernet(tmp_path / "b")


def test_nasbench_supernet_paths_equal_the_benchmark_models(tiny_graph) -> None:
    from nas.supernet import NasBenchGraphSupernet
    from search_spaces.nasbench_graph import NasBenchGraphArchitecture, NasBenchGraphSpace

    torch.manual_seed(0)
    supernet = NasBenchGraphSupernet(4, 3, dataset="computers").eval()  # dim 64, pre 1, post 1
    space, rng = NasBenchGraphSpace("computers"), random.Random(0)
    for _ in range(20):
        arch = supernet.sample(rng)
        out = supernet(tiny_graph.x, tiny_graph.edge_index, arch=arch)
        model = supernet.extract(arch).eval()
        torch.testing.assert_close(out, model(tiny_graph.x, tiny_graph.edge_index), msg=arch.short())
        suggested = space.suggest(optuna.trial.FixedTrial(supernet.trial_params(arch)))
        assert suggested.arch_hash == arch.arch_hash
    a = NasBenchGraphArchitecture((0, 0, 1, 1), ("gcn", "sage", "gat", "fc"))
    b = NasBenchGraphArchitecture((0, 0, 2, 2), ("sage", "gcn", "gat", "fc"))  # isomorphic to a
    assert a.arch_hash == b.arch_hash
    assert [id(m) for m in supernet.path_modules(a)] == [id(m) for m in supernet.path_modules(b)]
    with pytest.raises(ValueError, match="all-skip"):
        supernet.from_decisions({"link_pattern": 0, **{f"op{i}": "skip" for i in range(4)}})


def _sparse_graph(nodes: int = 40, features: int = 12, seed: int = 0):
    """A random graph with mostly-zero non-negative features (kept as CSR by the fast path),
    every node with an edge, labels that its own features decide, train/val/test masks."""
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(nodes, features, generator=g) * (torch.rand(nodes, features, generator=g) < 0.15)
    ring = torch.arange(nodes)
    src = torch.cat([ring, torch.randint(0, nodes, (3 * nodes,), generator=g)])
    dst = torch.cat([(ring + 1) % nodes, torch.randint(0, nodes, (3 * nodes,), generator=g)])
    edge_index = torch.stack([torch.cat([src, dst]), torch.cat([dst, src])])
    split = torch.arange(nodes) % 3
    y = x.view(nodes, 3, features // 3).sum(-1).argmax(-1)  # learnable from a node's own features
    return Data(x=x, edge_index=edge_index, y=y,
                train_mask=split == 0, val_mask=split == 1, test_mask=split == 2)


def test_fixed_graph_forward_equals_the_edge_index_forward() -> None:
    data = _sparse_graph()
    supernet = GNNSupernet(12, 3, "node", max_depth=2, widths=(16,)).eval()
    x, graph = supernet.fixed_graph_inputs(data.x, data.edge_index)
    assert x.layout == torch.sparse_csr  # the fast path's sparse input is exercised
    for op in supernet.ops:
        layer = LayerSpec(op.conv, 16, op.heads, aggregation=op.aggregation, norm="batch")
        for arch in (_arch(layer), _arch(layer, LayerSpec("gcn", 16, activation="tanh"), skip="jk_cat")):
            with torch.no_grad():
                fast = supernet(x, graph, arch=arch)
                plain = supernet(data.x, data.edge_index, arch=arch)
            torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5, msg=f"{op.name} {arch.short()}")


def test_fixed_graph_gradients_equal_the_edge_index_gradients() -> None:
    """Supernet training runs on the fixed graph: its backward pass (sparse input products,
    cached propagation) must give the plain forward's gradients (dropout off to compare)."""
    data = _sparse_graph(seed=2)
    supernet = GNNSupernet(12, 3, "node", max_depth=2, widths=(16,)).eval()
    x, graph = supernet.fixed_graph_inputs(data.x, data.edge_index)
    rng = random.Random(0)
    for _ in range(15):
        arch = supernet.sample(rng)
        grads = []
        for inputs, edges in ((x, graph), (data.x, data.edge_index)):
            supernet.zero_grad(set_to_none=True)
            out = supernet(inputs, edges, arch=arch)
            nn_loss = torch.nn.functional.cross_entropy(out[data.train_mask], data.y[data.train_mask])
            nn_loss.backward()
            grads.append({n: p.grad.clone() for n, p in supernet.named_parameters() if p.grad is not None})
        assert grads[0].keys() == grads[1].keys() and grads[0], arch.short()
        for name in grads[0]:
            torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-5, msg=f"{name} {arch.short()}")


def test_scoring_inside_the_supernet_equals_extract_recalibrate_measure(tmp_path) -> None:
    """The evaluator's node-task path (no stand-alone model) gives what extracting the model,
    recalibrating its BatchNorm and measuring it gives, and leaves the supernet unchanged."""
    from nas.evaluators import SupernetEvaluator
    from nas.evaluators._supernet import accuracies, recalibrate_batchnorm
    from nas.train import count_parameters

    data = _sparse_graph(seed=1)
    task = TinyTask(data, num_features=12)
    supernet = GNNSupernet(12, 3, "node", max_depth=2, widths=(16,), convs=("gcn", "sage", "gat", "gin"))
    train_supernet(supernet, task, SupernetTrainConfig(epochs=30, seed=0, device="cpu"), out=tmp_path)
    evaluator = SupernetEvaluator(str(tmp_path), finetune_epochs=0)
    loaded = evaluator.supernet("cpu")
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    rng = random.Random(0)
    archs = [dataclasses.replace(a, layers=tuple(dataclasses.replace(l, norm="batch") for l in a.layers))
             for a in (supernet.sample(rng) for _ in range(12))]
    for arch in archs:
        scored = evaluator.evaluate(arch, supernet.space, task, device="cpu")
        model = loaded.extract(arch)
        recalibrate_batchnorm(model, task, "cpu")
        assert {k: scored.metrics[k] for k in ("train_acc", "val_acc", "test_acc")} == accuracies(model, task, "cpu")
        assert scored.num_params == count_parameters(model)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_fair_paths_run_every_choice_of_the_widest_decision_once() -> None:
    supernet = _supernet(widths=(16, 32), dropouts=(0.0, 0.5), max_depth=2)
    paths = supernet.fair_paths(random.Random(0))
    ops = [op.name for op in supernet.ops]
    assert len(paths) == len(ops) > len(NORMS)
    for arch in paths:
        assert supernet.project(arch, strict=True) == arch  # every path is covered as it is
    first = sorted(supernet.to_decisions(arch)["l0_op"] for arch in paths)
    assert first == sorted(ops)
    for values in (
        [arch.layers[0].norm for arch in paths], [arch.layers[0].activation for arch in paths],
        [arch.layers[0].dropout for arch in paths], [arch.depth for arch in paths],
    ):
        counts = [values.count(v) for v in set(values)]
        assert max(counts) - min(counts) <= 1, values  # dealt evenly
    assert {arch.layers[0].width for arch in paths} == {16, 32}
    assert supernet.fair_paths(random.Random(0)) == paths
    assert supernet.fair_paths(random.Random(1)) != paths


def test_a_fair_step_trains_every_first_layer_op_and_a_uniform_step_one(tiny_graph) -> None:
    def changed_first_layer_convs(sampling: str) -> int:
        supernet = _supernet(convs=("gcn", "gat", "sage", "linear"))
        before = {k: v.clone() for k, v in supernet.convs[0].state_dict().items()}
        config = SupernetTrainConfig(epochs=1, seed=3, device="cpu", sampling=sampling)
        train_supernet(supernet, TinyTask(tiny_graph), config)
        after = supernet.convs[0].state_dict()
        return len({k.split(".")[0] for k in before if not torch.equal(before[k], after[k])})

    n_ops = len(_supernet(convs=("gcn", "gat", "sage", "linear")).convs[0])
    assert changed_first_layer_convs("uniform") == 1
    assert changed_first_layer_convs("fair") == n_ops > 1


def test_fair_training_resumes_exactly_and_bad_sampling_is_named(tiny_graph, tmp_path) -> None:
    def run(out, epochs):
        supernet = _supernet(convs=("gcn", "sage"))
        config = SupernetTrainConfig(epochs=epochs, seed=1, device="cpu", sampling="fair", checkpoint_every=1)
        return supernet, train_supernet(supernet, TinyTask(tiny_graph), config, out=out)

    straight, result = run(tmp_path / "a", 3)
    run(tmp_path / "b", 1)
    resumed, again = run(tmp_path / "b", 3)
    assert again.resumed_from == 1 and again.history == pytest.approx(result.history, abs=0)
    for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(p, q)
    assert read_meta(tmp_path / "b")["train"]["sampling"] == "fair"
    with pytest.raises(ValueError, match=r"unknown sampling 'fairest'.*\['uniform', 'fair'\]"):
        SupernetTrainConfig(sampling="fairest")
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        SupernetTrainConfig(batch_size=0)


def test_fair_paths_on_nasbench_graph_deal_every_op_and_never_an_all_skip_cell() -> None:
    from nas.supernet import NasBenchGraphSupernet
    from search_spaces.nasbench_graph import OPS

    supernet = NasBenchGraphSupernet(4, 3, dataset="computers")
    rng = random.Random(0)
    for _ in range(800):  # an all-skip path turns up in about 1 of 729 raw deals
        paths = supernet.fair_paths(rng)
        assert len(paths) == len(OPS)
        assert sorted(supernet.to_decisions(arch)["op2"] for arch in paths) == sorted(OPS)
        assert all(any(op != "skip" for op in arch.ops) for arch in paths)


def _users_folder(folder):
    """A folder of a user's files: notes and a model exported there."""
    from nas.export import export_model
    from search_spaces.cnn import CNN, CNNArchitecture

    arch = CNNArchitecture(widths=(4,))
    export_model(folder, space="cnn", spec=arch.to_dict(), in_channels=1, out_channels=10,
                 level="image", state_dict=CNN(arch, 1, 10).state_dict())
    (folder / "notes.txt").write_text("mine")
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_a_folder_of_other_files_is_refused_unless_overwrite_which_keeps_them(tiny_graph, tmp_path) -> None:
    """train_supernet wrote its checkpoint among whatever --out held (a user's notes, another
    model's export) and said nothing; it now refuses such a folder, and --overwrite writes the
    checkpoint beside those files without removing or changing any."""
    from nas.export import load_exported

    task, out = TinyTask(tiny_graph), tmp_path / "out"
    users = _users_folder(out)
    with pytest.raises(ValueError, match=re.escape(
            f"--out {out} already holds architecture.json, model.safetensors, notes.txt and no "
            f"supernet checkpoint; choose another --out folder, or pass --overwrite")):
        _train(task, out, epochs=2)
    assert {path.name for path in out.iterdir()} == set(users)
    supernet = _supernet(widths=(16,), convs=("gcn", "gat", "sage", "linear"))
    config = SupernetTrainConfig(epochs=2, seed=3, device="cpu", checkpoint_every=1)
    train_supernet(supernet, task, config, out=out, overwrite=True)  # two checkpoints: one replaced
    assert {name: (out / name).read_bytes() for name in users} == users
    assert read_meta(out)["epoch"] == 2 and load_exported(out) is not None
    assert _train(task, out, epochs=4)[1].resumed_from == 2  # the checkpoint there now resumes


def test_what_a_killed_first_checkpoint_left_is_no_other_files(tiny_graph, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "supernet.safetensors").write_bytes(b"killed before supernet.json")
    (out / ".supernet.json.tmp999999999").write_text("{")
    _, result = _train(TinyTask(tiny_graph), out, epochs=2)
    assert result.resumed_from == 0 and has_checkpoint(out)


def test_a_supernet_json_of_no_checkpoint_is_refused_naming_why(tiny_graph, tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "supernet.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match=re.escape(
            f"--out {out} already holds supernet.json and no supernet checkpoint ({out}/supernet.json "
            f"is not a metanas-supernet/1 checkpoint (format 'other'))")):
        _train(TinyTask(tiny_graph), out, epochs=2)


def test_supernet_train_cli_refuses_other_files_before_the_data_loads(tmp_path, monkeypatch, capsys) -> None:
    import nas.tasks
    from nas.cli import main

    monkeypatch.setattr(nas.tasks, "load_task", lambda *a, **k: pytest.fail("the data loaded"))
    out = tmp_path / "out"
    users = _users_folder(out)
    assert main(["supernet", "train", "--dataset", "cora", "--out", str(out), "--device", "cpu"]) == 2
    assert (f"--out {out} already holds architecture.json, model.safetensors, notes.txt and no "
            f"supernet checkpoint; choose another --out folder, or pass --overwrite to train a "
            f"supernet there (the folder's other files are kept)") in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == users
    assert main(["supernet", "train", "--dataset", "cora", "--out", str(out / "notes.txt")]) == 2
    assert f"--out {out / 'notes.txt'} is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(("damage", "message"), [
    (lambda meta: [], "is not a metanas-supernet/1 checkpoint (it holds [], not a JSON object)"),
    (lambda meta: {k: v for k, v in meta.items() if k != "space"},
     "is a damaged metanas-supernet/1 checkpoint: it has no 'space'"),
    (lambda meta: {**meta, "epoch": "x"},
     "is a damaged metanas-supernet/1 checkpoint: its 'epoch' is 'x', not an integer"),
    (lambda meta: {**meta, "step": 2.5},
     "is a damaged metanas-supernet/1 checkpoint: its 'step' is 2.5, not an integer"),
    (lambda meta: {**meta, "seconds": "1"},
     "is a damaged metanas-supernet/1 checkpoint: its 'seconds' is '1', not a JSON number"),
    (lambda meta: {**meta, "files": []},
     "is a damaged metanas-supernet/1 checkpoint: its 'files' is [], not a JSON object"),
])
def test_a_damaged_supernet_json_is_refused_naming_the_file(damage, message, tiny_graph, tmp_path) -> None:
    """A supernet.json that is no JSON object, lacks a field or holds one of another type failed
    with "'list' object has no attribute 'get'", "'space'" or "invalid literal for int()",
    naming no file (exit 1); now it is no checkpoint, named with the reason."""
    import json

    out = tmp_path / "b"
    _train(TinyTask(tiny_graph), out, epochs=2)
    meta = json.loads((out / "supernet.json").read_text())
    (out / "supernet.json").write_text(json.dumps(damage(meta)))
    with pytest.raises(ValueError, match=re.escape(f"{out}/supernet.json {message}")):
        load_supernet(out)
    with pytest.raises(ValueError, match=re.escape(f"no supernet checkpoint ({out}/supernet.json {message})")):
        _train(TinyTask(tiny_graph), out, epochs=4)


def test_damaged_or_foreign_checkpoint_tensors_are_refused_naming_the_file(tiny_graph, tmp_path) -> None:
    """A truncated weights file failed with safetensors' bare "Error while deserializing
    header", another supernet's weights with load_state_dict's list of every tensor, and a
    missing optimizer file resumed silently with a fresh Adam state (a run unlike the
    uninterrupted one); each now names the file."""
    from storage import ChecksumError

    task = TinyTask(tiny_graph)
    out = tmp_path / "b"
    _train(task, out, epochs=2)
    files = read_meta(out)["files"]
    weights = (out / files["weights"]).read_bytes()
    (out / files["weights"]).write_bytes(weights[:100])
    with pytest.raises(ChecksumError, match=re.escape(f"{out / files['weights']} is damaged, not a safetensors file")):
        load_supernet(out)
    with pytest.raises(ChecksumError, match=re.escape(f"{out / files['weights']} is damaged")):
        _train(task, out, epochs=4)
    other = tmp_path / "other"
    torch.manual_seed(0)
    train_supernet(GNNSupernet(4, 3, "node", max_depth=1, widths=(32,), convs=("gcn",)), task,
                   SupernetTrainConfig(epochs=1, device="cpu"), out=other)
    (out / files["weights"]).write_bytes((other / read_meta(other)["files"]["weights"]).read_bytes())
    with pytest.raises(ValueError, match=re.escape(f"{out / files['weights']} holds no supernet of its config: missing tensors")):
        load_supernet(out)
    (out / files["weights"]).write_bytes(weights)
    (out / files["optimizer"]).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{out / files['optimizer']}, the optimizer state")):
        _train(task, out, epochs=4)
    assert load_supernet(out)[1]["epoch"] == 2  # the weights alone still load for scoring


def test_under_torchrun_only_rank_zero_prints_the_run(tiny_graph, tmp_path, monkeypatch, capsys) -> None:
    """Every torchrun process printed the model line and its own 'trained ... last loss' (each
    its share's loss, so two lines disagreed on the loss of one run); now rank 0 speaks alone."""
    import nas.supernet
    import nas.tasks
    from nas.cli import main

    monkeypatch.setattr(nas.tasks, "load_task", lambda *a, **k: TinyTask(tiny_graph))
    argv = ["supernet", "train", "--dataset", "tiny", "--out", str(tmp_path / "sn"), "--epochs", "1",
            "--device", "cpu", "--option", "widths=16", "--option", "convs=gcn,sage"]
    monkeypatch.setattr(nas.supernet, "is_rank_zero", lambda: False, raising=False)
    assert main(argv) == 0
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(nas.supernet, "is_rank_zero", lambda: True, raising=False)
    assert main([*argv[:7], "2", *argv[8:]]) == 0
    out = capsys.readouterr().out
    assert "metanas supernet train: GNNSupernet" in out and "trained 2 epochs" in out


@pytest.mark.parametrize("flag", ["--epochs", "--batch-size", "--checkpoint-every"])
def test_supernet_train_names_a_count_below_one_by_its_flag(flag, monkeypatch, capsys, tmp_path) -> None:
    """They were refused after the data loaded, as 'checkpoint_every must be >= 1, got 0'
    (SupernetTrainConfig's field, not the flag typed)."""
    import nas.tasks
    from nas.cli import main

    monkeypatch.setattr(nas.tasks, "load_task", lambda *a, **k: pytest.fail("the data loaded"))
    argv = ["supernet", "train", "--dataset", "cora", "--out", str(tmp_path / "sn"), "--device", "cpu", flag, "0"]
    assert main(argv) == 2
    assert f"{flag} must be >= 1, got 0" in capsys.readouterr().err


def test_a_checkpoint_written_before_files_without_its_optimizer_file_is_refused(tiny_graph, tmp_path) -> None:
    """A checkpoint written before supernet.json had 'files' (supernet.safetensors,
    optimizer.safetensors) whose optimizer file was deleted resumed silently on a fresh Adam
    state: the refusal looked only at 'files'. Its param_groups say an optimizer was saved."""
    import json

    task = TinyTask(tiny_graph)
    out = tmp_path / "b"
    _train(task, out, epochs=2)
    meta = read_meta(out)
    (out / meta["files"]["weights"]).rename(out / "supernet.safetensors")
    (out / meta["files"]["optimizer"]).unlink()
    del meta["files"]
    (out / "supernet.json").write_text(json.dumps(meta))
    assert meta["param_groups"]
    with pytest.raises(FileNotFoundError, match=re.escape(f"{out / 'optimizer.safetensors'}, the optimizer state")):
        _train(task, out, epochs=4)
    assert load_supernet(out)[1]["epoch"] == 2


def test_integer_fields_written_as_integral_json_numbers_still_resume(tiny_graph, tmp_path) -> None:
    """A supernet.json whose 'epoch' and 'step' are 2.0 (JSON numbers, as any JSON writer may
    write them) resumed before fa46327, which refused it as "its 'epoch' is 2.0, not a JSON
    number"; they are read as the integers they are."""
    import json

    task = TinyTask(tiny_graph)
    out = tmp_path / "b"
    _train(task, out, epochs=2)
    meta = json.loads((out / "supernet.json").read_text())
    (out / "supernet.json").write_text(json.dumps({**meta, "epoch": 2.0, "step": 2.0}))
    assert load_supernet(out)[1]["epoch"] == 2 and isinstance(read_meta(out)["epoch"], int)
    assert _train(task, out, epochs=3)[1].resumed_from == 2


def test_a_damaged_supernet_json_beside_its_weights_is_not_advised_away(tiny_graph, tmp_path, capsys) -> None:
    """For a damaged supernet.json beside intact weights the CLI advised "pass --overwrite to
    train a supernet there (the folder's other files are kept)", which deletes those weights;
    it says so, and that fixing supernet.json keeps them."""
    import json

    from nas.cli import main

    out = tmp_path / "b"
    _train(TinyTask(tiny_graph), out, epochs=2)
    files = read_meta(out)["files"]
    meta = json.loads((out / "supernet.json").read_text())
    (out / "supernet.json").write_text(json.dumps({**meta, "epoch": 2.5}))
    held = {path.name: path.read_bytes() for path in out.iterdir()}
    assert main(["supernet", "train", "--dataset", "cora", "--out", str(out), "--device", "cpu"]) == 2
    assert (f"its 'epoch' is 2.5, not an integer); choose another --out folder, or fix "
            f"supernet.json to resume the supernet its weights hold: --overwrite would train a "
            f"new one there from scratch, deleting {files['optimizer']}, {files['weights']} (the "
            f"folder's other files are kept)") in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in out.iterdir()} == held


def test_a_damaged_supernet_json_without_its_weights_file_is_not_advised_to_be_fixed(
    tiny_graph, tmp_path, capsys,
) -> None:
    """With the weights file supernet.json names gone (only the optimizer's left), the advice
    said 'fix supernet.json to resume the supernet its weights hold': there are none."""
    import json

    from nas.cli import main

    out = tmp_path / "b"
    _train(TinyTask(tiny_graph), out, epochs=2)
    files = read_meta(out)["files"]
    (out / files["weights"]).unlink()
    meta = json.loads((out / "supernet.json").read_text())
    (out / "supernet.json").write_text(json.dumps({**meta, "epoch": 2.5}))
    assert main(["supernet", "train", "--dataset", "cora", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "fix supernet.json" not in err, err
    assert (f"pass --overwrite to train a supernet there (--overwrite would train a new one there "
            f"from scratch, deleting {files['optimizer']})") in err, err


def test_weights_sha256_hashes_the_weights_file_without_reading_it_whole(tmp_path) -> None:
    """weights_sha256 read the whole weights file into memory (a 1.5 GB file took 1.78 GB of
    RSS); it hashes it in chunks, to the same digest."""
    import hashlib
    import tracemalloc

    from torch import nn

    from nas.supernet._checkpoint import save_checkpoint, weights_sha256

    save_checkpoint(tmp_path, nn.Linear(2, 2), None, {
        "space": "gnn", "supernet": {}, "dataset": "cora", "epoch": 1, "step": 1, "seconds": 1.0,
        "history": [1.0]})
    blob = bytes(range(256)) * (128 * 1024)  # 32 MiB
    (tmp_path / read_meta(tmp_path)["files"]["weights"]).write_bytes(blob)
    tracemalloc.start()
    try:
        digest = weights_sha256(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(blob).hexdigest()
    assert peak < 4 * 1024 * 1024
