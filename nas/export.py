"""Load stored models back into modules, and the export format of ``metanas export``.

An exported model is a folder with ``architecture.json`` (space, architecture spec, task
dimensions, metrics, the weights' SHA-256) and ``model.safetensors`` (the weights); no pickle
anywhere. Each file is written to a temporary name and renamed, the weights first: a folder whose
write was killed has no ``architecture.json`` yet, or (when it replaced an export) one whose
checksum its weights fail, and is never loaded as a model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from search_spaces import get_space
from storage import ChecksumError, ModelStore, StoredModel

if TYPE_CHECKING:
    from torch import Tensor, nn

SPEC_FILE = "architecture.json"
#: optional key of a pruned model: ``{"attributes": {module path: {attribute: value}}, ...}``;
#: ``architecture`` then names the unpruned architecture, whose modules the pruned weights
#: narrow (see :mod:`metanets.pruning.shapes`)
PRUNED_KEY = "pruned"
WEIGHTS_FILE = "model.safetensors"
#: spec key naming the weights file when it is not WEIGHTS_FILE (an export written over another)
WEIGHTS_KEY = "weights_file"
#: key of ``architecture.json``: the SHA-256 of the ``model.safetensors`` written with it
#: (exports written before it existed have none and are not checked)
WEIGHTS_SHA256 = "weights_sha256"
FORMAT_VERSION = 1
#: what every ``architecture.json`` records, which :func:`load_exported` builds the model from
SPEC_KEYS: tuple[str, ...] = ("space", "architecture", "in_channels", "out_channels", "level")


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The completed trial with the best first objective (validation accuracy)."""
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        raise KeyError(f"study {study.study_name!r} has no completed trial yet")
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(completed, key=lambda t: (sign * t.values[0], -t.number))


def load_study(storage: str, study_name: str) -> optuna.Study:
    """An existing study: ``FileNotFoundError`` for an SQLite file that does not exist (none is
    created), :class:`storage.UnknownStudyError` (a ``KeyError``) naming the studies the storage
    holds for an unknown name. An SQLite file in a folder this user cannot write is opened
    read-only (:func:`storage.reading_url`)."""
    from storage import check_study, reading_storage

    try:
        return optuna.load_study(study_name=study_name, storage=reading_storage(storage))
    except KeyError:
        check_study(storage, study_name)  # names the studies there
        raise


def load_trial_model(storage: str, study_name: str, trial_number: int | None = None) -> nn.Module:
    """Rebuild the module a trial trained, with its stored weights.

    Args:
        storage: SQLAlchemy URL of the search's database, e.g. ``"sqlite:///metanas.db"``.
        study_name: the study (``metanas studies`` lists them).
        trial_number: a trial of the study (a duplicate trial gives the weights of the trial it
            duplicates); ``None``: the best completed trial.

    Returns:
        The model in eval mode, for inference (as :func:`load_exported`): dropout off,
        BatchNorm with its stored running statistics; call ``.train()`` to train it further.
    """
    study = load_study(storage, study_name)
    trial = best_trial(study) if trial_number is None else _trial(study, trial_number)
    store, record = _stored_model(storage, study, trial)
    model = build_module(record.space, json.loads(record.spec), record.in_channels,
                         record.out_channels, record.level)
    model.load_state_dict(store.load_state_dict(study_name, record.trial_number))
    return model.eval()


def _stored_model(storage: str, study: optuna.Study,
                  trial: optuna.trial.FrozenTrial) -> tuple[ModelStore, StoredModel]:
    """The store (opened to read) and the record of the model ``trial`` trained (a duplicate
    trial's: the one it duplicates); ``KeyError`` saying why there is none."""
    store = ModelStore(storage, read_only=True)
    try:
        return store, store.get(study.study_name, _stored_trial_number(trial))
    except KeyError as error:
        raise KeyError(f"{error.args[0]}{_why_no_model(study, trial)}") from None


