"""A training command run again on the ``--out`` of a finished run.

``metanas hypernet train``, ``metanas metanet train`` and ``metanas prune-metanet`` record the
flags they trained with in the model they write (``metadata["train_config"]``). Run again on
that ``--out``:

- with the same flags, the command trains nothing and says the model is already trained;
- with other flags (or over another kind of model), it is refused (exit 2) naming each flag
  that differs, unless ``--overwrite``, which trains and replaces the model;
- an ``--out`` that holds files of no model (other than the tensor files of a save killed
  before its JSON, which are no model) is refused in the same way, unless ``--overwrite``.

``supernet train`` has its own rule (more ``--epochs`` continue a checkpoint; ``--overwrite``
trains a new one from scratch, whatever its settings), and shares the
line it prints for a finished run (:func:`trained_line`).

Flags that say where or how a run goes rather than what it trains (:data:`NOT_SETTINGS`: the
device, the data folder, how often the training state is written, how much is printed) may
change between runs. A flag the model does not record (one added to the command after it was
trained) counts as its default.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

#: metadata key of the flags a model was trained with (a GHN's since before this module)
FLAGS_KEY = "train_config"
#: flags that do not change what is trained, and the argparse entries that are no flags
NOT_SETTINGS = frozenset({
    "out", "overwrite", "device", "data_root", "state_every", "quiet", "verbose", "handler",
    "command", "hypernet_command", "metanet_command",
})


@dataclasses.dataclass(frozen=True)
class FoundModel:
    """A finished model at a training command's ``--out``."""

    kind: str | None                 # "GHN", "metanetwork", "pruning metanetwork"; None: files
                                     # of no model, named in ``summary``
    flags: dict[str, Any] | None     # the flags it was trained with (None: it records none)
    summary: str                     # what it reports, e.g. "6 networks, best epoch 4, val tau 0.41"


def training_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of ``args`` that decide what is trained, as JSON values (a storage URL with
    its password hidden: the flags are written into the model)."""
    from storage import redact

    flags = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    if flags.get("zoo"):
        flags["zoo"] = redact(flags["zoo"])
    return flags


def flag_differences(trained: dict[str, Any], given: dict[str, Any],
                     defaults: dict[str, Any]) -> list[str]:
    """``"--lr 0.002, not 0.001"`` for each flag of ``given`` that the model was ``trained``
    with otherwise (a flag it does not record: its value in ``defaults``)."""
    from storage.store import settings_differences

    def flagged(values: dict[str, Any]) -> dict[str, Any]:
        return {f"--{key.replace('_', '-')}": value for key, value in values.items()}

    known = {key: defaults.get(key) for key in given} | trained
    return settings_differences(flagged(known), flagged(given))


def already_trained(out: str, found: FoundModel | None, kind: str, given: dict[str, Any],
                    defaults: dict[str, Any], overwrite: bool) -> str | None:
    """The line to print when ``out`` already holds the ``kind`` these ``given`` flags train
    (then train nothing); None when there is something to train (nothing at ``out``, or
    ``overwrite``). ``ValueError`` (exit 2) naming what differs when ``out`` holds another
    model, one of other flags or one that records none, unless ``overwrite``."""
    if found is None or overwrite:
        return None
    if found.kind is None:
        raise ValueError(f"--out {out} already holds {found.summary}; choose a new folder, or "
                         f"pass --overwrite to write the {kind} there")
    again = f"pass --overwrite to replace it with a {kind} trained with these flags, or choose another --out"
    if found.kind != kind:
        raise ValueError(f"--out {out} holds a {found.kind} ({found.summary}), not a {kind}; {again}")
    if found.flags is None:
        raise ValueError(f"--out {out} holds a {kind} that does not record the flags it was "
                         f"trained with; {again}")
    differ = flag_differences(found.flags, given, defaults)
    if differ:
        raise ValueError(f"--out {out} holds a {kind} trained with {'; '.join(differ)}; {again}")
    return trained_line(kind, out, found.summary)


def trained_line(kind: str, out: str, summary: str) -> str:
    """What a training command prints instead of training when ``out`` is already trained."""
    return f"the {kind} in {out} is already trained ({summary}); nothing to do"


def found_ghn(out: str) -> FoundModel | None:
    """The GHN checkpoint at ``out`` (None: no file there); ``ValueError`` for a file that is
    not one (it is never overwritten)."""
    from metanets.ghn import GraphHyperNetwork

    if not Path(out).exists():
        return None
    try:
        ghn = GraphHyperNetwork.load(out)
    except Exception:  # noqa: BLE001 - a folder, not safetensors, not a GHN: refused below
        raise ValueError(f"--out {out} exists and is not a GHN checkpoint; it is never "
                         f"overwritten (name a new file)") from None
    return FoundModel("GHN", ghn.metadata.get(FLAGS_KEY), _ghn_summary(ghn.metadata))


def _ghn_summary(metadata: dict[str, Any]) -> str:
    history = metadata.get("history") or []
    parts = [f"{len(metadata.get('train_hashes', []))} training architectures"]
    if history:
        parts.append(f"{history[-1]['step']} steps, last train acc {history[-1]['train_acc']:.3f}")
    kept = next((h for h in history if h["step"] == metadata.get("kept_step")), {})
    if "select_val_acc" in kept:
        parts.append(f"kept step {kept['step']}, selection val acc {kept['select_val_acc']:.3f}")
    return ", ".join(parts)


def found_metanet(out: str) -> FoundModel | None:
    """The metanetwork in the folder ``out`` (None: an absent or empty folder, or one holding
    only what a killed first save left; kind None: a folder of files that load as no
    metanetwork); ``ValueError`` for a file."""
    from metanets.gmn import PRUNING, load_gmn, purpose
    from storage.store import held_files

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose a folder to write the "
                         f"metanetwork into")
    if _only_leftovers(folder):
        return None
    try:
        _, metadata = load_gmn(folder)
    except (OSError, ValueError) as error:  # ChecksumError is a ValueError
        return FoundModel(None, None, f"{held_files(folder)} (no metanetwork: {error})")
    if purpose(metadata) == PRUNING:
        return FoundModel("pruning metanetwork", metadata.get(FLAGS_KEY), _pruning_summary(metadata))
    return FoundModel("metanetwork", metadata.get(FLAGS_KEY), _accuracy_summary(metadata))


def _only_leftovers(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but hidden temporary files and the tensor files of a
    metanetwork whose save was killed before its JSON."""
    from metanets.gmn import CONFIG_FILE, WEIGHTS_FILE
    from metanets.pruning.metanet import GATE_FILE
    from storage.store import holds_only_leftovers

    return holds_only_leftovers(folder, CONFIG_FILE, [WEIGHTS_FILE, GATE_FILE])


def _accuracy_summary(metadata: dict[str, Any]) -> str:
    tau = metadata.get("val_tau")
    chosen = f"val tau {tau:.4f}" if isinstance(tau, (int, float)) else "no validation tau"
    return (f"predicts {metadata.get('target', 'test_acc')} from {metadata.get('networks')} "
            f"networks, best epoch {metadata.get('best_epoch')}, {chosen}")


def _pruning_summary(metadata: dict[str, Any]) -> str:
    history = metadata.get("history") or []
    last = (f", {history[-1]['step']} steps, last task loss {history[-1]['task_loss']:.4f}"
            if history else "")
    penalty = metadata.get("zoo_relative_penalty")
    relative = f", zoo relative penalty {penalty:.4f}" if isinstance(penalty, (int, float)) else ""
    return f"{metadata.get('networks')} networks of {metadata.get('dataset')}{last}{relative}"
