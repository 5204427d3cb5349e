"""The export format: a folder left by an interrupted export is never loaded as a model."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from nas.export import SPEC_FILE, WEIGHTS_FILE, build_module, export_model, load_exported, read_export
from storage import ChecksumError

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
