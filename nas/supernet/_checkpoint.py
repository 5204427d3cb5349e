"""Supernet checkpoints: safetensors for tensors, JSON for everything else -- never pickle.

A checkpoint folder holds

- ``supernet[.<id>].safetensors``: the supernet's state dict;
- ``optimizer[.<id>].safetensors``: the optimizer's per-parameter state (``"<index>.<name>"``);
- ``supernet.json``: ``format``, ``space``, the supernet's constructor ``config``, the training
  config, the ``dataset``, the finished ``epoch`` and ``step``, the optimizer's param groups,
  the loss ``history``, the training ``seconds`` and the names of the two tensor ``files``.

A checkpoint commits as a whole (:func:`storage.store.write_model_folder`): its tensor files
are written first, under new names over an earlier checkpoint (``<id>``: 16 hex digits of their
SHA-256; 8 random ones before), then ``supernet.json`` naming them replaces the previous one in
one rename (the commit), and only then are the previous checkpoint's files removed. A run killed at any point leaves the previous
checkpoint intact and never mixes one checkpoint's weights with another's optimizer state or
epoch. Checkpoints written before ``files`` existed (``supernet.safetensors``,
``optimizer.safetensors``) still load.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import Tensor, nn

FORMAT = "metanas-supernet/1"
#: the JSON file, and the tensor files of a checkpoint without ``files`` (written before it existed)
META, WEIGHTS, OPTIMIZER = "supernet.json", "supernet.safetensors", "optimizer.safetensors"
#: the tensor file of each kind in ``files`` (its name in a new folder)
_FILES = {"weights": WEIGHTS, "optimizer": OPTIMIZER}


def has_checkpoint(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / META).is_file() and _path(folder, read_meta(folder), "weights").is_file()


def check_checkpoint_folder(folder: str | Path, overwrite: bool) -> None:
    """``ValueError`` (the CLI: exit 2) for a ``folder`` to train into that is a file, or that
    holds files but no supernet checkpoint (a user's notes, another model's export: the
    checkpoint was written among them without a word), unless ``overwrite``. What a killed first checkpoint left (tensor files without
    ``supernet.json``, hidden temporary files) is no checkpoint and does not count. A checkpoint
    written there with ``overwrite`` replaces only checkpoint files: the others are kept."""
    from storage.store import held_files, holds_only_leftovers

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file, not a folder; choose a folder to write the "
                         f"supernet checkpoint into")
    if overwrite or holds_only_leftovers(folder, META, _FILES.values()):
        return
    try:
        if has_checkpoint(folder):
            return
        why = f"its {META} names no weights file there"
    except ValueError as error:  # a supernet.json of something else
        why = str(error)
    reason = f" ({why})" if (folder / META).exists() else ""
    raise ValueError(f"--out {folder} already holds {held_files(folder)} and no supernet "
                     f"checkpoint{reason}; choose another --out folder, or "
                     f"{_overwrite_advice(folder)} (the folder's other files are kept)")


def _overwrite_advice(folder: Path) -> str:
    """How to train into ``folder`` that holds no readable checkpoint, saying which tensor files
    ``--overwrite`` deletes when a damaged ``supernet.json`` sits beside them (its weights may
    be intact: fixing the JSON keeps them)."""
    from storage.store import tensor_file_names

    patterns = [tensor_file_names(name) for name in _FILES.values()]
    tensors = sorted(path.name for path in folder.iterdir()
                     if any(pattern.fullmatch(path.name) for pattern in patterns))
    if not tensors or not (folder / META).exists():
        return "pass --overwrite to train a supernet there"
    deleting = f"--overwrite would train a new one there from scratch, deleting {', '.join(tensors)}"
    weights = tensor_file_names(_FILES["weights"])
    if not any(weights.fullmatch(name) for name in tensors):  # nothing a fixed JSON could resume
        return f"pass --overwrite to train a supernet there ({deleting})"
    return f"fix {META} to resume the supernet its weights hold: {deleting}"


def read_meta(folder: str | Path) -> dict[str, Any]:
    """The JSON part of a checkpoint; ``FileNotFoundError`` naming the folder if absent."""
    path = Path(folder) / META
    if not path.is_file():
        raise FileNotFoundError(f"no supernet checkpoint in {folder} (missing {META})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON ({error}): not a supernet checkpoint") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a {FORMAT} checkpoint (it holds {json.dumps(meta)[:40]}, "
                         f"not a JSON object)")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} checkpoint (format {meta.get('format')!r})")
    _check_fields(path, meta)
    return meta


#: the fields of a supernet.json (those written since ``files`` and ``train`` may be absent:
#: older checkpoints) and the JSON types they must have (``int``: an integer, which a JSON
#: writer may write as ``2.0``)
_FIELDS: dict[str, tuple[type, ...]] = {
    "space": (str,), "supernet": (dict,), "dataset": (str,), "epoch": (int,), "step": (int,),
    "seconds": (float, int), "history": (list,), "param_groups": (list,),
}
_OPTIONAL_FIELDS: dict[str, tuple[type, ...]] = {"files": (dict,), "train": (dict,)}
_JSON_TYPES = {str: "a JSON string", dict: "a JSON object", int: "an integer",
               float: "a JSON number", list: "a JSON array"}


def _check_fields(path: Path, meta: dict[str, Any]) -> None:
    """``ValueError`` naming ``path`` and the first field of a supernet.json that is missing or
    of another type: a damaged or hand-written file failed later with a bare ``'space'`` or
    ``'list' object has no attribute 'get'``, naming no file. An integer field holding an
    integral number (``2.0``) is made that integer in ``meta``."""
    for name, types in {**_FIELDS, **_OPTIONAL_FIELDS}.items():
        if name not in meta and name in _OPTIONAL_FIELDS:
            continue
        if name not in meta:
            raise ValueError(f"{path} is a damaged {FORMAT} checkpoint: it has no {name!r}")
        if types == (int,) and isinstance(meta[name], float) and meta[name].is_integer():
            meta[name] = int(meta[name])
        if not isinstance(meta[name], types) or isinstance(meta[name], bool):
            raise ValueError(f"{path} is a damaged {FORMAT} checkpoint: its {name!r} is "
                             f"{meta[name]!r}, not {_JSON_TYPES[types[0]]}")


def save_checkpoint(
    folder: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None,
    meta: dict[str, Any],
) -> None:
    """Write weights, optimizer state and ``meta`` as one commit
    (:func:`storage.store.write_model_folder`: the JSON last, the earlier files removed after)."""
    from storage.store import encode_state_dict, flatten_optimizer_state, write_model_folder

    tensors: dict[str, bytes] = {WEIGHTS: encode_state_dict(model.state_dict())}
    groups: list[dict[str, Any]] = []
    if optimizer is not None:
        state, groups = flatten_optimizer_state(optimizer.state_dict())
        tensors[OPTIMIZER] = encode_state_dict(state)

    def meta_naming(files: dict[str, str]) -> bytes:
        named = {kind: files[name] for kind, name in _FILES.items() if name in files}
        return json.dumps({**meta, "format": FORMAT, "param_groups": groups, "files": named},
                          indent=1, sort_keys=True).encode()

    write_model_folder(Path(folder), META, tensors, meta_naming, replaced=_FILES.values())


def _path(folder: Path, meta: dict[str, Any], kind: str) -> Path:
    """The tensor file of ``kind`` (weights or optimizer) that ``meta`` was committed with: one
    of the folder's own (:func:`storage.store.named_tensor_file`), never a path elsewhere."""
    from storage.store import named_tensor_file

    return named_tensor_file(folder / META, _FILES[kind], meta.get("files", {}).get(kind))


