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