def _stored_trial_number(trial: optuna.trial.FrozenTrial) -> int:
    """A duplicate trial reuses the weights of the trial it duplicates."""
    return int(trial.user_attrs.get("duplicate_of", trial.number))


def build_module(space: str, spec: dict[str, Any], in_channels: int, out_channels: int,
                 level: str) -> nn.Module:
    resolved = get_space(space)
    return resolved.build(resolved.architecture_from_dict(spec), in_channels, out_channels, level)


def export_model(
    out: str | Path, *, space: str, spec: dict[str, Any], in_channels: int, out_channels: int,
    level: str, state_dict: dict[str, Tensor], metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an exported model folder; returns its path.

    A folder that already holds files is refused (``FileExistsError``: a model exported there
    would be replaced) unless ``overwrite``, and an ``out`` that is a file
    (``NotADirectoryError``), as :func:`check_export_folder` says. A new folder gets
    ``architecture.json`` and ``model.safetensors``. Over an existing export the new weights go
    to a file of their own (``model.<digest>.safetensors``, named in the spec) and the spec is
    replaced last, in one atomic step (:func:`storage.store.write_model_folder`): a process
    killed at any moment leaves the old model or the new one loadable, never half of each.
    """
    from storage.store import encode_state_dict, sha256, write_model_folder

    check_export_folder(out, overwrite)
    blob = encode_state_dict(state_dict)
    document = {
        "format": FORMAT_VERSION, "space": space, "architecture": spec,
        "in_channels": in_channels, "out_channels": out_channels, "level": level,
        **{k: v for k, v in (metadata or {}).items() if k != WEIGHTS_KEY}, WEIGHTS_SHA256: sha256(blob),
    }

    def spec_naming(files: dict[str, str]) -> bytes:
        named = {WEIGHTS_KEY: files[WEIGHTS_FILE]} if files[WEIGHTS_FILE] != WEIGHTS_FILE else {}
        return (json.dumps({**document, **named}, indent=2, sort_keys=True) + "\n").encode()

    folder = Path(out)
    write_model_folder(folder, SPEC_FILE, {WEIGHTS_FILE: blob}, spec_naming)
    return folder


def export_trial(storage: str, study_name: str, out: str | Path,
                 trial_number: int | None = None, overwrite: bool = False) -> Path:
    """Export a trial's model (the best by default) with its metrics into the folder ``out``.

    A folder that already holds files is refused (``FileExistsError``: a model exported there
    would be replaced) unless ``overwrite``; the replacement is then atomic, as
    :func:`export_model` says. ``NotADirectoryError`` for an ``out`` that is a file.
    """
    study = load_study(storage, study_name)
    trial = best_trial(study) if trial_number is None else _trial(study, trial_number)
    check_export_folder(out, overwrite)  # before the weights are read
    store, record = _stored_model(storage, study, trial)
    return export_model(
        out, space=record.space, spec=json.loads(record.spec), in_channels=record.in_channels,
        out_channels=record.out_channels, level=record.level,
        state_dict=store.load_state_dict(study_name, record.trial_number),
        metadata={"dataset": record.dataset, "study": study_name, "trial": trial.number,
                  "metrics": record.metrics, "num_params": record.num_params},
        overwrite=overwrite,
    )


def check_export_folder(out: str | Path, overwrite: bool, *, name: str = "out",
                        overwrite_hint: str = "overwrite=True") -> None:
    """Refuse to export into ``out`` when it is a file (``NotADirectoryError``), or a folder
    that already holds files (``FileExistsError``: a model exported there would be replaced)
    unless ``overwrite``. A killed export's leftovers (hidden temporary files, weights without
    their spec) are no model and do not count. ``name`` and ``overwrite_hint`` are how the
    message calls the folder and the way to allow it (the CLI: ``--out``, ``--overwrite``)."""
    from storage.store import held_files, holds_only_leftovers

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"{name} {out} is a file, not a folder; choose a folder to write the model into")
    if overwrite or holds_only_leftovers(path, SPEC_FILE, [WEIGHTS_FILE]):
        return
    raise FileExistsError(f"{name} {out} already holds {held_files(path)}; choose a new folder, "
                          f"or pass {overwrite_hint} to write the model there")


def _why_no_model(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> str:
    """Why ``trial`` stored no model, as far as the study knows (": ..." or "")."""
    from nas.study import FAIL_REASON

    state = trial.state.name
    if state != "COMPLETE":
        reason = trial.user_attrs.get(FAIL_REASON)
        return f": the trial is {state}" + (f" ({reason})" if reason else "")
    evaluation = str(study.user_attrs.get("evaluation", ""))  # "evaluator table", "evaluator train, ..."
    evaluator = evaluation.removeprefix("evaluator ").split(",")[0]
    if evaluator and evaluator != "train":
        return f": the study's evaluator {evaluator!r} trains no model to store"
    return ""


def _trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """Trial ``number`` (``KeyError`` naming the study's trial numbers; no negative indexing)."""
    trials = study.get_trials(deepcopy=False)
    if not 0 <= number < len(trials):
        raise KeyError(
            f"no trial {number} in study {study.study_name!r}; its trials are "
            f"{'0..' + str(len(trials) - 1) if trials else 'none yet'}"
        )
    return trials[number]


def check_model_folder(folder: str | Path, option: str = "--model") -> None:
    """``FileNotFoundError`` saying what ``folder`` (the command's ``option``) is when it is no
    folder, missing or a file, rather than that it holds no ``architecture.json``."""
    path = Path(folder)
    if not path.is_dir():
        what = "a file, not a folder" if path.exists() else "no such folder"
        raise FileNotFoundError(f"{option} {folder}: {what}; give an exported model's folder "
                                f"(metanas export, prune or predict-params --out)")


def read_export(folder: str | Path) -> dict[str, Any]:
    """The ``architecture.json`` of an exported model (``FileNotFoundError`` naming it)."""
    path = Path(folder) / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not an exported metanas model folder")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not JSON ({error}): not an exported metanas model") from None
    if not isinstance(document, dict) or "architecture" not in document:
        raise ValueError(f"{path} holds no architecture: not an exported metanas model")
    missing = [key for key in SPEC_KEYS if key not in document]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(map(repr, missing))} (an export records "
                         f"{', '.join(map(repr, SPEC_KEYS[:-1]))} and {SPEC_KEYS[-1]!r}): "
                         f"export the model again")
    _check_channels(document, path)
    return document


