"""The gradient strategy: GDAS over the supernet, its collapse guard, and its trials."""
from __future__ import annotations

import dataclasses
import json

from nas.supernet import GNNSupernet, GradientConfig, derive, gradient_search
from search_spaces.gnn import GNNArchitecture



@dataclasses.dataclass
class TinyTask:
    data: object
    name: str = "tiny"
    level: str = "node"
    num_features: int = 4
    num_classes: int = 3


def _search(tiny_graph, penalty: float, cap: int | None = None):
    supernet = GNNSupernet(4, 3, "node", max_depth=2, widths=(16,), convs=("gcn", "linear", "sage"))
    config = GradientConfig(
        epochs=40, warmup_epochs=5, seed=0, device="cpu", shortcut_penalty=penalty,
        max_shortcuts=cap, arch_lr=0.1,
    )
    return supernet, gradient_search(supernet, TinyTask(tiny_graph), config)


def test_gdas_derives_a_valid_covered_architecture(tiny_graph) -> None:
    supernet, result = _search(tiny_graph, penalty=0.5, cap=1)
    assert isinstance(result.derived, GNNArchitecture)
    assert supernet.project(result.derived, strict=True) == result.derived
    assert set(result.logits) == set(supernet.decisions())
    assert any(v != 0 for values in result.logits.values() for v in values)  # logits moved
    json.dumps(result.to_json_dict())  # storable as a study attribute


def test_the_penalty_lowers_the_mass_on_shortcut_choices(tiny_graph) -> None:
    _, free = _search(tiny_graph, penalty=0.0)
    _, guarded = _search(tiny_graph, penalty=20.0)
    assert guarded.shortcut_mass < free.shortcut_mass - 0.05
    assert guarded.guard["shortcut_penalty"] == 20.0


def test_the_cap_moves_the_least_confident_shortcuts_to_real_ops() -> None:
    choices = {"l0_op": ["gcn", "linear"], "l1_op": ["gcn", "linear"], "skip": ["none", "residual"]}
    logits = {"l0_op": [0.0, 3.0], "l1_op": [0.0, 0.5], "skip": [0.0, 2.0]}
    shortcuts = {"l0_op": frozenset({"linear"}), "l1_op": frozenset({"linear"}),
                 "skip": frozenset({"residual"})}
    picked, replaced = derive(logits, choices, shortcuts, max_shortcuts=1)
    assert picked == {"l0_op": "linear", "l1_op": "gcn", "skip": "none"}
    assert replaced == ["l1_op", "skip"]
    unguarded, none = derive(logits, choices, shortcuts, max_shortcuts=None)
    assert unguarded == {"l0_op": "linear", "l1_op": "linear", "skip": "residual"} and none == []


# -- the strategy searches the search's space, reads its data root, runs on its device --------

GCN_GAT_CONVS = ("gcn", "gat")


def _gradient_study(monkeypatch, tiny_graph, n_trials: int = 3, **options):
    """A study of the gradient strategy (``get_sampler("gradient", **options)``) on the tiny
    graph, standing in for Cora; returns the study and the data roots ``load_task`` was given."""
    import optuna

    import nas.tasks
    from nas.samplers import get_sampler

    roots = []

    def load_task(name, root=None, seed=0):
        roots.append(root)
        return TinyTask(tiny_graph)

    monkeypatch.setattr(nas.tasks, "load_task", load_task)
    options.setdefault("config", GradientConfig(epochs=6, warmup_epochs=2))
    space = options["space"]
    study = optuna.create_study(direction="maximize", sampler=get_sampler("gradient", seed=0, **options))
    study.set_user_attr("dataset", "cora")
    study.set_user_attr("space", "gnn")
    study.optimize(lambda t: float(space.suggest(t).depth), n_trials=n_trials)
    return study, roots


def test_strategy_proposes_only_the_convs_of_the_space(tiny_graph, monkeypatch) -> None:
    # --convs gcn,gat: GDAS searched all twelve convs, derived gatv2, and the trial labelled
    # "derived" silently trained another architecture
    import optuna

    from search_spaces.gnn import GNNSpace

    space = GNNSpace(convs=GCN_GAT_CONVS)
    study, _ = _gradient_study(monkeypatch, tiny_graph, n_trials=4, space=space)
    stored = study.user_attrs["gradient_search"]
    assert stored["supernet"]["convs"] == list(GCN_GAT_CONVS)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    archs = [space.suggest(optuna.trial.FixedTrial(t.params)) for t in study.trials]
    assert {layer.conv for arch in archs for layer in arch.layers} <= set(GCN_GAT_CONVS)
    derived = [t for t in study.trials if t.user_attrs["gradient_proposal"] == "derived"]
    assert len(derived) == 1 and derived[0].params == stored["derived_params"]


