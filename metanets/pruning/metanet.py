"""The pruning metanetwork: a graph metanetwork that rewrites a trained network's weights so
that it keeps its task loss while whole channel groups become small; magnitude pruning of the
rewritten network then removes little that matters.

Following "Meta Pruning via Graph Metanetworks" (Liu et al.): the network's parameter graph
(:mod:`metanets.graphs`) goes through a :class:`~metanets.gmn.GMN` whose equivariant per-edge
head outputs a correction of every weight (``w' = w + scale * head``, the head's last layer
initialised at zero so an untrained metanetwork is the identity), optionally multiplied by a
per-channel gate from a per-node head (see :class:`PruningMetanet`). Only weight matrices are
rewritten (dense, convolution and graph-convolution weights: :data:`REWRITTEN_EDGES`); biases and
normalisation parameters stay. The metanetwork is trained on a zoo of networks to minimise

    cross-entropy of the rewritten network on training data (:class:`ImageLoss`: a batch of
    training images; :class:`NodeLoss`: a node task's training nodes)
    + lambda * penalty(rewritten) / penalty(original)
    + pruned_weight * cross-entropy of the rewritten network with its lowest channels dropped
    + distill * (KL(original || rewritten) + pruned_weight * KL(original || dropped)),

where the penalty (:data:`PENALTIES`) is the group lasso (over every channel neuron of the
parameter graph, hidden, norm and residual-sum nodes, the L2 norm of its incoming and outgoing
weights: the weights that go when the channel is pruned), the group Hoyer measure, or
:func:`lowest_channels` (the norm of the lowest-norm fraction of every group of coupled
channels, those pruning removes first); :func:`drop_lowest` drops that fraction. For a network
of the GNN space the coupled channels and their groups are the GNN pruner's units and groups
(:func:`coupled_channels`: one channel of every head of an attention layer, whose value, query
and key neurons are channel neurons too), so the dropped network is one the pruner leaves. With
``preserve_norm`` every rewritten weight tensor is rescaled to its original Frobenius norm
(:func:`preserve_norms`), in training and when rewriting. The KL terms (``distill``) compare the
output distributions of the original and the rewritten network on unlabelled inputs (a batch
of training images; every node of a node task's graph): on a task with few labels (Cora: 140
training nodes) the cross-entropy alone lets a rewrite fit the labels while it forgets what the
network does on the other nodes. Because the rewritten weights are
written into the network through the graph's ``param_slots``, the task loss is differentiable
with respect to the metanetwork.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from metanets.accuracy import check_free_memory, pass_bytes
from metanets.gmn import (
    CONFIG_FILE, GMN, PRUNING, GMNConfig, _slot, load_gmn_files, prepare_graph, purpose, save_gmn,
)
from metanets.graphs import EdgeFeature, EdgeType, to_parameter_graph
from metanets.pruning._graph_units import CHANNEL_NODES, identity_components, pruner_units
from metanets.saved import load_checked
from nas.train import kept_modes, own_random_state

#: edge types whose weights the metanetwork rewrites (dense, convolution, and the weight matrices
#: of graph convolutions: GCN/SGC ``MESSAGE``, SAGE/GraphConv ``ROOT``, Cheb/TAG ``HOP``)
REWRITTEN_EDGES: tuple[int, ...] = (int(EdgeType.DENSE), int(EdgeType.CONV),
                                    int(EdgeType.MESSAGE), int(EdgeType.ROOT), int(EdgeType.HOP))


@dataclasses.dataclass(frozen=True)
class MetanetTrainConfig:
    """How to train a pruning metanetwork on a zoo."""

    lam: float = 1.0          # weight of the relative sparsity penalty
    penalty: str = "lasso"    # a name of PENALTIES: "lasso", "hoyer" or "lowest"
    fraction: float = 0.3     # "lowest" and pruned_weight: fraction of every coupled group's
    #                           channels to empty / to drop
    pruned_weight: float = 0.0  # weight of the task loss with that fraction dropped (0: none)
    steps: int = 200          # optimisation steps (one zoo network per step)
    lr: float = 1e-3          # Adam learning rate
    hidden: int = 32          # GMN width
    layers: int = 2           # GMN layers
    gate: bool = True         # per-channel gate head (see PruningMetanet)
    preserve_norm: bool = False  # rescale every rewritten weight tensor to its original
    #                              Frobenius norm (preserve_norms), in training and at rewrite
    distill: float = 0.0      # weight of KL(original || rewritten) on unlabelled inputs (and,
    #                           times pruned_weight, of KL(original || dropped)); 0: none
    seed: int = 0


@dataclasses.dataclass
class _Network:
    """A zoo network with its parameter graph, prepared graph and group-lasso reference."""

    module: nn.Module
    raw: Any
    prepared: Any
    reference: float


class TaskLoss(Protocol):
    """``loss(module, state) -> scalar``: the task loss of ``module`` run with the parameters and
    buffers ``state`` (``torch.func.functional_call``); random batches use torch's global RNG.
    ``kl(module, states)``: for each state, KL(``module`` as it is || ``module`` run with the
    state) on unlabelled inputs (one draw shared by the states)."""

    def __call__(self, module: nn.Module, state: dict[str, Tensor]) -> Tensor: ...

    def kl(self, module: nn.Module, states: Sequence[dict[str, Tensor]]) -> list[Tensor]: ...


def _kl_to_original(module: nn.Module, states: Sequence[dict[str, Tensor]], args: tuple) -> list[Tensor]:
    """KL(softmax of ``module(*args)`` || softmax of ``module`` run with each state), mean over
    the inputs."""
    from torch.func import functional_call

    with torch.no_grad():
        reference = nn.functional.log_softmax(module(*args), dim=-1)
    return [nn.functional.kl_div(nn.functional.log_softmax(functional_call(module, state, args), dim=-1),
                                 reference, log_target=True, reduction="batchmean") for state in states]


@dataclasses.dataclass(frozen=True)
class ImageLoss:
    """Cross-entropy on a random batch of training images per call.

    Shapes:
        ``images`` ``(N, C, H, W)``, ``labels`` ``(N,)``.
    """

    images: Tensor
    labels: Tensor
    batch_size: int = 128

    def __call__(self, module: nn.Module, state: dict[str, Tensor]) -> Tensor:
        from torch.func import functional_call

        index = torch.randint(0, len(self.images), (self.batch_size,))
        logits = functional_call(module, state, (self.images[index],))
        return nn.functional.cross_entropy(logits, self.labels[index])

    def kl(self, module: nn.Module, states: Sequence[dict[str, Tensor]]) -> list[Tensor]:
        index = torch.randint(0, len(self.images), (self.batch_size,))
        return _kl_to_original(module, states, (self.images[index],))


@dataclasses.dataclass(frozen=True)
class NodeLoss:
    """Cross-entropy on the training nodes of one graph (a node task), whole graph per call.

    Shapes:
        ``x`` ``(N, F)``, ``edge_index`` ``(2, E)``, ``y`` ``(N,)``, ``mask`` ``(N,)`` bool.
    """

    x: Tensor
    edge_index: Tensor
    y: Tensor
    mask: Tensor

    def __call__(self, module: nn.Module, state: dict[str, Tensor]) -> Tensor:
        from torch.func import functional_call

        logits = functional_call(module, state, (self.x, self.edge_index))
        return nn.functional.cross_entropy(logits[self.mask], self.y[self.mask])

    def kl(self, module: nn.Module, states: Sequence[dict[str, Tensor]]) -> list[Tensor]:
        """Over every node of the graph (features only, no labels)."""
        return _kl_to_original(module, states, (self.x, self.edge_index))


def channel_norms(graph: Any, edge_attr: Tensor) -> tuple[Tensor, Tensor]:
    """L2 norm of the rewritten incoming and outgoing weights of every channel neuron, and the
    neuron's layer index.

    Shapes:
        ``(C,)`` float norms, ``(C,)`` int64 layers (C: channel neurons of the graph).
    """
    squares, channel = _channel_squares(graph, edge_attr)
    return (squares + 1e-12).sqrt(), graph.node_layer.long()[channel]


def _channel_squares(graph: Any, edge_attr: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of squared rewritten weights into and out of every channel neuron ``(C,)``, and the
    boolean mask of channel neurons among all nodes ``(N,)``."""
    mask = _rewritten_mask(graph).float()[:, None]
    sq = (edge_attr * mask).pow(2).sum(dim=1)  # (E,)
    n = int(graph.num_nodes)
    src, dst = graph.edge_index
    per_node = scatter(sq, dst, 0, dim_size=n, reduce="sum") + scatter(sq, src, 0, dim_size=n,
                                                                       reduce="sum")
    channel = _channel_mask(graph)
    return per_node[channel], channel


