"""The CNN space: sampling, building, round trips, narrowed choices, graph conversion."""
from __future__ import annotations

import pytest
import torch

from metanets.graphs import to_parameter_graph
from search_spaces import get_space
from search_spaces.cnn import CNNArchitecture, CNNSpace


@pytest.mark.parametrize("seed", range(6))
def test_sampled_networks_classify_images_and_convert_to_graphs(seed: int) -> None:
    space = get_space("CNN")
    arch = space.sample(seed)
    model = space.build(arch, 1, 10, "image")
    assert model(torch.randn(3, 1, 14, 14)).shape == (3, 10)
    graph = to_parameter_graph(model.eval(), (torch.zeros(1, 1, 14, 14),))
    assert graph.num_nodes > 10
    assert space.architecture_from_dict(arch.to_dict()) == arch
    assert CNNArchitecture.from_json(arch.to_json()).arch_hash == arch.arch_hash
    assert set(space.training_config(arch)) == {"lr", "weight_decay", "train_fraction"}


def test_residual_blocks_project_when_widths_change() -> None:
    model = CNNSpace().build(CNNArchitecture(widths=(4, 4, 8), residual=True), 1, 10)
    assert isinstance(model.blocks[1].shortcut, torch.nn.Identity)
    assert isinstance(model.blocks[2].shortcut, torch.nn.Conv2d)


@pytest.mark.parametrize("bad, message", [
    ({"widths": ()}, "widths"), ({"widths": (4, 4, 4, 4, 4)}, "widths"),
    ({"kernel_size": 4}, r"kernel_size 4 is not among the choices \[3, 5\]"),
    ({"activation": "swish"}, "activation 'swish'"), ({"norm": "layer"}, "norm"),
    ({"train_fraction": 0.0}, "train_fraction"), ({"lr": -1.0}, "lr"),
])
def test_bad_architectures_name_the_field(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CNNArchitecture(**bad)


def test_malformed_spec_and_wrong_level_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="malformed CNN"):
        CNNSpace().architecture_from_dict({"widths": [4], "colour": "red"})
    with pytest.raises(ValueError, match="cannot build models for 'node'"):
        CNNSpace().build(CNNArchitecture(), 1, 10, "node")
    with pytest.raises(ValueError, match="kernel_sizes"):
        CNNSpace(kernel_sizes=(7,))


def test_narrowed_space_varies_only_training() -> None:
    space = CNNSpace(min_depth=2, max_depth=2, widths=(8,), kernel_sizes=(3,),
                     activations=("relu",), norms=("none",), residuals=(False,))
    archs = [space.sample(seed) for seed in range(8)]
    assert {(a.widths, a.kernel_size, a.activation, a.norm, a.residual) for a in archs} == {
        ((8, 8), 3, "relu", "none", False)}
    assert len({a.lr for a in archs}) == 8
