from __future__ import annotations

import pytest
import sqlalchemy
import torch

from storage import ChecksumError, ModelStore, StorageURLError, parse_url, redact
from storage.models import ArchitectureModel, TrainedModelModel


def _save(store: ModelStore, trial: int, arch_hash: str = "a" * 64, state=None) -> dict:
    state = state or {"w": torch.randn(3, 4), "b": torch.arange(3.0), "n": torch.tensor(7)}
    store.save_model(
        study_name="s", trial_number=trial, space="gnn", arch_hash=arch_hash, spec="{}",
        dataset="cora", level="node", in_channels=4, out_channels=3, num_params=15, flops=100,
        metrics={"val_acc": 0.5}, state_dict=state,
    )
    return state


def test_weights_round_trip_bit_identical(sqlite_url: str) -> None:
    store = ModelStore(sqlite_url)
    state = _save(store, 0)
    loaded = store.load_state_dict("s", 0)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) and loaded[k].dtype == state[k].dtype for k in state)
    record = store.get("s", 0)
    assert (record.space, record.num_params, record.metrics) == ("gnn", 15, {"val_acc": 0.5})


def test_architecture_row_is_shared_and_trial_unique(sqlite_url: str) -> None:
    store = ModelStore(sqlite_url)
    _save(store, 0)
    _save(store, 1)
    with store.session() as session:
        assert session.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(ArchitectureModel)) == 1
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        _save(store, 1)
    assert store.trial_numbers("s") == [0, 1]  # the failed write left nothing behind


def test_corrupt_blob_raises_checksum_error(sqlite_url: str) -> None:
    store = ModelStore(sqlite_url)
    _save(store, 0)
    with store.session() as session:
        row = session.scalar(sqlalchemy.select(TrainedModelModel))
        blob = bytearray(row.weights)
        blob[-1] ^= 0xFF
        row.weights = bytes(blob)
    with pytest.raises(ChecksumError, match="corrupt"):
        store.load_state_dict("s", 0)


