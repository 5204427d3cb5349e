"""The pruning benchmark selects its metanetwork on validation accuracy after fine-tuning."""
from __future__ import annotations

import sys

import pytest
from _scripts import load_script


def test_metanet_is_chosen_on_validation_after_finetuning_never_on_test() -> None:
    best_metanet = load_script("pruning").best_metanet
    # right after pruning and on test "a" is better; after fine-tuning on validation "b" is
    candidates = [
        ({"lam": 0.0, "preserve_norm": False, "val_after_pruning": 0.70,
          "val_after_finetuning": 0.78, "test": 0.90}, "a"),
        ({"lam": 0.0, "preserve_norm": True, "val_after_pruning": 0.60,
          "val_after_finetuning": 0.80, "test": 0.10}, "b"),
        ({"lam": 1.0, "preserve_norm": False, "val_after_pruning": 0.65,
          "val_after_finetuning": 0.79, "test": 0.50}, "c"),
    ]
    assert best_metanet(candidates)[1] == "b"
    tie = [({"val_after_finetuning": 0.8}, "first"), ({"val_after_finetuning": 0.8}, "second")]
    assert best_metanet(tie)[1] == "first"


def test_standard_scale_searches_lambda_and_preserve_norm_per_domain() -> None:
    scale = load_script("pruning").SCALES["standard"]
    assert scale["lams"] == scale["gnn_lams"] == (0.0, 1.0)
    assert scale["preserve_norms"] == (False, True)


@pytest.mark.parametrize("argv, message", [
    (["--name", "../pruning"], "--name '../pruning' must be letters, digits"),
    (["--part", "mlp"], "invalid choice: 'mlp'"),
    (["--gnn-steps", "0"], "--gnn-steps 0 must be >= 1"),
    (["--steps", "0"], "--steps 0 must be >= 1"),
    (["--zoo-epochs", "-1"], "--zoo-epochs -1 must be >= 1"),
    (["--gnn-zoo", "0"], "--gnn-zoo 0 must be >= 1"),
    (["--zoo-fraction", "1.5"], "--zoo-fraction 1.5 must be in (0, 1]"),
])
def test_bad_arguments_are_named_before_anything_runs(argv: list[str], message: str, monkeypatch,
                                                      capsys, tmp_path) -> None:
    script = load_script("pruning")
    monkeypatch.setattr(script, "run", lambda *a, **k: pytest.fail("ran with bad arguments"))
    monkeypatch.setattr(sys, "argv", ["pruning.py", "--out", str(tmp_path), *argv])
    with pytest.raises(SystemExit) as exit_info:
        script.main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error
    if "--part" in argv:
        assert "'all', 'gcn', 'cnn'" in error
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("part, gcn_runs", [("cnn", 0), ("all", 1)])
def test_part_cnn_runs_every_mnist_seed_and_never_the_gcn_part(part: str, gcn_runs: int, monkeypatch) -> None:
    script = load_script("pruning")
    calls: dict[str, list] = {"gcn": [], "rows": []}
    monkeypatch.setattr(script, "load_task", lambda name: type("Task", (), {
        "dataset": type("D", (), {"x": {"train": None}, "y": {"train": None}})()})())
    monkeypatch.setattr(script, "train_cnn_zoo", lambda task, scale: [])
    monkeypatch.setattr(script, "_train_cnns", lambda task, scale, seed: {"CNN": f"net{seed}"})
    monkeypatch.setattr(script, "ImageLoss", lambda *a: None)
    monkeypatch.setattr(script, "choose_metanet", lambda *a: "metanet")
    monkeypatch.setattr(script, "_gcn_part", lambda *a: calls["gcn"].append(a))
    monkeypatch.setattr(script, "_rows", lambda result, save, name, domain, task, model, *a: calls["rows"].append(model))
    script.run(dict(script.SCALES["quick"], seeds=3), save=lambda result: None, part=part)
    assert calls["rows"] == ["net0", "net1", "net2"]
    assert len(calls["gcn"]) == gcn_runs
