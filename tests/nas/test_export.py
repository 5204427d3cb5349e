"""The export format and the Python entry points of nas.export that README shows
(load_trial_model, export_trial): a folder left by an interrupted export is never loaded as a
model."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import torch

from nas.cli import main
from nas.export import (
    SPEC_FILE, WEIGHTS_FILE, build_module, export_model, export_trial, load_exported, load_trial_model,
    read_export,
)
from nas.study import SearchConfig, run_search
from storage import ChecksumError, ModelStore

SPEC = {"widths": [4]}


def _export(folder: Path, seed: int, trial: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = build_module("cnn", SPEC, 1, 10, "image").state_dict()
    export_model(folder, space="cnn", spec=SPEC, in_channels=1, out_channels=10, level="image",
                 state_dict=state, metadata={"trial": trial})
    return state


def test_export_round_trip(tmp_path: Path) -> None:
    state = _export(tmp_path / "a", seed=0, trial=3)
    assert read_export(tmp_path / "a")["trial"] == 3
    for key, value in load_exported(tmp_path / "a").state_dict().items():
        assert torch.equal(value, state[key]), key
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [SPEC_FILE, WEIGHTS_FILE]


@pytest.mark.parametrize("new_file", [SPEC_FILE, WEIGHTS_FILE])
def test_an_export_killed_over_another_is_not_loaded_as_a_model(tmp_path: Path, new_file: str) -> None:
    """Re-exporting into a folder and killed between its two files leaves one file of each
    model; loading it must fail rather than give one trial's weights under the other's
    architecture and metrics (same shapes: before, it loaded without complaint)."""
    _export(tmp_path / "old", seed=0, trial=11)
    _export(tmp_path / "new", seed=1, trial=4)
    shutil.copy(tmp_path / "new" / new_file, tmp_path / "old" / new_file)  # the half-done export
    with pytest.raises(ChecksumError, match="export the model again"):
        load_exported(tmp_path / "old")


def test_an_export_killed_before_its_spec_is_no_model(tmp_path: Path) -> None:
    _export(tmp_path / "a", seed=0, trial=0)
    (tmp_path / "a" / SPEC_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="not an exported metanas model folder"):
        load_exported(tmp_path / "a")


FAST = dict(epochs=3, patience=0, convs=("gcn",), verbose=False, strategy="random")


@pytest.fixture
def duplicated_study(sqlite_url: str) -> optuna.Study:
    """MUTAG study whose trial 1 repeats trial 0's architecture (weights stored once, at 0)."""
    study = run_search(SearchConfig("mutag", n_trials=1, storage=sqlite_url, **FAST))
    study.enqueue_trial(study.trials[0].params)
    study = run_search(SearchConfig("mutag", n_trials=2, storage=sqlite_url, **FAST))
    assert study.trials[1].user_attrs["duplicate_of"] == 0
    return study


def test_load_trial_model_of_a_duplicate_trial_loads_the_weights_it_reuses(
    duplicated_study: optuna.Study, sqlite_url: str, tmp_path: Path,
) -> None:
    name = duplicated_study.study_name
    original = load_trial_model(sqlite_url, name, 0)
    duplicate = load_trial_model(sqlite_url, name, 1)
    exported = load_exported(export_trial(sqlite_url, name, tmp_path / "t1", 1))
    for model in (duplicate, exported):
        for key, value in original.state_dict().items():
            assert torch.equal(model.state_dict()[key], value)


def test_load_trial_model_names_the_valid_trials(duplicated_study: optuna.Study, sqlite_url: str) -> None:
    with pytest.raises(KeyError, match=r"no trial 7 .*0\.\.1"):
        load_trial_model(sqlite_url, duplicated_study.study_name, 7)


def test_load_trial_model_names_the_studies_of_the_storage(
    duplicated_study: optuna.Study, sqlite_url: str,
) -> None:
    with pytest.raises(KeyError, match=rf"no study 'nope' .*{duplicated_study.study_name}"):
        load_trial_model(sqlite_url, "nope")


