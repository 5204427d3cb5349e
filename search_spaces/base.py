"""The interface every search space implements.

A space says *what* can be built: it turns an :class:`optuna.trial.Trial` into a frozen,
hashable architecture (the only place that calls ``trial.suggest_*``) and builds an
``nn.Module`` from an architecture for a task of given input size, output size and level.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import optuna
    from torch import nn

TaskLevel = Literal["node", "graph", "image"]
#: levels a space supports unless it says otherwise (image spaces set ``levels = ("image",)``)
TASK_LEVELS: tuple[str, ...] = ("node", "graph")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the text an architecture's hash is taken of."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


class Architecture(abc.ABC):
    """Mixin for frozen architecture dataclasses: JSON round trip and a canonical hash."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def to_json(self, indent: int | None = None) -> str:
        if indent is None:
            return canonical_json(self.to_dict())
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    @classmethod
    @abc.abstractmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture: ...

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        return cls.from_dict(json.loads(text))

    def short(self) -> str:
        """A one-line human summary (default: the start of the hash)."""
        return self.arch_hash[:12]

    @property
    def arch_hash(self) -> str:
        """SHA-256 of the canonical JSON: equal architectures hash equally across processes."""
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()


class SearchSpace(abc.ABC):
    """A space of architectures.

    Subclasses set :attr:`name` and implement :meth:`suggest`, :meth:`build` and
    :meth:`architecture_from_dict`.
    """

    name: ClassVar[str]
    #: task levels the space can build models for
    levels: ClassVar[tuple[str, ...]] = TASK_LEVELS

    @abc.abstractmethod
    def suggest(self, trial: optuna.trial.BaseTrial) -> Architecture:
        """Turn a trial's suggestions into an architecture (the only ``suggest_*`` caller)."""

    @abc.abstractmethod
    def build(
        self, arch: Architecture, in_channels: int, out_channels: int, level: TaskLevel = "node"
    ) -> nn.Module:
        """Build a freshly initialised model: ``forward(x, edge_index, batch=None) -> logits``."""

    @abc.abstractmethod
    def architecture_from_dict(self, data: dict[str, Any]) -> Architecture:
        """Inverse of ``arch.to_dict()``; raises ``ValueError`` on a malformed spec."""

    def trial_params(self, arch: Architecture) -> dict[str, Any]:
        """The trial parameters under which :meth:`suggest` returns ``arch`` (its inverse), so
        that a study can queue ``arch`` as a trial (``study.enqueue_trial``)."""
        raise NotImplementedError(
            f"space {self.name!r} cannot turn an architecture back into trial parameters"
        )

    def training_config(self, arch: Architecture) -> dict[str, float]:
        """Optimiser settings that belong to the architecture (learning rate, weight decay)."""
        return {"lr": float(arch.lr), "weight_decay": float(arch.weight_decay)}  # type: ignore[attr-defined]

    def for_dataset(self, dataset: str) -> SearchSpace:
        """The space as it builds and trains models for ``dataset`` (a canonical task name).

        Most spaces do not depend on the dataset and return themselves; a benchmark space
        returns one configured with that dataset's fixed hyper-parameters.
        """
        return self

    def check_level(self, level: str) -> None:
        if level not in self.levels:
            raise ValueError(
                f"space {self.name!r} cannot build models for {level!r} tasks; "
                f"it supports {list(self.levels)}"
            )

    def sample(self, rng: random.Random | int | None = None) -> Architecture:
        """One architecture drawn uniformly at each choice (no Optuna study needed)."""
        if not isinstance(rng, random.Random):
            rng = random.Random(rng)
        return self.suggest(RandomTrial(rng))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RandomTrial:
    """The part of the ``optuna.trial.Trial`` API a space uses, answered by a random generator.

    Lets :meth:`SearchSpace.sample` reuse :meth:`SearchSpace.suggest`, so the space's choices are
    written down once.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.params.setdefault(name, self.rng.choice(list(choices)))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self.params.setdefault(name, self.rng.randrange(low, high + 1, step))

    def suggest_float(
        self, name: str, low: float, high: float, step: float | None = None, log: bool = False
    ) -> float:
        return self.params.setdefault(name, self.rng.uniform(low, high))
