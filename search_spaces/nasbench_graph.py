"""The cell space of NAS-Bench-Graph, exactly as the benchmark defines it.

A cell has four computing nodes. Node ``i`` reads one earlier node ``links[i]`` (0 is the cell
input, ``j >= 1`` is computing node ``j``) and applies one operation to it; every node no other
node reads (a leaf) is concatenated into the cell output. The nine canonical link patterns and the
nine operations give 26,206 distinct architectures once isomorphic duplicates are merged (and
the all-skip cell, which computes nothing, is left out), each trained by the benchmark on nine
datasets.

Isomorphic duplicates are merged with the benchmark package's own canonicalisation
(``nas_bench_graph.Arch.valid_hash``): two architectures with the same ``valid_hash`` have the
same :attr:`NasBenchGraphArchitecture.arch_hash` here, so a search never evaluates one twice.

The model follows the benchmark's model code: input dropout -> ``num_pre`` linear layers -> the
cell (each op's input, unless it is the raw input, goes through BatchNorm -> ReLU -> dropout) ->
concatenated leaves -> ReLU -> linear -> ``num_pro`` linear layers, with the per-dataset
hyper-parameters of the paper (:data:`BENCHMARK_SETTINGS`).

Reference: Qin et al., "NAS-Bench-Graph: Benchmarking Graph Neural Architecture Search",
NeurIPS 2022 Datasets and Benchmarks; https://github.com/THUMNLab/NAS-Bench-Graph.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import random
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor, nn

from search_spaces.base import Architecture, SearchSpace, TaskLevel, canonical_json
from search_spaces.resolver import resolve_name
from search_spaces.static_graph import (
    StaticGraph, dropout, input_dropout, is_sparse, sparse_features, sparse_linear,
    static_conv_forward,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import optuna
    from torch_geometric.typing import Adj

NUM_NODES = 4
#: the benchmark's nine canonical link patterns (its ``link_list``), by index 0..8
LINK_PATTERNS: tuple[tuple[int, ...], ...] = (
    (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 1), (0, 0, 1, 2), (0, 0, 1, 3),
    (0, 1, 1, 1), (0, 1, 1, 2), (0, 1, 2, 2), (0, 1, 2, 3),
)
#: the benchmark's operations (its ``gnn_list``, same order)
OPS: tuple[str, ...] = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
#: operations of the ogbn-proteins table (its ``gnn_list_proteins``)
PROTEINS_OPS: tuple[str, ...] = ("gcn", "sage", "arma", "fc", "skip")
#: number of distinct architectures in the benchmark (tables of all datasets but proteins)
NUM_ARCHITECTURES = 26206
#: attention heads of the ``gat`` op (the benchmark's model code: ``GATConv(d, d // 4, 4)``)
GAT_HEADS = 4


@dataclasses.dataclass(frozen=True)
class BenchmarkSetting:
    """The fixed hyper-parameters the benchmark trained every architecture of a dataset with.

    Provenance: ``dim``, ``num_pre`` and ``num_pro`` are checked against the parameter counts
    (``para``) of the shipped tables for every dataset (tests check cora; physics' ``para`` is
    an average over runs and matches for ~94% of its rows). The training values (``dropout``,
    ``optimizer``, ``lr``, ``weight_decay``, ``epochs``) follow the paper's appendix table as
    transcribed here; the package does not ship them, and only cora's are checked, by
    ``experiments/nasbench_graph_fidelity.py`` (rank agreement of trained models with the table).
    """

    num_features: int        # input channels of the benchmark's dataset
    num_classes: int         # output channels
    dim: int                 # hidden channels of every op
    num_pre: int             # linear layers before the cell
    num_pro: int             # linear layers after the cell (the last one outputs the classes)
    dropout: float           # dropout on the input and before every op on hidden features
    optimizer: str           # "sgd" or "adam"
    lr: float                # learning rate
    weight_decay: float      # L2 weight decay
    epochs: int              # training epochs (no early stopping; best validation epoch kept)


#: benchmark dataset -> its setting (the paper's table; in/out sizes of the PyG/OGB datasets)
BENCHMARK_SETTINGS: dict[str, BenchmarkSetting] = {
    "cora": BenchmarkSetting(1433, 7, 256, 0, 1, 0.7, "sgd", 0.1, 5e-4, 400),
    "citeseer": BenchmarkSetting(3703, 6, 256, 0, 1, 0.7, "sgd", 0.2, 5e-4, 400),
    "pubmed": BenchmarkSetting(500, 3, 128, 0, 0, 0.3, "sgd", 0.2, 5e-4, 500),
    "cs": BenchmarkSetting(6805, 15, 128, 1, 0, 0.6, "sgd", 0.5, 5e-4, 400),
    "physics": BenchmarkSetting(8415, 5, 256, 1, 0, 0.4, "sgd", 0.01, 0.0, 200),
    "photo": BenchmarkSetting(745, 8, 128, 0, 0, 0.7, "adam", 2e-4, 5e-4, 500),
    "computers": BenchmarkSetting(767, 10, 64, 1, 1, 0.1, "adam", 5e-3, 5e-4, 500),
    "arxiv": BenchmarkSetting(128, 40, 128, 0, 1, 0.2, "adam", 2e-3, 0.0, 500),
    "proteins": BenchmarkSetting(8, 112, 256, 1, 1, 0.0, "adam", 1e-2, 5e-4, 500),
}
DEFAULT_DATASET = "cora"


@dataclasses.dataclass(frozen=True)
class NasBenchGraphArchitecture(Architecture):
    """One NAS-Bench-Graph cell, as given (``to_dict`` keeps it); the hash is of its canonical
    form, so isomorphic duplicates hash equally."""

    links: tuple[int, ...] = (0, 1, 2, 3)  # input of node i: 0 = cell input, j = node j (j <= i)
    ops: tuple[str, ...] = ("gcn", "gcn", "gcn", "gcn")  # operation of node i, one of OPS

    def __post_init__(self) -> None:
        object.__setattr__(self, "links", tuple(int(i) for i in self.links))
        object.__setattr__(self, "ops", tuple(str(op) for op in self.ops))
        if len(self.links) != NUM_NODES or len(self.ops) != NUM_NODES:
            raise ValueError(
                f"a cell has {NUM_NODES} nodes: got links {list(self.links)} and ops "
                f"{list(self.ops)}"
            )
        for i, link in enumerate(self.links):
            if not 0 <= link <= i:
                raise ValueError(
                    f"links[{i}] = {link} must read the input (0) or an earlier node (1..{i})"
                )
        for op in self.ops:
            if op not in OPS:
                raise ValueError(f"op {op!r} is not among the choices {list(OPS)}")
        if all(op == "skip" for op in self.ops):
            raise ValueError("the all-skip cell computes nothing and is not in the benchmark")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NasBenchGraphArchitecture:
        unknown = set(data) - {"links", "ops"}
        if unknown or not {"links", "ops"} <= set(data):
            raise ValueError(
                f"a NAS-Bench-Graph architecture has keys ['links', 'ops'], got {sorted(data)}"
            )
        return cls(links=tuple(data["links"]), ops=tuple(data["ops"]))

    @classmethod
    def from_pattern(cls, pattern: int, ops: tuple[str, ...]) -> NasBenchGraphArchitecture:
        """Build from a link pattern index (0..8, see :data:`LINK_PATTERNS`) and four ops."""
        if not 0 <= pattern < len(LINK_PATTERNS):
            raise ValueError(f"link pattern {pattern} is not among 0..{len(LINK_PATTERNS) - 1}")
        return cls(LINK_PATTERNS[pattern], tuple(ops))

    def canonical(self) -> NasBenchGraphArchitecture:
        """The representative of this architecture's isomorphism class (the benchmark's)."""
        links, ops = _canonical(self.links, self.ops)
        return NasBenchGraphArchitecture(links, ops)

    @property
    def bench_hash(self) -> int:
        """The key of this architecture in the benchmark's tables (``Arch.valid_hash()``)."""
        return _bench_hash(self.links, self.ops)

    @property
    def arch_hash(self) -> str:
        return _arch_hash(self.links, self.ops)

    def short(self) -> str:
        return f"links={''.join(map(str, self.links))} ops={','.join(self.ops)}"


