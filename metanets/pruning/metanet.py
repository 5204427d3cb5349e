"""The pruning metanetwork: a graph metanetwork that rewrites a trained network's weights so
that it keeps its task loss while whole channel groups become small; magnitude pruning of the
rewritten network then removes little that matters.

Following "Meta Pruning via Graph Metanetworks" (Liu et al.): the network's parameter graph
(:mod:`metanets.graphs`) goes through a :class:`~metanets.gmn.GMN` whose equivariant per-edge
head outputs a correction of every weight (``w' = w + scale * head``, the head's last layer
initialised at zero so an untrained metanetwork is the identity). Only dense and convolution
weights are rewritten; biases and normalisation parameters stay. The metanetwork is trained on a
zoo of networks to minimise

    cross-entropy of the rewritten network on training images
    + lambda * group lasso(rewritten) / group lasso(original),

where the group lasso sums, over every channel neuron of the parameter graph (hidden, norm and
residual-sum nodes), the L2 norm of its incoming and outgoing weights (the weights that go when
the channel is pruned). Because the rewritten weights are written into the network through the
graph's ``param_slots``, the task loss is differentiable with respect to the metanetwork.
"""
from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from metanets.gmn import GMN, GMNConfig, _slot, load_gmn, prepare_graph, save_gmn
from metanets.graphs import EdgeFeature, EdgeType, NodeType, to_parameter_graph

#: edge types whose weights the metanetwork rewrites
REWRITTEN_EDGES: tuple[int, ...] = (int(EdgeType.DENSE), int(EdgeType.CONV))
#: node types that are prunable channels
CHANNEL_NODES: tuple[int, ...] = (int(NodeType.HIDDEN), int(NodeType.NORM), int(NodeType.SUM))


@dataclasses.dataclass(frozen=True)
class MetanetTrainConfig:
    """How to train a pruning metanetwork on a zoo."""

    lam: float = 1.0          # weight of the relative group lasso
    steps: int = 200          # optimisation steps (one zoo network per step)
    lr: float = 1e-3          # Adam learning rate
    batch_size: int = 128     # training images per step
    hidden: int = 32          # GMN width
    layers: int = 2           # GMN layers
    seed: int = 0


@dataclasses.dataclass
class _Network:
    """A zoo network with its parameter graph, prepared graph and group-lasso reference."""

    module: nn.Module
    raw: Any
    prepared: Any
    reference: float


def group_lasso(graph: Any, edge_attr: Tensor) -> Tensor:
    """Sum over channel neurons of the L2 norm of their incoming and outgoing weights."""
    mask = _rewritten_mask(graph).float()[:, None]
    sq = (edge_attr * mask).pow(2).sum(dim=1)  # (E,)
    n = int(graph.num_nodes)
    src, dst = graph.edge_index
    per_node = scatter(sq, dst, 0, dim_size=n, reduce="sum") + scatter(sq, src, 0, dim_size=n,
                                                                       reduce="sum")
    channel = torch.isin(graph.node_type.long(), torch.tensor(CHANNEL_NODES))
    return (per_node[channel] + 1e-12).sqrt().sum()


def _rewritten_mask(graph: Any) -> Tensor:
    return torch.isin(graph.edge_type.long(), torch.tensor(REWRITTEN_EDGES))


def state_from_graph(graph: Any, edge_attr: Tensor, module: nn.Module) -> dict[str, Tensor]:
    """``module``'s parameters and buffers with the edge weights taken from ``edge_attr``
    (differentiable in ``edge_attr``; the inverse of the conversion's ``param_slots``)."""
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
            [old[:slot.offset], values.to(old.dtype), old[slot.offset + slot.numel:]])
    return {name: flat[name].view(state[name].shape) for name in state}


