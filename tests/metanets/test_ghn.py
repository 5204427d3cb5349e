"""Graph hypernetwork: a tensor of the right shape for every parameter of every supported layer,
unseen networks far better than chance on a tiny task, pickle-free checkpoints, clear errors."""
from __future__ import annotations

import json
import re
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from metanets.ghn import (
    GHNConfig,
    GraphHyperNetwork,
    UnsupportedLayerError,
    calibrate_batchnorm,
    resolve_checkpoint,
    role_key,
    supported_layers,
    supported_roles,
)
from metanets.ghn_train import (
    HypernetTrainConfig,
    TaskBatches,
    accuracy,
    predicted_model,
    sample_architectures,
    train_hypernet,
)
from search_spaces.gnn import ATTENTION_CONVS, CONVS, GNNArchitecture, GNNSpace, LayerSpec


pytestmark = pytest.mark.usefixtures("_metanet_one_thread")


def _ghn(in_channels: int = 6, out_channels: int = 3, level: str = "node", **sizes) -> GraphHyperNetwork:
    torch.manual_seed(0)
    return GraphHyperNetwork(GHNConfig(in_channels, out_channels, level, hidden=16, rank=8, **sizes))


def _assert_complete(model: nn.Module, predicted: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    assert set(predicted) >= set(params)
    for name, param in params.items():
        assert predicted[name].shape == param.shape, name
        assert torch.isfinite(predicted[name]).all(), name
        assert predicted[name].std() > 0 or param.numel() == 1 or name.endswith("bias"), name
    model.load_state_dict(predicted)  # strict: every key, right shapes


# every GNN-space convolution, with every normalisation, inside a real model of the space ------
@pytest.mark.parametrize("conv", CONVS)
@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_every_conv_of_the_gnn_space_gets_every_parameter(conv: str, norm: str) -> None:
    heads = 2 if conv in ATTENTION_CONVS else 1
    arch = GNNArchitecture(
        layers=(LayerSpec(conv=conv, width=16, heads=heads, norm=norm),
                LayerSpec(conv=conv, width=8, heads=heads, norm=norm)),
        skip="residual",  # a residual projection (Linear without bias) too
    )
    model = GNNSpace().build(arch, 6, 3)
    ghn = _ghn()
    predicted = ghn.predict(model)
    _assert_complete(model, predicted)
    out = model.eval()(torch.randn(5, 6), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]]))
    assert out.shape == (5, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("op", ["gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc"])
def test_every_op_of_the_nasbench_graph_space_gets_every_parameter(op: str) -> None:
    """A cell with a gin (whose nn is one Linear, not GNN-space's MLP) could not be predicted
    ('no decoder for GINConv:nn.weight'), so hypernet train --space nasbench-graph failed."""
    from search_spaces import get_space

    space = get_space("nasbench-graph")
    model = space.build(space.architecture_from_dict({"links": [0, 1, 2, 3], "ops": [op, "skip", op, "gcn"]}),
                        6, 3, "node")
    _assert_complete(model, _ghn().predict(model))


class _TorchLayers(nn.Module):
    """Conv1d, Conv2d (with and without bias), BatchNorm1d/2d, GroupNorm, LayerNorm, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 12, 1, bias=False)
        self.gn = nn.GroupNorm(4, 12)
        self.conv1d = nn.Conv1d(12, 6, 5, padding=2)
        self.bn1d = nn.BatchNorm1d(6)
        self.ln = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.gn(self.conv2(torch.relu(self.bn(self.conv(x)))))  # (B, 12, H, W)
        h = self.bn1d(self.conv1d(h.flatten(2)))                    # (B, 6, H*W)
        return self.fc(self.ln(h.mean(-1)))                         # (B, 4)


def test_every_torch_layer_gets_every_parameter() -> None:
    model = _TorchLayers()
    ghn = _ghn(3, 4, "image")
    predicted = ghn.predict(model)
    _assert_complete(model, predicted)
    # kernel positions get different weights; the class rows come from the class table
    assert not torch.allclose(predicted["conv.weight"][..., 0, 0], predicted["conv.weight"][..., 1, 1])
    assert model.eval()(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_every_supported_role_is_covered_by_the_tests_above() -> None:
    roles = set()
    for conv in CONVS:
        from search_spaces.gnn import make_conv

        layer = make_conv(LayerSpec(conv=conv, width=8, heads=2 if conv in ATTENTION_CONVS else 1), 4)
        roles |= {role_key(type(layer).__name__, n)[0] for n, _ in layer.named_parameters()}
    for module in _TorchLayers().modules():
        roles |= {role_key(type(module).__name__, n)[0]
                  for n, _ in module.named_parameters(recurse=False)}
    assert roles == set(supported_roles())
    assert {"GATConv", "TransformerConv", "Conv2d", "BatchNorm1d"} <= set(supported_layers())


def test_wider_and_deeper_than_anything_still_get_right_shapes() -> None:
    arch = GNNArchitecture(layers=tuple(LayerSpec(conv="gat", width=256, heads=8) for _ in range(4)),
                           skip="jk_cat")
    model = GNNSpace().build(arch, 6, 3)
    _assert_complete(model, _ghn().predict(model))


def test_hidden_weights_are_fan_in_normalised_across_widths() -> None:
    """Pre-activations keep their scale when a layer gets 8x wider (GHN-2's weight
    normalisation; here the low-rank mean over channels)."""
    ghn = _ghn()
    x, edge_index = torch.randn(40, 6), torch.randint(0, 40, (2, 120))
    scales = []
    for width in (32, 256):
        arch = GNNArchitecture(layers=(LayerSpec("linear", width, dropout=0.0, activation="tanh"),
                                       LayerSpec("linear", width, dropout=0.0, activation="linear")))
        model = GNNSpace().build(arch, 6, 3)
        model.load_state_dict(ghn.predict(model))
        with torch.no_grad():
            scales.append(float(model.eval().embed(x, edge_index).std()))
    assert 0.5 < scales[1] / scales[0] < 2.0


# training on a tiny task; an unseen network far better than chance ---------------------------
def _tiny_task(seed: int = 0) -> types.SimpleNamespace:
    """120 nodes, 3 classes, 6 noisy features, homophilous edges; 60/30/30 split."""
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(seed)
    n, classes = 120, 3
    y = torch.arange(n) % classes
    x = torch.randn(n, 6, generator=g)
    x[:, :classes] += 2.0 * nn.functional.one_hot(y, classes)
    src = torch.randint(0, n, (600,), generator=g)
    dst = torch.randint(0, n, (600,), generator=g)
    keep = (y[src] == y[dst]) | (torch.rand(600, generator=g) < 0.2)
    edge_index = torch.cat([torch.stack([src[keep], dst[keep]]), torch.stack([dst[keep], src[keep]])], 1)
    perm = torch.randperm(n, generator=g)
    masks = {name: torch.zeros(n, dtype=torch.bool) for name in ("train_mask", "val_mask", "test_mask")}
    masks["train_mask"][perm[:60]] = True
    masks["val_mask"][perm[60:90]] = True
    masks["test_mask"][perm[90:]] = True
    return types.SimpleNamespace(name="tiny", level="node", num_features=6, num_classes=classes,
                                 data=Data(x=x, edge_index=edge_index, y=y, **masks))


def test_spatial_is_refused_for_networks_without_feature_maps() -> None:
    """--spatial reads image feature-map sizes; on a node task it added a constant input column
    and was recorded as if it meant something."""
    config = HypernetTrainConfig(steps=1, archs_per_step=1, pool_size=1, max_depth=1, max_width=8,
                                 spatial=True)
    with pytest.raises(ValueError, match=r"spatial \(--spatial\) reads the feature-map size of "
                       r"image networks; 'tiny' is a node-level task, whose networks have none"):
        train_hypernet(GNNSpace(convs=("gcn",)), _tiny_task(), config)


@pytest.fixture(scope="module")
def trained() -> tuple[GraphHyperNetwork, list[str], types.SimpleNamespace]:
    """A GHN trained for 100 steps (about a CPU second) on 8 architectures of depth <= 2 and
    width <= 32 with gcn, sage, graph and linear convolutions."""
    task = _tiny_task()
    space = GNNSpace(convs=("gcn", "sage", "graph", "linear"))
    config = HypernetTrainConfig(steps=100, archs_per_step=1, pool_size=8, max_depth=2,
                                 max_width=32, lr=5e-3, hidden=32, rank=8, rounds=2, log_every=20)
    result = train_hypernet(space, task, config)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    return result.ghn, result.train_hashes, task


#: never in the training pool: wider than any training architecture, other activations,
#: normalisations, aggregations and skips
UNSEEN = (
    GNNArchitecture(layers=(LayerSpec("gcn", 64, dropout=0.2, norm="batch"),
                            LayerSpec("sage", 48, activation="elu", dropout=0.2)), skip="residual"),
    GNNArchitecture(layers=(LayerSpec("graph", 48, activation="tanh", aggregation="mean"),
                            LayerSpec("linear", 64, norm="layer"))),
    GNNArchitecture(layers=(LayerSpec("sage", 32, activation="leaky_relu", aggregation="max"),
                            LayerSpec("gcn", 64, dropout=0.4)), skip="jk_cat"),
)


def test_unseen_wider_networks_get_parameters_far_better_than_chance(trained) -> None:
    ghn, train_hashes, task = trained
    space = GNNSpace()
    assert not {arch.arch_hash for arch in UNSEEN} & set(train_hashes)
    batches = TaskBatches(task)
    predicted = [accuracy(predicted_model(ghn, space, arch, task, batches), batches, "test")
                 for arch in UNSEEN]
    torch.manual_seed(0)
    random_init = [accuracy(space.build(arch, 6, 3), batches, "test") for arch in UNSEEN]
    mean, chance = sum(predicted) / len(predicted), 1 / 3
    assert mean > chance + 0.25, (predicted, random_init)
    assert mean > sum(random_init) / len(random_init) + 0.25, (predicted, random_init)


def test_sampled_pool_respects_the_training_range_and_exclusions() -> None:
    space = GNNSpace()
    pool = sample_architectures(space, 6, 1, max_depth=2, max_width=32)
    assert all(a.depth <= 2 and max(l.width for l in a.layers) <= 32 for a in pool)
    again = sample_architectures(space, 6, 2, max_depth=2, max_width=32,
                                 exclude={a.arch_hash for a in pool})
    assert not {a.arch_hash for a in pool} & {a.arch_hash for a in again}



def test_pool_seed_keeps_the_architectures_and_seed_changes_the_initialisation() -> None:
    task = _tiny_task()
    space = GNNSpace(convs=("gcn", "linear"))
    base = dict(steps=4, archs_per_step=1, pool_size=4, max_depth=2, max_width=32, hidden=16,
                rank=8, rounds=1, log_every=2)
    first = train_hypernet(space, task, HypernetTrainConfig(seed=0, **base))
    other_init = train_hypernet(space, task, HypernetTrainConfig(seed=1, pool_seed=0, **base))
    other_pool = train_hypernet(space, task, HypernetTrainConfig(seed=1, **base))
    assert other_init.train_hashes == first.train_hashes
    assert other_pool.train_hashes != first.train_hashes
    model = space.build(UNSEEN[1], 6, 3)
    a, b = first.ghn.predict(model), other_init.ghn.predict(model)
    assert any(not torch.equal(a[k], b[k]) for k in a)

# checkpoints --------------------------------------------------------------------------------
def test_checkpoint_round_trip_is_safetensors_without_pickle(tmp_path: Path) -> None:
    ghn = _ghn()
    model = GNNSpace().build(GNNArchitecture(), 6, 3)
    path = ghn.save(tmp_path / "ghn.safetensors", {"note": "x"})
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])  # a safetensors file: JSON header, raw tensors
    assert json.loads(header["__metadata__"]["config"])["in_channels"] == 6
    assert b"\x80\x04" not in raw[:2] and not raw.startswith(b"PK")  # no pickle, no zip
    loaded = GraphHyperNetwork.load(path)
    assert loaded.metadata == {"note": "x"}
    before, after = ghn.predict(model), loaded.predict(model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_killed_save_leaves_the_checkpoint_it_replaces(tmp_path: Path, monkeypatch) -> None:
    """``hypernet train --out`` over an earlier checkpoint, killed while writing (safetensors
    before 0.8 writes in place): the earlier checkpoint stays whole, so it still loads and a
    re-run may replace it (before: a truncated file, which a re-run refused to overwrite)."""
    import safetensors.torch

    from nas.rerun import found_ghn

    path = _ghn().save(tmp_path / "ghn.safetensors", {"run": 1})
    real = safetensors.torch.save_file

    def killed_in_place(tensors, filename, metadata=None):  # noqa: ANN001
        real(tensors, str(tmp_path / "whole"), metadata=metadata)
        Path(filename).write_bytes((tmp_path / "whole").read_bytes()[:100])
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(safetensors.torch, "save_file", killed_in_place)
    with pytest.raises(KeyboardInterrupt):
        _ghn().save(path, {"run": 2})
    monkeypatch.undo()
    assert GraphHyperNetwork.load(path).metadata == {"run": 1}
    assert found_ghn(str(path)).kind == "GHN"  # a GHN at --out, not another file


def test_a_pickle_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ghn.pt"
    torch.save(_ghn().state_dict(), path)
    with pytest.raises(ValueError, match="not a safetensors GHN checkpoint"):
        GraphHyperNetwork.load(path)


def _checkpoint_with(path: Path, tensors: dict[str, torch.Tensor], **header: str) -> Path:
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=header)
    return path


@pytest.mark.parametrize("tensors, header, says", [
    ({"a": torch.zeros(2)}, {"config": json.dumps({"in_channels": 3, "out_channels": 2})},
     r"holds no GHN of its config: missing tensors 'basis', 'class_table', 'decoder.0.bias', "
     r"\.\.\. \(30 in all\); unexpected tensors 'a'$"),
    (None, {"config": "not json"}, r"its config is not JSON \(Expecting value"),
    (None, {"config": "[1, 2]"}, r"its config is a JSON list, not an object"),
    (None, {"config": json.dumps({"out_channels": 2})}, r"its config is unusable \(.*in_channels"),
    (None, {"config": json.dumps({"in_channels": "many", "out_channels": 2})},
     r"its config is unusable \(.*'many'"),
    ("shape", None, r"tensor 'feature_table' has shape \(6, 8\), its config needs \(6, 32\)"),
    (None, {"metadata": "{broken"}, r"its metadata is not JSON"),
])
def test_a_foreign_or_damaged_checkpoint_is_refused_naming_the_file(
    tmp_path: Path, tensors, header, says: str,
) -> None:
    """Safetensors files that hold no GHN of their own config (another program's, a config or
    metadata damaged by hand) are refused naming the file and what is wrong, as a ValueError
    (exit 2 in the CLI): before, a raw load_state_dict RuntimeError listing 30 missing keys
    (exit 1), json's 'Expecting value: line 1 column 1 (char 0)' or 'unknown GHN config
    fields [1, 2]', none naming the file."""
    ghn = _ghn()
    good = {"config": json.dumps(ghn.config.to_dict()), "metadata": "{}", "format": "1"}
    own = {k: v.contiguous() for k, v in ghn.state_dict().items()}
    if tensors == "shape":  # a checkpoint of rank 8 under a config saying rank 32
        header = {**good, "config": json.dumps({**ghn.config.to_dict(), "rank": 32})}
        tensors = own
    path = _checkpoint_with(tmp_path / "other.safetensors", own if tensors is None else tensors,
                            **{**good, **header})
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + says):
        GraphHyperNetwork.load(path)