class _Payload:
    """Unpickling it writes the file it names: proof that stored weights were unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("damage", ["truncated", "pickle"])
def test_weights_that_pass_their_checksum_but_are_no_safetensors_are_refused_naming_the_trial(
    sqlite_url: str, tmp_path, capsys, damage: str,
) -> None:
    """A blob whose SHA-256 was written with it (by another writer, or recomputed) but which
    is no safetensors gave safetensors' bare "Error while deserializing: header too large",
    naming neither the trial nor the study; a pickle in its place is never unpickled."""
    import hashlib
    import pickle

    import optuna

    from nas.cli import main

    study = optuna.create_study(storage=sqlite_url, study_name="s", direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5))
    store = ModelStore(sqlite_url)
    _save(store, 0)
    opened = tmp_path / "unpickled"
    with store.session() as session:
        row = session.scalar(sqlalchemy.select(TrainedModelModel))
        blob = row.weights[: len(row.weights) // 2] if damage == "truncated" else pickle.dumps(_Payload(str(opened)))
        row.weights, row.weights_sha256 = blob, hashlib.sha256(blob).hexdigest()
    with pytest.raises(ChecksumError, match="weights of trial 0 of study 's' are damaged, not a safetensors blob"):
        store.load_state_dict("s", 0)
    out = tmp_path / "export"
    assert main(["export", "--storage", sqlite_url, "--study", "s", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "metanas export: error: weights of trial 0 of study 's' are damaged" in err, err
    assert not out.exists() and not opened.exists()


def test_missing_model_is_a_clear_key_error(sqlite_url: str) -> None:
    with pytest.raises(KeyError, match="no stored model for trial 3 of study 'x'"):
        ModelStore(sqlite_url).load_state_dict("x", 3)


def test_failed_write_rolls_back(sqlite_url: str) -> None:
    store = ModelStore(sqlite_url)
    with pytest.raises(RuntimeError):
        with store.session() as session:
            session.add(ArchitectureModel(space="gnn", arch_hash="b" * 64, spec="{}"))
            session.flush()
            raise RuntimeError("boom")
    with store.session() as session:
        assert session.scalar(sqlalchemy.select(ArchitectureModel)) is None


@pytest.mark.parametrize("url", ["nonsense", "sqlite//x.db", "postgresql://u:pw@host:notaport/db", "oracle+nope://x"])
def test_malformed_urls_are_clear_and_hide_passwords(url: str) -> None:
    with pytest.raises(StorageURLError) as info:
        parse_url(url)
    assert "pw" not in str(info.value)


def test_redact_hides_the_password() -> None:
    assert redact("postgresql://alice:s3cret@db:5432/metanas") == "postgresql://alice:***@db:5432/metanas"
    assert "s3cret" not in repr(ModelStore.__new__(ModelStore).__class__)  # no password in class repr


@pytest.mark.parametrize("url, shown", [
    ("postgresql://alice@db/metanas?password=s3cret&sslmode=require",
     "postgresql://alice@db/metanas?password=***&sslmode=require"),
    ("postgresql://alice@db/metanas?sslpassword=s3cret", "postgresql://alice@db/metanas?sslpassword=***"),
    ("postgresql://alice:s3@cret@db/metanas", "postgresql://alice:***@db/metanas"),
    ("postgresql://alice@db:port/metanas?password=s3cret", None),  # malformed: the fallback
])
def test_redact_hides_passwords_in_the_query_and_around_an_unencoded_at(url: str, shown: str | None) -> None:
    assert "cret" not in redact(url)
    assert shown is None or redact(url) == shown


def test_unencoded_at_in_a_password_is_refused_without_showing_it(capsys) -> None:
    from nas.cli import main

    with pytest.raises(StorageURLError, match="%40") as info:
        parse_url("postgresql://alice:s3@cret@127.0.0.1:1/metanas")
    assert "cret" not in str(info.value)
    assert main(["studies", "--storage", "postgresql://alice:s3@cret@127.0.0.1:1/metanas"]) == 2
    assert "cret" not in capsys.readouterr().err


def test_a_dialect_whose_driver_is_missing_is_bad_input_naming_the_driver(capsys) -> None:
    from nas.cli import main

    url = "mysql://alice:s3cret@db/metanas"  # SQLAlchemy knows mysql; MySQLdb is not installed
    with pytest.raises(StorageURLError, match="needs the driver module 'MySQLdb' of 'mysql'"):
        parse_url(url)
    assert main(["studies", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "MySQLdb" in err and "s3cret" not in err


def test_an_sqlite_file_in_a_missing_folder_names_the_folder(capsys, tmp_path) -> None:
    from nas.cli import main

    url = f"sqlite:///{tmp_path}/missing/metanas.db"
    with pytest.raises(StorageURLError, match=f"folder '{tmp_path}/missing' of the SQLite file does not exist"):
        parse_url(url)
    assert main(["studies", "--storage", url]) == 2
    assert "missing' of the SQLite file does not exist" in capsys.readouterr().err
    parse_url("sqlite://")  # in memory
    parse_url(f"sqlite:///{tmp_path}/new.db")  # a new file in an existing folder


@pytest.mark.postgres
def test_postgres_round_trip(postgres_url: str) -> None:
    store = ModelStore(postgres_url)
    state = _save(store, 0)
    assert torch.equal(store.load_state_dict("s", 0)["w"], state["w"])
    assert "metanas:metanas" not in repr(store)


def test_sqlite_connections_journal_to_wal_without_a_sync_per_commit(sqlite_url: str) -> None:
    from storage import create_engine, make_optuna_storage

    optuna_engine = make_optuna_storage(sqlite_url).engine
    store_engine = create_engine(sqlite_url)
    for engine in (optuna_engine, store_engine):
        with engine.connect() as connection:
            pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
            assert pragma("journal_mode") == "wal"
            assert pragma("synchronous") == 1  # NORMAL (FULL is 2, the default)
    with store_engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


# writing files atomically ---------------------------------------------------------------------
def test_an_atomic_write_gets_the_umask_mode_not_the_writers_0600(tmp_path) -> None:
    import os
    import stat

    from storage.store import replace_atomically

    def private_writer(tmp) -> None:  # as safetensors writes its files
        tmp.write_bytes(b"x")
        os.chmod(tmp, 0o600)

    mask = os.umask(0o027)
    try:
        replace_atomically(tmp_path / "a.safetensors", private_writer)
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.safetensors").stat().st_mode) == 0o640


def test_an_atomic_write_flushes_the_file_before_its_rename(tmp_path, monkeypatch) -> None:
    import os

    import storage.store
    from storage.store import replace_atomically

    events = []
    monkeypatch.setattr(storage.store.os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))))
    replace = os.replace
    monkeypatch.setattr(storage.store.os, "replace", lambda a, b: (events.append(("replace", str(b))), replace(a, b)))
    replace_atomically(tmp_path / "f.json", b"{}")
    assert events[0] == ("fsync", str(tmp_path / ".f.json.tmp" f"{os.getpid()}"))
    assert events[1] == ("replace", str(tmp_path / "f.json"))
    assert events[2] == ("fsync", str(tmp_path))  # the rename itself


def test_the_next_write_removes_leftovers_of_dead_writers_only(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from storage.store import replace_atomically

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    leftover = tmp_path / f".f.json.tmp{int(dead.stdout)}"
    leftover.write_bytes(b"half")
    alive = tmp_path / f".f.json.tmp{os.getppid()}"  # a writer still at work
    alive.write_bytes(b"busy")
    other = tmp_path / ".g.json.tmp1"  # another file's
    other.write_bytes(b"other")
    replace_atomically(tmp_path / "f.json", b"{}")
    assert (tmp_path / "f.json").read_bytes() == b"{}"
    assert not leftover.exists() and alive.exists() and other.exists()


# model folders (write_model_folder): what export, metanetwork saves and supernet checkpoints share
def _write_folder(folder, tensors: dict[str, bytes], run: int) -> dict[str, str]:
    import json

    from storage.store import write_model_folder

    def spec(files: dict[str, str]) -> bytes:
        return json.dumps({"run": run, "files": files}).encode()

    return write_model_folder(folder, "spec.json", tensors, spec)


def _read_folder(folder) -> tuple[int, dict[str, bytes]]:
    """The run a folder's spec was written by and the bytes of the files it names."""
    import json

    from storage.store import named_tensor_file

    spec = json.loads((folder / "spec.json").read_text())
    return spec["run"], {name: named_tensor_file(folder / "spec.json", name, named).read_bytes()
                         for name, named in spec["files"].items()}


