"""A one-shot supernet over NAS-Bench-Graph's cell space (:mod:`search_spaces.nasbench_graph`).

It covers the whole space (all 26,206 cells) for one benchmark setting (``dataset``: hidden size,
dropout, pre/post layers). Paths run on the *canonical* form of a cell (as the stand-alone model
does), so isomorphic cells share every weight. Per cell node position: one module per
(operation, input size) -- the input is the raw features, or a chain of skips from them, or a
hidden state -- built with :func:`search_spaces.nasbench_graph.make_op`; one BatchNorm per
position (before ops that read hidden states); one output linear layer per layout of leaf sizes;
the pre/post linear layers are shared by all cells.

For the gradient strategy the decisions are the benchmark's trial parameters ``link_pattern``
and ``op0``..``op3``. Because paths run canonical cells, whose node order is not the trial's, the
straight-through gates of all five decisions multiply the cell's output together (every decision
receives the same signal: the gradient of the loss along the cell output) -- a coarser estimator
than the per-layer gates of the GNN supernet, stated here as what is used.
"""
from __future__ import annotations

import itertools
import random
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from nas.supernet._base import Gates, Supernet
from search_spaces.nasbench_graph import (
    LINK_PATTERNS, NUM_NODES, OPS, LinearOp, NasBenchGraphArchitecture, NasBenchGraphSpace,
    make_op, setting_for_shape,
)

if TYPE_CHECKING:
    from search_spaces.base import Architecture, TaskLevel

DECISIONS = ("link_pattern", *(f"op{i}" for i in range(NUM_NODES)))


