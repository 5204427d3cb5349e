"""The CLI supernet search benchmark's folder: private by default, never an earlier run's."""
from __future__ import annotations

import stat
import sys

import pytest
from _scripts import load_script


class _Started(Exception):
    """The first metanas command was reached (the test stops the run there)."""


def _first_command(tmp_path, monkeypatch, argv: list[str]) -> list[str]:  # noqa: ANN001
    """The first metanas command line the benchmark runs with ``argv``."""
    module = load_script("supernet_search_cli")
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("torch.set_num_threads", lambda threads: None)
    commands = []

    def cli(command):  # noqa: ANN001, ANN202
        commands.append(command)
        raise _Started

    monkeypatch.setattr("nas.cli.main", cli)
    monkeypatch.setattr(sys, "argv", ["supernet_search_cli.py", *argv])
    with pytest.raises(_Started):
        module.main()
    return commands[0]


def test_by_default_each_run_gets_a_new_private_folder_of_the_cache(tmp_path, monkeypatch) -> None:
    # the default was /tmp/metanas-supernet-search-cli: shared by every user of the machine, and
    # refused as "an earlier run" from the second run on
    folders = []
    for _ in range(2):
        command = _first_command(tmp_path, monkeypatch, ["--supernet-epochs", "1"])
        supernet = command[command.index("--out") + 1]
        folders.append(tmp_path / "cache" / "supernet_search_cli" / supernet.split("/")[-2])
        assert supernet == str(folders[-1] / "supernet")
        assert folders[-1].name.startswith("supernet_search_cli-")
        assert stat.S_IMODE(folders[-1].stat().st_mode) == 0o700
    assert folders[0] != folders[1]


def test_an_out_folder_of_an_earlier_run_exits_2_before_any_work(tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "out"
    (out / "supernet").mkdir(parents=True)
    module = load_script("supernet_search_cli")
    monkeypatch.setattr(module, "machine", lambda: pytest.fail("the benchmark started its work"))
    monkeypatch.setattr(sys, "argv", ["supernet_search_cli.py", "--out", str(out)])
    with pytest.raises(SystemExit) as exit_:
        module.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"supernet_search_cli.py: error: --out {out} holds an earlier run (it would resume, not "
        "time a search): pass an empty folder")
    assert [path.name for path in out.iterdir()] == ["supernet"]


def test_an_empty_out_folder_is_used_as_it_is(tmp_path, monkeypatch) -> None:
    command = _first_command(tmp_path, monkeypatch, ["--out", str(tmp_path / "mine")])
    assert command[command.index("--out") + 1] == str(tmp_path / "mine" / "supernet")
    assert not (tmp_path / "cache").exists()