@pytest.mark.parametrize("killed_at", [1, 2, 3])  # first tensor file, second one, the spec
def test_a_model_folder_write_killed_between_its_files_leaves_the_old_model_whole(
    tmp_path, monkeypatch, killed_at: int,
) -> None:
    import storage.store

    old = {"model.safetensors": b"old weights", "optimizer.safetensors": b"old state"}
    new = {"model.safetensors": b"new weights", "optimizer.safetensors": b"new state"}
    assert _write_folder(tmp_path, old, run=1) == {name: name for name in old}  # a new folder
    writes, write = [], storage.store.replace_atomically

    def killed(path, content):
        writes.append(path.name)
        if len(writes) == killed_at:
            raise KeyboardInterrupt(f"killed before {path.name}")
        return write(path, content)

    monkeypatch.setattr(storage.store, "replace_atomically", killed)
    with pytest.raises(KeyboardInterrupt):
        _write_folder(tmp_path, new, run=2)
    monkeypatch.undo()
    assert _read_folder(tmp_path) == (1, old)  # the old model, whole
    files = _write_folder(tmp_path, new, run=2)  # the re-run is not blocked by the leftovers
    assert all(files[name] != name for name in new)  # files of their own, named in the spec
    assert _read_folder(tmp_path) == (2, new)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["spec.json", *files.values()])


