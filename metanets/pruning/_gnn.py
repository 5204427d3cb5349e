"""Channel pruning of models of the GNN space (:class:`search_spaces.gnn.GNN`).

torch-pruning's dependency graph traces ``grad_fn`` chains and does not know PyG's message
passing (scatter, attention softmax, polynomial filters), so GNN-space models get this small
routine instead: the model's structure is known from its architecture, and every PyG
convolution of the space has a table saying which axis of each of its tensors indexes output
and input channels.

Pruning units: a layer's output channels; for an attention conv with ``H`` heads a unit is one
channel *per head* (all ``H`` copies go together, so every head keeps the same width); for layers
of different head counts coupled by a residual, one channel of each of ``lcm`` of the head counts
equal blocks (every head of either layer holds whole blocks, so it keeps the same width); channels
inside a conv (GIN's MLP hidden layer, :data:`_INNER_TABLES`), a group of their own. Coupled
channels: a residual connection without projection (``Identity``) adds layer ``i - 1``'s output
to layer ``i``'s, so both layers form one group and lose the same channels; jumping-knowledge
concatenation maps each layer's channels to its own slice of the classifier's input. The
classifier's outputs (classes) and the network inputs are never pruned.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from metanets.pruning.errors import UnsupportedLayerError

#: conv class -> {tensor name: (output axes, input axes)}; ``"heads"`` marks a (1, H, C) tensor
_LINEAR = {"weight": ((0,), (1,)), "bias": ((0,), ())}
_CONV_TABLES: dict[str, dict[str, tuple[tuple[int, ...], tuple[int, ...]] | str]] = {
    "GCNConv": {"bias": ((0,), ()), "lin.weight": ((0,), (1,))},
    "GATConv": {"att_src": "heads", "att_dst": "heads", "bias": ((0,), ()),
                "lin.weight": ((0,), (1,))},
    "GATv2Conv": {"att": "heads", "bias": ((0,), ()), "lin_l.weight": ((0,), (1,)),
                  "lin_l.bias": ((0,), ()), "lin_r.weight": ((0,), (1,)),
                  "lin_r.bias": ((0,), ())},
    "TransformerConv": {f"lin_{n}.{p}": _LINEAR[p] for n in ("key", "query", "value", "skip")
                        for p in ("weight", "bias")},
    "SAGEConv": {"lin_l.weight": ((0,), (1,)), "lin_l.bias": ((0,), ()),
                 "lin_r.weight": ((0,), (1,))},
    "GraphConv": {"lin_rel.weight": ((0,), (1,)), "lin_rel.bias": ((0,), ()),
                  "lin_root.weight": ((0,), (1,))},
    # GIN's MLP: its input and output channels here, its hidden ones in _INNER_TABLES
    "GINConv": {"eps": ((), ()), "nn.0.weight": ((), (1,)), "nn.0.bias": ((), ()),
                "nn.2.weight": ((0,), ()), "nn.2.bias": ((0,), ())},
    "ChebConv": {"bias": ((0,), ()), "lins.*.weight": ((0,), (1,))},
    "TAGConv": {"bias": ((0,), ()), "lins.*.weight": ((0,), (1,))},
    "SGConv": {"lin.weight": ((0,), (1,)), "lin.bias": ((0,), ())},
    "ARMAConv": {"weight": ((2, 3), ()), "init_weight": ((2,), (1,)),
                 "root_weight": ((3,), (2,)), "bias": ((3,), ())},
    "LinearConv": {"lin.weight": ((0,), (1,)), "lin.bias": ((0,), ())},
}
#: conv class -> one table per group of channels inside the conv (neither its input nor its
#: output), {tensor name: (axes that produce the channels, axes that consume them)}
_INNER_TABLES: dict[str, tuple[dict[str, tuple[tuple[int, ...], tuple[int, ...]]], ...]] = {
    "GINConv": ({"nn.0.weight": ((0,), ()), "nn.0.bias": ((0,), ()), "nn.2.weight": ((), (1,))},),
}
_NORM_TABLE = {"weight": ((0,), ()), "bias": ((0,), ()), "running_mean": ((0,), ()),
               "running_var": ((0,), ()), "num_batches_tracked": ((), ())}


def supported_convs() -> list[str]:
    """Conv classes the GNN channel pruner handles."""
    return sorted(_CONV_TABLES)


@dataclasses.dataclass
class _Slot:
    """One tensor touched by a channel group: ``module.name`` along ``axes``."""

    module: nn.Module
    name: str
    axes: tuple[int, ...]
    heads: int = 1          # >1: the axis is flat (head, channel) and units are per-head channels
    offset: int = 0         # start of the group's channels on the axis (jk_cat slices)
    per_head: bool = False  # the tensor is (1, H, C): index axis 2 by unit (``heads`` blocks of
                            # units in C, when the group has ``heads`` times this layer's heads)


@dataclasses.dataclass
class _Group:
    """Coupled output channels of one or more layers, or the channels inside one layer's conv."""

    layers: list[int]
    units: int
    heads: int
    out_slots: list[_Slot]
    in_slots: list[_Slot]
    inner: bool = False  # channels inside the conv of ``layers[0]`` (they come before its output)


