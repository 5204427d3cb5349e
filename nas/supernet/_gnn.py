"""A one-shot supernet over the GNN macro space (:mod:`search_spaces.gnn`).

What it covers (stated exactly, since PyG convolutions cannot share weights across widths by
slicing):

- depth 1..``max_depth``; skip none / residual / jk_cat; every readout, activation, dropout;
- per layer position, one candidate module per *operation*, i.e. per (conv, heads, aggregation,
  input width, output width) -- heads only for attention convs, aggregation only for sage / gin /
  graph -- built with :func:`search_spaces.gnn.make_conv` exactly as the stand-alone model builds
  it, and one BatchNorm / LayerNorm per (position, width); a residual projection per (position,
  input width, output width) where the two differ; one classifier per classifier input layout;
- widths: only those in ``widths`` (default ``(64,)``), each with its own weights;
- input dropout rates: those in ``dropouts`` (default: all of the space's). Dropout has no
  weights, so every rate shares them; a supernet can only rank what inherited weights reflect,
  and paths trained with little dropout look better with inherited weights than they train from
  scratch (``experiments/results/supernet_ranking_notes.md``), so ``dropouts=0.5`` treats the
  rate as a training setting, as learning rate and weight decay are.

Mapping rule for architectures outside it (:meth:`GNNSupernet.project`): only the first
``max_depth`` layers are kept (skip becomes none if one layer remains); a width not in ``widths``
is replaced by the nearest covered width (ties to the larger), heads by the nearest covered head
count that divides that width, a dropout rate by the nearest covered rate; learning rate and weight decay are kept (inherited weights do not
depend on them). A conv the supernet was not built with is an error; ``strict=True`` makes any
change an error. The evaluator records ``mapped = 1.0`` for a mapped architecture, and
``--final-train`` trains the mapped architecture (the one that was scored).

Sharing: two architectures that use the same operation at the same position use the same module
(the same tensors), whatever they choose elsewhere -- unless ``split`` names layer choices
(``norm``, ``activation``) that get a copy of the convolution weights each, as few-shot NAS splits
a supernet into sub-supernets (Zhao et al., "Few-shot Neural Architecture Search", ICML 2021):
weights trained under BatchNorm no longer serve paths without it. ``depth`` splits by the path's
number of layers (convolutions and the classifier): a first layer trained to feed a second one
no longer also serves as the last layer of one-layer paths.
"""
from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from nas.supernet._base import Gates, Supernet, deal
from search_spaces.gnn import (
    ACTIVATIONS, AGGREGATING_CONVS, AGGREGATIONS, ATTENTION_CONVS, CONVS, DEFAULT_AGGREGATION,
    DROPOUTS, HEADS, NORMS, READOUTS, SKIPS, WIDTHS, GNNArchitecture, GNNSpace, LayerSpec,
    make_activation, make_conv, make_norm, readout,
)
from search_spaces.resolver import resolve_name
from search_spaces.static_graph import StaticGraph, input_dropout, sparse_features, static_conv_forward

if TYPE_CHECKING:
    from collections.abc import Callable

    from search_spaces.base import Architecture, TaskLevel

#: fixed hyper-parameters the gradient strategy's derived architectures get
DERIVED_DROPOUT, DERIVED_LR, DERIVED_WEIGHT_DECAY = 0.5, 5e-3, 5e-4


@dataclasses.dataclass(frozen=True)
class _Op:
    """One candidate operation of a layer position."""

    conv: str
    heads: int
    aggregation: str

    @property
    def name(self) -> str:
        heads = f"-h{self.heads}" if self.conv in ATTENTION_CONVS else ""
        aggr = f"-{self.aggregation}" if self.conv in AGGREGATING_CONVS else ""
        return f"{self.conv}{heads}{aggr}"