@functools.lru_cache(maxsize=None)
def _canonical(
    links: tuple[int, ...], ops: tuple[str, ...]
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    # The package's own normalisation (regularize -> move_skip_op -> equalpart_sort), so our
    # merge of isomorphic cells is the benchmark's by construction.
    from nas_bench_graph.architecture import Arch

    arch = Arch(list(links), list(ops)).regularize()
    arch.move_skip_op()
    arch.equalpart_sort()
    return tuple(arch.link), tuple(arch.ops)


@functools.lru_cache(maxsize=None)
def _bench_hash(links: tuple[int, ...], ops: tuple[str, ...]) -> int:
    from nas_bench_graph.architecture import Arch

    return int(Arch(list(links), list(ops)).valid_hash())


@functools.lru_cache(maxsize=None)
def _arch_hash(links: tuple[int, ...], ops: tuple[str, ...]) -> str:
    links, ops = _canonical(links, ops)
    text = canonical_json({"links": list(links), "ops": list(ops)})
    return hashlib.sha256(text.encode()).hexdigest()


#: metanas dataset names of benchmark datasets that the benchmark names otherwise
TASK_NAMES = {"ogbn-arxiv": "arxiv", "ogbn-proteins": "proteins"}


def benchmark_dataset(name: str) -> str:
    """Canonical benchmark dataset name (any spelling; ``ogbn-arxiv``, ``ogbn-proteins`` too);
    ``ValueError`` listing the valid ones."""
    name = TASK_NAMES.get(name.strip().lower(), name)
    try:
        return resolve_name(name, BENCHMARK_SETTINGS, "benchmark dataset")
    except ValueError:
        raise ValueError(
            f"NAS-Bench-Graph has no dataset {name!r}; valid datasets are "
            f"{list(BENCHMARK_SETTINGS)}"
        ) from None


def benchmark_setting(dataset: str) -> BenchmarkSetting:
    """The setting of a benchmark dataset (any spelling); ``ValueError`` listing the valid ones."""
    return BENCHMARK_SETTINGS[benchmark_dataset(dataset)]


def setting_for_shape(in_channels: int, out_channels: int) -> str | None:
    """The benchmark dataset with these input/output sizes, if exactly one has them."""
    names = [
        name for name, s in BENCHMARK_SETTINGS.items()
        if (s.num_features, s.num_classes) == (in_channels, out_channels)
    ]
    return names[0] if len(names) == 1 else None


class NasBenchGraphSpace(SearchSpace):
    """NAS-Bench-Graph's cell space (node classification only).

    Args:
        dataset: the benchmark dataset whose hyper-parameters models are built and trained with
            (a search sets it through :meth:`for_dataset`). ``None`` (default): recognised from
            the input/output sizes at :meth:`build` (every benchmark dataset has distinct ones),
            else ``"cora"``'s; :meth:`training_config` then uses ``"cora"``'s.
    """

    name = "nasbench-graph"
    levels = ("node",)

    def __init__(self, dataset: str | None = None) -> None:
        self.dataset = None if dataset is None else benchmark_dataset(dataset)
        #: the ops a cell draws from: ogbn-proteins' table covers five of the nine
        self.ops = PROTEINS_OPS if self.dataset == "proteins" else OPS

    def for_dataset(self, dataset: str) -> NasBenchGraphSpace:
        """This space with ``dataset``'s benchmark hyper-parameters (itself for other datasets)."""
        dataset = TASK_NAMES.get(dataset, dataset)
        if self.dataset is not None or dataset not in BENCHMARK_SETTINGS:
            return self
        return NasBenchGraphSpace(dataset)

    def suggest(self, trial: optuna.trial.BaseTrial) -> NasBenchGraphArchitecture:
        """``link_pattern`` (0..8) and ``op0``..``op3``, all categorical.

        Raises:
            optuna.TrialPruned: the all-skip cell was suggested (9 of the 59,049 combinations);
                the benchmark leaves it out, so the trial ends without a value.
        """
        pattern = trial.suggest_categorical("link_pattern", list(range(len(LINK_PATTERNS))))
        ops = tuple(trial.suggest_categorical(f"op{i}", list(self.ops)) for i in range(NUM_NODES))
        if all(op == "skip" for op in ops):
            import optuna

            raise optuna.TrialPruned("the all-skip cell is not in NAS-Bench-Graph")
        return NasBenchGraphArchitecture.from_pattern(pattern, ops)

    @staticmethod
    def trial_params(arch: NasBenchGraphArchitecture) -> dict[str, Any]:
        """The trial parameters under which :meth:`suggest` returns ``arch`` or, for a cell
        whose links are not one of the nine patterns, its canonical (isomorphic) form."""
        for candidate in (arch, arch.canonical()):
            if candidate.links in LINK_PATTERNS:
                params: dict[str, Any] = {"link_pattern": LINK_PATTERNS.index(candidate.links)}
                params.update({f"op{i}": op for i, op in enumerate(candidate.ops)})
                return params
        raise ValueError(
            f"cell links {list(arch.links)} are none of the benchmark's link patterns "
            f"{[list(p) for p in LINK_PATTERNS]}"
        )

    def sample(self, rng: random.Random | int | None = None) -> NasBenchGraphArchitecture:
        """A uniformly random benchmark cell (combinations drawn again on the all-skip cell)."""
        if not isinstance(rng, random.Random):
            rng = random.Random(rng)
        while True:
            pattern = rng.randrange(len(LINK_PATTERNS))
            ops = tuple(rng.choice(self.ops) for _ in range(NUM_NODES))
            if any(op != "skip" for op in ops):
                return NasBenchGraphArchitecture.from_pattern(pattern, ops)

    def setting(
        self, in_channels: int | None = None, out_channels: int | None = None
    ) -> BenchmarkSetting:
        """The hyper-parameters for a model of these sizes (see the class docstring)."""
        name = self.dataset
        if name is None and in_channels is not None and out_channels is not None:
            name = setting_for_shape(in_channels, out_channels)
        return BENCHMARK_SETTINGS[name or DEFAULT_DATASET]

    def build(
        self, arch: NasBenchGraphArchitecture, in_channels: int, out_channels: int,
        level: TaskLevel = "node",
    ) -> NasBenchGraphNet:
        self.check_level(level)
        if not isinstance(arch, NasBenchGraphArchitecture):
            raise TypeError(f"space 'nasbench-graph' builds NasBenchGraphArchitecture, not {type(arch).__name__}")
        setting = self.setting(in_channels, out_channels)
        return NasBenchGraphNet(arch, in_channels, out_channels, setting)

    def training_config(self, arch: NasBenchGraphArchitecture) -> dict[str, Any]:
        setting = self.setting()
        return {
            "lr": setting.lr, "weight_decay": setting.weight_decay, "optimizer": setting.optimizer,
        }

    def architecture_from_dict(self, data: dict[str, Any]) -> NasBenchGraphArchitecture:
        return NasBenchGraphArchitecture.from_dict(data)

    def all_architectures(self) -> list[NasBenchGraphArchitecture]:
        """The benchmark's 26,206 architectures, one canonical cell each, by table key."""
        return list(_all_canonical())

    def __repr__(self) -> str:
        return f"NasBenchGraphSpace(dataset={self.dataset!r})"


@functools.lru_cache(maxsize=1)
def _all_canonical() -> tuple[NasBenchGraphArchitecture, ...]:
    import itertools

    seen: dict[int, NasBenchGraphArchitecture] = {}
    for links in LINK_PATTERNS:
        for ops in itertools.product(OPS, repeat=NUM_NODES):
            if all(op == "skip" for op in ops):
                continue
            arch = NasBenchGraphArchitecture(links, ops).canonical()
            seen.setdefault(arch.bench_hash, arch)
    return tuple(seen[key] for key in sorted(seen))


class LinearOp(nn.Module):
    """The ``fc`` op: a linear map of each node's features that ignores the graph."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lin = nn.Linear(in_channels, out_channels)

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, x: Tensor, edge_index: Adj) -> Tensor:  # noqa: ARG002 - graph unused
        return self.lin(x)  # plain, so torch.fx traces it (parameter graphs, pruning)

    def forward_sparse(self, x: Tensor) -> Tensor:
        """:meth:`forward` for a dense or CSR ``x`` (the fixed-graph path's sparse input
        features), with gradients for the weights (see :func:`sparse_linear`)."""
        return sparse_linear(x, self.lin.weight, self.lin.bias)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels})"


class SkipOp(nn.Module):
    """The ``skip`` op: the identity."""

    def forward(self, x: Tensor, edge_index: Adj) -> Tensor:  # noqa: ARG002 - graph unused
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def make_op(op: str, in_channels: int, out_channels: int) -> nn.Module:
    """One benchmark operation from PyG's convolutions, configured as the benchmark's code."""
    from torch_geometric import nn as gnn

    if op == "gat":
        return gnn.GATConv(in_channels, out_channels // GAT_HEADS, heads=GAT_HEADS, concat=True)
    builders = {
        "gcn": lambda: gnn.GCNConv(in_channels, out_channels),
        "gin": lambda: gnn.GINConv(nn.Linear(in_channels, out_channels)),
        "cheb": lambda: gnn.ChebConv(in_channels, out_channels, K=2),
        "sage": lambda: gnn.SAGEConv(in_channels, out_channels),
        "arma": lambda: gnn.ARMAConv(in_channels, out_channels),
        "graph": lambda: gnn.GraphConv(in_channels, out_channels),
        "fc": lambda: LinearOp(in_channels, out_channels),
        "skip": lambda: SkipOp(),
    }
    if op not in builders:
        raise ValueError(f"op {op!r} is not among the choices {list(OPS)}")
    return builders[op]()


class _OpSpec(NamedTuple):
    """What :func:`~search_spaces.static_graph.static_conv_forward` needs of an op."""

    conv: str
    aggregation: str


#: each graph op as the fast path names it (PyG's default aggregation of the benchmark's convs)
_STATIC_SPECS: dict[str, _OpSpec] = {
    "gcn": _OpSpec("gcn", "add"), "gin": _OpSpec("gin", "add"), "cheb": _OpSpec("cheb", "add"),
    "sage": _OpSpec("sage", "mean"), "arma": _OpSpec("arma", "add"),
    "graph": _OpSpec("graph", "add"), "gat": _OpSpec("gat", "add"),
}


def _dense(x: Tensor) -> Tensor:
    return x.to_dense() if is_sparse(x) else x


class NasBenchGraphCell(nn.Module):
    r"""The benchmark's cell: four ops on a one-input-per-node DAG; leaves are concatenated.

    An op whose input is the raw cell input (or a chain of skips from it) reads it as it is; any
    other op's input passes BatchNorm -> ReLU -> dropout first. The concatenated leaves pass
    ReLU and one linear layer.

    Args:
        arch: the cell (built in its canonical form, as the benchmark trained it).
        in_channels: size of the cell input.
        out_channels: size of the cell output.
        dim: hidden size of every op.
        dropout: dropout before every op on hidden features.
        raw_input: whether the cell input is the raw node features (no layer before the cell):
            ops reading it (or a chain of skips from it) then skip BatchNorm -> ReLU -> dropout.

    Shapes:
        - input: node features :math:`(N, F_{in})`, edge indices :math:`(2, E)`
        - output: :math:`(N, F_{out})`
    """

    def __init__(
        self, arch: NasBenchGraphArchitecture, in_channels: int, out_channels: int, dim: int,
        dropout: float, raw_input: bool = True,
    ) -> None:
        super().__init__()
        self.links, self.dropout, self.op_names = arch.links, dropout, arch.ops
        sizes = [in_channels]  # feature size of the input and of each node
        self.raw = [raw_input]  # whether a node's features are the raw input (a chain of skips)
        self.ops, self.norms = nn.ModuleList(), nn.ModuleList()
        for op, link in zip(arch.ops, arch.links):
            raw = self.raw[link]
            self.ops.append(make_op(op, sizes[link], dim))
            self.norms.append(nn.Identity() if raw else nn.BatchNorm1d(dim))
            self.raw.append(raw and op == "skip")
            sizes.append(sizes[link] if op == "skip" else dim)
        self.leaves = [i for i in range(1, NUM_NODES + 1) if i not in arch.links]
        self.lin = nn.Linear(sum(sizes[i] for i in self.leaves), out_channels)

    def reset_parameters(self) -> None:
        for module in (*self.ops, *self.norms, self.lin):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, x: Tensor, edge_index: Adj) -> Tensor:
        states = [x]
        for op, norm, link in zip(self.ops, self.norms, self.links):
            h = states[link]
            if not self.raw[link]:
                h = nn.functional.dropout(norm(h).relu(), self.dropout, self.training)
            states.append(op(h, edge_index))
        out = torch.cat([states[i] for i in self.leaves], dim=-1)  # (N, sum of leaf sizes)
        return self.lin(out.relu())

    def forward_static(self, x: Tensor, graph: StaticGraph) -> Tensor:
        """:meth:`forward` on a fixed graph with cached propagation matrices; ``x`` may be
        sparse (CSR). Same parameters, same function (see :mod:`search_spaces.static_graph`)."""
        states = [x]
        for name, op, norm, link in zip(self.op_names, self.ops, self.norms, self.links):
            h = states[link]
            if not self.raw[link]:
                h = norm(h).relu()
                h = dropout(h, self.dropout) if self.training and self.dropout else h
            if name in _STATIC_SPECS:
                states.append(static_conv_forward(op, _STATIC_SPECS[name], h, graph))
            elif name == "fc":  # a linear layer takes CSR as it is
                states.append(op.forward_sparse(h))
            else:  # skip
                states.append(op(h, graph.edge_index))
        out = torch.cat([_dense(states[i]) for i in self.leaves], dim=-1)
        return self.lin(out.relu())


class NasBenchGraphNet(nn.Module):
    r"""A NAS-Bench-Graph model: input dropout, ``num_pre`` linear layers, the cell,
    ``num_pro`` linear layers (ELU between consecutive pre/post layers, as the benchmark).

    Args:
        arch: the cell; it is built in its canonical form.
        in_channels: input node features.
        out_channels: classes.
        setting: the benchmark's hyper-parameters (``dim``, ``dropout``, ``num_pre``, ``num_pro``).

    Shapes:
        - input: node features :math:`(N, F_{in})`, edge indices :math:`(2, E)`
        - output: logits :math:`(N, C)`
    """

    def __init__(
        self, arch: NasBenchGraphArchitecture, in_channels: int, out_channels: int,
        setting: BenchmarkSetting,
    ) -> None:
        super().__init__()
        self.arch, self.setting = arch, setting
        dim, dropout = setting.dim, setting.dropout
        self.pre = nn.ModuleList(
            LinearOp(in_channels if i == 0 else dim, dim) for i in range(setting.num_pre)
        )
        cell_in = dim if setting.num_pre else in_channels
        cell_out = dim if setting.num_pro else out_channels
        self.cell = NasBenchGraphCell(
            arch.canonical(), cell_in, cell_out, dim, dropout, raw_input=not setting.num_pre
        )
        self.post = nn.ModuleList(
            LinearOp(dim, out_channels if i == setting.num_pro - 1 else dim)
            for i in range(setting.num_pro)
        )

    def reset_parameters(self) -> None:
        for module in (*self.pre, self.cell, *self.post):
            module.reset_parameters()

    def forward(self, x: Tensor, edge_index: Adj, batch: Tensor | None = None) -> Tensor:
        if batch is not None:
            raise ValueError("NAS-Bench-Graph models are node-level; got a graph batch vector")
        x = nn.functional.dropout(x, self.setting.dropout, self.training)
        x = _linear_stack(self.pre, x, edge_index)
        x = self.cell(x, edge_index)
        return _linear_stack(self.post, x, edge_index)  # (N, C)

    def fixed_graph_forward(self, x: Tensor, edge_index: Tensor) -> Callable[[], Tensor]:
        """A function computing ``self(x, edge_index)`` for repeated calls on one fixed graph
        (the training loop uses it for node tasks): sparse input features when mostly zero,
        dropout drawn over their stored values only, and every op's normalised propagation
        matrix built once. With dropout off it equals ``self(x, edge_index)`` up to float
        rounding; it follows the model's train/eval mode and current parameters at each call.

        Shapes:
            - input: ``x (N, in_channels)``, ``edge_index (2, E)``
            - output of the returned function: ``(N, out_channels)``
        """
        graph = StaticGraph(edge_index, x.size(0))
        inputs = sparse_features(x)
        return lambda: self._forward_static(inputs, graph)

    def _forward_static(self, x: Tensor, graph: StaticGraph) -> Tensor:
        x = input_dropout(x, self.setting.dropout, self.training)
        x = _linear_stack(self.pre, x, graph.edge_index, sparse=True)
        x = self.cell.forward_static(x, graph)
        return _linear_stack(self.post, x, graph.edge_index, sparse=True)  # (N, C)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.arch.short()}, dim={self.setting.dim}, "
            f"pre={self.setting.num_pre}, post={self.setting.num_pro})"
        )


def _linear_stack(layers: nn.ModuleList, x: Tensor, edge_index: Adj, sparse: bool = False) -> Tensor:
    # the benchmark applies ELU after the second-to-last layer of a stack only; sparse: x may
    # be CSR (see LinearOp.forward_sparse)
    for i, layer in enumerate(layers):
        x = layer.forward_sparse(x) if sparse else layer(x, edge_index)
        if i == len(layers) - 2:
            x = nn.functional.elu(x)
    return x