def _table_entry(table: dict, name: str) -> tuple | str | None:
    if name in table:
        return table[name]
    parts = name.split(".")
    for key, value in table.items():
        pattern = key.split(".")
        if len(pattern) == len(parts) and all(p in ("*", q) for p, q in zip(pattern, parts)):
            return value
    return None


def _conv_slots(conv: nn.Module, path: str, heads: int) -> tuple[list[_Slot], list[_Slot]]:
    """Output- and input-channel slots of a conv (``UnsupportedLayerError`` if unknown)."""
    table = _CONV_TABLES.get(type(conv).__name__)
    if table is None:
        raise UnsupportedLayerError(type(conv).__name__, path, supported_convs())
    outs, ins = [], []
    for name, _ in _named_tensors(conv):
        entry = _table_entry(table, name)
        if entry is None:
            raise UnsupportedLayerError(
                f"{type(conv).__name__} tensor {name!r}", path, supported_convs())
        owner, leaf = _owner(conv, name)
        if entry == "heads":
            outs.append(_Slot(owner, leaf, (2,), heads, per_head=True))
            continue
        _add_slots(outs, ins, owner, leaf, entry, heads)
    return outs, ins


def _add_slots(outs: list[_Slot], ins: list[_Slot], owner: nn.Module, leaf: str,
               entry: tuple[tuple[int, ...], tuple[int, ...]], heads: int = 1) -> None:
    """Append the output- and input-channel slots of one tensor's ``(out axes, in axes)``."""
    out_axes, in_axes = entry
    if out_axes:
        outs.append(_Slot(owner, leaf, out_axes, heads))
    if in_axes:
        ins.append(_Slot(owner, leaf, in_axes))


def _inner_groups(conv: nn.Module, layer: int) -> list[_Group]:
    """The groups of channels inside ``conv`` (:data:`_INNER_TABLES`), coupled to nothing else."""
    groups = []
    for table in _INNER_TABLES.get(type(conv).__name__, ()):
        outs: list[_Slot] = []
        ins: list[_Slot] = []
        for name, entry in table.items():
            _add_slots(outs, ins, *_owner(conv, name), entry)
        units = getattr(outs[0].module, outs[0].name).shape[outs[0].axes[0]]
        groups.append(_Group([layer], units, 1, outs, ins, inner=True))
    return groups


def _named_tensors(module: nn.Module) -> list[tuple[str, Tensor]]:
    return [(n, t) for n, t in module.state_dict(keep_vars=True).items()]


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (module.get_submodule(path) if path else module), leaf


def _module_slots(module: nn.Module, table: dict) -> list[_Slot]:
    slots = []
    for name, _ in _named_tensors(module):
        out_axes, _ = table[name]
        if out_axes:
            slots.append(_Slot(*_owner(module, name), out_axes))
    return slots


