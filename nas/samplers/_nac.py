"""NAC: training-free search of the GNN space by sparse coding on a randomly initialised supernet.

Xu et al., "Do Not Train It: A Linear Neural Architecture Search of Graph Neural Networks",
ICML 2023. A supernet holds, in every layer, one instance of every candidate convolution; a
layer's output is a weighted sum of its candidates' outputs with architecture weights
:math:`\\alpha`. The convolutions keep their random initial weights (never trained); only
:math:`\\alpha` is fitted, by sparse coding: least squares between the (frozen, random) classifier's
outputs on the training nodes and the one-hot labels, plus an L1 penalty that makes each layer
choose few candidates, minimised by proximal gradient steps (ISTA). Each candidate's output is
scaled to unit root-mean-square (the unit-norm atoms of a sparse-coding dictionary), so that
:math:`\\alpha` compares operations rather than their initial output scales. The architecture is
the candidate of largest :math:`|\\alpha|` in each layer.

As an optuna strategy (:class:`NACSampler`, ``--strategy nac``): before each trial it runs the
search on a supernet initialised with ``seed + trial number`` and hands the derived
architecture's parameters to the trial, so the study's normal objective trains, scores and
stores it like any other trial; the trial's :data:`NAC_ATTR` records that search (its seed,
candidates and fitted ``alpha``). Under a pre-screen, further candidates are restarts from
seeds of their own, and the record is that of the candidate the trial evaluates. Several trials are restarts from different random
initialisations (an architecture derived twice is not trained twice: the objective reuses the
earlier trial's result); the study keeps the one with the best validation accuracy.
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
import torch
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState
from torch import Tensor, nn

from nas.samplers._base import ChosenParams, load_study_task
from search_spaces.gnn import (
    WIDTHS, GNNArchitecture, GNNSpace, LayerSpec, make_conv, readout,
)

if TYPE_CHECKING:
    from nas.proxies import ProxyBatch
    from nas.tasks import Task
    from search_spaces.base import SearchSpace

#: system attribute of a trial: the fitted architecture weights and the candidate names
NAC_ATTR = "nac"
#: candidate convolutions of the supernet (the space's convs that take no extra hyper-parameter)
NAC_CONVS: tuple[str, ...] = (
    "gcn", "gat", "gatv2", "sage", "gin", "graph", "cheb", "arma", "sg", "tag", "transformer",
    "linear",
)
#: layers of the supernet (and of the derived architecture) unless the space allows fewer
NAC_DEPTH = 2


class Supernet(nn.Module):
    """Every candidate convolution in every layer, mixed by architecture weights ``alpha``.

    Args:
        in_channels: input node features.
        out_channels: classes.
        convs: candidate convolutions (names of :data:`search_spaces.gnn.CONVS`).
        depth: message-passing layers.
        width: channels of every candidate.
        level: ``"node"`` or ``"graph"`` (mean readout before the classifier).

    Shapes:
        - input: ``x (N, in_channels)``, ``edge_index (2, E)``, ``batch (N,)`` for graph tasks
        - output: ``(N or B, out_channels)``
    """

    def __init__(
        self, in_channels: int, out_channels: int, convs: Sequence[str], depth: int = 2,
        width: int = 64, level: str = "node",
    ) -> None:
        super().__init__()
        self.convs_names, self.level = tuple(convs), level
        self.layers = nn.ModuleList(
            nn.ModuleList(
                make_conv(LayerSpec(conv, width, dropout=0.0), in_channels if i == 0 else width)
                for conv in self.convs_names
            )
            for i in range(depth)
        )
        self.classifier = nn.Linear(width, out_channels)
        self.alpha = nn.Parameter(torch.full((depth, len(self.convs_names)), 1.0 / len(self.convs_names)))

    def atoms(self, layer: int, x: Tensor, edge_index: Tensor) -> Tensor:
        """Unit-RMS outputs of layer ``layer``'s candidates: ``(num_convs, N, width)``."""
        outs = torch.stack([conv(x, edge_index) for conv in self.layers[layer]])
        return outs / outs.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-12)

    def forward(
        self, x: Tensor, edge_index: Tensor, batch: Tensor | None = None,
        first_atoms: Tensor | None = None,
    ) -> Tensor:
        for i in range(len(self.layers)):
            atoms = first_atoms if i == 0 and first_atoms is not None else self.atoms(i, x, edge_index)
            x = torch.einsum("o,onf->nf", self.alpha[i], atoms).relu()  # (N, width)
        if self.level == "graph":
            x = readout(x, batch, "mean")  # (B, width)
        return self.classifier(x)

    def derive(self) -> tuple[str, ...]:
        """The candidate of largest ``|alpha|`` in every layer."""
        return tuple(self.convs_names[int(i)] for i in self.alpha.detach().abs().argmax(dim=1))


