"""A GHN training killed part-way resumes from its training-state file and ends exactly where an
uninterrupted run ends; a state file of another run, or a damaged one, is refused by name."""
from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from metanets.ghn_train import HypernetTrainConfig, train_hypernet


pytestmark = pytest.mark.usefixtures("_metanet_one_thread")


def _node_task() -> types.SimpleNamespace:
    """60 nodes, 3 classes, 4 features, a ring; 30/15/15 split."""
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(0)
    n = 60
    y = torch.arange(n) % 3
    x = torch.randn(n, 4, generator=g)
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    masks = {name: torch.zeros(n, dtype=torch.bool) for name in ("train_mask", "val_mask", "test_mask")}
    masks["train_mask"][:30], masks["val_mask"][30:45], masks["test_mask"][45:] = True, True, True
    return types.SimpleNamespace(name="tiny", level="node", num_features=4, num_classes=3,
                                 data=Data(x=x, edge_index=torch.cat([ring, ring.flip(0)], 1), y=y, **masks))


def _image_task() -> types.SimpleNamespace:
    """Random 6x6 images of 2 classes; mini-batches are drawn by the run's own generator."""
    from nas.tasks import ImageDataset

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (64,), generator=g)
    x = torch.randn(64, 1, 6, 6, generator=g) + y.view(-1, 1, 1, 1).float()
    data = ImageDataset(x={"train": x, "val": x[:16], "test": x[16:32]},
                        y={"train": y, "val": y[:16], "test": y[16:32]}, num_classes=2)
    return types.SimpleNamespace(name="tiny-images", level="image", dataset=data, num_features=1,
                                 num_classes=2)


def _setup(level: str):
    from search_spaces import CNNSpace, GNNSpace

    if level == "node":
        return GNNSpace(max_depth=2, convs=("gcn", "sage", "linear")), _node_task()
    return CNNSpace(max_depth=2, widths=(4, 8)), _image_task()


CONFIG = HypernetTrainConfig(steps=12, archs_per_step=2, pool_size=5, lr=5e-3, batch_size=16,
                             hidden=16, rank=8, rounds=2, log_every=2, select_every=4,
                             select_archs=2)


class _Killed(Exception):
    pass


def _kill_at(step: int):
    def log(at: int, _entry: dict) -> None:
        if at == step:
            raise _Killed(at)
    return log


@pytest.mark.parametrize("level", ["node", "image"])
def test_a_killed_run_resumes_to_exactly_the_uninterrupted_result(level: str, tmp_path: Path) -> None:
    space, task = _setup(level)
    whole = train_hypernet(space, task, CONFIG)
    state = tmp_path / "ghn.state"
    with pytest.raises(_Killed):  # killed at step 10, before its state was written
        train_hypernet(space, task, CONFIG, log=_kill_at(10), state=state, state_every=4)
    resumed = train_hypernet(space, task, CONFIG, state=state, state_every=4)
    assert resumed.resumed_from == 8
    assert resumed.best_step == whole.best_step
    strip = lambda history: [{k: v for k, v in e.items() if k != "seconds"} for e in history]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    ours, theirs = resumed.ghn.state_dict(), whole.ghn.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), [k for k in ours if not torch.equal(ours[k], theirs[k])]


def test_a_finished_state_returns_the_same_ghn_without_training(tmp_path: Path) -> None:
    space, task = _setup("node")
    state = tmp_path / "ghn.state"
    first = train_hypernet(space, task, CONFIG, state=state, state_every=4)
    again = train_hypernet(space, task, CONFIG, state=state, state_every=4,
                           log=lambda step, _: pytest.fail(f"trained step {step} again"))
    assert again.resumed_from == CONFIG.steps and again.best_step == first.best_step
    assert all(torch.equal(v, again.ghn.state_dict()[k]) for k, v in first.ghn.state_dict().items())


def test_a_state_of_other_settings_is_refused_naming_them(tmp_path: Path) -> None:
    import dataclasses

    space, task = _setup("node")
    state = tmp_path / "ghn.state"
    train_hypernet(space, task, dataclasses.replace(CONFIG, steps=4), state=state, state_every=4)
    other = dataclasses.replace(CONFIG, lr=1e-3)
    with pytest.raises(ValueError, match=r"holds the state of a GHN training with steps 4, not 12; "
                                         r"lr 0.005, not 0.001: resume it with the settings"):
        train_hypernet(space, task, other, state=state, state_every=4)


def test_a_damaged_or_foreign_state_file_is_refused_never_unpickled(tmp_path: Path) -> None:
    space, task = _setup("node")
    state = tmp_path / "ghn.state"
    torch.save({"step": 3}, state)  # a pickle
    with pytest.raises(ValueError, match="is not a GHN training-state file .*never unpickled"):
        train_hypernet(space, task, CONFIG, state=state, state_every=4)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(state), metadata={"state": '{"format": "other/1"}'})
    with pytest.raises(ValueError, match="is not a metanas-ghn-training/1 file"):
        train_hypernet(space, task, CONFIG, state=state, state_every=4)