class PruningMetanet(nn.Module):
    """A GMN with an edge head of ``kernel_width`` outputs that rewrites weights (see the module
    docstring).

    Args:
        gmn: the graph metanetwork (``out_edge == kernel_width``).
        inputs: example inputs to trace the networks it rewrites (shapes only).
    """

    def __init__(self, gmn: GMN, inputs: Sequence[Tensor]) -> None:
        super().__init__()
        if gmn.config.out_edge != gmn.config.kernel_width:
            raise ValueError(f"pruning metanetwork needs out_edge == kernel_width, got "
                             f"{gmn.config.out_edge} and {gmn.config.kernel_width}")
        self.gmn, self.inputs = gmn, tuple(inputs)

    @classmethod
    def create(cls, inputs: Sequence[Tensor], hidden: int = 32, layers: int = 2,
               kernel_width: int = 9) -> PruningMetanet:
        gmn = GMN(GMNConfig(hidden=hidden, layers=layers, out_edge=kernel_width,
                            kernel_width=kernel_width))
        last = gmn.edge_head[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)  # an untrained metanetwork changes nothing
        return cls(gmn, inputs)

    def graph_of(self, module: nn.Module) -> Any:
        was_training = module.training
        module.eval()
        graph = to_parameter_graph(module, self.inputs, kernel_width=self.gmn.config.kernel_width)
        module.train(was_training)
        return graph

    def rewrite(self, raw: Any, prepared: Any) -> Tensor:
        """Rewritten ``edge_attr`` ``(E, K)`` of one network's parameter graph."""
        from torch_geometric.data import Batch

        batch = Batch.from_data_list([prepared])
        _, delta = self.gmn.forward_all(batch)  # (E, K)
        scale = self.gmn.scaler.edge_scale[_slot(batch.edge_type, batch.edge_layer)][:, None]
        width = raw.edge_attr.size(1)
        kernel = (torch.arange(width)[None, :] < raw.edge_kernel_len.long()[:, None]).float()
        mask = kernel * _rewritten_mask(raw).float()[:, None]
        return raw.edge_attr.float() + delta * scale * mask

    @torch.no_grad()
    def transform(self, module: nn.Module) -> nn.Module:
        """``module`` with rewritten weights (in place; pass a copy to keep the original)."""
        raw = self.graph_of(module)
        new = self.rewrite(raw, prepare_graph(raw))
        module.load_state_dict(state_from_graph(raw, new, module))
        return module

    def save(self, folder: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        shapes = [list(t.shape) for t in self.inputs]
        return save_gmn(self.gmn, folder, {"purpose": "pruning", "input_shapes": shapes,
                                           **(metadata or {})})


def load_pruning_metanet(folder: str | Path) -> PruningMetanet:
    """A saved pruning metanetwork (safetensors + JSON, see :func:`metanets.gmn.load_gmn`)."""
    gmn, metadata = load_gmn(folder)
    if metadata.get("purpose") != "pruning":
        raise ValueError(f"{folder} holds a metanetwork trained for "
                         f"{metadata.get('purpose', 'accuracy prediction')!r}, not for pruning")
    inputs = [torch.zeros(shape) for shape in metadata["input_shapes"]]
    return PruningMetanet(gmn, inputs)


def train_pruning_metanet(
    models: Sequence[nn.Module], images: Tensor, labels: Tensor, inputs: Sequence[Tensor],
    config: MetanetTrainConfig = MetanetTrainConfig(), log: Any = None,
) -> PruningMetanet:
    """Fit a pruning metanetwork on a zoo of trained image networks.

    Args:
        models: the zoo (trained networks; not modified).
        images, labels: training images ``(N, C, H, W)`` and labels ``(N,)`` for the task loss.
        inputs: example inputs to trace the networks (shapes only).
        config: see :class:`MetanetTrainConfig`.
        log: ``log(step, task_loss, relative_lasso)`` every 20 steps.
    """
    from torch.func import functional_call

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    metanet = PruningMetanet.create(inputs, config.hidden, config.layers)
    networks = [_network(metanet, model) for model in models]
    metanet.gmn.scaler.fit([n.prepared for n in networks])
    optimizer = torch.optim.Adam(metanet.parameters(), lr=config.lr)
    metanet.train()
    for step in range(1, config.steps + 1):
        network = rng.choice(networks)
        index = torch.randint(0, len(images), (config.batch_size,))
        new = metanet.rewrite(network.raw, network.prepared)
        state = state_from_graph(network.raw, new, network.module)
        logits = functional_call(network.module, state, (images[index],))
        task = nn.functional.cross_entropy(logits, labels[index])
        lasso = group_lasso(network.raw, new) / network.reference
        loss = task + config.lam * lasso
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if log is not None and (step % 20 == 0 or step == 1):
            log(step, float(task.detach()), float(lasso.detach()))
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"metanetwork loss became {float(loss)} at step {step}")
    metanet.eval()
    return metanet


def _network(metanet: PruningMetanet, model: nn.Module) -> _Network:
    module = model.eval()
    raw = metanet.graph_of(module)
    reference = float(group_lasso(raw, raw.edge_attr.float()))
    return _Network(module, raw, prepare_graph(raw), max(reference, 1e-12))
