"""Graph hypernetwork: all parameters of an unseen architecture in one forward pass.

A :class:`GraphHyperNetwork` (GHN) reads the computation graph of a network
(:func:`metanets.graphs.to_computation_graph`: a node per operation, data-flow edges and virtual
shortest-path edges) and predicts every parameter tensor of every supported layer, as in GHN-2
(Knyazev et al., "Parameter Prediction for Unseen Deep Architectures", NeurIPS 2021).

Encoder: node embeddings from the op type, the log of the op's weight shape and two structural
flags (the op reads the raw task input / feeds the output without another weight in between);
then ``rounds`` rounds of gated message passing along all edges, forward and backward, each edge
gated by a learned function of its shortest-path distance (GHN-2's virtual edges: distance 1 is
data flow, ``2..max_distance`` are shortcuts), a GRU update and layer normalisation of the
embeddings (GHN-2's normalisation).

Decoder (low rank, as in LoGAH, Zhou et al. 2024, so its size does not grow with width): every
parameter tensor is ``R · M · Cᵀ`` per kernel position, where ``M`` is a ``rank x rank`` matrix
decoded from the op's embedding plus an embedding of the tensor's role (``GATConv:att_src``,
``TAGConv:lins.#.weight`` with the hop index, kernel position: a 2-d kernel's offset from its
centre, so 3x3 and 5x5 kernels share the embedding of each offset), and ``R``/``C`` are row tables
indexed by channel: a fixed random basis for hidden channels (so any width works and channel ``i``
of one layer is read consistently by the next), a learned table for the task's classes, and
for its input features either a learned table or a fixed data basis (the features' leading
right singular vectors; for tasks with few labels, where a learned table memorises them). Vectors (biases, norm scales, attention vectors) are ``R · u``. Predicted weights
are normalised by fan-in (GHN-2's weight normalisation): ``sqrt(rank / fan_in)`` where the input
is raw task features (Kaiming scale at initialisation) and ``rank / fan_in`` between hidden
layers (the mean over channels of a low-rank signal, the same for every width). With
``weight_norm="op"`` (operation-wise, in the spirit of GHN-2) every matrix is instead rescaled to
Kaiming's root-mean-square entry ``sqrt(2 / fan_in)`` times a gain decoded per tensor and bounded
to ``exp(+-3)``, so the scale no longer has to be learned per width and position.

Buffers (BatchNorm running statistics, GIN's ``eps``) are not predicted: they keep the built
module's values; :func:`calibrate_batchnorm` recomputes running statistics from a batch.

Checkpoints are one safetensors file with the JSON config in its metadata (no pickle).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from metanets.graphs import (
    OP_TYPES,
    OpEdgeFeature,
    OpFeature,
    UnsupportedOperationError,
    to_computation_graph,
)
from metanets.saved import built, config_from_json, load_checked
from nas.train import kept_modes

#: ``pretrained:<name>`` checkpoints shipped with the package (see experiments/train_hypernets.py)
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
CHECKPOINT_FORMAT = 1
#: how the GHN represents the task's input features (``GHNConfig.feature_basis``)
FEATURE_BASES: tuple[str, ...] = ("learned", "data")
#: how predicted weight matrices are scaled (``GHNConfig.weight_norm``)
WEIGHT_NORMS: tuple[str, ...] = ("fan", "op")
#: bound of the decoded log-gain of ``weight_norm="op"`` (gains lie in ``exp(+-bound)``)
LOG_GAIN_BOUND = 3.0

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
_DIGITS = re.compile(r"\d+")


class UnsupportedLayerError(ValueError):
    """A layer of the network has a parameter the hypernetwork cannot produce.

    Args:
        op: the layer's type (``"Bilinear"``).
        path: its module path (``"layers.1.conv"``).
        params: the parameter names it cannot produce.
        supported: the layer types the hypernetwork produces.
    """

    def __init__(self, op: str, path: str, params: Sequence[str], supported: Sequence[str],
                 reason: str = "") -> None:
        self.op, self.path, self.params = op, path, list(params)
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"the hypernetwork cannot produce layer {op!r} at '{path}' (parameters "
            f"{list(params)}){why}; layers it produces: {sorted(supported)}"
        )


# --------------------------------------------------------------------------- supported layers
def _example_layers() -> list[nn.Module]:
    """One or more instances of every layer type the hypernetwork decodes, built without
    drawing from the global random stream (their weights are never used; the first GHN of a
    process would otherwise start from another random state than the next ones)."""
    from search_spaces.gnn import ATTENTION_CONVS, CONVS, LayerSpec, make_conv

    with torch.random.fork_rng(devices=[]):
        layers: list[nn.Module] = [
            make_conv(LayerSpec(conv=c, width=8, heads=2 if c in ATTENTION_CONVS else 1), 4)
            for c in CONVS
        ]
        layers += [
            nn.Linear(4, 8), nn.Linear(4, 8, bias=False), nn.Conv1d(4, 8, 3), nn.Conv2d(4, 8, 3),
            nn.Conv2d(4, 8, 1, bias=False), nn.BatchNorm1d(8), nn.BatchNorm2d(8), nn.LayerNorm(8),
            nn.GroupNorm(2, 8),
        ]
    return layers


#: roles decoded as another: NAS-Bench-Graph's gin has one Linear as its nn, decoded as the
#: first Linear of the GNN space's GIN MLP (``nn.0``)
_ROLE_ALIASES = {"GINConv:nn.weight": "GINConv:nn.#.weight", "GINConv:nn.bias": "GINConv:nn.#.bias"}


def role_key(op: str, local_name: str) -> tuple[str, int]:
    """``("TAGConv", "lins.2.weight") -> ("TAGConv:lins.#.weight", 2)``: a tensor's role and the
    index (hop, sub-layer) its name carries (0 if none)."""
    digits = _DIGITS.findall(local_name)
    role = f"{op}:{_DIGITS.sub('#', local_name)}"
    return _ROLE_ALIASES.get(role, role), int(digits[0]) if digits else 0


def _op_name(module: nn.Module) -> str:
    return type(module).__name__


@lru_cache(maxsize=1)
def supported_roles() -> tuple[str, ...]:
    """Every tensor role (``"<layer type>:<parameter name>"``) the hypernetwork decodes."""
    roles = set()
    for layer in _example_layers():
        for name, _ in layer.named_parameters():
            roles.add(role_key(_op_name(layer), name)[0])
    return tuple(sorted(roles))


def supported_layers() -> tuple[str, ...]:
    """Layer types with parameters that the hypernetwork produces."""
    return tuple(sorted({role.split(":", 1)[0] for role in supported_roles()}))


# --------------------------------------------------------------------------- configuration
@dataclasses.dataclass(frozen=True)
class GHNConfig:
    """Shape of a graph hypernetwork and the task it predicts parameters for.

    Args:
        in_channels: task input features (node features; image channels).
        out_channels: task classes.
        level: task level (``"node"``, ``"graph"``, ``"image"``).
        space: search space the GHN was trained on (informative; any network with supported
            layers can be decoded).
        dataset: task it was trained on.
        hidden: node-embedding size.
        rank: rank of the decoded weight blocks.
        rounds: message-passing rounds.
        max_distance: longest virtual edge (shortest-path length) of the computation graph.
        max_index: distinct hop / sub-layer indices embedded (larger ones share the last).
        max_positions: most kernel positions of a convolution (8x8 for 2-d kernels).
        basis_size: most channels of one hidden dimension.
        op_types: op vocabulary (embedding rows).
        roles: tensor-role vocabulary (embedding rows); see :func:`supported_roles`.
        seed: seed of the fixed hidden-channel basis.
        feature_basis: rows of the task's input features: ``"learned"`` (a learned table) or
            ``"data"`` (fixed: the leading right singular vectors of the task's feature matrix,
            set by :meth:`GraphHyperNetwork.set_feature_basis`; no labels involved). On a task
            with few labels (Cora: 140 nodes) a learned table of ``in_channels x rank`` entries
            memorises them; the data basis keeps what the features vary in (a rank-32
            projection of Cora's features loses about 1 point of a linear model's accuracy).
        weight_norm: scale of predicted weight matrices. ``"fan"``: the decoded low-rank
            product times ``rank / fan_in`` (``sqrt(rank / fan_in)`` on raw input features); its
            size then depends on the layer's width below the rank and the GHN learns
            width- and position-specific compensations. ``"op"`` (operation-wise, GHN-2's
            normalisation): every matrix is divided by its root-mean-square entry and scaled to
            ``g * sqrt(2 / fan_in)`` (Kaiming), ``g = exp(s)`` with ``s`` decoded per tensor and
            bounded to ``+-LOG_GAIN_BOUND``: at a gain of 1 a forward signal keeps its scale
            from layer to layer at any depth for widths up to ``rank`` (wider layers read a
            signal aligned with their low-rank weights and amplify it). Checkpoints without
            this field are ``"fan"``.
        tile_width: hidden channel ``i`` reads basis row ``i mod tile_width`` (``None``: row
            ``i``). Set to the widest layer of the training pool, a wider layer is decoded as
            copies of a trained width (GHN-2 tiles predicted tensors the same way) instead of
            from rows no decoded matrix acted on in training; narrower layers are unchanged.
            Checkpoints without this field read row ``i``.
        spatial: also read ``log(1 + H * W)`` of each op's output feature map for inputs of
            ``image_size`` pixels (image tasks), so that the GHN knows at which resolution a
            block works; checkpoints without this field do not.
        image_size: side of the square example images a network is traced with (image tasks;
            the task's own size when ``spatial``).
    """

    in_channels: int
    out_channels: int
    level: str = "node"
    space: str = "gnn"
    dataset: str = ""
    hidden: int = 64
    rank: int = 32
    rounds: int = 3
    max_distance: int = 50
    max_index: int = 8
    max_positions: int = 64
    basis_size: int = 4096
    op_types: tuple[str, ...] = OP_TYPES
    roles: tuple[str, ...] = dataclasses.field(default_factory=supported_roles)
    seed: int = 0
    feature_basis: str = "learned"
    weight_norm: str = "fan"
    tile_width: int | None = None
    spatial: bool = False
    image_size: int = 16

    def __post_init__(self) -> None:
        if self.feature_basis not in FEATURE_BASES:
            raise ValueError(f"could not resolve feature_basis {self.feature_basis!r} among "
                             f"choices {list(FEATURE_BASES)}")
        if self.weight_norm not in WEIGHT_NORMS:
            raise ValueError(f"could not resolve weight_norm {self.weight_norm!r} among "
                             f"choices {list(WEIGHT_NORMS)}")
        object.__setattr__(self, "op_types", tuple(self.op_types))
        object.__setattr__(self, "roles", tuple(self.roles))
        for field in ("in_channels", "out_channels", "hidden", "rank", "rounds", "max_distance",
                      "max_index", "max_positions", "basis_size", "image_size"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.tile_width is not None and not 1 <= self.tile_width <= self.basis_size:
            raise ValueError(f"tile_width must be in [1, basis_size {self.basis_size}] (or None: "
                             f"no tiling), got {self.tile_width}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["op_types"], data["roles"] = list(self.op_types), list(self.roles)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GHNConfig:
        return config_from_json(cls, data, "GHN")


# --------------------------------------------------------------------------- plans
@dataclasses.dataclass
class _Slot:
    """One parameter tensor to decode."""

    name: str                   # state_dict key
    node: int                   # computation-graph node that owns it
    role: int                   # role embedding row
    index: int                  # hop / sub-layer index embedding row
    shape: tuple[int, ...]
    kind: str                   # "matrix" | "bias" | "scale" | "vector"
    layout: str = "out_in"      # matrix: "out_in" (Linear, ConvNd) or "in_out" (x @ W params)
    rows: int = 0               # matrix: output channels; vector: length
    cols: int = 0               # matrix: input channels
    positions: int = 1          # matrix: kernel positions (or leading stack dims)
    row_table: str = "hidden"   # "hidden" | "class"
    col_table: str = "hidden"   # "hidden" | "feature"
    fan: int = 1                # fan-in used to normalise
    col_segments: tuple[int, ...] = ()  # hidden input read from a concatenation: its parts
    position_ids: tuple[int, ...] = ()  # matrix: position-embedding row of each kernel position


@dataclasses.dataclass
class HyperPlan:
    """What the GHN needs to decode one network: its computation graph and the tensors to fill.

    Built once per architecture by :meth:`GraphHyperNetwork.plan` (cache it by arch hash).
    """

    op_index: Tensor            # (N,) row of the op embedding
    features: Tensor            # (N, len(OpFeature) + 2) log shape features and the two flags
    edge_index: Tensor          # (2, E)
    distance: Tensor            # (E,) long, 1..max_distance
    slots: list[_Slot]
    buffers: dict[str, Tensor]  # buffers of the built module (kept, not predicted)

    def to(self, device: torch.device | str) -> HyperPlan:
        return dataclasses.replace(
            self, op_index=self.op_index.to(device), features=self.features.to(device),
            edge_index=self.edge_index.to(device), distance=self.distance.to(device),
            buffers={k: v.to(device) for k, v in self.buffers.items()},
        )


def example_inputs(level: str, in_channels: int, image_size: int = 16) -> tuple[Tensor, ...]:
    """Small inputs to trace a model of a task level (shapes only matter)."""
    if level == "image":
        return (torch.zeros(2, in_channels, image_size, image_size),)
    x = torch.zeros(4, in_channels)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])
    if level == "graph":
        return (x, edge_index, torch.zeros(4, dtype=torch.long))
    return (x, edge_index)


def _flow_closure(num_nodes: int, edges: list[tuple[int, int]], marked: list[bool],
                  reverse: bool) -> list[bool]:
    """For each node: whether some marked node lies strictly upstream (downstream if reverse)."""
    succ: list[list[int]] = [[] for _ in range(num_nodes)]
    for u, v in edges:
        if reverse:
            u, v = v, u
        succ[u].append(v)
    reached = [False] * num_nodes
    stack = [v for u in range(num_nodes) if marked[u] for v in succ[u]]
    while stack:
        v = stack.pop()
        if not reached[v]:
            reached[v] = True
            stack.extend(succ[v])
    return reached


def _segments(model: nn.Module, num_nodes: int, flow: list[tuple[int, int]], names: list[str],
               owned: list[list[str]], mixing: list[bool]) -> list[tuple[int, ...]]:
    """Per node, the channel blocks of its input: ``(width,)`` normally, one entry per part
    after ``torch.cat`` of hidden features (jumping knowledge), so the reader of a concatenation
    decodes each part's columns with the rows its producer used. Nodes are in fx (topological)
    order; ``()`` where unknown."""
    preds: list[list[int]] = [[] for _ in range(num_nodes)]
    for u, v in flow:
        preds[v].append(u)
    produced: list[tuple[int, ...]] = [()] * num_nodes  # output blocks of each node
    inputs: list[tuple[int, ...]] = [()] * num_nodes
    for v in range(num_nodes):
        first = produced[preds[v][0]] if preds[v] else ()
        inputs[v] = first
        if mixing[v]:
            rows = [param.shape[0] if _is_matrix_module(_parent(model, p)) else param.shape[-1]
                    for p in owned[v] if (param := model.get_parameter(p)).dim() >= 2]
            produced[v] = (int(max(rows)),) if rows else ()
        elif names[v] in ("torch.cat", "torch.concat"):
            parts = [produced[u] for u in preds[v]]
            produced[v] = sum(parts, ()) if all(parts) else ()
        else:
            produced[v] = first
    return inputs


def _position_ids(kernel: Sequence[int], positions: int, max_positions: int) -> tuple[int, ...]:
    """Position-embedding rows of a matrix's kernel positions. A 2-d kernel sits centred on a
    ``side x side`` grid (``side = isqrt(max_positions)``), so the centre of a 3x3 and of a 5x5
    kernel share a row and the GHN decodes the same spatial offset alike for every kernel size;
    other kernels and stacked matrices (ARMA, Chebyshev hops) number positions in order."""
    side = math.isqrt(max_positions)
    if len(kernel) == 2 and max(kernel) <= side:
        kh, kw = kernel
        top, left = (side - kh) // 2, (side - kw) // 2
        return tuple((top + i) * side + left + j for i in range(kh) for j in range(kw))
    return tuple(min(p, max_positions - 1) for p in range(positions))


def _parent(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name.rpartition(".")[0])


def _is_matrix_module(module: nn.Module) -> bool:
    from torch_geometric.nn.dense.linear import Linear as PygLinear

    return isinstance(module, (nn.Linear, PygLinear, nn.modules.conv._ConvNd))


# --------------------------------------------------------------------------- the hypernetwork
class GraphHyperNetwork(nn.Module):
    """Predicts all parameters of a network from its computation graph (module docstring).

    Args:
        config: sizes and the task (:class:`GHNConfig`).

    Shapes:
        - :meth:`forward`: a :class:`HyperPlan` of a network with ``N`` ops ->
          ``{parameter name: tensor of the parameter's shape}``
    """

    def __init__(self, config: GHNConfig) -> None:
        super().__init__()
        self.config = config
        d, r = config.hidden, config.rank
        self._op_ids = {name: i for i, name in enumerate(config.op_types)}
        self._role_ids = {name: i for i, name in enumerate(config.roles)}
        #: layer types with parameters that this GHN decodes
        self.layers = tuple(sorted({role.split(":", 1)[0] for role in config.roles}))
        self.op_embed = nn.Embedding(len(config.op_types), d)
        self.shape_embed = nn.Sequential(
            nn.Linear(len(OpFeature) + 2 + int(config.spatial), d), nn.ReLU(), nn.Linear(d, d)
        )
        self.distance_gate = nn.Embedding(config.max_distance + 1, d)
        self.message_forward = nn.Linear(d, d)
        self.message_backward = nn.Linear(d, d)
        self.update = nn.GRUCell(2 * d, d)
        self.node_norm = nn.LayerNorm(d)
        self.role_embed = nn.Embedding(len(config.roles), d)
        self.index_embed = nn.Embedding(config.max_index, d)
        self.position_embed = nn.Embedding(config.max_positions, d)
        self.decoder = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d), nn.ReLU())
        self.matrix_head = nn.Linear(d, r * r)
        self.vector_head = nn.Linear(d, r)
        with torch.no_grad():
            self.vector_head.weight.mul_(0.1)
            self.vector_head.bias.zero_()
        if config.weight_norm == "op":  # log-gain of each matrix, 0 at first: Kaiming scale
            self.gain_head = nn.Linear(d, 1)
            with torch.no_grad():
                self.gain_head.weight.zero_()
                self.gain_head.bias.zero_()
            #: log of one factor on the output layer's weight and bias (the logit temperature)
            self.logit_scale = nn.Parameter(torch.zeros(()))
        if config.feature_basis == "learned":
            self.feature_table = nn.Parameter(torch.randn(config.in_channels, r) / math.sqrt(r))
        else:  # fixed; filled by set_feature_basis (or a checkpoint)
            self.register_buffer("feature_table", torch.zeros(config.in_channels, r))
        self.class_table = nn.Parameter(torch.randn(config.out_channels, r) / math.sqrt(r))
        generator = torch.Generator().manual_seed(config.seed)
        self.register_buffer(
            "basis", torch.randn(config.basis_size, r, generator=generator) / math.sqrt(r)
        )

    @torch.no_grad()
    def set_feature_basis(self, x: Tensor) -> None:
        """Fix the input-feature rows to the leading right singular vectors of the feature matrix
        ``x`` (``(items, in_channels)``; no labels), scaled so rows have a root-mean-square norm of 1
        like the learned table's. Only for ``feature_basis="data"``.

        Shapes:
            - x: ``(N, in_channels)``
        """
        cfg = self.config
        if cfg.feature_basis != "data":
            raise ValueError(f"set_feature_basis needs feature_basis 'data', not {cfg.feature_basis!r}")
        if x.dim() != 2 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"features of shape {tuple(x.shape)} do not match in_channels "
                             f"{cfg.in_channels}")
        gram = x.double().t() @ x.double()  # (in, in)
        _, vectors = torch.linalg.eigh(gram)  # ascending eigenvalues
        k = min(cfg.rank, cfg.in_channels)
        basis = torch.zeros(cfg.in_channels, cfg.rank, dtype=torch.double)
        basis[:, :k] = vectors[:, -k:].flip(1)
        self.feature_table.copy_((basis * math.sqrt(cfg.in_channels / k)).to(self.feature_table))

    # ----------------------------------------------------------------- planning
    def _check_task_inputs(self, model: nn.Module, inputs: Sequence[Tensor]) -> None:
        """``ValueError`` naming the GHN's task when ``model`` is built for another one: another
        input size (tracing would fail deep in ``torch.fx``), task level or number of classes
        (it would run, and get parameters for a task they do not fit)."""
        cfg = self.config
        task = (f"this hypernetwork's task ({cfg.level} level, {cfg.in_channels} input channels, "
                f"{cfg.out_channels} classes, dataset {cfg.dataset!r})")
        level = getattr(model, "level", cfg.level)  # GNN-space models know theirs
        if level != cfg.level:
            raise ValueError(f"{type(model).__name__} is built for a {level}-level task, not {task}; "
                             "build the model for that task")
        with kept_modes(model):
            model.eval()  # no BatchNorm statistics change
            try:
                with torch.no_grad():
                    out = model(*inputs)
            except Exception as error:  # noqa: BLE001 - any failure means the wrong task
                raise ValueError(
                    f"{type(model).__name__} does not run on the inputs of {task}: "
                    f"{type(error).__name__}: {error}; build the model for that task"
                ) from None
        if out.shape[-1] != cfg.out_channels:
            raise ValueError(f"{type(model).__name__} has {out.shape[-1]} outputs, not the "
                             f"{cfg.out_channels} classes of {task}; build the model for that task")

    def plan(self, model: nn.Module, inputs: Sequence[Tensor] | None = None) -> HyperPlan:
        """Computation graph of ``model`` and the tensors to decode.

        Raises:
            ValueError: ``inputs`` not given and ``model`` does not run on the GHN's task inputs.
            UnsupportedLayerError: a layer with a parameter the GHN has no decoder for.
            UnsupportedOperationError: an operation the graph conversion does not know.
        """
        cfg = self.config
        if inputs is None:
            inputs = example_inputs(cfg.level, cfg.in_channels, cfg.image_size)
            self._check_task_inputs(model, inputs)
        try:
            graph = to_computation_graph(model, inputs, max_distance=cfg.max_distance)
        except UnsupportedOperationError as error:
            raise UnsupportedLayerError(error.op, error.path, [], self.layers,
                                        "no computation-graph conversion") from error
        modules = dict(model.named_modules())
        params = dict(model.named_parameters())
        names = [OP_TYPES[int(t)] for t in graph.op_type]
        owned = [[p for p in graph.param_names[i] if p in params] for i in range(graph.num_nodes)]
        mixing = [any(params[p].dim() >= 2 for p in owned[i]) for i in range(graph.num_nodes)]
        flow_mask = graph.edge_attr[:, OpEdgeFeature.DISTANCE] == 1
        flow = [tuple(e) for e in graph.edge_index[:, flow_mask].t().tolist()]
        after_mixing = _flow_closure(graph.num_nodes, flow, mixing, reverse=False)
        before_mixing = _flow_closure(graph.num_nodes, flow, mixing, reverse=True)
        input_facing = [not a for a in after_mixing]
        output_facing = [not b for b in before_mixing]

        segments = _segments(model, graph.num_nodes, flow, names, owned, mixing)
        op_index = []
        for i, name in enumerate(names):
            if name not in self._op_ids:
                if owned[i]:
                    raise UnsupportedLayerError(name, graph.node_names[i], owned[i],
                                                self.layers, "unknown operation")
                name = "other"
            op_index.append(self._op_ids[name])
        slots = []
        covered: set[str] = set()
        for i in range(graph.num_nodes):
            if not owned[i]:
                continue
            path = graph.node_names[i]
            module = modules[path]
            for pname in owned[i]:
                local = pname[len(path) + 1:] if path else pname
                slot = self._slot(i, module, local, pname, params[pname], _parent(model, pname),
                                  input_facing[i], output_facing[i])
                parts = segments[i]
                if slot.kind == "matrix" and slot.col_table == "hidden" and len(parts) > 1 \
                        and sum(parts) == slot.cols:
                    slot.col_segments = parts
                slots.append(slot)
                covered.add(pname)
        missing = sorted(set(params) - covered)
        if missing:
            path = missing[0].rpartition(".")[0]
            raise UnsupportedLayerError(_op_name(modules.get(path, model)), path, missing,
                                        self.layers, "parameters outside any graph op")
        features = graph.x.clone()
        features = torch.log1p(features.clamp_min(0))
        flags = torch.tensor([input_facing, output_facing], dtype=torch.float).t()
        columns = [features, flags] + ([torch.log1p(graph.spatial)[:, None]] if cfg.spatial else [])
        distance = graph.edge_attr[:, OpEdgeFeature.DISTANCE].long()
        buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
        return HyperPlan(
            op_index=torch.tensor(op_index, dtype=torch.long),
            features=torch.cat(columns, dim=1),
            edge_index=graph.edge_index, distance=distance, slots=slots, buffers=buffers,
        )

    def _slot(self, node: int, module: nn.Module, local: str, name: str, param: Tensor,
              parent: nn.Module, input_facing: bool, output_facing: bool) -> _Slot:
        cfg = self.config
        op = _op_name(module)
        role, index = role_key(op, local)
        if role not in self._role_ids:
            known = [r for r in self.config.roles if r.startswith(f"{op}:")]
            reason = f"no decoder for {role!r}" + (f"; of {op} it decodes {known}" if known else "")
            raise UnsupportedLayerError(op, name.rpartition(".")[0] if not local else
                                        name[: len(name) - len(local) - 1], [name],
                                        self.layers, reason)
        shape = tuple(param.shape)
        slot = _Slot(name, node, self._role_ids[role], min(index, cfg.max_index - 1), shape, "")
        if _is_matrix_module(parent) and param.dim() >= 2:
            slot.kind, slot.layout = "matrix", "out_in"
            slot.rows, slot.cols = shape[0], shape[1]
            slot.positions = math.prod(shape[2:])
        elif param.dim() >= 2 and param.numel() > max(shape) and not local.startswith("att"):
            slot.kind, slot.layout = "matrix", "in_out"
            slot.rows, slot.cols = shape[-1], shape[-2]
            slot.positions = math.prod(shape[:-2])
        else:
            slot.rows = param.numel()
            if local.endswith("bias"):
                slot.kind = "bias"
            elif isinstance(parent, _NORMS):
                slot.kind = "scale"
            else:
                slot.kind, slot.fan = "vector", shape[-1]
        if slot.kind == "matrix":
            if slot.positions > cfg.max_positions:
                raise UnsupportedLayerError(
                    op, name.rpartition(".")[0], [name], self.layers,
                    f"{slot.positions} kernel positions, at most {cfg.max_positions}",
                )
            slot.fan = slot.cols * slot.positions
            slot.position_ids = _position_ids(shape[2:] if slot.layout == "out_in" else (),
                                              slot.positions, cfg.max_positions)
            if input_facing and slot.cols == cfg.in_channels:
                slot.col_table = "feature"
        if output_facing and slot.rows == cfg.out_channels:
            slot.row_table = "class"
        for size, table in ((slot.rows, slot.row_table), (slot.cols, slot.col_table)):
            if table == "hidden" and size > cfg.basis_size:
                raise UnsupportedLayerError(
                    op, name.rpartition(".")[0], [name], self.layers,
                    f"{size} channels, at most {cfg.basis_size}",
                )
        return slot

    # ----------------------------------------------------------------- encoding and decoding
    def encode(self, plan: HyperPlan) -> Tensor:
        """Node embeddings ``(N, hidden)`` after message passing."""
        h = self.op_embed(plan.op_index) + self.shape_embed(plan.features)  # (N, d)
        h = self.node_norm(h)
        src, dst = plan.edge_index
        gate = torch.sigmoid(self.distance_gate(plan.distance.clamp_max(self.config.max_distance)))
        n = h.shape[0]
        ones = torch.ones_like(src, dtype=h.dtype)
        deg_in = torch.zeros(n, dtype=h.dtype, device=h.device).index_add(0, dst, ones).clamp_min(1)
        deg_out = torch.zeros(n, dtype=h.dtype, device=h.device).index_add(0, src, ones).clamp_min(1)
        for _ in range(self.config.rounds):
            forward = torch.zeros_like(h).index_add(0, dst, gate * self.message_forward(h)[src])
            backward = torch.zeros_like(h).index_add(0, src, gate * self.message_backward(h)[dst])
            messages = torch.cat([forward / deg_in[:, None], backward / deg_out[:, None]], dim=1)
            h = self.node_norm(self.update(messages, h))
        return h

    def _columns(self, slot: _Slot) -> Tensor:
        """Input-channel rows: a concatenation reads each part with the rows its producer wrote."""
        if slot.col_segments:
            return torch.cat([self._hidden_rows(size) for size in slot.col_segments])
        return self._table(slot.col_table, slot.cols)

    def _table(self, kind: str, size: int) -> Tensor:
        if kind == "feature":
            return self.feature_table[:size]
        if kind == "class":
            return self.class_table[:size]
        return self._hidden_rows(size)

    def _hidden_rows(self, size: int) -> Tensor:
        """Basis rows of ``size`` hidden channels (tiled past ``config.tile_width``)."""
        tile = self.config.tile_width
        if tile is None or size <= tile:
            return self.basis[:size]
        return self.basis[torch.arange(size, device=self.basis.device) % tile]

    def forward(self, plan: HyperPlan) -> dict[str, Tensor]:
        """Every parameter of the planned network, differentiable w.r.t. the GHN's weights."""
        h = self.encode(plan)
        r = self.config.rank
        matrix_rows, matrix_slots, vector_rows, vector_slots = [], [], [], []
        dev = h.device
        for slot in plan.slots:
            base = h[slot.node] + self.role_embed.weight[slot.role] + self.index_embed.weight[slot.index]
            if slot.kind == "matrix":
                pos = torch.tensor(slot.position_ids, device=dev)
                matrix_rows.append(base + self.position_embed(pos))  # (P, d)
                matrix_slots.append(slot)
            else:
                vector_rows.append(base)
                vector_slots.append(slot)
        out: dict[str, Tensor] = {}
        if matrix_rows:
            counts = [m.shape[0] for m in matrix_rows]
            features = self.decoder(torch.cat(matrix_rows))  # (sum P, d)
            decoded = self.matrix_head(features)  # (sum P, r*r)
            gains = self._log_gains(features.split(counts))
            for slot, m, gain in zip(matrix_slots, decoded.split(counts), gains):
                w = self._matrix(slot, m.view(-1, r, r) / math.sqrt(r))
                out[slot.name] = w if gain is None else _op_normalise(w, gain, slot.fan)
        if vector_rows:
            decoded = self.vector_head(self.decoder(torch.stack(vector_rows)))  # (V, r)
            for slot, u in zip(vector_slots, decoded):
                out[slot.name] = self._vector(slot, u)
        return self._scale_logits(plan.slots, out)

    def _scale_logits(self, slots: list[_Slot], out: dict[str, Tensor]) -> dict[str, Tensor]:
        """``weight_norm="op"``: the output layer's weight and bias (rows of the class table)
        times ``exp(logit_scale)``, one learned factor for every architecture. A network's
        accuracy does not depend on its logits' scale but the loss does; given no such factor,
        the GHN put the scale into whichever layer came last (BatchNorm scales of the last
        block, the last conv's gain), which a deeper network then applies too early."""
        if self.config.weight_norm != "op":
            return out
        factor = self.logit_scale.exp()
        return {name: out[name] * factor if slot.row_table == "class" else out[name]
                for slot in slots for name in (slot.name,)}

    def _log_gains(self, features: Sequence[Tensor]) -> list[Tensor | None]:
        """``weight_norm="op"``: one bounded log-gain per matrix from the mean of its kernel
        positions' decoder features (``None`` each for ``"fan"``)."""
        if self.config.weight_norm != "op":
            return [None] * len(features)
        means = torch.stack([f.mean(0) for f in features])  # (slots, d)
        raw = self.gain_head(means).squeeze(-1)  # (slots,)
        return list(LOG_GAIN_BOUND * torch.tanh(raw / LOG_GAIN_BOUND))

    def _matrix(self, slot: _Slot, m: Tensor) -> Tensor:
        rows = self._table(slot.row_table, slot.rows)  # (out, r)
        cols = self._columns(slot)  # (in, r)
        r = self.config.rank
        scale = math.sqrt(r / slot.fan) if slot.col_table == "feature" else r / slot.fan
        w = torch.einsum("oa,pab,ib->poi", rows, m, cols) * scale  # (P, out, in)
        if slot.layout == "out_in":  # (out, in, *kernel)
            return w.permute(1, 2, 0).reshape(slot.shape)
        return w.transpose(1, 2).reshape(slot.shape)  # (*stack, in, out)

    def _vector(self, slot: _Slot, u: Tensor) -> Tensor:
        v = self._table(slot.row_table, slot.rows) @ u  # (len,)
        if slot.kind == "scale":
            v = 1.0 + v
        elif slot.kind == "vector":
            v = v * (self.config.rank / slot.fan)
        return v.reshape(slot.shape)

    # ----------------------------------------------------------------- convenience
    def predict(self, model: nn.Module, plan: HyperPlan | None = None) -> dict[str, Tensor]:
        """A full ``state_dict`` for ``model``: predicted parameters and the module's buffers."""
        plan = plan if plan is not None else self.plan(model)
        with torch.no_grad():
            params = self(plan.to(next(self.parameters()).device))
        state = {k: v.detach().cpu() for k, v in params.items()}
        state.update({k: v.detach().cpu() for k, v in plan.buffers.items()})
        return {k: state[k] for k in model.state_dict()}

    def save(self, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write a safetensors checkpoint with the config (and ``metadata``) as JSON; written to
        a temporary name and renamed, so a killed write leaves a checkpoint it replaces intact."""
        from safetensors.torch import save_file

        from storage.store import replace_atomically

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        header = {"format": str(CHECKPOINT_FORMAT), "config": json.dumps(self.config.to_dict()),
                  "metadata": json.dumps(metadata or {})}
        replace_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> GraphHyperNetwork:
        """Load a checkpoint written by :meth:`save` (or ``"pretrained:<name>"``)."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        resolved = resolve_checkpoint(path)
        try:
            with safe_open(str(resolved), framework="pt") as handle:
                header = handle.metadata() or {}
        except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
            raise ValueError(
                f"{resolved} is not a safetensors GHN checkpoint ({type(error).__name__}: "
                f"{error}); checkpoints are never unpickled"
            ) from error
        if "config" not in header:
            raise ValueError(f"{resolved} is not a metanas GHN checkpoint (no config metadata)")
        try:
            config = GHNConfig.from_dict(_json_object(header["config"], "config"))
        except (TypeError, ValueError) as error:  # missing fields, values of another type
            why = error if isinstance(error, _HeaderError) else f"its config is unusable ({error})"
            raise ValueError(f"{resolved} is not a usable GHN checkpoint: {why}") from None
        ghn = built(cls, config, resolved, "GHN")
        load_checked(ghn, load_file(str(resolved)), resolved, "GHN")
        try:
            ghn.metadata = _json_object(header.get("metadata", "{}"), "metadata")
        except _HeaderError as error:
            raise ValueError(f"{resolved} is not a usable GHN checkpoint: {error}") from None
        return ghn.to(device).eval()

    def extra_repr(self) -> str:
        c = self.config
        return (f"space={c.space}, dataset={c.dataset}, hidden={c.hidden}, rank={c.rank}, "
                f"rounds={c.rounds}, params={sum(p.numel() for p in self.parameters())}")


class _HeaderError(ValueError):
    """A checkpoint's JSON header entry that is no JSON object."""


def _json_object(text: str, entry: str) -> dict[str, Any]:
    """The JSON object of a checkpoint's header ``entry``; :class:`_HeaderError` saying what it
    is instead."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise _HeaderError(f"its {entry} is not JSON ({error})") from None
    if not isinstance(value, dict):
        raise _HeaderError(f"its {entry} is a JSON {type(value).__name__}, not an object")
    return value


def _op_normalise(w: Tensor, log_gain: Tensor, fan_in: int) -> Tensor:
    """``w`` rescaled to a root-mean-square entry of ``exp(log_gain) * sqrt(2 / fan_in)``
    (Kaiming's scale times a gain): the operation-wise normalisation of ``weight_norm="op"``."""
    rms = w.square().mean().add(1e-12).sqrt()
    return w * (log_gain.exp() * math.sqrt(2.0 / fan_in) / rms)


def pretrained_names() -> list[str]:
    """Names usable as ``pretrained:<name>``."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint path, or ``pretrained:<name>`` -> the shipped file (clear errors)."""
    text = str(path)
    if text.startswith("pretrained:"):
        name = text.split(":", 1)[1]
        candidate = PRETRAINED_DIR / f"{name}.safetensors"
        if not candidate.is_file():
            raise ValueError(
                f"could not resolve pretrained hypernetwork {name!r} among choices {pretrained_names()}"
            )
        return candidate
    resolved = Path(text)
    if not resolved.is_file():
        raise FileNotFoundError(f"hypernetwork checkpoint {resolved} not found")
    return resolved


def calibrate_batchnorm(model: nn.Module, inputs: Sequence[Tensor] | list[Sequence[Tensor]]) -> None:
    """Recompute BatchNorm running statistics from ``inputs`` (one tuple of forward arguments
    or a list of them), as a cumulative average; dropout stays off. No-op without BatchNorm."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    batches = inputs if isinstance(inputs, list) else [inputs]
    momenta = [m.momentum for m in norms]
    with kept_modes(model):
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        with torch.no_grad():
            for args in batches:
                model(*args)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


__all__ = [
    "FEATURE_BASES", "LOG_GAIN_BOUND", "WEIGHT_NORMS", "GHNConfig", "GraphHyperNetwork",
    "HyperPlan", "UnsupportedLayerError",
    "calibrate_batchnorm", "example_inputs", "pretrained_names", "resolve_checkpoint", "role_key", "supported_layers",
    "supported_roles",
]
