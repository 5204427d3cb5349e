from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy
import torch

from nas.cli import main


@pytest.mark.parametrize(
    "argv, bad, choice",
    [
        (["search", "--dataset", "foo"], "'foo'", "'cora'"),
        (["search", "--dataset", "cora", "--convs", "gcn,foo"], "'foo'", "'sage'"),
        (["search", "--dataset", "cora", "--convs", ""], "conv ''", "'sage'"),
        (["search", "--dataset", "cora", "--strategy", "bar"], "'bar'", "'tpe'"),
        (["search", "--dataset", "cora", "--evaluator", "baz"], "'baz'", "'train'"),
        (["search", "--dataset", "cora", "--space", "qux"], "'qux'", "'gnn'"),
        (["search", "--dataset", "cora", "--objectives", "accuracy,speed"], "'speed'", "'params'"),
        (["search", "--dataset", "cora", "--select", "val_f1"], "'val_f1'", "'val_loss'"),
        (["search", "--dataset", "cora", "--prescreen", "naswot", "--prescreen-rule", "top"],
         "'top'", "'veto'"),
    ],
)
def test_bad_names_exit_2_naming_value_and_choices(argv, bad, choice, capsys, sqlite_url) -> None:
    assert main([*argv, "--storage", sqlite_url]) == 2
    err = capsys.readouterr().err
    assert bad in err and choice in err and "Traceback" not in err


def test_select_without_a_training_evaluator_is_refused(capsys, sqlite_url) -> None:
    argv = ["search", "--dataset", "cora", "--space", "nasbench-graph", "--evaluator", "table",
            "--select", "val_loss", "--storage", sqlite_url, "--quiet"]
    assert main(argv) == 2
    assert ("--select val_loss chooses the epoch a trained trial keeps; --evaluator table trains "
            "none") in capsys.readouterr().err


