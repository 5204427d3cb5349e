"""Attention layers coupled by an identity residual with different head counts (a GAT of width
32 with 4 heads, then one with 2: a model the GNN space draws) form one channel group of the GNN
pruner, its unit one channel in each of the larger head count's blocks, so that every layer keeps
equal heads. Before, the pruner left such a group unpruned: ``metanas prune`` on a
``gat32h4-gat32h2 residual`` model said the largest reachable speed-up was 1.000x."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metanets.pruning import count_macs, prune_model
from metanets.pruning._gnn import build_groups
from metanets.pruning.shapes import pruned_attributes
from nas.export import PRUNED_KEY, export_model, load_exported
from search_spaces.gnn import GNN, GNNArchitecture, LayerSpec

WIDTH = 32
HEADS = (4, 2)
STEP = 0.05  # coarse steps keep the tests fast


def _graph() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(20, 6, generator=generator), torch.randint(0, 20, (2, 60),
                                                                   generator=generator)


def _mixed_heads(conv: str = "gat", norm: str = "none") -> GNN:
    torch.manual_seed(0)
    layers = tuple(LayerSpec(conv, WIDTH, h, norm=norm, activation="relu") for h in HEADS)
    return GNN(GNNArchitecture(layers=layers, skip="residual"), 6, 3).eval()


def _empty_units(model: GNN, units: list[int]) -> GNN:
    """Zero every tensor entry of the coupled group's ``units`` (a unit: channel ``u`` of each
    of the 4 blocks of 8 flat channels), so they carry nothing and score lowest."""
    (group,) = build_groups(model)
    per_block = WIDTH // group.heads
    flat = torch.tensor([u + b * per_block for b in range(group.heads) for u in units])
    with torch.no_grad():
        for layer, h in zip(model.layers, HEADS):
            conv = layer.conv
            conv.lin.weight[flat] = 0
            conv.bias[flat] = 0
            for att in (conv.att_src, conv.att_dst):  # (1, h, WIDTH // h), head-major
                att.view(-1)[flat] = 0
        model.layers[1].conv.lin.weight[:, flat] = 0
        model.classifier.weight[:, flat] = 0
    return model


def _heads_even(model: GNN) -> bool:
    """Every layer's heads have one width, and its tensors agree on it: every output-channel
    axis of its conv has the layer's width (a per-head tensor (1, H, C): ``C`` per head)."""
    from metanets.pruning._gnn import _CONV_TABLES, _named_tensors, _table_entry

    for layer in model.layers:
        conv, width = layer.conv, layer.spec.width
        if conv.heads * conv.out_channels != width:
            return False
        for name, tensor in _named_tensors(conv):
            entry = _table_entry(_CONV_TABLES[type(conv).__name__], name)
            if entry == "heads" and tensor.shape != (1, conv.heads, conv.out_channels):
                return False
            if entry != "heads" and any(tensor.shape[a] != width for a in entry[0]):
                return False
    return True


@pytest.mark.parametrize("conv", ["gat", "gatv2", "transformer"])
def test_layers_of_different_heads_coupled_by_a_residual_are_pruned_together(conv: str) -> None:
    model, inputs = _mixed_heads(conv), _graph()
    result = prune_model(model, inputs, 2.0, step=STEP)
    assert result.speedup >= 2.0
    widths = [layer.width for layer in result.model.arch.layers]
    assert widths[0] == widths[1] < WIDTH  # one group: the residual adds them channel by channel
    assert widths[0] % 4 == 0  # every head of either layer keeps the same width
    assert _heads_even(result.model)
    with torch.no_grad():
        output = result.model(*inputs)
        assert output.shape == (20, 3)
        fixed = result.model.fixed_graph_forward(*inputs)()  # the training loop's path
        assert torch.allclose(fixed, output, atol=1e-5)
    assert count_macs(result.model, inputs) == result.macs_after
    assert [layer.width for layer in model.arch.layers] == [WIDTH, WIDTH]  # input untouched


def test_pruning_units_that_carry_nothing_changes_no_output() -> None:
    """Channels whose every weight is zero go first, and the same ones in both layers and every
    head: the pruned model computes what the model did."""
    model, inputs = _empty_units(_mixed_heads(), [1, 5, 6]), _graph()
    result = prune_model(model, inputs, 1.3, step=STEP)
    assert result.widths_after[0] >= 8 - 3  # 8 units of 4 channels; only empty ones go
    assert result.speedup >= 1.3
    with torch.no_grad():
        assert torch.allclose(result.model(*inputs), model(*inputs), atol=1e-5)


def test_a_pruned_mixed_heads_model_exports_and_loads_back(tmp_path: Path) -> None:
    model, inputs = _mixed_heads(norm="batch"), _graph()
    result = prune_model(model, inputs, 2.0, step=STEP)
    export_model(tmp_path / "m", space="gnn", spec=model.arch.to_dict(), in_channels=6,
                 out_channels=3, level="node", state_dict=result.model.state_dict(),
                 metadata={PRUNED_KEY: {"attributes": pruned_attributes(model, result.model)}})
    loaded = load_exported(tmp_path / "m")
    assert [layer.width for layer in loaded.arch.layers] == [
        layer.width for layer in result.model.arch.layers]
    with torch.no_grad():
        assert torch.allclose(loaded(*inputs), result.model.eval()(*inputs), atol=1e-5)


def test_the_printed_widths_say_whose_heads_a_mixed_group_counts() -> None:
    """A residual group of 4 and 2 heads printed its 8 units as [8] "channels per head": the
    2-head layer has 16 per head."""
    from types import SimpleNamespace

    from nas.prune import format_outcome

    metrics = {"test_acc": 0.8, "val_acc": 0.8}
    for model, said in ((_mixed_heads(), True), (_mixed_heads("gcn"), False)):
        result = prune_model(model, _graph(), 2.0, step=STEP)
        outcome = SimpleNamespace(result=result, model=result.model, before=metrics,
                                  finetuned=metrics, pruned=metrics, method="magnitude")
        text = format_outcome(outcome)
        assert ("channels per head of the layer with the most heads" in text) is said


def test_the_printed_widths_say_what_they_count_when_no_head_count_is_a_multiple_of_the_others() -> None:
    """A residual group of 3 and 2 heads (width 12, a spec a user can write) has units of one
    channel in each of 6 blocks: its printed [2] said "channels per head of the layer with the
    most heads", whose 3 heads hold 4 channels each."""
    from types import SimpleNamespace

    from nas.prune import format_outcome

    torch.manual_seed(0)
    layers = tuple(LayerSpec("gat", 12, h, activation="relu") for h in (3, 2))
    model = GNN(GNNArchitecture(layers=layers, skip="residual"), 6, 3).eval()
    result = prune_model(model, _graph(), 1.5, step=STEP)
    assert list(result.widths_before) == [2] and list(result.widths_after) == [1]
    metrics = {"test_acc": 0.8, "val_acc": 0.8}
    text = format_outcome(SimpleNamespace(result=result, model=result.model, before=metrics,
                                          finetuned=metrics, pruned=metrics, method="magnitude"))
    assert "channels per head of the layer with the most heads" not in text
    assert "channels in each of 6 equal blocks (the least common multiple of their head counts)" in text
