"""Saving and restoring the shapes of a pruned model.

A pruned model has the module structure of the architecture it was pruned from, with narrower
tensors and changed width attributes (``in_features``, ``out_channels``, ``num_features``, a
GAT's per-head ``out_channels`` ...). The export stores the unpruned architecture, the pruned
tensors and :func:`pruned_attributes`; :func:`resize_to_pruned` turns a freshly built model of the
architecture into the pruned one, so that the stored state_dict loads.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn


def _width_attributes(module: nn.Module) -> dict[str, Any]:
    return {k: v for k, v in vars(module).items()
            if (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, tuple) and v and all(isinstance(i, int) for i in v))}


def pruned_attributes(original: nn.Module, pruned: nn.Module) -> dict[str, dict[str, Any]]:
    """Module path -> {attribute: pruned value} for every integer attribute pruning changed."""
    pruned_modules = dict(pruned.named_modules())
    changes: dict[str, dict[str, Any]] = {}
    for path, module in original.named_modules():
        before, after = _width_attributes(module), _width_attributes(pruned_modules[path])
        changed = {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in after.items() if before.get(k) != v}
        if changed:
            changes[path] = changed
    return changes


def resize_to_pruned(model: nn.Module, state: dict[str, Tensor],
                     attributes: dict[str, dict[str, Any]]) -> nn.Module:
    """Give ``model`` (built from the unpruned architecture) the shapes of ``state`` and the
    width ``attributes`` of the pruned model, in place; ``ValueError`` on a stray entry."""
    modules = dict(model.named_modules())
    for path, changes in attributes.items():
        if path not in modules:
            raise ValueError(f"pruned attribute of unknown module {path!r}")
        for name, value in changes.items():
            old = getattr(modules[path], name, None)
            setattr(modules[path], name, tuple(value) if isinstance(old, tuple) else value)
    current = model.state_dict(keep_vars=True)
    for key, tensor in state.items():
        if key in current and current[key].shape != tensor.shape:
            owner_path, _, leaf = key.rpartition(".")
            owner = model.get_submodule(owner_path)
            if leaf in owner._parameters:
                owner._parameters[leaf] = nn.Parameter(tensor.new_empty(tensor.shape),
                                                       owner._parameters[leaf].requires_grad)
            else:
                owner._buffers[leaf] = tensor.new_empty(tensor.shape)
    return model
