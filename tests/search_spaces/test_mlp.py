"""The MLP space: sampling within the options, building, round trips and hashes, residuals only
between equal widths, clear errors; and that the rest of metanas takes its networks the way it
takes CNNs (parameter graphs, the graph metanetwork, pruning, export, the zoo command)."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

from metanets.gmn import GMN, GMNConfig, collate, prepare_graph
from metanets.graphs import NodeType, load_parameter_graph, to_parameter_graph
from metanets.pruning import count_macs, prune_model
from metanets.pruning.shapes import pruned_attributes
from nas.export import PRUNED_KEY, export_model, load_exported
from search_spaces import get_space
from search_spaces.cnn import CNNArchitecture, CNNSpace
from search_spaces.mlp import MLP, LinearBlock, MLPArchitecture, MLPSpace

IMAGE = (torch.zeros(2, 1, 14, 14),)  # mnist14-sized


def _mlp(seed: int = 0, **arch: object) -> MLP:
    """An MLP in eval mode with non-trivial normalisation statistics."""
    torch.manual_seed(seed)
    model = MLP(MLPArchitecture(**{"widths": (6, 4), **arch}), 1, 10)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


# the space ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_sampled_networks_classify_images_of_either_mnist_size(seed: int) -> None:
    space = get_space("MLP")
    arch = space.sample(seed)
    model = space.build(arch, 1, 10, "image").eval()
    assert model(torch.randn(3, 1, 14, 14)).shape == (3, 10)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)  # pooled to input_size first
    assert space.architecture_from_dict(arch.to_dict()) == arch
    assert MLPArchitecture.from_json(arch.to_json()).arch_hash == arch.arch_hash
    assert space.training_config(arch) == {
        "lr": arch.lr, "weight_decay": arch.weight_decay, "train_fraction": arch.train_fraction}


def test_hash_is_canonical_and_stable() -> None:
    arch = MLPArchitecture(widths=(16, 16), norm="layer", dropout=0.1, residual=True)
    # the hash of the canonical JSON: zoos and studies written earlier keep finding it
    assert arch.arch_hash == "8ab399cdc1ca2ad82e8ea7f7c68f389c37d239408bc6419cfb163ad4847467fa"
    shuffled = dict(reversed(list(json.loads(arch.to_json()).items())))
    assert MLPArchitecture.from_dict(shuffled).arch_hash == arch.arch_hash
    assert MLPArchitecture(widths=[16.0, 16], norm="layer", dropout=0.1,
                           residual=True).arch_hash == arch.arch_hash
    assert MLPArchitecture(widths=(16, 16), norm="layer", dropout=0.2,
                           residual=True).arch_hash != arch.arch_hash


OPTIONS = dict(min_depth=2, max_depth=4, widths=(8, 24), activations=("tanh", "gelu"),
               norms=("layer", "batch"), dropouts=(0.3,), residuals=(True,),
               train_fractions=(0.5,), input_size=7)


def _within_options(arch: MLPArchitecture) -> bool:
    return (2 <= arch.depth <= 4 and set(arch.widths) <= {8, 24}
            and arch.activation in ("tanh", "gelu") and arch.norm in ("layer", "batch")
            and arch.dropout == 0.3 and arch.input_size == 7 and arch.train_fraction == 0.5
            # residuals=(True,): on wherever two consecutive widths are equal
            and arch.residual == any(a == b for a, b in zip(arch.widths, arch.widths[1:])))


def test_sample_and_suggest_stay_within_the_options() -> None:
    space = MLPSpace(**OPTIONS)
    sampled = [space.sample(seed) for seed in range(40)]
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=5))
    suggested = []
    for _ in range(10):
        trial = study.ask()
        suggested.append(space.suggest(trial))
        study.tell(trial, 0.5)
    assert all(_within_options(a) for a in sampled + suggested)
    assert {a.depth for a in sampled} == {2, 3, 4}
    for arch in sampled:  # the inverse of suggest offers only the space's choices
        params = space.trial_params(arch)
        assert params["residual"] in space.residuals and params["dropout"] in space.dropouts


def test_space_options_arrive_as_the_zoo_passes_them() -> None:
    """``metanas zoo build --space-options`` JSON: lists become tuples, ``get_space`` builds."""
    options = {k: tuple(v) if isinstance(v, list) else v
               for k, v in json.loads(json.dumps(OPTIONS)).items()}
    space = get_space("mlp", **options)
    assert isinstance(space, MLPSpace) and repr(space) == repr(MLPSpace(**OPTIONS))
    assert "input_size=7" in repr(space) and "dropouts=[0.3]" in repr(space)


def test_hand_computed_parameter_counts() -> None:
    space = MLPSpace()
    # 196*8+8 | BN 2*8 | 8*8+8 | BN 2*8 | classifier 8*10+10
    model = space.build(MLPArchitecture(widths=(8, 8), norm="batch", residual=True), 1, 10)
    assert sum(p.numel() for p in model.parameters()) == 1576 + 16 + 72 + 16 + 90
    # three 7x7 channels: 147*4+4 | classifier 4*3+3
    model = space.build(MLPArchitecture(widths=(4,), input_size=7), 3, 3)
    assert sum(p.numel() for p in model.parameters()) == 592 + 15


def test_residual_only_between_equal_widths() -> None:
    model = _mlp(widths=(8, 8, 16, 16), residual=True)
    assert [b.residual for b in model.blocks] == [False, True, False, True]
    block = model.blocks[1]  # zero linear + relu: a residual block passes its input through
    nn.init.zeros_(block.linear.weight)
    nn.init.zeros_(block.linear.bias)
    x = torch.randn(5, 8)
    assert torch.equal(block(x), x)
    assert [b.residual for b in _mlp(widths=(8, 8), residual=False).blocks] == [False, False]
    # the first layer reads pixels: never a residual, even as wide as the image (14 * 14)
    assert [b.residual for b in _mlp(widths=(196, 196), residual=True).blocks] == [False, True]
    # no equal neighbours: the flag would change nothing, so it is off (and hashes so)
    lone = MLPArchitecture(widths=(8, 16, 8), residual=True)
    assert not lone.residual
    assert lone.arch_hash == MLPArchitecture(widths=(8, 16, 8)).arch_hash
    with pytest.raises(ValueError, match="equal widths, not 4 -> 8"):
        LinearBlock(4, 8, "relu", "none", 0.0, residual=True)


@pytest.mark.parametrize("norm, kind", [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm),
                                        ("none", type(None))])
def test_norm_and_dropout_are_built_as_chosen(norm: str, kind: type) -> None:
    model = _mlp(widths=(6,), norm=norm, dropout=0.2)
    assert isinstance(model.blocks[0].norm, kind)
    assert model.blocks[0].dropout.p == 0.2
    assert _mlp(widths=(6,)).blocks[0].dropout is None


@pytest.mark.parametrize("bad, message", [
    ({"widths": ()}, r"widths \(\) must hold 1..4"), ({"widths": (4,) * 5}, "widths"),
    ({"widths": (4, 0)}, "positive"),
    ({"norm": "group"}, r"norm 'group' is not among the choices \['none', 'batch', 'layer'\]"),
    ({"activation": "swish"}, r"activation 'swish' is not among the choices \['relu'"),
    ({"dropout": 1.0}, r"dropout 1.0 must be in \[0, 1\)"), ({"input_size": 0}, "input_size 0"),
    ({"input_size": 7.5}, "input_size 7.5"),
    ({"train_fraction": 0.0}, "train_fraction 0.0"), ({"lr": -1.0}, "lr -1.0"),
])
def test_bad_architectures_name_the_value(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MLPArchitecture(**bad)


@pytest.mark.parametrize("options, message", [
    ({"norms": ("group",)}, r"norms \['group'\] must be a non-empty subset of \['none', 'batch', "
                            r"'layer'\]"),
    ({"activations": ()}, r"activations \[\] must be a non-empty subset of \['relu'"),
    ({"residuals": ("yes",)}, r"residuals \['yes'\] must be a non-empty subset of \[False, True\]"),
    ({"max_depth": 5}, r"max_depth \(5\) <= 4"), ({"min_depth": 3, "max_depth": 2}, "min_depth"),
    ({"dropouts": (0.1, 1.0)}, r"dropouts \[0.1, 1.0\] must lie in \[0, 1\)"),
    ({"widths": (8, 0)}, r"widths \[8, 0\]"), ({"input_size": 0}, "input_size 0"),
    ({"train_fractions": (2.0,)}, r"train_fractions \[2.0\]"),
    ({"kernel_sizes": (3,)}, r"space 'mlp' takes no option\(s\) \['kernel_sizes'\]"),
])
def test_bad_space_options_name_the_value_and_choices(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_space("mlp", **options)


def test_malformed_spec_wrong_level_and_wrong_architecture_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="malformed MLP"):
        MLPSpace().architecture_from_dict({"widths": [4], "colour": "red"})
    with pytest.raises(ValueError, match="malformed MLP"):
        MLPSpace().architecture_from_dict({"norm": "batch"})
    with pytest.raises(ValueError, match="cannot build models for 'node'"):
        MLPSpace().build(MLPArchitecture(), 1, 10, "node")
    with pytest.raises(TypeError, match="builds MLPArchitecture, not CNNArchitecture"):
        MLPSpace().build(CNNArchitecture(), 1, 10)


# the rest of the house ------------------------------------------------------------------------
@pytest.mark.parametrize("arch", [
    dict(widths=(6, 4)), dict(widths=(6, 6), norm="batch", residual=True, dropout=0.1),
    dict(widths=(5, 5, 3), norm="layer", residual=True, activation="gelu"),
])
def test_parameter_graph_round_trips(arch: dict) -> None:
    source, fresh = _mlp(0, **arch), _mlp(1, **arch)
    graph = to_parameter_graph(source, IMAGE)
    load_parameter_graph(fresh, graph)
    x = torch.randn(3, 1, 14, 14)
    assert torch.equal(fresh(x), source(x))
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in fresh.state_dict().items())


def test_parameter_graph_has_a_node_per_pixel_and_neuron_and_an_edge_per_weight() -> None:
    graph = to_parameter_graph(_mlp(widths=(6, 4)), IMAGE)
    assert int((graph.node_type == NodeType.INPUT).sum()) == 196
    assert graph.num_nodes == 196 + 6 + 4 + 10
    assert graph.edge_index.size(1) == 196 * 6 + 6 * 4 + 4 * 10


@torch.no_grad()
def _permute_first_block(model: MLP, perm: torch.Tensor) -> None:
    """Permute the hidden neurons of block 0 (and block 1's inputs): the same function."""
    block = model.blocks[0]
    tensors = [block.linear.weight, block.linear.bias]
    if block.norm is not None:
        tensors += [t for t in (block.norm.weight, block.norm.bias,
                                getattr(block.norm, "running_mean", None),
                                getattr(block.norm, "running_var", None)) if t is not None]
    for tensor in tensors:
        tensor.copy_(tensor[perm])
    model.blocks[1].linear.weight.copy_(model.blocks[1].linear.weight[:, perm])


def _gmn() -> GMN:
    torch.manual_seed(0)
    return GMN(GMNConfig(hidden=16, layers=2, out_edge=1)).eval()


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_metanetwork_readout_is_invariant_to_hidden_neuron_permutations(norm: str) -> None:
    model = _mlp(widths=(6, 4), norm=norm)
    x = torch.randn(3, 1, 14, 14)
    before = model(x)
    graph = to_parameter_graph(model, IMAGE)
    _permute_first_block(model, torch.tensor([3, 1, 5, 0, 2, 4]))
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)  # same function
    permuted = to_parameter_graph(model, IMAGE)
    assert not torch.equal(permuted.edge_attr, graph.edge_attr)  # other weights layout
    gmn = _gmn()
    gmn.scaler.fit([prepare_graph(graph)])
    with torch.no_grad():
        same, moved = (gmn(collate([prepare_graph(g)])) for g in (graph, permuted))
        other = gmn(collate([prepare_graph(to_parameter_graph(_mlp(seed=5, norm=norm), IMAGE))]))
    torch.testing.assert_close(moved, same, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(other, same, atol=1e-4)  # it reads the weights


def test_metanetwork_batches_mlps_with_cnns_like_one_by_one() -> None:
    torch.manual_seed(0)
    cnn = CNNSpace().build(CNNArchitecture(widths=(4, 6), norm="batch"), 1, 10).eval()
    graphs = [to_parameter_graph(m, IMAGE) for m in (
        _mlp(widths=(6, 6), norm="layer", residual=True), cnn,
        _mlp(seed=2, widths=(5, 3, 3), norm="batch", residual=True))]
    gmn = _gmn()
    with torch.no_grad():
        together, edges = gmn.forward_all(collate([prepare_graph(g) for g in graphs]))
        alone = [gmn.forward_all(collate([prepare_graph(g)])) for g in graphs]
    assert together.shape == (3, 1)
    torch.testing.assert_close(together, torch.cat([a[0] for a in alone]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(edges, torch.cat([a[1] for a in alone]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
def test_pruning_reaches_2x_and_keeps_residual_neurons_coupled(norm: str) -> None:
    model = _mlp(widths=(32, 32, 16), norm=norm, residual=True, dropout=0.1)
    inputs = (torch.randn(4, 1, 14, 14),)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = prune_model(model, inputs, 2.0, step=0.05)
    assert result.speedup >= 2.0 and count_macs(result.model, inputs) == result.macs_after
    assert result.model(*inputs).shape == (4, 10)
    blocks = result.model.blocks
    assert blocks[0].linear.out_features == blocks[1].linear.out_features < 32  # the residual add
    assert blocks[2].linear.in_features == blocks[1].linear.out_features
    if norm != "none":
        assert blocks[2].norm.weight.numel() == blocks[2].linear.out_features < 16
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_export_round_trip_gives_equal_outputs(tmp_path: Path) -> None:
    model = _mlp(widths=(6, 6), norm="batch", residual=True, dropout=0.1)
    folder = export_model(tmp_path / "m", space="mlp", spec=model.arch.to_dict(), in_channels=1,
                          out_channels=10, level="image", state_dict=model.state_dict())
    loaded = load_exported(folder).eval()
    assert isinstance(loaded, MLP) and loaded.arch == model.arch
    x = torch.randn(3, 1, 14, 14)
    assert torch.equal(loaded(x), model(x))


def test_pruned_export_round_trip_gives_equal_outputs(tmp_path: Path) -> None:
    model = _mlp(widths=(16, 16), norm="layer", residual=True)
    inputs = (torch.randn(4, 1, 14, 14),)
    result = prune_model(model, inputs, 2.0, step=0.05)
    folder = export_model(
        tmp_path / "pruned", space="mlp", spec=model.arch.to_dict(), in_channels=1,
        out_channels=10, level="image", state_dict=result.model.state_dict(),
        metadata={PRUNED_KEY: {"attributes": pruned_attributes(model, result.model)}})
    loaded = load_exported(folder).eval()
    assert torch.allclose(loaded(*inputs), result.model(*inputs), atol=1e-6)
    assert count_macs(loaded, inputs) == result.macs_after


def test_zoo_build_trains_and_stores_mlps(mnist_available, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from metanets.zoo import load_zoo
    from nas.cli import main

    storage = f"sqlite:///{tmp_path / 'zoo.db'}"
    options = '{"widths": [8], "max_depth": 1, "norms": ["none"], "train_fractions": [0.01]}'
    assert main(["zoo", "build", "--space", "mlp", "--dataset", "mnist14", "--size", "2",
                 "--epochs", "1", "--storage", storage, "--device", "cpu", "--quiet",
                 "--space-options", options]) == 0
    assert "runs=2" in capsys.readouterr().out
    zoo = load_zoo(storage, "zoo-mnist14-mlp")
    assert len(zoo) == 2 and {entry.space for entry in zoo} == {"mlp"}
    assert zoo[0].graph.num_nodes == 196 + 8 + 10
