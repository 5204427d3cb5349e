"""Reading a study whose SQLite file lies in a folder this user cannot write: WAL journaling
creates ``-shm`` and ``-wal`` files beside the database, so every reading command failed with
"unable to open database file"."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from nas.cli import main
from nas.study import SearchConfig, run_search

REPO = Path(__file__).resolve().parents[2]
FAST = dict(epochs=2, patience=0, convs=("gcn",), verbose=False, strategy="random")

#: runs ``nas.cli.main`` on each argv of the JSON list in argv[1]; prints code, stdout, stderr
_RUN_COMMANDS = """
import contextlib, io, json, sys
from nas.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def _copy_database(source: Path, target: Path) -> None:
    """A whole copy of ``source`` (its write-ahead log included) as one file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[list[str]]:
    """The command prefix under which ``folder`` (and every folder in it) cannot be written:
    ``chmod a-w``, or for root, who writes through that, a read-only bind mount in a mount
    namespace of the command's own (skipped where the system allows none)."""
    if os.geteuid() != 0:
        folders = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
        for each in folders:
            each.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            yield []
        finally:
            for each in folders:
                each.chmod(stat.S_IRWXU)
        return
    prefix = ["unshare", "--mount", "sh", "-c",
              'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"', str(folder)]
    if shutil.which("unshare") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("root here cannot mount a read-only folder (no unshare or no CAP_SYS_ADMIN)")
    yield prefix


def _run(prefix: list[str], commands: list[list[str]], cwd: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([*prefix, sys.executable, "-c", _RUN_COMMANDS, json.dumps(commands)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_reading_commands_work_on_a_database_in_a_folder_that_cannot_be_written(
    tmp_path: Path, sqlite_url: str,
) -> None:
    study = run_search(SearchConfig("mutag", n_trials=2, storage=sqlite_url, **FAST))
    name, source = study.study_name, Path(sqlite_url.removeprefix("sqlite:///"))
    ro = tmp_path / "ro"
    _copy_database(source, ro / "whole" / "metanas.db")  # a database nobody has open
    _copy_database(source, ro / "live" / "metanas.db")   # one a search is writing
    writer = sqlite3.connect(ro / "live" / "metanas.db")
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # its commit stays in the -wal file
    writer.execute("UPDATE studies SET study_name = 'renamed'")
    writer.commit()
    (ro / "wal-only").mkdir()  # a log copied without its -shm file cannot be read here
    for suffix in ("", "-wal"):
        shutil.copy(ro / "live" / f"metanas.db{suffix}", ro / "wal-only" / f"metanas.db{suffix}")
    whole = ["--storage", f"sqlite:///{ro / 'whole' / 'metanas.db'}"]
    commands = [
        ["trials", *whole, "--study", name, "--json"],
        ["best", *whole, "--study", name, "--json"],
        ["studies", *whole, "--json"],
        ["report", *whole, "--study", name, "--out", str(tmp_path / "report")],
        ["export", *whole, "--study", name, "--out", str(tmp_path / "export")],
        ["studies", "--storage", f"sqlite:///{ro / 'live' / 'metanas.db'}", "--json"],
        ["studies", "--storage", f"sqlite:///{ro / 'wal-only' / 'metanas.db'}"],
    ]
    try:
        with _read_only(ro) as prefix:
            results = _run(prefix, commands, tmp_path)
    finally:
        writer.close()
    assert [r["code"] for r in results[:6]] == [0] * 6, results
    assert len(json.loads(results[0]["out"])) == 2
    assert json.loads(results[1]["out"])["trial"] == study.best_trial.number
    assert [row["study"] for row in json.loads(results[2]["out"])] == [name]
    assert (tmp_path / "report" / "history.png").is_file()
    assert (tmp_path / "export" / "architecture.json").is_file()
    assert [row["study"] for row in json.loads(results[5]["out"])] == ["renamed"]  # its log is read
    wal_only = results[6]
    assert wal_only["code"] == 1 and "metanas.db-wal" in wal_only["err"]
    assert f"folder {str(ro / 'wal-only')!r}" in wal_only["err"] and "cannot write it" in wal_only["err"]
    assert sorted(p.name for p in (ro / "whole").iterdir()) == ["metanas.db"]  # nothing written there


def test_sqlite_uri_arguments_without_uri_true_are_refused_not_ignored_with_a_warning(
    capsys, tmp_path: Path,
) -> None:
    """``?mode=ro`` on a plain SQLite URL was ignored, with an SAWarning from SQLAlchemy; the
    database was opened for writing."""
    path = tmp_path / "metanas.db"
    optuna.create_study(storage=f"sqlite:///{path}", study_name="s")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["studies", "--storage", f"sqlite:///{path}?mode=ro"]) == 2
    err = capsys.readouterr().err
    assert "SQLite would ignore ['mode'] without uri=true" in err and "mode=ro&uri=true" in err
    assert main(["studies", "--storage", f"sqlite:///file:{path}?mode=ro&uri=true"]) == 0
    assert main(["studies", "--storage", f"sqlite:///{path}?timeout=5"]) == 0


def test_zoo_reading_commands_work_on_a_zoo_in_a_folder_that_cannot_be_written(
    tmp_path: Path, sqlite_url: str, store_image_networks, mnist_available: None,
) -> None:
    """zoo info, metanet train and predict --zoo and prune-metanet --zoo only read the zoo, but
    opened it for writing and failed with "unable to open database file"."""
    zoo_study = optuna.create_study(storage=sqlite_url, study_name="z")  # as metanas zoo build
    zoo_study.optimize(lambda trial: 0.0, n_trials=4)                     # completes its runs
    store_image_networks(sqlite_url, runs=4)
    database = tmp_path / "ro" / "metanas.db"
    _copy_database(Path(sqlite_url.removeprefix("sqlite:///")), database)
    zoo = ["--zoo", f"sqlite:///{database}", "--study", "z"]
    small = ["--hidden", "8", "--layers", "1", "--device", "cpu"]
    commands = [
        ["zoo", "info", "--storage", f"sqlite:///{database}", "--study", "z", "--json"],
        ["metanet", "train", *zoo, "--out", str(tmp_path / "m"), "--epochs", "1", *small],
        ["metanet", "predict", "--model", str(tmp_path / "m"), *zoo, "--json"],
        ["prune-metanet", "--dataset", "mnist14", *zoo, "--out", str(tmp_path / "pm"),
         "--steps", "2", "--batch-size", "16", "--quiet", *small],
    ]
    with _read_only(tmp_path / "ro") as prefix:
        results = _run(prefix, commands, tmp_path)
    assert [r["code"] for r in results] == [0] * 4, results
    assert json.loads(results[0]["out"])["runs"] == 4
    assert len(json.loads(results[2]["out"])) == 4
    assert "pruning metanetwork written to" in results[3]["out"]
    assert sorted(p.name for p in database.parent.iterdir()) == ["metanas.db"]  # nothing written there
