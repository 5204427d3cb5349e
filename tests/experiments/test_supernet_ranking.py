"""Where supernet_ranking.py trains its supernet without ``--supernet``: one fixed
``/tmp/metanas-supernet-<space>-<dataset>-<seed>`` folder was resumed (or, trained longer before,
reused as it was) whatever ``--supernet-epochs``, ``--sampling`` or the supernet options said.
A ``--supernet`` folder is resumed, not reused, unless it was trained as the run asks; options,
``--rescore`` and ``--supernet`` are checked before any work."""
from __future__ import annotations

import json
import shutil
import sys
import types

import pytest
from _scripts import load_script

import experiments._supernet_common as common

SUPERNET = {"max_depth": 2, "widths": [64], "dropouts": [0.5]}
TRAIN = {"epochs": 500, "seed": 0, "sampling": "uniform", "device": "cpu", "lr": 5e-3}


@pytest.fixture()
def ranking():
    return load_script("supernet_ranking")


@pytest.fixture()
def results(tmp_path, monkeypatch):
    """An empty results folder that the script reads and writes instead of experiments/results."""
    folder = tmp_path / "results"
    folder.mkdir()
    monkeypatch.setattr(common, "RESULTS", folder)
    return folder


def test_the_folder_lies_in_the_cache_and_depends_on_every_setting(ranking, tmp_path,
                                                                   monkeypatch) -> None:
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    folder = ranking.supernet_folder("gnn", "cora", SUPERNET, TRAIN)
    assert folder.parent == tmp_path / "cache" / "supernet_ranking"
    assert folder.name.startswith("gnn-cora-")
    assert ranking.supernet_folder("gnn", "cora", dict(SUPERNET), dict(TRAIN)) == folder
    others = [
        ranking.supernet_folder("gnn", "citeseer", SUPERNET, TRAIN),
        ranking.supernet_folder("nasbench-graph", "cora", SUPERNET, TRAIN),
        ranking.supernet_folder("gnn", "cora", {**SUPERNET, "dropouts": [0.0]}, TRAIN),
        *(ranking.supernet_folder("gnn", "cora", SUPERNET, {**TRAIN, key: value})
          for key, value in [("epochs", 3000), ("seed", 1), ("sampling", "fair"), ("device", "cuda")]),
    ]
    assert folder not in others and len(set(others)) == len(others)


@pytest.mark.usefixtures("cora_available")
def test_a_run_with_other_supernet_epochs_trains_a_supernet_of_its_own(ranking, tmp_path,
                                                                      monkeypatch) -> None:
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(common.RESULTS / "supernet_ranking.json", results)  # as test_result_names
    monkeypatch.setattr(common, "RESULTS", results)
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    argv = ["supernet_ranking.py", "--archs", "2", "--max-depth", "1", "--width", "16",
            "--epochs", "1", "--patience", "1", "--device", "cpu", "--name", "tiny"]
    epochs = {}
    for supernet_epochs in ("2", "1"):  # the 1-epoch run reused the 2-epoch supernet
        monkeypatch.setattr(sys, "argv", [*argv, "--supernet-epochs", supernet_epochs])
        ranking.main()
        epochs[supernet_epochs] = json.loads((results / "tiny.json").read_text())["supernet_epochs"]
    assert epochs == {"2": 2, "1": 1}
    assert len(list((tmp_path / "cache" / "supernet_ranking").iterdir())) == 2


@pytest.fixture()
def two_epoch_supernet(tiny_graph, tmp_path):
    """A checkpoint folder of a GNN supernet trained 2 epochs (seed 0, uniform sampling)."""
    from nas.supernet import GNNSupernet, SupernetTrainConfig, train_supernet

    task = types.SimpleNamespace(data=tiny_graph, name="tiny", level="node", num_features=4, num_classes=3)
    folder = tmp_path / "supernet"
    train_supernet(GNNSupernet(4, 3, "node", max_depth=1, widths=(16,)), task,
                   SupernetTrainConfig(epochs=2, seed=0, device="cpu"), out=folder)
    return folder