@pytest.mark.parametrize("field, value", [("hidden", 8.5), ("level", 7), ("image_size", 2.5),
                                          ("spatial", 1), ("op_types", ["conv", 3])])
def test_a_checkpoint_whose_config_holds_a_value_of_another_type_is_refused_naming_it(
    tmp_path: Path, field: str, value,
) -> None:
    """'"hidden": 8.5' failed inside torch as the GHN was built ("empty(): argument 'size'
    ...", exit 1, no file named); '"level": 7' and '"image_size": 2.5' loaded."""
    ghn = _ghn()
    config = json.dumps({**ghn.config.to_dict(), field: value})
    path = _checkpoint_with(tmp_path / "edited.safetensors",
                            {k: v.contiguous() for k, v in ghn.state_dict().items()},
                            config=config, metadata="{}", format="1")
    with pytest.raises(ValueError) as refused:
        GraphHyperNetwork.load(path)
    assert str(refused.value).startswith(f"{path} is not a usable GHN checkpoint: its config is "
                                         f"unusable (GHN config field {field} is {value!r}, not "
                                         f"of type "), refused.value


def test_unknown_pretrained_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="could not resolve pretrained hypernetwork 'nope'"):
        resolve_checkpoint("pretrained:nope")
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        resolve_checkpoint("missing.safetensors")