def _channel_mask(graph: Any) -> Tensor:
    """``(N,)`` bool: the channel neurons among the graph's nodes: those of the GNN pruner's
    units where the graph carries them (``channel_unit``, see :meth:`PruningMetanet.graph_of`),
    else those of :data:`CHANNEL_NODES` types."""
    units = getattr(graph, "channel_unit", None)
    if units is not None:
        return units >= 0
    types = graph.node_type.long()
    return torch.isin(types, torch.tensor(CHANNEL_NODES, device=types.device))


def group_lasso(graph: Any, edge_attr: Tensor) -> Tensor:
    """Sum over channel neurons of the L2 norm of their incoming and outgoing weights."""
    return channel_norms(graph, edge_attr)[0].sum()


def group_hoyer(graph: Any, edge_attr: Tensor) -> Tensor:
    """Scale-invariant group sparsity: the sum over layers of the Hoyer measure
    ``(sum of channel norms)^2 / (sum of squared channel norms)`` of the layer's channels
    (between 1: one channel carries everything, and the channel count: all equal).

    Unlike the group lasso it cannot be lowered by shrinking every weight of a layer alike (which
    leaves a magnitude ranking, normalised per group, unchanged): only by making some channels
    small relative to the others of their layer (Yang et al., "DeepHoyer", ICLR 2020).
    """
    norms, layers = channel_norms(graph, edge_attr)
    size = int(layers.max()) + 1 if len(layers) else 0
    l1 = scatter(norms, layers, 0, dim_size=size, reduce="sum")
    l2 = scatter(norms.pow(2), layers, 0, dim_size=size, reduce="sum")
    count = scatter(torch.ones_like(norms), layers, 0, dim_size=size, reduce="sum")
    keep = count > 1
    return (l1[keep].pow(2) / l2[keep].clamp_min(1e-24)).sum()


