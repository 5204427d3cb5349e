"""A training command run again on the --out of a finished run (nas.rerun): the same flags train
nothing and say the model is already trained; other flags are refused by name (exit 2) unless
--overwrite, which trains and replaces the model; a run killed while replacing a model leaves the
earlier one whole."""
from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from nas.cli import main

pytestmark = pytest.mark.usefixtures("_one_thread")


@pytest.fixture
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fails(what: str):
    def called(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError(f"{what} ran again")
    return called


def _written(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of ``path`` (a file or a folder) with its mtime and bytes."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


# -- hypernet train ---------------------------------------------------------------------------
def _tiny_node_task(*args, **kwargs) -> types.SimpleNamespace:  # noqa: ANN002, ANN003
    """60 nodes on a ring, 4 features, 3 classes (what ``load_task`` returns for --dataset)."""
    from torch_geometric.data import Data

    g = torch.Generator().manual_seed(0)
    n = 60
    ring = torch.stack([torch.arange(n), (torch.arange(n) + 1) % n])
    masks = {name: torch.zeros(n, dtype=torch.bool) for name in ("train_mask", "val_mask", "test_mask")}
    masks["train_mask"][:30], masks["val_mask"][30:45], masks["test_mask"][45:] = True, True, True
    data = Data(x=torch.randn(n, 4, generator=g), edge_index=torch.cat([ring, ring.flip(0)], 1),
                y=torch.arange(n) % 3, **masks)
    return types.SimpleNamespace(name="tiny", level="node", num_features=4, num_classes=3, data=data)


@pytest.fixture
def hypernet_argv(tmp_path: Path, monkeypatch) -> list[str]:
    import nas.tasks

    monkeypatch.setattr(nas.tasks, "load_task", _tiny_node_task)
    return ["hypernet", "train", "--dataset", "tiny", "--out", str(tmp_path / "ghn.safetensors"),
            "--steps", "2", "--pool-size", "2", "--archs-per-step", "1", "--max-depth", "1",
            "--max-width", "16", "--batch-size", "8", "--device", "cpu"]


def test_hypernet_train_again_trains_nothing_refuses_other_flags_and_overwrites(
    hypernet_argv: list[str], tmp_path: Path, monkeypatch, capsys,
) -> None:
    import metanets.ghn_train
    from metanets.ghn import GraphHyperNetwork

    out = tmp_path / "ghn.safetensors"
    assert main(hypernet_argv) == 0
    capsys.readouterr()
    before = _written(out)
    with monkeypatch.context() as patch:
        patch.setattr(metanets.ghn_train, "train_hypernet", _fails("GHN training"))
        # where and how it runs may change: the same GHN is trained
        assert main([*hypernet_argv, "--state-every", "7", "--data-root", str(tmp_path)]) == 0
        assert capsys.readouterr().out == (
            f"the GHN in {out} is already trained (2 training architectures, 2 steps, last train "
            f"acc {GraphHyperNetwork.load(out).metadata['history'][-1]['train_acc']:.3f}); "
            f"nothing to do\n")
        assert main([*hypernet_argv, "--lr", "0.01", "--steps", "3"]) == 2
        assert capsys.readouterr().err == (
            f"metanas hypernet: error: --out {out} holds a GHN trained with --steps 2, not 3; "
            f"--lr 0.002, not 0.01; pass --overwrite to replace it with a GHN trained with these "
            f"flags, or choose another --out\n")
    assert _written(out) == before
    assert main([*hypernet_argv, "--lr", "0.01", "--overwrite"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert _written(out) != before
    assert GraphHyperNetwork.load(out).metadata["train_config"]["lr"] == 0.01
    assert main([*hypernet_argv, "--lr", "0.01"]) == 0
    assert "is already trained" in capsys.readouterr().out


def test_a_finished_out_keeps_the_training_state_of_another_run(
    hypernet_argv: list[str], tmp_path: Path, capsys,
) -> None:
    """OUT.state beside a finished OUT may be the state of an --overwrite run still going (it
    writes the file every --state-every steps): a run that finds OUT trained leaves it."""
    assert main(hypernet_argv) == 0
    state = tmp_path / "ghn.safetensors.state"
    state.write_bytes(b"the state of a run with other flags")
    capsys.readouterr()
    assert main(hypernet_argv) == 0
    assert "is already trained" in capsys.readouterr().out
    assert state.read_bytes() == b"the state of a run with other flags"


def test_a_flag_a_ghn_does_not_record_counts_as_its_default(
    hypernet_argv: list[str], tmp_path: Path, monkeypatch, capsys,
) -> None:
    """A GHN trained before a flag existed was trained as its default does; one that records no
    flags at all is refused (it may be anything)."""
    import metanets.ghn_train
    from metanets.ghn import GraphHyperNetwork

    out = tmp_path / "ghn.safetensors"
    assert main(hypernet_argv) == 0
    ghn = GraphHyperNetwork.load(out)
    flags = {k: v for k, v in ghn.metadata["train_config"].items() if k not in ("spatial", "tile_width")}
    ghn.save(out, {**ghn.metadata, "train_config": flags})
    monkeypatch.setattr(metanets.ghn_train, "train_hypernet", _fails("GHN training"))
    capsys.readouterr()
    assert main(hypernet_argv) == 0
    assert "is already trained" in capsys.readouterr().out
    assert main([*hypernet_argv, "--spatial"]) == 2
    assert "trained with --spatial False, not True" in capsys.readouterr().err
    ghn.save(out, {"train_hashes": []})
    assert main(hypernet_argv) == 2
    assert (f"--out {out} holds a GHN that does not record the flags it was trained with; pass "
            f"--overwrite") in capsys.readouterr().err


def test_hypernet_train_overwrite_never_replaces_a_file_that_is_not_a_ghn(
    hypernet_argv: list[str], tmp_path: Path, capsys,
) -> None:
    notes = tmp_path / "ghn.safetensors"
    notes.write_text("a week of results\n")
    assert main([*hypernet_argv, "--overwrite"]) == 2
    assert "exists and is not a GHN checkpoint; it is never overwritten" in capsys.readouterr().err
    assert notes.read_text() == "a week of results\n"


# -- metanet train ----------------------------------------------------------------------------
@pytest.fixture
def metanet_argv(sqlite_url: str, tmp_path: Path, store_image_networks) -> list[str]:
    store_image_networks(sqlite_url)
    return ["metanet", "train", "--zoo", sqlite_url, "--study", "z", "--out", str(tmp_path / "gmn"),
            "--epochs", "2", "--hidden", "8", "--layers", "1", "--batch-size", "2", "--device", "cpu"]


def test_metanet_train_again_trains_nothing_refuses_other_flags_and_overwrites(
    metanet_argv: list[str], tmp_path: Path, monkeypatch, capsys,
) -> None:
    import metanets.accuracy
    from metanets.gmn import load_gmn

    out = tmp_path / "gmn"
    assert main(metanet_argv) == 0
    capsys.readouterr()
    before = _written(out)
    with monkeypatch.context() as patch:
        patch.setattr(metanets.accuracy, "train_accuracy_predictor", _fails("the metanetwork fit"))
        assert main([*metanet_argv, "--state-every", "3", "--verbose"]) == 0
        assert capsys.readouterr().out == (
            f"the metanetwork in {out} is already trained (predicts test_acc from 6 networks, "
            f"best epoch {load_gmn(out)[1]['best_epoch']}, no validation tau); nothing to do\n")
        assert main([*metanet_argv, "--hidden", "16"]) == 2
        assert capsys.readouterr().err == (
            f"metanas metanet: error: --out {out} holds a metanetwork trained with --hidden 8, not "
            f"16; pass --overwrite to replace it with a metanetwork trained with these flags, or "
            f"choose another --out\n")
    assert _written(out) == before
    assert main([*metanet_argv, "--hidden", "16", "--overwrite"]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    model, metadata = load_gmn(out)
    assert model.config.hidden == 16 and metadata["train_config"]["hidden"] == 16
    assert sorted(p.name for p in out.iterdir()) == sorted(_named_files(out))


def _named_files(folder: Path) -> list[str]:
    """metanet.json and the tensor files it names (nothing of the replaced metanetwork is left)."""
    import json

    spec = json.loads((folder / "metanet.json").read_text())
    return ["metanet.json", *(spec.get("files", {}).get(name, name) for name in spec["sha256"])]


def test_a_run_killed_while_replacing_a_metanetwork_leaves_the_earlier_one(
    metanet_argv: list[str], tmp_path: Path, monkeypatch, capsys,
) -> None:
    """--overwrite killed between the new tensor file and the JSON naming it: the earlier
    metanetwork still loads, with its own flags (before: its weights were replaced first, and
    the folder held no metanetwork that loads)."""
    import storage.store
    from metanets.gmn import load_gmn

    out = tmp_path / "gmn"
    assert main(metanet_argv) == 0
    weights = load_gmn(out)[0].state_dict()
    replace = storage.store.replace_atomically

    def killed_at_the_json(path: Path, content) -> None:  # noqa: ANN001
        if path.name == "metanet.json":
            raise KeyboardInterrupt
        replace(path, content)

    with monkeypatch.context() as patch:
        patch.setattr(storage.store, "replace_atomically", killed_at_the_json)
        assert main([*metanet_argv, "--lr", "0.01", "--overwrite"]) == 130
    model, metadata = load_gmn(out)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    assert metadata["train_config"]["lr"] == 0.002
    capsys.readouterr()
    assert main(metanet_argv) == 0
    assert "is already trained" in capsys.readouterr().out
    assert main([*metanet_argv, "--lr", "0.01", "--overwrite"]) == 0  # the killed save's file goes
    assert sorted(p.name for p in out.iterdir()) == sorted(_named_files(out))


def test_metanet_train_refuses_a_folder_of_other_files_unless_overwrite(
    metanet_argv: list[str], tmp_path: Path, capsys,
) -> None:
    out = tmp_path / "gmn"
    out.mkdir()
    (out / "metanet.safetensors").write_bytes(b"half")  # a killed first save: no model, no refusal
    (out / ".metanet.json.tmp123").write_bytes(b"{")
    (out / "notes.txt").write_text("keep me\n")
    assert main(metanet_argv) == 2
    assert (f"--out {out} already holds metanet.safetensors, notes.txt (no metanetwork: "
            in capsys.readouterr().err)
    assert main([*metanet_argv, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "keep me\n"
    (out / "notes.txt").unlink()
    (out / "metanet.json").unlink()
    assert main(metanet_argv) == 0  # only the tensor file of a killed first save: trained


# -- prune-metanet ----------------------------------------------------------------------------
@pytest.fixture
def prune_metanet_argv(mnist_available: None, tmp_path: Path, export_image_networks) -> list[str]:
    return ["prune-metanet", "--dataset", "mnist14", "--steps", "2", "--hidden", "8",
            "--layers", "1", "--batch-size", "16", "--quiet", "--device", "cpu",
            "--out", str(tmp_path / "pm"), *export_image_networks(tmp_path)]


def test_prune_metanet_again_trains_nothing_refuses_other_flags_and_overwrites(
    prune_metanet_argv: list[str], metanet_argv: list[str], tmp_path: Path, monkeypatch, capsys,
) -> None:
    import nas.prune
    from metanets.gmn import load_gmn

    out = tmp_path / "pm"
    assert main(prune_metanet_argv) == 0
    capsys.readouterr()
    before = _written(out)
    with monkeypatch.context() as patch:
        patch.setattr(nas.prune, "train_prune_metanet", _fails("the pruning metanetwork fit"))
        assert main([*prune_metanet_argv, "--state-every", "1"]) == 0
        printed = capsys.readouterr().out
        assert printed.startswith(f"the pruning metanetwork in {out} is already trained (2 "
                                  f"networks of mnist14, 2 steps, last task loss ")
        assert main([*prune_metanet_argv, "--fraction", "0.5"]) == 2
        assert (f"--out {out} holds a pruning metanetwork trained with --fraction 0.45, not 0.5; "
                f"pass --overwrite") in capsys.readouterr().err
        # an accuracy metanetwork's folder is not a pruning metanetwork's, and vice versa
        assert main([*metanet_argv, "--out", str(out)]) == 2
        assert (f"--out {out} holds a pruning metanetwork (2 networks of mnist14, "
                in capsys.readouterr().err)
    assert _written(out) == before
    assert main([*prune_metanet_argv, "--fraction", "0.5", "--overwrite"]) == 0
    assert f"pruning metanetwork written to {out}" in capsys.readouterr().out
    assert load_gmn(out)[1]["train_config"]["fraction"] == 0.5
    assert sorted(p.name for p in out.iterdir()) == sorted(_named_files(out))


# -- supernet train ---------------------------------------------------------------------------
def test_supernet_train_again_says_it_is_already_trained(cora_available: None, tmp_path: Path,
                                                         capsys) -> None:
    out = tmp_path / "sn"
    argv = ["supernet", "train", "--dataset", "cora", "--out", str(out), "--epochs", "2",
            "--device", "cpu", "--option", "max_depth=1", "--option", "widths=16"]
    assert main(argv) == 0
    capsys.readouterr()
    before = _written(out)
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith(
        f"the supernet in {out} is already trained (2 epochs, last loss ")
    assert _written(out) == before


def test_supernet_train_with_other_settings_is_refused_unless_overwrite(
    cora_available: None, tmp_path: Path, capsys,
) -> None:
    """A supernet of other settings could only be trained into the same --out by deleting it by
    hand; --overwrite trains it from scratch (as a fresh --out would) and replaces the checkpoint."""
    from nas.supernet import load_supernet, read_meta

    out = tmp_path / "sn"
    argv = ["supernet", "train", "--dataset", "cora", "--out", str(out), "--epochs", "2",
            "--device", "cpu", "--option", "max_depth=1", "--option", "widths=16"]
    assert main(argv) == 0
    before = _written(out)
    capsys.readouterr()
    assert main([*argv, "--seed", "1"]) == 2
    assert "trained with seed 0, not seed 1; " in capsys.readouterr().err
    assert _written(out) == before
    assert main([*argv, "--seed", "1", "--overwrite"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("trained 2 epochs (")  # not resumed
    assert main([*argv[:5], str(tmp_path / "fresh"), *argv[6:], "--seed", "1"]) == 0
    assert read_meta(out)["history"] == read_meta(tmp_path / "fresh")["history"]
    assert read_meta(out)["train"]["seed"] == 1
    fresh = load_supernet(tmp_path / "fresh")[0].state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in load_supernet(out)[0].state_dict().items())
    assert not set(before) - {"supernet.json"} & {p.name for p in out.iterdir()}  # old files gone
