"""Commands that only read a database never write into it: optuna writes its tables (its version
table even when told not to create tables) into any database it opens, so `metanas studies` grew
an empty file, or another application's SQLite database, to ~114 KB of optuna's tables, and
`zoo info` gave an optuna database metanas's tables and WAL journaling."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from sqlalchemy.exc import OperationalError

from nas.cli import main
from storage import ModelStore, NoStudiesError, check_study, reading_storage
from storage.engine import reading_engine

#: every command that only reads a database (``{url}``: its storage URL), and its exit code over
#: one without optuna's tables
READING_COMMANDS = [
    (["studies", "--storage", "{url}"], 0),
    (["studies", "--storage", "{url}", "--json"], 0),
    (["trials", "--storage", "{url}", "--study", "s", "--json"], 2),
    (["best", "--storage", "{url}", "--study", "s"], 2),
    (["report", "--storage", "{url}", "--study", "s", "--out", "{tmp}/report"], 2),
    (["export", "--storage", "{url}", "--study", "s", "--out", "{tmp}/export"], 2),
    (["zoo", "info", "--storage", "{url}", "--study", "s", "--json"], 2),
    (["metanet", "train", "--zoo", "{url}", "--study", "s", "--out", "{tmp}/metanet"], 2),
]


def _run_reading_commands(url: str, tmp: Path, capsys) -> list[tuple[int, str, str]]:
    results = []
    for argv, _ in READING_COMMANDS:
        code = main([arg.format(url=url, tmp=tmp) for arg in argv])
        results.append((code, *capsys.readouterr()))
    return results


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _other_application_database(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE accounts (name TEXT, balance REAL)")
        connection.execute("INSERT INTO accounts VALUES ('a', 1.5)")
    connection.close()


@pytest.mark.parametrize("kind", ["empty file", "another application's database"])
def test_reading_commands_leave_an_sqlite_file_without_optuna_tables_as_it_is(
    tmp_path: Path, capsys, kind: str,
) -> None:
    database = tmp_path / "db" / "x.db"
    database.parent.mkdir()
    if kind == "empty file":
        database.touch()
    else:
        _other_application_database(database)
    before = _digest(database)
    results = _run_reading_commands(f"sqlite:///{database}", tmp_path, capsys)
    assert [code for code, _, _ in results] == [expected for _, expected in READING_COMMANDS], results
    assert _digest(database) == before
    assert sorted(p.name for p in database.parent.iterdir()) == ["x.db"]
    (_, text, _), (_, listed, _) = results[:2]
    assert text.startswith(f"no studies in sqlite:///{database}: it lacks optuna's tables studies")
    assert "not a metanas or optuna database" in text and listed.strip() == "[]"
    for _, _, err in results[2:]:
        assert f"no study 's' in sqlite:///{database}: it lacks optuna's tables" in err, err


def test_reading_commands_leave_an_optuna_database_without_metanas_tables_as_it_is(
    tmp_path: Path, capsys,
) -> None:
    """An optuna study's database (rollback journal, no metanas tables): ``zoo info`` and
    ``export`` created metanas's tables in it and turned WAL journaling on."""
    database = tmp_path / "db" / "optuna.db"
    database.parent.mkdir()
    study = optuna.create_study(storage=f"sqlite:///{database}", study_name="s")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    del study
    before = _digest(database)
    results = _run_reading_commands(f"sqlite:///{database}", tmp_path, capsys)
    codes = [code for code, _, _ in results]
    assert codes[:5] == [0, 0, 0, 0, 0], results  # studies, trials, best, report read the study
    assert "no stored model for trial" in results[5][2] and "no stored networks" in results[6][2]
    assert _digest(database) == before
    assert sorted(p.name for p in database.parent.iterdir()) == ["optuna.db"]


def test_reading_storage_and_check_study_say_a_database_without_optuna_tables_holds_no_study(
    tmp_path: Path,
) -> None:
    database = tmp_path / "x.db"
    _other_application_database(database)
    url = f"sqlite:///{database}"
    with pytest.raises(NoStudiesError, match="it lacks optuna's tables studies, version_info"):
        reading_storage(url)
    with pytest.raises(KeyError, match=r"no study 's' in .*studies there: \[\]"):
        check_study(url, "s")
    check_study(url, "zoo", also=["zoo"])  # a name that counts as a study (networks stored under it)