def _check_channels(document: dict[str, Any], path: Path) -> None:
    """``ValueError`` naming the spec ``path`` when its ``in_channels`` or ``out_channels`` is
    no positive integer (a spec edited by hand), not the error of the layer built with it."""
    for key in ("in_channels", "out_channels"):
        value = document[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{path} records {key} {value!r}, not a positive integer: export "
                             f"the model again")


def load_exported(folder: str | Path, document: dict[str, Any] | None = None) -> nn.Module:
    """Rebuild an exported model with its weights, in eval mode for inference (as
    :func:`load_trial_model`); call ``.train()`` on it to train it further. ``document``: the
    folder's ``architecture.json`` as :func:`read_export` read it (None: read here), so that
    a caller that checked the spec loads the model of that spec, reading it once."""
    from storage.store import named_tensor_file, sha256

    document = read_export(folder) if document is None else document
    model = build_module(document["space"], document["architecture"], document["in_channels"],
                         document["out_channels"], document["level"])
    spec_path, name = Path(folder) / SPEC_FILE, document.get(WEIGHTS_KEY)
    path = named_tensor_file(spec_path, WEIGHTS_FILE, name, refusal=f"{spec_path} names weights "
                             f"{name!r}, not an export's weights file")  # never a path elsewhere
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the exported model has no weights")
    blob = path.read_bytes()
    expected = document.get(WEIGHTS_SHA256)
    if expected is not None and sha256(blob) != expected:
        raise ChecksumError(
            f"{path} does not match the SHA-256 in {SPEC_FILE} (an export into {folder} was "
            f"interrupted, or the file was changed): export the model again")
    state = _decoded_weights(blob, path)
    if PRUNED_KEY in document:
        from metanets.pruning.shapes import resize_to_pruned

        resize_to_pruned(model, state, document[PRUNED_KEY]["attributes"])
    _load_weights(model, state, path)
    from search_spaces.gnn import GNN

    if PRUNED_KEY in document and isinstance(model, GNN):
        from metanets.pruning._gnn import refresh_widths

        refresh_widths(model)  # its layer specs and architecture: the widths it was pruned to
    return model.eval()


