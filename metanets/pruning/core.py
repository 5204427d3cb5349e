"""Structured channel pruning to a target MACs speed-up.

Every backend splits a model into groups of coupled channels and gives each channel an L2
group-norm importance (the norm of all weights that go when the channel goes). Importances are
divided by their group's mean so that groups of different sizes rank together (torch-pruning's
``normalizer="mean"``), and the lowest-ranked channels of all groups are removed together, every
group keeping at least one channel, in small steps until the measured MACs reach the target.

MACs: half the FLOPs ``torch.utils.flop_counter`` counts for one forward pass on the example
inputs: dense matrix products and convolutions; normalisation, activations and message passing's
scatter operations are not counted (for a GNN the dense products dominate). While pruning, the
MACs of each pruned copy are counted from its weights' shapes instead (:class:`WeightMacs`,
the same numbers without a forward pass), where every counted product multiplies by one
weight (Linear and convolution weights, ARMA's weight tensors).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from typing import Any, Callable, Literal

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from metanets.pruning.errors import UnreachableSpeedupError
from nas.train import kept_modes

Importance = Literal["magnitude", "random"]
IMPORTANCES: tuple[str, ...] = ("magnitude", "random")
STEP = 0.01  # fraction of all prunable channels removed per MACs measurement


@dataclasses.dataclass(frozen=True)
class PruneResult:
    """A pruned copy of a model and what pruning changed."""

    model: nn.Module                 # the pruned model (the input is never modified)
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    removed_fraction: float          # fraction of prunable channels removed
    widths_before: tuple[int, ...]   # channels of every prunable group, input to output (per head: attention)
    widths_after: tuple[int, ...]
    speedup_asked: float             # the target: the speed-up reached lies at most one channel above it

    @property
    def speedup(self) -> float:
        return self.macs_before / max(self.macs_after, 1)


@torch.no_grad()
def count_macs(model: nn.Module, inputs: tuple[Any, ...], *under: TorchDispatchMode) -> int:
    """Multiply-accumulates of one forward pass (see the module docstring); the ``under``
    modes see every operation the counter runs."""
    counter = FlopCounterMode(display=False)
    with kept_modes(model), contextlib.ExitStack() as modes:
        for mode in under:
            modes.enter_context(mode)
        modes.enter_context(counter)
        model.eval()
        model(*inputs)
    return int(counter.get_total_flops()) // 2


class _WeightProducts(TorchDispatchMode):
    """Entered before a :class:`FlopCounterMode`, which runs every operation through it: every
    product the counter counts with one weight of ``model`` among its arguments (a parameter of
    two or more dimensions: biases are added, not multiplied), as ``(weight path, positions)``
    where the product costs positions x the weight's elements MACs (a Linear's input rows,
    batch x output pixels of a convolution)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.weights = {p.untyped_storage().data_ptr(): (path, p.numel())
                        for path, p in model.named_parameters() if p.dim() >= 2 and p.numel()}
        self.calls: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            macs = formula(*args, **kwargs, out_val=out) // 2
            owners = {self.weights.get(t.untyped_storage().data_ptr())
                      for t in tree_leaves((args, kwargs)) if isinstance(t, Tensor)} - {None}
            if len(owners) == 1 and macs % next(iter(owners))[1] == 0:
                path, size = owners.pop()
                self.calls.append((path, macs // size))
        return out


@dataclasses.dataclass(frozen=True)
class WeightMacs:
    """MACs of a model and of its pruned copies from their weights' shapes, without a forward
    pass: every product of the forward pass on the example inputs with one weight among its
    arguments costs its positions (a Linear's input rows, batch x output pixels of a
    convolution) times the weight's elements; pruning narrows the weights and leaves the
    positions. It equals :func:`count_macs` where such products are all the forward pass
    counts (:func:`pruning_macs` checks)."""

    calls: tuple[tuple[str, int], ...]  # (weight path, positions) per product, in call order

    def __call__(self, model: nn.Module) -> int:
        return sum(positions * model.get_parameter(path).numel() for path, positions in self.calls)


def counted_by_weights(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[int, WeightMacs]:
    """:func:`count_macs` of ``model``, and the :class:`WeightMacs` of the same forward pass
    (short of the count by the MACs of products without exactly one weight)."""
    products = _WeightProducts(model)
    macs = count_macs(model, inputs, products)
    return macs, WeightMacs(tuple(products.calls))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def backend_for(model: nn.Module, inputs: tuple[Any, ...]) -> Any:
    """The GNN pruner for GNN-space models, torch-pruning's dependency graph otherwise."""
    from search_spaces.gnn import GNN

    if isinstance(model, GNN):
        from metanets.pruning._gnn_backend import GNNBackend

        return GNNBackend()
    from metanets.pruning._torch import TorchBackend

    return TorchBackend(inputs)


def channel_scores(backend: Any, model: nn.Module, importance: str, seed: int) -> list[Tensor]:
    """Mean-normalised importance of every channel of every group."""
    if importance not in IMPORTANCES:
        raise ValueError(f"could not resolve importance {importance!r} among choices "
                         f"{list(IMPORTANCES)}")
    raw = backend.scores(model)
    if importance == "random":
        generator = torch.Generator().manual_seed(seed)
        return [torch.rand(len(s), generator=generator) for s in raw]
    return [s / s.mean().clamp_min(1e-12) for s in raw]


def removal_order(scores: list[Tensor]) -> list[tuple[int, int]]:
    """``(group, channel)`` pairs, least important first, over all groups together; the most
    important channel of every group is never listed (each group keeps one)."""
    ranked = []
    for g, s in enumerate(scores):
        order = s.argsort(descending=True)
        ranked += [(float(s[i]), g, int(i)) for i in order[1:]]
    ranked.sort()
    return [(g, i) for _, g, i in ranked]


def _positions(batch: list[tuple[int, int]], alive: list[list[int]]) -> list[Tensor]:
    """Current positions of the original channels in ``batch``; updates ``alive``."""
    drops: list[list[int]] = [[] for _ in alive]
    for g, i in batch:
        drops[g].append(i)
    positions = []
    for g, dropped in enumerate(drops):
        gone = set(dropped)
        positions.append(torch.tensor([p for p, c in enumerate(alive[g]) if c in gone],
                                      dtype=torch.long))
        alive[g] = [c for c in alive[g] if c not in gone]
    return positions


def check_speedup(speedup: float) -> None:
    """``ValueError`` naming ``speedup`` unless it is a finite number above 1 (no pruning
    reaches an infinite speed-up; 1 or less asks for none)."""
    if not (math.isfinite(speedup) and speedup > 1.0):
        raise ValueError(f"speed-up {speedup} must be > 1 and finite (MACs before / after, "
                         f"e.g. 2.0)")


def largest_speedup(model: nn.Module, inputs: tuple[Any, ...]) -> float:
    """The largest speed-up :func:`prune_model` reaches on ``inputs``: MACs of ``model`` over
    those of a copy with every prunable channel group at one channel (which channel stays does
    not change the MACs)."""
    backend = backend_for(model, inputs)
    sizes = [len(s) for s in backend.scores(model)]
    return count_macs(model, inputs) / max(count_macs(_smallest(backend, model, sizes), inputs), 1)


def _smallest(backend: Any, model: nn.Module, sizes: list[int]) -> nn.Module:
    """A copy of ``model`` with every group (of ``sizes`` channels) at one channel."""
    smallest = copy.deepcopy(model)
    backend.apply(smallest, [torch.arange(1, n) for n in sizes])
    return smallest


#: ``measure(model) -> MACs`` of a model on the example inputs of one pruning run
Measure = Callable[[nn.Module], int]


def pruning_macs(
    backend: Any, model: nn.Module, sizes: list[int], inputs: tuple[Any, ...],
) -> tuple[int, int, Measure]:
    """MACs of ``model`` and of its copy with every group at one channel (both counted by
    :func:`count_macs`), and the counter of the pruned copies in between: :class:`WeightMacs`
    where it gives both numbers (every product has a weight, and pruning changed no product's
    positions) and no weight is shared (:func:`_weights_own_storage`), :func:`count_macs`
    otherwise."""
    before, weights = counted_by_weights(model, inputs)
    smallest_model = _smallest(backend, model, sizes)
    smallest = count_macs(smallest_model, inputs)
    if (_weights_own_storage(model) and weights(model) == before
            and weights(smallest_model) == smallest):
        return before, smallest, weights
    return before, smallest, lambda pruned: count_macs(pruned, inputs)


def _weights_own_storage(model: nn.Module) -> bool:
    """Whether every parameter of ``model`` is one module's and on a storage of its own: a
    weight tied to two layers (listed once by ``named_parameters``) or two weights on one
    storage would credit every product to one path, whose width can differ from the other's
    once pruned (both ends of the run agree, the steps between do not)."""
    storages = [p.untyped_storage().data_ptr()
                for _, p in model.named_parameters(remove_duplicate=False)]
    return len(storages) == len(set(storages))


@dataclasses.dataclass(frozen=True)
class _Pruned:
    """A model on the way: its current channels (original indices) per group and its MACs."""

    model: nn.Module
    alive: list[list[int]]
    macs: int


def _without(backend: Any, state: _Pruned, channel: tuple[int, int], measure: Measure) -> _Pruned:
    """A copy of ``state`` with one more ``(group, channel)`` removed."""
    model, alive = copy.deepcopy(state.model), [list(a) for a in state.alive]
    backend.apply(model, _positions([channel], alive))
    return _Pruned(model, alive, measure(model))


def _last_step(
    backend: Any, short: _Pruned, order: list[tuple[int, int]], removed: int,
    measure: Measure, most_macs: float,
) -> tuple[_Pruned, int]:
    """``short`` (the first ``removed`` channels of ``order`` gone, above ``most_macs``) taken
    to the target one channel at a time, least important first; the channel that reaches it is
    the least important one of whichever group lands closest below ``most_macs`` (the
    least important one overall where several do). One channel is the smallest step, but not
    an even one: on a CNN of widths [4, 8] the next channel of the 4-wide layer took a
    speed-up of 2.99x to 5.99x where one of the 8-wide layer gave 3.43x. Returns the model and
    the number of channels removed."""
    state = short
    for index in range(removed, len(order)):
        step = _without(backend, state, order[index], measure)
        if step.macs <= most_macs:
            groups = {order[index][0]}
            for channel in order[index + 1:]:  # the least important channel of each other group
                if channel[0] not in groups:
                    groups.add(channel[0])
                    other = _without(backend, state, channel, measure)
                    if step.macs < other.macs <= most_macs:
                        step = other
            return step, index + 1
        state = step
    raise AssertionError("unreachable: removing every listed channel reached the target")


def prune_model(
    model: nn.Module, inputs: tuple[Any, ...], speedup: float,
    importance: Importance = "magnitude", seed: int = 0, step: float = STEP,
) -> PruneResult:
    """Remove channels of a copy of ``model`` until its MACs drop by ``speedup``.

    Channels are removed in order of (mean-normalised) importance over all groups, ``step`` of
    all prunable channels at a time, measuring MACs after every step; the step that reaches the
    target is redone one channel at a time, its last channel taken from whichever group lands
    closest above the target (the speed-up reached lies at most one channel above it).

    Args:
        model: a trained model (not modified).
        inputs: example inputs of one forward pass (MACs are measured on them).
        speedup: target ratio MACs before / MACs after (> 1).
        importance: ``"magnitude"`` (L2 group norm) or ``"random"`` (seeded).
        seed: seed of the random importance.
        step: fraction of all prunable channels removed between two MACs measurements.

    Raises:
        ValueError: ``speedup`` is not a finite number above 1.
        UnreachableSpeedupError: even one channel per group is not fast enough (names the
            largest reachable speed-up), before any channel is removed.
        UnsupportedLayerError: a layer the pruner cannot handle (names it).
    """
    check_speedup(speedup)
    backend = backend_for(model, inputs)
    scores = channel_scores(backend, model, importance, seed)
    sizes = [len(s) for s in scores]
    before, smallest, measure = pruning_macs(backend, model, sizes, inputs)
    smallest = max(smallest, 1)
    if speedup > before / smallest:  # before a pass that would end there
        raise UnreachableSpeedupError(speedup, before / smallest)
    # at the largest speed-up itself, before / (before / smallest) can round below smallest
    most_macs = max(before / speedup, smallest)
    pruned = copy.deepcopy(model)
    order = removal_order(scores)
    alive = [list(range(n)) for n in sizes]
    chunk = max(1, int(step * sum(sizes)))
    macs, removed = before, 0
    while removed < len(order) and before / max(macs, 1) < speedup:
        batch = order[removed:removed + chunk]
        short = _Pruned(copy.deepcopy(pruned), [list(a) for a in alive], macs)
        backend.apply(pruned, _positions(batch, alive))
        removed += len(batch)
        macs = measure(pruned)
    # the loop ran at least once: a target above 1 that one channel per group reaches leaves
    # channels to remove (else UnreachableSpeedupError above)
    last, removed = _last_step(backend, short, order, removed - len(batch), measure, most_macs)
    pruned, alive, macs = last.model, last.alive, last.macs
    layers = backend.layer_order(model)  # widths are reported input to output
    return PruneResult(
        pruned, before, macs, count_params(model), count_params(pruned),
        removed / max(sum(sizes), 1), tuple(sizes[g] for g in layers), tuple(len(alive[g]) for g in layers),
        speedup,
    )
