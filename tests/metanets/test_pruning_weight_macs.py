"""prune_model counts the MACs of its pruned copies from their weights' shapes (WeightMacs)
instead of a forward pass under FlopCounterMode per step, which took 85-90% of ``metanas
prune``'s pruning time on a Cora GCN. The counts must be FlopCounterMode's, which stays the
reference: every count of a pruning run is checked against it here, on the model types the
pruner supports, and a model whose products the weights do not explain keeps the forward count."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import metanets.pruning.core as core
from metanets.pruning import count_macs, prune_model
from search_spaces.cnn import CNN, CNNArchitecture
from search_spaces.gnn import ATTENTION_CONVS, CONVS, GNN, GNNArchitecture, LayerSpec
from search_spaces.mlp import MLP, MLPArchitecture

STEP = 0.05  # coarse steps keep the tests fast


def _graph() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(20, 6, generator=generator), torch.randint(0, 20, (2, 60),
                                                                   generator=generator)


def _gnn(conv: str, skip: str = "residual", heads: tuple[int, int] = (2, 2),
         level: str = "node") -> GNN:
    torch.manual_seed(0)
    heads = heads if conv in ATTENTION_CONVS else (1, 1)
    layers = (LayerSpec(conv, 16, heads[0], norm="batch"), LayerSpec(conv, 16, heads[1], norm="layer"))
    return GNN(GNNArchitecture(layers=layers, skip=skip), 6, 3, level=level).eval()


def _images() -> tuple[torch.Tensor]:
    return (torch.randn(4, 1, 14, 14, generator=torch.Generator().manual_seed(0)),)


def _cnn(widths: tuple[int, ...]) -> CNN:
    torch.manual_seed(0)
    return CNN(CNNArchitecture(widths=widths, norm="batch", residual=True), 1, 10).eval()


def _cases() -> list[Any]:
    graph = _graph()
    batch = torch.tensor([0] * 10 + [1] * 10)
    cases = [pytest.param(_gnn(conv), graph, id=f"gnn-{conv}") for conv in CONVS]
    cases += [
        pytest.param(_gnn("gat", heads=(4, 2)), graph, id="gnn-gat-mixed-heads"),
        pytest.param(_gnn("transformer", skip="jk_cat"), graph, id="gnn-transformer-jk"),
        pytest.param(_gnn("gin", skip="none", level="graph"), (*graph, batch), id="gnn-graph-level"),
        # identity shortcuts (8 -> 8) and 1x1 projections (1 -> 8, 8 -> 16)
        pytest.param(_cnn((8, 8, 16)), _images(), id="cnn-residual"),
        pytest.param(MLP(MLPArchitecture(widths=(16, 8)), 1, 10).eval(), _images(), id="mlp"),
    ]
    return cases


@pytest.mark.parametrize("model, inputs", _cases())
def test_every_count_of_a_pruning_run_is_flop_counter_modes(model: nn.Module, inputs: Any,
                                                            monkeypatch) -> None:
    counted = []
    from_weights = core.WeightMacs.__call__

    def checked(self: core.WeightMacs, pruned: nn.Module) -> int:
        macs = from_weights(self, pruned)
        assert macs == count_macs(pruned, inputs)
        counted.append(macs)
        return macs

    monkeypatch.setattr(core.WeightMacs, "__call__", checked)
    result = prune_model(model, inputs, 2.0, step=STEP)
    assert len(counted) > 2  # the steps too, not only the checks of the model and its smallest copy
    assert result.macs_after == count_macs(result.model, inputs) and result.speedup >= 2.0


@pytest.mark.parametrize("model, inputs", [
    pytest.param(_gnn("gcn", skip="none"), _graph(), id="gnn-gcn"),
    pytest.param(_cnn((8, 8, 16)), _images(), id="cnn-residual"),
])
def test_a_pruning_run_counts_one_forward_pass_of_the_model_and_one_of_its_smallest_copy(
    model: nn.Module, inputs: Any, monkeypatch,
) -> None:
    """Before, every step of the run was counted by a forward pass (15 here on the GCN)."""
    passes = []
    forward_count = core.count_macs
    monkeypatch.setattr(core, "count_macs", lambda *args: passes.append(1) or forward_count(*args))
    prune_model(model, inputs, 2.0, step=STEP)
    assert len(passes) == 2


def _result(model: nn.Module, inputs: Any) -> tuple[Any, ...]:
    r = prune_model(model, inputs, 3.0, step=STEP)
    return (r.macs_before, r.macs_after, r.params_after, r.removed_fraction, r.widths_after,
            {k: v.tolist() for k, v in r.model.state_dict().items()})


@pytest.mark.parametrize("model, inputs", [
    pytest.param(_gnn("tag"), _graph(), id="gnn-tag"),
    pytest.param(_cnn((8, 16)), _images(), id="cnn-projection"),
])
def test_pruning_from_weights_gives_the_result_of_counting_every_step_forward(
    model: nn.Module, inputs: Any, monkeypatch,
) -> None:
    fast = _result(model, inputs)
    monkeypatch.setattr(core, "counted_by_weights",  # no product explained: every step forward
                        lambda model, inputs: (count_macs(model, inputs), core.WeightMacs(())))
    assert _result(model, inputs) == fast


class _Gram(nn.Module):
    """A product of two activations, which no weight explains; it vanishes with one hidden
    channel left, so that only the unpruned model shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.hidden(x)[:, 1:]  # (B, 7)
        return h.T @ h             # (7, 7): B x 7 x 7 MACs