def test_a_missing_default_hypernetwork_says_how_to_train_one() -> None:
    """--evaluator hypernet without --hypernet on MUTAG said only that 'gnn-mutag' was not
    among the shipped names."""
    from metanets.ghn_train import default_hypernet

    assert default_hypernet(GNNSpace(), "cora") == "pretrained:gnn-cora"
    with pytest.raises(ValueError, match=r"no pretrained hypernetwork for space 'gnn' on 'mutag' "
                                         r"\(shipped: \['cnn-mnist', 'gnn-cora'\]\); train one with "
                                         r"metanas hypernet train --space gnn --dataset mutag "
                                         r"--out FILE and pass --hypernet FILE"):
        default_hypernet(GNNSpace(), "mutag")


# bad input ------------------------------------------------------------------------------------
class _WithEmbedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(10, 6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.tokens(x).mean(1))


class _WithBilinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Bilinear(6, 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x, x)


def test_a_layer_without_decoder_is_named_with_its_path() -> None:
    with pytest.raises(UnsupportedLayerError, match=r"'Embedding' at 'tokens'.*tokens.weight") as info:
        _ghn().plan(_WithEmbedding(), (torch.zeros(2, 4, dtype=torch.long),))
    assert info.value.op == "Embedding" and "GATConv" in str(info.value)


