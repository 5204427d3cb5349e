"""NAC: the sparse-coding search derives a valid GNN-space architecture, as a strategy too."""
from __future__ import annotations

import json

import optuna
import pytest
import torch

from nas.proxies import ProxyBatch
from nas.samplers import NACSampler, get_sampler, nac_search
from nas.samplers._nac import NAC_ATTR, NAC_CONVS, Supernet, architecture_params
from search_spaces import GNNArchitecture, GNNSpace, get_space
from search_spaces.gnn import CONVS


class _TinyTask:
    name, level, num_features, num_classes = "tiny", "node", 4, 3

    def __init__(self, data) -> None:
        self.data = data


def _batches(graph) -> list[ProxyBatch]:
    return [ProxyBatch((graph.x, graph.edge_index), graph.y[graph.train_mask], graph.train_mask)]


def test_search_derives_one_candidate_per_layer(tiny_graph):
    convs, alpha = nac_search(_batches(tiny_graph), 4, 3, depth=3, width=8, steps=5, seed=0)
    assert len(convs) == 3 and set(convs) <= set(CONVS)
    assert alpha.shape == (3, len(NAC_CONVS))
    assert list(convs) == [NAC_CONVS[int(i)] for i in alpha.abs().argmax(dim=1)]


def test_search_is_seeded_and_moves_alpha(tiny_graph):
    first = nac_search(_batches(tiny_graph), 4, 3, width=8, steps=5, seed=1)
    second = nac_search(_batches(tiny_graph), 4, 3, width=8, steps=5, seed=1)
    assert first[0] == second[0] and torch.equal(first[1], second[1])
    assert not torch.allclose(first[1], torch.full_like(first[1], 1 / len(NAC_CONVS)))


def test_l1_penalty_makes_alpha_sparse(tiny_graph):
    _, dense = nac_search(_batches(tiny_graph), 4, 3, width=8, steps=20, l1=0.0, seed=0)
    _, sparse = nac_search(_batches(tiny_graph), 4, 3, width=8, steps=20, l1=5.0, seed=0)
    assert int((sparse == 0).sum()) > int((dense == 0).sum())


def test_supernet_weights_stay_frozen(tiny_graph):
    torch.manual_seed(0)
    before = Supernet(4, 3, NAC_CONVS, 2, 8).state_dict()
    nac_search(_batches(tiny_graph), 4, 3, width=8, steps=3, seed=0)
    torch.manual_seed(0)
    after = Supernet(4, 3, NAC_CONVS, 2, 8).state_dict()  # same seed: same initial weights
    assert all(torch.equal(before[k], after[k]) for k in before if k != "alpha")


def test_graph_level_search(tiny_graph):
    from torch_geometric.data import Batch

    graphs = Batch.from_data_list([tiny_graph.clone(), tiny_graph.clone()])
    batch = ProxyBatch((graphs.x, graphs.edge_index, graphs.batch), torch.tensor([0, 2]))
    convs, _ = nac_search([batch], 4, 3, "graph", width=8, steps=3)
    assert len(convs) == 2


def test_derived_architecture_round_trips_through_the_space(tiny_graph):
    arch, _ = NACSampler(width=16, steps=3).derive(_TinyTask(tiny_graph), seed=0)
    assert isinstance(arch, GNNArchitecture) and all(layer.width == 16 for layer in arch.layers)
    space = get_space("gnn")
    assert space.suggest(optuna.trial.FixedTrial(architecture_params(arch))) == arch
    model = space.build(arch, 4, 3)
    assert model(tiny_graph.x, tiny_graph.edge_index).shape == (6, 3)


@pytest.mark.parametrize("seed", [0, 5])
def test_architecture_params_cover_every_suggestion(seed):
    space = get_space("gnn")
    arch = space.sample(seed)
    assert space.suggest(optuna.trial.FixedTrial(architecture_params(arch))) == arch


def test_strategy_records_the_derived_architecture_as_a_trial(tiny_graph):
    space = get_space("gnn")
    sampler = NACSampler(seed=0, width=16, steps=3, task=_TinyTask(tiny_graph))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.set_user_attr("space", "gnn")
    study.optimize(lambda t: float(space.suggest(t).depth), n_trials=2)
    for trial in study.trials:
        arch = space.suggest(optuna.trial.FixedTrial(trial.params))
        record = json.loads(trial.system_attrs[NAC_ATTR])
        derived = [record["convs"][max(range(len(row)), key=lambda i: abs(row[i]))] for row in record["alpha"]]
        assert [layer.conv for layer in arch.layers] == derived


def test_width_outside_the_space_is_refused():
    with pytest.raises(ValueError, match="NAC width 8 is not among"):
        NACSampler(width=8)