class GNNSupernet(Supernet):
    r"""Single-path one-shot supernet over the GNN macro space (see the module docstring).

    Args:
        in_channels: input node features.
        out_channels: classes.
        level: ``"node"`` or ``"graph"``.
        max_depth: most message-passing layers (1..4).
        widths: covered layer widths, each with its own weights.
        convs: covered convolutions (default: all of :data:`search_spaces.gnn.CONVS`).
        heads: covered attention head counts.
        dropouts: covered input dropout rates (see the module docstring).
        split: choices (``norm``, ``activation``, ``depth``) that get their own copy of every
            convolution's weights instead of sharing one (few-shot NAS; see the module
            docstring).

    Shapes:
        - input: ``x (N, in_channels)``, ``edge_index (2, E)``, ``batch (N,)`` for graph tasks
        - output: ``(N, out_channels)`` (node level) or ``(B, out_channels)`` (graph level)
    """

    space_name = "gnn"

    def __init__(
        self, in_channels: int, out_channels: int, level: TaskLevel = "node", max_depth: int = 2,
        widths: tuple[int, ...] = (64,), convs: tuple[str, ...] | None = None,
        heads: tuple[int, ...] = HEADS, dropouts: tuple[float, ...] = DROPOUTS,
        split: tuple[str, ...] = (),
    ) -> None:
        super().__init__(in_channels, out_channels, level)
        self._space = GNNSpace(max_depth=max_depth, convs=convs)
        self.max_depth = max_depth
        # every covered architecture is a point of the space
        self.widths = tuple(sorted({_choice("width", w, WIDTHS, int) for w in widths or (None,)}))
        self.heads = tuple(sorted({_choice("heads", h, HEADS, int) for h in heads}))
        self.split = tuple(resolve_name(f, tuple(_SPLIT_CHOICES), "split choice") for f in split)
        self.dropouts = tuple(sorted({_choice("dropout", d, DROPOUTS, float) for d in dropouts}))
        if not self.dropouts:
            raise ValueError(f"dropouts must name at least one of the choices {list(DROPOUTS)}")
        self.ops = tuple(self._enumerate_ops())
        self.convs = nn.ModuleList(self._position_convs(i) for i in range(max_depth))
        self.norms = nn.ModuleList(self._position_norms() for _ in range(max_depth))
        self.residuals = nn.ModuleList(self._position_residuals(i) for i in range(max_depth))
        self.classifiers = nn.ModuleDict(
            {key: nn.Linear(dim, out_channels) for key, dim in self._classifier_layouts().items()}
        )

    # -- construction -------------------------------------------------------------------------

    @property
    def space(self) -> GNNSpace:
        return self._space

    def config(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "level": self.level, "max_depth": self.max_depth, "widths": list(self.widths),
            "convs": list(self._space.convs), "heads": list(self.heads),
            "dropouts": list(self.dropouts), "split": list(self.split),
        }

    def _enumerate_ops(self) -> list[_Op]:
        ops = []
        for conv in self._space.convs:
            heads = self.heads if conv in ATTENTION_CONVS else (1,)
            aggrs = AGGREGATIONS if conv in AGGREGATING_CONVS else (DEFAULT_AGGREGATION,)
            ops.extend(_Op(conv, h, a) for h in heads for a in aggrs)
        return ops

    def _in_widths(self, position: int) -> tuple[int, ...]:
        return (self.in_channels,) if position == 0 else self.widths

    def _position_convs(self, position: int) -> nn.ModuleDict:
        modules = {}
        for op in self.ops:
            for w_in in self._in_widths(position):
                for w_out in self.widths:
                    if op.conv in ATTENTION_CONVS and w_out % op.heads:
                        continue
                    spec = LayerSpec(op.conv, w_out, op.heads, aggregation=op.aggregation)
                    for tag in self._split_tags(position):
                        modules[_conv_key(op, w_in, w_out) + tag] = make_conv(spec, w_in, self.level)
        return nn.ModuleDict(modules)

    def _split_tags(self, position: int) -> list[str]:
        """Key suffixes of the weight copies of one operation at ``position``: one per
        combination of the ``split`` choices (``[""]`` without a split); a depth split has a copy
        per depth that reaches the position."""
        tags = [""]
        for field in self.split:
            choices = (
                [f"d{d}" for d in range(position + 1, self.max_depth + 1)] if field == "depth"
                else _SPLIT_CHOICES[field]
            )
            tags = [f"{tag}-{choice}" for tag in tags for choice in choices]
        return tags

    def _conv(self, i: int, layer: LayerSpec, w_in: int, depth: int) -> nn.Module:
        """The convolution module that ``layer`` runs at position ``i`` of a ``depth``-layer path."""
        tag = "".join(f"-d{depth}" if field == "depth" else f"-{getattr(layer, field)}" for field in self.split)
        return self.convs[i][_conv_key(_op_of(layer), w_in, layer.width) + tag]

    def _position_norms(self) -> nn.ModuleDict:
        return nn.ModuleDict(
            {f"{norm}_{w}": make_norm(norm, w) for norm in NORMS if norm != "none" for w in self.widths}
        )

    def _position_residuals(self, position: int) -> nn.ModuleDict:
        if position == 0:
            return nn.ModuleDict()
        return nn.ModuleDict({
            f"{a}x{b}": nn.Linear(a, b, bias=False)
            for a in self.widths for b in self.widths if a != b
        })

    def _classifier_layouts(self) -> dict[str, int]:
        depths = [f"-d{d}" for d in range(1, self.max_depth + 1)] if "depth" in self.split else [""]
        layouts = {f"w{w}{tag}": w for w in self.widths for tag in depths}
        for depth in range(1, self.max_depth + 1):
            for combo in _width_combos(self.widths, depth):
                layouts[_jk_key(combo)] = sum(combo)
        return layouts

    # -- the covered sub-space ----------------------------------------------------------------

    def project(self, arch: Architecture, strict: bool = False) -> GNNArchitecture:
        if not isinstance(arch, GNNArchitecture):
            raise TypeError(f"the gnn supernet scores GNNArchitecture, not {type(arch).__name__}")
        layers = tuple(self._project_layer(layer) for layer in arch.layers[: self.max_depth])
        skip = arch.skip if len(layers) > 1 else "none"
        projected = dataclasses.replace(arch, layers=layers, skip=skip)
        if strict and projected != arch:
            raise ValueError(
                f"architecture {arch.short()} is not covered by the supernet (widths "
                f"{list(self.widths)}, heads {list(self.heads)}, dropouts {list(self.dropouts)}); "
                f"it maps to {projected.short()}"
            )
        return projected

    def _project_layer(self, layer: LayerSpec) -> LayerSpec:
        if layer.conv not in self._space.convs:
            raise ValueError(
                f"conv {layer.conv!r} is not in the supernet; it covers {list(self._space.convs)}"
            )
        width = _nearest(layer.width, self.widths)
        heads = layer.heads
        if layer.conv in ATTENTION_CONVS:
            fitting = tuple(h for h in self.heads if width % h == 0)
            if not fitting:
                raise ValueError(f"no covered head count in {list(self.heads)} divides width {width}")
            heads = _nearest(layer.heads, fitting)
        dropout = _nearest(layer.dropout, self.dropouts)
        return dataclasses.replace(layer, width=width, heads=heads, dropout=dropout)

    def sample(self, rng: random.Random) -> GNNArchitecture:
        depth = rng.randint(1, self.max_depth)
        layers = []
        for _ in range(depth):
            op = rng.choice(self.ops)
            widths = [w for w in self.widths if op.conv not in ATTENTION_CONVS or w % op.heads == 0]
            layers.append(LayerSpec(
                conv=op.conv, width=rng.choice(widths), heads=op.heads,
                activation=rng.choice(ACTIVATIONS), aggregation=op.aggregation,
                norm=rng.choice(NORMS), dropout=rng.choice(self.dropouts),
            ))
        return GNNArchitecture(
            layers=tuple(layers), skip=rng.choice(SKIPS) if depth > 1 else "none",
            readout=rng.choice(READOUTS), lr=DERIVED_LR, weight_decay=DERIVED_WEIGHT_DECAY,
        )

    def fair_paths(self, rng: random.Random) -> list[GNNArchitecture]:
        """Strict fairness (see :meth:`Supernet.fair_paths`) over the decisions, with each
        layer's width and dropout dealt the same way among the covered ones (an attention op
        whose head count does not divide its dealt width takes a random width that it divides)."""
        paths = super().fair_paths(rng)
        widths = {i: deal(self.widths, len(paths), rng) for i in range(self.max_depth)}
        dropouts = {i: deal(self.dropouts, len(paths), rng) for i in range(self.max_depth)}
        out = []
        for k, arch in enumerate(paths):
            layers = []
            for i, layer in enumerate(arch.layers):
                width = widths[i][k]
                if layer.conv in ATTENTION_CONVS and width % layer.heads:
                    width = rng.choice([w for w in self.widths if w % layer.heads == 0])
                layers.append(dataclasses.replace(layer, width=width, dropout=dropouts[i][k]))
            out.append(dataclasses.replace(arch, layers=tuple(layers)))
        return out

    # -- forward and extraction ---------------------------------------------------------------

    def forward(
        self, x: Tensor, edge_index: Tensor | StaticGraph, batch: Tensor | None = None, *,
        arch: Architecture, gates: Gates | None = None,
    ) -> Tensor:
        """Logits of the path ``arch``. ``edge_index`` may be a :class:`StaticGraph` (node
        tasks on one fixed graph, with ``x`` dense or CSR: see :meth:`fixed_graph_inputs`): the
        same function, computed with the stand-alone model's cached propagation matrices."""
        gates = gates or {}
        outputs, w_in = [], self.in_channels
        for i, layer in enumerate(arch.layers):  # type: ignore[attr-defined]
            x = self._layer(i, layer, x, edge_index, w_in, arch.skip == "residual", gates, arch.depth)  # type: ignore[attr-defined]
            outputs.append(x)
            w_in = layer.width
        if arch.skip == "jk_cat":  # type: ignore[attr-defined]
            x = torch.cat(outputs, dim=-1)  # (N, sum of widths)
        x = _gate(x, gates, "depth")
        x = _gate(x, gates, "skip")
        if self.level == "graph":
            x = _gate(readout(x, batch, arch.readout), gates, "readout")  # type: ignore[attr-defined]
        x = nn.functional.dropout(x, arch.layers[-1].dropout, self.training)  # type: ignore[attr-defined]
        return self.classifiers[self._classifier_key(arch)](x)  # type: ignore[arg-type]

    def _layer(
        self, i: int, layer: LayerSpec, x: Tensor, edge_index: Tensor | StaticGraph, w_in: int,
        residual: bool,
        gates: Gates, depth: int,
    ) -> Tensor:
        conv = self._conv(i, layer, w_in, depth)
        if isinstance(edge_index, StaticGraph):
            h = static_conv_forward(conv, layer, input_dropout(x, layer.dropout, self.training), edge_index)
        else:
            h = conv(nn.functional.dropout(x, layer.dropout, self.training), edge_index)
        h = _gate(h, gates, f"l{i}_op")
        if layer.norm != "none":
            h = self.norms[i][f"{layer.norm}_{layer.width}"](h)
        h = _gate(h, gates, f"l{i}_norm")
        h = _gate(_ACTIVATIONS[layer.activation](h), gates, f"l{i}_activation")
        if residual and i > 0:
            res = self.residuals[i][f"{w_in}x{layer.width}"] if w_in != layer.width else None
            h = h + (x if res is None else res(x))
        return h  # (N, width)

    @staticmethod
    def fixed_graph_inputs(x: Tensor, edge_index: Tensor) -> tuple[Tensor, StaticGraph]:
        """``(x, graph)`` for :meth:`forward` on one fixed graph (node tasks): ``x`` as CSR when
        mostly zero, and the graph whose propagation matrices are built once and then reused by
        every path (what :meth:`search_spaces.gnn.GNN.fixed_graph_forward` does for one model)."""
        return sparse_features(x), StaticGraph(edge_index, x.size(0))

    def _classifier_key(self, arch: GNNArchitecture) -> str:
        if arch.skip == "jk_cat":
            return _jk_key(tuple(layer.width for layer in arch.layers))
        return f"w{arch.layers[-1].width}" + (f"-d{arch.depth}" if "depth" in self.split else "")

    def path_modules(self, arch: Architecture) -> list[nn.Module]:
        """The modules a covered architecture runs (what it shares with others)."""
        modules: list[nn.Module] = []
        w_in = self.in_channels
        for i, layer in enumerate(arch.layers):  # type: ignore[attr-defined]
            modules.append(self._conv(i, layer, w_in, arch.depth))  # type: ignore[attr-defined]
            if layer.norm != "none":
                modules.append(self.norms[i][f"{layer.norm}_{layer.width}"])
            if arch.skip == "residual" and i > 0 and w_in != layer.width:  # type: ignore[attr-defined]
                modules.append(self.residuals[i][f"{w_in}x{layer.width}"])
            w_in = layer.width
        modules.append(self.classifiers[self._classifier_key(arch)])  # type: ignore[arg-type]
        return modules

    def extract(self, arch: Architecture) -> nn.Module:
        arch = self.project(arch)
        model = self._space.build(arch, self.in_channels, self.out_channels, self.level)
        w_in = self.in_channels
        for i, (layer, target) in enumerate(zip(arch.layers, model.layers)):
            target.conv.load_state_dict(self._conv(i, layer, w_in, arch.depth).state_dict())
            if layer.norm != "none":
                target.norm.load_state_dict(self.norms[i][f"{layer.norm}_{layer.width}"].state_dict())
            if isinstance(target.res, nn.Linear):
                target.res.load_state_dict(self.residuals[i][f"{w_in}x{layer.width}"].state_dict())
            w_in = layer.width
        model.classifier.load_state_dict(self.classifiers[self._classifier_key(arch)].state_dict())
        return model.to(next(self.parameters()).device)

    # -- decisions for the gradient strategy --------------------------------------------------

    def decisions(self) -> dict[str, tuple[Any, ...]]:
        """``depth``, ``skip``, ``readout`` (graph level) and per position ``l{i}_op`` (an
        operation name such as ``gat-h4``), ``l{i}_activation``, ``l{i}_norm``; the width is
        the first covered width, dropout, lr and weight decay are fixed (``DERIVED_*``)."""
        out: dict[str, tuple[Any, ...]] = {"depth": tuple(range(1, self.max_depth + 1))}
        if self.max_depth > 1:
            out["skip"] = SKIPS
        if self.level == "graph":
            out["readout"] = READOUTS
        for i in range(self.max_depth):
            out[f"l{i}_op"] = tuple(op.name for op in self.ops)
            out[f"l{i}_activation"] = ACTIVATIONS
            out[f"l{i}_norm"] = NORMS
        return out

    def from_decisions(self, choices: dict[str, Any]) -> GNNArchitecture:
        depth = int(choices["depth"])
        by_name = {op.name: op for op in self.ops}
        width = self.widths[0] if len(self.widths) == 1 else choices.get("width", self.widths[0])
        layers = []
        for i in range(depth):
            op = by_name[choices[f"l{i}_op"]]
            layers.append(LayerSpec(
                conv=op.conv, width=width, heads=op.heads, aggregation=op.aggregation,
                activation=choices[f"l{i}_activation"], norm=choices[f"l{i}_norm"],
                dropout=_nearest(DERIVED_DROPOUT, self.dropouts),
            ))
        return GNNArchitecture(
            layers=tuple(layers), skip=choices.get("skip", "none") if depth > 1 else "none",
            readout=choices.get("readout", "mean"), lr=DERIVED_LR, weight_decay=DERIVED_WEIGHT_DECAY,
        )

    def to_decisions(self, arch: Architecture) -> dict[str, Any]:
        arch = self.project(arch)
        out: dict[str, Any] = {"depth": arch.depth}
        if self.max_depth > 1:
            out["skip"] = arch.skip
        if self.level == "graph":
            out["readout"] = arch.readout
        for i, layer in enumerate(arch.layers):
            out.update({
                f"l{i}_op": _op_of(layer).name, f"l{i}_activation": layer.activation,
                f"l{i}_norm": layer.norm,
            })
        return out

    def shortcut_choices(self) -> dict[str, frozenset[Any]]:
        """``linear`` convs (no message passing: the GNN space's analogue of DARTS' skip op),
        the identity activation and the residual skip -- the parameter-free / bypass choices a
        continuous relaxation is known to collapse onto."""
        out: dict[str, frozenset[Any]] = {}
        if self.max_depth > 1:
            out["skip"] = frozenset({"residual"})
        for i in range(self.max_depth):
            out[f"l{i}_op"] = frozenset(op.name for op in self.ops if op.conv == "linear")
            out[f"l{i}_activation"] = frozenset({"linear"})
        return out

    @staticmethod
    def trial_params(arch: Architecture) -> dict[str, Any]:
        return gnn_trial_params(arch)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        n_params = sum(p.numel() for p in self.parameters())
        return (
            f"GNNSupernet(in={self.in_channels}, out={self.out_channels}, level={self.level}, "
            f"max_depth={self.max_depth}, widths={list(self.widths)}, ops={len(self.ops)}, "
            f"dropouts={list(self.dropouts)}, "
            f"params={n_params:,})"
        )


