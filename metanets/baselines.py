"""Baselines for predicting accuracy from weights, in the same table as the GMN.

- :class:`WeightNorm`: the total L2 norm of a network's weights (ranked with the sign that fits
  the training networks; R^2 from a linear fit on them).
- :class:`StatNN`: per-tensor statistics (mean, variance, quantiles) of the first, last and all
  weight tensors and biases, regressed with gradient-boosted trees (Unterthiner et al.,
  "Predicting Neural Network Accuracy from Weights", 2020).
- :class:`FlatMLP`: an MLP on the flattened weight vector, for zoos of one fixed architecture
  (the vector has no meaning across architectures).

Each has ``fit(state_dicts, targets)`` and ``predict(state_dicts) -> ndarray``. Requires
scikit-learn for StatNN and FlatMLP.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

#: state_dict entries that are statistics or counters, not learned weights
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def learned_tensors(state_dict: dict[str, Tensor]) -> list[tuple[str, Tensor]]:
    """The learned parameters of a state_dict, in its order (buffers left out)."""
    return [(k, v.detach().float()) for k, v in state_dict.items()
            if not k.endswith(_BUFFER_SUFFIXES) and v.is_floating_point()]


def total_weight_norm(state_dict: dict[str, Tensor]) -> float:
    return float(torch.sqrt(sum(v.pow(2).sum() for _, v in learned_tensors(state_dict))))


def _stats(values: Tensor | None) -> list[float]:
    if values is None or values.numel() == 0:
        return [np.nan] * (2 + len(QUANTILES))
    values = values.reshape(-1)
    q = torch.quantile(values, torch.tensor(QUANTILES)) if values.numel() > 1 else values.repeat(len(QUANTILES))
    return [values.mean().item(), values.var(unbiased=False).item(), *q.tolist()]


def statnn_features(state_dict: dict[str, Tensor]) -> np.ndarray:
    """Per-tensor statistics of a network, one fixed-length vector for any architecture:
    (mean, var, 5 quantiles) of the first, second, last weight tensors, of all weights, of the
    first and last biases and of all biases and normalisation scales; plus the log parameter
    count and the log total norm. Missing tensors are NaN (the trees handle them)."""
    tensors = learned_tensors(state_dict)
    weights = [v for _, v in tensors if v.dim() >= 2]
    vectors = [v for _, v in tensors if v.dim() == 1]
    cat = lambda ts: torch.cat([t.reshape(-1) for t in ts]) if ts else None  # noqa: E731
    groups = [
        weights[0] if weights else None, weights[1] if len(weights) > 2 else None,
        weights[-1] if weights else None, cat(weights),
        vectors[0] if vectors else None, vectors[-1] if vectors else None, cat(vectors),
    ]
    features = [x for group in groups for x in _stats(group)]
    n = sum(v.numel() for _, v in tensors)
    features += [float(np.log(max(n, 1))), float(np.log(total_weight_norm(state_dict) + 1e-12))]
    return np.asarray(features, dtype=np.float64)


class WeightNorm:
    """Rank by total weight norm; the sign and a linear map (for R^2) fitted on training nets."""

    name = "weight norm"

    def fit(self, state_dicts: Sequence[dict[str, Tensor]], targets: Sequence[float]) -> WeightNorm:
        norms = np.array([total_weight_norm(s) for s in state_dicts])
        self.slope, self.intercept = np.polyfit(norms, np.asarray(targets, float), 1) \
            if len(norms) > 1 else (0.0, float(np.mean(targets)))
        return self

    def predict(self, state_dicts: Sequence[dict[str, Tensor]]) -> np.ndarray:
        norms = np.array([total_weight_norm(s) for s in state_dicts])
        return self.slope * norms + self.intercept


class StatNN:
    """Gradient-boosted trees on :func:`statnn_features`.

    Args:
        seed: random state of the trees.
        max_iter: boosting iterations.
    """

    name = "StatNN"

    def __init__(self, seed: int = 0, max_iter: int = 300) -> None:
        self.seed, self.max_iter = seed, max_iter

    def fit(self, state_dicts: Sequence[dict[str, Tensor]], targets: Sequence[float]) -> StatNN:
        from sklearn.ensemble import HistGradientBoostingRegressor

        features = np.stack([statnn_features(s) for s in state_dicts])
        # a statistic no training network has (a second weight tensor of two-layer networks)
        # is dropped: the trees cannot bin a column without values
        self.columns = np.isfinite(features).any(axis=0)
        self.model = HistGradientBoostingRegressor(
            max_iter=self.max_iter, learning_rate=0.05, random_state=self.seed)
        self.model.fit(features[:, self.columns], np.asarray(targets, float))
        return self

    def predict(self, state_dicts: Sequence[dict[str, Tensor]]) -> np.ndarray:
        features = np.stack([statnn_features(s) for s in state_dicts])
        return self.model.predict(features[:, self.columns])


def flatten_weights(state_dict: dict[str, Tensor]) -> np.ndarray:
    return torch.cat([v.reshape(-1) for _, v in learned_tensors(state_dict)]).numpy()


def architecture_signature(state_dict: dict[str, Tensor]) -> tuple:
    """Names and shapes of the learned tensors: equal for networks of one fixed architecture."""
    return tuple((k, tuple(v.shape)) for k, v in learned_tensors(state_dict))


class FlatMLP:
    """An MLP on the standardised flattened weights; only for one fixed architecture.

    Args:
        seed: initialisation seed.
        hidden: hidden layer sizes.
    """

    name = "flat-weights MLP"

    def __init__(self, seed: int = 0, hidden: tuple[int, ...] = (128, 64)) -> None:
        self.seed, self.hidden = seed, hidden

    def fit(self, state_dicts: Sequence[dict[str, Tensor]], targets: Sequence[float]) -> FlatMLP:
        from sklearn.neural_network import MLPRegressor

        signatures = {architecture_signature(s) for s in state_dicts}
        if len(signatures) != 1:
            raise ValueError(
                f"FlatMLP needs networks of one architecture; got {len(signatures)} different ones")
        self.signature = signatures.pop()
        x = np.stack([flatten_weights(s) for s in state_dicts])
        self.mean, self.std = x.mean(0), x.std(0) + 1e-8
        self.model = MLPRegressor(hidden_layer_sizes=self.hidden, alpha=1e-3, max_iter=500,
                                  early_stopping=True, random_state=self.seed)
        self.model.fit((x - self.mean) / self.std, np.asarray(targets, float))
        return self

    def predict(self, state_dicts: Sequence[dict[str, Tensor]]) -> np.ndarray:
        bad = [i for i, s in enumerate(state_dicts) if architecture_signature(s) != self.signature]
        if bad:
            raise ValueError(f"networks {bad[:5]} do not have the architecture FlatMLP was fit on")
        x = np.stack([flatten_weights(s) for s in state_dicts])
        return self.model.predict((x - self.mean) / self.std)
