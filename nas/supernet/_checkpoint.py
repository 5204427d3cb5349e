"""Supernet checkpoints: safetensors for tensors, JSON for everything else -- never pickle.

A checkpoint folder holds

- ``supernet.<id>.safetensors``: the supernet's state dict;
- ``optimizer.<id>.safetensors``: the optimizer's per-parameter state (``"<index>.<name>"``);
- ``supernet.json``: ``format``, ``space``, the supernet's constructor ``config``, the training
  config, the ``dataset``, the finished ``epoch`` and ``step``, the optimizer's param groups,
  the loss ``history``, the training ``seconds`` and the names of the two tensor ``files``.

A checkpoint commits as a whole: its tensor files get a new ``<id>`` and are written first, then
``supernet.json`` naming them replaces the previous one in one rename (the commit), and only then
are the previous checkpoint's files removed. A run killed at any point leaves the previous
checkpoint intact and never mixes one checkpoint's weights with another's optimizer state or
epoch. Checkpoints written before ``files`` existed (``supernet.safetensors``,
``optimizer.safetensors``) still load.
"""
from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import Tensor, nn

FORMAT = "metanas-supernet/1"
#: the JSON file, and the tensor files of a checkpoint without ``files`` (written before it existed)
META, WEIGHTS, OPTIMIZER = "supernet.json", "supernet.safetensors", "optimizer.safetensors"
#: tensor files of any checkpoint, and temporary files a killed write left behind (ours, and
#: the ``.tmpXXXXXX`` that safetensors writes before its own rename)
_TENSOR_FILE = re.compile(r"(supernet|optimizer)(\.[0-9a-f]+)?\.safetensors")
_LEFTOVER = re.compile(r"\.(supernet|optimizer)\S*\.tmp\d+|\.tmp[0-9A-Za-z]{6}")


def has_checkpoint(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / META).is_file() and _path(folder, read_meta(folder), "weights").is_file()


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

    from storage.store import flatten_optimizer_state, replace_atomically

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(4)  # new names: the committed checkpoint's files are never touched
    files = {"weights": f"supernet.{tag}.safetensors"}
    replace_atomically(folder / files["weights"], lambda p: save_file(_contiguous(model.state_dict()), str(p)))
    groups: list[dict[str, Any]] = []
    if optimizer is not None:
        tensors, groups = flatten_optimizer_state(optimizer.state_dict())
        files["optimizer"] = f"optimizer.{tag}.safetensors"
        replace_atomically(folder / files["optimizer"], lambda p: save_file(tensors, str(p)))
    text = json.dumps({**meta, "format": FORMAT, "param_groups": groups, "files": files},
                      indent=1, sort_keys=True)
    replace_atomically(folder / META, lambda p: p.write_text(text))  # the commit
    _remove_stale(folder, set(files.values()))


def _remove_stale(folder: Path, keep: set[str]) -> None:
    """Tensor files of earlier checkpoints and leftovers of killed writes."""
    for path in folder.iterdir():
        stale = _TENSOR_FILE.fullmatch(path.name) and path.name not in keep
        if stale or _LEFTOVER.fullmatch(path.name):
            path.unlink(missing_ok=True)


def _path(folder: Path, meta: dict[str, Any], kind: str) -> Path:
    """The tensor file of ``kind`` (weights or optimizer) that ``meta`` was committed with."""
    legacy = {"weights": WEIGHTS, "optimizer": OPTIMIZER}
    return folder / meta.get("files", legacy).get(kind, legacy[kind])


def load_weights(
    folder: str | Path, device: str | torch.device = "cpu", meta: dict[str, Any] | None = None,
) -> dict[str, Tensor]:
    """The supernet weights of the checkpoint ``meta`` (default: the folder's JSON) names."""
    from safetensors.torch import load_file

    meta = read_meta(folder) if meta is None else meta
    return load_file(str(_path(Path(folder), meta, "weights")), device=str(device))


def load_optimizer_state(folder: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The optimizer state dict saved with ``meta`` (for ``optimizer.load_state_dict``)."""
    from safetensors.torch import load_file

    from storage.store import unflatten_optimizer_state

    path = _path(Path(folder), meta, "optimizer")
    return unflatten_optimizer_state(load_file(str(path)) if path.is_file() else {},
                                     meta["param_groups"])


def _contiguous(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {key: value.detach().to("cpu").contiguous() for key, value in state.items()}


