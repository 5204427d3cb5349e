"""Read and write architectures and trained weights (never through pickle)."""
from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.engine import (
    DEFAULT_STORAGE, create_engine, missing_tables, reading_engine, redact, retry_schema_race,
)
from storage.models import ArchitectureModel, BaseModel, TrainedModelModel, ZooCheckpointModel

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from torch import Tensor


class ChecksumError(ValueError):
    """Stored weights that are damaged: their bytes no longer match their SHA-256, or they are
    not a safetensors blob (never unpickled)."""


@dataclasses.dataclass(frozen=True)
class StoredModel:
    """A trained model's record without its weights."""

    study_name: str
    trial_number: int
    space: str
    arch_hash: str
    spec: str            # canonical JSON of the architecture
    dataset: str
    level: str
    in_channels: int
    out_channels: int
    num_params: int
    flops: int | None
    metrics: dict[str, float]
    weights_nbytes: int


@dataclasses.dataclass(frozen=True)
class StoredCheckpoint:
    """A zoo checkpoint's record without its weights."""

    study_name: str
    trial_number: int
    epoch: int
    metrics: dict[str, float]
    weights_nbytes: int


def encode_state_dict(state_dict: dict[str, Tensor]) -> bytes:
    """safetensors bytes of a state_dict (tensors made contiguous, on the CPU)."""
    from safetensors.torch import save

    tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
    return save(tensors)


def decode_state_dict(blob: bytes) -> dict[str, Tensor]:
    from safetensors.torch import load

    return load(blob)