def load_weights_into(
    supernet: nn.Module, folder: str | Path, meta: dict[str, Any], device: str | torch.device = "cpu",
) -> None:
    """Load the weights of the checkpoint ``meta`` names into ``supernet`` (built from
    ``meta["supernet"]``); ``ValueError`` naming the weights file when they are another
    supernet's (missing, unexpected or reshaped tensors)."""
    from metanets.saved import load_checked

    path = _path(Path(folder), meta, "weights")
    load_checked(supernet, _read_tensors(path, device), path, "supernet")


def _read_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """The tensors of a checkpoint's safetensors file ``path``; a damaged one (truncated, or not
    safetensors at all) is a :class:`~storage.store.ChecksumError` naming it, never unpickled."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from storage.store import ChecksumError

    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as error:
        raise ChecksumError(f"{path} is damaged, not a safetensors file ({error}); it is never "
                            f"unpickled: train the supernet again (--overwrite)") from None


def weights_sha256(folder: str | Path) -> str:
    """SHA-256 of the checkpoint's weights file: the supernet's identity wherever its folder is."""
    from storage.store import file_sha256

    return file_sha256(_path(Path(folder), read_meta(folder), "weights"))


def load_optimizer_state(folder: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The optimizer state dict saved with ``meta`` (for ``optimizer.load_state_dict``)."""
    from storage.store import unflatten_optimizer_state

    path = _path(Path(folder), meta, "optimizer")
    if not path.is_file() and _saved_optimizer(meta):
        raise FileNotFoundError(f"{path}, the optimizer state of {Path(folder) / META}, is "
                                f"missing: resuming without it would not continue the run")
    return unflatten_optimizer_state(_read_tensors(path) if path.is_file() else {},
                                     meta["param_groups"])


def _saved_optimizer(meta: dict[str, Any]) -> bool:
    """Whether the checkpoint ``meta`` was committed with an optimizer state file: ``files``
    names it, or (written before ``files`` existed) it has the optimizer's param groups."""
    return "optimizer" in meta.get("files", {}) or ("files" not in meta and bool(meta["param_groups"]))
