"""The graph metanetwork: permutation invariance of its readout, equivariance of its edge head,
mixed-architecture batches, saving."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from torch import nn

from metanets.gmn import GMN, GMNConfig, collate, load_gmn, prepare_graph, save_gmn
from metanets.graphs import NodeType, to_parameter_graph
from metanets.probes import ProbedNetwork
from search_spaces.cnn import CNNArchitecture, CNNSpace

IMAGE = (torch.zeros(2, 1, 12, 12),)


def _cnn(seed: int = 0, **arch: object) -> nn.Module:
    torch.manual_seed(seed)
    spec = {"widths": (6, 6), "norm": "batch", "residual": True, **arch}
    model = CNNSpace().build(CNNArchitecture(**spec), 1, 10)
    for module in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _mlp(seed: int = 0, hidden: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.Tanh(),
                         nn.Linear(hidden, 3)).eval()


def _gmn(out_edge: int = 0, kernel_width: int = 9) -> GMN:
    torch.manual_seed(0)
    model = GMN(GMNConfig(hidden=16, layers=2, out_edge=out_edge, kernel_width=kernel_width))
    return model.eval()


@torch.no_grad()
def _permute_cnn_block(model: nn.Module, block: int, perm: torch.Tensor) -> None:
    """Permute the output channels of conv block ``block`` (and every consumer's input)."""
    b = model.blocks[block]
    for tensor in (b.conv.weight, b.conv.bias):
        tensor.copy_(tensor[perm])
    if b.norm is not None:
        for tensor in (b.norm.weight, b.norm.bias, b.norm.running_mean, b.norm.running_var):
            tensor.copy_(tensor[perm])
    if isinstance(b.shortcut, nn.Conv2d):
        b.shortcut.weight.copy_(b.shortcut.weight[perm])
    consumer = model.blocks[block + 1] if block + 1 < len(model.blocks) else None
    if consumer is None:
        model.classifier.weight.copy_(model.classifier.weight[:, perm])
        return
    consumer.conv.weight.copy_(consumer.conv.weight[:, perm])
    if isinstance(consumer.shortcut, nn.Conv2d):
        consumer.shortcut.weight.copy_(consumer.shortcut.weight[:, perm])


@torch.no_grad()
def _permute_mlp(model: nn.Sequential, perm: torch.Tensor) -> None:
    first, second = model[0], model[2]
    first.weight.copy_(first.weight[perm])
    first.bias.copy_(first.bias[perm])
    second.weight.copy_(second.weight[:, perm])


def _predict(gmn: GMN, graphs: list) -> torch.Tensor:
    with torch.no_grad():
        return gmn(collate([prepare_graph(g) for g in graphs]))


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("block", [0, 1])
def test_readout_is_invariant_to_hidden_channel_permutations_of_a_cnn(block: int, residual: bool) -> None:
    model = _cnn(residual=residual, widths=(6, 4))  # an identity shortcut would tie the blocks
    x = torch.randn(3, 1, 12, 12)
    before_out = model(x)
    graph = to_parameter_graph(model, IMAGE)
    width = model.blocks[block].conv.out_channels
    _permute_cnn_block(model, block, torch.randperm(width, generator=torch.Generator().manual_seed(1)))
    torch.testing.assert_close(model(x), before_out, atol=1e-5, rtol=1e-5)  # same function
    permuted = to_parameter_graph(model, IMAGE)
    assert not torch.equal(permuted.edge_attr, graph.edge_attr)  # different weights layout
    gmn = _gmn()
    gmn.scaler.fit([prepare_graph(graph)])
    torch.testing.assert_close(_predict(gmn, [permuted]), _predict(gmn, [graph]), atol=1e-5, rtol=1e-4)


def test_readout_is_invariant_for_an_mlp_and_sees_the_weights() -> None:
    model = _mlp()
    graph = to_parameter_graph(model, (torch.zeros(1, 5),))
    _permute_mlp(model, torch.tensor([3, 1, 7, 0, 2, 6, 4, 5]))
    permuted = to_parameter_graph(model, (torch.zeros(1, 5),))
    other = to_parameter_graph(_mlp(seed=1), (torch.zeros(1, 5),))
    gmn = _gmn()
    same, moved, different = (_predict(gmn, [g]) for g in (graph, permuted, other))
    torch.testing.assert_close(moved, same, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(different, same, atol=1e-4)  # not blind to the weights


def _relabel(graph, perm_nodes: torch.Tensor, perm_edges: torch.Tensor):  # noqa: ANN001, ANN202
    """The same graph with nodes renumbered (new id ``i`` is old node ``perm_nodes[i]``) and the
    edges listed in the order ``perm_edges``."""
    data = prepare_graph(graph)
    inverse = torch.empty_like(perm_nodes)
    inverse[perm_nodes] = torch.arange(perm_nodes.numel())
    out = data.clone()
    for key in ("x", "node_type", "node_layer", "node_struct"):
        out[key] = data[key][perm_nodes]
    for key in ("edge_attr", "edge_type", "edge_layer", "edge_struct"):
        out[key] = data[key][perm_edges]
    out.edge_index = inverse[data.edge_index[:, perm_edges]]
    return out


def test_edge_head_is_equivariant_and_readout_invariant_under_graph_relabelling() -> None:
    graph = to_parameter_graph(_cnn(), IMAGE)
    generator = torch.Generator().manual_seed(0)
    hidden = (graph.node_type != NodeType.INPUT) & (graph.node_type != NodeType.OUTPUT)
    perm_nodes = torch.arange(graph.num_nodes)
    idx = hidden.nonzero().view(-1)
    perm_nodes[idx] = idx[torch.randperm(idx.numel(), generator=generator)]
    perm_edges = torch.randperm(graph.edge_index.size(1), generator=generator)
    gmn = _gmn(out_edge=2)
    with torch.no_grad():
        g_out, e_out = gmn.forward_all(collate([prepare_graph(graph)]))
        g_perm, e_perm = gmn.forward_all(collate([_relabel(graph, perm_nodes, perm_edges)]))
    assert e_out.shape == (graph.edge_index.size(1), 2)
    torch.testing.assert_close(e_perm, e_out[perm_edges], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(g_perm, g_out, atol=1e-5, rtol=1e-4)


def test_mixed_architectures_batch_like_one_by_one() -> None:
    from search_spaces import GNNArchitecture, GNNSpace, LayerSpec

    arch = GNNArchitecture(layers=(LayerSpec("gcn", 8, dropout=0.0), LayerSpec("sage", 4, dropout=0.0)))
    gnn = GNNSpace().build(arch, 5, 3, "node").eval()
    ring = torch.tensor([[0, 1, 2, 3, 1, 2, 3, 0], [1, 2, 3, 0, 0, 1, 2, 3]])
    graphs = [
        to_parameter_graph(_cnn(widths=(4,), residual=False), IMAGE),
        to_parameter_graph(_cnn(seed=2, widths=(4, 8, 6), kernel_size=5), IMAGE),
        to_parameter_graph(_mlp(hidden=6), (torch.zeros(1, 5),)),
        to_parameter_graph(gnn, (torch.randn(4, 5), ring)),
    ]
    gmn = _gmn(out_edge=1)
    with torch.no_grad():
        together, edges = gmn.forward_all(collate([prepare_graph(g) for g in graphs]))
        alone = [gmn.forward_all(collate([prepare_graph(g)])) for g in graphs]
    assert together.shape == (4, 1)
    torch.testing.assert_close(together, torch.cat([a[0] for a in alone]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(edges, torch.cat([a[1] for a in alone]), atol=1e-5, rtol=1e-4)


def test_scaler_normalises_each_layer_and_falls_back_for_unseen_layers() -> None:
    graphs = [prepare_graph(to_parameter_graph(_cnn(seed=s), IMAGE)) for s in range(3)]
    gmn = _gmn()
    gmn.scaler.fit(graphs)
    x, w = gmn.scaler(collate(graphs))
    mask = gmn.scaler._kernel_mask(collate(graphs)).bool()
    assert w[mask].pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=0.05)
    deep = prepare_graph(to_parameter_graph(_cnn(widths=(4, 4, 4)), IMAGE))
    x_deep, w_deep = gmn.scaler(collate([deep]))  # a layer index never fitted: finite values
    assert torch.isfinite(x_deep).all() and torch.isfinite(w_deep).all()


def test_save_and_load_round_trip(tmp_path) -> None:  # noqa: ANN001
    graphs = [to_parameter_graph(_mlp(seed=s), (torch.zeros(1, 5),)) for s in range(2)]
    gmn = _gmn(out_edge=1)
    gmn.scaler.fit([prepare_graph(g) for g in graphs])
    gmn.target_mean.fill_(0.5)
    save_gmn(gmn, tmp_path / "m", metadata={"target": "test_acc"})
    loaded, metadata = load_gmn(tmp_path / "m")
    assert metadata == {"target": "test_acc"}
    assert loaded.config == gmn.config
    torch.testing.assert_close(_predict(loaded, graphs), _predict(gmn, graphs))
    assert not list(tmp_path.glob("m/*.pt")) and not list(tmp_path.glob("m/*.pkl"))
    with pytest.raises(FileNotFoundError, match="metanet.json"):
        load_gmn(tmp_path / "missing")


def test_a_save_over_a_metanetwork_switches_in_one_step_and_names_files_of_the_folder_only(
    tmp_path,  # noqa: ANN001
) -> None:
    """The new weights go to a file of their own, named in metanet.json, which replaces the old
    one last (the earlier weights are removed after); a name that leads out of the folder is
    refused."""
    import json

    folder = save_gmn(_gmn(), tmp_path / "m", metadata={"run": 1})
    second = _gmn()
    for param in second.parameters():  # trained weights differ between runs
        torch.nn.init.normal_(param)
    save_gmn(second, folder, metadata={"run": 2})
    spec = json.loads((folder / "metanet.json").read_text())
    named = spec["files"]["metanet.safetensors"]
    assert re.fullmatch(r"metanet\.[0-9a-f]{16}\.safetensors", named)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["metanet.json", named])
    loaded, metadata = load_gmn(folder)
    assert metadata == {"run": 2}
    assert all(torch.equal(v, second.state_dict()[k]) for k, v in loaded.state_dict().items())
    (tmp_path / "x.safetensors").write_bytes((folder / named).read_bytes())
    spec["files"]["metanet.safetensors"] = "../x.safetensors"
    (folder / "metanet.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"names '../x.safetensors' for metanet.safetensors, not a file"):
        load_gmn(folder)


def test_wide_input_layers_are_summarised_and_stay_invariant() -> None:
    from search_spaces import GNNArchitecture, GNNSpace, LayerSpec

    torch.manual_seed(0)
    arch = GNNArchitecture(layers=(LayerSpec("gcn", 6, dropout=0.0), LayerSpec("gcn", 4, dropout=0.0)))
    gnn = GNNSpace().build(arch, 40, 3, "node").eval()
    ring = torch.tensor([[0, 1, 2, 3, 1, 2, 3, 0], [1, 2, 3, 0, 0, 1, 2, 3]])
    graph = to_parameter_graph(gnn, (torch.randn(4, 40), ring))
    small = prepare_graph(graph, max_inputs=16)
    assert int((small.node_type == NodeType.INPUT).sum()) == 0
    assert small.num_nodes == graph.num_nodes - 40
    assert small.edge_index.max() < small.num_nodes
    assert small.node_struct[:, 3:].abs().sum() > 0  # dropped weights summarised
    with torch.no_grad():  # permuting the first layer's hidden neurons changes nothing
        perm = torch.tensor([2, 0, 1, 5, 3, 4])
        conv0, conv1 = gnn.layers[0].conv, gnn.layers[1].conv
        conv0.lin.weight.copy_(conv0.lin.weight[perm])
        conv0.bias.copy_(conv0.bias[perm])
        conv1.lin.weight.copy_(conv1.lin.weight[:, perm])
    permuted = prepare_graph(to_parameter_graph(gnn, (torch.randn(4, 40), ring)), max_inputs=16)
    gmn = GMN(GMNConfig(hidden=8, layers=2, max_inputs=16)).eval()
    with torch.no_grad():
        torch.testing.assert_close(gmn(collate([permuted])), gmn(collate([small])), atol=1e-5, rtol=1e-4)


# probes: the GMN also reads what a network answers to learned inputs ---------------------------
PROBE_SHAPE = (1, 12, 12)


def _probed(model: nn.Module) -> ProbedNetwork:
    return ProbedNetwork(model, {k: v.clone() for k, v in model.state_dict().items()}, PROBE_SHAPE)


def _probe_gmn(graph_branch: bool = True) -> GMN:
    torch.manual_seed(0)
    config = GMNConfig(hidden=16, layers=2, probes=6, probe_shape=PROBE_SHAPE, probe_outputs=10,
                       graph_branch=graph_branch)
    return GMN(config).eval()


@pytest.mark.parametrize("graph_branch", [True, False])
def test_probe_readout_is_invariant_to_hidden_permutations_and_sees_the_function(
        graph_branch: bool) -> None:
    model = _cnn(widths=(6, 4))
    graph = to_parameter_graph(model, IMAGE)
    gmn = _probe_gmn(graph_branch)
    with torch.no_grad():
        before = gmn(collate([prepare_graph(graph)]), [_probed(model)])
        _permute_cnn_block(model, 0, torch.randperm(6, generator=torch.Generator().manual_seed(3)))
        permuted = gmn(collate([prepare_graph(to_parameter_graph(model, IMAGE))]), [_probed(model)])
        model.classifier.weight.mul_(-1.0)  # another function: the answers change
        other = gmn(collate([prepare_graph(to_parameter_graph(model, IMAGE))]), [_probed(model)])
    torch.testing.assert_close(permuted, before, atol=1e-5, rtol=1e-4)
    assert (other - before).abs().item() > 1e-4


def test_probes_batch_mixed_architectures_like_one_by_one() -> None:
    models = [_cnn(widths=(4,), residual=False), _cnn(seed=2, widths=(4, 8, 6), kernel_size=5),
              _cnn(seed=3, widths=(6, 6), norm="none")]
    graphs = [prepare_graph(to_parameter_graph(m, IMAGE)) for m in models]
    gmn = _probe_gmn()
    with torch.no_grad():
        together = gmn(collate(graphs), [_probed(m) for m in models])
        alone = torch.cat([gmn(collate([g]), [_probed(m)]) for g, m in zip(graphs, models)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_probes_are_learned_and_the_probed_networks_stay_unchanged() -> None:
    from metanets.accuracy import fit_gmn, FitConfig

    models = [_cnn(seed=s, widths=(4, 4)) for s in range(6)]
    networks = [_probed(m) for m in models]
    before = [{k: v.clone() for k, v in n.state.items()} for n in networks]
    graphs = [to_parameter_graph(m, IMAGE) for m in models]
    y = torch.linspace(0.1, 0.9, 6)
    config = FitConfig(epochs=6, hidden=8, layers=1, batch_size=3, eval_every=3, lr=1e-2, probes=4)
    torch.manual_seed(0)
    untrained = GMN(GMNConfig(hidden=8, layers=1, kernel_width=9, probes=4,
                              probe_shape=PROBE_SHAPE, probe_outputs=10))
    result = fit_gmn(graphs, y, graphs, y, config, train_networks=networks, val_networks=networks)
    probes = result.model.probe.probe_inputs().detach()
    assert probes.shape == (4, *PROBE_SHAPE)
    assert torch.equal(result.model.probe.latent, untrained.probe.latent)  # same seed, same codes
    assert (probes - untrained.probe.probe_inputs().detach()).abs().max() > 1e-3  # learned
    for network, state in zip(networks, before):
        for key, value in state.items():
            assert torch.equal(network.state[key], value)
    with pytest.raises(ValueError, match="needs the networks"):
        fit_gmn(graphs, y, graphs, y, config)


def test_probe_errors_name_what_is_wrong() -> None:
    model = _cnn(widths=(4,))
    graph = collate([prepare_graph(to_parameter_graph(model, IMAGE))])
    gmn = _probe_gmn()
    with pytest.raises(ValueError, match="pass the 1 networks"):
        gmn(graph)
    wrong = ProbedNetwork(model, model.state_dict(), (1, 14, 14))
    with pytest.raises(ValueError, match=r"shape \(1, 14, 14\) cannot be probed"):
        gmn(graph, [wrong])
    with pytest.raises(ValueError, match="probe_shape"):
        GMNConfig(probes=4)
    with pytest.raises(ValueError, match="graph_branch=False needs probes"):
        GMNConfig(graph_branch=False)


def test_save_and_load_round_trip_with_probes(tmp_path) -> None:  # noqa: ANN001
    models = [_cnn(seed=s, widths=(4, 6)) for s in range(2)]
    graphs = [to_parameter_graph(m, IMAGE) for m in models]
    gmn = _probe_gmn()
    gmn.scaler.fit([prepare_graph(g) for g in graphs])
    save_gmn(gmn, tmp_path / "m")
    loaded, _ = load_gmn(tmp_path / "m")
    assert loaded.config == gmn.config and loaded.config.probe_shape == PROBE_SHAPE
    with torch.no_grad():
        prepared = collate([prepare_graph(g) for g in graphs])
        torch.testing.assert_close(loaded(prepared, [_probed(m) for m in models]),
                                   gmn(prepared, [_probed(m) for m in models]))


def test_data_probes_start_at_the_given_inputs_and_are_learned_from_there() -> None:
    from metanets.accuracy import FitConfig, fit_gmn

    models = [_cnn(seed=s, widths=(4, 4)) for s in range(6)]
    networks = [_probed(m) for m in models]
    graphs = [to_parameter_graph(m, IMAGE) for m in models]
    y = torch.linspace(0.1, 0.9, 6)
    start = torch.randn(4, *PROBE_SHAPE, generator=torch.Generator().manual_seed(5))
    config = FitConfig(epochs=1, hidden=8, layers=1, batch_size=3, eval_every=1, lr=1e-12,
                       probes=4, probe_init="data")
    result = fit_gmn(graphs, y, graphs, y, config, train_networks=networks,
                     val_networks=networks, probe_start=start)
    probes = result.model.probe.probe_inputs().detach()
    offset = (probes - start).pow(2).mean().sqrt().item()  # the generator's share: small
    assert 0 < offset < 0.2
    learned = fit_gmn(graphs, y, graphs, y, dataclasses.replace(config, epochs=6, lr=1e-2),
                      train_networks=networks, val_networks=networks, probe_start=start)
    assert (learned.model.probe.base.detach() - start).abs().max() > 1e-3  # the base moves too
    with pytest.raises(ValueError, match="probe_init='data' goes with probe_start"):
        fit_gmn(graphs, y, graphs, y, config, train_networks=networks, val_networks=networks)
    with pytest.raises(ValueError, match="start_from needs init='data'"):
        _probe_gmn().probe.start_from(start)
    with pytest.raises(ValueError, match="probe init 'zeros' is not among"):
        GMNConfig(probes=4, probe_shape=PROBE_SHAPE, probe_outputs=10, probe_init="zeros")


@pytest.mark.parametrize("val_size, val_targets", [(1, [0.5]), (2, [0.5, 0.5])])
def test_without_a_validation_tau_the_epoch_of_lowest_training_loss_is_kept(val_size, val_targets) -> None:
    """One validation network, or tied validation targets, have no Kendall tau: the fit keeps
    the epoch of lowest training loss and says so (it used to report minus the loss as a 'val
    tau', or to return the untrained model)."""
    import math

    from metanets.accuracy import FitConfig, fit_gmn

    graphs = [to_parameter_graph(_cnn(seed=s, widths=(4,)), IMAGE) for s in range(4)]
    y = torch.linspace(0.1, 0.9, 4)
    result = fit_gmn(graphs, y, graphs[:val_size], torch.tensor(val_targets),
                     FitConfig(epochs=6, hidden=8, layers=1, batch_size=2, eval_every=1, lr=1e-2))
    assert result.selected_on == "train_loss"
    assert all(math.isnan(tau) for _, _, tau in result.history)
    losses = {epoch: loss for epoch, loss, _ in result.history}
    assert result.best_epoch == min(losses, key=losses.get) >= 1


def test_with_a_validation_tau_the_best_tau_epoch_is_kept() -> None:
    from metanets.accuracy import FitConfig, fit_gmn

    graphs = [to_parameter_graph(_cnn(seed=s, widths=(4,)), IMAGE) for s in range(4)]
    y = torch.linspace(0.1, 0.9, 4)
    result = fit_gmn(graphs, y, graphs, y,
                     FitConfig(epochs=6, hidden=8, layers=1, batch_size=2, eval_every=1, lr=1e-2))
    taus = {epoch: tau for epoch, _, tau in result.history}
    assert result.selected_on == "val_tau" and result.best_epoch == max(taus, key=taus.get)
    assert all(-1.0 <= tau <= 1.0 for tau in taus.values())


def test_fitting_leaves_the_callers_random_state_alone() -> None:
    """fit_gmn seeded torch's global generator: two callers' different seeds gave the same
    numbers after it."""
    from metanets.accuracy import FitConfig, fit_gmn

    models = [_cnn(seed=s, widths=(4, 4)) for s in range(4)]
    graphs = [to_parameter_graph(m, IMAGE) for m in models]
    y = torch.linspace(0.1, 0.9, 4)
    config = FitConfig(epochs=1, hidden=8, layers=1, batch_size=2, seed=0)
    draws, fits = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        expected = torch.rand(3)
        torch.manual_seed(seed)
        fits.append(fit_gmn(graphs, y, graphs, y, config).model.state_dict())
        draws.append((torch.rand(3), expected))
    assert all(torch.equal(after, expected) for after, expected in draws)
    assert all(torch.equal(fits[0][k], fits[1][k]) for k in fits[0])  # its own seed decides the fit


@pytest.mark.parametrize("make, message", [
    (lambda: GMNConfig(hidden=0), "hidden must be an integer >= 1, got 0"),
    (lambda: GMNConfig(layers=-1), "layers must be an integer >= 0, got -1"),
])
def test_a_gmn_config_that_could_not_run_is_refused_by_name(make, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("eval_every", 0)])
def test_a_fit_config_that_could_not_fit_is_refused_by_name(field, value) -> None:
    """epochs 0 failed in load_state_dict with NoneType, batch_size 0 divided by zero."""
    from metanets.accuracy import FitConfig

    with pytest.raises(ValueError, match=f"{field} must be an integer >= 1, got 0"):
        FitConfig(**{field: value})


def test_batches_of_large_networks_run_in_edge_bounded_chunks_with_the_same_steps(monkeypatch) -> None:
    """A mini-batch over the edge budget runs in chunks whose gradients add up to the one-pass
    step: same fitted weights, same losses (a NAS-Bench-Graph search on Cora: 0.5-2 million edges
    each; six of them in one pass ran out of 24 GB)."""
    import metanets.accuracy as accuracy

    graphs = [to_parameter_graph(_cnn(seed=s, widths=(4,)), IMAGE) for s in range(6)]
    y = torch.linspace(0.1, 0.9, 6)
    config = accuracy.FitConfig(epochs=3, hidden=8, layers=1, batch_size=4, eval_every=1, lr=1e-2)
    whole = accuracy.fit_gmn(graphs, y, graphs, y, config)
    passes = []
    forward = GMN.forward
    monkeypatch.setattr(GMN, "forward", lambda self, batch, *a: passes.append(batch.num_graphs)
                        or forward(self, batch, *a))
    budget = graphs[0].num_edges + graphs[1].num_edges  # two networks a pass
    monkeypatch.setattr(accuracy, "CHUNK_EDGES", budget)
    chunked = accuracy.fit_gmn(graphs, y, graphs, y, config)
    assert passes and max(passes) == 2
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(chunked.model.state_dict()[key], value, msg=key)
    assert [h[1] for h in chunked.history] == pytest.approx([h[1] for h in whole.history])


def test_edge_bounded_chunks_keep_order_and_give_an_oversized_graph_its_own_chunk() -> None:
    from types import SimpleNamespace

    from metanets.accuracy import edge_bounded_chunks

    graphs = [SimpleNamespace(num_edges=n) for n in (3, 4, 9, 1, 1, 2)]
    assert list(edge_bounded_chunks(graphs, range(6), max_edges=8)) == [[0, 1], [2], [3, 4, 5]]
    assert list(edge_bounded_chunks([], [], max_edges=8)) == []


def test_a_fit_whose_largest_network_cannot_fit_in_memory_is_refused_before_it_starts(monkeypatch) -> None:
    """A NAS-Bench-Graph Cora network (2 million weights) needs over 22 GB in one pass: the fit
    was killed minutes in, silently; now it is refused up front with what to change."""
    import metanets.accuracy as accuracy

    graphs = [to_parameter_graph(_cnn(seed=s, widths=(4,)), IMAGE) for s in range(3)]
    y = torch.linspace(0.1, 0.9, 3)
    config = accuracy.FitConfig(epochs=1, hidden=8, layers=1, batch_size=2)
    largest = max(g.num_edges for g in graphs)
    need = accuracy.pass_bytes(largest, 8, 1)
    assert need == largest * 8 * 4 * 18
    monkeypatch.setattr(accuracy, "available_bytes", lambda device: need - 1)
    monkeypatch.setattr(accuracy, "_train_epoch", lambda *a: pytest.fail("the fit started"))
    with pytest.raises(MemoryError, match=rf"has {largest:,} edges \(weights\): one metanetwork pass "
                       r"over it needs about 0\.0 GiB at hidden 8 and 1 layers, more than the 0\.0 "
                       r"GiB free on cpu; summarise the networks. input layers \(max_inputs, --max-inputs; "
                       r"e\.g\. 64\) or lower hidden \(--hidden\) or layers \(--layers\)$"):
        accuracy.fit_gmn(graphs, y, graphs, y, config)
    monkeypatch.undo()
    for free in (need, None):  # enough, or unknown: the fit runs
        monkeypatch.setattr(accuracy, "available_bytes", lambda device, free=free: free)
        assert accuracy.fit_gmn(graphs, y, graphs, y, config).history