def gnn_trial_params(arch: GNNArchitecture) -> dict[str, Any]:
    """The Optuna parameters :meth:`GNNSpace.suggest` reads back as ``arch``."""
    return GNNSpace.trial_params(arch)


_ACTIVATIONS: dict[str, nn.Module] = {name: make_activation(name) for name in ACTIVATIONS}
#: choices a supernet can split its convolution weights by, and their values (``depth``: the
#: path's number of layers, 1..max_depth, which also splits the classifier)
_SPLIT_CHOICES: dict[str, tuple[str, ...]] = {"norm": NORMS, "activation": ACTIVATIONS, "depth": ()}


def _op_of(layer: LayerSpec) -> _Op:
    return _Op(layer.conv, layer.heads, layer.aggregation)


def _conv_key(op: _Op, w_in: int, w_out: int) -> str:
    return f"{op.name}-{w_in}x{w_out}"


def _jk_key(widths: tuple[int, ...]) -> str:
    return "jk_" + "_".join(str(w) for w in widths)


def _width_combos(widths: tuple[int, ...], depth: int) -> list[tuple[int, ...]]:
    combos: list[tuple[int, ...]] = [()]
    for _ in range(depth):
        combos = [c + (w,) for c in combos for w in widths]
    return combos


def _choice(field: str, value: Any, choices: tuple[Any, ...], convert: Callable[[Any], Any]) -> Any:
    """``convert(value)`` if it is one of ``choices``; else ``ValueError`` naming the field, the
    value as given and the choices (an option value comes as text from the command line)."""
    try:
        converted = convert(value)
    except (TypeError, ValueError):
        converted = None
    if converted not in choices:
        raise ValueError(f"{field} {value!r} is not among the choices {list(choices)}")
    return converted


def _nearest(value: float, choices: tuple[float, ...]) -> float:
    return min(choices, key=lambda c: (abs(c - value), -c))


def _gate(x: Tensor, gates: Gates, name: str) -> Tensor:
    gate = gates.get(name)
    return x if gate is None else x * gate


def resolve_convs(convs: str | None) -> tuple[str, ...] | None:
    """Comma-separated conv names (any spelling) -> canonical names; ``None`` stays ``None``."""
    if not convs:
        return None
    return tuple(resolve_name(c.strip(), CONVS, "conv") for c in convs.split(",") if c.strip())