class _Lifted(nn.Module):
    """A Linear applied to every hidden channel: its rows (B x hidden width) shrink with the
    hidden layer, so its positions are not the unpruned model's."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, hidden)
        self.lift = nn.Linear(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lift(self.hidden(x).unsqueeze(-1))  # (B, hidden, 2)


class _NarrowHidden:
    """A backend double: removes the ``drops`` of the one group, the hidden Linear's outputs."""

    def apply(self, model: nn.Module, drops: list[torch.Tensor]) -> None:
        keep = [c for c in range(model.hidden.out_features) if c not in set(drops[0].tolist())]
        narrow = nn.Linear(4, len(keep))
        with torch.no_grad():
            narrow.weight.copy_(model.hidden.weight[keep])
            narrow.bias.copy_(model.hidden.bias[keep])
        model.hidden = narrow


@pytest.mark.parametrize("model", [_Gram(), _Lifted()], ids=["no-weight", "positions-change"])
def test_products_the_weights_do_not_explain_are_counted_forward(model: nn.Module) -> None:
    inputs = (torch.randn(5, 4),)
    before, smallest, measure = core.pruning_macs(_NarrowHidden(), model, [8], inputs)
    assert not isinstance(measure, core.WeightMacs)
    one = core._smallest(_NarrowHidden(), model, [8])
    assert (before, smallest) == (count_macs(model, inputs), count_macs(one, inputs))
    half = _Lifted(4) if isinstance(model, _Lifted) else one
    assert measure(half) == count_macs(half, inputs)


def test_the_positions_check_is_what_catches_a_changed_layer() -> None:
    """On the unpruned model the weights give the forward count; only the one-channel copy
    shows that the lifted Linear's rows shrank."""
    model, inputs = _Lifted(), (torch.randn(5, 4),)
    before, weights = core.counted_by_weights(model, inputs)
    assert weights(model) == before
    one = core._smallest(_NarrowHidden(), model, [8])
    assert weights(one) != count_macs(one, inputs)


class _Chain(nn.Module):
    """Three hidden Linears whose middle and last weights are one (``tied``: lin2 reuses
    lin1's Parameter) or two Parameters on one storage: each product was credited to one path,
    whose width differs from the other's once pruned, while both ends of the run agreed."""

    def __init__(self, sharing: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin0, self.lin1, self.lin2 = nn.Linear(8, 16), nn.Linear(16, 16), nn.Linear(16, 16)
        self.lin2.weight = (self.lin1.weight if sharing == "tied"
                            else nn.Parameter(self.lin1.weight.data))
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.lin0, self.lin1, self.lin2):
            x = torch.relu(layer(x))
        return self.head(x)


@pytest.mark.parametrize("sharing", ["tied", "one-storage"])
def test_shared_weights_are_counted_forward(sharing: str, monkeypatch) -> None:
    """Tied: 10,912 MACs after (2.018x) where counting forward stops at 11,008 (2.000x); one
    storage: 10,848 reported (2.029x) for a pruned model of 9,792 (2.248x)."""
    inputs = (torch.randn(32, 8, generator=torch.Generator().manual_seed(0)),)
    result = prune_model(_Chain(sharing).eval(), inputs, 2.0, step=STEP)
    assert result.macs_after == count_macs(result.model, inputs)
    monkeypatch.setattr(core, "counted_by_weights",  # no product explained: every step forward
                        lambda model, inputs: (count_macs(model, inputs), core.WeightMacs(())))
    forward = prune_model(_Chain(sharing).eval(), inputs, 2.0, step=STEP)
    assert (result.macs_after, result.widths_after) == (forward.macs_after, forward.widths_after)
