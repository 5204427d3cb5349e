"""Predictor-guided search in the spirit of BANANAS.

Reference: White et al., "BANANAS: Bayesian Optimization with Neural Architectures for Neural
Architecture Search", AAAI 2021.

After ``n_startup_trials`` random architectures, every proposal is made like this: an ensemble
of small MLPs is trained (from differently initialised weights) on the completed trials'
encodings and objective values; candidates are mutations (one or two choices) of the best
architectures found so far plus a few random ones; each candidate is scored by an acquisition
function over the ensemble's predictions (independent Thompson sampling by default, as in
BANANAS); the best-scoring candidate that no trial has yet is proposed.

The encoding (:class:`Encoder`) is built from the parameters' optuna distributions: a one-hot
block per discrete choice, a scaled value per continuous one, zeros for a parameter the
architecture does not have; plus, for every family of parameters that differ only by an index
(``l0_conv``, ``l1_conv``, ... or one op per cell node), how often each choice occurs, an
order-free summary of the graph's operations. For NAS-Bench-Graph cells, graph features of the
canonical cell are added (:func:`cell_features`: operations per node and per leaf, the inputs'
adjacency, and the input-to-output paths as sequences of operations, as BANANAS encodes paths),
so isomorphic cells, spelt differently in parameters, are encoded alike.
"""
from __future__ import annotations

import json
import math
import random
import re
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from nas.samplers._base import (
    Archive,
    Params,
    ProposalSampler,
    ReplayTrial,
    finite_values,
    space_distributions,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from optuna.study import Study

    from search_spaces.base import SearchSpace

ACQUISITIONS: tuple[str, ...] = ("its", "ucb", "mean")
_ONE_HOT_LIMIT = 64


def cell_features(arch: Any) -> list[float]:
    """Graph encoding of a NAS-Bench-Graph cell (zeros for ``None``), of its canonical form:
    the one-hot op of each node, the one-hot input of each node (adjacency), how often each op
    occurs on a leaf (an output node), and how many input-to-output paths end in each pair of
    ops (the last two operations of each path; a path of one op pairs it with the input)."""
    from search_spaces.nasbench_graph import NUM_NODES, OPS

    n_ops = len(OPS)
    size = NUM_NODES * n_ops + NUM_NODES * (NUM_NODES + 1) + n_ops + (n_ops + 1) * n_ops
    if arch is None:
        return [0.0] * size
    arch = arch.canonical()
    links, ops = arch.links, arch.ops
    nodes = [0.0] * (NUM_NODES * n_ops)
    inputs = [0.0] * (NUM_NODES * (NUM_NODES + 1))
    for i, (link, op) in enumerate(zip(links, ops)):
        nodes[i * n_ops + OPS.index(op)] = 1.0
        inputs[i * (NUM_NODES + 1) + link] = 1.0
    leaves = [i for i in range(NUM_NODES) if (i + 1) not in links]
    leaf_ops = [0.0] * n_ops
    pairs = [0.0] * ((n_ops + 1) * n_ops)
    for leaf in leaves:
        leaf_ops[OPS.index(ops[leaf])] += 1.0
        parent = links[leaf]
        before = n_ops if parent == 0 else OPS.index(ops[parent - 1])  # n_ops: the cell input
        pairs[before * n_ops + OPS.index(ops[leaf])] += 1.0
    return nodes + inputs + leaf_ops + pairs


class Encoder:
    """Fixed-length features of a parameter set (see the module docstring).

    Args:
        distributions: parameter name -> distribution, of every parameter of the space.
        extra: optional ``params -> list[float]`` of space-specific features.
    """

    def __init__(self, distributions: dict[str, BaseDistribution], extra: Any = None) -> None:
        self.names = sorted(distributions)
        self.distributions = distributions
        self.values = {n: finite_values(d, _ONE_HOT_LIMIT) for n, d in distributions.items()}
        self.groups: dict[str, list[str]] = {}
        for name in self.names:
            self.groups.setdefault(re.sub(r"\d+", "#", name), []).append(name)
        self.groups = {
            family: members for family, members in self.groups.items()
            if len(members) > 1 and self.values[members[0]] is not None
            and all(self.values[m] == self.values[members[0]] for m in members)
        }
        self.extra = extra

    def __call__(self, params: Params) -> list[float]:
        features: list[float] = []
        for name in self.names:
            values = self.values[name]
            value = params.get(name)
            if values is not None:
                features.extend(float(value == v and name in params) for v in values)
            else:
                features.append(self._scaled(name, value) if name in params else 0.0)
        for members in self.groups.values():
            choices = self.values[members[0]] or []
            present = [params[m] for m in members if m in params]
            features.extend(float(sum(p == c for p in present)) for c in choices)
        if self.extra is not None:
            features.extend(self.extra(params))
        return features

    def _scaled(self, name: str, value: float) -> float:
        d = self.distributions[name]
        assert isinstance(d, (IntDistribution, FloatDistribution))
        low, high, value = float(d.low), float(d.high), float(value)
        if d.log:
            low, high, value = math.log(low), math.log(high), math.log(value)
        return (value - low) / (high - low) if high > low else 0.0


class Ensemble:
    """``members`` MLPs (``in -> hidden -> hidden -> 1``, ReLU) trained as one batched model.

    Args:
        members: ensemble size.
        hidden: hidden width.
        epochs: full-batch Adam steps.
        lr: Adam learning rate.
        seed: initialisation seed.

    Shapes:
        - fit: ``x (N, F)``, ``y (N,)``
        - predict: ``x (M, F)`` -> ``(members, M)``
    """

    def __init__(self, members: int = 5, hidden: int = 32, epochs: int = 200, lr: float = 0.01,
                 seed: int = 0) -> None:
        self.members, self.hidden, self.epochs, self.lr, self.seed = members, hidden, epochs, lr, seed

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> Ensemble:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a model this small only loses to thread start-up and contention
        try:
            return self._fit(x, y)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, x: torch.Tensor, y: torch.Tensor) -> Ensemble:
        import torch

        generator = torch.Generator().manual_seed(self.seed)
        e, f, h = self.members, x.shape[1], self.hidden
        self.mean, self.std = y.mean(), y.std().clamp_min(1e-8) if len(y) > 1 else torch.tensor(1.0)
        target = ((y - self.mean) / self.std).expand(e, -1)  # (E, N)
        shapes = [(e, f, h), (e, 1, h), (e, h, h), (e, 1, h), (e, h, 1), (e, 1, 1)]
        fans = [f, f, h, h, h, h]
        self.weights = [
            ((torch.rand(s, generator=generator) * 2 - 1) / math.sqrt(fan)).requires_grad_()
            for s, fan in zip(shapes, fans)
        ]
        optimizer = torch.optim.Adam(self.weights, lr=self.lr)
        batch = x.expand(e, -1, -1)  # (E, N, F)
        for _ in range(self.epochs):
            optimizer.zero_grad()
            loss = ((self._forward(batch) - target) ** 2).mean()
            loss.backward()
            optimizer.step()
        return self

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2, w3, b3 = self.weights
        hidden = (x @ w1 + b1).relu()  # (E, N, H)
        hidden = (hidden @ w2 + b2).relu()  # (E, N, H)
        return (hidden @ w3 + b3).squeeze(-1)  # (E, N)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            return self._forward(x.expand(self.members, -1, -1)) * self.std + self.mean


