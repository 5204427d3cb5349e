"""The gradient-based strategy: GDAS over a supernet, with a guard against shortcut collapse.

Dong and Yang, "Searching for A Robust Neural Architecture in Four GPU Hours" (GDAS, CVPR 2019):
every categorical decision of the supernet (:meth:`Supernet.decisions`) gets a vector of
architecture logits; each step draws one hard Gumbel-softmax sample per decision (a single path,
as cheap as an SPOS step) whose straight-through gate multiplies the chosen candidate's output,
so the loss's gradient reaches the logits. Weights and logits alternate (first-order DARTS):
weights descend the training loss, logits the validation loss. The temperature anneals from
``tau_max`` to ``tau_min``; the first ``warmup_epochs`` train the weights only (uniform paths).

Collapse guard (DARTS is known to collapse onto skip / parameter-free operations, Zela et al.,
ICLR 2020; Chen and Hsieh, "Stabilizing DARTS", ICML 2020), two parts, both recorded:

1. a regulariser: ``shortcut_penalty`` times the softmax mass the logits give to each decision's
   shortcut candidates (:meth:`Supernet.shortcut_choices`) is added to the logits' loss;
2. a derivation cap: the derived architecture takes at most ``max_shortcuts`` shortcut choices;
   beyond that, the decisions whose shortcut wins by the smallest margin take their best
   non-shortcut candidate instead (in the spirit of DARTS+'s limit on skip connections).
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nas.train import resolve_device

if TYPE_CHECKING:
    from nas.supernet._base import Supernet
    from nas.tasks import Task
    from search_spaces.base import Architecture


@dataclasses.dataclass
class GradientConfig:
    """Settings of a GDAS search."""

    epochs: int = 200               # node tasks: steps; graph tasks: passes over training graphs
    warmup_epochs: int = 20         # weights only, uniform paths
    lr: float = 5e-3                # Adam learning rate of the weights
    weight_decay: float = 5e-4      # Adam weight decay of the weights
    arch_lr: float = 3e-2           # Adam learning rate of the architecture logits
    arch_weight_decay: float = 1e-3  # Adam weight decay of the architecture logits
    tau_max: float = 10.0           # Gumbel-softmax temperature at the start ...
    tau_min: float = 0.1            # ... and at the end (geometric annealing)
    shortcut_penalty: float = 0.5   # weight of the shortcut-mass regulariser (0: off)
    max_shortcuts: int | None = 1   # most shortcut choices in the derived architecture (None: no cap)
    batch_size: int = 64            # graphs per mini-batch (graph tasks)
    seed: int = 0
    device: str = "auto"

    def guard(self) -> dict[str, Any]:
        """What guarded against collapse (recorded with the result)."""
        return {
            "shortcut_penalty": self.shortcut_penalty, "max_shortcuts": self.max_shortcuts,
            "warmup_epochs": self.warmup_epochs,
        }


@dataclasses.dataclass
class GradientResult:
    """A finished search: logits, the derived architecture and how the guard acted."""

    logits: dict[str, list[float]]      # decision -> logits over its choices
    choices: dict[str, list[Any]]       # decision -> its choices (same order)
    derived: Architecture               # argmax architecture after the guard's cap
    replaced: list[str]                 # decisions the cap moved off a shortcut
    shortcut_mass: float                # mean softmax mass on shortcut choices at the end
    seconds: float
    guard: dict[str, Any]

    def probabilities(self) -> dict[str, list[float]]:
        return {k: torch.tensor(v).softmax(0).tolist() for k, v in self.logits.items()}

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "logits": self.logits, "choices": self.choices, "derived": self.derived.to_dict(),
            "replaced": self.replaced, "shortcut_mass": self.shortcut_mass,
            "seconds": self.seconds, "guard": self.guard,
        }


class ArchitectureLogits(nn.Module):
    """One logit vector per decision of a supernet (initialised at zero: uniform)."""

    def __init__(self, decisions: dict[str, tuple[Any, ...]]) -> None:
        super().__init__()
        self.names = list(decisions)
        self.choices = {name: tuple(c) for name, c in decisions.items()}
        self.logits = nn.ParameterDict(
            {_key(n): nn.Parameter(torch.zeros(len(c))) for n, c in decisions.items()}
        )

    def __getitem__(self, name: str) -> Tensor:
        return self.logits[_key(name)]

    def sample(self, tau: float) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """One hard Gumbel-softmax draw per decision: the choices and their straight-through gates."""
        choices, gates = {}, {}
        for name in self.names:
            one_hot = nn.functional.gumbel_softmax(self[name], tau=tau, hard=True)  # (K,)
            index = int(one_hot.argmax())
            choices[name], gates[name] = self.choices[name][index], one_hot[index]
        return choices, gates

    def uniform(self, rng: random.Random) -> dict[str, Any]:
        return {name: rng.choice(self.choices[name]) for name in self.names}

    def shortcut_mass(self, shortcuts: dict[str, frozenset[Any]]) -> Tensor:
        """Sum over decisions of the probability of their shortcut choices."""
        total = torch.zeros(())
        for name, members in shortcuts.items():
            if name not in self.choices or not members:
                continue
            probs = self[name].softmax(0)
            idx = [i for i, c in enumerate(self.choices[name]) if c in members]
            total = total + probs[idx].sum()
        return total

    def to_lists(self) -> dict[str, list[float]]:
        return {name: self[name].detach().cpu().tolist() for name in self.names}


def derive(
    logits: dict[str, list[float]], choices: dict[str, list[Any]],
    shortcuts: dict[str, frozenset[Any]], max_shortcuts: int | None,
) -> tuple[dict[str, Any], list[str]]:
    """Argmax choice per decision, then the guard's cap on shortcut choices.

    Returns the choices and the decisions the cap moved to their best non-shortcut candidate.
    """
    picked, margins = {}, {}
    for name, values in logits.items():
        order = sorted(range(len(values)), key=lambda i: -values[i])
        picked[name] = choices[name][order[0]]
        members = shortcuts.get(name, frozenset())
        if picked[name] in members:
            best_other = next((i for i in order if choices[name][i] not in members), None)
            if best_other is not None:
                margins[name] = (values[order[0]] - values[best_other], choices[name][best_other])
    replaced: list[str] = []
    if max_shortcuts is not None and len(margins) > max_shortcuts:
        by_margin = sorted(margins, key=lambda n: margins[n][0])
        for name in by_margin[: len(margins) - max_shortcuts]:
            picked[name] = margins[name][1]
            replaced.append(name)
    return picked, replaced


def gradient_search(supernet: Supernet, task: Task, config: GradientConfig) -> GradientResult:
    """Run GDAS on ``supernet`` (trained in place) for ``task`` and derive an architecture."""
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    supernet.to(device)
    alphas = ArchitectureLogits(supernet.decisions()).to(device)
    shortcuts = supernet.shortcut_choices()
    w_opt = torch.optim.Adam(supernet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    a_opt = torch.optim.Adam(
        alphas.parameters(), lr=config.arch_lr, betas=(0.5, 0.999), weight_decay=config.arch_weight_decay,
    )
    batches = _SplitBatches(task, device, config.batch_size)
    rng = random.Random(config.seed)
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        warm = epoch <= config.warmup_epochs
        tau = _temperature(config, epoch)
        for train, val in batches.epoch(epoch, config.seed):
            _weight_step(supernet, alphas, w_opt, train, tau, warm, rng)
            if not warm:
                _arch_step(supernet, alphas, a_opt, val, tau, shortcuts, config.shortcut_penalty)
    logits = alphas.to_lists()
    choices = {name: list(alphas.choices[name]) for name in alphas.names}
    picked, replaced = derive(logits, choices, shortcuts, config.max_shortcuts)
    with torch.no_grad():
        mass = float(alphas.shortcut_mass(shortcuts).cpu()) / max(len(shortcuts), 1)
    return GradientResult(
        logits, choices, supernet.from_decisions(picked), replaced, mass,
        time.perf_counter() - start, config.guard(),
    )


def _temperature(config: GradientConfig, epoch: int) -> float:
    span = max(config.epochs - config.warmup_epochs, 1)
    progress = min(max(epoch - config.warmup_epochs, 0) / span, 1.0)
    return config.tau_max * (config.tau_min / config.tau_max) ** progress


def _weight_step(
    supernet: Supernet, alphas: ArchitectureLogits, optimizer: torch.optim.Optimizer,
    batch: tuple, tau: float, warm: bool, rng: random.Random,
) -> None:
    supernet.train()
    optimizer.zero_grad(set_to_none=True)
    if warm:
        choices, gates = alphas.uniform(rng), None
    else:
        choices, gates = alphas.sample(tau)
        gates = {k: v.detach() for k, v in gates.items()}
    arch = _arch_or_none(supernet, choices)
    if arch is None:
        return
    loss = _loss(supernet, arch, batch, gates)
    loss.backward()
    optimizer.step()


def _arch_step(
    supernet: Supernet, alphas: ArchitectureLogits, optimizer: torch.optim.Optimizer,
    batch: tuple, tau: float, shortcuts: dict[str, frozenset[Any]], penalty: float,
) -> None:
    supernet.train()
    optimizer.zero_grad(set_to_none=True)
    choices, gates = alphas.sample(tau)
    arch = _arch_or_none(supernet, choices)
    if arch is None:
        return
    loss = _loss(supernet, arch, batch, gates)
    if penalty:
        loss = loss + penalty * alphas.shortcut_mass(shortcuts)
    loss.backward()
    supernet.zero_grad(set_to_none=True)  # the weights move in the weight step only
    optimizer.step()


def _arch_or_none(supernet: Supernet, choices: dict[str, Any]) -> Architecture | None:
    """The path of ``choices``; ``None`` for a combination the space excludes (NAS-Bench-Graph's
    all-skip cell), whose step is skipped."""
    try:
        return supernet.from_decisions(choices)
    except ValueError:
        return None


def _loss(supernet: Supernet, arch: Architecture, batch: tuple, gates: dict[str, Tensor] | None) -> Tensor:
    x, edge_index, graph_batch, y, select = batch
    out = supernet(x, edge_index, graph_batch, arch=arch, gates=gates)
    out = out[select] if select is not None else out
    return nn.functional.cross_entropy(out, y)


class _SplitBatches:
    """Pairs of (training, validation) batches: full batch for node tasks; for graph tasks,
    shuffled training mini-batches each paired with a cycled validation mini-batch."""

    def __init__(self, task: Task, device: torch.device, batch_size: int) -> None:
        self.task, self.device, self.batch_size = task, device, batch_size
        if task.level == "node":
            self.data = task.data.to(device)

    def epoch(self, epoch: int, seed: int) -> list[tuple[tuple, tuple]]:
        if self.task.level == "node":
            return [(self._node("train"), self._node("val"))]
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        train = self._graph_batches("train", generator)
        val = self._graph_batches("val", generator)
        return [(t, val[i % len(val)]) for i, t in enumerate(train)] if val else []

    def _node(self, split: str) -> tuple:
        d = self.data
        mask = d[f"{split}_mask"]
        return d.x, d.edge_index, None, d.y[mask], mask

    def _graph_batches(self, split: str, generator: torch.Generator) -> list[tuple]:
        from torch_geometric.data import Batch

        index = self.task.splits[split]
        index = index[torch.randperm(index.numel(), generator=generator)]
        out = []
        for chunk in index.split(self.batch_size):
            b = Batch.from_data_list([self.task.dataset[int(i)] for i in chunk]).to(self.device)
            out.append((b.x, b.edge_index, b.batch, b.y.view(-1), None))
        return out


def _key(name: str) -> str:
    return name.replace(".", "_")


def sample_from_logits(result_logits: dict[str, list[float]], choices: dict[str, list[Any]], rng: random.Random) -> dict[str, Any]:
    """One choice per decision drawn from the softmax of its logits."""
    out = {}
    for name, values in result_logits.items():
        weights = [math.exp(v - max(values)) for v in values]
        out[name] = rng.choices(choices[name], weights=weights)[0]
    return out
