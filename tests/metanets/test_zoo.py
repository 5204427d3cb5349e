"""Model zoos: checkpoints in storage, graphs refilled without tracing, splits by run, and a
tiny MNIST zoo built and learned end to end."""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from metanets.graphs import to_parameter_graph
from metanets.zoo import Zoo, ZooEntry, fill_parameter_graph, split_by_architecture, split_by_run
from search_spaces.cnn import CNNArchitecture, CNNSpace
from storage import ChecksumError, ModelStore

IMAGE = (torch.zeros(2, 1, 12, 12),)


def _cnn(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    arch = CNNArchitecture(widths=(4, 6), kernel_size=5, norm="batch", residual=True)
    model = CNNSpace().build(arch, 1, 10)
    model.blocks[0].norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_filled_graph_equals_a_fresh_conversion() -> None:
    template = to_parameter_graph(_cnn(0), IMAGE)
    other = _cnn(1)
    filled = fill_parameter_graph(template, other.state_dict())
    fresh = to_parameter_graph(other, IMAGE)
    for key in ("x", "edge_attr", "scalars", "edge_index"):
        assert torch.equal(filled[key], fresh[key]), key
    assert not torch.equal(template.edge_attr, filled.edge_attr)  # the template is untouched


def _entry(trial: int, epoch: int, depth: int) -> ZooEntry:
    return ZooEntry("z", trial, epoch, "cnn", {"widths": [4] * depth}, "mnist14", "image", 1, 10,
                    {"test_acc": 0.1 * epoch}, None, {})  # type: ignore[arg-type]


def test_split_by_run_keeps_every_checkpoint_of_a_run_together() -> None:
    zoo = Zoo([_entry(t, e, 1 + t % 3) for t in range(30) for e in (1, 3)])
    split = split_by_run(zoo, (0.6, 0.2, 0.2), seed=1)
    runs = {k: {zoo[i].trial for i in v} for k, v in split.items()}
    assert sum(map(len, runs.values())) == 30 and len(split["test"]) == 12
    assert not (runs["train"] & runs["test"]) and not (runs["train"] & runs["val"])
    assert split_by_run(zoo, (0.6, 0.2, 0.2), seed=1) == split
    assert split_by_run(zoo, (0.6, 0.2, 0.2), seed=2) != split


def test_architecture_split_holds_out_the_deep_networks() -> None:
    zoo = Zoo([_entry(t, e, 1 + t % 3) for t in range(30) for e in (1, 3)])
    split = split_by_architecture(zoo, lambda a: len(a["widths"]) == 3)
    assert {len(zoo[i].architecture["widths"]) for i in split["test"]} == {3}
    assert {len(zoo[i].architecture["widths"]) for i in split["train"] + split["val"]} == {1, 2}
    with pytest.raises(ValueError, match="both need at least one"):
        split_by_architecture(zoo, lambda a: len(a["widths"]) == 7)


def _store_networks(url: str, study: str, trials: list[int]) -> None:
    """Final weights of small CNNs as trials of ``study`` (no optuna study: every row counts)."""
    arch = CNNArchitecture(widths=(4, 6), kernel_size=5, norm="batch", residual=True)
    store = ModelStore(url)
    for trial in trials:
        store.save_model(
            study_name=study, trial_number=trial, space="cnn", arch_hash=arch.arch_hash,
            spec=arch.to_json(), dataset="mnist14", level="image", in_channels=1, out_channels=10,
            num_params=0, flops=None, metrics={"test_acc": trial / 10},
            state_dict=_cnn(trial).state_dict())


def test_several_studies_load_as_one_zoo_in_the_names_order(sqlite_url: str) -> None:
    """A list of names was passed on to SQL as it was (an SQL error); now it is one zoo."""
    from metanets.zoo import load_zoo

    _store_networks(sqlite_url, "a", [0, 1])
    _store_networks(sqlite_url, "b", [2])
    calls: list[tuple[int, int]] = []
    zoo = load_zoo(sqlite_url, ["b", "a"], progress=lambda done, total: calls.append((done, total)))
    assert zoo.runs == [("b", 2), ("a", 0), ("a", 1)] and calls == [(1, 3), (2, 3), (3, 3)]
    assert [entry.metrics["test_acc"] for entry in zoo] == [0.2, 0.0, 0.1]
    assert torch.equal(zoo[2].state_dict["blocks.0.conv.weight"], _cnn(1).blocks[0].conv.weight)
    assert load_zoo(sqlite_url, ("a", "b"), limit=1).runs == [("a", 0), ("b", 2)]  # per study
    assert load_zoo(sqlite_url, "a").runs == [("a", 0), ("a", 1)]


@pytest.mark.parametrize("study, error, message", [
    (["a", "b", "a"], ValueError, r"studies \['a'\] given more than once in \['a', 'b', 'a'\]"),
    ([], ValueError, "no study name given"),
    (5, TypeError, "study must be a study name or a sequence of names, got 5"),
    (["a", 7], TypeError, r"study must be a study name or a sequence of names, got \['a', 7\]"),
    (["a", "nope"], KeyError, "study 'nope' stored no networks"),
])
def test_load_zoo_refuses_bad_study_names_naming_them(sqlite_url: str, study, error, message) -> None:
    from metanets.zoo import load_zoo

    _store_networks(sqlite_url, "a", [0])
    _store_networks(sqlite_url, "b", [0])
    with pytest.raises(error, match=message):
        load_zoo(sqlite_url, study)


def test_metanet_train_refuses_a_study_given_twice(sqlite_url: str, tmp_path, capsys) -> None:  # noqa: ANN001
    # each --study was loaded on its own: a repeated one counted every network twice
    from nas.cli import main

    _store_networks(sqlite_url, "a", [0])
    out = tmp_path / "gmn"
    assert main(["metanet", "train", "--zoo", sqlite_url, "--study", "a", "--study", "a",
                 "--out", str(out)]) == 2
    assert "studies ['a'] given more than once" in capsys.readouterr().err and not out.exists()


def test_checkpoints_round_trip_and_detect_corruption(sqlite_url: str) -> None:
    from sqlalchemy import update

    from storage.models import ZooCheckpointModel

    store = ModelStore(sqlite_url)
    state = {"w": torch.arange(6.0).view(2, 3)}
    store.save_checkpoints("zoo", 4, {1: ({"test_acc": 0.5}, state), 3: ({"test_acc": 0.7}, state)})
    records = store.list_checkpoints("zoo")
    assert [(r.trial_number, r.epoch, r.metrics["test_acc"]) for r in records] == [(4, 1, 0.5), (4, 3, 0.7)]
    assert torch.equal(store.load_checkpoint("zoo", 4, 3)["w"], state["w"])
    with pytest.raises(KeyError, match="epoch 2 of trial 4"):
        store.load_checkpoint("zoo", 4, 2)
    with store.session() as session:
        session.execute(update(ZooCheckpointModel).where(ZooCheckpointModel.epoch == 1)
                        .values(weights=b"broken"))
    with pytest.raises(ChecksumError):
        store.load_checkpoint("zoo", 4, 1)


def test_zoo_build_refuses_graph_datasets(sqlite_url: str) -> None:
    from nas.zoo import ZooConfig, build_zoo

    with pytest.raises(ValueError, match="image"):
        build_zoo(ZooConfig(dataset="cora", size=2, storage=sqlite_url))
    # from Python there is no --size flag: the message named one (the CLI names its own flags)
    with pytest.raises(ValueError, match=r"^size must be >= 1, got 0$"):
        ZooConfig(size=0)
    with pytest.raises(ValueError, match=r"^epochs must be >= 1, got -1$"):
        ZooConfig(epochs=-1)


@pytest.mark.usefixtures("mnist_available", "_metanet_one_thread")
def test_a_run_killed_after_storing_its_weights_is_not_counted_twice(
    sqlite_url: str, monkeypatch, capsys,
) -> None:
    """Killed after a run's weights were stored but before its trial completed, the run is
    retried under another trial number; the zoo holds each run once, with its checkpoints
    (before: the dead trial's weights counted as one more run, without checkpoints)."""
    from metanets.zoo import load_zoo
    from nas.cli import main
    from nas.zoo import ZooConfig, build_zoo
    from storage import ModelStore

    config = ZooConfig(size=2, epochs=1, storage=sqlite_url, study_name="killed", verbose=False,
                       space_options={"max_depth": 1, "widths": (4,), "train_fractions": (0.01,)})

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt("killed between storing the weights and the checkpoints")

    monkeypatch.setattr(ModelStore, "save_checkpoints", killed)
    with pytest.raises(KeyboardInterrupt):
        build_zoo(config)
    monkeypatch.undo()
    build_zoo(config)
    zoo = load_zoo(sqlite_url, "killed")
    assert sorted(zoo.runs) == [("killed", 1), ("killed", 2)] and {e.epoch for e in zoo} == {1}
    assert main(["zoo", "info", "--storage", sqlite_url, "--study", "killed", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["runs"] == 2 and info["checkpoints"] == 2


@pytest.mark.usefixtures("mnist_available", "_metanet_one_thread")
def test_tiny_zoo_is_built_resumed_and_learned_end_to_end(sqlite_url: str, tmp_path, capsys) -> None:  # noqa: ANN001
    from metanets.accuracy import FitConfig, fit_gmn, predict
    from metanets.zoo import load_zoo
    from nas.cli import main
    from nas.zoo import ZooConfig, build_zoo

    options = {"max_depth": 2, "widths": (4,), "train_fractions": (0.01,)}
    config = ZooConfig(size=4, epochs=2, storage=sqlite_url, study_name="tiny", verbose=False,
                       space_options=options)
    build_zoo(config)
    config.size = 6  # resuming trains only the missing runs
    build_zoo(config)
    zoo = load_zoo(sqlite_url, "tiny")
    assert len(set(zoo.runs)) == 6 and len(zoo) == 12
    assert {e.epoch for e in zoo} == {1, 2}
    assert all(0.0 <= e.metrics["test_acc"] <= 1.0 for e in zoo)
    for entry in zoo:  # weights in the module's order (safetensors returns them in any order)
        assert list(entry.state_dict) == list(entry.build_module().state_dict())
    y = zoo.targets()
    result = fit_gmn(zoo.graphs(), y, zoo.graphs(), y,
                     FitConfig(epochs=25, hidden=16, layers=1, batch_size=4, eval_every=5, lr=1e-2))
    losses = [loss for _, loss, _ in result.history]
    assert losses[-1] < losses[0]
    assert predict(result.model, zoo.graphs()).shape == (12, 1)
    out = tmp_path / "gmn"
    assert main(["metanet", "train", "--zoo", sqlite_url, "--study", "tiny", "--out", str(out),
                 "--epochs", "2", "--hidden", "8", "--layers", "1"]) == 0
    assert main(["metanet", "predict", "--model", str(out), "--zoo", sqlite_url, "--study", "tiny",
                 "--json"]) == 0
    rows = __import__("json").loads(capsys.readouterr().out.split("\n", 1)[1])
    assert len(rows) == 12 and all(isinstance(r["prediction"], float) for r in rows)
    probed = tmp_path / "gmn-probes"  # the same with learned probes: the networks are run too
    assert main(["metanet", "train", "--zoo", sqlite_url, "--study", "tiny", "--out", str(probed),
                 "--epochs", "2", "--hidden", "8", "--layers", "1", "--probes", "4"]) == 0
    capsys.readouterr()
    assert main(["metanet", "predict", "--model", str(probed), "--zoo", sqlite_url, "--study",
                 "tiny", "--json"]) == 0
    probe_rows = __import__("json").loads(capsys.readouterr().out)
    assert len(probe_rows) == 12
    exported = tmp_path / "exported"  # an exported network is probed like a stored one
    assert main(["export", "--storage", sqlite_url, "--study", "tiny", "--trial", "0",
                 "--out", str(exported)]) == 0
    capsys.readouterr()
    assert main(["metanet", "predict", "--model", str(probed), "--model-dir", str(exported),
                 "--json"]) == 0
    (single,) = __import__("json").loads(capsys.readouterr().out)
    assert isinstance(single["prediction"], float)
    assert [r["prediction"] for r in probe_rows] != [r["prediction"] for r in rows]
    other = tmp_path / "other-task"  # a network of another dataset: refused, not predicted
    shutil.copytree(exported, other)
    spec = json.loads((other / "architecture.json").read_text())
    (other / "architecture.json").write_text(json.dumps({**spec, "dataset": "mnist"}))
    assert main(["metanet", "predict", "--model", str(out), "--model-dir", str(other)]) == 2
    assert "was trained on 'mnist'; this metanetwork learned from networks trained on ['mnist14']" \
        in capsys.readouterr().err
    assert main(["metanet", "train", "--zoo", sqlite_url, "--study", "tiny", "--out",
                 str(tmp_path / "bad"), "--probes", "-1"]) == 2
    assert "--probes must be >= 0, got -1" in capsys.readouterr().err
    assert main(["metanet", "train", "--zoo", sqlite_url, "--study", "tiny", "--out",
                 str(tmp_path / "bad"), "--probes", "4", "--probe-init", "zeros"]) == 2
    assert "--probe-init 'zeros' is not among ['noise', 'data']" in capsys.readouterr().err


def test_probing_needs_image_networks_with_their_weights() -> None:
    entry = ZooEntry(study="s", trial=0, epoch=None, space="gnn", architecture={}, dataset="cora",
                     level="node", in_channels=4, out_channels=3, metrics={}, graph=None,
                     state_dict={"w": torch.zeros(1)})
    with pytest.raises(ValueError, match="probing needs image networks; s trial 0 is a 'node'"):
        Zoo([entry]).networks()
    image = dataclasses.replace(entry, space="cnn", level="image", dataset="mnist14",
                                architecture={"widths": [4]}, in_channels=1, out_channels=10,
                                state_dict={})
    with pytest.raises(ValueError, match="keep_state_dicts=True"):
        Zoo([image]).networks()


def test_reading_a_zoo_at_a_mistyped_path_creates_no_database(tmp_path) -> None:
    from metanets.zoo import load_zoo

    with pytest.raises(FileNotFoundError, match="no SQLite database"):
        load_zoo(f"sqlite:///{tmp_path / 'nothere.db'}", "zoo")
    assert not (tmp_path / "nothere.db").exists()


@pytest.mark.parametrize("limit", [0, -1])
def test_a_limit_that_is_no_number_of_runs_is_refused(limit, tmp_path) -> None:
    """limit 0 read every run, limit -1 all but the last."""
    from metanets.zoo import load_zoo

    with pytest.raises(ValueError, match=f"limit must be a number of runs >= 1 \\(None: all\\), got {limit}"):
        load_zoo(f"sqlite:///{tmp_path / 'z.db'}", "zoo", limit=limit)


def test_metanet_predict_reads_an_export_once(tmp_path, monkeypatch, capsys) -> None:  # noqa: ANN001
    """metanet predict --model-dir read and parsed architecture.json twice (read_export, then
    load_exported): the dataset it checked and the network it predicted for could come from two
    specs of an export replaced in between."""
    from pathlib import Path

    from metanets.gmn import GMN, GMNConfig, save_gmn
    from nas.cli import main
    from nas.export import SPEC_FILE, export_model

    arch = CNNArchitecture(widths=(4, 6), kernel_size=5, norm="batch", residual=True)
    exported = tmp_path / "exported"
    export_model(exported, space="cnn", spec=json.loads(arch.to_json()), in_channels=1,
                 out_channels=10, level="image", state_dict=_cnn(0).state_dict(),
                 metadata={"dataset": "mnist14"})
    save_gmn(GMN(GMNConfig(hidden=8, layers=1, kernel_width=25)), tmp_path / "gmn",
             {"target": "test_acc", "datasets": ["mnist14"]})
    reads, read_text = [], Path.read_text

    def counted(path: Path, *args, **kwargs) -> str:  # noqa: ANN002, ANN003
        if path == exported / SPEC_FILE:
            reads.append(path)
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    assert main(["metanet", "predict", "--model", str(tmp_path / "gmn"), "--model-dir",
                 str(exported), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert isinstance(row["prediction"], float) and len(reads) == 1



def _table_names(database) -> list[str]:  # noqa: ANN001
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        return sorted(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'"))


@pytest.mark.parametrize("folder_writable", [True, False])
def test_zoo_info_on_stored_networks_without_a_study_writes_nothing(
    folder_writable: bool, tmp_path, store_image_networks, monkeypatch, capsys,  # noqa: ANN001
) -> None:
    """completed_models gave optuna the bare URL: zoo info on a database of stored networks and
    no optuna study wrote optuna's 13 tables into it, and in a folder this user cannot write
    failed with "attempt to write a readonly database"."""
    import os

    from nas.cli import main

    folder = (tmp_path / "db").resolve()
    folder.mkdir()
    url = f"sqlite:///{folder / 'zoo.db'}"
    store_image_networks(url, "z", runs=3)
    before = _table_names(folder / "zoo.db")
    if not folder_writable:
        writable = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
            False if str(path) == str(folder) and mode == os.W_OK else writable(path, mode, **kw)))
    assert main(["zoo", "info", "--storage", url, "--study", "z"]) == 0
    out, err = capsys.readouterr()
    assert "runs=3" in out, err
    assert _table_names(folder / "zoo.db") == before
