"""experiments/hypernet_eval.py: which CNNs are held out, and references trained apart from the
GHN (``--baselines-only``) and reused (``--baselines``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from _scripts import load_script

from metanets.ghn_train import arch_depth, arch_widths, sample_architectures, structure_key
from search_spaces import get_space
from search_spaces.cnn import CNNArchitecture


def test_cnn_held_out_networks_lie_outside_the_training_pool_and_range() -> None:
    script = load_script("hypernet_eval")
    _, _, config = script.SETUPS["cnn-mnist"]
    space = get_space("cnn")
    pool = sample_architectures(space, config.pool_size, config.seed,
                                max_depth=config.max_depth, max_width=config.max_width)
    seen = {structure_key(space, a) for a in pool}
    held = script.held_out("cnn-mnist")
    kinds = {kind: [a for k, a in held if k == kind] for kind in ("in-range", "deeper", "wider")}
    assert [len(v) for v in kinds.values()] == [8, 8, 8]
    assert not seen & {structure_key(space, a) for _, a in held}
    assert all(arch_depth(a) <= 3 and max(arch_widths(a)) <= 16 for a in kinds["in-range"])
    assert all(arch_depth(a) == 4 and max(arch_widths(a)) <= 16 for a in kinds["deeper"])
    assert all(arch_depth(a) <= 3 and max(arch_widths(a)) == 32 for a in kinds["wider"])
    # the training range is the whole default space: the pool has 3-block and 16-channel CNNs
    assert max(map(arch_depth, pool)) == 3 and max(max(arch_widths(a)) for a in pool) == 16


def _fake_references(calls: list[str]):
    def run_baseline(name: str, archs: list) -> dict:
        calls.extend(arch.short() for _, arch in archs)
        return {arch.arch_hash: {"kind": kind, "arch": arch.to_dict(), "short": arch.short(),
                                 "random_test_acc": 0.1, "random_val_acc": 0.1,
                                 "trained": {"test_acc": 0.9, "val_acc": 0.9, "history": [0.9]}}
                for kind, arch in archs}
    return run_baseline


ARCHS = [("in-range", CNNArchitecture(widths=(4,))),
         ("deeper", CNNArchitecture(widths=(4, 4, 4, 4)))]


def test_references_resume_and_are_reused_without_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = load_script("hypernet_eval")
    calls: list[str] = []
    monkeypatch.setattr(script, "run_baseline", _fake_references(calls))
    path = tmp_path / "refs.json"
    header = {"date": "2026-12-06T23:57:00+00:00", "load_at_start": [2.0, 2.0, 2.0]}
    script.write_baselines("cnn-mnist", ARCHS[:1], path, {**header, "command": "first"})
    script.write_baselines("cnn-mnist", ARCHS, path, {**header, "command": "second"})  # resumed
    assert calls == ["c4 k3 relu lr3e-03 wd1e-04 f0.10",
                     "c4-c4-c4-c4 k3 relu lr3e-03 wd1e-04 f0.10"]
    rows, made = script.read_baselines("cnn-mnist", ARCHS, path)
    assert set(rows) == {a.arch_hash for _, a in ARCHS} and made["command"] == "first"

    monkeypatch.setattr(script, "held_out", lambda name: ARCHS)
    monkeypatch.setattr(script, "RESULTS", tmp_path / "results")
    scored: list[str] = []
    monkeypatch.setattr(script, "run_ghn", lambda name, rows, hypernet: scored.extend(
        r["short"] for r in rows.values()))
    monkeypatch.setattr("sys.argv", ["hypernet_eval", "--setup", "cnn-mnist",
                                     "--baselines", str(path)])
    script.main()
    assert len(calls) == 2 and len(scored) == 2  # both GHN-scored, no reference retrained
    results = tmp_path / "results"
    section = json.loads((results / "hypernet_eval.json").read_text())["setups"]["cnn-mnist"]
    assert section["baselines"]["file"] == str(path) and section["baselines"]["command"] == "first"
    assert f"from `{path}`: command `first`" in (results / "hypernet_eval.md").read_text()


def test_references_of_another_plan_or_other_networks_are_refused(tmp_path: Path) -> None:
    script = load_script("hypernet_eval")
    path = tmp_path / "refs.json"
    arch = ARCHS[0][1]
    record = {"setup": "cnn-mnist", "epochs": 10, "train_overrides": {"train_fraction": 0.2},
              "header": {}, "rows": {arch.arch_hash: {"short": arch.short()}}}
    path.write_text(json.dumps({**record, "epochs": 3}))
    with pytest.raises(ValueError, match="was written for .*'epochs': 3"):
        script.read_baselines("cnn-mnist", ARCHS, path)
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"not held out for 'cnn-mnist': \['c4 k3 relu"):
        script.read_baselines("cnn-mnist", ARCHS[1:], path)


@pytest.mark.parametrize("argv, message", [
    (["--baselines-only"], "--baselines-only needs --baselines FILE"),
    (["--baselines", "{tmp}/missing.json"], "missing.json not found"),
    (["--dev", "pretrained:cnn-mnist", "--baselines", "{tmp}/b.json"], "--dev trains nothing"),
    (["--dev", "a", "--compare", "{tmp}/e.json"], "--dev and --compare are separate runs"),
    (["--compare", "{tmp}/missing.json"], "--compare {tmp}/missing.json not found"),
])
def test_bad_reference_options_exit_2_naming_them(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
) -> None:
    script = load_script("hypernet_eval")
    argv = [a.format(tmp=tmp_path) for a in argv]
    monkeypatch.setattr("sys.argv", ["hypernet_eval", "--setup", "cnn-mnist", *argv])
    with pytest.raises(SystemExit) as exit_:
        script.main()
    assert exit_.value.code == 2 and message.format(tmp=tmp_path) in capsys.readouterr().err


def test_compare_scores_an_earlier_files_networks_and_leaves_pool_networks_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--compare``: the shipped GHN on the rows of an earlier evaluation file, no training."""
    script = load_script("hypernet_eval")
    _, _, config = script.SETUPS["cnn-mnist"]
    pool = sample_architectures(get_space("cnn"), config.pool_size, config.seed,
                                max_depth=config.max_depth, max_width=config.max_width)
    unseen = CNNArchitecture(widths=(4, 4, 4, 4), norm="batch")
    rows = {a.arch_hash: {"kind": kind, "arch": a.to_dict(), "short": a.short(),
                          "predicted_test_acc": 0.2, "trained": {"test_acc": acc}}
            for kind, a, acc in (("in-range", pool[0], 0.9), ("deeper", unseen, 0.8))}
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"setups": {"cnn-mnist": {"rows": rows}}}))
    monkeypatch.setattr(script, "RESULTS", tmp_path / "results")
    monkeypatch.setattr("sys.argv", ["hypernet_eval", "--setup", "cnn-mnist",
                                     "--compare", str(earlier)])
    script.main()
    record = json.loads((tmp_path / "results" / "hypernet_eval_compare_earlier.json").read_text())
    marked = {r["short"]: r["in_training_pool"] for r in record["rows"]}
    assert marked == {pool[0].short(): True, unseen.short(): False}
    predicted = next(r["predicted_test_acc"] for r in record["rows"] if not r["in_training_pool"])
    summary = record["summary"]
    assert set(summary) == {"all", "deeper"}  # the pool network is in no summary row
    assert summary["all"]["n"] == 1 and summary["all"]["in_training_pool_left_out"] == 1
    assert summary["deeper"]["earlier_over_trained"] == 0.25
    assert summary["deeper"]["predicted_over_trained"] == round(predicted / 0.8, 4)


