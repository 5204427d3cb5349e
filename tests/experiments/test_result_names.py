"""A supernet benchmark's ``--name`` is a file stem in experiments/results/, checked before any work:
``--name ../x`` wrote ``experiments/x.json`` (outside the results) after the whole run."""
from __future__ import annotations

import re
import shutil
import sys

import pytest
from _scripts import load_script

import experiments._supernet_common as common


@pytest.fixture()
def results(tmp_path, monkeypatch):
    folder = tmp_path / "results"
    folder.mkdir()
    shutil.copy(common.RESULTS / "supernet_ranking.json", folder)
    monkeypatch.setattr(common, "RESULTS", folder)
    return folder


def _usage_error(script: str, argv: list[str], monkeypatch, capsys) -> str:  # noqa: ANN001
    """The last line ``script`` prints on stderr when ``argv`` ends it with a usage error (exit
    2; these exited 1 through ``SystemExit("...")``)."""
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        load_script(script).main()
    assert exit_.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize("name", ["../x", "a/b", ""])
def test_write_results_refuses_a_path(results, name) -> None:
    message = rf"^--name {re.escape(repr(name))} must be letters, digits, '_' or '-' \(a file stem\) in "
    with pytest.raises(ValueError, match=message):
        common.write_results(name, {}, "")
    assert sorted(p.name for p in results.parent.rglob("*")) == ["results", "supernet_ranking.json"]


@pytest.mark.parametrize("script, extra", [
    ("supernet_cost", []),
    ("supernet_ranking", ["--archs", "1", "--supernet-epochs", "1", "--epochs", "1", "--patience", "1"]),
    ("supernet_search_cli", ["--trials", "2", "--supernet-epochs", "1", "--out", "{tmp}/run"]),
])
def test_a_path_name_is_refused_before_the_run(results, tmp_path, monkeypatch, capsys, script,
                                               extra) -> None:
    extra = [a.format(tmp=tmp_path) for a in extra]
    assert _usage_error(script, ["--name", "../x", *extra], monkeypatch, capsys).startswith(
        f"{script}.py: error: --name '../x' must be letters, digits, '_' or '-' (a file stem) in ")
    assert sorted(p.name for p in results.parent.rglob("*")) == ["results", "supernet_ranking.json"]


@pytest.mark.parametrize("argv", [["--budgets", "0"], ["--draws", "0"]])
def test_supernet_cost_refuses_zero_budgets_or_draws(results, monkeypatch, capsys, argv) -> None:
    assert _usage_error("supernet_cost", argv, monkeypatch, capsys) == (
        f"supernet_cost.py: error: argument {argv[0]}: '0' must be an integer >= 1")
    assert not (results / "supernet_cost.json").exists()


@pytest.mark.parametrize("key", ["--trials", "--supernet-epochs"])
def test_supernet_search_cli_refuses_zero_counts(results, tmp_path, monkeypatch, capsys, key) -> None:
    argv = [key, "0", "--out", str(tmp_path / "run")]
    assert _usage_error("supernet_search_cli", argv, monkeypatch, capsys) == (
        f"supernet_search_cli.py: error: argument {key}: '0' must be an integer >= 1")
    assert not (tmp_path / "run").exists()
