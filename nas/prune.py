"""``metanas prune``: prune an exported model for a task, fine-tune it and export the result.

The pruned folder has the export format of :mod:`nas.export` with a ``"pruned"`` entry (width
attributes, the method, the speed-up, accuracies before and after) so that
:func:`nas.export.load_exported` rebuilds the narrower model.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from metanets.pruning.core import check_speedup, largest_speedup
from metanets.pruning.errors import UnreachableSpeedupError
from metanets.pruning.pipeline import PruneOutcome, prune_and_finetune, resolve_method
from metanets.pruning.shapes import pruned_attributes
from nas.export import (
    PRUNED_KEY, build_module, canonical_dataset, check_export_folder, check_fits,
    check_model_folder, dataset_note, export_model, load_exported, read_export, recorded_dataset,
)
from nas.tasks import dataset_info, load_task, resolve_dataset
from nas.train import TrainConfig


@dataclasses.dataclass(frozen=True)
class PruneJob:
    """One ``metanas prune`` call."""

    model: str                  # exported model folder (read only)
    dataset: str                # task to measure accuracy on and fine-tune with
    speedup: float              # target MACs ratio before / after
    out: str                    # folder to write the pruned model into
    method: str = "magnitude"   # metanet, magnitude or random
    finetune_epochs: int = 10   # epochs of fine-tuning (0: none)
    metanet: str | None = None  # trained pruning metanetwork (method metanet)
    seed: int = 0               # random pruning and fine-tuning (not the split: a search's)
    device: str = "cpu"         # cpu or cuda (resolve auto with nas.train.resolve_device)
    overwrite: bool = False     # write into an out folder that already holds files
    data_root: str | None = None  # dataset folder (default $METANAS_DATA, see nas.tasks)


#: spaces whose models ``metanas prune`` prunes: torch-pruning's dependency graph (cnn, mlp),
#: the GNN pruner (gnn); NAS-Bench-Graph cells (PyG ops torch-pruning cannot follow) are not
PRUNABLE_SPACES: tuple[str, ...] = ("cnn", "gnn", "mlp")
#: task levels a pruning metanetwork trains on (:func:`task_loss`), so method metanet prunes
METANET_LEVELS: tuple[str, ...] = ("image", "node")
#: task levels whose largest reachable speed-up the model gives on inputs of the task's shape
#: alone, before the task is loaded: every MAC counted is one image's or one node's, so the
#: ratio does not depend on how many there are; a graph task's model adds a readout per graph,
#: so its ratio depends on the nodes per graph of the task's training graphs
DATA_FREE_LEVELS: tuple[str, ...] = ("image", "node")


def run_prune(job: PruneJob, say: Callable[[str], None] = lambda line: None,
              ) -> tuple[PruneOutcome, Path]:
    """Prune, fine-tune and export; returns the outcome and the written folder. ``say`` gets
    a note, before any pruning, when ``job.dataset`` is not the one the model was trained on
    (as ``metanas evaluate`` notes it; :func:`nas.export.dataset_note`).

    An ``out`` that is the input model's folder or inside it is refused (``ValueError``), and
    one that already holds files (``FileExistsError``) unless ``job.overwrite``, before anything
    is pruned (:func:`nas.export.check_export_folder`); so are, before the task is loaded, a model
    of a space that cannot be pruned, a metanetwork for another method, one that does not
    fit the model, a speed-up that is no finite number above 1, and one the model cannot reach
    (image and node tasks, :data:`DATA_FREE_LEVELS`; a graph task's is refused once it is
    loaded, before any pruning); a task of another level, input features or classes than the
    model is refused naming both (:func:`nas.export.check_fits`) once it is loaded, before
    any pruning."""
    check_speedup(job.speedup)
    method = resolve_method(job.method)
    if job.metanet is not None and method != "metanet":
        raise ValueError(f"--metanet is read by --method metanet only, not {method!r}: drop "
                         "it or pass --method metanet")
    check_model_folder(job.model)  # what --model is comes first: the --out checks call it a folder
    _refuse_out_in_model(job)
    check_export_folder(job.out, job.overwrite)
    document = read_export(job.model)
    check_prunable(document, job.model)
    model = load_exported(job.model, document)
    transform = _transform(job.metanet, document, model, job.device) if method == "metanet" else None
    _refuse_unreachable(job, document, model)
    task = load_task(job.dataset, job.data_root)  # split as a search splits it (seed 0)
    trained_on = recorded_dataset(document)
    check_fits(document, task, trained_on)
    note = dataset_note("pruning", task.name, canonical_dataset(trained_on))
    if note is not None:
        say(note)
    defaults = _training_defaults(document)
    config = TrainConfig(epochs=job.finetune_epochs, patience=0, seed=job.seed,
                         device=job.device, **defaults)
    outcome = prune_and_finetune(model, task, job.speedup, method, config, transform, job.seed)
    folder = _export(job, document, outcome)
    return outcome, folder


def _refuse_out_in_model(job: PruneJob) -> None:
    """``ValueError`` when ``job.out`` is the input model's folder or a folder inside it: the
    input folder is never modified."""
    model, out = Path(job.model).resolve(), Path(job.out).resolve()
    if out == model:
        raise ValueError(f"--out {job.out!r} is the input model's folder; the input is never "
                         "overwritten")
    if model in out.parents:
        raise ValueError(f"--out {job.out!r} is inside the input model's folder {job.model!r}, "
                         f"which is never modified: choose a folder outside it")


def _refuse_unreachable(job: PruneJob, document: dict[str, Any], model: Any) -> None:
    """:class:`UnreachableSpeedupError` when ``job.speedup`` is above the largest speed-up of
    ``model`` (every prunable channel group at one channel), measured on example inputs of
    the shape of ``job.dataset``'s: for a dataset of the model's level whose largest speed-up
    does not depend on its data (:data:`DATA_FREE_LEVELS`)."""
    from metanets.zoo import example_inputs

    name = resolve_dataset(job.dataset)
    level = dataset_info(name).level  # None for a pyg: dataset until its data is read
    if level != document["level"] or level not in DATA_FREE_LEVELS:
        return  # a dataset that does not fit the model is refused, naming both, once loaded
    largest = largest_speedup(model, example_inputs(level, document["in_channels"], name))
    if job.speedup > largest:
        raise UnreachableSpeedupError(job.speedup, largest)


def _training_defaults(document: dict[str, Any]) -> dict[str, float]:
    arch = document.get("architecture", {})
    return {key: float(arch[key]) for key in ("lr", "weight_decay", "train_fraction") if key in arch}


def check_prunable(document: dict[str, Any], source: Any) -> None:
    """``ValueError`` naming the prunable spaces when the exported model read from ``source``
    is of another space."""
    if document["space"] not in PRUNABLE_SPACES:
        raise ValueError(f"{source} holds a {document['space']!r} model, which cannot be pruned; "
                         f"models of the spaces {list(PRUNABLE_SPACES)} can")


def _transform(path: str | None, document: dict[str, Any], model: Any, device: str = "cpu") -> Any:
    """The rewrite of the pruning metanetwork at ``path``, run on ``device``; ``ValueError``
    when it cannot rewrite ``model`` (the exported ``document``'s network)."""
    if document["level"] not in METANET_LEVELS:
        raise ValueError(f"method 'metanet' prunes {' and '.join(METANET_LEVELS)}-level models "
                         f"(a pruning metanetwork trains on those); this one is "
                         f"{document['level']}-level: use --method magnitude or random")
    if path is None:
        raise ValueError("method 'metanet' needs --metanet PATH (a trained pruning metanetwork)")
    from metanets.pruning.metanet import load_pruning_metanet

    metanet = load_pruning_metanet(path)
    metanet.check_fits(model, document["level"])
    return metanet.to(device).transform


def _export(job: PruneJob, document: dict[str, Any], outcome: PruneOutcome) -> Path:
    keep = {k: v for k, v in document.items()
            if k not in ("format", "space", "architecture", "in_channels", "out_channels",
                         "level", PRUNED_KEY)}
    # against the unpruned build: an input pruned before was loaded with its first pruning's
    # attributes, which the new export must carry as well as this pruning's
    unpruned = build_module(document["space"], document["architecture"], document["in_channels"],
                            document["out_channels"], document["level"])
    pruned = {"attributes": pruned_attributes(unpruned, outcome.model),
              "source": str(job.model), "dataset": job.dataset,
              "finetune_epochs": job.finetune_epochs, **outcome.summary()}
    from search_spaces.gnn import GNN

    if isinstance(outcome.model, GNN):  # the GNN pruner narrows the architecture's widths too
        pruned["architecture"] = outcome.model.arch.to_dict()  # for reading; not for building
    return export_model(
        job.out, space=document["space"], spec=document["architecture"],
        in_channels=document["in_channels"], out_channels=document["out_channels"],
        level=document["level"], state_dict=outcome.model.state_dict(),
        metadata={**keep, PRUNED_KEY: pruned, "metrics": outcome.finetuned,
                  "num_params": outcome.result.params_after},
        overwrite=job.overwrite,
    )


def format_outcome(outcome: PruneOutcome) -> str:
    """The before/after table ``metanas prune`` prints."""
    r = outcome.result
    rows = [("", "before", "after"),
            ("MACs", f"{r.macs_before:,}", f"{r.macs_after:,}"),
            ("params", f"{r.params_before:,}", f"{r.params_after:,}"),
            ("test acc", f"{outcome.before['test_acc']:.4f}",
             f"{outcome.finetuned['test_acc']:.4f}"),
            ("val acc", f"{outcome.before['val_acc']:.4f}", f"{outcome.finetuned['val_acc']:.4f}")]
    lines = [f"{a:<10}{b:>18}{c:>18}" for a, b, c in rows]
    lines.append(f"method {outcome.method}: speed-up {r.speedup:.2f}x ({r.speedup_asked:.2f}x "
                 f"asked), test acc right after "
                 f"pruning {outcome.pruned['test_acc']:.4f}, widths {list(r.widths_before)} -> "
                 f"{list(r.widths_after)}" + _widths_note(outcome.model))
    return "\n".join(lines)


def _widths_note(model: Any) -> str:
    """What the printed widths of a GNN-space ``model`` count besides one layer's output
    channels each: attention layers' channels per head (for layers a residual adds together,
    per head of the one with the most heads, or per one of the least common multiple of their
    head counts' blocks where that count is not a multiple of the others), GIN's MLP hidden
    width."""
    from metanets.pruning._gnn import mixed_head_groups
    from search_spaces.gnn import GNN

    layers = getattr(getattr(model, "arch", None), "layers", ())
    mixed = mixed_head_groups(model) if isinstance(model, GNN) else []
    notes = []
    if any(blocks > most for blocks, most in mixed):
        counts = " or ".join(str(blocks) for blocks in sorted({blocks for blocks, _ in mixed}))
        notes.append(f"attention layers: channels per head; layers a residual adds: channels in "
                     f"each of {counts} equal blocks (the least common multiple of their head "
                     f"counts)")
    elif mixed:
        notes.append("attention layers, and layers a residual adds: channels per head of the "
                     "layer with the most heads among them")
    elif any(getattr(layer, "heads", 1) > 1 for layer in layers):
        notes.append("attention layers: channels per head")
    if any(getattr(layer, "conv", None) == "gin" for layer in layers):
        notes.append("GIN layers: MLP hidden width, then output width")
    return f" ({'; '.join(notes)})" if notes else ""


# training a pruning metanetwork (``metanas prune-metanet``) ------------------------------------
@dataclasses.dataclass(frozen=True)
class MetanetJob:
    """One ``metanas prune-metanet`` call: a zoo of trained networks of one task (exported
    folders and/or the stored networks of zoo studies) and how to train on it."""

    dataset: str                           # task whose training data gives the task loss
    out: str                               # folder to write the metanetwork into
    model_dirs: tuple[str, ...] = ()       # exported model folders (``metanas export``)
    zoo: str | None = None                 # storage URL of stored networks
    studies: tuple[str, ...] = ()          # zoo/study names in ``zoo`` (final weights)
    limit: int | None = None               # most networks per study (first trials)
    batch_size: int = 128                  # images per step (image tasks)
    config: Any = None                     # MetanetTrainConfig (default: its defaults)
    state: str | None = None               # training-state file: resumed from, kept while fitting
    state_every: int = 100                 # steps between training-state writes
    device: str = "cpu"                    # where the fit runs: cpu or cuda (see PruneJob)
    flags: dict[str, Any] | None = None    # the command's flags, recorded with the metanetwork
    data_root: str | None = None           # dataset folder (default $METANAS_DATA)


def zoo_networks(job: MetanetJob) -> list[tuple[Any, dict[str, Any]]]:
    """The zoo's networks with their weights and ``{"level", "in_channels", "out_channels",
    "dataset", "source"}``; ``ValueError`` when there are none or they do not fit together."""
    _check_zoo(job)
    networks = []
    for folder in job.model_dirs:
        check_model_folder(folder, "--model-dir")
        document = read_export(folder)
        check_prunable(document, folder)
        module = load_exported(folder, document)
        networks.append((module, {**_shape(document), "source": str(folder)}))
    if job.zoo:
        from metanets.zoo import build_module, completed_models
        from storage import ModelStore

        store = ModelStore(job.zoo, read_only=True)
        for study in job.studies:
            records = completed_models(store, study)[:job.limit]
            if not records:
                raise ValueError(f"no stored networks in zoo/study {study!r}")
            for record in records:
                module = build_module(record)
                module.load_state_dict(store.load_state_dict(study, record.trial_number))
                networks.append((module, {**_shape(vars(record)),
                                          "source": f"{study}/{record.trial_number}"}))
    shapes = {(m["level"], m["in_channels"], m["out_channels"]) for _, m in networks}
    if len(shapes) > 1:
        raise ValueError(f"the zoo's networks have different (level, in, out) channels "
                         f"{sorted(shapes)}: one metanetwork prunes networks of one task")
    return networks


def _check_zoo(job: MetanetJob) -> None:
    if not job.model_dirs and not job.studies and not job.zoo:
        raise ValueError("no zoo: give --model-dir (repeatable) and/or --zoo URL --study NAME")
    if bool(job.zoo) != bool(job.studies):
        raise ValueError("--zoo and --study go together")


def _shape(document: dict[str, Any]) -> dict[str, Any]:
    """An exported or stored network's task dimensions and the dataset it was last trained on."""
    return {**{key: document.get(key) for key in ("level", "in_channels", "out_channels")},
            "dataset": recorded_dataset(document)}


def task_loss(task: Any, batch_size: int = 128, device: str = "cpu") -> Any:
    """The metanetwork's task loss on ``task``'s training data (image and node tasks), the data
    on ``device``."""
    from metanets.pruning.metanet import ImageLoss, NodeLoss

    if task.level == "image":
        x, y = task.dataset.x["train"], task.dataset.y["train"]
        return ImageLoss(x.to(device), y.to(device), batch_size)
    if task.level == "node":
        d = task.data
        return NodeLoss(d.x.to(device), d.edge_index.to(device), d.y.to(device),
                        d.train_mask.to(device))
    raise ValueError(f"dataset {task.name!r} is a {task.level}-level task; a pruning "
                     f"metanetwork trains on one of the levels {list(METANET_LEVELS)}")


def train_prune_metanet(job: MetanetJob, log: Any = None,
                        resuming: Any = None) -> tuple[Any, Path]:
    """Train a pruning metanetwork on the job's zoo and save it (safetensors + JSON) for
    ``metanas prune --method metanet --metanet DIR``; returns it and the written folder. With
    ``job.state`` a killed fit resumes from that file, which is removed once the metanetwork is
    written; ``resuming(step)`` is called once that state is accepted."""
    from metanets.pruning.metanet import (
        MetanetTrainConfig,
        fit_pruning_metanet,
        relative_group_lasso,
    )
    from metanets.zoo import example_inputs as trace_inputs

    config = job.config or MetanetTrainConfig()
    _check_config(config)
    _check_zoo(job)
    task = load_task(job.dataset, job.data_root)  # the split the zoo's networks were trained on
    networks = zoo_networks(job)
    _, first = networks[0]  # the zoo's networks are of one task (zoo_networks)
    check_fits(first, task, first["dataset"])
    loss = task_loss(task, job.batch_size, job.device)
    inputs = trace_inputs(task.level, first["in_channels"], job.dataset)
    models = [module.eval() for module, _ in networks]
    fit = fit_pruning_metanet(models, loss, inputs, config, log=log, state=job.state,
                              state_every=job.state_every, device=job.device,
                              names=[m["source"] for _, m in networks], resuming=resuming)
    metanet = fit.metanet
    relative = [relative_group_lasso(metanet, m, config.penalty, config.fraction) for m in models]
    folder = metanet.save(job.out, {
        "dataset": job.dataset, "level": task.level, "networks": len(models),
        "sources": [m["source"] for _, m in networks], "train": dataclasses.asdict(config),
        "history": fit.history, "zoo_relative_penalty": sum(relative) / len(relative),
        **({"train_config": job.flags} if job.flags is not None else {}),
    })
    if job.state is not None:
        Path(job.state).unlink(missing_ok=True)
    return metanet, Path(folder)


def _check_config(config: Any) -> None:
    from metanets.pruning.metanet import PENALTIES

    if config.penalty not in PENALTIES:
        raise ValueError(f"could not resolve penalty {config.penalty!r} among choices "
                         f"{list(PENALTIES)}")
    for name in ("steps", "hidden", "layers"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} {getattr(config, name)} must be >= 1")
    if not config.lr > 0 or not config.lam >= 0:
        raise ValueError(f"lr {config.lr} must be > 0 and lam {config.lam} >= 0")
    if not config.pruned_weight >= 0:
        raise ValueError(f"pruned_weight {config.pruned_weight} must be >= 0")
    if not config.distill >= 0:
        raise ValueError(f"distill {config.distill} must be >= 0")
    uses_fraction = config.penalty == "lowest" or config.pruned_weight > 0
    if uses_fraction and not 0.0 < config.fraction < 1.0:
        raise ValueError(f"fraction {config.fraction} must be in (0, 1)")