class NasBenchGraphSupernet(Supernet):
    r"""Single-path one-shot supernet over NAS-Bench-Graph's cells (see the module docstring).

    Args:
        in_channels: input node features.
        out_channels: classes.
        level: ``"node"`` (the only level of the space).
        dataset: benchmark dataset whose setting (hidden size, dropout, pre/post layers) is used;
            default: recognised from the sizes, else cora's.

    Shapes:
        - input: ``x (N, in_channels)``, ``edge_index (2, E)``
        - output: ``(N, out_channels)``
    """

    space_name = "nasbench-graph"

    def __init__(
        self, in_channels: int, out_channels: int, level: TaskLevel = "node",
        dataset: str | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, level)
        self._space = NasBenchGraphSpace(dataset or setting_for_shape(in_channels, out_channels))
        self._space.check_level(level)
        self.setting = s = self._space.setting(in_channels, out_channels)
        self.dataset = self._space.dataset
        self.pre = nn.ModuleList(
            LinearOp(in_channels if i == 0 else s.dim, s.dim) for i in range(s.num_pre)
        )
        self.cell_in = s.dim if s.num_pre else in_channels
        self.raw_input = not s.num_pre
        cell_out = s.dim if s.num_pro else out_channels
        self.ops = nn.ModuleList(self._position_ops(i) for i in range(NUM_NODES))
        self.norms = nn.ModuleList(nn.BatchNorm1d(s.dim) for _ in range(NUM_NODES))
        self.outs = nn.ModuleDict(
            {_out_key(sizes): nn.Linear(sum(sizes), cell_out) for sizes in self._leaf_layouts()}
        )
        self.post = nn.ModuleList(
            LinearOp(s.dim, out_channels if i == s.num_pro - 1 else s.dim) for i in range(s.num_pro)
        )

    @property
    def space(self) -> NasBenchGraphSpace:
        return self._space

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "level": self.level, "dataset": self.dataset,
        }

    def _position_ops(self, position: int) -> nn.ModuleDict:  # noqa: ARG002 - same at every node
        sizes = {self.cell_in, self.setting.dim}
        return nn.ModuleDict({
            f"{op}_{size}": make_op(op, size, self.setting.dim)
            for op in OPS if op != "skip" for size in sorted(sizes)
        })

    def _leaf_layouts(self) -> set[tuple[int, ...]]:
        layouts = set()
        for links in LINK_PATTERNS:
            for kinds in itertools.product((True, False), repeat=NUM_NODES):  # True: skip
                if all(kinds):
                    continue
                layouts.add(self._cell_plan(links, kinds)[2])
        return layouts

    def _cell_plan(self, links: tuple[int, ...], skips: tuple[bool, ...]) -> tuple[list[int], list[bool], tuple[int, ...]]:
        """Feature sizes and rawness of the input and each node, and the leaves' sizes."""
        sizes, raw = [self.cell_in], [self.raw_input]
        for link, skip in zip(links, skips):
            sizes.append(sizes[link] if skip else self.setting.dim)
            raw.append(raw[link] and skip)
        leaves = tuple(sizes[i] for i in range(1, NUM_NODES + 1) if i not in links)
        return sizes, raw, leaves

    # -- the covered sub-space: all of it --------------------------------------------------------

    def project(self, arch: Architecture, strict: bool = False) -> NasBenchGraphArchitecture:  # noqa: ARG002
        if not isinstance(arch, NasBenchGraphArchitecture):
            raise TypeError(
                f"the nasbench-graph supernet scores NasBenchGraphArchitecture, not {type(arch).__name__}"
            )
        return arch

    def sample(self, rng: random.Random) -> NasBenchGraphArchitecture:
        return self._space.sample(rng)

    # -- forward and extraction ----------------------------------------------------------------

    def forward(
        self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None, *,
        arch: Architecture, gates: Gates | None = None,
    ) -> Tensor:
        drop = self.setting.dropout
        x = nn.functional.dropout(x, drop, self.training)
        x = _stack(self.pre, x, edge_index)
        cell = arch.canonical()  # type: ignore[attr-defined]
        sizes, raw, leaves = self._cell_plan(cell.links, tuple(op == "skip" for op in cell.ops))
        states = [x]
        for i, (op, link) in enumerate(zip(cell.ops, cell.links)):
            h = states[link]
            if op == "skip":
                states.append(h)
                continue
            if not raw[link]:
                h = nn.functional.dropout(self.norms[i](h).relu(), drop, self.training)
            states.append(self.ops[i][f"{op}_{sizes[link]}"](h, edge_index))
        leaf_states = [states[i] for i in range(1, NUM_NODES + 1) if i not in cell.links]
        out = self.outs[_out_key(leaves)](torch_cat(leaf_states).relu())
        for name in DECISIONS:
            if gates and name in gates:
                out = out * gates[name]
        return _stack(self.post, out, edge_index)  # (N, C)

    def path_modules(self, arch: Architecture) -> list[nn.Module]:
        cell = arch.canonical()  # type: ignore[attr-defined]
        sizes, raw, leaves = self._cell_plan(cell.links, tuple(op == "skip" for op in cell.ops))
        modules: list[nn.Module] = [*self.pre, *self.post, self.outs[_out_key(leaves)]]
        for i, (op, link) in enumerate(zip(cell.ops, cell.links)):
            if op != "skip":
                modules.append(self.ops[i][f"{op}_{sizes[link]}"])
                if not raw[link]:
                    modules.append(self.norms[i])
        return modules

    def extract(self, arch: Architecture) -> nn.Module:
        model = self._space.build(arch, self.in_channels, self.out_channels, self.level)
        cell = arch.canonical()  # type: ignore[attr-defined]
        sizes, raw, leaves = self._cell_plan(cell.links, tuple(op == "skip" for op in cell.ops))
        for source, target in zip(self.pre, model.pre):
            target.load_state_dict(source.state_dict())
        for source, target in zip(self.post, model.post):
            target.load_state_dict(source.state_dict())
        for i, (op, link) in enumerate(zip(cell.ops, cell.links)):
            if op != "skip":
                model.cell.ops[i].load_state_dict(self.ops[i][f"{op}_{sizes[link]}"].state_dict())
            if not raw[link]:
                model.cell.norms[i].load_state_dict(self.norms[i].state_dict())
        model.cell.lin.load_state_dict(self.outs[_out_key(leaves)].state_dict())
        return model.to(next(self.parameters()).device)

    # -- decisions ------------------------------------------------------------------------------

    def decisions(self) -> dict[str, tuple[Any, ...]]:
        out: dict[str, tuple[Any, ...]] = {"link_pattern": tuple(range(len(LINK_PATTERNS)))}
        out.update({f"op{i}": OPS for i in range(NUM_NODES)})
        return out

    def from_decisions(self, choices: dict[str, Any]) -> NasBenchGraphArchitecture:
        ops = tuple(choices[f"op{i}"] for i in range(NUM_NODES))
        return NasBenchGraphArchitecture.from_pattern(int(choices["link_pattern"]), ops)

    def to_decisions(self, arch: Architecture) -> dict[str, Any]:
        return nasbench_trial_params(arch)  # type: ignore[arg-type]

    def shortcut_choices(self) -> dict[str, frozenset[Any]]:
        """The parameter-free ``skip`` op at every node (DARTS' classic collapse target)."""
        return {f"op{i}": frozenset({"skip"}) for i in range(NUM_NODES)}

    @staticmethod
    def trial_params(arch: Architecture) -> dict[str, Any]:
        return nasbench_trial_params(arch)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        n_params = sum(p.numel() for p in self.parameters())
        return (
            f"NasBenchGraphSupernet(in={self.in_channels}, out={self.out_channels}, "
            f"dataset={self.dataset!r}, dim={self.setting.dim}, params={n_params:,})"
        )


def nasbench_trial_params(arch: NasBenchGraphArchitecture) -> dict[str, Any]:
    """The Optuna parameters :meth:`NasBenchGraphSpace.suggest` reads back as ``arch``."""
    return NasBenchGraphSpace.trial_params(arch)


def torch_cat(states: list[Tensor]) -> Tensor:
    import torch

    return torch.cat(states, dim=-1)


def _stack(layers: nn.ModuleList, x: Tensor, edge_index: Tensor) -> Tensor:
    for i, layer in enumerate(layers):  # ELU after the second-to-last layer, as the benchmark
        x = layer(x, edge_index)
        if i == len(layers) - 2:
            x = nn.functional.elu(x)
    return x


def _out_key(sizes: tuple[int, ...]) -> str:
    return "leaves_" + "_".join(str(s) for s in sizes)