def _decoded_weights(blob: bytes, path: Path) -> dict[str, Tensor]:
    """The tensors of an export's weights file ``path`` (its bytes ``blob``); a damaged one
    (no checksum to catch it: an export written before it had one) is a :class:`ChecksumError`
    naming the file, not safetensors' bare "Error while deserializing"."""
    from safetensors import SafetensorError

    from storage.store import decode_state_dict

    try:
        return decode_state_dict(blob)
    except SafetensorError as error:
        raise ChecksumError(f"{path} is damaged, not a safetensors file ({error}): export the "
                            f"model again") from None


def _load_weights(model: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    """``model.load_state_dict(state)``; weights of other names or shapes (a damaged header no
    checksum caught, another model's file) are a :class:`ChecksumError` naming the file ``path``
    and what did not fit, not torch's bare "Error(s) in loading state_dict"."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        mismatch = str(error).splitlines()[1:2] or [str(error)]
        raise ChecksumError(f"{path} does not hold the weights of the model {SPEC_FILE} describes "
                            f"({mismatch[0].strip()}): the file is damaged or another model's; "
                            f"export the model again") from None


def recorded_dataset(document: dict[str, Any]) -> str | None:
    """The dataset an export's model was last trained on: a pruned model's fine-tuning dataset,
    else the ``dataset`` it records (None where it records none)."""
    pruned = document.get(PRUNED_KEY)
    named = pruned.get("dataset") if isinstance(pruned, dict) else None
    named = named or document.get("dataset")
    return named if isinstance(named, str) and named else None


def canonical_dataset(name: str | None) -> str | None:
    """``name`` (a dataset an export records) resolved where metanas loads it by name, else as
    it is (a DataTask's)."""
    from nas.tasks import resolve_dataset

    try:
        return None if name is None else resolve_dataset(name)
    except ValueError:
        return name


def dataset_note(doing: str, dataset: str, trained_on: str | None) -> str | None:
    """A line saying that ``doing`` ("evaluating", "pruning") is on ``dataset``, a dataset other
    than ``trained_on`` (canonical, :func:`canonical_dataset`), the one the model was trained
    on, or that the export records none (None: on the recorded one)."""
    if trained_on is None:
        return f"note: {doing} on {dataset!r}; the export records no dataset the model was trained on"
    if trained_on != dataset:
        return (f"note: {doing} on {dataset!r}, a dataset other than the one the model was "
                f"trained on ({trained_on!r})")
    return None


def check_fits(document: dict[str, Any], task: Any, trained_on: str | None) -> None:
    """``ValueError`` naming both datasets' dimensions when ``task`` is of another level, or
    has other input features or classes, than the model ``document`` describes (an export's
    ``level``, ``in_channels`` and ``out_channels``), trained on ``trained_on``: the check of
    ``metanas evaluate``, ``prune`` and ``prune-metanet``."""
    model = (document["level"], document["in_channels"], document["out_channels"])
    data = (task.level, task.num_features, task.num_classes)
    if model != data:
        trained = repr(trained_on) if trained_on else "a dataset the export does not record"
        raise ValueError(f"dataset {task.name!r} ({_dimensions(*data)}) does not fit the model "
                         f"trained on {trained} ({_dimensions(*model)})")


def _dimensions(level: str, features: int, classes: int) -> str:
    unit = "channel" if level == "image" else "feature"
    return f"{level} level, {_count(features, 'input ' + unit)}, {_count(classes, 'class')}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}es" if noun.endswith("s") else f"{n} {noun}s"