def coupled_channels(graph: Any) -> tuple[Tensor, Tensor]:
    """Coupled channels (those pruning removes together) of a parameter graph, and their groups
    (channels of one group are pruned against each other).

    For a GNN-space network (a graph carrying ``channel_unit``, see
    :meth:`PruningMetanet.graph_of`) they are the GNN pruner's units and groups, in its order
    (:mod:`metanets.pruning._graph_units`): a unit of an attention layer is one channel of every
    head, with the head's value, query and key neurons. Otherwise channel neurons joined by
    weight-free ``IDENTITY`` edges (a convolution's output and its normalisation, the operands
    of a residual sum) form one channel, as torch-pruning's dependency graph couples them, its
    group id the smallest ``node_layer`` among its neurons.

    Shapes:
        ``(C,)`` int64 channel ids in ``[0, K)`` for the channel neurons in node order,
        ``(K,)`` int64 group ids.
    """
    cached = getattr(graph, "_coupled_channels", None)
    if cached is not None:
        return cached
    units = getattr(graph, "channel_unit", None)
    if units is not None:
        present, ids = torch.unique(units[units >= 0], return_inverse=True)
        graph._coupled_channels = (ids, graph.unit_group[present])
        return graph._coupled_channels
    channel = _channel_mask(graph)
    label = identity_components(graph, channel)
    ids = torch.unique(label[channel], return_inverse=True)[1]
    layers = graph.node_layer.long()[channel]
    groups = torch.full((int(ids.max()) + 1 if len(ids) else 0,), 1 << 30, dtype=torch.long,
                        device=ids.device)
    groups = groups.scatter_reduce(0, ids, layers, "amin")
    graph._coupled_channels = (ids, groups)
    return ids, groups


def lowest_channels(graph: Any, edge_attr: Tensor, fraction: float = 0.3) -> Tensor:
    """Targeted group sparsity: over every group of coupled channels (:func:`coupled_channels`),
    the L2 norm of the weights of its ``fraction`` lowest-norm channels relative to the group's
    total norm in the graph's own weights (``graph.edge_attr``: the network before the rewrite),
    summed over groups.

    Only the channels that magnitude pruning will remove first are pushed to zero (as DepGraph's
    sparse training regularises the groups it is about to prune); the kept channels are not
    penalised (nor rewarded for growing: the denominator is a constant), so the rewrite can empty
    some channels and let the others carry the function, and removing them then costs little.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction {fraction} must be in (0, 1)")
    ids, groups = coupled_channels(graph)
    norms = _coupled_norms(graph, edge_attr, ids, len(groups))
    # the denominator is the group's norm in the graph's own (original) weights: a constant, so
    # growing the kept channels does not lower the ratio
    reference = _coupled_norms(graph, graph.edge_attr.float(), ids, len(groups)).detach()
    total = norms.new_zeros(())
    for group in torch.unique(groups).tolist():
        members = groups == group
        k = int(fraction * int(members.sum()))
        if k < 1 or k >= int(members.sum()):
            continue
        total = total + norms[members].sort().values[:k].sum() / reference[members].sum()
    return total


def _coupled_norms(graph: Any, edge_attr: Tensor, ids: Tensor, count: int) -> Tensor:
    """``(K,)`` L2 norm of the rewritten weights into and out of every coupled channel."""
    squares, _ = _channel_squares(graph, edge_attr)
    return (scatter(squares, ids, 0, dim_size=count, reduce="sum") + 1e-12).sqrt()


def drop_lowest(graph: Any, edge_attr: Tensor, fraction: float) -> Tensor:
    """``edge_attr`` with every weight into or out of the ``fraction`` lowest-norm channels of
    every group of coupled channels set to zero (what structured pruning of those channels does
    to the function; the choice is not differentiated, the kept weights are).

    Shapes:
        ``edge_attr`` ``(E, K)`` -> ``(E, K)``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction {fraction} must be in (0, 1)")
    ids, groups = coupled_channels(graph)
    norms = _coupled_norms(graph, edge_attr.detach(), ids, len(groups))
    drop = torch.zeros(len(groups), dtype=torch.bool, device=groups.device)
    for group in torch.unique(groups).tolist():
        members = (groups == group).nonzero()[:, 0]
        k = int(fraction * len(members))
        if 1 <= k < len(members):
            drop[members[norms[members].argsort()[:k]]] = True
    channel = _channel_mask(graph)
    dropped = torch.zeros(int(graph.num_nodes), dtype=torch.bool, device=channel.device)
    dropped[channel] = drop[ids]
    src, dst = graph.edge_index
    cut = (dropped[src] | dropped[dst]) & _rewritten_mask(graph)
    return torch.where(cut[:, None], torch.zeros_like(edge_attr), edge_attr)


#: sparsity penalties a pruning metanetwork can be trained with
PENALTIES = {"lasso": group_lasso, "hoyer": group_hoyer, "lowest": lowest_channels}


def _penalty(config: MetanetTrainConfig) -> Any:
    if config.penalty not in PENALTIES:
        raise ValueError(f"could not resolve penalty {config.penalty!r} among choices "
                         f"{list(PENALTIES)}")
    if config.penalty == "lowest":
        fraction = config.fraction
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction {fraction} must be in (0, 1)")
        return lambda graph, edge_attr: lowest_channels(graph, edge_attr, fraction)
    return PENALTIES[config.penalty]


def _rewritten_mask(graph: Any) -> Tensor:
    types = graph.edge_type.long()
    return torch.isin(types, torch.tensor(REWRITTEN_EDGES, device=types.device))