def test_strategy_keeps_within_the_depth_of_the_space() -> None:
    import pytest

    from nas.samplers import get_sampler
    from search_spaces.gnn import GNNSpace

    shallow = GNNSpace(max_depth=1, convs=("gcn", "sage"))
    assert get_sampler("gradient", space=shallow).options == {"convs": ("gcn", "sage"), "max_depth": 1}
    with pytest.raises(ValueError, match=r"supernet convs \['gat'\] are outside the space's convs \['gcn', 'sage'\]"):
        get_sampler("gradient", space=shallow, supernet_options={"convs": ("gat",)})
    with pytest.raises(ValueError, match="supernet max_depth 2 exceeds the space's max_depth 1"):
        get_sampler("gradient", space=shallow, supernet_options={"max_depth": 2})


def test_strategy_without_a_task_reads_the_study_dataset_from_its_data_root(tiny_graph, monkeypatch, tmp_path) -> None:
    from search_spaces.gnn import GNNSpace

    space = GNNSpace(convs=GCN_GAT_CONVS)
    # outside a search, which hands it its task: the study's dataset, by name
    _, roots = _gradient_study(
        monkeypatch, tiny_graph, n_trials=2, space=space, data_root=str(tmp_path), device="cpu",
    )
    assert roots == [str(tmp_path)]  # the search only: a sampled proposal needs no data


def test_strategy_searches_the_task_it_is_given(tiny_graph, monkeypatch) -> None:
    # as run_worker hands it (a DataTask has no name to reload it by)
    from search_spaces.gnn import GNNSpace

    space = GNNSpace(convs=GCN_GAT_CONVS)
    study, roots = _gradient_study(monkeypatch, tiny_graph, n_trials=2, space=space, task=TinyTask(tiny_graph))
    assert roots == [] and study.user_attrs["gradient_search"]["supernet"]["in_channels"] == 4


def test_strategy_runs_on_the_search_device(tiny_graph, monkeypatch) -> None:
    import importlib

    from nas.samplers import get_sampler
    from nas.train import resolve_device
    from search_spaces.gnn import GNNSpace

    module = importlib.import_module("nas.supernet._gradient")
    devices = []

    def recording(supernet, task, config):
        devices.append(config.device)
        return gradient_search(supernet, task, config)

    monkeypatch.setattr(module, "gradient_search", recording)
    space = GNNSpace(convs=GCN_GAT_CONVS)
    config = GradientConfig(epochs=4, warmup_epochs=1, device="cuda")  # the search's device wins
    _gradient_study(monkeypatch, tiny_graph, n_trials=1, space=space, config=config, device="cpu")
    assert devices == ["cpu"]
    assert get_sampler("gradient", space=space, device="auto").search_config().device == str(resolve_device("auto"))


def test_a_stored_search_over_other_convs_is_refused(monkeypatch) -> None:
    import optuna
    import pytest

    from nas.samplers import get_sampler
    from search_spaces.gnn import GNNSpace

    study = optuna.create_study(sampler=get_sampler("gradient", space=GNNSpace(convs=GCN_GAT_CONVS)))
    study.set_user_attr("gradient_search", {"supernet": {"convs": ["gcn", "gatv2"]}})
    with pytest.raises(ValueError, match=r"covers convs \['gatv2'\] outside this search's convs \['gcn', 'gat'\]"):
        study.sampler.result(study)


def test_check_strategy_refuses_a_space_without_a_supernet() -> None:
    import pytest

    from nas.samplers import check_strategy
    from search_spaces.gnn import GNNSpace

    class Unsupported(GNNSpace):
        name = "custom"

    with pytest.raises(ValueError, match=r"strategy 'gradient' needs a space with a supernet, not 'custom'.*'gnn'"):
        check_strategy("gradient", Unsupported())
    check_strategy("gradient", GNNSpace(convs=GCN_GAT_CONVS))