def test_a_read_only_model_store_reads_missing_tables_as_empty_and_cannot_write(
    tmp_path: Path,
) -> None:
    database = tmp_path / "x.db"
    _other_application_database(database)
    before = _digest(database)
    store = ModelStore(f"sqlite:///{database}", read_only=True)
    assert store.study_names() == [] and store.list_models() == [] and store.trial_numbers("s") == []
    assert store.list_checkpoints("s") == [] and list(store.iter_checkpoint_weights("s")) == []
    with pytest.raises(KeyError, match="no stored model for trial 0 of study 's'"):
        store.get("s", 0)
    with pytest.raises(KeyError, match="no checkpoint at epoch 1"):
        store.load_checkpoint("s", 0, 1)
    with pytest.raises(OperationalError, match="readonly"), store.engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE t (x INTEGER)"))
    store.engine.dispose()
    assert _digest(database) == before


def test_a_reading_engine_cannot_write_and_leaves_the_journal_mode_as_it_is(tmp_path: Path) -> None:
    """create_engine turns WAL journaling on, which rewrites the header of a file only read."""
    database = tmp_path / "x.db"
    _other_application_database(database)
    before = _digest(database)
    engine = reading_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.text("SELECT balance FROM accounts")).scalar() == 1.5
        with pytest.raises(OperationalError, match="readonly"):
            connection.execute(sqlalchemy.text("DELETE FROM accounts"))
    engine.dispose()
    assert _digest(database) == before


def test_reading_commands_write_nothing_into_a_postgres_database(
    tmp_path: Path, capsys, postgres_url: str,
) -> None:
    """The same on PostgreSQL: a database without optuna's tables got them all."""
    results = _run_reading_commands(postgres_url, tmp_path, capsys)
    assert [code for code, _, _ in results] == [expected for _, expected in READING_COMMANDS], results
    engine = sqlalchemy.create_engine(postgres_url)
    assert sqlalchemy.inspect(engine).get_table_names() == []
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("CREATE TABLE accounts (name TEXT)"))
    engine.dispose()
    reading = reading_engine(postgres_url)
    with reading.connect() as connection, pytest.raises(sqlalchemy.exc.InternalError, match="read-only"):
        connection.execute(sqlalchemy.text("INSERT INTO accounts VALUES ('a')"))
    reading.dispose()


def test_a_database_of_stored_networks_only_is_said_to_hold_no_optuna_study(
    tmp_path: Path, capsys, store_image_networks,
) -> None:
    """Said of a database holding metanas's stored networks, "not a metanas or optuna database"
    contradicted the "studies there: ['z']" that followed it."""
    url = f"sqlite:///{tmp_path / 'zoo.db'}"
    store_image_networks(url, "z", runs=2)
    assert main(["studies", "--storage", url]) == 0
    assert "it holds networks stored by metanas but no optuna study" in capsys.readouterr().out
    assert main(["zoo", "info", "--storage", url, "--study", "nope"]) == 2
    err = capsys.readouterr().err
    assert "holds networks stored by metanas but no optuna study" in err and "studies there: ['z']" in err
    assert "not a metanas" not in err


def test_a_metanas_database_of_no_network_is_not_said_to_hold_networks(tmp_path: Path, capsys) -> None:
    """A database whose metanas tables are empty (a ModelStore opened on it, nothing stored) was
    said to hold "networks stored by metanas": the tables, not a stored network, were tested."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    ModelStore(url).engine.dispose()
    assert main(["studies", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "it holds metanas's tables but no stored network and no optuna study" in out
    assert "holds networks" not in out


@pytest.mark.parametrize("unstamp", ["DROP TABLE alembic_version", "DELETE FROM version_info"])
def test_an_optuna_database_without_its_version_stamp_is_refused_naming_it_and_left_as_it_is(
    tmp_path: Path, capsys, unstamp: str,
) -> None:
    """Optuna before 1.2 wrote no alembic_version, and a search killed while creating the schema
    leaves the stamps out: `studies` blamed permissions ("attempt to write a readonly database
    (the file (or its folder) cannot be written)") when optuna tried to write them."""
    from storage import make_optuna_storage

    database = tmp_path / "optuna.db"
    url = f"sqlite:///{database}"
    study = optuna.create_study(storage=url, study_name="s")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    del study
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(unstamp))
    engine.dispose()
    before = _digest(database)
    assert main(["studies", "--storage", url]) == 1
    err = capsys.readouterr().err
    assert "optuna's schema there lacks" in err and unstamp.split()[-1] in err and "a search on it" in err
    assert "cannot be written" not in err and _digest(database) == before
    make_optuna_storage(url).engine.dispose()  # what a search opens completes the schema
    assert main(["studies", "--storage", url, "--json"]) == 0
    assert '"s"' in capsys.readouterr().out