def test_load_trial_model_never_creates_a_missing_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(FileNotFoundError, match="typo.db"):
        load_trial_model(f"sqlite:///{path}", "any")
    with pytest.raises(FileNotFoundError, match="typo.db"):
        export_trial(f"sqlite:///{path}", "any", tmp_path / "out")
    assert not path.exists()


def test_exporting_a_trial_without_a_model_says_why(sqlite_url: str, tmp_path: Path) -> None:
    """It said only "no stored model for trial N"."""
    import optuna

    from nas.study import FAIL_REASON

    study = optuna.create_study(storage=sqlite_url, study_name="s", direction="maximize")
    study.set_user_attr("evaluation", "evaluator table")
    study.add_trial(optuna.trial.create_trial(value=0.8))
    failed = study.ask()
    failed.set_user_attr(FAIL_REASON, "RuntimeError: out of memory")
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    with pytest.raises(KeyError, match=r"trial 0 .*: the study's evaluator 'table' trains no model to store"):
        export_trial(sqlite_url, "s", tmp_path / "a", 0)
    with pytest.raises(KeyError, match=r"trial 1 .*: the trial is FAIL \(RuntimeError: out of memory\)"):
        export_trial(sqlite_url, "s", tmp_path / "b", 1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_export_over_another_switches_in_one_step(tmp_path: Path, monkeypatch) -> None:
    """Over an existing export the weights were replaced first and the spec second: killed in
    between, the old model was gone and the new one did not load (checksum)."""
    old_state = _export(tmp_path / "a", seed=0, trial=11)
    new_state = build_module("cnn", SPEC, 1, 10, "image").state_dict()
    new_state = {k: v + 1 if v.is_floating_point() else v for k, v in new_state.items()}
    from storage import store

    written, write = [], store.replace_atomically

    def killed_after_the_weights(path, content):
        written.append(path.name)
        if path.name == SPEC_FILE:
            raise KeyboardInterrupt  # the kill, after the weights were written
        return write(path, content)

    monkeypatch.setattr(store, "replace_atomically", killed_after_the_weights)
    with pytest.raises(KeyboardInterrupt):
        export_model(tmp_path / "a", space="cnn", spec=SPEC, in_channels=1, out_channels=10, level="image",
                     state_dict=new_state, metadata={"trial": 4}, overwrite=True)
    monkeypatch.undo()
    assert written[0] != WEIGHTS_FILE  # the new weights went to a file of their own
    loaded = load_exported(tmp_path / "a")  # the old model, whole
    assert read_export(tmp_path / "a")["trial"] == 11
    assert all(torch.equal(v, old_state[k]) for k, v in loaded.state_dict().items())
    export_model(tmp_path / "a", space="cnn", spec=SPEC, in_channels=1, out_channels=10, level="image",
                 state_dict=new_state, metadata={"trial": 4}, overwrite=True)
    assert read_export(tmp_path / "a")["trial"] == 4
    assert all(torch.equal(v, new_state[k]) for k, v in load_exported(tmp_path / "a").state_dict().items())
    assert len([p for p in (tmp_path / "a").iterdir() if p.suffix == ".safetensors"]) == 1  # old ones gone


def test_an_export_spec_naming_weights_elsewhere_is_refused(tmp_path: Path) -> None:
    _export(tmp_path / "a", seed=0, trial=0)
    spec = json.loads((tmp_path / "a" / SPEC_FILE).read_text())
    (tmp_path / "a" / SPEC_FILE).write_text(json.dumps({**spec, "weights_file": "../../etc/passwd"}))
    with pytest.raises(ValueError, match="names weights '../../etc/passwd', not an export's weights file"):
        load_exported(tmp_path / "a")


def test_loaded_models_are_in_eval_mode_for_inference(
    duplicated_study: optuna.Study, sqlite_url: str, tmp_path: Path,
) -> None:
    """Both came back in training mode: dropout on, and BatchNorm updating its statistics at
    every prediction."""
    name = duplicated_study.study_name
    stored = load_trial_model(sqlite_url, name, 0)
    exported = load_exported(export_trial(sqlite_url, name, tmp_path / "a", 0))
    for model in (stored, exported):
        assert not any(module.training for module in model.modules())


def test_export_trial_refuses_a_folder_that_holds_files_unless_told(
    duplicated_study: optuna.Study, sqlite_url: str, tmp_path: Path,
) -> None:
    """`metanas export` refused a non-empty --out without --overwrite; export_trial wrote over
    whatever model the folder held."""
    name = duplicated_study.study_name
    folder = export_trial(sqlite_url, name, tmp_path / "a", 0)
    kept = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(FileExistsError, match=f"out {folder} already holds architecture.json, "
                                              "model.safetensors; .* pass overwrite=True"):
        export_trial(sqlite_url, name, folder, 1)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == kept
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        export_trial(sqlite_url, name, tmp_path / "file", 1)
    assert export_trial(sqlite_url, name, folder, 1, overwrite=True) == folder
    assert read_export(folder)["trial"] == 1


def test_export_model_refuses_a_folder_that_holds_files_unless_told(tmp_path: Path) -> None:
    """export_model (what prune and predict-params write with) wrote over whatever the folder
    held; it refuses as export_trial does, and a killed export's leftovers do not count."""
    _export(tmp_path / "a", seed=0, trial=1)
    kept = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    with pytest.raises(FileExistsError, match=f"out {tmp_path / 'a'} already holds architecture.json, "
                                              "model.safetensors; .* pass overwrite=True"):
        _export(tmp_path / "a", seed=1, trial=2)
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == kept
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already holds mine.txt"):
        _export(tmp_path / "notes", seed=1, trial=2)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        _export(tmp_path / "file", seed=1, trial=2)
    (tmp_path / "killed").mkdir()  # a first export killed before its spec
    (tmp_path / "killed" / WEIGHTS_FILE).write_bytes(b"half")
    (tmp_path / "killed" / f".{WEIGHTS_FILE}.tmp1").write_bytes(b"half")
    state = _export(tmp_path / "killed", seed=1, trial=2)
    assert all(torch.equal(v, state[k]) for k, v in load_exported(tmp_path / "killed").state_dict().items())
    torch.manual_seed(2)
    new_state = build_module("cnn", SPEC, 1, 10, "image").state_dict()
    export_model(tmp_path / "a", space="cnn", spec=SPEC, in_channels=1, out_channels=10,
                 level="image", state_dict=new_state, metadata={"trial": 3}, overwrite=True)
    assert read_export(tmp_path / "a")["trial"] == 3


def test_best_epoch_is_stored_as_an_int(duplicated_study: optuna.Study, sqlite_url: str, tmp_path: Path) -> None:
    """It was stored as a float (3.0) in the trial's attributes and the stored model's metrics."""
    name = duplicated_study.study_name
    assert [type(t.user_attrs["best_epoch"]) for t in duplicated_study.trials] == [int, int]
    assert type(ModelStore(sqlite_url).get(name, 0).metrics["best_epoch"]) is int
    exported = read_export(export_trial(sqlite_url, name, tmp_path / "a", 0))
    assert type(exported["metrics"]["best_epoch"]) is int


def test_a_best_epoch_that_an_older_version_stored_as_a_float_is_shown_as_an_int(
    capsys, sqlite_url: str,
) -> None:
    study = optuna.create_study(storage=sqlite_url, study_name="old", direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.8, user_attrs={"val_acc": 0.8, "best_epoch": 17.0}))
    for command in ("trials", "best"):
        assert main([command, "--storage", sqlite_url, "--study", "old", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert repr((shown[0] if command == "trials" else shown)["best_epoch"]) == "17"


def _spec_reads(monkeypatch: pytest.MonkeyPatch, folder: Path) -> list[Path]:
    """The reads of ``folder``'s architecture.json from now on (a list that grows)."""
    reads, read_text = [], Path.read_text

    def counted(path: Path, *args, **kwargs) -> str:
        if path == folder / SPEC_FILE:
            reads.append(path)
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    return reads


class _Measured(Exception):
    """Raised where a command has read its export and starts the slow part (training)."""


def _stop(*args, **kwargs) -> None:
    raise _Measured


@pytest.mark.parametrize("command", ["evaluate", "prune", "prune-metanet"])
def test_each_command_reads_an_export_once(command: str, mnist_available, monkeypatch,
                                           tmp_path: Path) -> None:
    """evaluate, prune and prune-metanet read and parsed architecture.json twice (read_export,
    then load_exported): their checks and the model they load could come from two specs of an
    export replaced in between."""
    import metanets.pruning.metanet
    import metanets.pruning.pipeline
    import nas.prune
    from nas.evaluate import EvaluateJob, run_evaluate
    from nas.prune import MetanetJob, PruneJob, run_prune, train_prune_metanet

    folder = tmp_path / "model"
    _export(folder, seed=0, trial=0)
    monkeypatch.setattr(metanets.pruning.pipeline, "evaluate", _stop)
    monkeypatch.setattr(nas.prune, "prune_and_finetune", _stop)
    monkeypatch.setattr(metanets.pruning.metanet, "fit_pruning_metanet", _stop)
    reads = _spec_reads(monkeypatch, folder)
    with pytest.raises(_Measured):
        if command == "evaluate":
            run_evaluate(EvaluateJob(str(folder), "mnist"))
        elif command == "prune":
            run_prune(PruneJob(str(folder), "mnist", 1.5, str(tmp_path / "out")))
        else:
            train_prune_metanet(MetanetJob("mnist", str(tmp_path / "out"), (str(folder),)))
    assert len(reads) == 1


@pytest.mark.parametrize("command, option", [("evaluate", "--model"), ("prune", "--model"),
                                             ("prune-metanet", "--model-dir")])
@pytest.mark.parametrize("what", ["no such folder", "a file, not a folder"])
def test_each_command_refuses_a_model_that_is_no_folder_naming_it(
    command: str, option: str, what: str, capsys, tmp_path: Path,
) -> None:
    """prune and prune-metanet said 'db/architecture.json not found' of a --model that is a
    file (a storage's database, say), where evaluate said what it is."""
    model = tmp_path / "model"
    if what != "no such folder":
        model.write_text("x")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    argv = {"evaluate": ["evaluate", "--model", str(model), "--dataset", "mutag"],
            "prune": ["prune", "--model", str(model), "--dataset", "mutag", "--speedup", "2",
                      "--out", str(tmp_path / "out")],
            "prune-metanet": ["prune-metanet", "--model-dir", str(model), "--dataset", "mutag",
                              "--out", str(tmp_path / "out")]}[command]
    assert main([*argv, "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"error: {option} {model}: {what}; give an exported model's folder" in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("out", ["full", "m.db/pruned"])
def test_prune_says_what_its_model_is_before_judging_out(out: str, capsys, tmp_path: Path) -> None:
    """With --model a file, an --out holding files was refused as such, and an --out under it
    as 'inside the input model's folder', calling the file a folder."""
    (tmp_path / "m.db").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "architecture.json").write_text("{}")
    argv = ["prune", "--model", str(tmp_path / "m.db"), "--dataset", "mutag", "--speedup", "2",
            "--out", str(tmp_path / out), "--device", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"error: --model {tmp_path / 'm.db'}: a file, not a folder" in err, err


@pytest.mark.parametrize("key", ["in_channels", "out_channels"])
@pytest.mark.parametrize("value", ["1", 7.0, 0, -3, True, None, [4]])
def test_an_export_recording_channels_that_are_no_positive_integer_is_refused_naming_it(
    key: str, value, tmp_path: Path,
) -> None:
    spec = {"space": "cnn", "architecture": {}, "in_channels": 1, "out_channels": 10,
            "level": "image", key: value}
    (tmp_path / "architecture.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError) as refused:
        read_export(tmp_path)
    assert str(refused.value) == (f"{tmp_path / 'architecture.json'} records {key} {value!r}, "
                                  f"not a positive integer: export the model again")