def nac_search(
    batches: Sequence[ProxyBatch], in_channels: int, out_channels: int, level: str = "node", *,
    convs: Sequence[str] = NAC_CONVS, depth: int = NAC_DEPTH, width: int = 64, steps: int = 50,
    step_size: float = 0.1, l1: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
) -> tuple[tuple[str, ...], Tensor]:
    """Fit the architecture weights of a randomly initialised, frozen supernet by sparse coding.

    Args:
        batches: training data (see :func:`nas.proxies.proxy_batches`).
        in_channels, out_channels, level: the task's dimensions and level.
        convs: candidate convolutions per layer.
        depth, width: supernet depth and channels.
        steps: proximal gradient (ISTA) steps.
        step_size: gradient step on ``alpha``.
        l1: weight of the L1 penalty (the soft threshold is ``step_size * l1``).
        seed: initialisation of the supernet's (frozen) weights (drawn on the CPU, so a seed
            gives the same initial supernet on every device).
        device: where the supernet runs (the batches are moved there).

    Returns:
        The chosen convolution of every layer and the fitted ``alpha`` ``(depth, len(convs))``,
        on the CPU.
    """
    torch.manual_seed(seed)
    net = Supernet(in_channels, out_channels, convs, depth, width, level).to(device)
    batches = [b.to(device) for b in batches]
    for name, parameter in net.named_parameters():
        parameter.requires_grad_(name == "alpha")
    net.eval()
    with torch.no_grad():  # the first layer's atoms do not depend on alpha: computed once
        first = [net.atoms(0, b.inputs[0], b.inputs[1]) for b in batches]
    for _ in range(steps):
        loss = sum(_least_squares(net, b, f, out_channels) for b, f in zip(batches, first))
        (grad,) = torch.autograd.grad(loss, [net.alpha])
        with torch.no_grad():  # ISTA: gradient step, then soft threshold (the L1 proximal map)
            alpha = net.alpha - step_size * grad
            net.alpha.copy_(alpha.sign() * (alpha.abs() - step_size * l1).clamp_min(0.0))
    return net.derive(), net.alpha.detach().cpu().clone()


def _least_squares(net: Supernet, batch: ProxyBatch, first: Tensor, classes: int) -> Tensor:
    out = batch.scored(net(*batch.inputs, first_atoms=first))  # (M, C)
    target = nn.functional.one_hot(batch.targets, classes).to(out.dtype)
    return (out - target).pow(2).sum(dim=1).mean()


def architecture_params(arch: GNNArchitecture) -> dict[str, Any]:
    """The trial parameters under which ``GNNSpace.suggest`` returns ``arch``."""
    return GNNSpace.trial_params(arch)