def _usage_error(ranking, monkeypatch, capsys, argv: list[str]) -> str:  # noqa: ANN001
    """The one error line of ``supernet_ranking.py argv``, which must exit 2 before any work."""
    monkeypatch.setattr(ranking, "machine", lambda: pytest.fail("the benchmark started its work"))
    monkeypatch.setattr(sys, "argv", ["supernet_ranking.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        ranking.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, stored, requested", [
    (["--seed", "1"], "seed 0", "--seed 1"),
    (["--sampling", "fair"], "sampling 'uniform'", "--sampling 'fair'"),
    (["--seed", "2", "--sampling", "fair"], "seed 0, sampling 'uniform'", "--seed 2, --sampling 'fair'"),
])
def test_a_supernet_folder_trained_otherwise_is_refused_naming_both_settings(
    ranking, two_epoch_supernet, monkeypatch, capsys, argv, stored, requested,
) -> None:
    # it was reused as it was: its rows were reported under a seed or sampling it never had
    line = _usage_error(ranking, monkeypatch, capsys,
                        ["--supernet", str(two_epoch_supernet), "--supernet-epochs", "2", *argv])
    assert line == (f"supernet_ranking.py: error: --supernet {two_epoch_supernet} holds a supernet "
                    f"trained with {stored}, not {requested}: pass the settings it was trained "
                    "with, or another folder")


def test_a_supernet_folder_trained_longer_is_refused_naming_its_epochs(
    ranking, two_epoch_supernet, monkeypatch, capsys,
) -> None:
    # it was reused as it was, the result recording --supernet-epochs 1
    line = _usage_error(ranking, monkeypatch, capsys,
                        ["--supernet", str(two_epoch_supernet), "--supernet-epochs", "1"])
    assert line == (f"supernet_ranking.py: error: --supernet {two_epoch_supernet} holds a supernet "
                    "trained 2 epochs, more than --supernet-epochs 1: pass --supernet-epochs 2 (or "
                    "more, to train it further), or another folder")


def test_a_folder_whose_supernet_json_is_no_checkpoint_is_refused(ranking, tmp_path, monkeypatch,
                                                                  capsys) -> None:
    (tmp_path / "supernet.json").write_text("{bad")
    line = _usage_error(ranking, monkeypatch, capsys, ["--supernet", str(tmp_path)])
    assert line.startswith(f"supernet_ranking.py: error: --supernet {tmp_path}: {tmp_path / 'supernet.json'} "
                           "is not JSON")


def test_a_supernet_folder_trained_as_asked_or_shorter_is_used(ranking, two_epoch_supernet) -> None:
    config = types.SimpleNamespace(supernet_epochs=2, seed=0, device="cuda", sampling="uniform")
    assert ranking.reuse_error(two_epoch_supernet, ranking._train_config(config)) is None
    config.supernet_epochs = 5  # resumed up to 5, as `metanas supernet train` resumes it
    assert ranking.reuse_error(two_epoch_supernet, ranking._train_config(config)) is None
    assert ranking.reuse_error(two_epoch_supernet.parent / "new", ranking._train_config(config)) is None


@pytest.mark.parametrize("argv, message", [
    (["--option", "depth=2"], "unknown option(s) ['depth'] of the 'gnn' supernet; valid: ['convs', "),
    (["--space", "nasbench-graph", "--option", "max_depth=2"],
     "unknown option(s) ['max_depth'] of the 'nasbench-graph' supernet; valid: ["),
    (["--option", "dropouts"], "supernet option 'dropouts' must look like KEY=VALUE"),
    (["--rescore", "supernet_ranking"], "--rescore supernet_ranking needs --supernet FOLDER: the "
                                        "trained supernet whose inherited weights re-score the rows"),
])
def test_bad_options_and_a_rescore_without_supernet_are_usage_errors(ranking, monkeypatch, capsys,
                                                                     argv, message) -> None:
    # an unknown option: a traceback after loading the task; --rescore: a crash on its first row
    line = _usage_error(ranking, monkeypatch, capsys, argv)
    assert line.startswith(f"supernet_ranking.py: error: {message}")


def test_every_setting_the_library_refuses_to_resume_with_has_a_flag_here() -> None:
    from nas.supernet import RESUME_SETTINGS

    assert set(load_script("supernet_ranking").REUSED_SETTINGS) == set(RESUME_SETTINGS)


def _source_result(results, name: str, space: str = "gnn") -> list[dict]:
    """A result file ``name`` of two GNN architectures with seed-0 runs (1 epoch, patience 1)."""
    import random

    from search_spaces import GNNSpace

    rng = random.Random(3)
    archs = [GNNSpace(max_depth=1, convs="gcn,sage").sample(rng).to_dict() for _ in range(2)]
    rows = [{"arch": arch, "summary": "a", "inherited_val": 0.5 + i / 10, "inherited_test": 0.5,
             "inherited_seconds": 0.1, "variants": {"0": {"val": 0.5 + i / 10, "test": 0.5, "seconds": 0.1}},
             "scratch_runs": [{"val": 0.3 + i / 10, "test": 0.2 + i / 10, "seconds": 1.0, "epochs": 1}],
             "scratch_val": 0.3 + i / 10, "scratch_test": 0.2 + i / 10, "scratch_seconds": 1.0,
             "scratch_epochs": 1} for i, arch in enumerate(archs)]
    args = {"dataset": "cora", "space": space, "epochs": 1, "patience": 1, "max_depth": 1, "width": 16,
            "seed": 0, "ref_seeds": [0]}
    text = json.dumps({"args": args, "rows": rows, "supernet_epochs": 7, "supernet_seconds": 2.0})
    (results / f"{name}.json").write_text(text)
    return json.loads(text)["rows"]


@pytest.mark.usefixtures("cora_available")
def test_extend_reference_keeps_the_recorded_runs_and_adds_the_missing_seeds(ranking, results,
                                                                           monkeypatch) -> None:
    from nas.evaluators import TrainEvaluator
    from nas.tasks import load_task
    from search_spaces import GNNArchitecture, GNNSpace

    rows = _source_result(results, "src")
    monkeypatch.setattr(sys, "argv", ["supernet_ranking.py", "--extend-reference", "src",
                                      "--ref-seeds", "0", "2", "--device", "cpu", "--name", "ext"])
    ranking.main()
    out = json.loads((results / "ext.json").read_text())
    assert out["args"]["ref_seeds"] == [0, 2] and out["supernet_epochs"] == 7
    again = TrainEvaluator(epochs=1, patience=1).evaluate(
        GNNArchitecture.from_dict(rows[1]["arch"]), GNNSpace(), load_task("cora"), seed=2, device="cpu")
    first, second = out["rows"]
    assert [r["arch"] for r in out["rows"]] == [r["arch"] for r in rows]
    assert first["scratch_runs"][0] == rows[0]["scratch_runs"][0] and len(first["scratch_runs"]) == 2
    assert second["scratch_runs"][1]["test"] == pytest.approx(again.metrics["test_acc"])
    assert second["scratch_test"] == pytest.approx((0.3 + again.metrics["test_acc"]) / 2)
    assert second["variants"] == rows[1]["variants"]
    assert "reference noise: seed~seed scratch_test (mean of 1 pairs)" in out["kendall_tau"]


@pytest.mark.parametrize("seeds, space, message", [
    (["1", "2"], "gnn", "--ref-seeds [1, 2] must hold the result's seeds [0] and at least one more"),
    (["0"], "gnn", "--ref-seeds [0] must hold the result's seeds [0] and at least one more"),
    (["0", "1", "1"], "gnn", "--ref-seeds [0, 1, 1] names a seed twice"),
    (["0", "1"], "nasbench-graph", "its reference is the nasbench-graph table, not from-scratch training"),
])
def test_extend_reference_refuses_seeds_that_drop_or_add_nothing(ranking, results, monkeypatch, capsys,
                                                                 seeds, space, message) -> None:
    _source_result(results, "src", space)
    line = _usage_error(ranking, monkeypatch, capsys, ["--extend-reference", "src", "--ref-seeds", *seeds])
    assert line.startswith(f"supernet_ranking.py: error: --extend-reference src: {message}")


@pytest.mark.usefixtures("cora_available")
def test_control_trains_random_weights_as_the_fine_tune_and_keeps_the_rows(ranking, results,
                                                                         monkeypatch) -> None:
    from nas.evaluators import finetune_config
    from nas.tasks import load_task
    from nas.train import seed_everything, train_model
    from search_spaces import GNNArchitecture, GNNSpace

    rows = _source_result(results, "src")
    monkeypatch.setattr(sys, "argv", ["supernet_ranking.py", "--control", "src", "--control-epochs",
                                      "1", "2", "--control-seed", "5", "--device", "cpu", "--name", "ctl"])
    ranking.main()
    out = json.loads((results / "ctl.json").read_text())
    space, task, arch = GNNSpace(), load_task("cora"), GNNArchitecture.from_dict(rows[1]["arch"])
    seed_everything(5)
    model = space.build(arch, task.num_features, task.num_classes, task.level)
    again = train_model(model, task, finetune_config(space, arch, 2, seed=5, device="cpu"))
    first, second = out["rows"]
    assert list(second["variants"]) == ["0", "scratch1", "scratch2"]
    assert second["variants"]["scratch2"]["val"] == pytest.approx(again.metrics["val_acc"])
    assert second["variants"]["0"] == rows[1]["variants"]["0"]
    without = lambda row: {k: v for k, v in row.items() if k != "variants"}  # noqa: E731
    assert without(first) == without(rows[0]) and without(second) == without(rows[1])
    assert {"ft0: inherited_val~scratch_test", "scratch2: inherited_val~scratch_test"} <= set(out["kendall_tau"])
    assert "scratchN (control): random weights trained N epochs with ftN's settings, training seed 5" in (
        results / "ctl.md").read_text()


def test_control_refuses_a_nasbench_graph_result(ranking, results, monkeypatch, capsys) -> None:
    _source_result(results, "src", "nasbench-graph")
    line = _usage_error(ranking, monkeypatch, capsys, ["--control", "src"])
    assert line.startswith("supernet_ranking.py: error: --control src: its architectures are "
                           "NAS-Bench-Graph cells")
