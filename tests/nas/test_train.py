from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from nas.train import DivergedError, TrainConfig, resolve_device, seed_everything, train_model
from search_spaces.gnn import GNN, GNNArchitecture, LayerSpec


class _FakeNodeTask:
    """A node task around an inline graph (the loop reads only these attributes)."""

    level = "node"

    def __init__(self, data) -> None:
        self.data, self.num_features, self.num_classes = data, data.num_features, 3


class _Exploding(nn.Module):
    """A node model whose output is infinite from the first forward on."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x, edge_index, batch=None):
        return x[:, :3] * self.w * math.inf


def _model(seed: int = 0) -> nn.Module:
    seed_everything(seed)
    return GNN(GNNArchitecture(layers=(LayerSpec("gcn", 8, dropout=0.0),)), 4, 3)


def test_training_learns_the_training_nodes(tiny_graph) -> None:
    tiny_graph.train_mask = tiny_graph.val_mask = torch.arange(6) < 4  # select on learnable nodes
    config = TrainConfig(lr=0.05, weight_decay=0.0, epochs=300, patience=0)
    result = train_model(_model(), _FakeNodeTask(tiny_graph), config)
    assert result.metrics["train_acc"] == 1.0 and result.metrics["train_loss"] < 0.9
    assert result.epochs_run == 300 and 1 <= result.best_epoch <= 300
    assert set(result.metrics) >= {"train_acc", "val_acc", "test_acc", "val_loss"}
    assert len(result.history) == 300


def test_same_seed_same_result(tiny_graph) -> None:
    a = train_model(_model(3), _FakeNodeTask(tiny_graph), TrainConfig(epochs=20, seed=3))
    b = train_model(_model(3), _FakeNodeTask(tiny_graph), TrainConfig(epochs=20, seed=3))
    assert a.metrics == b.metrics
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)


def test_best_validation_state_is_kept(tiny_graph) -> None:
    model = _model()
    result = train_model(model, _FakeNodeTask(tiny_graph), TrainConfig(epochs=30, patience=0))
    best_val = max(acc for _, acc in result.history)
    assert result.metrics["val_acc"] == pytest.approx(best_val)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in result.state_dict.items())


def test_early_stopping_and_reports(tiny_graph) -> None:
    seen = []
    result = train_model(
        _model(), _FakeNodeTask(tiny_graph), TrainConfig(lr=0.0, epochs=100, patience=5),
        report=lambda epoch, acc: seen.append(epoch),
    )
    assert result.epochs_run == 6 and result.best_epoch == 1  # lr 0: val never improves
    assert seen == list(range(1, 7))


def test_report_can_stop_training(tiny_graph) -> None:
    class Stop(Exception):
        pass

    def report(epoch: int, acc: float) -> None:
        if epoch == 3:
            raise Stop

    with pytest.raises(Stop):
        train_model(_model(), _FakeNodeTask(tiny_graph), TrainConfig(epochs=10), report=report)


def test_diverging_loss_raises(tiny_graph) -> None:
    with pytest.raises(DivergedError, match="epoch 1"):
        train_model(_Exploding(), _FakeNodeTask(tiny_graph), TrainConfig(epochs=5))


def test_divergence_can_keep_the_best_epoch_before_it(tiny_graph) -> None:
    class LateExplosion(nn.Module):
        """A linear model whose output becomes infinite from the 4th training forward on."""

        def __init__(self) -> None:
            super().__init__()
            self.lin, self.calls = nn.Linear(4, 3), 0

        def forward(self, x, edge_index, batch=None):
            self.calls += self.training
            out = self.lin(x)
            return out * math.inf if self.training and self.calls >= 4 else out

    config = TrainConfig(lr=0.05, epochs=10, patience=0, keep_best_on_divergence=True)
    model = LateExplosion()
    result = train_model(model, _FakeNodeTask(tiny_graph), config)
    assert result.diverged_at == 4 and result.epochs_run == 4
    assert [epoch for epoch, _ in result.history] == [1, 2, 3] and 1 <= result.best_epoch <= 3
    assert all(torch.isfinite(v).all() for v in result.state_dict.values())
    assert math.isfinite(result.metrics["val_loss"]) and 0.0 <= result.metrics["test_acc"] <= 1.0
    with pytest.raises(DivergedError, match="epoch 4"):  # the default still raises
        train_model(LateExplosion(), _FakeNodeTask(tiny_graph), TrainConfig(lr=0.05, epochs=10))


def test_divergence_before_any_validation_still_raises(tiny_graph) -> None:
    with pytest.raises(DivergedError, match="epoch 1"):
        train_model(_Exploding(), _FakeNodeTask(tiny_graph),
                    TrainConfig(epochs=5, keep_best_on_divergence=True))


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_graph_task_mini_batches() -> None:
    from nas.tasks import Task

    task = Task("mutag")
    seed_everything(0)
    layers = (LayerSpec("gin", 32, dropout=0.0, norm="batch"),) * 2
    model = GNN(GNNArchitecture(layers=layers, readout="sum"), 7, 2, "graph")
    result = train_model(model, task, TrainConfig(lr=0.01, epochs=20, patience=0, batch_size=32))
    assert result.metrics["train_acc"] > 0.75  # the majority class alone gives 0.66
    assert 0.0 <= result.metrics["test_acc"] <= 1.0


def test_training_is_seeded_by_its_config_whatever_ran_before(tiny_graph) -> None:
    seed_everything(0)
    model = GNN(GNNArchitecture(layers=(LayerSpec("gcn", 8, dropout=0.5),)), 4, 3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(lr=0.05, epochs=15, patience=0, seed=3)

    def train_after(draws: int):
        torch.manual_seed(draws)  # the caller's random state differs between the calls
        torch.rand(draws)
        model.load_state_dict(state)
        before = torch.random.get_rng_state()
        result = train_model(model, _FakeNodeTask(tiny_graph), config)
        assert torch.equal(torch.random.get_rng_state(), before)  # the caller's state is kept
        return result

    first, second = train_after(1), train_after(7)
    assert first.history == second.history
    assert all(torch.equal(first.state_dict[k], second.state_dict[k]) for k in first.state_dict)
    model.load_state_dict(state)  # same start, another seed: other dropout masks
    other = train_model(model, _FakeNodeTask(tiny_graph), TrainConfig(lr=0.05, epochs=15, patience=0, seed=4))
    assert any(not torch.equal(other.state_dict[k], first.state_dict[k]) for k in first.state_dict)


def test_select_val_loss_keeps_the_epoch_of_lowest_validation_loss(tiny_graph) -> None:
    tiny_graph.train_mask = torch.arange(6) < 5  # validation nodes 1-5: four of them learned
    tiny_graph.val_mask = torch.arange(6) > 0
    epochs = 60
    config = TrainConfig(lr=0.01, epochs=epochs, patience=0, select="val_loss",
                         checkpoint_epochs=tuple(range(1, epochs + 1)))
    result = train_model(_model(), _FakeNodeTask(tiny_graph), config)
    per_epoch = {e: metrics for e, (metrics, _) in result.checkpoints.items()}
    lowest_loss = min(per_epoch, key=lambda e: (per_epoch[e]["val_loss"], e))
    highest_acc = max(per_epoch, key=lambda e: (per_epoch[e]["val_acc"], -e))
    assert lowest_loss != highest_acc  # the two rules pick different epochs here
    assert result.best_epoch == lowest_loss
    assert result.metrics == pytest.approx(per_epoch[lowest_loss])
    by_acc = train_model(_model(), _FakeNodeTask(tiny_graph), TrainConfig(
        lr=0.01, epochs=epochs, patience=0, checkpoint_epochs=config.checkpoint_epochs))
    assert by_acc.best_epoch == highest_acc


def test_an_unknown_selection_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"select 'test_acc' among choices \['val_acc', 'val_loss'\]"):
        TrainConfig(select="test_acc")


def test_train_evaluator_keeps_the_epoch_its_selection_names(tiny_graph) -> None:
    from nas.evaluators import TrainEvaluator
    from search_spaces.gnn import GNNSpace

    tiny_graph.train_mask = torch.arange(6) < 5  # as in the selection test above
    tiny_graph.val_mask = torch.arange(6) > 0
    space, task = GNNSpace(), _FakeNodeTask(tiny_graph)
    arch = GNNArchitecture(layers=(LayerSpec("gcn", 8, dropout=0.0),), lr=0.01)
    by_loss = TrainEvaluator(epochs=60, patience=0, select="val_loss").evaluate(arch, space, task)
    seed_everything(0)
    model = space.build(arch, 4, 3)
    direct = train_model(model, task, TrainConfig(**space.training_config(arch), epochs=60, patience=0,
                                                  select="val_loss"))
    assert by_loss.metrics["best_epoch"] == direct.best_epoch
    by_acc = TrainEvaluator(epochs=60, patience=0).evaluate(arch, space, task)
    assert by_acc.metrics["best_epoch"] != by_loss.metrics["best_epoch"]
    assert "select='val_loss'" in repr(TrainEvaluator(select="val_loss"))
    with pytest.raises(ValueError, match=r"select 'val' among choices \['val_acc', 'val_loss'\]"):
        TrainEvaluator(select="val")


@pytest.mark.parametrize("field, value, message", [
    ("eval_every", 0, "eval_every must be an integer >= 1, got 0"),
    ("patience", -1, "patience must be an integer >= 0, got -1 (0: never stop early)"),
    ("epochs", "5", "epochs must be an integer >= 0, got '5'"),
    ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
    ("train_fraction", 1.5, "train_fraction must lie in (0, 1], got 1.5"),
    ("optimizer", "adamw", "could not resolve optimizer 'adamw' among choices ['adam', 'sgd']"),
])
def test_a_training_config_that_could_not_train_is_refused_by_name(field, value, message) -> None:
    """eval_every 0 divided by zero at the first epoch, patience -1 stopped after one epoch,
    epochs '5' failed on string concatenation deep inside."""
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**{field: value})


def test_an_unknown_device_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"could not resolve device 'gpu' among choices \['auto', 'cpu', 'cuda'"):
        resolve_device("gpu")


def test_own_random_state_runs_a_function_in_a_fork_of_the_generators() -> None:
    from nas.train import own_random_state

    @own_random_state
    def reseeds() -> torch.Tensor:
        torch.manual_seed(123)
        return torch.rand(2)

    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    first = reseeds()
    assert torch.equal(torch.rand(2), expected) and torch.equal(reseeds(), first)