def build_groups(model: nn.Module) -> list[_Group]:
    """The prunable channel groups of a GNN-space model, in layer order (a layer's inner
    channels before its output channels)."""
    arch = model.arch
    outs, ins, heads = [], [], []
    for i, layer in enumerate(model.layers):
        h = layer.spec.heads
        o, n = _conv_slots(layer.conv, f"layers.{i}.conv", h)
        if isinstance(layer.norm, (nn.BatchNorm1d, nn.LayerNorm)):
            o += [dataclasses.replace(s, heads=h) for s in _module_slots(layer.norm, _NORM_TABLE)]
        if isinstance(layer.res, nn.Linear):
            o.append(_Slot(layer.res, "weight", (0,), h))
            n.append(_Slot(layer.res, "weight", (1,)))
        outs.append(o)
        ins.append(n)  # input slots of layer i consume layer i-1's output
        heads.append(h)
    classifier_in = _classifier_slots(model)
    members = _coupled_layers(model)
    groups = []
    for layers in members:
        h = math.lcm(*(heads[i] for i in layers))  # divides the width, a multiple of each
        width = arch.layers[layers[0]].width
        out_slots = [_in_blocks(s, h, heads[i]) for i in layers for s in outs[i]]
        in_slots = [dataclasses.replace(s, heads=h) for i in layers
                    for s in (ins[i + 1] if i + 1 < len(ins) else []) + classifier_in.get(i, [])]
        groups.append(_Group(layers, width // h, h, out_slots, in_slots))
    inner = [g for i, layer in enumerate(model.layers) for g in _inner_groups(layer.conv, i)]
    return sorted(groups + inner, key=lambda g: (g.layers[0], not g.inner))


def _in_blocks(slot: _Slot, blocks: int, layer_heads: int) -> _Slot:
    """``slot`` of a layer with ``layer_heads`` heads, in a group whose channels lie in
    ``blocks`` equal blocks (a multiple of ``layer_heads``)."""
    per_head = blocks // layer_heads if slot.per_head else blocks
    return dataclasses.replace(slot, heads=per_head)


def mixed_head_groups(model: nn.Module) -> list[tuple[int, int]]:
    """``(blocks, most heads)`` of every group in which a residual couples layers of different
    head counts: its unit is one channel in each of ``blocks`` (the least common multiple of
    their head counts) equal blocks, channels per head of its layer with the most heads where
    that count is ``blocks`` (it is a multiple of the others)."""
    counts = [{model.layers[i].spec.heads for i in layers} for layers in _coupled_layers(model)]
    return [(math.lcm(*heads), max(heads)) for heads in counts if len(heads) > 1]


def _coupled_layers(model: nn.Module) -> list[list[int]]:
    """Layers whose outputs are added without projection (identity residuals) share channels."""
    members: list[list[int]] = []
    for i, layer in enumerate(model.layers):
        if i > 0 and isinstance(layer.res, nn.Identity):
            members[-1].append(i)
        else:
            members.append([i])
    return members


def _classifier_slots(model: nn.Module) -> dict[int, list[_Slot]]:
    """Layer index -> the classifier-input slot its channels feed."""
    widths = [layer.width for layer in model.arch.layers]
    if model.arch.skip == "jk_cat":
        offsets = [sum(widths[:i]) for i in range(len(widths))]
        return {i: [_Slot(model.classifier, "weight", (1,), offset=offsets[i])]
                for i in range(len(widths))}
    return {len(widths) - 1: [_Slot(model.classifier, "weight", (1,))]}


def _flat_index(units: Tensor, group: _Group, blocks: int | None = None) -> Tensor:
    """Flat channel indices (head-major, as PyG lays out ``H * C``) of per-head units, in
    ``blocks`` (default: the group's heads) blocks of ``group.units`` channels."""
    blocks = group.heads if blocks is None else blocks
    return torch.cat([units + b * group.units for b in range(blocks)]).sort().values


def unit_scores(groups: list[_Group]) -> list[Tensor]:
    """L2 norm of every unit's parameters over all tensors of its group (tp's group norm)."""
    scores = []
    for group in groups:
        total = torch.zeros(group.units)
        for slot in (*group.out_slots, *group.in_slots):
            total += _slot_sq_norms(slot, group)
        scores.append(total.sqrt())
    return scores


def _slot_sq_norms(slot: _Slot, group: _Group) -> Tensor:
    tensor = getattr(slot.module, slot.name).detach().float()
    if slot.per_head:  # (1, H, C), C = slot.heads blocks of the group's units
        return tensor.pow(2).sum(dim=(0, 1)).view(slot.heads, group.units).sum(dim=0)
    total = torch.zeros(group.units)
    size = group.units * group.heads
    for axis in slot.axes:
        moved = tensor.narrow(axis, slot.offset, size).movedim(axis, 0).reshape(size, -1)
        per_channel = moved.pow(2).sum(dim=1).view(group.heads, group.units)  # head-major
        total += per_channel.sum(dim=0)
    return total


def prune_groups(model: nn.Module, groups: list[_Group], drops: list[Tensor]) -> None:
    """Remove the ``drops`` units of every group from ``model`` (in place; offsets of
    jk_cat slices are handled from the last layer backwards)."""
    order = sorted(range(len(groups)), key=lambda g: -groups[g].layers[0])
    head_widths = _attention_head_widths(model)
    for g in order:
        group, drop = groups[g], drops[g]
        if not len(drop):
            continue
        keep_units = _complement(drop, group.units)
        for slot in (*group.out_slots, *group.in_slots):
            _slice(slot, keep_units, group)
    _keep_attention_scales(head_widths)
    _refresh_attributes(model)


def _attention_head_widths(model: nn.Module) -> dict[nn.Module, int]:
    """Channels per head of every TransformerConv of ``model``, before pruning."""
    return {m: m.out_channels for m in model.modules() if type(m).__name__ == "TransformerConv"}


def _keep_attention_scales(head_widths: dict[nn.Module, int]) -> None:
    """TransformerConv divides its attention scores by ``sqrt(channels per head)``: a pruned one
    would divide by the square root of its new width, changing every score (not only those of the
    removed channels). Its query rows are scaled by ``sqrt(new / old)`` so that each score keeps
    the unpruned scale, and a pruned layer whose removed channels carried nothing computes what
    the unpruned one did."""
    for conv, before in head_widths.items():
        after = conv.lin_query.weight.shape[0] // conv.heads
        if after != before:
            factor = math.sqrt(after / before)
            with torch.no_grad():
                conv.lin_query.weight.mul_(factor)
                if conv.lin_query.bias is not None:
                    conv.lin_query.bias.mul_(factor)


def _complement(drop: Tensor, size: int) -> Tensor:
    mask = torch.ones(size, dtype=torch.bool)
    mask[drop] = False
    return mask.nonzero().view(-1)


def _slice(slot: _Slot, keep_units: Tensor, group: _Group) -> None:
    tensor = getattr(slot.module, slot.name)
    data = tensor.data
    if slot.per_head:
        data = data.index_select(2, _flat_index(keep_units, group, slot.heads))
    else:
        keep = _flat_index(keep_units, group)
        for axis in slot.axes:
            size = data.shape[axis]
            index = torch.cat([torch.arange(slot.offset), keep + slot.offset,
                               torch.arange(slot.offset + group.units * group.heads, size)])
            data = data.index_select(axis, index)
    _replace(slot.module, slot.name, data.contiguous())


def _replace(module: nn.Module, name: str, data: Tensor) -> None:
    if name in module._parameters:
        old = module._parameters[name]
        module._parameters[name] = nn.Parameter(data, requires_grad=old.requires_grad)
    else:
        module._buffers[name] = data


def refresh_widths(model: nn.Module) -> None:
    """Set every width attribute of a GNN-space ``model``, its layer specs and its architecture
    to the widths of its (pruned) tensors: what pruning leaves, and what a pruned export needs
    after loading (it is built from the unpruned architecture)."""
    _refresh_attributes(model)


def _refresh_attributes(model: nn.Module) -> None:
    """Update width attributes of every layer to its (pruned) tensors, and the architecture."""
    from torch_geometric.nn.dense.linear import Linear as PyGLinear

    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
        elif isinstance(module, PyGLinear):
            module.out_channels, module.in_channels = module.weight.shape
        elif isinstance(module, nn.BatchNorm1d):
            module.num_features = module.running_mean.shape[0]
        elif isinstance(module, nn.LayerNorm) and module.weight is not None:
            module.normalized_shape = tuple(module.weight.shape)
    widths = []
    for i, layer in enumerate(model.layers):
        width = _conv_width(layer.conv)
        _set_conv_channels(layer.conv, _layer_input(model, i), width // layer.spec.heads)
        layer.spec = dataclasses.replace(layer.spec, width=width)
        widths.append(layer.spec)
    model.arch = dataclasses.replace(model.arch, layers=tuple(widths))


def _conv_width(conv: nn.Module) -> int:
    """Output channels of a pruned conv, read from its first output-axis tensor."""
    table = _CONV_TABLES[type(conv).__name__]
    for name, tensor in _named_tensors(conv):
        entry = _table_entry(table, name)
        if entry != "heads" and entry[0]:
            return tensor.shape[entry[0][0]]
    raise AssertionError(f"{type(conv).__name__} has no output tensor")


def _layer_input(model: nn.Module, i: int) -> int:
    return model.in_channels if i == 0 else model.layers[i - 1].spec.width


def _set_conv_channels(conv: nn.Module, in_channels: int, out_channels: int) -> None:
    if hasattr(conv, "in_channels"):
        conv.in_channels = in_channels
    if hasattr(conv, "out_channels"):
        conv.out_channels = out_channels
