"""A space of small image MLPs, made to train model zoos (networks whose weights a metanetwork
reads, see :mod:`metanets.zoo`); the fully connected sibling of :mod:`search_spaces.cnn`.

An architecture is ``average-pool to input_size x input_size -> flatten``, then 1-4 hidden
layers ``linear -> norm -> activation -> dropout (+ residual)`` (the space samples 1-3 unless
given ``max_depth=4``) and one linear classifier, together with the training hyper-parameters a
zoo varies: Adam learning rate, weight decay and the fraction of the training images used. The
number of epochs is varied by checkpointing every run at several epochs
(``TrainConfig.checkpoint_epochs``), and the seed by the trial number.

The first layer's width is fixed by the architecture, not by the dataset: images are average
pooled to ``input_size`` pixels a side first (the identity for images of that size), so a stored
MLP rebuilds from its spec alone (export, zoo, pruning) and one trained on 28x28 ``mnist``
reads the same 14x14 pixels as one trained on ``mnist14`` (which is 2x2-average-pooled MNIST).

A residual connection adds a hidden layer's input to its output where the two have the same
width (the second hidden layer onwards; no projection, unlike the CNN space): an architecture
without two consecutive equal widths has ``residual=False``, so that equal networks hash equally.

Only plain ``torch.nn`` modules (``AdaptiveAvgPool2d``, ``Flatten``, ``Linear``, ``BatchNorm1d``,
``LayerNorm``, activations, ``Dropout``, residual ``+``) so that
:func:`metanets.graphs.to_parameter_graph` converts every model and torch-pruning's dependency
graph prunes it.

Reference: Schürholt et al., "Model Zoos", NeurIPS 2022 Datasets (MLP zoos);
Navon et al., "Equivariant Architectures for Learning in Deep Weight Spaces", ICML 2023 (MLP
weight spaces).
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from search_spaces._image import ImageSpace, check_depths, check_fractions, check_subset, check_widths
from search_spaces.base import Architecture, TaskLevel
from search_spaces.cnn import (
    _ACTIVATION_MODULES,
    ACTIVATIONS,
    LR_RANGE,
    TRAIN_FRACTIONS,
    WEIGHT_DECAY_RANGE,
    _check_choice,
)

if TYPE_CHECKING:
    import optuna

WIDTHS: tuple[int, ...] = (16, 32, 64)
NORMS: tuple[str, ...] = ("none", "batch", "layer")
DROPOUTS: tuple[float, ...] = (0.0, 0.1, 0.2)
INPUT_SIZE = 14        # default side of the (pooled) image the first layer reads
MAX_DEPTH = 4          # most hidden layers of an architecture
DEFAULT_MAX_DEPTH = 3  # most hidden layers the space samples unless given ``max_depth``


def has_residual_pair(widths: tuple[int, ...]) -> bool:
    """Whether some hidden layer has the width of the one before it (a residual fits there)."""
    return any(a == b for a, b in zip(widths, widths[1:]))


@dataclasses.dataclass(frozen=True)
class MLPArchitecture(Architecture):
    """A small MLP and how it is trained (see the module docstring)."""

    widths: tuple[int, ...] = (32, 32)  # neurons of each hidden layer (depth = len)
    activation: str = "relu"            # one of ACTIVATIONS
    norm: str = "none"                  # one of NORMS: BatchNorm1d / LayerNorm after each linear
    dropout: float = 0.0                # dropout probability after each activation, in [0, 1)
    residual: bool = False              # add a layer's input where widths match (see module doc)
    input_size: int = INPUT_SIZE        # images are average-pooled to this many pixels a side
    lr: float = 3e-3                    # Adam learning rate
    weight_decay: float = 1e-4          # Adam weight decay
    train_fraction: float = 0.1         # fraction of the task's training images used (seeded)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not 1 <= len(self.widths) <= MAX_DEPTH or min(self.widths) < 1:
            raise ValueError(
                f"widths {self.widths!r} must hold 1..{MAX_DEPTH} positive neuron counts"
            )
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("norm", self.norm, NORMS)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout {self.dropout} must be in [0, 1)")
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) \
                or self.input_size < 1:
            raise ValueError(f"input_size {self.input_size!r} must be a positive pixel count")
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.weight_decay < 0:
            raise ValueError(f"lr {self.lr} must be > 0 and weight_decay {self.weight_decay} >= 0")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction {self.train_fraction} must be in (0, 1]")
        object.__setattr__(self, "residual", bool(self.residual) and has_residual_pair(self.widths))

    @property
    def depth(self) -> int:
        return len(self.widths)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MLPArchitecture:
        try:
            fields = dict(data)
            fields["widths"] = tuple(fields["widths"])
            return cls(**fields)
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed MLP architecture spec {data!r}: {error}") from error

    def short(self) -> str:
        """A one-line summary such as ``h32-h32 relu ln d0.1 res in14 lr3e-03 f0.10``."""
        parts = ["-".join(f"h{w}" for w in self.widths), self.activation]
        parts += {"batch": ["bn"], "layer": ["ln"]}.get(self.norm, [])
        parts += [f"d{self.dropout:g}"] if self.dropout else []
        parts += ["res"] if self.residual else []
        parts += [f"in{self.input_size}", f"lr{self.lr:.0e}", f"wd{self.weight_decay:.0e}",
                  f"f{self.train_fraction:.2f}"]
        return " ".join(parts)


class MLPSpace(ImageSpace):
    """Small image MLPs for model zoos (see the module docstring).

    Every choice can be narrowed, down to one architecture whose training hyper-parameters
    alone vary (a fixed-architecture zoo: ``min_depth=max_depth=2, widths=(32,),
    activations=("relu",), norms=("none",), dropouts=(0.0,), residuals=(False,)``).

    Args:
        max_depth: most hidden layers (1..4; default 3).
        widths: neuron counts to choose from per hidden layer.
        train_fractions: training-data fractions to choose from.
        min_depth: fewest hidden layers.
        activations, norms, dropouts, residuals: the choices of those fields.
        input_size: side of the pooled image every architecture reads (not sampled).
    """

    name = "mlp"

    def __init__(
        self, max_depth: int = DEFAULT_MAX_DEPTH, widths: tuple[int, ...] = WIDTHS,
        train_fractions: tuple[float, ...] = TRAIN_FRACTIONS, min_depth: int = 1,
        activations: tuple[str, ...] = ACTIVATIONS, norms: tuple[str, ...] = NORMS,
        dropouts: tuple[float, ...] = DROPOUTS, residuals: tuple[bool, ...] = (False, True),
        input_size: int = INPUT_SIZE,
    ) -> None:
        check_depths(min_depth, max_depth, MAX_DEPTH)
        check_subset("activations", tuple(activations), ACTIVATIONS)
        check_subset("norms", tuple(norms), NORMS)
        check_subset("residuals", tuple(residuals), (False, True))
        check_widths(tuple(widths), "neuron")
        if not dropouts or not all(0 <= d < 1 for d in dropouts):
            raise ValueError(f"dropouts {list(dropouts)!r} must lie in [0, 1)")
        check_fractions(tuple(train_fractions))
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input_size {input_size!r} must be a positive pixel count")
        self.min_depth, self.max_depth = min_depth, max_depth
        self.widths, self.train_fractions = tuple(widths), tuple(train_fractions)
        self.activations, self.norms = tuple(activations), tuple(norms)
        self.dropouts = tuple(float(d) for d in dropouts)
        self.residuals = tuple(bool(r) for r in residuals)
        self.input_size = input_size

    def suggest(self, trial: optuna.trial.BaseTrial) -> MLPArchitecture:
        depth = trial.suggest_int("depth", self.min_depth, self.max_depth)
        return MLPArchitecture(
            widths=tuple(trial.suggest_categorical(f"l{i}_width", self.widths) for i in range(depth)),
            activation=trial.suggest_categorical("activation", self.activations),
            norm=trial.suggest_categorical("norm", self.norms),
            dropout=trial.suggest_categorical("dropout", self.dropouts),
            residual=trial.suggest_categorical("residual", self.residuals),
            input_size=self.input_size,
            lr=trial.suggest_float("lr", *LR_RANGE, log=True),
            weight_decay=trial.suggest_float("weight_decay", *WEIGHT_DECAY_RANGE, log=True),
            train_fraction=trial.suggest_categorical("train_fraction", self.train_fractions),
        )

    def trial_params(self, arch: MLPArchitecture) -> dict[str, Any]:  # type: ignore[override]
        """The trial parameters under which :meth:`suggest` returns ``arch`` (of a space with
        its ``input_size``)."""
        # without two consecutive equal widths every residual choice gives ``arch``: one on offer
        residual = arch.residual if has_residual_pair(arch.widths) else self.residuals[0]
        return {
            "depth": len(arch.widths), **{f"l{i}_width": w for i, w in enumerate(arch.widths)},
            "activation": arch.activation, "norm": arch.norm, "dropout": arch.dropout,
            "residual": residual, "lr": arch.lr, "weight_decay": arch.weight_decay,
            "train_fraction": arch.train_fraction,
        }

    def build(
        self, arch: Architecture, in_channels: int, out_channels: int,
        level: TaskLevel | str = "image",
    ) -> MLP:
        self.check_level(level)
        if not isinstance(arch, MLPArchitecture):
            raise TypeError(f"space 'mlp' builds MLPArchitecture, not {type(arch).__name__}")
        return MLP(arch, in_channels, out_channels)

    def architecture_from_dict(self, data: dict[str, Any]) -> MLPArchitecture:
        return MLPArchitecture.from_dict(data)

    def __repr__(self) -> str:
        return (
            f"MLPSpace(depth={self.min_depth}..{self.max_depth}, widths={list(self.widths)}, "
            f"activations={list(self.activations)}, norms={list(self.norms)}, "
            f"dropouts={list(self.dropouts)}, residuals={list(self.residuals)}, "
            f"input_size={self.input_size}, train_fractions={list(self.train_fractions)})"
        )


def _norm_module(norm: str, features: int) -> nn.Module | None:
    if norm == "batch":
        return nn.BatchNorm1d(features)
    return nn.LayerNorm(features) if norm == "layer" else None


class LinearBlock(nn.Module):
    """``linear -> norm -> activation -> dropout``, plus the input if residual.

    Args:
        in_features, out_features: neurons before and after the block.
        activation, norm, dropout: see :class:`MLPArchitecture`.
        residual: add the input (needs ``in_features == out_features``).

    Shapes:
        ``(B, F_in) -> (B, F_out)``.
    """

    def __init__(
        self, in_features: int, out_features: int, activation: str, norm: str, dropout: float,
        residual: bool,
    ) -> None:
        super().__init__()
        if residual and in_features != out_features:
            raise ValueError(f"a residual block needs equal widths, not {in_features} -> "
                             f"{out_features}")
        self.linear = nn.Linear(in_features, out_features)
        self.norm = _norm_module(norm, out_features)
        self.act = _ACTIVATION_MODULES[activation]()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.linear(x)
        if self.norm is not None:
            out = self.norm(out)
        out = self.act(out)
        if self.dropout is not None:
            out = self.dropout(out)
        if self.residual:
            out = out + x
        return out


class MLP(nn.Module):
    """The model of an :class:`MLPArchitecture`: pool, flatten, hidden blocks, classifier.

    Shapes:
        ``forward(x)``: ``(B, C_in, H, W) -> (B, out_channels)`` logits.
    """

    def __init__(self, arch: MLPArchitecture, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.arch = arch
        self.pool = nn.AdaptiveAvgPool2d(arch.input_size)
        self.flatten = nn.Flatten()
        features = (in_channels * arch.input_size ** 2, *arch.widths)
        self.blocks = nn.ModuleList(
            LinearBlock(
                features[i], features[i + 1], arch.activation, arch.norm, arch.dropout,
                residual=arch.residual and i > 0 and features[i] == features[i + 1],
            )
            for i in range(arch.depth)
        )
        self.classifier = nn.Linear(features[-1], out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.flatten(self.pool(x))  # (B, C * S * S)
        for block in self.blocks:
            x = block(x)
        return self.classifier(x)

    def __repr__(self) -> str:
        return f"MLP({self.arch.short()}, classes={self.classifier.out_features})"