def preserve_norms(graph: Any, edge_attr: Tensor) -> Tensor:
    """``edge_attr`` with every rewritten weight tensor (one edge ``param_slot`` of a
    :data:`REWRITTEN_EDGES` type) scaled to the Frobenius norm it has in the graph's own weights
    (``graph.edge_attr``: the network before the rewrite); differentiable in ``edge_attr``.

    Without it a rewrite trained for the task loss alone grows the weights (relative channel
    norms 1.2 on the MNIST CNN zoo, 3.3 on the Cora GCN zoo), which fine-tuning then has to undo;
    with it the rewrite can only move norm between the channels of a tensor.

    Shapes:
        ``edge_attr`` ``(E, K)`` -> ``(E, K)``.
    """
    norms = _tensor_norms(graph)
    if norms is None:
        return edge_attr
    valid, index, kernel, original = norms
    per_edge = ((edge_attr * kernel).pow(2).sum(dim=1)) * valid.float()
    squares = scatter(per_edge, index, 0, dim_size=original.numel(), reduce="sum")
    factor = (original / (squares + 1e-24)).sqrt()
    per_edge = torch.where(valid, factor[index], torch.ones_like(factor[index]))
    return edge_attr * per_edge[:, None]


def _tensor_norms(graph: Any) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """What :func:`preserve_norms` needs of ``graph``, computed once and cached on it: the
    ``(E,)`` mask of rewritten edges that belong to an edge ``param_slot`` (weight tensor), each
    edge's slot index, the ``(E, K)`` kernel mask and the ``(slots,)`` sums of squared entries of
    the original tensors; ``None`` when no rewritten edge holds a weight tensor."""
    if hasattr(graph, "_tensor_norms"):
        return graph._tensor_norms
    slot = _edge_slots(graph)
    valid = (slot >= 0) & _rewritten_mask(graph)
    cached = None
    if bool(valid.any()):
        index, kernel = slot.clamp_min(0), _kernel_mask(graph)
        per_edge = ((graph.edge_attr.float() * kernel).pow(2).sum(dim=1)) * valid.float()
        original = scatter(per_edge, index, 0, dim_size=int(slot.max()) + 1, reduce="sum")
        cached = (valid, index, kernel, original)
    graph._tensor_norms = cached
    return cached


def _edge_slots(graph: Any) -> Tensor:
    """``(E,)`` int64: the index of the edge ``param_slot`` (weight tensor) every edge belongs
    to, -1 for edges of none."""
    slots = torch.full((int(graph.edge_index.size(1)),), -1, dtype=torch.long,
                       device=graph.edge_index.device)
    for i, slot in enumerate(s for s in graph.param_slots if s.where == "edge"):
        slots[slot.start:slot.start + slot.count] = i
    return slots


def _kernel_mask(graph: Any) -> Tensor:
    """``(E, K)`` float: 1 where an edge's feature is one of its ``edge_kernel_len`` kernel
    entries, 0 in the padding."""
    width = graph.edge_attr.size(1)
    cols = torch.arange(width, device=graph.edge_attr.device)
    return (cols[None, :] < graph.edge_kernel_len.long()[:, None]).float()


def state_from_graph(graph: Any, edge_attr: Tensor, module: nn.Module) -> dict[str, Tensor]:
    """``module``'s parameters and buffers with the edge weights taken from ``edge_attr``
    (differentiable in ``edge_attr``; the inverse of the conversion's ``param_slots``), on the
    module's device."""
    state = dict(module.state_dict())
    flat = {name: tensor.detach().reshape(-1) for name, tensor in state.items()}
    for slot in graph.param_slots:
        if slot.where != "edge":
            continue
        rows = slot.numel // slot.kernel
        attr = edge_attr[slot.start:slot.start + slot.count, EdgeFeature.WEIGHT:]
        values = attr.reshape(rows, -1)[:, :slot.kernel].reshape(-1)
        old = flat[slot.name]
        flat[slot.name] = torch.cat(
            [old[:slot.offset], values.to(old.device, old.dtype), old[slot.offset + slot.numel:]])
    return {name: flat[name].view(state[name].shape) for name in state}