def test_a_tensor_without_decoder_names_those_of_its_layer_it_decodes() -> None:
    """A GHN without a role listed the layer among those it produces and said no more."""
    config = GHNConfig(6, 3, "node", hidden=16, rank=8)
    roles = tuple(r for r in config.roles if r != "SAGEConv:lin_r.weight")
    ghn = GraphHyperNetwork(GHNConfig(6, 3, "node", hidden=16, rank=8, roles=roles))
    model = GNNSpace().build(GNNArchitecture(layers=(LayerSpec(conv="sage", width=8),)), 6, 3)
    with pytest.raises(UnsupportedLayerError, match=r"'SAGEConv' at 'layers.0.conv' .*no decoder for "
                                                    r"'SAGEConv:lin_r.weight'; of SAGEConv it decodes "
                                                    r"\['SAGEConv:lin_l.bias', 'SAGEConv:lin_l.weight'\]"):
        ghn.predict(model)


def test_a_layer_without_graph_conversion_is_named() -> None:
    with pytest.raises(UnsupportedLayerError, match=r"'Bilinear' at 'mix'"):
        _ghn().plan(_WithBilinear(), (torch.zeros(2, 6),))


def test_wrong_task_dimensions_are_refused(trained) -> None:
    ghn, _, task = trained
    other = types.SimpleNamespace(**{**vars(task), "num_classes": 5, "name": "other"})
    with pytest.raises(ValueError, match="3 classes.*'other' has 6 features and 5 classes"):
        predicted_model(ghn, GNNSpace(), GNNArchitecture(), other)


def test_predict_for_a_model_of_another_task_names_the_ghn_task() -> None:
    # GraphHyperNetwork.predict(model) on a model built for other inputs failed deep in torch.fx
    # ("ShapeProp error for: node=%layers_0_conv ...", after printing fx's own traceback)
    from search_spaces.cnn import CNNSpace

    ghn, arch = _ghn(in_channels=6), GNNArchitecture(layers=(LayerSpec("gcn", 16, norm="batch"),))
    wrong = GNNSpace().build(arch, 5, 3)
    with pytest.raises(ValueError, match=r"GNN does not run on .*\(node level, 6 input channels"):
        ghn.predict(wrong)
    cnn = CNNSpace()
    with pytest.raises(ValueError, match=r"CNN does not run on .*node level"):
        ghn.predict(cnn.build(cnn.sample(0), 1, 3, "image"))
    # built for the inputs but another task: it ran, and got parameters it could not use
    with pytest.raises(ValueError, match=r"GNN has 20 outputs, not the 3 classes of this hypernetwork"):
        ghn.predict(GNNSpace().build(arch, 6, 20))
    with pytest.raises(ValueError, match=r"GNN is built for a graph-level task, not this hypernetwork's task \(node level"):
        ghn.predict(GNNSpace().build(arch, 6, 3, "graph"))
    right = GNNSpace().build(arch, 6, 3).train()
    _assert_complete(right, ghn.predict(right))
    assert right.training and all(  # the check ran in eval mode: no statistics changed
        int(m.num_batches_tracked) == 0 for m in right.modules() if isinstance(m, nn.BatchNorm1d))


def test_batchnorm_calibration_uses_the_batch_statistics() -> None:
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Dropout(0.5))
    x = torch.randn(64, 4) * 3 + 2
    calibrate_batchnorm(model, (x,))
    h = model[0](x).detach()
    assert torch.allclose(model[1].running_mean, h.mean(0), atol=1e-5)
    assert model[1].momentum == 0.1 and model.training


# the evaluator, --init hypernet and the CLI ----------------------------------------------------
@pytest.fixture
def saved(trained, tmp_path: Path) -> tuple[Path, types.SimpleNamespace]:
    ghn, _, task = trained
    return ghn.save(tmp_path / "tiny.safetensors"), task