def test_a_state_written_between_log_steps_resumes_to_the_same_result(tmp_path: Path) -> None:
    """A state written at a step no log entry falls on (every 3 steps, logs every 2) carries the
    loss and accuracy summed since the last log: the resumed run logs what the whole one did.
    Before, state_every had to be a multiple of log_every, and the CLI rounded --state-every
    up to one (--state-every 20 wrote the state every 100 steps)."""
    space, task = _setup("node")
    whole = train_hypernet(space, task, CONFIG)
    state = tmp_path / "ghn.state"
    with pytest.raises(_Killed):  # killed at step 10: its last state is step 9's
        train_hypernet(space, task, CONFIG, log=_kill_at(10), state=state, state_every=3)
    resumed = train_hypernet(space, task, CONFIG, state=state, state_every=3)
    assert resumed.resumed_from == 9
    strip = lambda history: [{k: v for k, v in e.items() if k != "seconds"} for e in history]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    ours, theirs = resumed.ghn.state_dict(), whole.ghn.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_hypernet_train_cli_writes_the_state_every_state_every_steps(
    cora_available: None, tmp_path: Path, monkeypatch,
) -> None:
    """--state-every 2 with log lines every 50 steps: the state is written at steps 2, 4 and 6
    (before: at the least common multiple of the two, step 50, here only at the last step), so
    a run stopped at step 5 had kept nothing."""
    import metanets.ghn_train as ghn_train
    from nas.cli import main

    written, save = [], ghn_train.save_training_state

    def recording(*args, **kwargs) -> None:
        written.append(args[-1].step)
        save(*args, **kwargs)

    monkeypatch.setattr(ghn_train, "save_training_state", recording)
    assert main(["hypernet", "train", "--dataset", "cora", "--out", str(tmp_path / "ghn.safetensors"),
                 "--steps", "6", "--pool-size", "2", "--archs-per-step", "1", "--max-depth", "1",
                 "--max-width", "16", "--state-every", "2"]) == 0
    assert written == [2, 4, 6]


def test_hypernet_train_cli_resumes_a_killed_run_and_refuses_other_flags(
    cora_available: None, tmp_path: Path, monkeypatch, capsys,
) -> None:
    import metanets.ghn_train as ghn_train
    from nas.cli import main

    out = tmp_path / "ghn.safetensors"
    argv = ["hypernet", "train", "--dataset", "cora", "--out", str(out), "--steps", "4",
            "--pool-size", "2", "--archs-per-step", "1", "--max-depth", "1", "--max-width", "16",
            "--select-every", "2", "--state-every", "2"]
    scores = []
    score = ghn_train._selection_score

    def killed_at_the_second_selection(*args, **kwargs) -> float:
        if scores:
            raise KeyboardInterrupt
        scores.append(score(*args, **kwargs))
        return scores[-1]

    monkeypatch.setattr(ghn_train, "_selection_score", killed_at_the_second_selection)
    assert main(argv) == 130
    state = tmp_path / "ghn.safetensors.state"
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"metanas: interrupted; the training state {state} is kept: the same command resumes from it")
    assert state.is_file() and not out.exists()
    monkeypatch.setattr(ghn_train, "_selection_score", score)
    capsys.readouterr()
    assert main([*argv, "--lr", "1e-3"]) == 2
    refused = capsys.readouterr()
    assert "holds the state of a GHN training with lr 0.002, not 0.001" in refused.err
    assert "resuming" not in refused.out  # it said "resuming from the training state", then refused it
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"resuming from the training state {state} at step 2" in printed and "resumed at step 2" in printed
    assert not state.exists()
    from metanets.ghn import GraphHyperNetwork

    assert len(GraphHyperNetwork.load(out).metadata["train_hashes"]) == 2


def test_an_interrupt_before_the_first_state_says_nothing_is_kept(
    cora_available: None, tmp_path: Path, monkeypatch, capsys,
) -> None:
    """Ctrl-C before the first training state was written: the closing line says the command
    starts again (before: 'the training state ... is kept: the same command resumes from it',
    with no such file)."""
    import metanets.ghn_train as ghn_train
    from nas.cli import main

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ghn_train, "train_hypernet", interrupted)
    out = tmp_path / "ghn.safetensors"
    assert main(["hypernet", "train", "--dataset", "cora", "--out", str(out), "--steps", "60",
                 "--state-every", "20"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "metanas: interrupted; no training state was written yet (the first at step 20): the "
        "same command starts again")
    assert not Path(f"{out}.state").exists()
