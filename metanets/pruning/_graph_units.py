"""The GNN pruner's units on a network's parameter graph (:mod:`metanets.graphs`): which neurons
every unit of :func:`~metanets.pruning._gnn.build_groups` owns, so that the pruning metanetwork
gates, penalises and drops what the pruner removes (a channel in each of a group's blocks: every
head of an attention layer, every block of a mixed-head residual; GIN's MLP hidden channels;
the layers an identity residual couples; jk_cat's slices of the classifier).

The units are read from the pruner's own slots (the tensor entries that go when a unit goes)
through the graph's ``param_slots`` (where every entry lives): an entry on a neuron (a bias, an
attention vector, a normalisation parameter) gives that neuron to the entry's unit; an entry on an
edge (a weight) gives the edge's target for an output-channel slot (the channels the tensor
produces: an attention layer's value, query and key neurons among them) and its source for an
input-channel slot (the channels it consumes). Neurons no slot reaches (residual sums, the
outputs of a conv that carries no bias) join the unit of the neurons that weight-free
``IDENTITY`` edges tie them to.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from metanets.graphs import EdgeType, NodeType
from metanets.pruning._gnn import _Group, _Slot, build_groups

#: node types that are prunable channels of any network (hidden, normalised, residual sums)
CHANNEL_NODES: tuple[int, ...] = (int(NodeType.HIDDEN), int(NodeType.NORM), int(NodeType.SUM))


@dataclasses.dataclass(frozen=True)
class GraphUnits:
    """The pruner's units on one parameter graph.

    Shapes:
        ``neuron`` ``(N,)`` int64: every neuron's unit (its index among all groups' units,
        group after group in the pruner's order), -1 for neurons of no unit;
        ``group`` ``(U,)`` int64: every unit's group (its index in the pruner's groups).
    """

    neuron: Tensor
    group: Tensor


def pruner_units(model: nn.Module, graph: Any) -> GraphUnits | None:
    """The GNN pruner's units of ``model`` on ``graph`` (its parameter graph, on the CPU);
    ``None`` for a model torch-pruning prunes (not of the GNN space), whose coupled channels are
    the graph's own (:func:`identity_components`)."""
    from search_spaces.gnn import GNN

    if not isinstance(model, GNN):
        return None
    groups = build_groups(model)
    paths = {id(module): path for path, module in model.named_modules()}
    neurons, units = [], []
    first = 0
    for group in groups:
        slots = [(s, True) for s in group.out_slots] + [(s, False) for s in group.in_slots]
        for slot, produced in slots:
            owned = _slot_neurons(graph, slot, group, paths[id(slot.module)], produced)
            neurons.append(owned[0])
            units.append(owned[1] + first)
        first += group.units
    label = _labels(int(graph.num_nodes), torch.cat(neurons), torch.cat(units))
    sizes = torch.tensor([group.units for group in groups])
    return GraphUnits(_spread(graph, label),
                      torch.repeat_interleave(torch.arange(len(groups)), sizes))


def _slot_neurons(graph: Any, slot: _Slot, group: _Group, path: str,
                  produced: bool) -> tuple[Tensor, Tensor]:
    """The neurons that hold the entries of one of the group's slots (of the module at
    ``path``) and the unit of each, among the group's."""
    held = _entry_neurons(graph, ".".join(p for p in (path, slot.name) if p), produced)
    if held is None or len(slot.axes) != 1:  # a tensor of the group's channels to themselves
        empty = torch.zeros(0, dtype=torch.long)  # (ARMA's recursion) joins neurons that
        return empty, empty                       # other slots reach
    entries, owners = held
    unit = _entry_units(slot, group)[entries]
    return owners[unit >= 0], unit[unit >= 0]


def _entry_units(slot: _Slot, group: _Group) -> Tensor:
    """The unit (among the group's) of every flat entry of the slot's tensor along its axis,
    -1 for entries of other channels (another layer's slice of a jk_cat classifier input)."""
    tensor = getattr(slot.module, slot.name)
    axis = slot.axes[0]
    view = [1] * tensor.dim()
    view[axis] = tensor.shape[axis]
    index = torch.arange(tensor.shape[axis]).view(view).expand(tensor.shape).reshape(-1)
    index = index - slot.offset
    extent = tensor.shape[axis] if slot.per_head else group.units * group.heads
    inside = (index >= 0) & (index < extent)
    return torch.where(inside, index % group.units, -1)  # head-major blocks of ``units``


def _entry_neurons(graph: Any, name: str, produced: bool) -> tuple[Tensor, Tensor] | None:
    """Flat entries of the state_dict tensor ``name`` held by the graph and the neuron each
    belongs to (an edge's target when ``produced``, else its source); ``None`` if none."""
    entries, neurons = [], []
    for slot in graph.param_slots:
        if slot.name != name or slot.where == "scalar":
            continue
        if slot.where == "node":
            entries.append(slot.offset + torch.arange(slot.numel))
            neurons.append(slot.start + torch.arange(slot.numel))
            continue
        chunks = slot.count // (slot.numel // slot.kernel)
        edge = torch.arange(slot.count)
        entries.append(slot.offset + (edge // chunks) * slot.kernel)
        neurons.append(graph.edge_index[1 if produced else 0, slot.start + edge])
    if not entries:
        return None
    return torch.cat(entries), torch.cat(neurons)


def _labels(count: int, neurons: Tensor, units: Tensor) -> Tensor:
    """``(count,)`` every neuron's unit (-1: none); ``AssertionError`` naming a neuron that two
    units claim (the pruner's slots and the graph disagree)."""
    low = torch.full((count,), 1 << 62, dtype=torch.long).scatter_reduce(0, neurons, units, "amin")
    high = torch.full((count,), -1, dtype=torch.long).scatter_reduce(0, neurons, units, "amax")
    clash = (high >= 0) & (low != high)
    if bool(clash.any()):
        node = int(clash.nonzero()[0, 0])
        raise AssertionError(f"neuron {node} lies in units {int(low[node])} and {int(high[node])}")
    return high


def _spread(graph: Any, label: Tensor) -> Tensor:
    """``label`` given to every channel neuron tied by ``IDENTITY`` edges to labelled ones."""
    types = graph.node_type.long()
    candidate = torch.isin(types, torch.tensor(CHANNEL_NODES)) | (label >= 0)
    component = identity_components(graph, candidate)
    units = _labels(len(label), component[label >= 0], label[label >= 0])
    return torch.where(candidate, units[component], -1)


def identity_components(graph: Any, mask: Tensor) -> Tensor:
    """``(N,)`` every neuron's component among the neurons of ``mask``, joined by weight-free
    ``IDENTITY`` edges (the smallest neuron id of the component; a neuron outside ``mask`` is
    its own)."""
    src, dst = graph.edge_index
    keep = (graph.edge_type.long() == int(EdgeType.IDENTITY)) & mask[src] & mask[dst]
    src, dst = src[keep], dst[keep]
    label = torch.arange(int(graph.num_nodes), device=src.device)
    while True:  # label propagation: every neuron takes the smallest label of its component
        pair = torch.minimum(label[src], label[dst])
        new = label.scatter_reduce(0, src, pair, "amin").scatter_reduce(0, dst, pair, "amin")
        if torch.equal(new, label):
            return label
        label = new
