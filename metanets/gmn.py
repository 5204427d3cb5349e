"""A graph metanetwork (GMN): message passing over parameter graphs that updates node and edge
features, with an invariant readout (one prediction per network: e.g. its test accuracy) and
an equivariant per-edge head (one output per weight: e.g. a pruning score).

Parameter graphs (:func:`metanets.graphs.to_parameter_graph`) put a node per neuron / channel
and an edge per weight (a convolution's kernel on its channel edge). Permuting the hidden
neurons of a network permutes the nodes and edges of its graph and changes nothing else, so a
message-passing network over the graph is equivariant to those permutations by construction,
and a pooled readout is invariant. Networks of different architectures are batched with
``torch_geometric.data.Batch`` like any graphs.

Inputs are normalised per layer: weights are divided by a scale fitted on the training zoo for
each (edge type, layer index) and node features standardised per (node type, layer index, column)
(:class:`FeatureScaler`), so that weights of wide and narrow layers, convolutions and
classifiers are on one scale; the network sees the layer index and type as embeddings and the
log in/out degree (fan-in, fan-out) of every neuron.

With ``GMNConfig.probes`` the readout also reads how each network behaves: its answers to a
few learned input probes (:mod:`metanets.probes`), invariant to the same permutations by
construction. The networks themselves (module + weights) are then passed with their graphs.

References: Lim et al., "Graph Metanetworks for Processing Diverse Neural Architectures", ICLR
2024; Kofinas et al., "Graph Neural Networks for Learning Equivariant Representations of Neural
Networks", ICLR 2024 (neural graphs, the 0.934 Kendall tau on CIFAR10-GS).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import degree, scatter

from metanets.graphs.features import EdgeFeature, EdgeType, NodeFeature, NodeType
from metanets.probes import PROBE_INITS, ProbedNetwork, ProbeEncoder
from metanets.saved import built, config_from_json, load_checked
from nas.train import check_counts

if TYPE_CHECKING:
    from torch_geometric.data import Batch, Data

#: layer indices at or above this share one embedding and one normalisation slot
MAX_LAYERS = 16
NUM_NODE_TYPES = len(NodeType)
NUM_EDGE_TYPES = len(EdgeType)
NODE_COLUMNS = len(NodeFeature)
#: structure columns of prepared nodes: log in/out degree, relative layer, dropped-input mean/RMS
STRUCT_COLUMNS = 5
#: global weight statistics the readout sees besides the pooled features (see GMN.global_stats)
GLOBAL_STATS = 4
CONFIG_FILE, WEIGHTS_FILE = "metanet.json", "metanet.safetensors"
#: what a saved metanetwork was trained for, as its metadata's ``purpose`` records it (a
#: metanetwork saved without one predicts accuracy: ``metanas metanet train``)
ACCURACY_PREDICTION, PRUNING = "accuracy prediction", "pruning"


def prepare_graph(data: Data, max_inputs: int = 0) -> Data:
    """The tensors a :class:`GMN` reads from a parameter graph, with per-graph structure
    features precomputed (log in/out degree, relative layer position, kernel mask); prepare
    every graph once and batch the results.

    Networks with very many inputs (a GNN on Cora's 1,433 bag-of-words features: 1,433 x width
    first-layer edges) are summarised when ``max_inputs`` is set and exceeded: the input neurons
    and their edges are dropped and each neuron they fed gets the mean and root mean square of
    its dropped incoming weights as features (still invariant to hidden-neuron permutations).

    Shapes:
        ``x`` ``(N, NODE_COLUMNS)``, ``node_type``/``node_layer`` ``(N,)`` int64, ``node_struct``
        ``(N, STRUCT_COLUMNS)``; ``edge_attr`` ``(E, K)``, ``edge_type``/``edge_layer`` ``(E,)``
        int64, ``edge_struct`` ``(E, 2)``.
    """
    from torch_geometric.data import Data

    n = int(data.num_nodes)
    src, dst = data.edge_index
    log_in = torch.log1p(degree(dst, n))
    log_out = torch.log1p(degree(src, n))
    node_layer = data.node_layer.long()
    depth = max(int(node_layer.max()), 1) if n else 1
    dropped = torch.zeros(n, 2)  # mean and RMS of dropped incoming input weights
    is_input = data.node_type == NodeType.INPUT
    if max_inputs and int(is_input.sum()) > max_inputs:
        return _summarise_inputs(data, is_input, log_in, log_out, depth)
    node_struct = torch.cat(
        [torch.stack([log_in, log_out, node_layer.float() / depth], dim=1), dropped], 1)
    kernel_len = data.edge_kernel_len.float()
    edge_struct = torch.stack([kernel_len / data.edge_attr.size(1),
                               data.edge_layer.float() / depth], dim=1)  # (E, 2)
    return Data(
        x=data.x.float(), node_type=data.node_type.long(), node_layer=node_layer,
        node_struct=node_struct, edge_index=data.edge_index, edge_attr=data.edge_attr.float(),
        edge_type=data.edge_type.long(), edge_layer=data.edge_layer.long(),
        edge_struct=edge_struct, num_nodes=n,
    )


def _summarise_inputs(data: Data, is_input: Tensor, log_in: Tensor, log_out: Tensor,
                      depth: int) -> Data:
    from torch_geometric.data import Data

    n = int(data.num_nodes)
    src, dst = data.edge_index
    from_input = is_input[src]
    w = data.edge_attr[from_input, EdgeFeature.WEIGHT].float()
    target = dst[from_input]
    mean = scatter(w, target, 0, dim_size=n, reduce="mean")
    rms = scatter(w.pow(2), target, 0, dim_size=n, reduce="mean").sqrt()
    keep = ~is_input
    new_id = torch.full((n,), -1, dtype=torch.long)
    new_id[keep] = torch.arange(int(keep.sum()))
    edges = ~from_input
    node_layer = data.node_layer.long()
    node_struct = torch.stack(
        [log_in, log_out, node_layer.float() / depth, mean, rms], dim=1)[keep]
    edge_attr = data.edge_attr[edges].float()
    return Data(
        x=data.x[keep].float(), node_type=data.node_type[keep].long(),
        node_layer=node_layer[keep], node_struct=node_struct,
        edge_index=new_id[data.edge_index[:, edges]], edge_attr=edge_attr,
        edge_type=data.edge_type[edges].long(), edge_layer=data.edge_layer[edges].long(),
        edge_struct=torch.stack([data.edge_kernel_len[edges].float() / edge_attr.size(1),
                                 data.edge_layer[edges].float() / depth], dim=1),
        num_nodes=int(keep.sum()),
    )


def _slot(types: Tensor, layers: Tensor) -> Tensor:
    return types * MAX_LAYERS + layers.clamp(0, MAX_LAYERS - 1)


class FeatureScaler(nn.Module):
    """Per-layer normalisation of parameter-graph features, fitted on training graphs.

    Edge weights are divided by their root mean square per (edge type, layer index); node
    features are standardised per (node type, layer index, column). Slots never seen in
    fitting fall back to the statistics over all slots. The statistics are buffers: they are
    saved with the model.

    Args:
        kernel_width: ``edge_attr`` columns.
    """

    def __init__(self, kernel_width: int = 9) -> None:
        super().__init__()
        self.register_buffer("edge_scale", torch.ones(NUM_EDGE_TYPES * MAX_LAYERS))
        self.register_buffer("node_mean", torch.zeros(NUM_NODE_TYPES * MAX_LAYERS, NODE_COLUMNS))
        self.register_buffer("node_std", torch.ones(NUM_NODE_TYPES * MAX_LAYERS, NODE_COLUMNS))
        self.kernel_width = kernel_width

    @torch.no_grad()
    def fit(self, graphs: Sequence[Data]) -> FeatureScaler:
        """Fit on prepared graphs (:func:`prepare_graph`)."""
        from torch_geometric.data import Batch

        batch = Batch.from_data_list(list(graphs))
        eslot = _slot(batch.edge_type, batch.edge_layer)
        mask = self._kernel_mask(batch)
        sq = (batch.edge_attr.pow(2) * mask).sum(1)
        count = mask.sum(1)
        sums = scatter(sq, eslot, 0, dim_size=self.edge_scale.numel(), reduce="sum")
        counts = scatter(count, eslot, 0, dim_size=self.edge_scale.numel(), reduce="sum")
        global_rms = (sq.sum() / count.sum().clamp(min=1)).sqrt().clamp(min=1e-6)
        rms = (sums / counts.clamp(min=1)).sqrt()
        self.edge_scale.copy_(torch.where((counts > 0) & (rms > 1e-8), rms, global_rms))
        nslot = _slot(batch.node_type, batch.node_layer)
        size = self.node_mean.size(0)
        mean = scatter(batch.x, nslot, 0, dim_size=size, reduce="mean")
        sq_mean = scatter(batch.x.pow(2), nslot, 0, dim_size=size, reduce="mean")
        std = (sq_mean - mean.pow(2)).clamp(min=0).sqrt()
        seen = scatter(torch.ones_like(nslot, dtype=torch.float), nslot, 0, dim_size=size) > 0
        g_mean, g_std = batch.x.mean(0), batch.x.std(0).clamp(min=1e-6)
        self.node_mean.copy_(torch.where(seen[:, None], mean, g_mean))
        self.node_std.copy_(torch.where(seen[:, None] & (std > 1e-6), std, g_std))
        return self

    def _kernel_mask(self, batch: Data) -> Tensor:
        """``(E, K)``: 1 where an ``edge_attr`` column holds a weight (not padding)."""
        width = batch.edge_attr.size(1)
        kernel_len = (batch.edge_struct[:, 0] * width).round()
        cols = torch.arange(width, device=kernel_len.device)
        return (cols[None, :] < kernel_len[:, None]).float()

    def forward(self, batch: Data) -> tuple[Tensor, Tensor]:
        """``(normalised node features (N, F), normalised weights (E, K))``."""
        nslot = _slot(batch.node_type, batch.node_layer)
        x = (batch.x - self.node_mean[nslot]) / self.node_std[nslot]
        w = batch.edge_attr / self.edge_scale[_slot(batch.edge_type, batch.edge_layer)][:, None]
        return x.clamp(-10, 10), w.clamp(-10, 10)


class _DirectedMessages(MessagePassing):
    """Mean of ``MLP([h_j, e_ij])`` over the edges arriving at each node (PyG message passing);
    the backward direction runs on the flipped edges."""

    def __init__(self, hidden: int) -> None:
        super().__init__(aggr="mean")
        self.lin = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, h: Tensor, edge_index: Tensor, e: Tensor) -> Tensor:
        return self.propagate(edge_index, h=h, e=e)

    def message(self, h_j: Tensor, e: Tensor) -> Tensor:  # (E, d)
        return self.lin(torch.cat([h_j, e], dim=-1))


class GMNLayer(nn.Module):
    """One GMN layer: edges updated from their two endpoint neurons, neurons from the mean
    message of their incoming (forward) and outgoing (backward) edges; residual + LayerNorm.

    Args:
        hidden: feature size of nodes and edges.

    Shapes:
        ``(h (N, d), e (E, d), edge_index (2, E)) -> (h (N, d), e (E, d))``.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.edge_mlp = nn.Sequential(
            nn.Linear(3 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.forward_messages = _DirectedMessages(hidden)
        self.backward_messages = _DirectedMessages(hidden)
        self.node_mlp = nn.Sequential(
            nn.Linear(3 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.edge_norm, self.node_norm = nn.LayerNorm(hidden), nn.LayerNorm(hidden)

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor) -> tuple[Tensor, Tensor]:
        src, dst = edge_index
        e = self.edge_norm(e + self.edge_mlp(torch.cat([h[src], h[dst], e], dim=-1)))
        incoming = self.forward_messages(h, edge_index, e)
        outgoing = self.backward_messages(h, edge_index.flip(0), e)
        h = self.node_norm(h + self.node_mlp(torch.cat([h, incoming, outgoing], dim=-1)))
        return h, e

    def reset_parameters(self) -> None:
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()


@dataclasses.dataclass(frozen=True)
class GMNConfig:
    """Hyper-parameters of a :class:`GMN` (saved as JSON next to its weights)."""

    hidden: int = 64          # node and edge feature size
    layers: int = 3           # GMN layers
    out_graph: int = 1        # outputs of the invariant readout per network
    out_edge: int = 0         # outputs of the equivariant per-edge head (0: no head)
    kernel_width: int = 9     # edge_attr columns of the graphs it reads
    dropout: float = 0.0      # dropout before the readout MLP
    max_inputs: int = 0       # summarise networks with more input neurons (0: never), see prepare_graph
    probes: int = 0           # learned probe inputs whose answers the readout reads too (0: none)
    probe_shape: tuple[int, ...] = ()  # shape of one probe: the probed networks' input shape
    probe_outputs: int = 0    # outputs of the probed networks (classes)
    probe_init: str = "noise"  # probes start from noise or from task inputs (metanets.probes)
    graph_branch: bool = True  # read the parameter graph (False: probes only, an ablation)

    def __post_init__(self) -> None:
        check_counts(self, hidden=1, layers=0, out_graph=0, out_edge=0, kernel_width=1, max_inputs=0,
                     probes=0, probe_outputs=0)
        object.__setattr__(self, "probe_shape", tuple(int(s) for s in self.probe_shape))
        if self.probes and (not self.probe_shape or self.probe_outputs < 1):
            raise ValueError(
                f"probes={self.probes} needs probe_shape (got {self.probe_shape!r}) and "
                f"probe_outputs >= 1 (got {self.probe_outputs})")
        if self.probes and self.probe_init not in PROBE_INITS:
            raise ValueError(
                f"probe init {self.probe_init!r} is not among the choices {list(PROBE_INITS)}")
        if not self.graph_branch and (not self.probes or self.out_edge):
            raise ValueError("graph_branch=False needs probes > 0 and no per-edge head (out_edge=0)")


class GMN(nn.Module):
    """Graph metanetwork over (batches of) parameter graphs; see the module docstring.

    Args:
        config: hyper-parameters (:class:`GMNConfig`).

    Shapes:
        ``forward(batch)``: prepared graphs (:func:`prepare_graph`) batched with
        ``Batch.from_data_list`` -> ``(B, out_graph)``; ``forward_all`` also returns the per-edge
        outputs ``(E, out_edge)`` in the batch's edge order.
    """

    def __init__(self, config: GMNConfig = GMNConfig()) -> None:
        super().__init__()
        self.config = config
        d = config.hidden
        self.scaler = FeatureScaler(config.kernel_width)
        self.node_type_emb = nn.Embedding(NUM_NODE_TYPES, d)
        self.edge_type_emb = nn.Embedding(NUM_EDGE_TYPES, d)
        self.node_layer_emb = nn.Embedding(MAX_LAYERS, d)
        self.edge_layer_emb = nn.Embedding(MAX_LAYERS, d)
        self.node_in = nn.Linear(NODE_COLUMNS + STRUCT_COLUMNS, d)
        self.edge_in = nn.Linear(config.kernel_width + 2, d)
        self.layers = nn.ModuleList(GMNLayer(d) for _ in range(config.layers))
        self.probe = (
            ProbeEncoder(config.probes, config.probe_shape, config.probe_outputs, d,
                         init=config.probe_init)
            if config.probes else None
        )
        readout_in = (5 * d + GLOBAL_STATS if config.graph_branch else 0) + (d if config.probes else 0)
        self.readout = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(readout_in, d), nn.SiLU(),
            nn.Linear(d, config.out_graph))
        self.edge_head = (
            nn.Sequential(nn.Linear(3 * d, d), nn.SiLU(), nn.Linear(d, config.out_edge))
            if config.out_edge else None
        )
        # targets are standardised for training; predictions are mapped back with these
        self.register_buffer("target_mean", torch.zeros(config.out_graph))
        self.register_buffer("target_std", torch.ones(config.out_graph))

    def encode(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Node and edge features after the GMN layers: ``(N, d)``, ``(E, d)``."""
        x, w = self.scaler(batch)
        layer_n = batch.node_layer.clamp(0, MAX_LAYERS - 1)
        layer_e = batch.edge_layer.clamp(0, MAX_LAYERS - 1)
        h = self.node_in(torch.cat([x, batch.node_struct], -1))
        h = h + self.node_type_emb(batch.node_type) + self.node_layer_emb(layer_n)
        e = self.edge_in(torch.cat([w, batch.edge_struct], -1))
        e = e + self.edge_type_emb(batch.edge_type) + self.edge_layer_emb(layer_e)
        for layer in self.layers:
            h, e = layer(h, e, batch.edge_index)
        return h, e

    def pool(self, batch: Batch, h: Tensor, e: Tensor) -> Tensor:
        """Invariant summary per network ``(B, 5d)``: mean and max over neurons, mean over
        weights, mean over the output neurons and over the input neurons."""
        size = int(batch.num_graphs)
        node_graph = batch.batch
        edge_graph = node_graph[batch.edge_index[0]]
        out_mask = (batch.node_type == NodeType.OUTPUT).float()[:, None]
        in_mask = (batch.node_type == NodeType.INPUT).float()[:, None]
        parts = [
            scatter(h, node_graph, 0, dim_size=size, reduce="mean"),
            scatter(h, node_graph, 0, dim_size=size, reduce="max"),
            scatter(e, edge_graph, 0, dim_size=size, reduce="mean"),
            _masked_mean(h, out_mask, node_graph, size),
            _masked_mean(h, in_mask, node_graph, size),
        ]
        return torch.cat(parts, dim=-1)

    def global_stats(self, batch: Batch) -> Tensor:
        """``(B, GLOBAL_STATS)`` permutation-invariant statistics of the raw weights: log mean
        square of all, of convolution and of dense weights, and of the per-neuron biases (the
        weight norm alone ranks partly trained networks well; the readout gets it directly)."""
        size = int(batch.num_graphs)
        edge_graph = batch.batch[batch.edge_index[0]]
        mask = self.scaler._kernel_mask(batch)
        sq = (batch.edge_attr.pow(2) * mask).sum(1)
        count = mask.sum(1)
        stats = []
        for keep in (torch.ones_like(sq, dtype=torch.bool), batch.edge_type == EdgeType.CONV,
                     batch.edge_type == EdgeType.DENSE):
            total = scatter(sq * keep, edge_graph, 0, dim_size=size, reduce="sum")
            n = scatter(count * keep, edge_graph, 0, dim_size=size, reduce="sum")
            stats.append(torch.log(total / n.clamp(min=1) + 1e-8))
        bias = scatter(batch.x[:, NodeFeature.BIAS].pow(2), batch.batch, 0, dim_size=size,
                       reduce="mean")
        stats.append(torch.log(bias + 1e-8))
        return torch.stack(stats, dim=1)

    def forward(self, batch: Batch, networks: Sequence[ProbedNetwork] | None = None) -> Tensor:
        """Per-network predictions ``(B, out_graph)`` in target units; ``networks`` (the same
        networks as the graphs, in order) are needed when the GMN reads probes."""
        return self.forward_all(batch, networks)[0]

    def forward_all(
        self, batch: Batch, networks: Sequence[ProbedNetwork] | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``(per-network (B, out_graph), per-edge (E, out_edge) or None)``."""
        features = []
        if self.config.graph_branch:
            h, e = self.encode(batch)
            features += [self.pool(batch, h, e), self.global_stats(batch)]
        if self.probe is not None:
            if networks is None or len(networks) != int(batch.num_graphs):
                raise ValueError(
                    f"this GMN reads probe answers: pass the {int(batch.num_graphs)} networks "
                    f"(module + weights) with their graphs, got "
                    f"{'none' if networks is None else len(networks)}")
            features.append(self.probe(networks))
        graph_out = self.readout(torch.cat(features, dim=-1)) * self.target_std + self.target_mean
        edge_out = None
        if self.edge_head is not None:
            src, dst = batch.edge_index
            edge_out = self.edge_head(torch.cat([e, h[src], h[dst]], dim=-1))
        return graph_out, edge_out

    def __repr__(self) -> str:
        c = self.config
        probes = f", probes={c.probes}" if c.probes else ""
        graph = "" if c.graph_branch else ", graph_branch=False"
        return (f"GMN(hidden={c.hidden}, layers={c.layers}, out_graph={c.out_graph}, "
                f"out_edge={c.out_edge}{probes}{graph})")


def _masked_mean(h: Tensor, mask: Tensor, index: Tensor, size: int) -> Tensor:
    total = scatter(h * mask, index, 0, dim_size=size, reduce="sum")
    count = scatter(mask, index, 0, dim_size=size, reduce="sum").clamp(min=1)
    return total / count


def collate(graphs: Sequence[Data], max_inputs: int = 0) -> Batch:
    """Batch graphs of any architectures (prepared with :func:`prepare_graph` if they are not
    yet)."""
    from torch_geometric.data import Batch

    return Batch.from_data_list(
        [g if "node_struct" in g else prepare_graph(g, max_inputs) for g in graphs])


# saving -------------------------------------------------------------------------------------
def save_gmn(
    model: GMN, folder: str | Path, metadata: dict[str, Any] | None = None,
    extra_files: dict[str, dict[str, Tensor]] | None = None,
) -> Path:
    """Write ``metanet.safetensors`` (and ``extra_files``, name to tensors), then ``metanet.json``
    (config, metadata and every tensor file's SHA-256) into ``folder``.

    Each file is written to a temporary name and renamed, the JSON last. Into a folder that
    already holds a metanetwork the tensor files go to names of their own (``metanet.<16 hex
    digits of their SHA-256>.safetensors``, listed under ``files`` in the JSON), so the earlier
    metanetwork stays whole until the new JSON replaces its own in one rename; its tensor files
    are removed after that (:func:`storage.store.write_model_folder`). A save killed at any
    point leaves the earlier metanetwork (or, in a new folder, no ``metanet.json``), never one
    that loads half-written.
    """
    from storage.store import encode_state_dict, sha256, write_model_folder

    folder = Path(folder)
    blobs = {name: encode_state_dict(state)
             for name, state in {WEIGHTS_FILE: model.state_dict(), **(extra_files or {})}.items()}
    checksums = {name: sha256(blob) for name, blob in blobs.items()}

    def spec_naming(files: dict[str, str]) -> bytes:
        named = {"files": files} if any(name != file for name, file in files.items()) else {}
        return json.dumps({"kind": "gmn", "config": dataclasses.asdict(model.config),
                           "metadata": metadata or {}, "sha256": checksums, **named},
                          indent=2, sort_keys=True).encode()

    write_model_folder(folder, CONFIG_FILE, blobs, spec_naming, replaced=_saved_checksums(folder))
    return folder


def purpose(metadata: dict[str, Any]) -> str:
    """What the metanetwork of ``metadata`` (a saved one's) was trained for: :data:`PRUNING` or
    :data:`ACCURACY_PREDICTION`, which one saved without a purpose was."""
    return metadata.get("purpose", ACCURACY_PREDICTION)


def _saved_checksums(folder: Path) -> dict[str, str]:
    """The tensor files (by name) of the metanetwork ``folder`` holds (none: it holds none)."""
    if not (folder / CONFIG_FILE).is_file():
        return {}
    try:
        return dict(json.loads((folder / CONFIG_FILE).read_text()).get("sha256", {}))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return {}


def _read_checked(folder: Path, checksums: dict[str, str],
                  files: dict[str, str]) -> dict[str, dict[str, Tensor]]:
    """The tensors of the files a ``metanet.json`` was saved with (older ones list none), by
    name, each from the file ``files`` names for it (default: the name itself) and decoded from
    the very bytes whose SHA-256 was checked (read once: no second read that a file changed in
    between could slip through)."""
    from storage import ChecksumError
    from storage.store import decode_state_dict, sha256

    states = {}
    for name, expected in checksums.items():
        path = folder / _named_file(folder, name, files)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the metanetwork was saved with it")
        blob = path.read_bytes()
        if sha256(blob) != expected:
            raise ChecksumError(f"{path} does not match the SHA-256 in {CONFIG_FILE} (a "
                                f"save into {folder} was interrupted, or the file was changed)")
        states[name] = decode_state_dict(blob)
    return states


def _named_file(folder: Path, name: str, files: dict[str, str]) -> str:
    """The file ``metanet.json``'s ``files`` names for tensor file ``name``: one of its own
    names in the folder, never a path elsewhere (:func:`storage.store.named_tensor_file`)."""
    from storage.store import named_tensor_file

    return named_tensor_file(folder / CONFIG_FILE, name, files.get(name)).name


def load_gmn(folder: str | Path) -> tuple[GMN, dict[str, Any]]:
    """A saved GMN (never unpickles) and its metadata; ``FileNotFoundError`` naming the folder."""
    model, metadata, _ = load_gmn_files(folder)
    return model, metadata


def load_gmn_files(folder: str | Path) -> tuple[GMN, dict[str, Any], dict[str, dict[str, Tensor]]]:
    """:func:`load_gmn`, and the tensors of every file the folder's ``metanet.json`` lists with
    a checksum (e.g. a pruning metanetwork's gate), by file name."""
    from storage.store import decode_state_dict

    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{folder} is not a saved metanetwork: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        spec = json.loads((folder / CONFIG_FILE).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{folder / CONFIG_FILE} is not JSON ({error}): not a saved metanetwork") from None
    if not isinstance(spec, dict) or spec.get("kind") != "gmn":
        kind = spec.get("kind") if isinstance(spec, dict) else type(spec).__name__
        raise ValueError(f"{folder / CONFIG_FILE} holds a {kind!r}, not a 'gmn'")
    files = spec.get("files", {})
    if not (folder / _named_file(folder, WEIGHTS_FILE, files)).is_file():
        raise FileNotFoundError(
            f"{folder} is not a saved metanetwork: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    config, metadata = _saved_config(spec, folder / CONFIG_FILE), spec.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"{folder / CONFIG_FILE} is no usable metanetwork: its metadata is a "
                         f"JSON {type(metadata).__name__}, not an object")
    states = _read_checked(folder, spec.get("sha256", {}), files)
    model = built(GMN, config, folder / CONFIG_FILE, "metanetwork")
    weights = states.get(WEIGHTS_FILE)
    load_checked(model, weights if weights is not None
                 else decode_state_dict((folder / WEIGHTS_FILE).read_bytes()),
                 folder / _named_file(folder, WEIGHTS_FILE, files), "metanetwork")
    model.eval()
    return model, metadata, states


def _saved_config(spec: dict[str, Any], path: Path) -> GMNConfig:
    """The :class:`GMNConfig` of the ``metanet.json`` at ``path`` (``spec``); ``ValueError``
    naming the file when there is none or it is no config a GMN can be built from."""
    config = spec.get("config")
    if config is None:
        why = "its config is missing"
    elif not isinstance(config, dict):
        why = f"its config is a JSON {type(config).__name__}, not an object"
    else:
        try:
            return config_from_json(GMNConfig, config, "metanetwork")
        except (TypeError, ValueError) as error:  # fields missing, unknown, mistyped, out of range
            why = f"its config is unusable ({error})"
    raise ValueError(f"{path} is no usable metanetwork: {why}")


__all__ = [
    "ACCURACY_PREDICTION", "FeatureScaler", "GMN", "GMNConfig", "GMNLayer", "PRUNING", "collate",
    "load_gmn", "load_gmn_files", "prepare_graph", "purpose", "save_gmn",
]