class NACSampler(optuna.samplers.BaseSampler):
    """NAC as a strategy of the GNN space: every trial evaluates the architecture a fresh
    sparse-coding search derives (see the module docstring).

    The task is the one given (a search hands its own, a :class:`~nas.tasks.DataTask` too), else
    the study's dataset loaded by name from ``data_root``. Layers of the derived architecture
    take the space's defaults for what NAC does not search (width ``width``, ReLU, no norm,
    dropout 0.5, one head, add aggregation, no skip, mean readout, lr 5e-3, weight decay 5e-4).

    Args:
        seed: base seed; trial ``n`` initialises its supernet with ``seed + n``.
        depth: supernet layers (default :data:`NAC_DEPTH`, or the space's ``max_depth`` if
            smaller).
        width, steps, step_size, l1: see :func:`nac_search`.
        task: the task to search on (default: the study's dataset, by name).
        space: the GNN space searched: its convs are the candidates and its ``max_depth``
            bounds ``depth`` (default: every convolution of :data:`NAC_CONVS`).
        convs: candidate convolutions (default: the space's); must lie in the space.
        data_root: dataset folder of the study's dataset, without ``task`` (default
            ``$METANAS_DATA``).
        device: where the search runs (``"auto"``: CUDA when available).
    """

    def __init__(
        self, seed: int | None = None, depth: int | None = None, width: int = 64, steps: int = 50,
        step_size: float = 0.1, l1: float = 1e-3, task: Task | None = None, *,
        space: SearchSpace | None = None, convs: Sequence[str] | None = None,
        data_root: str | None = None, device: str | torch.device = "auto",
    ) -> None:
        from nas.train import resolve_device

        if width not in WIDTHS:
            raise ValueError(f"NAC width {width} is not among the space's widths {list(WIDTHS)}")
        self.seed = 0 if seed is None else seed
        self.convs, depth = candidates_within(space, convs, depth)
        self.options = dict(depth=depth, width=width, steps=steps, step_size=step_size, l1=l1)
        self.task, self.data_root, self.device = task, data_root, resolve_device(device)
        self._fallback = optuna.samplers.RandomSampler(seed=seed)
        self._chosen = ChosenParams()
        self._candidate_records: dict[int, dict[int, dict[str, Any]]] = {}  # pre-screen's, by trial

    def reseed_rng(self) -> None:
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if "fixed_params" in trial.system_attrs:
            return
        space = study.user_attrs.get("space", "gnn")
        if space != "gnn":
            raise ValueError(f"strategy 'nac' searches space 'gnn', not {space!r}")
        seed = self.seed + trial.number
        arch, alpha = self.derive(self._task(study), seed=seed)
        self._chosen.set(trial, architecture_params(arch))
        self._store_record(study, trial, self._record(seed, alpha))

    def candidate(self, study: optuna.Study, trial: FrozenTrial, j: int) -> dict[str, Any]:
        """The parameters of the trial's further candidate ``j`` (>= 1), for a pre-screen: the
        architecture a restart from a random initialisation of its own derives."""
        seed = zlib.crc32(f"nac:{self.seed}:{trial.number}:{j}".encode())
        arch, alpha = self.derive(self._task(study), seed=seed)
        self._candidate_records.setdefault(trial.number, {})[j] = self._record(seed, alpha)
        return architecture_params(arch)

    def screened(self, study: optuna.Study, trial: FrozenTrial, j: int) -> None:
        """A pre-screen evaluates the trial's candidate ``j``: the trial's record becomes the
        search that derived it (candidate 0's is stored already)."""
        if j > 0:
            self._store_record(study, trial, self._candidate_records[trial.number][j])

    def _record(self, seed: int, alpha: Tensor) -> dict[str, Any]:
        return {"seed": seed, "convs": list(self.convs),
                "alpha": [[round(float(a), 6) for a in row] for row in alpha]}

    @staticmethod
    def _store_record(study: optuna.Study, trial: FrozenTrial, record: dict[str, Any]) -> None:
        study._storage.set_trial_system_attr(trial._trial_id, NAC_ATTR, json.dumps(record))

    def derive(self, task: Task, seed: int = 0) -> tuple[GNNArchitecture, Tensor]:
        """Run NAC on ``task`` and return the derived architecture and the fitted ``alpha``."""
        from nas.proxies import proxy_batches

        batches = proxy_batches(task, seed=seed)
        convs, alpha = nac_search(
            batches, task.num_features, task.num_classes, task.level, convs=self.convs, seed=seed,
            device=self.device, **self.options,
        )
        width = self.options["width"]
        layers = tuple(LayerSpec(conv, width) for conv in convs)
        return GNNArchitecture(layers=layers), alpha

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._chosen.sample(self._fallback, study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None,
    ) -> None:
        self._chosen.forget(trial)
        self._candidate_records.pop(trial.number, None)

    def _task(self, study: optuna.Study) -> Task:
        if self.task is None:
            self.task = load_study_task(study, "nac", self.data_root)
        return self.task

    def __repr__(self) -> str:
        return f"NACSampler(seed={self.seed}, convs={list(self.convs)}, {self.options}, device={self.device})"


def candidates_within(
    space: SearchSpace | None, convs: Sequence[str] | None = None, depth: int | None = None,
) -> tuple[tuple[str, ...], int]:
    """NAC's candidate convolutions and depth inside ``space``: ``convs`` (default the space's)
    and ``depth`` (default :data:`NAC_DEPTH`, lowered to the space's ``max_depth``).

    ``ValueError`` naming the value and the valid choices if a conv is outside the space or
    not a NAC candidate, or if ``depth`` exceeds the space's ``max_depth``. A space other than
    the GNN space restricts nothing here (the sampler refuses it before a trial).
    """
    gnn = space if isinstance(space, GNNSpace) else None
    allowed = gnn.convs if gnn is not None else NAC_CONVS
    max_depth = gnn.max_depth if gnn is not None else None
    chosen = tuple(convs) if convs is not None else tuple(allowed)
    outside = [c for c in chosen if c not in allowed or c not in NAC_CONVS]
    if outside or not chosen:
        valid = [c for c in allowed if c in NAC_CONVS]
        raise ValueError(f"NAC convs {outside or list(chosen)} are not among its candidates {valid}")
    if depth is None:
        depth = NAC_DEPTH if max_depth is None else min(NAC_DEPTH, max_depth)
    if max_depth is not None and depth > max_depth:
        raise ValueError(f"NAC depth {depth} exceeds the space's max_depth {max_depth}")
    return chosen, depth