def test_strategy_is_registered_and_refuses_other_spaces():
    assert isinstance(get_sampler("NAC", seed=0), NACSampler)
    study = optuna.create_study(sampler=get_sampler("nac"))
    study.set_user_attr("space", "nasbench-graph")
    with pytest.raises(ValueError, match="strategy 'nac' searches space 'gnn'"):
        study.optimize(lambda t: 0.0, n_trials=1)


# -- the strategy searches the search's space, reads its data root, runs on its device --------

GCN_GAT = GNNSpace(convs=("gcn", "gat"))


def _nac_study(sampler, space, n_trials: int = 4) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.set_user_attr("space", "gnn")
    study.set_user_attr("dataset", "cora")
    study.optimize(lambda t: float(space.suggest(t).depth), n_trials=n_trials)
    return study


def _proposed_convs(study: optuna.Study, space) -> set[str]:
    archs = [space.suggest(optuna.trial.FixedTrial(t.params)) for t in study.trials]
    return {layer.conv for arch in archs for layer in arch.layers}


def test_strategy_proposes_only_the_convs_of_the_space(tiny_graph):
    # --convs gcn,gat: NAC searched all twelve convs and every trial failed on "'gin' not in
    # ('gcn', 'gat')"
    sampler = get_sampler("nac", seed=0, space=GCN_GAT, task=_TinyTask(tiny_graph), width=16, steps=3)
    study = _nac_study(sampler, GCN_GAT)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert _proposed_convs(study, GCN_GAT) <= {"gcn", "gat"}
    assert all(json.loads(t.system_attrs[NAC_ATTR])["convs"] == ["gcn", "gat"] for t in study.trials)


def test_strategy_keeps_within_the_depth_of_the_space(tiny_graph):
    shallow = GNNSpace(max_depth=1, convs=("sage", "gcn"))
    sampler = get_sampler("nac", seed=0, space=shallow, task=_TinyTask(tiny_graph), width=16, steps=3)
    study = _nac_study(sampler, shallow, n_trials=2)
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.params["depth"] == 1 for t in study.trials)
    with pytest.raises(ValueError, match="NAC depth 3 exceeds the space's max_depth 1"):
        get_sampler("nac", space=shallow, depth=3)
    with pytest.raises(ValueError, match=r"NAC convs \['gin'\] are not among its candidates \['sage', 'gcn'\]"):
        get_sampler("nac", space=shallow, convs=("gin",))


def test_strategy_without_a_task_reads_the_study_dataset_from_its_data_root(tiny_graph, monkeypatch, tmp_path):
    import nas.tasks

    asked = []

    def load_task(name, root=None, seed=0):
        asked.append((name, root))
        return _TinyTask(tiny_graph)

    monkeypatch.setattr(nas.tasks, "load_task", load_task)
    sampler = get_sampler("nac", seed=0, space=GCN_GAT, data_root=str(tmp_path), width=16, steps=2)
    _nac_study(sampler, GCN_GAT, n_trials=1)
    assert asked == [("cora", str(tmp_path))]


def test_strategy_without_a_task_names_a_study_dataset_it_cannot_load():
    # a DataTask's study: its name loads nothing; "could not resolve dataset 'mine'" said
    # neither which strategy nor what to do
    study = optuna.create_study(sampler=get_sampler("nac", space=GCN_GAT))
    study.set_user_attr("space", "gnn")
    study.set_user_attr("dataset", "mine")
    with pytest.raises(ValueError, match=r"strategy 'nac' cannot load the study's dataset 'mine' by "
                                         r"name .* give the sampler task=\.\.\., as run_search does"):
        study.optimize(lambda t: 0.0, n_trials=1)


def test_strategy_runs_on_the_search_device(tiny_graph, monkeypatch):
    import importlib

    from nas.train import resolve_device

    nac = importlib.import_module("nas.samplers._nac")  # the attribute nas.samplers._nac is a factory

    devices = []

    def recording(*args, **kwargs):
        devices.append(kwargs["device"])
        return nac_search(*args, **kwargs)

    monkeypatch.setattr(nac, "nac_search", recording)
    sampler = get_sampler("nac", seed=0, space=GCN_GAT, task=_TinyTask(tiny_graph), device="cpu", width=16, steps=2)
    _nac_study(sampler, GCN_GAT, n_trials=1)
    assert devices == [torch.device("cpu")]
    assert get_sampler("nac", space=GCN_GAT, device="auto").device == resolve_device("auto")


def test_check_strategy_refuses_a_space_nac_cannot_search():
    from nas.samplers import check_strategy

    with pytest.raises(ValueError, match="strategy 'nac' searches space 'gnn', not 'nasbench-graph'"):
        check_strategy("nac", get_space("nasbench-graph"))
    check_strategy("nac", GCN_GAT)
