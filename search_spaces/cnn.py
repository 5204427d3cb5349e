"""A space of small image CNNs, made to train model zoos (networks whose weights a metanetwork
reads, see :mod:`metanets.zoo`).

An architecture is 1-4 convolutional blocks ``conv -> norm -> activation (+ residual) -> pool``
(the space samples 1-3 unless given ``max_depth=4``), followed by global average pooling and one
linear classifier, together with the training hyper-parameters a zoo varies: Adam learning
rate, weight decay and the fraction of the training images used. The number of epochs is
varied by checkpointing every run at several epochs (``TrainConfig.checkpoint_epochs``), and
the seed by the trial number.

Only plain ``torch.nn`` modules (``Conv2d``, ``BatchNorm2d``, activations, residual ``+``,
``MaxPool2d``, ``AdaptiveAvgPool2d``, ``Linear``) so that :func:`metanets.graphs.to_parameter_graph`
converts every model.

Reference: Unterthiner et al., "Predicting Neural Network Accuracy from Weights", 2020 (the
small-CNN zoos of CIFAR10-GS); Schürholt et al., "Model Zoos", NeurIPS 2022 Datasets.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from search_spaces._image import ImageSpace, check_depths, check_fractions, check_subset, check_widths
from search_spaces.base import Architecture, TaskLevel

if TYPE_CHECKING:
    import optuna

WIDTHS: tuple[int, ...] = (4, 8, 16)
KERNELS: tuple[int, ...] = (3, 5)
ACTIVATIONS: tuple[str, ...] = ("relu", "gelu", "tanh", "silu", "leaky_relu")
NORMS: tuple[str, ...] = ("none", "batch")
TRAIN_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1)
LR_RANGE: tuple[float, float] = (3e-4, 3e-2)            # log-uniform
WEIGHT_DECAY_RANGE: tuple[float, float] = (1e-6, 1e-2)  # log-uniform
MAX_DEPTH = 4          # most blocks of an architecture (28-pixel MNIST pools to 3x3 by the 4th)
DEFAULT_MAX_DEPTH = 3  # most blocks the space samples unless given ``max_depth``

_ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU, "leaky_relu": nn.LeakyReLU,
}


def _check_choice(field: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{field} {value!r} is not among the choices {list(choices)}")


@dataclasses.dataclass(frozen=True)
class CNNArchitecture(Architecture):
    """A small CNN and how it is trained (see the module docstring)."""

    widths: tuple[int, ...] = (8, 8)   # output channels of each conv block (depth = len)
    kernel_size: int = 3               # one of KERNELS, all blocks
    activation: str = "relu"           # one of ACTIVATIONS
    norm: str = "none"                 # one of NORMS: BatchNorm2d after each conv or none
    residual: bool = False             # add the block's input (1x1-projected if widths differ)
    lr: float = 3e-3                   # Adam learning rate
    weight_decay: float = 1e-4         # Adam weight decay
    train_fraction: float = 0.1        # fraction of the task's training images used (seeded)

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not 1 <= len(self.widths) <= MAX_DEPTH or min(self.widths) < 1:
            raise ValueError(
                f"widths {self.widths!r} must hold 1..{MAX_DEPTH} positive channel counts"
            )
        _check_choice("kernel_size", self.kernel_size, KERNELS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("norm", self.norm, NORMS)
        if not (self.lr > 0 and math.isfinite(self.lr)) or self.weight_decay < 0:
            raise ValueError(f"lr {self.lr} must be > 0 and weight_decay {self.weight_decay} >= 0")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction {self.train_fraction} must be in (0, 1]")

    @property
    def depth(self) -> int:
        return len(self.widths)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CNNArchitecture:
        try:
            fields = dict(data)
            fields["widths"] = tuple(fields["widths"])
            return cls(**fields)
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed CNN architecture spec {data!r}: {error}") from error

    def short(self) -> str:
        """A one-line summary such as ``c8-c16 k3 relu bn res lr3e-03 f0.10``."""
        parts = ["-".join(f"c{w}" for w in self.widths), f"k{self.kernel_size}", self.activation]
        parts += ["bn"] if self.norm == "batch" else []
        parts += ["res"] if self.residual else []
        parts += [f"lr{self.lr:.0e}", f"wd{self.weight_decay:.0e}", f"f{self.train_fraction:.2f}"]
        return " ".join(parts)


class CNNSpace(ImageSpace):
    """Small image CNNs for model zoos (see the module docstring).

    Every choice can be narrowed, down to one architecture whose training hyper-parameters
    alone vary (a fixed-architecture zoo: ``min_depth=max_depth=2, widths=(8,),
    kernel_sizes=(3,), activations=("relu",), norms=("none",), residuals=(False,)``).

    Args:
        max_depth: most conv blocks (1..4; default 3).
        widths: channel counts to choose from per block.
        train_fractions: training-data fractions to choose from.
        min_depth: fewest conv blocks.
        kernel_sizes, activations, norms, residuals: the choices of those fields.
    """

    name = "cnn"

    def __init__(
        self, max_depth: int = DEFAULT_MAX_DEPTH, widths: tuple[int, ...] = WIDTHS,
        train_fractions: tuple[float, ...] = TRAIN_FRACTIONS, min_depth: int = 1,
        kernel_sizes: tuple[int, ...] = KERNELS, activations: tuple[str, ...] = ACTIVATIONS,
        norms: tuple[str, ...] = NORMS, residuals: tuple[bool, ...] = (False, True),
    ) -> None:
        check_depths(min_depth, max_depth, MAX_DEPTH)
        for field, values, choices in (
            ("kernel_sizes", kernel_sizes, KERNELS), ("activations", activations, ACTIVATIONS),
            ("norms", norms, NORMS), ("residuals", residuals, (False, True)),
        ):
            check_subset(field, tuple(values), choices)
        self.min_depth, self.kernel_sizes = min_depth, tuple(kernel_sizes)
        self.activations, self.norms = tuple(activations), tuple(norms)
        self.residuals = tuple(bool(r) for r in residuals)
        check_widths(tuple(widths), "channel")
        check_fractions(tuple(train_fractions))
        self.max_depth, self.widths = max_depth, tuple(widths)
        self.train_fractions = tuple(train_fractions)

    def suggest(self, trial: optuna.trial.BaseTrial) -> CNNArchitecture:
        depth = trial.suggest_int("depth", self.min_depth, self.max_depth)
        return CNNArchitecture(
            widths=tuple(trial.suggest_categorical(f"l{i}_width", self.widths) for i in range(depth)),
            kernel_size=trial.suggest_categorical("kernel_size", self.kernel_sizes),
            activation=trial.suggest_categorical("activation", self.activations),
            norm=trial.suggest_categorical("norm", self.norms),
            residual=trial.suggest_categorical("residual", self.residuals),
            lr=trial.suggest_float("lr", *LR_RANGE, log=True),
            weight_decay=trial.suggest_float("weight_decay", *WEIGHT_DECAY_RANGE, log=True),
            train_fraction=trial.suggest_categorical("train_fraction", self.train_fractions),
        )

    @staticmethod
    def trial_params(arch: CNNArchitecture) -> dict[str, Any]:
        """The trial parameters under which :meth:`suggest` returns ``arch``."""
        return {
            "depth": len(arch.widths), **{f"l{i}_width": w for i, w in enumerate(arch.widths)},
            "kernel_size": arch.kernel_size, "activation": arch.activation, "norm": arch.norm,
            "residual": arch.residual, "lr": arch.lr, "weight_decay": arch.weight_decay,
            "train_fraction": arch.train_fraction,
        }

    def build(
        self, arch: Architecture, in_channels: int, out_channels: int,
        level: TaskLevel | str = "image",
    ) -> CNN:
        self.check_level(level)
        if not isinstance(arch, CNNArchitecture):
            raise TypeError(f"space 'cnn' builds CNNArchitecture, not {type(arch).__name__}")
        return CNN(arch, in_channels, out_channels)

    def architecture_from_dict(self, data: dict[str, Any]) -> CNNArchitecture:
        return CNNArchitecture.from_dict(data)

    def __repr__(self) -> str:
        return (
            f"CNNSpace(depth={self.min_depth}..{self.max_depth}, widths={list(self.widths)}, "
            f"kernels={list(self.kernel_sizes)}, activations={list(self.activations)}, "
            f"norms={list(self.norms)}, residuals={list(self.residuals)}, "
            f"train_fractions={list(self.train_fractions)})"
        )


class ConvBlock(nn.Module):
    """``conv -> norm -> activation``, plus the (projected) input if residual, then 2x2 max pool.

    Args:
        in_channels, out_channels: channels before and after the block.
        kernel_size: odd kernel size; 'same' padding.
        activation, norm, residual: see :class:`CNNArchitecture`.
        pool: halve the spatial size at the end.

    Shapes:
        ``(B, C_in, H, W) -> (B, C_out, H', W')`` with ``H' = H // 2`` if ``pool`` else ``H``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, activation: str, norm: str,
        residual: bool, pool: bool,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(out_channels) if norm == "batch" else None
        self.act = _ACTIVATION_MODULES[activation]()
        self.shortcut: nn.Module | None = None
        if residual:
            self.shortcut = (
                nn.Identity() if in_channels == out_channels
                else nn.Conv2d(in_channels, out_channels, 1, bias=False)
            )
        self.pool = nn.MaxPool2d(2) if pool else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = self.act(out)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        if self.pool is not None:
            out = self.pool(out)
        return out


class CNN(nn.Module):
    """The model of a :class:`CNNArchitecture`: conv blocks, global average pool, classifier.

    Every block but the last halves the spatial size (2x2 max pool).

    Shapes:
        ``forward(x)``: ``(B, C_in, H, W) -> (B, out_channels)`` logits.
    """

    def __init__(self, arch: CNNArchitecture, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.arch = arch
        channels = (in_channels, *arch.widths)
        self.blocks = nn.ModuleList(
            ConvBlock(
                channels[i], channels[i + 1], arch.kernel_size, arch.activation, arch.norm,
                arch.residual, pool=i < arch.depth - 1,
            )
            for i in range(arch.depth)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels[-1], out_channels)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.pool(x).flatten(1))

    def __repr__(self) -> str:
        return f"CNN({self.arch.short()}, classes={self.classifier.out_features})"
