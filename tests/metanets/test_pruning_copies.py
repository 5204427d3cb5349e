"""The pruning pass copies its model only before the batches that may reach the target (it
copied it before every batch, to keep the model before the last one), and prunes to the same
network, bit for bit, whichever batches it copied before: the results below are those of the
pass that copied before every batch (commit bbb8721)."""
from __future__ import annotations

import hashlib
import math

import pytest
import torch
from torch import nn

import metanets.pruning.core as core
from metanets.pruning import prune_model
from search_spaces.cnn import CNN, CNNArchitecture
from search_spaces.gnn import GNN, GNNArchitecture, LayerSpec

STEP = 0.02  # small steps: many batches before the target


def _transformer_gnn() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A residual TransformerConv GNN (its pruning rescales the query rows: not only indexing)."""
    torch.manual_seed(0)
    layers = (LayerSpec("transformer", 16, 2, norm="batch"), LayerSpec("transformer", 16, 2, norm="layer"),
              LayerSpec("gcn", 32))
    generator = torch.Generator().manual_seed(0)
    graph = torch.randn(20, 6, generator=generator), torch.randint(0, 20, (2, 60), generator=generator)
    return GNN(GNNArchitecture(layers=layers, skip="residual"), 6, 3).eval(), graph


def _cnn() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """A residual CNN (pruned through torch-pruning's dependency graph)."""
    torch.manual_seed(0)
    images = torch.randn(4, 1, 14, 14, generator=torch.Generator().manual_seed(0))
    return CNN(CNNArchitecture(widths=(8, 8, 16), norm="batch", residual=True), 1, 10).eval(), (images,)


def _digest(model: nn.Module) -> str:
    """SHA-256 of every tensor of ``model``'s state dict: its name, dtype and bytes."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


#: (model, speed-up) -> widths, MACs and weights' digest the pass pruned to when it copied its
#: model before every batch
BEFORE = {
    ("gnn", 2.0): ((5, 18), 21080, "7b8fea7ba6af7f128e18da29522a4d77e247641eafc083d1ead4dcb66370d8c8"),
    ("gnn", 3.0): ((4, 17), 15420, "35c02e1105bf9ba3062d70358243acbf5a9710a144dfa6477419ecca80faa4b8"),
    ("cnn", 2.0): ((5, 14), 109060, "acc5c57cea7d464525b6bd7f076e914590128c9bd1c9a8e5185d1fa2705d355c"),
    ("cnn", 3.0): ((3, 12), 52836, "7e04f6bd9a4bd9de2814e1267924074e34eba3317f4273cb7004a96f13bd3120"),
}
MODELS = {"gnn": _transformer_gnn, "cnn": _cnn}


@pytest.mark.parametrize("near", [None, 0.0, math.inf], ids=["default", "never-near", "always-near"])
@pytest.mark.parametrize("name, speedup", sorted(BEFORE))
def test_the_pass_prunes_to_the_same_network_whichever_batches_it_copied_before(
    name: str, speedup: float, near: float | None, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``never-near`` copies no batch: the model before the last one is the input with every
    earlier batch redone; ``always-near`` copies before every batch after the first."""
    if near is not None:
        monkeypatch.setattr(core, "NEAR", near)
    model, inputs = MODELS[name]()
    result = prune_model(model, inputs, speedup, step=STEP)
    assert (result.widths_after, result.macs_after, _digest(result.model)) == BEFORE[name, speedup]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_pass_copies_its_model_only_near_the_target(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: one copy of the whole model per batch (69 on a Cora GCN 64-64 pruned to 2x),
    though only the one before the last batch is used."""
    calls = {"copies": 0, "macs": 0, "one channel": 0}

    def counting(name: str, function):
        def counted(*args, **kwargs):
            calls[name] += name != "copies" or isinstance(args[0], nn.Module)
            return function(*args, **kwargs)
        return counted

    monkeypatch.setattr(core.copy, "deepcopy", counting("copies", core.copy.deepcopy))
    monkeypatch.setattr(core, "count_macs", counting("macs", core.count_macs))
    monkeypatch.setattr(core, "_without", counting("one channel", core._without))
    model, inputs = MODELS[name]()
    prune_model(model, inputs, 3.0, step=STEP)
    # MACs measured: the input, the smallest network, after each batch, and in _last_step;
    # copies: the smallest network, the pruned one, and one per step of _last_step
    batches = calls["macs"] - 2 - calls["one channel"]
    pass_copies = calls["copies"] - 2 - calls["one channel"]  # one per batch before
    assert batches >= 8 and pass_copies < batches, calls