@pytest.mark.parametrize("option, value, message", [
    ("--timeout", "-5", "search: error: timeout must be > 0 seconds, got -5.0"),
    ("--timeout", "0", "search: error: timeout must be > 0 seconds, got 0.0"),
    ("--patience", "-1", "patience must be >= 0 (0: never stop early), got -1"),
    ("--objectives", " , ", "no objective given: choose among ['accuracy', 'latency', 'params']"),
])
def test_search_refuses_values_it_would_silently_misread(option, value, message, capsys, sqlite_url) -> None:
    """A negative timeout ran no trial and exited 0; --timeout 0 meant no timeout; a negative
    patience stopped every training after one epoch."""
    argv = ["search", "--dataset", "cora", "--trials", "1", "--epochs", "1", "--quiet",
            "--storage", sqlite_url, option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and "study" not in err


@pytest.mark.parametrize("option, value, extra", [
    ("--trials", "0", []), ("--n-jobs", "0", []), ("--warm-start-k", "0", ["--warm-start", "study:x"]),
    ("--epochs", "0", []),
])
def test_search_names_the_count_flag_the_user_typed(option, value, extra, capsys, sqlite_url) -> None:
    """SearchConfig names its fields (n_trials, n_jobs, warm_start_k); the command its flags."""
    argv = ["search", "--dataset", "cora", "--storage", sqlite_url, option, value, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"search: error: {option} must be >= 1, got {value}" in err and "Traceback" not in err


def test_bad_prescreen_veto_quantile_exits_2_naming_the_value(capsys, sqlite_url) -> None:
    argv = ["search", "--dataset", "cora", "--prescreen", "naswot", "--prescreen-rule", "veto",
            "--prescreen-veto", "1.5", "--storage", sqlite_url]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "veto quantile must be in (0, 1), got 1.5" in err and "Traceback" not in err


def test_malformed_storage_url_is_clear_and_secret_free(capsys) -> None:
    assert main(["best", "--storage", "postgresql://bob:hunter2@:::/db", "--study", "x"]) == 2
    err = capsys.readouterr().err
    assert "malformed storage URL" in err and "hunter2" not in err


def test_missing_study_lists_existing_ones(capsys, sqlite_url) -> None:
    import optuna

    optuna.create_study(storage=sqlite_url, study_name="other")
    assert main(["studies", "--storage", sqlite_url]) == 0
    assert main(["best", "--storage", sqlite_url, "--study", "nope"]) == 2
    assert "no study 'nope'" in (err := capsys.readouterr().err) and "studies there: ['other']" in err


def test_search_then_inspect(cora_available: None, capsys, sqlite_url: str, tmp_path: Path) -> None:
    args = ["--storage", sqlite_url, "--study", "cli"]
    assert main(["search", "--dataset", "Cora", "--trials", "2", "--epochs", "3", "--convs", "gcn",
                 "--strategy", "random", "--quiet", *args]) == 0
    capsys.readouterr()
    assert main(["best", "--json", *args]) == 0
    best = json.loads(capsys.readouterr().out)
    assert {"architecture", "val_acc", "test_acc", "num_params", "trial"} <= best.keys()
    assert best["architecture"]["layers"][0]["conv"] == "gcn"
    assert main(["trials", "--json", *args]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 2
    assert main(["studies", "--json", "--storage", sqlite_url]) == 0
    assert json.loads(capsys.readouterr().out)[0]["dataset"] == "cora"
    assert main(["export", "--out", str(tmp_path / "exp"), *args]) == 0
    assert (tmp_path / "exp" / "model.safetensors").is_file()
    assert main(["report", "--out", str(tmp_path / "rep"), *args]) == 0
    assert (tmp_path / "rep" / "history.png").stat().st_size > 1000


def test_corrupt_weights_fail_export_with_checksum_error(cora_available: None, capsys, sqlite_url: str, tmp_path: Path) -> None:
    args = ["--storage", sqlite_url, "--study", "c"]
    assert main(["search", "--dataset", "cora", "--trials", "1", "--epochs", "2", "--convs", "gcn", "--quiet", *args]) == 0
    engine = sqlalchemy.create_engine(sqlite_url)
    with engine.begin() as connection:
        blob = bytearray(connection.execute(sqlalchemy.text("SELECT weights FROM metanas_trained_models")).scalar())
        blob[-1] ^= 0xFF
        connection.execute(sqlalchemy.text("UPDATE metanas_trained_models SET weights = :b"), {"b": bytes(blob)})
    capsys.readouterr()
    assert main(["export", "--out", str(tmp_path / "x"), *args]) == 1
    assert "corrupt" in capsys.readouterr().err
    assert main(["best", *args]) == 0  # the study itself is intact


def test_console_script_entry_point() -> None:
    result = subprocess.run([sys.executable, "-m", "nas.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("search", "best", "trials", "export", "report", "studies"):
        assert command in result.stdout
    bad = subprocess.run([sys.executable, "-m", "nas.cli", "search"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--dataset" in bad.stderr


#: the console script that pyproject.toml names, its command stopped by SIGTERM and sent another
#: as the interpreter tears down (a job scheduler's repeat; torch's teardown takes hundreds of ms)
_TERMINATED_TWICE = """
import atexit, os, re, signal, sys, time
from importlib import import_module
import nas.cli

def stopped(args):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)

nas.cli.cmd_studies = stopped
atexit.register(os.kill, os.getpid(), signal.SIGTERM)
module, name = re.search(r'^metanas = "(.+):(.+)"', open("pyproject.toml").read(), re.M).groups()
sys.argv = ["metanas", "studies", "--storage", sys.argv[1]]
sys.exit(getattr(import_module(module), name)())
"""


def test_the_console_script_stopped_by_sigterm_exits_143_though_a_repeat_comes_as_it_exits(sqlite_url: str) -> None:
    """Before: main() restored SIGTERM's default action as it returned 143, so a second SIGTERM
    during the interpreter's teardown killed the command (-15)."""
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", _TERMINATED_TWICE, sqlite_url], cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 143, result.stderr
    assert result.stderr.splitlines() == ["metanas: terminated (SIGTERM)"]


@pytest.mark.parametrize(
    "option, expected",
    [
        (["--evaluator", "hypernet:{tmp}/missing.safetensors"], "missing.safetensors not found"),
        (["--init", "hypernet", "--hypernet", "pretrained:foo"], "'foo' among choices ['cnn-mnist', 'gnn-cora']"),
        (["--init", "hypernet", "--hypernet", "pretrained:cnn-mnist"], "hypernetwork trained for image tasks"),
    ],
)
def test_bad_hypernetwork_fails_the_search_before_any_trial(
    cora_available: None, option, expected, capsys, sqlite_url: str, tmp_path: Path,
) -> None:
    argv = ["search", "--dataset", "cora", "--trials", "2", "--epochs", "1", "--quiet",
            "--storage", sqlite_url, "--study", "h", *(o.format(tmp=tmp_path) for o in option)]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and "failed with" not in err


@pytest.mark.parametrize("number", ["99", "-1"])
def test_export_of_a_trial_the_study_lacks_names_its_trials(number, capsys, sqlite_url, tmp_path: Path) -> None:
    import optuna

    study = optuna.create_study(storage=sqlite_url, study_name="e", direction="maximize")
    for value in (0.5, 0.6):
        study.add_trial(optuna.trial.create_trial(value=value))
    out = tmp_path / "out"
    assert main(["export", "--storage", sqlite_url, "--study", "e", "--out", str(out), "--trial", number]) == 1
    err = capsys.readouterr().err
    assert f"no trial {number} in study 'e'; its trials are 0..1" in err and not out.exists()


def test_hypernet_train_never_overwrites_a_file_that_is_not_a_checkpoint(capsys, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("a week of results\n")
    assert main(["hypernet", "train", "--dataset", "cora", "--out", str(notes), "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "notes.txt exists and is not a GHN checkpoint" in err
    assert notes.read_text() == "a week of results\n"


@pytest.mark.parametrize("option, value", [("--epochs", "0"), ("--epochs", "-1"), ("--hidden", "0"),
                                           ("--layers", "0"), ("--batch-size", "0"),
                                           ("--kernel-width", "0")])
def test_metanet_train_refuses_sizes_below_one(option, value, capsys, sqlite_url, tmp_path: Path) -> None:
    out = tmp_path / "m"
    argv = ["metanet", "train", "--zoo", sqlite_url, "--study", "z", "--out", str(out), option, value]
    assert main(argv) == 2
    assert f"{option} must be >= 1, got {value}" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("option", ["--size", "--epochs", "--batch-size", "--n-jobs", "--max-depth"])
def test_zoo_build_names_the_count_flag_the_user_typed(option, capsys, sqlite_url, monkeypatch) -> None:
    """ZooConfig names its fields (size, epochs); the command its flags. --batch-size 0 started
    the zoo and --max-depth 0 silently meant the space's default."""
    import nas.zoo

    def build_zoo(config):  # noqa: ANN001, ANN202
        raise AssertionError("the zoo build started")

    monkeypatch.setattr(nas.zoo, "build_zoo", build_zoo)
    argv = ["zoo", "build", "--storage", sqlite_url, "--size", "2", option, "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == f"metanas zoo: error: {option} must be >= 1, got 0\n"


@pytest.mark.parametrize("option", ["--steps", "--archs-per-step", "--pool-size", "--batch-size",
                                    "--max-depth", "--max-width", "--max-distance"])
def test_hypernet_train_names_the_count_flag_before_loading_data(
    option, capsys, tmp_path, monkeypatch,
) -> None:
    """HypernetTrainConfig names its fields (max_distance); the command its flags, before it
    loads the dataset (it did after)."""
    import nas.tasks

    def load_task(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the dataset was loaded")

    monkeypatch.setattr(nas.tasks, "load_task", load_task)
    out = tmp_path / "ghn.safetensors"
    argv = ["hypernet", "train", "--dataset", "cora", "--out", str(out), option, "0"]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"metanas hypernet: error: {option} must be >= 1, got 0\n"
    assert not out.exists()


@pytest.mark.parametrize("argv, file, content, message", [
    (["metanet", "predict", "--model", "{tmp}/m", "--model-dir", "{tmp}/m"], "m/metanet.json", "{bad",
     "m/metanet.json is not JSON"),
    (["prune", "--model", "{tmp}/e", "--dataset", "cora", "--speedup", "2", "--out", "{tmp}/o"],
     "e/architecture.json", "{bad", "e/architecture.json is not JSON"),
    (["prune", "--model", "{tmp}/e", "--dataset", "cora", "--speedup", "2", "--out", "{tmp}/o"],
     "e/architecture.json", "[1]", "e/architecture.json holds no architecture"),
    (["predict-params", "--hypernet", "pretrained:gnn-cora", "--arch", "{tmp}/a.json", "--out", "{tmp}/o"],
     "a.json", "[1]", "a.json holds a JSON list, not an architecture spec"),
])
def test_malformed_json_files_are_named(argv, file, content, message, capsys, tmp_path: Path) -> None:
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    (path.parent / "metanet.safetensors").touch()
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_prune_device_names_the_choices(capsys, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "--model", str(tmp_path), "--dataset", "cora", "--speedup", "2",
              "--out", str(tmp_path / "o"), "--device", "tpu"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'tpu' (choose from 'auto', 'cpu', 'cuda')" in capsys.readouterr().err


def test_zoo_info_of_a_missing_zoo_lists_the_studies(capsys, sqlite_url) -> None:
    import optuna

    optuna.create_study(storage=sqlite_url, study_name="zoo-a")
    assert main(["zoo", "info", "--storage", sqlite_url, "--study", "nope"]) == 2
    assert "no study 'nope'" in (err := capsys.readouterr().err)
    assert "studies there: ['zoo-a']" in err


def test_a_supernet_of_another_dataset_fails_the_search_before_any_trial(
    cora_available: None, capsys, sqlite_url, tmp_path: Path,
) -> None:
    from nas.supernet._checkpoint import FORMAT, META

    (tmp_path / "sn").mkdir()
    (tmp_path / "sn" / META).write_text(json.dumps({
        "format": FORMAT, "space": "gnn", "dataset": "mutag", "supernet": {}, "epoch": 1, "step": 1,
        "seconds": 0.0, "history": [0.0], "param_groups": []}))
    argv = ["search", "--dataset", "cora", "--trials", "1", "--quiet", "--storage", sqlite_url,
            "--evaluator", "supernet", "--supernet", str(tmp_path / "sn")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "was trained on dataset 'mutag', not 'cora'" in err and "failed with" not in err


@pytest.mark.timeout(60)  # before the fix: every trial failed without counting, for ever
def test_latency_objective_with_an_evaluator_that_does_not_measure_it(capsys, sqlite_url) -> None:
    argv = ["search", "--dataset", "cora", "--trials", "1", "--quiet", "--storage", sqlite_url,
            "--objectives", "accuracy,latency", "--evaluator", "zero-cost:naswot"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "objective 'latency' is not measured by evaluator 'zero-cost'" in err
    assert "['table', 'train']" in err and "failed with" not in err


@pytest.mark.parametrize("argv", [
    ["studies", "--storage", "{url}"],
    ["best", "--storage", "{url}", "--study", "s"],
    ["trials", "--storage", "{url}", "--study", "s"],
    ["export", "--storage", "{url}", "--study", "s", "--out", "{tmp}/out"],
    ["report", "--storage", "{url}", "--study", "s", "--out", "{tmp}/out"],
    ["zoo", "info", "--storage", "{url}", "--study", "s"],
    ["metanet", "train", "--zoo", "{url}", "--study", "s", "--out", "{tmp}/out"],
    ["prune-metanet", "--dataset", "cora", "--zoo", "{url}", "--study", "s", "--out", "{tmp}/out"],
])
def test_commands_that_read_a_database_never_create_one_at_a_mistyped_path(argv, capsys, tmp_path: Path) -> None:
    missing = tmp_path / "mistyped.db"
    url = f"sqlite:///{missing}"
    assert main([a.format(url=url, tmp=tmp_path) for a in argv]) == 1
    assert f"no SQLite database at '{missing}'" in capsys.readouterr().err
    assert not missing.exists() and not (tmp_path / "out").exists()


def test_studies_says_when_a_database_holds_none(capsys, sqlite_url: str) -> None:
    from storage import ModelStore

    ModelStore(sqlite_url)  # an existing database without studies
    assert main(["studies", "--storage", sqlite_url]) == 0
    assert capsys.readouterr().out.startswith("no studies in sqlite:///")


def test_a_reader_that_goes_away_ends_the_command_quietly(sqlite_url: str) -> None:
    """``metanas studies | head``-like: the output pipe is closed before the command writes."""
    from storage import ModelStore

    ModelStore(sqlite_url)
    process = subprocess.Popen([sys.executable, "-m", "nas.cli", "studies", "--storage", sqlite_url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait() == 141
    assert err == ""


@pytest.mark.parametrize("argv, said", [
    (["supernet", "train", "--dataset", "cora", "--out", "sn"],
     "no checkpoint was written yet (the first at epoch 50): the same command starts again"),
    (["supernet", "train", "--dataset", "cora", "--out", "sn", "--epochs", "20"],
     "no checkpoint was written yet (the first at epoch 20): the same command starts again"),
    (["hypernet", "train", "--dataset", "cora", "--out", "g.safetensors"],
     "no training state was written yet (the first at step 500): the same command starts "
     "again"),  # with one, what is kept is said: tests/metanets/test_ghn_resume.py
    (["metanet", "train", "--zoo", "sqlite:///z.db", "--study", "z", "--out", "m"],
     "no training state was written yet (the first at epoch 5): the same command starts again"),
    (["prune-metanet", "--dataset", "cora", "--model-dir", "e", "--out", "pm"],
     "no training state was written yet (the first at step 100): the same command starts "
     "again"),
    (["search", "--dataset", "cora"], "finished trials are stored, the interrupted ones failed (they do "
     "not count against --trials): the same command resumes the search"),
    (["zoo", "build", "--size", "2"], "finished trials are stored"),
    (["prune", "--model", "m", "--dataset", "cora", "--speedup", "2", "--out", "p"], ""),
])
def test_ctrl_c_says_what_the_interrupted_command_kept(argv, said, tmp_path, monkeypatch) -> None:
    # every command said "finished trials are stored", a search's message, after Ctrl-C; metanet
    # train, prune-metanet and supernet train said their state or checkpoint "is kept" before
    # they had written one
    from nas.cli import _kept_on_interrupt, build_parser

    monkeypatch.chdir(tmp_path)
    assert _kept_on_interrupt(build_parser().parse_args(argv)) == said


@pytest.mark.parametrize("argv, state, said", [
    (["metanet", "train", "--zoo", "sqlite:///z.db", "--study", "z", "--out", "m"], "m.state",
     "the training state m.state is kept: the same command resumes from it"),
    (["prune-metanet", "--dataset", "cora", "--model-dir", "e", "--out", "pm"], "pm.state",
     "the training state pm.state is kept: the same command resumes from it"),
    (["hypernet", "train", "--dataset", "cora", "--out", "g.safetensors"], "g.safetensors.state",
     "the training state g.safetensors.state is kept: the same command resumes from it"),
])
def test_ctrl_c_after_a_training_state_was_written_says_it_is_kept(
    argv, state, said, tmp_path, monkeypatch,
) -> None:
    from nas.cli import _kept_on_interrupt, build_parser

    monkeypatch.chdir(tmp_path)
    (tmp_path / state).write_bytes(b"state")
    assert _kept_on_interrupt(build_parser().parse_args(argv)) == said


@pytest.mark.parametrize("meta", ["{broken", "[1]"])
def test_ctrl_c_over_a_damaged_supernet_checkpoint_says_none_was_written(meta: str, tmp_path,
                                                                         monkeypatch) -> None:
    """Reading a damaged supernet.json (which --overwrite lets through) after Ctrl-C raised
    out of the interrupt handler: a traceback, not exit 130."""
    from nas.cli import _kept_on_interrupt, build_parser

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sn").mkdir()
    (tmp_path / "sn" / "supernet.json").write_text(meta)
    argv = ["supernet", "train", "--dataset", "cora", "--out", "sn", "--overwrite"]
    assert _kept_on_interrupt(build_parser().parse_args(argv)) == (
        "no checkpoint was written yet (the first at epoch 50): the same command starts again")


@pytest.mark.parametrize("overwrite, said", [
    ([], "the last checkpoint in sn is kept: the same command resumes from it"),
    (["--overwrite"], "the last checkpoint in sn is kept: the command without --overwrite "
                      "resumes from it (with --overwrite it starts again)"),
])
def test_ctrl_c_after_a_supernet_checkpoint_says_it_is_kept(overwrite, said, tmp_path,
                                                            monkeypatch) -> None:
    from nas.cli import _kept_on_interrupt, build_parser
    from torch import nn

    from nas.supernet import has_checkpoint
    from nas.supernet._checkpoint import save_checkpoint

    monkeypatch.chdir(tmp_path)
    save_checkpoint(tmp_path / "sn", nn.Linear(2, 2), None, {
        "space": "gnn", "supernet": {}, "dataset": "cora", "epoch": 50, "step": 50, "seconds": 1.0,
        "history": [1.0]})
    assert has_checkpoint("sn")
    argv = ["supernet", "train", "--dataset", "cora", "--out", "sn", *overwrite]
    assert _kept_on_interrupt(build_parser().parse_args(argv)) == said


@pytest.mark.parametrize("extra, message", [
    (["--prescreen", "synflw"], "could not resolve zero-cost proxy 'synflw' among choices"),
    (["--prescreen", "naswot", "--prescreen-k", "0"], "--prescreen-k must be >= 1, got 0"),
    (["--device", "cuda"], "device 'cuda' requested but CUDA is not available"),
    (["--warm-start", "study:nope"], "could not resolve warm-start studies ['nope']"),
    (["--warm-start", "nasbench-graph:citeseer"], "needs space 'nasbench-graph'"),
])
def test_a_refused_search_leaves_no_study_to_block_the_corrected_one(
    extra, message, cora_available, capsys, sqlite_url, tmp_path: Path, monkeypatch,
) -> None:
    """These were refused after the study was created: the empty study kept the refused
    command's settings and refused the corrected command ("was created with ...")."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["search", "--dataset", "cora", "--trials", "1", "--epochs", "1", "--quiet",
            "--storage", sqlite_url, "--study", "s"]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "metanas.db").exists()


def test_a_refused_warm_start_study_lists_only_studies_that_were_there(capsys, sqlite_url, tmp_path) -> None:
    import optuna

    optuna.create_study(storage=sqlite_url, study_name="source")
    argv = ["search", "--dataset", "cora", "--space", "nasbench-graph", "--evaluator", "table",
            "--trials", "1", "--quiet", "--storage", sqlite_url, "--study", "new",
            "--warm-start", "study:nope", "--data-root", str(tmp_path)]
    assert main(argv) == 2
    assert "'nope' among choices ['source']" in capsys.readouterr().err
    assert optuna.get_all_study_names(sqlite_url) == ["source"]


def test_a_zoo_resumed_with_other_checkpoints_or_batch_size_is_refused(sqlite_url) -> None:
    """Resuming with other --checkpoints or --batch-size mixed networks recorded otherwise."""
    from nas.evaluators import TrainEvaluator
    from nas.study import SearchConfig, create_or_load_study
    from nas.tasks import load_task

    def config(**options):
        evaluator = TrainEvaluator(epochs=2, patience=0, **options)
        return SearchConfig("mutag", strategy="random", evaluator=evaluator, storage=sqlite_url,
                            study_name="zoo", verbose=False)

    task = load_task("mutag")
    create_or_load_study(config(checkpoint_epochs=(1,)), task)
    create_or_load_study(config(checkpoint_epochs=(1,)), task)  # the same settings resume
    for other in ({"checkpoint_epochs": (2,)}, {"checkpoint_epochs": (1,), "batch_size": 32}):
        with pytest.raises(ValueError, match=r"created with training 'batch size 64, checkpoint epochs \[1\]'"):
            create_or_load_study(config(**other), task)


@pytest.mark.parametrize("dataset", ["arxiv", "ogbn-arxiv", "ogbn-proteins"])
def test_the_ogb_tables_of_nas_bench_graph_are_searched_without_data(dataset, capsys, sqlite_url, no_data) -> None:
    import optuna

    argv = ["search", "--dataset", dataset, "--space", "nasbench-graph", "--evaluator", "table",
            "--trials", "6", "--storage", sqlite_url, "--study", "t", "--quiet"]
    assert main(argv) == 0
    trials = optuna.load_study(study_name="t", storage=sqlite_url).trials
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)  # proteins: its 5 ops only


def test_training_on_a_table_only_dataset_says_so(capsys, sqlite_url, no_data) -> None:
    assert main(["search", "--dataset", "arxiv", "--trials", "1", "--storage", sqlite_url]) == 2
    assert "answered from NAS-Bench-Graph's table only" in capsys.readouterr().err


def test_the_table_evaluator_refuses_tu_proteins_naming_ogbn_proteins(capsys, sqlite_url, no_data) -> None:
    argv = ["search", "--dataset", "proteins", "--space", "nasbench-graph", "--evaluator", "table",
            "--trials", "1", "--storage", sqlite_url]
    assert main(argv) == 2
    assert "'proteins' is a graph task" in (err := capsys.readouterr().err) and "ogbn-proteins" in err


@pytest.mark.parametrize("extra, message", [
    (["--supernet", "runs/sn"], "--supernet is read by --evaluator supernet"),
    (["--hypernet", "g.safetensors"], "--hypernet is read by --init hypernet or --evaluator hypernet"),
    (["--prescreen-k", "3"], "--prescreen-k sets how --prescreen PROXY screens"),
    (["--prescreen-veto", "0.3"], "--prescreen-veto sets how --prescreen PROXY screens"),
    (["--prescreen-dataset", "citeseer"], "--prescreen-dataset sets how --prescreen PROXY screens"),
    (["--prescreen", "naswot", "--prescreen-veto", "0.3"], "is the threshold of --prescreen-rule veto"),
    (["--objectives", "accuracy,accuracy"], "name one twice"),
    (["--objectives", "params"], "must start with 'accuracy'"),
])
def test_options_the_search_would_ignore_are_refused(extra, message, capsys, sqlite_url, tmp_path) -> None:
    """Each of these was accepted and silently ignored (or, for a repeated objective, made a
    two-objective study of one objective)."""
    argv = ["search", "--dataset", "cora", "--trials", "1", "--storage", sqlite_url, "--quiet"]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "metanas.db").exists()


@pytest.mark.parametrize("make, said", [
    (lambda path: path.write_text("hello"), "file is not a database (the file is not an SQLite database)"),
    (lambda path: path.mkdir(), "unable to open database file (a folder, or a file in a folder"),
])
def test_a_database_that_refuses_is_named_with_its_drivers_reason(make, said, capsys, tmp_path: Path) -> None:
    """These read "An exception is raised during the commit ... e.g. exceeding max length", or a
    SQLAlchemy line with its SQL and a link, and named no file."""
    make(tmp_path / "db")
    url = f"sqlite:///{tmp_path / 'db'}"
    assert main(["search", "--dataset", "cora", "--space", "nasbench-graph", "--evaluator", "table",
                 "--trials", "1", "--quiet", "--storage", url]) == 1
    err = capsys.readouterr().err
    assert f"the database {url} refused the command: {said}" in err
    assert "SQL:" not in err and "Traceback" not in err


def test_a_refusing_database_message_hides_the_password() -> None:
    import argparse

    import sqlalchemy.exc

    from nas.cli import _message

    error = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    args = argparse.Namespace(storage="postgresql://bob:hunter2@db.example/metanas")
    message = _message(error, args)
    assert "connection refused" in message and "hunter2" not in message and "bob:***@" in message


def test_export_and_prune_never_write_over_files_unless_told(cora_available, capsys, sqlite_url, tmp_path: Path) -> None:
    """`export --out` replaced another model's files, and `prune --out` an export, silently."""
    args = ["--storage", sqlite_url, "--study", "o"]
    assert main(["search", "--dataset", "cora", "--trials", "2", "--epochs", "2", "--convs", "gcn",
                 "--quiet", *args]) == 0
    first = tmp_path / "first"
    assert main(["export", *args, "--out", str(first), "--trial", "0"]) == 0
    kept = {p.name: p.read_bytes() for p in first.iterdir()}
    capsys.readouterr()
    assert main(["export", *args, "--out", str(first), "--trial", "1"]) == 2
    assert f"--out {first} already holds architecture.json, model.safetensors; choose a new folder" \
        in capsys.readouterr().err
    prune = ["prune", "--model", str(first), "--dataset", "cora", "--speedup", "1.5",
             "--finetune-epochs", "0", "--device", "cpu"]
    other = tmp_path / "other"
    assert main(["export", *args, "--out", str(other), "--trial", "1"]) == 0
    assert main([*prune, "--out", str(other)]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["export", *args, "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in first.iterdir()} == kept
    assert main(["export", *args, "--out", str(first), "--trial", "1", "--overwrite"]) == 0
    assert main([*prune, "--out", str(other), "--overwrite"]) == 0
    assert json.loads((first / "architecture.json").read_text())["trial"] == 1


def test_help_says_every_default(capsys) -> None:
    """--seed, --device, --pruner and many other options showed no default in --help."""
    for argv, shown in ((["search", "--help"], ["default 0", "default auto", "(default 20)", "default none"]),
                        (["prune", "--help"], ["(default 10)"]),
                        (["prune-metanet", "--help"], ["default 100"])):
        with pytest.raises(SystemExit):
            main(argv)
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        assert all(text in out for text in shown), (argv, [t for t in shown if t not in out])
        assert "default None" not in out and "default False" not in out


@pytest.mark.parametrize("argv, usage", [
    (["best", "--study", "x", "--foo"], "usage: metanas best"),
    (["zoo", "build", "--size", "1", "--bar", "2"], "usage: metanas zoo build"),
])
def test_an_unknown_option_is_named_with_its_commands_usage(argv, usage, capsys) -> None:
    """It was named under the top-level usage, `metanas [-h] COMMAND ...`."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(usage) and "unrecognized arguments: " + argv[-1 if argv[-1].startswith("--") else -2] in err


def test_supernet_amp_on_the_cpu_is_refused_before_it_is_recorded(capsys, tmp_path: Path, monkeypatch) -> None:
    """--amp did nothing on the CPU but was recorded in the checkpoint, so resuming without it
    was refused ("trained with amp True, not amp False")."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["supernet", "train", "--dataset", "cora", "--out", str(tmp_path / "sn"), "--epochs", "1", "--amp"]
    assert main(argv) == 2
    assert "--amp is bfloat16 autocast on CUDA" in capsys.readouterr().err
    assert not (tmp_path / "sn").exists()


def test_a_killed_exports_leftovers_do_not_block_its_rerun(tmp_path: Path) -> None:
    """A killed export left only its weights (or a hidden temporary file); the re-run was refused
    as if a model were there."""
    from nas.cli import check_out_folder

    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"partial")
    (out / ".model.safetensors.tmp123").write_bytes(b"partial")
    check_out_folder(str(out), overwrite=False)  # no model there: not refused
    (out / "architecture.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds architecture.json, model.safetensors"):
        check_out_folder(str(out), overwrite=False)


def test_supernet_seed_fixes_its_starting_weights(cora_available, tmp_path: Path) -> None:
    """The supernet was built before the seed was set: two runs of one command differed."""
    from safetensors.torch import load_file

    def weights(out: str, seed: str) -> dict:
        assert main(["supernet", "train", "--dataset", "cora", "--out", out, "--epochs", "1", "--seed", seed,
                     "--device", "cpu", "--option", "max_depth=1", "--option", "widths=16",
                     "--option", "convs=gcn,sage"]) == 0
        (file,) = Path(out).glob("supernet*.safetensors")
        return load_file(str(file))

    a, b, c = (weights(str(tmp_path / name), seed) for name, seed in (("a", "0"), ("b", "0"), ("c", "1")))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_trials_says_why_a_killed_workers_trial_failed(capsys, sqlite_url) -> None:
    """A killed worker's trial is failed by the heartbeat with no reason recorded: `trials`
    showed a blank, while the search's own line says "worker stopped"."""
    import optuna

    from nas.study import FAIL_REASON

    study = optuna.create_study(storage=sqlite_url, study_name="k", direction="maximize")
    stopped, raised = study.ask(), study.ask()
    study.tell(stopped, state=optuna.trial.TrialState.FAIL)
    raised.set_user_attr(FAIL_REASON, "RuntimeError: boom")
    study.tell(raised, state=optuna.trial.TrialState.FAIL)
    assert main(["trials", "--storage", sqlite_url, "--study", "k"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("(worker stopped)") and lines[2].endswith("(RuntimeError: boom)")


def test_metanet_train_summarises_wide_input_layers_with_max_inputs(
    capsys, sqlite_url, tmp_path: Path, store_image_networks,
) -> None:
    """--max-inputs reaches the fit and the saved metanetwork (the library had it; the command
    did not, and a Cora search's networks, 1,433 inputs each, then took gigabytes a network)."""
    from metanets.gmn import load_gmn
    from search_spaces.mlp import MLPArchitecture

    store_image_networks(sqlite_url, runs=4, arch=MLPArchitecture(widths=(4,)))  # 196 inputs
    argv = ["metanet", "train", "--zoo", sqlite_url, "--study", "z", "--epochs", "1", "--hidden", "8",
            "--layers", "1", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "bad"), "--max-inputs", "-1"]) == 2
    assert "--max-inputs must be >= 0 (0: never summarise), got -1" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "m"), "--max-inputs", "16"]) == 0
    model, metadata = load_gmn(tmp_path / "m")
    assert model.config.max_inputs == 16 and metadata["fit"]["max_inputs"] == 16
    capsys.readouterr()
    assert main(["metanet", "predict", "--model", str(tmp_path / "m"), "--zoo", sqlite_url,
                 "--study", "z", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4


@pytest.mark.parametrize("argv, header", [
    (["search", "--dataset", "cora", "--evaluator", "table"], "metanas search: study "),
    (["zoo", "build", "--dataset", "cora", "--size", "1"], "metanas zoo build: zoo "),
])
def test_a_refused_search_or_zoo_prints_no_header_naming_a_study(
    argv, header, cora_available: None, capsys, sqlite_url: str,
) -> None:
    """`metanas search: study 'X' in URL` came before the refusal of its input, though no study
    was created; the header now comes once the study exists."""
    import optuna

    assert main([*argv, "--storage", sqlite_url, "--device", "cpu"]) == 2
    assert header not in capsys.readouterr().out
    assert optuna.get_all_study_names(sqlite_url) == []


def test_the_search_header_names_the_study_once_it_exists(cora_available: None, capsys,
                                                          sqlite_url: str) -> None:
    argv = ["search", "--dataset", "cora", "--trials", "1", "--epochs", "1", "--convs", "gcn",
            "--strategy", "random", "--quiet", "--storage", sqlite_url, "--device", "cpu"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"metanas search: study 'cora-gnn-random-train' in {sqlite_url}\n")
    assert main([*argv, "--epochs", "2"]) == 2  # resumed with other settings: refused by name
    assert "metanas search: study" not in capsys.readouterr().out


_STORAGE = ["--storage", "{url}"]


@pytest.mark.parametrize("argv", [
    ["best", *_STORAGE], ["trials", *_STORAGE], ["export", "--out", "{tmp}/e", *_STORAGE],
    ["report", "--out", "{tmp}/r", *_STORAGE], ["zoo", "info", *_STORAGE],
    ["metanet", "train", "--out", "{tmp}/m", "--zoo", "{url}", "--device", "cpu"],
    ["prune-metanet", "--dataset", "cora", "--out", "{tmp}/p", "--zoo", "{url}", "--device", "cpu"],
])
@pytest.mark.parametrize("study", ["", "nope"])
def test_an_empty_or_unknown_study_is_bad_input_naming_the_studies_there(
    argv, study, capsys, sqlite_url: str, tmp_path: Path,
) -> None:
    """`metanas export --study ''` (or any unknown name) exited 1, as a failure at run time,
    and metanet train and prune-metanet named none of the studies the storage holds."""
    import optuna

    optuna.create_study(storage=sqlite_url, study_name="other")
    assert main([*(a.format(tmp=tmp_path, url=sqlite_url) for a in argv), "--study", study]) == 2
    err = capsys.readouterr().err
    assert f"error: no study {study!r} in {sqlite_url}; studies there: ['other']\n" in err
    assert not any(tmp_path.glob("[emrp]"))


@pytest.mark.parametrize("argv", [["search", "--dataset", "cora"], ["zoo", "build", "--size", "1"]])
def test_an_empty_study_name_is_refused_before_a_study_is_created(argv, capsys, sqlite_url) -> None:
    import optuna

    optuna.create_study(storage=sqlite_url, study_name="other")
    assert main([*argv, "--storage", sqlite_url, "--study", " "]) == 2
    assert "study name ' ' is empty" in capsys.readouterr().err
    assert optuna.get_all_study_names(sqlite_url) == ["other"]


def test_zoo_commands_take_a_zoo_stored_without_an_optuna_study(
    capsys, sqlite_url: str, tmp_path: Path, store_image_networks,
) -> None:
    """Networks stored under a name optuna does not know are a zoo too: the check of the
    study names counts them, and names them among the choices."""
    from search_spaces.mlp import MLPArchitecture
    from storage import ModelStore

    store_image_networks(sqlite_url, study="stored", runs=2, arch=MLPArchitecture(widths=(4,)))
    import optuna

    assert "stored" not in optuna.get_all_study_names(sqlite_url) and ModelStore(sqlite_url).study_names() == ["stored"]
    assert main(["zoo", "info", "--storage", sqlite_url, "--study", "stored"]) == 0
    assert main(["zoo", "info", "--storage", sqlite_url, "--study", "nope"]) == 2
    assert f"no study 'nope' in {sqlite_url}; studies there: ['stored']" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    assert main(["zoo", "info", "--storage", missing, "--study", "stored"]) == 1
    assert not (tmp_path / "missing.db").exists()


#: every command that reads a dataset; each takes --data-root
_DATA_COMMANDS = {"search", "supernet train", "zoo build", "metanet train", "hypernet train",
                  "predict-params", "prune", "prune-metanet", "evaluate"}


def _commands_with(option: str) -> set[str]:
    """``{"zoo build", ...}``: every (sub)command whose parser has ``option``."""
    import argparse

    from nas.cli import build_parser

    found, todo = set(), [("", build_parser())]
    while todo:
        name, parser = todo.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {sub}".strip(), p) for sub, p in action.choices.items()]
            elif option in action.option_strings:
                found.add(name)
    return found


def test_every_command_that_reads_a_dataset_takes_data_root_with_one_help(capsys) -> None:
    """--data-root was defined by each command with its own help (a long one, 'dataset folder'
    or none), and metanet train, whose --probe-init data reads the zoo's dataset, had none."""
    from nas.cli import DATA_ROOT_HELP

    assert _commands_with("--data-root") == _DATA_COMMANDS
    for command in sorted(_DATA_COMMANDS):
        with pytest.raises(SystemExit):
            main([*command.split(), "--help"])
        shown = " ".join(capsys.readouterr().out.split())
        assert f"--data-root DIR {DATA_ROOT_HELP}" in shown, command


def test_data_root_help_says_the_default_data_root(monkeypatch, tmp_path: Path) -> None:
    from nas.cli import DATA_ROOT_HELP
    from nas.tasks import default_data_root

    monkeypatch.setenv("METANAS_DATA", str(tmp_path / "data"))
    assert "$METANAS_DATA" in DATA_ROOT_HELP and default_data_root() == tmp_path / "data"
    monkeypatch.delenv("METANAS_DATA")
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    assert "$METANAS_CACHE" in DATA_ROOT_HELP and default_data_root() == tmp_path / "cache" / "datasets"
    monkeypatch.delenv("METANAS_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert "~/.cache/metanas" in DATA_ROOT_HELP
    assert default_data_root() == tmp_path / ".cache" / "metanas" / "datasets"


class _TaskBuilt(Exception):
    pass


@pytest.fixture
def data_argv(tmp_path: Path, sqlite_url: str, store_image_networks, export_image_networks):  # noqa: ANN201
    """``data_argv(command)``: the command's arguments, up to the dataset it reads."""
    from search_spaces.cnn import CNNArchitecture

    store_image_networks(sqlite_url, "z", runs=2)
    (tmp_path / "arch.json").write_text(CNNArchitecture(widths=(8,)).to_json())
    models = export_image_networks(tmp_path, seeds=(0,))
    argv = {
        "search": ["search", "--dataset", "mnist14", "--space", "cnn", "--storage", sqlite_url],
        "supernet train": ["supernet", "train", "--dataset", "cora", "--out", f"{tmp_path}/s"],
        "zoo build": ["zoo", "build", "--size", "1", "--storage", sqlite_url],
        "metanet train": ["metanet", "train", "--zoo", sqlite_url, "--study", "z", "--out",
                          f"{tmp_path}/m", "--probes", "1", "--probe-init", "data"],
        "hypernet train": ["hypernet", "train", "--dataset", "cora", "--out", f"{tmp_path}/g"],
        "predict-params": ["predict-params", "--hypernet", "pretrained:cnn-mnist", "--arch",
                           f"{tmp_path}/arch.json", "--out", f"{tmp_path}/p", "--dataset", "mnist14"],
        "prune": ["prune", "--model", models[1], "--dataset", "mnist14", "--speedup", "1.5",
                  "--out", f"{tmp_path}/o"],
        "prune-metanet": ["prune-metanet", "--dataset", "mnist14", "--out", f"{tmp_path}/pm", *models],
        "evaluate": ["evaluate", "--model", models[1], "--dataset", "mnist14"],
    }
    return lambda command: [*argv[command], "--device", "cpu"]


@pytest.mark.parametrize("command", sorted(_DATA_COMMANDS))
def test_every_command_that_reads_a_dataset_reads_it_from_data_root(
    command: str, data_argv, capsys, monkeypatch, tmp_path: Path,
) -> None:
    """The root each command's task is built with is its --data-root (the first task it
    builds ends the command here)."""
    import nas.tasks

    roots = []

    def built(self, name, root=None, seed=0) -> None:  # noqa: ANN001
        roots.append(root)
        raise _TaskBuilt(name)

    monkeypatch.setattr(nas.tasks.Task, "__init__", built)
    assert main([*data_argv(command), "--data-root", str(tmp_path / "mine")]) == 1
    assert roots == [str(tmp_path / "mine")], capsys.readouterr().err


def test_metanet_train_reads_its_probe_images_from_data_root(
    capsys, monkeypatch, sqlite_url: str, store_image_networks, tmp_path: Path,
) -> None:
    """--probe-init data read the zoo's dataset from $METANAS_DATA only: metanet train took no
    --data-root (exit 2, unrecognized arguments)."""
    import os
    import shutil

    source = Path(os.environ.get("METANAS_DATA", "")) / "MNIST" / "raw"
    if not source.is_dir():
        pytest.skip("MNIST raw files not found under METANAS_DATA")
    shutil.copytree(source, tmp_path / "data" / "MNIST" / "raw")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("METANAS_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("METANAS_CACHE", str(tmp_path / "cache"))
    store_image_networks(sqlite_url, "z", runs=4)
    assert main(["metanet", "train", "--zoo", sqlite_url, "--study", "z", "--out",
                 str(tmp_path / "m"), "--probes", "2", "--probe-init", "data", "--epochs", "1",
                 "--hidden", "8", "--layers", "1", "--device", "cpu",
                 "--data-root", str(tmp_path / "data")]) == 0, capsys.readouterr().err
    assert (tmp_path / "m").is_dir() and not any((tmp_path / "empty").iterdir())


_TRAINING_COMMANDS = {
    "supernet train": ["supernet", "train", "--dataset", "cora", "--out", "sn"],
    "hypernet train": ["hypernet", "train", "--dataset", "cora", "--out", "g.safetensors"],
    "metanet train": ["metanet", "train", "--zoo", "sqlite:///z.db", "--study", "z", "--out", "m"],
    "prune-metanet": ["prune-metanet", "--dataset", "cora", "--model-dir", "e", "--out", "pm"],
}


@pytest.mark.parametrize("command, flag, bound", [
    ("supernet train", "--lr", "> 0"), ("hypernet train", "--lr", "> 0"),
    ("metanet train", "--lr", "> 0"), ("prune-metanet", "--lr", "> 0"),
    ("supernet train", "--weight-decay", ">= 0"), ("hypernet train", "--weight-decay", ">= 0"),
    ("hypernet train", "--param-decay", ">= 0"), ("prune-metanet", "--lam", ">= 0"),
    ("prune-metanet", "--pruned-weight", ">= 0"), ("prune-metanet", "--distill", ">= 0"),
])
@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_numbers_a_training_cannot_take_are_refused_as_the_command_line_is_read(
    command: str, flag: str, bound: str, value: str, capsys, tmp_path, monkeypatch,
) -> None:
    """--lr inf trained supernet, hypernet and prune-metanet to NaN weights, written as finished
    models (exit 0); nan failed inside the optimizer naming no flag."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as refused:
        main([*_TRAINING_COMMANDS[command], f"{flag}={value}"])
    assert refused.value.code == 2
    assert f"argument {flag}: must be a finite number {bound}, got {value}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag, value", [("--lr", "0"), ("--lam", "-0.5")])
def test_zero_lr_and_negative_weights_are_refused_too(flag: str, value: str, capsys) -> None:
    with pytest.raises(SystemExit):
        main([*_TRAINING_COMMANDS["prune-metanet"], flag, value])
    assert f"argument {flag}: must be a finite number" in capsys.readouterr().err