def test_hypernet_evaluator_scores_with_predicted_parameters(saved) -> None:
    from nas.evaluators import get_evaluator

    path, task = saved
    evaluator = get_evaluator(f"hypernet:{path}")
    evaluation = evaluator.evaluate(UNSEEN[1], GNNSpace(), task)
    # 60 held-out nodes (30 validation, 30 test); chance is 1/3. Not a threshold on the 30
    # validation nodes alone: one node (0.033) moved it across 0.5 depending on which tests ran
    # before it in the same process (0.467 when run alone; the cause was not traced)
    held_out = (evaluation.metrics["val_acc"] + evaluation.metrics["test_acc"]) / 2
    assert evaluation.epochs == 0 and held_out > 1 / 3 + 0.1, evaluation.metrics
    model = GNNSpace().build(UNSEEN[1], 6, 3)
    model.load_state_dict(evaluation.state_dict)  # the predicted parameters are what is stored
    assert evaluation.num_params == sum(p.numel() for p in model.parameters())


def test_train_evaluator_starts_from_predicted_parameters(saved) -> None:
    from nas.evaluators import get_evaluator

    path, task = saved
    evaluator = get_evaluator("train", epochs=1, patience=0, init="hypernet", hypernet=str(path))
    evaluation = evaluator.evaluate(UNSEEN[1], GNNSpace(), task)
    assert evaluation.metrics["test_acc"] > 0.5  # one epoch from random init is near chance
    with pytest.raises(ValueError, match="could not resolve init 'zeros'"):
        get_evaluator("train", init="zeros")


def test_predict_params_cli_writes_a_loadable_export(saved, tmp_path: Path, capsys) -> None:
    from nas.cli import main
    from nas.export import load_exported

    path, _ = saved
    spec = tmp_path / "arch.json"
    spec.write_text(UNSEEN[0].to_json())
    assert main(["predict-params", "--hypernet", str(path), "--arch", str(spec),
                 "--out", str(tmp_path / "out")]) == 0
    assert "exported to" in capsys.readouterr().out
    model = load_exported(tmp_path / "out")
    reference = GNNSpace().build(UNSEEN[0], 6, 3)
    reference.load_state_dict(GraphHyperNetwork.load(path).predict(reference))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 reference.state_dict().values()))


def test_predict_params_cli_names_bad_input(saved, tmp_path: Path, capsys) -> None:
    from nas.cli import main

    path, _ = saved
    spec = tmp_path / "arch.json"
    spec.write_text(json.dumps({"layers": [{"conv": "gcnn", "width": 8}]}))
    assert main(["predict-params", "--hypernet", str(path), "--arch", str(spec),
                 "--out", str(tmp_path / "out")]) == 2
    assert "gcnn" in capsys.readouterr().err
    assert main(["predict-params", "--hypernet", "pretrained:nope", "--arch", str(spec),
                 "--out", str(tmp_path / "out")]) == 2
    assert "could not resolve pretrained hypernetwork 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_hypernet_train_cli_on_cora_writes_a_checkpoint(cora_available: None, tmp_path: Path,
                                                        capsys) -> None:
    from nas.cli import main

    out = tmp_path / "ghn.safetensors"
    assert main(["hypernet", "train", "--space", "gnn", "--dataset", "cora", "--out", str(out),
                 "--steps", "2", "--pool-size", "2", "--archs-per-step", "1",
                 "--max-depth", "1", "--max-width", "16", "--feature-basis", "data",
                 "--param-decay", "5e-4", "--select-every", "2", "--tile-width", "16"]) == 0
    assert "wrote" in capsys.readouterr().out
    ghn = GraphHyperNetwork.load(out)
    assert ghn.config.tile_width == 16
    assert (ghn.config.in_channels, ghn.config.out_channels, ghn.config.dataset) == (1433, 7, "cora")
    assert ghn.config.feature_basis == "data" and ghn.feature_table.abs().sum() > 0
    assert len(ghn.metadata["train_hashes"]) == 2


