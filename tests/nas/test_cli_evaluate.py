"""``metanas evaluate``: an exported model's loss and accuracy on the split it was searched on,
its MACs and parameters; bad input is refused by name and the export is never modified."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from nas.cli import main
from nas.export import WEIGHTS_SHA256, export_model, read_export
from nas.train import SPLITS


def _hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (and the set of files)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def cora_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A Cora model searched (one trial, 3 epochs), exported, and pruned by 1.5x with one
    fine-tuning epoch; the JSON prune printed."""
    root = os.environ.get("METANAS_DATA")  # tests/conftest.py sets it to the shared datasets
    if not root or not (Path(root) / "Planetoid" / "Cora" / "raw").is_dir():
        pytest.skip("Cora raw files not found under METANAS_DATA")
    tmp = tmp_path_factory.mktemp("evaluate")
    args = ["--storage", f"sqlite:///{tmp / 'metanas.db'}", "--study", "s"]
    assert _run(["search", "--dataset", "cora", "--trials", "1", "--epochs", "3", "--convs", "gcn",
                 "--strategy", "random", "--quiet", "--device", "cpu", *args])[0] == 0
    assert _run(["export", *args, "--out", str(tmp / "exported")])[0] == 0
    code, out, err = _run(["prune", "--model", str(tmp / "exported"), "--dataset", "Cora",
                           "--speedup", "1.5", "--finetune-epochs", "1", "--device", "cpu",
                           "--out", str(tmp / "pruned"), "--json"])
    assert code == 0, err
    return {"exported": tmp / "exported", "pruned": tmp / "pruned", "printed": json.loads(out)}