def flatten_optimizer_state(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """An optimizer's ``state_dict`` as tensors for safetensors (``"<param index>.<name>"``,
    scalars made tensors, on the CPU) and its param groups for JSON."""
    import torch

    tensors = {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{index}.{name}"] = tensor.detach().to("cpu").contiguous()
    return tensors, [dict(group) for group in state_dict["param_groups"]]


def unflatten_optimizer_state(tensors: dict[str, Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer_state`: a ``state_dict`` for
    ``optimizer.load_state_dict``."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": groups}


def write_state_file(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """A training state as one safetensors file: ``tensors`` (moved to the CPU) and ``meta`` as
    JSON under the metadata key ``"state"``, replacing ``path`` in one rename (a run killed
    while writing leaves the previous state whole). Never pickle."""
    import json

    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, lambda tmp: save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)}))


def read_state_file(path: str | Path, fmt: str, what: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and JSON metadata of a :func:`write_state_file` file whose ``meta["format"]``
    is ``fmt``; ``ValueError`` naming ``what`` it should be otherwise (it is never unpickled)."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("state", "{}"))
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise ValueError(f"{path} is not a {what} file ({type(error).__name__}: {error}); it is "
                         "never unpickled") from error
    if meta.get("format") != fmt:
        raise ValueError(f"{path} is not a {fmt} file (format {meta.get('format')!r})")
    return tensors, meta


def settings_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``"key saved, not wanted"`` for every setting of ``wanted`` that ``saved`` holds otherwise."""
    return [f"{k} {saved.get(k)!r}, not {wanted[k]!r}" for k in wanted if saved.get(k) != wanted[k]]


def read_training_state(
    path: str | Path, fmt: str, what: str, run: str, settings: dict[str, Any],
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and metadata of a training state written by :func:`write_state_file` with
    its settings in ``meta["config"]``; ``ValueError`` when the file is not a ``what`` file
    ("GHN training-state", :func:`read_state_file`) or holds a ``run`` ("GHN training") under
    other ``settings`` (each difference named: ``"lr 0.002, not 0.001"``)."""
    tensors, meta = read_state_file(path, fmt, what)
    differ = settings_differences(meta["config"], settings)
    if differ:
        raise ValueError(f"{path} holds the state of a {run} with " + "; ".join(differ)
                         + ": resume it with the settings it was run with, or remove it to "
                         "start again")
    return tensors, meta


def tensors_under(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries of ``tensors`` whose key starts with ``prefix``, the prefix taken off."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """:func:`sha256` of the file ``path``, read in chunks of ``chunk`` bytes (a weights file
    may be larger than the memory to spare)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def replace_atomically(path: Path, content: bytes | Callable[[Path], object]) -> None:
    """Write ``path`` through a temporary name in its folder (``content``: the bytes, or a function
    that writes the file it is given) and rename it: a killed process leaves the old file whole,
    and at most a hidden ``.<name>.tmp<pid>`` beside it, which the next write of ``path`` removes
    once that process is gone. The file is flushed to disk before the rename and the rename
    after it (a power cut leaves the old or the new file, not an empty one), and it gets the
    mode the umask gives new files (safetensors writes 0600)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    if isinstance(content, bytes):
        tmp.write_bytes(content)
    else:
        content(tmp)
    os.chmod(tmp, 0o666 & ~_umask())
    with open(tmp, "rb") as written:
        os.fsync(written.fileno())
    os.replace(tmp, path)
    _fsync_folder(path.parent)
    _remove_leftovers(path)


def _umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; not possible on every system."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_leftovers(path: Path) -> None:
    """Temporary files of ``path`` that writers killed before their rename left behind."""
    prefix = f".{path.name}.tmp"
    for leftover in path.parent.glob(f"{glob.escape(prefix)}*"):
        pid = leftover.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not _running(int(pid)):
            leftover.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# model folders: tensor files and the JSON that names them ----------------------------------
def write_model_folder(
    folder: Path, spec_file: str, tensor_files: dict[str, bytes],
    spec: Callable[[dict[str, str]], bytes], replaced: Iterable[str] = (),
) -> dict[str, str]:
    """Write a model folder (tensor files and the JSON ``spec_file`` that names them) so that a
    process killed at any moment leaves the model it held, or the new one, whole:

    1. each of ``tensor_files`` (name to bytes) goes to a file of its own: ``name`` in a folder
       without ``spec_file``, else :func:`own_name` (a new name for new bytes: the files the
       committed spec names are never touched);
    2. ``spec(files)``, the spec naming the file each tensor file got, replaces ``spec_file``
       in one rename (the commit);
    3. then the files of these names (and of the ``replaced`` names: the earlier model's
       other tensor files) that the new spec does not name are removed, with the hidden
       temporary files of writers killed before their rename.

    Every file goes through :func:`replace_atomically`. Returns ``{name: file written}``."""
    folder.mkdir(parents=True, exist_ok=True)
    replacing = (folder / spec_file).is_file()
    files = {name: own_name(name, sha256(blob)) if replacing else name
             for name, blob in tensor_files.items()}
    for name, blob in tensor_files.items():
        replace_atomically(folder / files[name], blob)
    replace_atomically(folder / spec_file, spec(files))
    _remove_unnamed(folder, {*tensor_files, *replaced}, {*files.values(), spec_file})
    return files


def own_name(name: str, digest: str) -> str:
    """``model.safetensors`` -> ``model.<16 hex digits of digest>.safetensors``."""
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{digest[:16]}.{suffix}" if dot else f"{name}.{digest[:16]}"


def tensor_file_names(name: str) -> re.Pattern[str]:
    """The names tensor file ``name`` has in a model folder: itself or an :func:`own_name`
    (any number of hex digits: supernet checkpoints wrote 8)."""
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        return re.compile(re.escape(name) + r"(\.[0-9a-f]+)?")
    return re.compile(re.escape(stem) + r"(\.[0-9a-f]+)?" + re.escape(f".{suffix}"))


def named_tensor_file(spec_path: Path, name: str, named: object = None,
                      refusal: str | None = None) -> Path:
    """The file a model folder's spec (``spec_path``) names (``named``; None: ``name``
    itself) for its tensor file ``name``: one of :func:`tensor_file_names` in the spec's
    folder. Anything else (a path to a file elsewhere) is never read: ``ValueError`` saying
    ``refusal`` (default: what was named and what may be)."""
    named = name if named is None else named
    if not isinstance(named, str) or not tensor_file_names(name).fullmatch(named):
        stem, _, suffix = name.rpartition(".")
        raise ValueError(refusal or f"{spec_path} names {named!r} for {name}, not a file "
                                    f"{stem}[.<hex digits>].{suffix} of the folder")
    return spec_path.parent / named


def holds_only_leftovers(folder: Path, spec_file: str, names: Iterable[str]) -> bool:
    """Whether ``folder`` holds no model but at most what a write killed before its spec left:
    no ``spec_file``, only hidden (temporary) files and tensor files of ``names``. A missing
    folder holds nothing."""
    if not folder.is_dir():
        return True
    patterns = [tensor_file_names(name) for name in names]
    return not (folder / spec_file).exists() and all(
        path.name.startswith(".") or any(p.fullmatch(path.name) for p in patterns)
        for path in folder.iterdir())


def held_files(folder: Path, most: int = 3) -> str:
    """The files ``folder`` holds, for a message: ``"a.json, b.txt, c.txt and 2 more"``
    (hidden files, such as temporary ones, left out)."""
    held = sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))
    return ", ".join(held[:most]) + (f" and {len(held) - most} more" if len(held) > most else "")


def _remove_unnamed(folder: Path, names: set[str], keep: set[str]) -> None:
    """Remove the files of tensor files ``names`` but ``keep`` (those the folder's spec names
    now), and the temporary files that writers of them killed before their rename left."""
    patterns = [tensor_file_names(name) for name in names]
    for path in folder.iterdir():
        if path.name not in keep and any(p.fullmatch(path.name) for p in patterns):
            path.unlink(missing_ok=True)
        temporary = _TEMPORARY.fullmatch(path.name)
        if temporary and any(p.fullmatch(temporary[1]) for p in patterns):
            _remove_leftovers(path.with_name(temporary[1]))


#: :func:`replace_atomically`'s temporary file of a file (group 1: its name)
_TEMPORARY = re.compile(r"\.(.+)\.tmp\d+")


class ModelStore:
    """Architectures and trained weights in a SQL database (the same one optuna uses).

    Args:
        url: SQLAlchemy URL, or an engine.
        read_only: for a command that only reads the URL ``url``: its database is opened as
            :func:`storage.engine.reading_engine` says (nothing can be written, no SQLite file
            is created) and its tables are not created; a table it lacks reads as empty.
    """

    def __init__(self, url: str | Engine = DEFAULT_STORAGE, *, read_only: bool = False) -> None:
        if read_only:
            self.engine = reading_engine(url)
            self._absent = frozenset(missing_tables(self.engine, BaseModel.metadata.tables))
        else:
            self.engine = create_engine(url) if isinstance(url, str) else url
            retry_schema_race(lambda: BaseModel.metadata.create_all(self.engine))
            self._absent = frozenset()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _lacks(self, model: type[BaseModel]) -> bool:
        """Whether the database lacks ``model``'s table (a read-only store reads it as empty)."""
        return model.__tablename__ in self._absent

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One scoped session that commits, or rolls back on any error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def save_model(
        self, *, study_name: str, trial_number: int, space: str, arch_hash: str, spec: str,
        dataset: str, level: str, in_channels: int, out_channels: int, num_params: int,
        flops: int | None, metrics: dict[str, float], state_dict: dict[str, Tensor],
    ) -> None:
        """Store a trained model (its architecture row is shared with earlier trials)."""
        blob = encode_state_dict(state_dict)
        arch_id = self._architecture_id(space, arch_hash, spec)
        with self.session() as session:
            session.add(TrainedModelModel(
                study_name=study_name, trial_number=trial_number, architecture_id=arch_id,
                dataset=dataset, level=level, in_channels=in_channels, out_channels=out_channels,
                num_params=num_params, flops=flops, metrics=metrics, weights=blob,
                weights_sha256=sha256(blob), weights_nbytes=len(blob),
            ))

    def _architecture_id(self, space: str, arch_hash: str, spec: str) -> int:
        query = select(ArchitectureModel.architecture_id).filter_by(space=space, arch_hash=arch_hash)
        with self.session() as session:
            found = session.scalar(query)
            if found is not None:
                return found
        try:
            with self.session() as session:
                row = ArchitectureModel(space=space, arch_hash=arch_hash, spec=spec)
                session.add(row)
                session.flush()
                return row.architecture_id
        except IntegrityError:  # another worker stored it between our read and write
            with self.session() as session:
                return session.scalar(query)

    def _row(self, session: Session, study_name: str, trial_number: int) -> TrainedModelModel:
        row = None if self._lacks(TrainedModelModel) else session.scalar(
            select(TrainedModelModel).filter_by(study_name=study_name, trial_number=trial_number)
        )
        if row is None:
            raise KeyError(
                f"no stored model for trial {trial_number} of study {study_name!r} in "
                f"{redact(self.engine.url)}"
            )
        return row

    def get(self, study_name: str, trial_number: int) -> StoredModel:
        """The record of a trial's model; ``KeyError`` if the trial stored none."""
        with self.session() as session:
            row = self._row(session, study_name, trial_number)
            return _record(row)

    def load_state_dict(self, study_name: str, trial_number: int) -> dict[str, Tensor]:
        """The stored weights, checked against their SHA-256 (:class:`ChecksumError`)."""
        with self.session() as session:
            row = self._row(session, study_name, trial_number)
            blob, expected = bytes(row.weights), row.weights_sha256
        return _checked(blob, expected, f"trial {trial_number} of study {study_name!r}")

    def list_models(self, study_name: str | None = None) -> list[StoredModel]:
        """Records of every stored model (of one study, if given), by study and trial number."""
        query = select(TrainedModelModel).order_by(
            TrainedModelModel.study_name, TrainedModelModel.trial_number
        )
        if study_name is not None:
            query = query.filter_by(study_name=study_name)
        if self._lacks(TrainedModelModel):
            return []
        with self.session() as session:
            return [_record(row) for row in session.scalars(query)]

    def study_names(self) -> list[str]:
        """The names of the studies that stored models, sorted."""
        query = select(TrainedModelModel.study_name).distinct().order_by(TrainedModelModel.study_name)
        if self._lacks(TrainedModelModel):
            return []
        with self.session() as session:
            return list(session.scalars(query))

    def trial_numbers(self, study_name: str) -> list[int]:
        query = select(TrainedModelModel.trial_number).filter_by(study_name=study_name)
        if self._lacks(TrainedModelModel):
            return []
        with self.session() as session:
            return sorted(session.scalars(query))

    # model-zoo checkpoints ---------------------------------------------------------------------
    def save_checkpoints(
        self, study_name: str, trial_number: int,
        checkpoints: dict[int, tuple[dict[str, float], dict[str, Tensor]]],
    ) -> None:
        """Store a trial's ``{epoch: (metrics, state_dict)}`` in one transaction."""
        with self.session() as session:
            for epoch, (metrics, state_dict) in sorted(checkpoints.items()):
                blob = encode_state_dict(state_dict)
                session.add(ZooCheckpointModel(
                    study_name=study_name, trial_number=trial_number, epoch=int(epoch),
                    metrics={k: float(v) for k, v in metrics.items()}, weights=blob,
                    weights_sha256=sha256(blob), weights_nbytes=len(blob),
                ))

    def list_checkpoints(self, study_name: str) -> list[StoredCheckpoint]:
        """Records of a study's checkpoints, by trial and epoch."""
        query = select(ZooCheckpointModel).filter_by(study_name=study_name).order_by(
            ZooCheckpointModel.trial_number, ZooCheckpointModel.epoch)
        if self._lacks(ZooCheckpointModel):
            return []
        with self.session() as session:
            return [
                StoredCheckpoint(row.study_name, row.trial_number, row.epoch, dict(row.metrics),
                                 row.weights_nbytes)
                for row in session.scalars(query)
            ]

    def load_checkpoint(self, study_name: str, trial_number: int, epoch: int) -> dict[str, Tensor]:
        """A checkpoint's weights, checked against their SHA-256 (:class:`ChecksumError`)."""
        query = select(ZooCheckpointModel).filter_by(
            study_name=study_name, trial_number=trial_number, epoch=epoch)
        with self.session() as session:
            row = None if self._lacks(ZooCheckpointModel) else session.scalar(query)
            if row is None:
                raise KeyError(
                    f"no checkpoint at epoch {epoch} of trial {trial_number} of study "
                    f"{study_name!r} in {redact(self.engine.url)}")
            blob, expected = bytes(row.weights), row.weights_sha256
        return _checked(blob, expected, f"checkpoint {epoch} of trial {trial_number} of study {study_name!r}")

    def iter_checkpoint_weights(self, study_name: str) -> Iterator[tuple[int, int, dict[str, Tensor]]]:
        """``(trial, epoch, state_dict)`` of every checkpoint of a study (checked), streamed."""
        query = select(
            ZooCheckpointModel.trial_number, ZooCheckpointModel.epoch, ZooCheckpointModel.weights,
            ZooCheckpointModel.weights_sha256,
        ).filter_by(study_name=study_name).order_by(
            ZooCheckpointModel.trial_number, ZooCheckpointModel.epoch)
        if self._lacks(ZooCheckpointModel):
            return
        with self.session() as session:
            rows = session.execute(query).all()
        for trial, epoch, blob, expected in rows:
            yield trial, epoch, _checked(bytes(blob), expected, f"checkpoint {epoch} of trial {trial}")

    def __repr__(self) -> str:
        return f"ModelStore({redact(self.engine.url)!r})"


def _record(row: TrainedModelModel) -> StoredModel:
    arch = row.architecture
    return StoredModel(
        study_name=row.study_name, trial_number=row.trial_number, space=arch.space,
        arch_hash=arch.arch_hash, spec=arch.spec, dataset=row.dataset, level=row.level,
        in_channels=row.in_channels, out_channels=row.out_channels, num_params=row.num_params,
        flops=row.flops, metrics=dict(row.metrics), weights_nbytes=row.weights_nbytes,
    )


def record_to_dict(record: StoredModel) -> dict[str, Any]:
    return dataclasses.asdict(record)


def _checked(blob: bytes, expected: str, what: str) -> dict[str, Tensor]:
    """The tensors of the stored weights ``blob`` of ``what`` ("trial 3 of study 's'"); a
    :class:`ChecksumError` naming it when they fail their SHA-256 ``expected`` or are no
    safetensors blob (a row written or changed by something else), never safetensors' bare
    "Error while deserializing"."""
    from safetensors import SafetensorError

    if sha256(blob) != expected:
        raise ChecksumError(
            f"weights of {what} are corrupt: SHA-256 {sha256(blob)[:16]}... does not match the "
            f"stored {expected[:16]}..."
        )
    try:
        return decode_state_dict(blob)
    except SafetensorError as error:
        raise ChecksumError(f"weights of {what} are damaged, not a safetensors blob ({error}); "
                            f"they are never unpickled") from None
