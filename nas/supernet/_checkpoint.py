"""Supernet checkpoints: safetensors for tensors, JSON for everything else -- never pickle.

A checkpoint folder holds

- ``supernet.safetensors``: the supernet's state dict;
- ``optimizer.safetensors``: the optimizer's per-parameter state (``"<index>.<name>"``);
- ``supernet.json``: ``format``, ``space``, the supernet's constructor ``config``, the training
  config, the ``dataset``, the finished ``epoch`` and ``step``, the optimizer's param groups,
  the loss ``history`` and the training ``seconds``.

Files are written to a temporary name and renamed, so a killed run leaves the previous
checkpoint intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import Tensor, nn

FORMAT = "metanas-supernet/1"
META, WEIGHTS, OPTIMIZER = "supernet.json", "supernet.safetensors", "optimizer.safetensors"


def has_checkpoint(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / META).is_file() and (folder / WEIGHTS).is_file()


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The JSON part of a checkpoint; ``FileNotFoundError`` naming the folder if absent."""
    path = Path(folder) / META
    if not path.is_file():
        raise FileNotFoundError(f"no supernet checkpoint in {folder} (missing {META})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON ({error}): not a supernet checkpoint") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint (format {meta.get('format')!r})")
    return meta


def save_checkpoint(
    folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
    meta: dict[str, Any],
) -> None:
    """Write weights, optimizer state and ``meta`` (the JSON file last: it marks completeness)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / WEIGHTS, lambda p: save_file(_contiguous(model.state_dict()), str(p)))
    groups: list[dict[str, Any]] = []
    if optimizer is not None:
        tensors, groups = _flatten_optimizer(optimizer.state_dict())
        _atomic(folder / OPTIMIZER, lambda p: save_file(tensors, str(p)))
    text = json.dumps({**meta, "format": FORMAT, "param_groups": groups}, indent=1, sort_keys=True)
    _atomic(folder / META, lambda p: p.write_text(text))


def load_weights(folder: str | Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / WEIGHTS), device=str(device))


def load_optimizer_state(folder: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The optimizer state dict saved with ``meta`` (for ``optimizer.load_state_dict``)."""
    from safetensors.torch import load_file

    path = Path(folder) / OPTIMIZER
    tensors = load_file(str(path)) if path.is_file() else {}
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    tensors = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{index}.{name}"] = tensor.detach().to("cpu").contiguous()
    return tensors, [dict(group) for group in state_dict["param_groups"]]


def _contiguous(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {key: value.detach().to("cpu").contiguous() for key, value in state.items()}


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)