def test_evaluate_reproduces_the_metrics_the_export_recorded(cora_models, capsys) -> None:
    """Node tasks train and evaluate full-batch: every split's loss and accuracy to the digit."""
    folder = cora_models["exported"]
    before = _hashes(folder)
    assert main(["evaluate", "--model", str(folder), "--device", "cpu", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    recorded = read_export(folder)
    for split in SPLITS:
        assert measured[f"{split}_acc"] == recorded["metrics"][f"{split}_acc"], split
        assert measured[f"{split}_loss"] == recorded["metrics"][f"{split}_loss"], split
    assert measured["params"] == recorded["num_params"]
    assert measured["dataset"] == measured["trained_on"] == "cora"
    assert measured["other_dataset"] is False and measured["metric"] == "accuracy"
    assert _hashes(folder) == before


def test_evaluate_prints_a_table_of_the_three_splits(cora_models, capsys) -> None:
    folder = cora_models["exported"]
    metrics = read_export(folder)["metrics"]
    assert main(["evaluate", "--model", str(folder), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{folder} on 'cora' (the split searches use)"
    assert lines[1].split() == ["split", "loss", "accuracy"]
    for line, split in zip(lines[2:5], SPLITS):
        assert line.split() == [split, f"{metrics[f'{split}_loss']:.4f}",
                                f"{metrics[f'{split}_acc']:.4f}"]
    assert lines[5].startswith("MACs ") and lines[5].endswith(f"params {read_export(folder)['num_params']:,}")


def test_evaluate_of_a_pruned_export_gives_what_prune_printed_after(cora_models, capsys) -> None:
    folder, printed = cora_models["pruned"], cora_models["printed"]
    before = _hashes(folder)
    assert main(["evaluate", "--model", str(folder), "--device", "cpu", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)
    assert measured["test_acc"] == printed["acc_finetuned"]
    assert measured["val_acc"] == printed["val_acc_finetuned"]
    assert measured["macs"] == printed["macs_after"]
    assert measured["params"] == printed["params_after"]
    assert measured["dataset"] == "cora" and measured["other_dataset"] is False
    assert _hashes(folder) == before


def test_a_dataset_whose_dimensions_differ_is_refused_naming_both(cora_models, capsys) -> None:
    folder = cora_models["exported"]
    before = _hashes(folder)
    assert main(["evaluate", "--model", str(folder), "--dataset", "citeseer", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert ("dataset 'citeseer' (node level, 3703 input features, 6 classes) does not fit the "
            "model trained on 'cora' (node level, 1433 input features, 7 classes)") in err
    assert "Traceback" not in err and _hashes(folder) == before


def _export_cnn(folder: Path, **metadata: Any) -> Path:
    from search_spaces.cnn import CNN, CNNArchitecture

    torch.manual_seed(0)
    arch = CNNArchitecture(widths=(4,), norm="batch")
    return export_model(folder, space="cnn", spec=arch.to_dict(), in_channels=1, out_channels=10,
                        level="image", state_dict=CNN(arch, 1, 10).state_dict(),
                        metadata=metadata)


def test_another_dataset_that_fits_is_evaluated_saying_so(mnist_available, tmp_path: Path,
                                                          capsys) -> None:
    folder = _export_cnn(tmp_path / "m", dataset="mnist14")
    before = _hashes(folder)
    assert main(["evaluate", "--model", str(folder), "--dataset", "MNIST", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("note: evaluating on 'mnist', a dataset other than the one the model was "
                      "trained on ('mnist14')")
    assert main(["evaluate", "--model", str(folder), "--dataset", "mnist", "--device", "cpu",
                 "--json"]) == 0
    said = capsys.readouterr()
    measured = json.loads(said.out)  # one JSON object, the note on stderr
    assert "a dataset other than the one the model was trained on" in said.err
    assert measured["dataset"] == "mnist" and measured["trained_on"] == "mnist14"
    assert measured["other_dataset"] is True and 0 <= measured["test_acc"] <= 1
    assert _hashes(folder) == before


def _flip_last_byte(folder: Path) -> None:
    path = folder / "model.safetensors"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))


def _truncate_unchecked(folder: Path) -> None:
    """Damaged weights of an export written before exports recorded their SHA-256."""
    spec = read_export(folder)
    del spec[WEIGHTS_SHA256]
    (folder / "architecture.json").write_text(json.dumps(spec))
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:20])


def _other_models_weights_unchecked(folder: Path) -> None:
    """An export written before exports recorded their SHA-256 whose weights file holds another
    model's weights (a CNN of another width): safetensors reads it, the model does not take it."""
    from search_spaces.cnn import CNN, CNNArchitecture
    from storage.store import encode_state_dict

    spec = read_export(folder)
    del spec[WEIGHTS_SHA256]
    (folder / "architecture.json").write_text(json.dumps(spec))
    other = CNN(CNNArchitecture(widths=(8,), norm="batch"), 1, 10).state_dict()
    (folder / "model.safetensors").write_bytes(encode_state_dict(other))


@pytest.mark.parametrize("case, extra, code, message", [
    ("missing", [], 1, "--model {model}: no such folder"),
    ("file", [], 1, "--model {model}: a file, not a folder"),
    ("empty folder", [], 1, "{model}/architecture.json not found: not an exported metanas model folder"),
    ("spec not json", [], 2, "{model}/architecture.json is not JSON"),
    ("spec without level", [], 2, "{model}/architecture.json lacks 'level' (an export records "
                                  "'space', 'architecture', 'in_channels', 'out_channels' and 'level')"),
    ("spec of text channels", [], 2, "{model}/architecture.json records in_channels '1', not a "
                                     "positive integer: export the model again"),
    ("damaged weights", [], 1, "{model}/model.safetensors does not match the SHA-256 in architecture.json"),
    ("damaged unchecked weights", [], 1, "{model}/model.safetensors is damaged, not a safetensors file"),
    ("unchecked weights of another model", [], 1, "{model}/model.safetensors does not hold the "
                                                  "weights of the model architecture.json describes"),
    ("recorded", ["--dataset", "nope"], 2, "could not resolve dataset 'nope' among choices ['actor',"),
    ("no dataset", [], 2, "{model}/architecture.json records no dataset the model was trained on: "
                          "pass --dataset NAME"),
    ("own data", [], 2, "{model}/architecture.json records dataset 'my graphs', which metanas does "
                        "not load by name"),
])
def test_bad_input_is_refused_naming_it(case: str, extra: list[str], code: int, message: str,
                                        tmp_path: Path, capsys) -> None:
    model = tmp_path / "model"
    if case == "file":
        model.write_text("x")
    elif case == "empty folder":
        model.mkdir()
    elif case != "missing":
        _export_cnn(model, **({} if case == "no dataset" else
                              {"dataset": "my graphs" if case == "own data" else "mnist14"}))
        if case == "spec not json":
            (model / "architecture.json").write_text("{bad")
        elif case == "spec without level":
            spec = read_export(model)
            del spec["level"]
            (model / "architecture.json").write_text(json.dumps(spec))
        elif case == "spec of text channels":
            spec = read_export(model)
            (model / "architecture.json").write_text(json.dumps({**spec, "in_channels": "1"}))
        elif case == "damaged weights":
            _flip_last_byte(model)
        elif case == "damaged unchecked weights":
            _truncate_unchecked(model)
        elif case == "unchecked weights of another model":
            _other_models_weights_unchecked(model)
    before = _hashes(tmp_path)
    assert main(["evaluate", "--model", str(model), "--device", "cpu", *extra]) == code
    err = capsys.readouterr().err
    assert err.startswith("metanas evaluate: error: ") and message.format(model=model) in err, err
    assert "Traceback" not in err and _hashes(tmp_path) == before


def test_dimensions_in_refusals_are_counted_in_words_that_agree_with_the_number():
    from nas.export import _dimensions

    assert _dimensions("image", 1, 10) == "image level, 1 input channel, 10 classes"
    assert _dimensions("node", 1433, 1) == "node level, 1433 input features, 1 class"