def test_compare_refuses_a_file_without_the_setups_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
) -> None:
    script = load_script("hypernet_eval")
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"setups": {"gnn-cora": {"rows": {"x": {}}}}}))
    monkeypatch.setattr("sys.argv", ["hypernet_eval", "--setup", "cnn-mnist",
                                     "--compare", str(earlier)])
    with pytest.raises(SystemExit) as exit_:
        script.main()
    assert exit_.value.code == 2
    assert "holds no 'cnn-mnist' evaluation rows" in capsys.readouterr().err


def test_development_set_is_disjoint_from_the_evaluation_set_and_the_pool() -> None:
    script = load_script("hypernet_eval")
    space = get_space("cnn")
    evaluation = {structure_key(space, a) for _, a in script.held_out("cnn-mnist")}
    dev = script.held_out("cnn-mnist", script.DEV_SEED)
    assert [k for k, _ in dev] == [k for k, _ in script.held_out("cnn-mnist")]  # same kinds
    assert not evaluation & {structure_key(space, a) for _, a in dev}
    assert all(arch_depth(a) == 4 for k, a in dev if k == "deeper")


def test_dev_scores_every_ghn_on_the_same_networks_and_summarises_per_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = load_script("hypernet_eval")
    monkeypatch.setattr(script, "held_out", lambda name, seed=0: ARCHS)
    monkeypatch.setattr(script, "RESULTS", tmp_path)
    monkeypatch.setattr("sys.argv", ["hypernet_eval", "--setup", "cnn-mnist", "--dev",
                                     "pretrained:cnn-mnist"])
    script.main()
    record = json.loads((tmp_path / "hypernet_eval_dev_cnn-mnist.json").read_text())
    accs = [r["val_acc"]["pretrained:cnn-mnist"] for r in record["rows"]]
    assert [r["kind"] for r in record["rows"]] == ["in-range", "deeper"]
    assert record["summary"]["pretrained:cnn-mnist"] == {
        "all": round(sum(accs) / 2, 4), "in-range": round(accs[0], 4), "deeper": round(accs[1], 4)}
    assert "| `pretrained:cnn-mnist` |" in (tmp_path / "hypernet_eval_dev_cnn-mnist.md").read_text()


def test_dev_name_writes_another_table_and_needs_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("hypernet_eval")
    monkeypatch.setattr(script, "held_out", lambda name, seed=0: ARCHS)
    monkeypatch.setattr(script, "RESULTS", tmp_path)
    monkeypatch.setattr("sys.argv", ["hypernet_eval", "--setup", "cnn-mnist", "--dev",
                                     "pretrained:cnn-mnist", "--dev-name", "round2"])
    script.main()
    assert (tmp_path / "round2.json").is_file() and (tmp_path / "round2.md").is_file()
    assert not (tmp_path / "hypernet_eval_dev_cnn-mnist.json").exists()
    for argv, message in ([["--dev-name", "round2"], "--dev-name names the table of a --dev run"],
                          [["--dev", "pretrained:cnn-mnist", "--dev-name", "../x"], "--dev-name"]):
        monkeypatch.setattr("sys.argv", ["hypernet_eval", "--setup", "cnn-mnist", *argv])
        with pytest.raises(SystemExit) as exit_:
            script.main()
        assert exit_.value.code == 2 and message in capsys.readouterr().err