# the improvements behind the shipped checkpoints ---------------------------------------------
def test_kernel_offsets_share_position_embeddings_across_kernel_sizes() -> None:
    """The centre tap of a 3x3 and of a 5x5 kernel (and every common offset) decode from the
    same position embedding; flat numbering would give the 3x3 centre the 5x5 (0, 4) tap's."""
    ghn = _ghn(in_channels=1, out_channels=3, level="image")
    slots = {}
    for k in (3, 5):
        model = nn.Sequential(nn.Conv2d(1, 4, k, padding=k // 2), nn.ReLU(), nn.Conv2d(4, 4, k))
        plan = ghn.plan(model, (torch.zeros(2, 1, 12, 12),))
        slots[k] = next(s for s in plan.slots if s.name == "2.weight")
    three, five = slots[3].position_ids, slots[5].position_ids
    assert len(three) == 9 and len(five) == 25 and len(set(five)) == 25
    assert three[4] == five[12]  # centres
    assert set(three) == {five[(i + 1) * 5 + j + 1] for i in range(3) for j in range(3)}


def test_structure_key_ignores_training_hyper_parameters_only() -> None:
    from metanets.ghn_train import structure_key

    space = GNNSpace()
    a = GNNArchitecture(layers=(LayerSpec("gcn", 32),), lr=1e-2, weight_decay=5e-4)
    b = GNNArchitecture(layers=(LayerSpec("gcn", 32),), lr=5e-3, weight_decay=0.0)
    c = GNNArchitecture(layers=(LayerSpec("gcn", 64),), lr=1e-2, weight_decay=5e-4)
    assert a.arch_hash != b.arch_hash and structure_key(space, a) == structure_key(space, b)
    assert structure_key(space, a) != structure_key(space, c)


def test_data_feature_basis_is_fixed_and_spans_the_features(tmp_path: Path) -> None:
    """feature_basis="data": the leading right singular vectors of the features (no labels),
    a buffer (never trained), kept by checkpoints."""
    torch.manual_seed(0)
    x = torch.randn(50, 3) @ torch.randn(3, 12)  # rank-3 features in 12 dimensions
    ghn = GraphHyperNetwork(GHNConfig(12, 3, hidden=16, rank=8, feature_basis="data"))
    ghn.set_feature_basis(x)
    table = ghn.feature_table
    assert "feature_table" not in dict(ghn.named_parameters())
    assert abs(float(table.square().sum(1).mean()) - 1.0) < 1e-4  # RMS row norm 1
    top = table[:, :3] / table[:, :3].norm(dim=0)
    residual = x - x @ top @ top.t()  # the first 3 columns span the features' row space
    assert float(residual.norm()) < 1e-3 * float(x.norm())
    loaded = GraphHyperNetwork.load(ghn.save(tmp_path / "data.safetensors"))
    assert torch.equal(loaded.feature_table, table)
    with pytest.raises(ValueError, match="do not match in_channels 12"):
        ghn.set_feature_basis(torch.randn(5, 7))
    with pytest.raises(ValueError, match="needs feature_basis 'data'"):
        _ghn().set_feature_basis(torch.randn(5, 6))
    with pytest.raises(ValueError, match="could not resolve feature_basis 'pca'"):
        GHNConfig(12, 3, feature_basis="pca")


def test_param_decay_keeps_predicted_weights_smaller() -> None:
    task = _tiny_task()
    space = GNNSpace(convs=("gcn", "linear"))
    arch = UNSEEN[1]
    norms = []
    for decay in (0.0, 0.5):
        config = HypernetTrainConfig(steps=30, archs_per_step=1, pool_size=4, max_depth=2,
                                     max_width=32, lr=5e-3, hidden=16, rank=8, rounds=1,
                                     log_every=10, param_decay=decay)
        ghn = train_hypernet(space, task, config).ghn
        model = space.build(arch, 6, 3)
        weights = {k for k, v in model.named_parameters() if v.dim() >= 2}  # not norm scales ~1
        norms.append(sum(float(v.square().sum()) for k, v in ghn.predict(model).items()
                         if k in weights))
    assert norms[1] < 0.5 * norms[0], norms
    with pytest.raises(ValueError, match="param_decay must be >= 0"):
        HypernetTrainConfig(param_decay=-1.0)


@pytest.mark.parametrize("name", ["gnn-cora", "cnn-mnist"])
def test_shipped_checkpoints_are_small_pickle_free_and_predict_unseen_networks(name: str) -> None:
    from metanets.ghn import pretrained_names
    from search_spaces import get_space

    assert name in pretrained_names()
    path = resolve_checkpoint(f"pretrained:{name}")
    assert path.stat().st_size < 5e6 and path.read_bytes()[:1] != b"\x80"
    ghn = GraphHyperNetwork.load(f"pretrained:{name}")
    space = get_space(ghn.config.space)
    train = set(ghn.metadata["train_hashes"])
    arch = next(a for a in (space.sample(seed) for seed in range(100)) if a.arch_hash not in train)
    model = space.build(arch, ghn.config.in_channels, ghn.config.out_channels, ghn.config.level)
    _assert_complete(model, ghn.predict(model))


# operation-wise weight normalisation ---------------------------------------------------------
def _cnn_ghn(weight_norm: str = "op") -> GraphHyperNetwork:
    torch.manual_seed(0)
    return GraphHyperNetwork(GHNConfig(1, 10, "image", space="cnn", hidden=16, rank=8,
                                       weight_norm=weight_norm))


def _cnn(widths: tuple[int, ...], residual: bool = False) -> nn.Module:
    from search_spaces.cnn import CNNArchitecture, CNNSpace

    arch = CNNArchitecture(widths=widths, kernel_size=3, activation="relu", residual=residual)
    return CNNSpace().build(arch, 1, 10, "image")


@pytest.mark.parametrize("widths", [(4,), (4, 64, 16), (256, 8)])
def test_op_normalised_matrices_have_kaiming_scale_at_any_width(widths: tuple[int, ...]) -> None:
    """weight_norm="op" at initialisation (log-gain 0): every matrix's root-mean-square entry is
    sqrt(2 / fan_in), for 4 to 256 channels, kernels and 1x1 shortcuts alike."""
    model = _cnn(widths, residual=True)
    predicted = _cnn_ghn().predict(model)
    matrices = {k: v for k, v in predicted.items() if v.dim() >= 2}
    assert len(matrices) >= len(widths) + 1
    for name, w in matrices.items():
        fan_in = w[0].numel()
        assert float(w.square().mean().sqrt()) == pytest.approx((2 / fan_in) ** 0.5, rel=1e-4), name


def test_op_normalisation_applies_the_decoded_gain_within_its_bound() -> None:
    from metanets.ghn import LOG_GAIN_BOUND

    ghn, model = _cnn_ghn(), _cnn((8, 8))
    rms = lambda state: float(state["blocks.1.conv.weight"].square().mean().sqrt())  # noqa: E731
    plain = rms(ghn.predict(model))
    with torch.no_grad():
        ghn.gain_head.bias.fill_(0.5)
    assert rms(ghn.predict(model)) == pytest.approx(plain * torch.tanh(torch.tensor(0.5 / LOG_GAIN_BOUND)).mul(LOG_GAIN_BOUND).exp().item(), rel=1e-4)
    with torch.no_grad():
        ghn.gain_head.bias.fill_(1e4)
    assert rms(ghn.predict(model)) == pytest.approx(plain * torch.tensor(LOG_GAIN_BOUND).exp().item(), rel=1e-3)


def _block_stds(ghn: GraphHyperNetwork, widths: tuple[int, ...], x: torch.Tensor) -> list[float]:
    """Pre-activation std of every conv block of a CNN with predicted weights."""
    model = _cnn(widths)
    model.load_state_dict(ghn.predict(model))
    stds: list[float] = []
    hooks = [block.conv.register_forward_hook(
        lambda mod, args, out: stds.append(float(out.std()))) for block in model.blocks]
    with torch.no_grad():
        model.eval()(x)
    for hook in hooks:
        hook.remove()
    return stds


@pytest.mark.parametrize("widths", [(4, 4, 4), (8, 8, 8), (4, 8, 8)])
def test_op_normalisation_keeps_the_signal_scale_from_block_to_block(widths: tuple[int, ...]) -> None:
    """Without BatchNorm, hidden blocks of predicted weights (widths up to the rank) pass the
    signal on at its scale (within 3x), where fan-in normalisation at initialisation shrinks it
    about 5x per block and leaves the GHN to learn a depth-specific gain."""
    x = torch.randn(16, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    op, fan = _block_stds(_cnn_ghn("op"), widths, x), _block_stds(_cnn_ghn("fan"), widths, x)
    assert 1 / 3 < op[2] / op[1] < 3, op
    assert fan[2] / fan[1] < 1 / 3, fan


def test_unknown_weight_norm_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"could not resolve weight_norm 'kaiming' among choices \['fan', 'op'\]"):
        GHNConfig(1, 10, "image", weight_norm="kaiming")


def test_a_config_without_weight_norm_loads_as_the_fan_normalisation() -> None:
    """Checkpoints written before the option keep their behaviour (the shipped gnn-cora)."""
    data = GHNConfig(6, 3).to_dict()
    del data["weight_norm"]
    assert GHNConfig.from_dict(data).weight_norm == "fan"
    assert not hasattr(GraphHyperNetwork(GHNConfig.from_dict(data)), "gain_head")


def test_op_normalised_checkpoint_round_trip(tmp_path: Path) -> None:
    ghn, model = _cnn_ghn(), _cnn((4, 16))
    with torch.no_grad():
        ghn.gain_head.weight.normal_()
    loaded = GraphHyperNetwork.load(ghn.save(tmp_path / "op.safetensors"))
    assert loaded.config.weight_norm == "op"
    before, after = ghn.predict(model), loaded.predict(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_training_moves_the_decoded_gains() -> None:
    task = _tiny_task()
    config = HypernetTrainConfig(steps=10, archs_per_step=1, pool_size=4, max_depth=2,
                                 max_width=32, hidden=16, rank=8, rounds=1, log_every=5,
                                 weight_norm="op")
    result = train_hypernet(GNNSpace(convs=("gcn", "linear")), task, config)
    assert result.ghn.config.weight_norm == "op"
    assert result.ghn.gain_head.weight.abs().sum() > 0
    assert float(result.ghn.logit_scale) != 0.0


def test_logit_scale_multiplies_the_output_layer_only() -> None:
    ghn, model = _cnn_ghn(), _cnn((4, 8))
    before = ghn.predict(model)
    with torch.no_grad():
        ghn.logit_scale.fill_(1.0)
    after = ghn.predict(model)
    for name in ("classifier.weight", "classifier.bias"):
        assert torch.allclose(after[name], before[name] * torch.e), name
    hidden = [k for k in before if not k.startswith("classifier")]
    assert hidden and all(torch.equal(before[k], after[k]) for k in hidden)
    assert not hasattr(_cnn_ghn("fan"), "logit_scale")


@pytest.mark.parametrize("field, value, message", [
    ("max_depth", 0, "max_depth must be >= 1 (or None: any), got 0"),
    ("max_width", -4, "max_width must be >= 1 (or None: any), got -4"),
    ("select_every", -1, "select_every must be >= 0 (0: keep the last state), got -1"),
    ("tile_width", 0, "tile_width must be >= 1 (or None: any), got 0"),
])
def test_hypernet_training_ranges_below_one_are_named(field: str, value: int, message: str) -> None:
    from metanets.ghn_train import HypernetTrainConfig

    with pytest.raises(ValueError, match=re.escape(message)):
        HypernetTrainConfig(**{field: value})


def test_listing_the_supported_layers_draws_nothing_from_the_global_random_stream() -> None:
    # it built example layers with the global generator, so the first GHN trained in a process
    # started from another random state than every later one with the same seed
    from metanets.ghn import supported_roles

    supported_roles.cache_clear()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    assert supported_roles()
    assert torch.equal(torch.get_rng_state(), before)


# tiling the hidden-channel basis past the trained width ---------------------------------------
def _tiled_pair(tile_width: int | None = 4, weight_norm: str = "fan") -> tuple[GraphHyperNetwork, GraphHyperNetwork]:
    """The same GHN weights with and without ``tile_width``."""
    plain = _cnn_ghn(weight_norm)
    tiled = GraphHyperNetwork(GHNConfig.from_dict({**plain.config.to_dict(), "tile_width": tile_width}))
    tiled.load_state_dict(plain.state_dict())
    return plain, tiled


@pytest.mark.parametrize("weight_norm", ["fan", "op"])
def test_a_wider_layer_than_the_tile_is_decoded_as_copies_of_it(weight_norm: str) -> None:
    _, tiled = _tiled_pair(4, weight_norm)
    w = tiled.predict(_cnn((8, 4)))
    first, second = w["blocks.0.conv.weight"], w["blocks.1.conv.weight"]  # (8, 1, 3, 3), (4, 8, 3, 3)
    assert torch.equal(first[:4], first[4:]) and torch.equal(w["blocks.0.conv.bias"][:4], w["blocks.0.conv.bias"][4:])
    assert torch.equal(second[:, :4], second[:, 4:])
    assert not torch.equal(first[:2], first[2:4])  # copies of the tile, not of one channel
    plain, _ = _tiled_pair(None, weight_norm)
    untiled = plain.predict(_cnn((8, 4)))["blocks.0.conv.weight"]
    assert not torch.equal(untiled[:4], untiled[4:])


@pytest.mark.parametrize("weight_norm", ["fan", "op"])
def test_layers_within_the_tile_are_decoded_as_without_it(weight_norm: str) -> None:
    plain, tiled = _tiled_pair(4, weight_norm)
    model = _cnn((4, 2, 4), residual=True)
    before, after = plain.predict(model), tiled.predict(model)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_tile_width_round_trips_and_older_checkpoints_read_every_row(tmp_path: Path) -> None:
    _, tiled = _tiled_pair(4)
    assert GraphHyperNetwork.load(tiled.save(tmp_path / "t.safetensors")).config.tile_width == 4
    data = GHNConfig(6, 3).to_dict()
    del data["tile_width"]
    assert GHNConfig.from_dict(data).tile_width is None
    with pytest.raises(ValueError, match=re.escape("tile_width must be in [1, basis_size 4096] "
                                                   "(or None: no tiling), got 0")):
        GHNConfig(6, 3, tile_width=0)


def test_the_shipped_cnn_ghn_tiles_past_its_widest_training_layer() -> None:
    ghn = GraphHyperNetwork.load("pretrained:cnn-mnist")
    assert ghn.config.tile_width == ghn.metadata["train_config"]["max_width"] == 16
    assert GraphHyperNetwork.load("pretrained:gnn-cora").config.tile_width is None


# the feature-map size of each op (GHNConfig.spatial) ------------------------------------------
def test_the_computation_graph_records_each_feature_maps_size() -> None:
    from metanets.graphs import to_computation_graph

    model = _cnn((4, 8, 8))
    graph = to_computation_graph(model, (torch.zeros(2, 1, 28, 28),))
    size = dict(zip(graph.node_names, graph.spatial.tolist()))
    assert [size[f"blocks.{i}.conv"] for i in range(3)] == [28 * 28, 14 * 14, 7 * 7]
    assert size["classifier"] == 1


def test_a_spatial_ghn_reads_the_sizes_at_its_image_size_and_tells_depths_apart() -> None:
    plain = _cnn_ghn()
    torch.manual_seed(0)
    spatial = GraphHyperNetwork(GHNConfig(1, 10, "image", space="cnn", hidden=16, rank=8,
                                          weight_norm="op", spatial=True, image_size=28))
    model = _cnn((4, 4, 4, 4))
    plan = spatial.plan(model)
    assert plan.features.shape[1] == plain.plan(model).features.shape[1] + 1
    assert sorted(set(plan.features[:, -1].exp().sub(1).round().tolist())) == [1, 9, 49, 196, 784]
    _assert_complete(model, spatial.predict(model))


def test_predict_params_refuses_a_pruned_models_spec(tmp_path: Path, capsys) -> None:
    """A pruned export's architecture.json is the unpruned architecture: predict-params
    predicted for that (1,062 parameters for a 393-parameter pruned CNN) and said nothing."""
    from nas.cli import main
    from nas.export import PRUNED_KEY, export_model
    from search_spaces.cnn import CNN, CNNArchitecture

    arch = CNNArchitecture(widths=(4, 8))
    folder = export_model(tmp_path / "pruned", space="cnn", spec=arch.to_dict(), in_channels=1,
                          out_channels=10, level="image", state_dict=CNN(arch, 1, 10).state_dict(),
                          metadata={PRUNED_KEY: {"widths_before": [4, 8], "widths_after": [2, 5],
                                                 "source": "/models/cnn"}})
    assert main(["predict-params", "--hypernet", "pretrained:cnn-mnist", "--arch",
                 str(folder / "architecture.json"), "--out", str(tmp_path / "out")]) == 2
    assert ("is the spec of a pruned model (widths [4, 8] -> [2, 5]): no architecture spec describes its "
            "narrower layers, and its spec is the unpruned one; give that spec (from /models/cnn)"
            in capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_predict_params_refuses_an_out_holding_files_unless_overwrite(tmp_path: Path, capsys) -> None:
    """predict-params wrote its export among whatever --out held and replaced a model exported
    there without a word; as export and prune, it now needs --overwrite for that."""
    from nas.cli import main
    from nas.export import load_exported
    from search_spaces.cnn import CNNArchitecture

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    spec = tmp_path / "arch.json"
    spec.write_text(CNNArchitecture(widths=(4, 8)).to_json())
    argv = ["predict-params", "--hypernet", "pretrained:cnn-mnist", "--arch", str(spec),
            "--out", str(out), "--device", "cpu"]
    assert main(argv) == 2
    assert (f"--out {out} already holds notes.txt; choose a new folder, or pass --overwrite to "
            f"write the model there") in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert main([*argv, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine"
    before = load_exported(out).state_dict()
    spec.write_text(CNNArchitecture(widths=(8, 8)).to_json())
    assert main(argv) == 2  # the model predicted first is not replaced either
    assert all(torch.equal(a, b) for a, b in zip(before.values(), load_exported(out).state_dict().values()))