class PredictorSampler(ProposalSampler):
    """Predictor-guided search (see the module docstring).

    Args:
        n_startup_trials: completed trials drawn at random before the predictor is used.
        members: ensemble size.
        top_k: best architectures whose mutations are candidates.
        mutations_per_parent: candidates per parent (half one edit, half two edits).
        random_candidates: uniformly drawn candidates added to the mutations.
        acquisition: ``"its"`` (independent Thompson sampling), ``"ucb"`` (mean + 1 std) or
            ``"mean"``.
        epochs: full-batch training steps of the ensemble.
        refit_every: the ensemble is trained on the first ``n - n % refit_every`` completed
            trials (by number), so it is retrained once per ``refit_every`` completions (as
            BANANAS proposes a batch per model) and stays a function of the study's trials.
        seed: seed of every random choice.
        space: the search space to replay proposals through (default: the study's).
    """

    strategy = "predictor"

    def __init__(
        self, n_startup_trials: int = 10, members: int = 5, top_k: int = 10,
        mutations_per_parent: int = 20, random_candidates: int = 20, acquisition: str = "its",
        epochs: int = 100, refit_every: int = 5, *, seed: int | None = None, space: SearchSpace | None = None,
    ) -> None:
        if acquisition not in ACQUISITIONS:
            raise ValueError(
                f"could not resolve acquisition {acquisition!r} among choices {list(ACQUISITIONS)}"
            )
        if n_startup_trials < 2 or members < 1 or top_k < 1:
            raise ValueError(
                f"predictor needs n_startup_trials >= 2, members >= 1 and top_k >= 1, got "
                f"{n_startup_trials}, {members} and {top_k}"
            )
        super().__init__(seed=seed, space=space)
        self.n_startup_trials, self.members, self.top_k = n_startup_trials, members, top_k
        self.mutations_per_parent, self.random_candidates = mutations_per_parent, random_candidates
        self.acquisition, self.epochs, self.refit_every = acquisition, epochs, max(1, refit_every)
        self._space_distributions: dict[str, BaseDistribution] | None = None
        self._features: dict[str, list[float]] = {}  # cell features by parameters
        self._fitted: dict[tuple[int, tuple[int, ...]], tuple[Encoder, Ensemble]] = {}

    def propose(self, study: Study, archive: Archive, rng: random.Random) -> Params:
        if len(archive.completed) < self.n_startup_trials:
            return {}
        candidates = self.candidates(study, archive, rng)
        if not candidates:
            return {}
        encoder, ensemble = self.model(study, archive)
        scores = self.acquire(ensemble.predict(self._encode(encoder, candidates)), rng)
        return candidates[max(range(len(candidates)), key=lambda i: (scores[i], -i))]

    def candidates(self, study: Study, archive: Archive, rng: random.Random) -> list[Params]:
        """New architectures near the best ones, and a few random ones, without duplicates."""
        found: dict[str, Params] = {}

        def add(params: Params) -> None:
            params, key = self.complete(study, params, rng)
            if key not in found and not self.is_taken(study, archive, params, key):
                found[key] = params

        for _, parent in archive.ranked()[: self.top_k]:
            for i in range(self.mutations_per_parent):
                add(self.mutate(study, parent.params, archive, rng, edits=1 + i % 2))
        for _ in range(self.random_candidates):
            add({})
        return list(found.values())

    def model(self, study: Study, archive: Archive) -> tuple[Encoder, Ensemble]:
        """The encoder and the ensemble trained on the completed trials (cached)."""
        n = len(archive.completed)
        used = n - (n - self.n_startup_trials) % self.refit_every
        numbers = tuple(t.number for t in archive.completed[:used])
        cache = (study._study_id, numbers)
        if cache not in self._fitted:
            encoder = self.encoder(study, archive)
            seed = hash((self._seed, numbers)) % 2**31
            self._fitted = {cache: (encoder, self.fit(encoder, archive, used, seed))}
        return self._fitted[cache]

    def encoder(self, study: Study, archive: Archive) -> Encoder:
        space = self.space(study)
        distributions = dict(archive.distributions)
        if space is not None:
            if self._space_distributions is None:
                self._space_distributions = space_distributions(space)
            distributions = {**self._space_distributions, **distributions}
        return Encoder(distributions, self._extra_features(space))

    def _extra_features(self, space: SearchSpace | None) -> Callable[[Params], list[float]] | None:
        """A NAS-Bench-Graph cell's structural features from its parameters (cached), which
        the encoder appends; None for other spaces."""
        if space is None or getattr(space, "name", None) != "nasbench-graph":
            return None
        cache = self._features

        def features(params: Params) -> list[float]:
            key = json.dumps(params, sort_keys=True, default=str)
            if key not in cache:
                replay = ReplayTrial(params, random.Random(0))
                try:
                    cache[key] = cell_features(space.suggest(replay))  # type: ignore[arg-type]
                except optuna.TrialPruned:
                    cache[key] = cell_features(None)
            return cache[key]

        return features

    def fit(self, encoder: Encoder, archive: Archive, used: int, seed: int) -> Ensemble:
        """An ensemble trained on the first ``used`` completed trials."""
        import torch

        x = self._encode(encoder, [t.params for t in archive.completed[:used]])
        y = torch.tensor(archive.scores[:used], dtype=torch.float32)
        ensemble = Ensemble(self.members, epochs=self.epochs, seed=seed)
        return ensemble.fit(x, y)

    def acquire(self, predictions: torch.Tensor, rng: random.Random) -> list[float]:
        """Acquisition values of predictions ``(members, M)``, larger is better."""
        import torch

        mean = predictions.mean(0)
        std = predictions.std(0) if predictions.shape[0] > 1 else torch.zeros_like(mean)
        if self.acquisition == "mean":
            return mean.tolist()
        if self.acquisition == "ucb":
            return (mean + std).tolist()
        return [m + s * rng.gauss(0.0, 1.0) for m, s in zip(mean.tolist(), std.tolist())]

    @staticmethod
    def _encode(encoder: Encoder, params: list[Params]) -> torch.Tensor:
        import torch

        return torch.tensor([encoder(p) for p in params], dtype=torch.float32)

    def __repr__(self) -> str:
        return (
            f"PredictorSampler(n_startup_trials={self.n_startup_trials}, members={self.members}, "
            f"top_k={self.top_k}, acquisition={self.acquisition!r})"
        )
