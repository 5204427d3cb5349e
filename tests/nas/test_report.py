"""``metanas report`` and ``metanas trials`` name what a study's trials measured: validation
accuracy, or the proxy score of a training-free evaluator."""
from __future__ import annotations

from pathlib import Path

import pytest

from nas.cli import main


def _labels_of_saved_plots(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """file name -> y-axis label of every figure ``write_report`` saves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: dict[str, str] = {}
    save = plt.savefig

    def recording(path, *args, **kwargs):
        labels[Path(path).name] = plt.gcf().axes[0].get_ylabel()
        return save(path, *args, **kwargs)

    monkeypatch.setattr(plt, "savefig", recording)
    return labels


def _search(sqlite_url: str, evaluator: str, study: str) -> None:
    assert main(["search", "--dataset", "cora", "--evaluator", evaluator, "--strategy", "random",
                 "--convs", "gcn", "--trials", "2", "--epochs", "2", "--storage", sqlite_url,
                 "--study", study, "--device", "cpu", "--quiet"]) == 0


def test_report_of_a_zero_cost_study_plots_the_proxy_score_not_validation_accuracy(
    cora_available, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    _search(sqlite_url, "zero-cost:synflow", "zc")
    labels = _labels_of_saved_plots(monkeypatch)
    assert main(["report", "--storage", sqlite_url, "--study", "zc", "--out", str(tmp_path / "r")]) == 0
    assert labels["history.png"] == "score (zero-cost:synflow)"


def test_report_of_a_trained_study_plots_validation_accuracy(
    cora_available, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _search(sqlite_url, "train", "tr")
    labels = _labels_of_saved_plots(monkeypatch)
    assert main(["report", "--storage", sqlite_url, "--study", "tr", "--out", str(tmp_path / "r")]) == 0
    assert labels["history.png"] == "validation accuracy"


def test_trials_of_a_zero_cost_study_show_each_trials_score(
    cora_available, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import optuna

    _search(sqlite_url, "zero-cost:synflow", "zc")
    capsys.readouterr()
    assert main(["trials", "--storage", sqlite_url, "--study", "zc"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["trial", "state", "score"] and "val_acc" not in header
    study = optuna.load_study(study_name="zc", storage=sqlite_url)
    for row, trial in zip(rows, study.trials):
        assert float(row.split()[2]) == pytest.approx(trial.user_attrs["score"], rel=1e-5)
