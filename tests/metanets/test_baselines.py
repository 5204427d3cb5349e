"""Baselines for accuracy from weights: what each reads and that each fits and predicts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metanets.baselines import FlatMLP, StatNN, WeightNorm, statnn_features, total_weight_norm


def _mlp(seed: int, hidden: int = 6) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))


def test_statnn_features_ignore_hidden_permutations_and_follow_the_layer_order() -> None:
    model = _mlp(0)
    before = statnn_features(model.state_dict())
    perm = torch.tensor([3, 1, 5, 0, 2, 4])
    with torch.no_grad():
        model[0].weight.copy_(model[0].weight[perm])
        model[0].bias.copy_(model[0].bias[perm])
        model[2].weight.copy_(model[2].weight[:, perm])
    np.testing.assert_allclose(statnn_features(model.state_dict()), before, rtol=1e-6)
    reversed_order = dict(reversed(list(model.state_dict().items())))  # first and last swap
    assert not np.allclose(statnn_features(reversed_order), before, equal_nan=True)


def test_weight_norm_ranks_by_norm_with_the_fitted_sign() -> None:
    states = [{k: v * scale for k, v in _mlp(0).state_dict().items()} for scale in (1, 2, 3, 4)]
    norms = [total_weight_norm(s) for s in states]
    predicted = WeightNorm().fit(states, [-n for n in norms]).predict(states)
    assert list(np.argsort(predicted)) == [3, 2, 1, 0]


def test_statnn_and_flat_mlp_fit_a_target_the_weights_determine() -> None:
    states = [_mlp(seed).state_dict() for seed in range(40)]
    target = np.array([float(s["2.bias"].mean()) for s in states])
    for method in (StatNN(seed=0, max_iter=50), FlatMLP(seed=0)):
        predicted = method.fit(states[:30], target[:30]).predict(states[30:])
        assert predicted.shape == (10,) and np.isfinite(predicted).all()
    assert np.corrcoef(FlatMLP(seed=0).fit(states, target).predict(states), target)[0, 1] > 0.5


def test_flat_mlp_refuses_mixed_architectures() -> None:
    states = [_mlp(0).state_dict(), _mlp(1, hidden=5).state_dict()]
    with pytest.raises(ValueError, match="one architecture; got 2 different ones"):
        FlatMLP().fit(states, [0.1, 0.2])
    fitted = FlatMLP().fit([_mlp(s).state_dict() for s in range(20)], np.linspace(0, 1, 20))
    with pytest.raises(ValueError, match=r"networks \[0\] do not have the architecture"):
        fitted.predict([_mlp(0, hidden=5).state_dict()])