def test_a_model_folder_write_removes_the_old_files_and_dead_writers_temporaries(tmp_path) -> None:
    import os
    import subprocess
    import sys

    _write_folder(tmp_path, {"model.safetensors": b"one"}, run=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    killed = tmp_path / f".model.0123456789abcdef.safetensors.tmp{int(dead.stdout)}"
    killed.write_bytes(b"half")
    busy = tmp_path / f".model.fedcba9876543210.safetensors.tmp{os.getppid()}"  # a live writer's
    busy.write_bytes(b"busy")
    mine = tmp_path / "notes.txt"  # no file of the model's
    mine.write_bytes(b"mine")
    files = _write_folder(tmp_path, {"model.safetensors": b"two"}, run=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["spec.json", files["model.safetensors"], busy.name, mine.name])


@pytest.mark.parametrize("named", [
    "../x.safetensors", "/etc/passwd", "sub/model.safetensors", "model.safetensors/../../x",
    "other.safetensors", "model.XYZ.safetensors", "model.safetensors.json", 3, ["model.safetensors"],
])
def test_a_spec_naming_a_file_outside_its_folder_is_refused(tmp_path, named) -> None:
    from storage.store import named_tensor_file

    with pytest.raises(ValueError, match=r"spec.json names .* for model.safetensors, not a file "
                                         r"model\[\.<hex digits>\]\.safetensors of the folder"):
        named_tensor_file(tmp_path / "spec.json", "model.safetensors", named)
    with pytest.raises(ValueError, match="^refused$"):
        named_tensor_file(tmp_path / "spec.json", "model.safetensors", named, refusal="refused")


@pytest.mark.parametrize("named", [None, "model.safetensors", "model.0123abcd.safetensors",
                                   "model.0123456789abcdef.safetensors"])
def test_a_spec_names_the_tensor_files_of_its_folder(tmp_path, named) -> None:
    from storage.store import named_tensor_file

    found = named_tensor_file(tmp_path / "spec.json", "model.safetensors", named)
    assert found == tmp_path / (named or "model.safetensors")


@pytest.mark.parametrize(("files", "leftovers"), [
    ([], True),
    (["model.safetensors"], True),  # weights of a first write killed before its spec
    (["model.0123456789abcdef.safetensors", ".model.safetensors.tmp12"], True),
    (["spec.json"], False),
    (["spec.json", "model.safetensors"], False),
    (["model.safetensors", "notes.txt"], False),
])
def test_what_a_killed_write_leaves_is_no_model(tmp_path, files: list[str], leftovers: bool) -> None:
    from storage.store import holds_only_leftovers

    for name in files:
        (tmp_path / name).write_bytes(b"x")
    assert holds_only_leftovers(tmp_path, "spec.json", ["model.safetensors"]) is leftovers
    assert holds_only_leftovers(tmp_path / "missing", "spec.json", ["model.safetensors"])


def test_a_postgresql_server_that_accepts_but_never_answers_fails_the_command_in_time(
    capsys, monkeypatch,
) -> None:
    """libpq waits for ever by default: a hung server (or a firewall that lets the connection
    open) kept every command waiting with no word. Now it fails after CONNECT_TIMEOUT seconds,
    password hidden; a URL's own connect_timeout is kept."""
    import socket
    import time

    from nas.cli import main
    from storage import engine, engine_kwargs

    pytest.importorskip("psycopg")
    assert engine_kwargs("postgresql://u@h/db")["connect_args"] == {"connect_timeout": engine.CONNECT_TIMEOUT}
    assert "connect_args" not in engine_kwargs("postgresql://u@h/db?connect_timeout=5")
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 1)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections open, and nothing answers them
        url = f"postgresql://alice:s3cret@127.0.0.1:{silent.getsockname()[1]}/metanas"
        start = time.monotonic()
        assert main(["studies", "--storage", url]) == 1
    assert time.monotonic() - start < 20
    err = capsys.readouterr().err
    assert "postgresql://alice:***@127.0.0.1" in err and "s3cret" not in err and "timeout" in err, err


@pytest.mark.parametrize("url, meant", [
    ("sqlite://metanas.db", "sqlite:///metanas.db"),
    ("sqlite://runs/metanas.db", "sqlite:///runs/metanas.db"),
    ("sqlite://alice:s3cret@runs/metanas.db", "sqlite:///runs/metanas.db"),
])
def test_an_sqlite_url_with_two_slashes_is_bad_input_naming_the_url_meant(capsys, url: str, meant: str) -> None:
    """SQLAlchemy refused a host in an SQLite URL only on connecting: four lines ("Invalid
    SQLite URL: ... Valid SQLite URL forms are: ...") and exit 1."""
    from nas.cli import main

    with pytest.raises(StorageURLError, match=f"names a host, which SQLite has none of.*here '{meant}'"):
        parse_url(url)
    assert main(["studies", "--storage", url]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and meant in err and "s3cret" not in err


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true",
                                 "sqlite:///file:mem1?mode=memory&cache=shared&uri=true",
                                 "sqlite:///file::memory:?uri=yes", "sqlite:///file:mem2?mode=memory&uri=on",
                                 "sqlite:///file:?uri=true", "sqlite:///file:/mem3?vfs=memdb&uri=true"])
def test_a_search_in_an_sqlite_database_in_memory_is_refused(url: str, capsys, cora_available: None) -> None:
    """A search's trials in memory would be lost when it ends (and its workers each had a
    database of their own): it failed with "no such table: studies", and so did SQLite URIs
    in memory after the first two forms were refused, and then those with uri=yes or uri=on
    (which SQLAlchemy honours as uri=true) and ``file:`` (SQLite's private temporary database),
    and then ``vfs=memdb`` (SQLite's in-memory file system)."""
    from nas.cli import main
    from storage import make_optuna_storage

    with pytest.raises(StorageURLError, match="is an SQLite database in memory: the study and its trials would be gone"):
        make_optuna_storage(url)
    assert main(["search", "--dataset", "cora", "--trials", "1", "--epochs", "1", "--storage", url,
                 "--study", "s", "--quiet"]) == 2
    assert "name a file, e.g. 'sqlite:///metanas.db'" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["sqlite:///file:x.db?uri=true", "sqlite:///memory.db"])
def test_sqlite_files_are_not_taken_for_databases_in_memory(url: str, tmp_path, monkeypatch) -> None:
    from storage import make_optuna_storage

    monkeypatch.chdir(tmp_path)
    make_optuna_storage(url)
    assert len(list(tmp_path.iterdir())) >= 1
