"""The interface of a one-shot supernet: every candidate of a space's sub-space, weights shared.

A supernet holds one module per candidate operation of each position (layer or cell node); an
architecture of the sub-space it covers is a *path* through it. The supernet trains by running
one path per step (single-path one-shot, SPOS) and scores an architecture by :meth:`extract`ing
a stand-alone model of the space with the path's (inherited) weights.

The gradient strategy (:mod:`nas.supernet._gradient`) sees a supernet as a set of categorical
*decisions* (:meth:`decisions`), each a tuple of choices; a dict of one choice per decision is
turned back into an architecture by :meth:`from_decisions`. ``gates`` passed to ``forward``
(one scalar per decision, 1.0 in value) multiply the output of each chosen candidate, so a
straight-through Gumbel-softmax sample passes gradients to the architecture logits (GDAS).
"""
from __future__ import annotations

import abc
import random
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

if TYPE_CHECKING:
    from search_spaces.base import Architecture, SearchSpace, TaskLevel

#: decision name -> gate scalar (straight-through one-hot weight of the chosen candidate)
Gates = dict[str, Tensor]


class Supernet(nn.Module, abc.ABC):
    """A weight-sharing supernet over (a stated sub-space of) a search space.

    Subclasses set :attr:`space_name` and implement the abstract methods; ``config()`` returns
    the JSON-ready keyword arguments that rebuild the same (untrained) supernet.
    """

    space_name: ClassVar[str]

    def __init__(self, in_channels: int, out_channels: int, level: TaskLevel = "node") -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.level = in_channels, out_channels, level

    @property
    @abc.abstractmethod
    def space(self) -> SearchSpace:
        """The search space the supernet's paths belong to."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (JSON-ready) that rebuild this supernet."""

    @abc.abstractmethod
    def project(self, arch: Architecture, strict: bool = False) -> Architecture:
        """The covered architecture that scores ``arch`` (see the class's mapping rule).

        Raises:
            ValueError: ``arch`` cannot be mapped, or (``strict``) is not covered as it is.
        """

    @abc.abstractmethod
    def sample(self, rng: random.Random) -> Architecture:
        """A covered architecture, uniformly at each choice (SPOS path sampling)."""

    def fair_paths(self, rng: random.Random) -> list[Architecture]:
        """One step's paths under strict fairness (FairNAS: Chu et al., "FairNAS: Rethinking
        Evaluation Fairness of Weight Sharing Neural Architecture Search", ICCV 2021).

        ``m`` paths, ``m`` the most choices any decision has: each decision's choices are
        shuffled and dealt to the paths in turn (repeated when it has fewer than ``m``), so in
        one step every choice of the widest decisions runs exactly once and every other choice
        as evenly as ``m`` allows. Decisions that a path does not use (a layer beyond its depth)
        are dealt but idle, so positions deeper than the shallowest depth run less often. A deal
        in which some path is invalid (NAS-Bench-Graph's all-skip cell) is redealt as a whole.
        """
        decisions = self.decisions()
        m = max(len(choices) for choices in decisions.values())
        for _ in range(1000):  # a deal with an invalid path (e.g. an all-skip cell) is redealt
            dealt = {name: deal(choices, m, rng) for name, choices in decisions.items()}
            try:
                return [self.from_decisions({name: dealt[name][k] for name in decisions}) for k in range(m)]
            except ValueError:
                continue
        raise RuntimeError(f"no valid fair deal of {m} paths in 1000 tries")

    @abc.abstractmethod
    def forward(
        self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None, *,
        arch: Architecture, gates: Gates | None = None,
    ) -> Tensor:
        """Logits of the path ``arch`` (which must be covered: see :meth:`project`)."""

    @abc.abstractmethod
    def path_modules(self, arch: Architecture) -> list[nn.Module]:
        """The modules (with parameters) that the path ``arch`` runs."""

    @abc.abstractmethod
    def extract(self, arch: Architecture) -> nn.Module:
        """The space's own model of ``project(arch)`` with the supernet's weights copied in."""

    @abc.abstractmethod
    def decisions(self) -> dict[str, tuple[Any, ...]]:
        """Categorical decisions of the covered sub-space, for the gradient strategy."""

    @abc.abstractmethod
    def from_decisions(self, choices: dict[str, Any]) -> Architecture:
        """The architecture of one choice per decision (inverse of :meth:`to_decisions`)."""

    @abc.abstractmethod
    def to_decisions(self, arch: Architecture) -> dict[str, Any]:
        """The decisions of a covered architecture."""

    @abc.abstractmethod
    def shortcut_choices(self) -> dict[str, frozenset[Any]]:
        """Per decision, the parameter-free / shortcut candidates the gradient strategy's
        collapse guard holds back."""

    @staticmethod
    @abc.abstractmethod
    def trial_params(arch: Architecture) -> dict[str, Any]:
        """Optuna parameters that make :meth:`SearchSpace.suggest` return ``arch`` (used to
        enqueue an architecture as a trial)."""


def deal(choices: tuple[Any, ...], m: int, rng: random.Random) -> list[Any]:
    """``m`` of ``choices`` in shuffled rounds: each round holds every choice once."""
    out: list[Any] = []
    while len(out) < m:
        round_ = list(choices)
        rng.shuffle(round_)
        out.extend(round_)
    return out[:m]