class PruningMetanet(nn.Module):
    """A GMN with an edge head of ``kernel_width`` outputs that rewrites weights and, optionally,
    a per-channel gate head (see the module docstring).

    The rewrite of a weight on edge ``u -> v`` is ``(w + scale * delta) * g(u) * g(v)``: ``delta``
    is the GMN's equivariant per-edge output; ``g`` is 1 for neurons that are not channels and,
    for a channel neuron, the gate of its coupled channel (:func:`coupled_channels`): the mean
    over the channel's neurons of ``2 * sigmoid(gate_head(h))`` (a per-node equivariant head on
    the GMN's node embeddings, 1 when untrained). A gate near 0 empties every weight into and out
    of the channel at once, in all the layers it couples, which is what structured pruning
    removes.

    Args:
        gmn: the graph metanetwork (``out_edge == kernel_width``).
        inputs: example inputs to trace the networks it rewrites (shapes only).
        gate: the per-node gate head (``None``: additive rewrite only).
        trained_on: ``{"level", "dataset"}`` of the task it was trained on, when known.
    """

    def __init__(self, gmn: GMN, inputs: Sequence[Tensor], gate: nn.Module | None = None,
                 preserve_norm: bool = False, trained_on: dict[str, Any] | None = None) -> None:
        super().__init__()
        if gmn.config.out_edge != gmn.config.kernel_width:
            raise ValueError(f"pruning metanetwork needs out_edge == kernel_width, got "
                             f"{gmn.config.out_edge} and {gmn.config.kernel_width}")
        self.gmn, self.inputs, self.gate = gmn, tuple(inputs), gate
        self.preserve_norm = preserve_norm
        self.trained_on = dict(trained_on or {})

    def check_fits(self, module: nn.Module, level: str) -> None:
        """``ValueError`` naming the metanetwork's task when ``module``, a network of a
        ``level``-level task, is not one it rewrites: it traces networks on its task's inputs
        (another input size failed deep in ``torch.fx``)."""
        shape = list(self.inputs[0].shape[1:])
        task = (f"this pruning metanetwork rewrites networks of a "
                f"{self.trained_on.get('level', 'task')}-level task with inputs of shape {shape} "
                f"per example (dataset {self.trained_on.get('dataset', 'unknown')!r})")
        trained = self.trained_on.get("level")
        if trained is not None and level != trained:
            raise ValueError(f"{task}; the model is {level}-level: train one on networks of "
                             "its task (metanas prune-metanet)")
        with kept_modes(module), torch.no_grad():
            module.eval()
            try:
                module(*self.inputs)
            except Exception as error:  # noqa: BLE001 - any failure means another task
                raise ValueError(f"{task}; the model does not run on them ({type(error).__name__}: "
                                 f"{error}): train one on networks of its task (metanas "
                                 "prune-metanet)") from None

    @classmethod
    def create(cls, inputs: Sequence[Tensor], hidden: int = 32, layers: int = 2,
               kernel_width: int = 9, gate: bool = False,
               preserve_norm: bool = False) -> PruningMetanet:
        gmn = GMN(GMNConfig(hidden=hidden, layers=layers, out_edge=kernel_width,
                            kernel_width=kernel_width))
        last = gmn.edge_head[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)  # an untrained metanetwork changes nothing
        return cls(gmn, inputs, _gate_head(hidden) if gate else None, preserve_norm)

    @property
    def device(self) -> torch.device:
        """Where the metanetwork's weights are (and where it rewrites)."""
        return self.gmn.target_mean.device

    def graph_of(self, module: nn.Module) -> Any:
        """``module``'s parameter graph, traced with the example inputs (CPU tensors: ``module``
        is on the CPU, where zoos and exported models are loaded). A GNN-space network's graph
        carries the GNN pruner's units (:func:`coupled_channels`): every neuron's unit
        ``channel_unit`` ``(N,)`` (-1: none) and every unit's group ``unit_group`` ``(U,)``."""
        with kept_modes(module):
            module.eval()
            graph = to_parameter_graph(module, self.inputs,
                                       kernel_width=self.gmn.config.kernel_width)
        units = pruner_units(module, graph)
        if units is not None:
            graph.channel_unit, graph.unit_group = units.neuron, units.group
        return graph

    def graphs_of(self, module: nn.Module) -> tuple[Any, Any]:
        """``module``'s parameter graph and its prepared graph (:func:`prepare_graph`), both on
        the metanetwork's device: what :meth:`rewrite` takes."""
        raw = self.graph_of(module)
        prepared = prepare_graph(raw)
        return raw.to(self.device), prepared.to(self.device)

    def rewrite(self, raw: Any, prepared: Any) -> Tensor:
        """Rewritten ``edge_attr`` ``(E, K)`` of one network's parameter graph."""
        from torch_geometric.data import Batch

        batch = Batch.from_data_list([prepared])
        h, e = self.gmn.encode(batch)
        src, dst = batch.edge_index
        delta = self.gmn.edge_head(torch.cat([e, h[src], h[dst]], dim=-1))  # (E, K)
        scale = self.gmn.scaler.edge_scale[_slot(batch.edge_type, batch.edge_layer)][:, None]
        kernel = _kernel_mask(raw)
        rewritten = _rewritten_mask(raw).float()[:, None]
        new = raw.edge_attr.float() + delta * scale * kernel * rewritten
        if self.gate is not None:
            gates = self.node_gates(raw, h)
            factor = gates[raw.edge_index[0]] * gates[raw.edge_index[1]]
            new = torch.where(rewritten.bool(), new * factor[:, None], new)
        return preserve_norms(raw, new) if self.preserve_norm else new

    def node_gates(self, raw: Any, h: Tensor) -> Tensor:
        """``(N,)`` multipliers: the coupled channel's gate for channel neurons, 1 otherwise."""
        channel = _channel_mask(raw)
        ids, groups = coupled_channels(raw)
        rank = relative_channel_norms(raw, ids, groups)[ids][:, None]
        per_neuron = 2 * torch.sigmoid(self.gate(torch.cat([h[channel], rank], dim=1))[:, 0])
        per_channel = scatter(per_neuron, ids, 0, dim_size=len(groups), reduce="mean")
        gates = torch.ones(int(raw.num_nodes), dtype=per_channel.dtype, device=per_channel.device)
        return gates.masked_scatter(channel, per_channel[ids])

    @torch.no_grad()
    def transform(self, module: nn.Module) -> nn.Module:
        """``module`` with rewritten weights (in place; pass a copy to keep the original). The
        rewrite runs on the metanetwork's device; ``module`` stays where it is."""
        raw, prepared = self.graphs_of(module)
        new = self.rewrite(raw, prepared)
        module.load_state_dict(state_from_graph(raw, new, module))
        return module

    def save(self, folder: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        shapes = [list(t.shape) for t in self.inputs]
        dtypes = [str(t.dtype).removeprefix("torch.") for t in self.inputs]
        gate = {GATE_FILE: self.gate.state_dict()} if self.gate is not None else {}
        folder = save_gmn(self.gmn, folder, {
            "purpose": PRUNING, "input_shapes": shapes, "input_dtypes": dtypes,
            "gate": self.gate is not None, "preserve_norm": self.preserve_norm,
            **(metadata or {})}, extra_files=gate)  # the gate before the JSON that names it
        return Path(folder)


#: weights of the gate head, next to the GMN's files
GATE_FILE = "gate.safetensors"


def relative_channel_norms(graph: Any, ids: Tensor, groups: Tensor) -> Tensor:
    """``(K,)`` every coupled channel's log weight norm minus the mean log norm of its group (an
    invariant per-channel input of the gate head: how small the channel is among those pruning
    ranks it against)."""
    log = _coupled_norms(graph, graph.edge_attr.float(), ids, len(groups)).log()
    unique, index = torch.unique(groups, return_inverse=True)
    mean = scatter(log, index, 0, dim_size=len(unique), reduce="mean")
    return log - mean[index]


def _gate_head(hidden: int) -> nn.Module:
    head = nn.Sequential(nn.Linear(hidden + 1, hidden), nn.SiLU(), nn.Linear(hidden, 1))
    nn.init.zeros_(head[-1].weight)
    nn.init.zeros_(head[-1].bias)  # every gate 1: the identity
    return head


def load_pruning_metanet(folder: str | Path) -> PruningMetanet:
    """A saved pruning metanetwork (safetensors + JSON, see :func:`metanets.gmn.load_gmn`)."""
    gmn, metadata, states = load_gmn_files(folder)
    if purpose(metadata) != PRUNING:
        raise ValueError(f"{folder} holds a metanetwork trained for {purpose(metadata)!r}, not "
                         f"for pruning")
    shapes, dtypes = _saved_inputs(metadata, Path(folder) / CONFIG_FILE)
    # tracing needs shapes only; a zero edge_index (self-loops of node 0) is a valid graph
    inputs = [torch.zeros(shape, dtype=getattr(torch, dtype))
              for shape, dtype in zip(shapes, dtypes, strict=True)]
    gate = None
    if metadata.get("gate"):
        from storage.store import decode_state_dict

        # the checksummed bytes load_gmn_files read; a folder saved before checksums: the file
        gate_state = states.get(GATE_FILE)
        if gate_state is None:
            path = Path(folder) / GATE_FILE
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: the metanetwork was saved with a gate")
            gate_state = decode_state_dict(path.read_bytes())
        gate = _gate_head(gmn.config.hidden)
        load_checked(gate, gate_state, Path(folder) / GATE_FILE, "gate head")
        gate.eval()
    preserve = metadata.get("preserve_norm", False)
    if not isinstance(preserve, bool):
        raise ValueError(f"{folder}: preserve_norm {preserve!r} must be one of [true, false]")
    trained_on = {key: metadata[key] for key in ("level", "dataset") if key in metadata}
    return PruningMetanet(gmn, inputs, gate, preserve, trained_on)


_INPUT_DTYPES = ("float32", "float64", "int64", "int32")


def _saved_inputs(metadata: dict[str, Any], path: Path) -> tuple[list[list[int]], list[str]]:
    """The example inputs' shapes and dtypes the metanetwork at ``path`` (its ``metanet.json``)
    traces networks with; ``ValueError`` naming the file and the entry that is no such list."""
    where = f"{path} is no usable metanetwork"
    if "input_shapes" not in metadata:
        raise ValueError(f"{where}: its metadata records no input_shapes")
    shapes = metadata["input_shapes"]
    if not (isinstance(shapes, list) and shapes and all(
            isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
            for shape in shapes)):
        raise ValueError(f"{where}: input_shapes {shapes!r} must be a list of shapes (lists of "
                         f"integers >= 0)")
    dtypes = metadata.get("input_dtypes", ["float32"] * len(shapes))
    if not isinstance(dtypes, list) or len(dtypes) != len(shapes):
        raise ValueError(f"{where}: {len(shapes)} input_shapes but input_dtypes {dtypes!r} "
                         f"(one dtype each)")
    _check_dtypes(dtypes, path.parent)
    return shapes, dtypes


def _check_dtypes(dtypes: list[str], folder: str | Path) -> None:
    for dtype in dtypes:
        if dtype not in _INPUT_DTYPES:
            raise ValueError(f"{folder}: could not resolve input dtype {dtype!r} among choices "
                             f"{list(_INPUT_DTYPES)}")


def train_pruning_metanet(
    models: Sequence[nn.Module], task_loss: TaskLoss, inputs: Sequence[Tensor],
    config: MetanetTrainConfig = MetanetTrainConfig(), log: Any = None,
    device: str | torch.device = "cpu",
) -> PruningMetanet:
    """Fit a pruning metanetwork on a zoo of trained networks of one task (the metanetwork of
    :func:`fit_pruning_metanet`, without a training state)."""
    return fit_pruning_metanet(models, task_loss, inputs, config, log=log, device=device).metanet


@dataclasses.dataclass
class PruningMetanetFit:
    """What :func:`fit_pruning_metanet` returns."""

    metanet: PruningMetanet
    #: ``{"step", "task_loss", "relative_penalty"}`` every 20 steps and at the first and last
    history: list[dict[str, float]]
    resumed_from: int = 0              # the step a resumed fit went on after (0: not resumed)


@own_random_state
def fit_pruning_metanet(
    models: Sequence[nn.Module], task_loss: TaskLoss, inputs: Sequence[Tensor],
    config: MetanetTrainConfig = MetanetTrainConfig(), log: Any = None,
    state: str | Path | None = None, state_every: int = 100, device: str | torch.device = "cpu",
    names: Sequence[str] | None = None, resuming: Callable[[int], None] | None = None,
) -> PruningMetanetFit:
    """Fit a pruning metanetwork on a zoo of trained networks of one task.

    Args:
        models: the zoo (trained networks; not modified).
        task_loss: the task loss on training data (:class:`ImageLoss`, :class:`NodeLoss`), its
            data on ``device``.
        inputs: example inputs to trace the networks (shapes only).
        config: see :class:`MetanetTrainConfig`.
        log: ``log(step, task_loss, relative_penalty)`` every 20 steps and at the first and last
            (of the steps this call trains: a resumed fit does not log the earlier ones again).
        state: training-state file, written every ``state_every`` steps and after the last
            (safetensors and JSON, never pickle). If it exists, the fit resumes from it and ends
            exactly as an uninterrupted fit would; it must hold a fit of the same ``config`` on
            the same networks and training data.
        device: where the metanetwork, the parameter graphs and the zoo's networks go (a torch
            device; resolve ``"auto"`` with :func:`nas.train.resolve_device` first). The
            metanetwork is initialised on the CPU before it moves, so a fit starts alike on
            every device; the zoo's networks are copied there, never moved; the fitted
            metanetwork stays on ``device``.
        names: what messages call the networks (their folders, study/trial), in the order of
            ``models``; default "network I of the zoo".
        resuming: called with the state's step once ``state`` is read and accepted.

    Raises:
        ValueError: ``state`` holds another fit, or ``state_every`` < 1.
        MemoryError: before the first step, when the largest network could not take a step in
            the memory free on ``device`` (:func:`check_step_memory`).
        FloatingPointError: the loss became NaN or infinite (the last state written is kept).
    """
    if state_every < 1:
        raise ValueError(f"state_every must be >= 1 (steps), got {state_every}")
    penalty = _penalty(config)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    metanet = PruningMetanet.create(inputs, config.hidden, config.layers, gate=config.gate,
                                    preserve_norm=config.preserve_norm).to(device)
    networks = _networks(metanet, models, penalty, config, names)
    metanet.gmn.scaler.fit([n.prepared for n in networks])
    optimizer = torch.optim.Adam(metanet.parameters(), lr=config.lr)
    history: list[dict[str, float]] = []
    done = 0
    data = _fit_fingerprint(models, task_loss) if state is not None else ""
    if state is not None and Path(state).exists():
        done, history = _load_fit_state(state, config, data, metanet, optimizer, rng)
        if resuming is not None:
            resuming(done)
    metanet.train()
    for step in range(done + 1, config.steps + 1):
        network = rng.choice(networks)
        new = metanet.rewrite(network.raw, network.prepared)
        state_dict = state_from_graph(network.raw, new, network.module)
        task = task_loss(network.module, state_dict)
        lasso = penalty(network.raw, new) / network.reference
        loss = task + config.lam * lasso
        states = [state_dict]
        if config.pruned_weight > 0:  # the loss of the network as pruning will leave it
            dropped = state_from_graph(network.raw, drop_lowest(network.raw, new, config.fraction),
                                       network.module)
            loss = loss + config.pruned_weight * task_loss(network.module, dropped)
            states.append(dropped)
        if config.distill > 0:  # and what the original network does on unlabelled inputs
            kls = task_loss.kl(network.module, states)
            loss = loss + config.distill * (kls[0] + config.pruned_weight * sum(kls[1:]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step in (1, config.steps):
            history.append({"step": step, "task_loss": round(float(task.detach()), 5),
                            "relative_penalty": round(float(lasso.detach()), 5)})
            if log is not None:
                log(step, float(task.detach()), float(lasso.detach()))
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"metanetwork loss became {float(loss)} at step {step}")
        if state is not None and (step % state_every == 0 or step == config.steps):
            _save_fit_state(state, config, data, metanet, optimizer, rng, step, history)
    metanet.eval()
    return PruningMetanetFit(metanet, history, done)


#: the format of a pruning metanetwork fit's training-state file
FIT_STATE_FORMAT = "metanas-pruning-metanet-fit/1"


def _fit_fingerprint(models: Sequence[nn.Module], task_loss: TaskLoss) -> str:
    """A digest of the zoo's weights and of the task loss's training data and settings, so that a
    training state is never resumed on other networks or data."""
    import hashlib

    digest = hashlib.sha256()
    for model in models:
        for key, value in model.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    digest.update(type(task_loss).__name__.encode())
    fields = dataclasses.fields(task_loss) if dataclasses.is_dataclass(task_loss) else ()
    for field in fields:
        value = getattr(task_loss, field.name)
        digest.update(field.name.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes()
                      if isinstance(value, Tensor) else repr(value).encode())
    return digest.hexdigest()


def _save_fit_state(path: str | Path, config: MetanetTrainConfig, data: str,
                    metanet: PruningMetanet, optimizer: torch.optim.Optimizer, rng: random.Random,
                    step: int, history: list[dict[str, float]]) -> None:
    from storage.store import flatten_optimizer_state, write_state_file

    tensors = {f"metanet.{k}": v for k, v in metanet.state_dict().items()}
    optimizer_tensors, param_groups = flatten_optimizer_state(optimizer.state_dict())
    tensors |= {f"optimizer.{k}": v for k, v in optimizer_tensors.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    write_state_file(path, tensors, {
        "format": FIT_STATE_FORMAT, "config": dataclasses.asdict(config), "data": data,
        "step": step, "history": history, "param_groups": param_groups,
        "rng": list(rng.getstate()),
    })


def _load_fit_state(path: str | Path, config: MetanetTrainConfig, data: str,
                    metanet: PruningMetanet, optimizer: torch.optim.Optimizer,
                    rng: random.Random) -> tuple[int, list[dict[str, float]]]:
    """Restore a fit written by :func:`_save_fit_state` into fresh objects and return its step
    and history; ``ValueError`` naming the difference when it holds another fit."""
    from storage.store import read_training_state, tensors_under, unflatten_optimizer_state

    tensors, meta = read_training_state(
        path, FIT_STATE_FORMAT, "pruning metanetwork training-state", "pruning metanetwork fit",
        dataclasses.asdict(config))
    if meta["data"] != data:
        raise ValueError(f"{path} holds a fit on other networks or training data (another zoo, "
                         "dataset or batch size): remove it to start again")
    metanet.load_state_dict(tensors_under(tensors, "metanet."))
    optimizer.load_state_dict(unflatten_optimizer_state(tensors_under(tensors, "optimizer."),
                                                        meta["param_groups"]))
    torch.set_rng_state(tensors["rng.torch"])
    version, internal, gauss = meta["rng"]
    rng.setstate((version, tuple(internal), gauss))
    return meta["step"], meta["history"]


@torch.no_grad()
def relative_group_lasso(metanet: PruningMetanet, module: nn.Module,
                         penalty: str = "lasso", fraction: float = 0.3) -> float:
    """A penalty (:data:`PENALTIES`, default the group lasso; ``fraction`` for ``"lowest"``) of
    ``module`` after the metanetwork's rewrite over the same before (1.0: no sparser; what its
    training lowers)."""
    measure = _penalty(MetanetTrainConfig(penalty=penalty, fraction=fraction))
    raw, prepared = metanet.graphs_of(module)
    new = metanet.rewrite(raw, prepared)
    before = measure(raw, raw.edge_attr.float()).clamp_min(1e-12)
    return float(measure(raw, new) / before)


#: 4-byte features an edge per GMN hidden unit that a training step of a pruning metanetwork
#: takes outside the GMN layers (``head`` of :func:`metanets.accuracy.pass_bytes`, 2 for
#: metanet train's regression): the per-edge head reads three hidden features and writes the
#: rewritten weights, and the gate, the rewritten and the dropped network's losses add a little.
#: The value 8 was fitted to an earlier ad hoc measurement (commit e7b00d0: fits on Cora GCNs and
#: MNIST-14 MLPs, the whole process's peak), which no benchmark in experiments/ records. What
#: ``python -m experiments.metanet_memory --fit pruning`` records
#: (``experiments/results/metanet_memory_pruning.md``: the step's peak above what the process
#: held when the check runs, the command's defaults, 2 GMN layers): on Cora GCNs of 0.43-1.47
#: million edges 4.6-5.0 KiB an edge at hidden 32 and 9.4 at hidden 64 (up to 0.57 million),
#: the estimate 0.99-1.08 times the peak; on Cora GCNs of 23k-96k edges the estimate 0.79-0.82
#: times the peak, which was up to 0.56 GiB at hidden 32 and 1.14 GiB at hidden 64; on MNIST-14
#: CNNs of under a thousand edges a peak of 0.03-0.04 GiB, the estimate 0.11-0.21 times it.
STEP_HEAD = 8


def step_bytes(edges: int, config: MetanetTrainConfig) -> int:
    """Memory one training step of the pruning metanetwork on a network whose parameter graph
    has ``edges`` edges takes, about (see :data:`STEP_HEAD`): 5 KiB an edge at the CLI's
    hidden 32 and 2 layers: 7.0 GiB for a Cora GCN of width 1024 (1.5 million edges),
    whose step peaked at 6.5 GiB (experiments/results/metanet_memory_pruning.md)."""
    return pass_bytes(edges, config.hidden, config.layers, head=STEP_HEAD)


def check_step_memory(network: Any, name: str, held: int, config: MetanetTrainConfig,
                      device: str | torch.device) -> None:
    """``MemoryError`` naming the network whose parameter graph ``network`` (the largest of the
    ``held`` networks whose graphs are built) could not take a training step in the memory free
    on ``device``: the OOM killer ended such a fit, silently, whenever it drew that network."""
    edges = int(network.num_edges)
    held_note = (f" (the parameter graphs of the {held} networks read so far are held through "
                 "the fit: fewer networks, --limit or fewer --model-dir, leave more free)"
                 if held > 1 else "")
    check_free_memory(
        f"network {name} has a parameter graph of {edges:,} edges (weights): one training step "
        "of the pruning metanetwork on it", step_bytes(edges, config), hidden=config.hidden,
        layers=config.layers, device=device, change="lower hidden (--hidden) or layers "
        f"(--layers), or leave that network out of the zoo{held_note}")


def _networks(metanet: PruningMetanet, models: Sequence[nn.Module], penalty: Any,
              config: MetanetTrainConfig, names: Sequence[str] | None) -> list[_Network]:
    """The zoo's networks for the fit (:func:`_network`), built one after another: after each,
    the largest so far is checked against the memory left (:func:`check_step_memory`), so a
    zoo too large to train is refused before its last graph is built and before any step."""
    networks: list[_Network] = []
    largest = 0
    for index, model in enumerate(models):
        networks.append(_network(metanet, model, penalty))
        if networks[index].raw.num_edges > networks[largest].raw.num_edges:
            largest = index
        name = names[largest] if names is not None else f"{largest} of the zoo"
        check_step_memory(networks[largest].raw, name, len(networks), config, metanet.device)
    return networks


def _network(metanet: PruningMetanet, model: nn.Module, penalty: Any = group_lasso) -> _Network:
    """A zoo network for the fit: its graphs, and the network itself, on the metanetwork's
    device (a copy when it is elsewhere)."""
    module = model.eval()
    raw, prepared = metanet.graphs_of(module)
    reference = float(penalty(raw, raw.edge_attr.float()))
    return _Network(_moved(module, metanet.device), raw, prepared, max(reference, 1e-12))


def _moved(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` itself when all its tensors are on ``device``, else a copy moved there."""
    tensors = [*module.parameters(), *module.buffers()]
    if all(t.device == device for t in tensors):
        return module
    return copy.deepcopy(module).to(device)
