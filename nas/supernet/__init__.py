"""Weight-sharing supernets (single-path one-shot) and the gradient-based strategy over them.

``SUPERNETS`` maps a space name to its supernet class; :func:`build_supernet` makes one for a
task, :func:`train_supernet` trains it (SPOS, checkpointed, resumable, torch.distributed-aware)
and :func:`load_supernet` reads a checkpoint folder back.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.supernet._base import Gates, Supernet
from nas.supernet._checkpoint import check_checkpoint_folder, has_checkpoint, read_meta
from nas.supernet._final import DEFAULT_REFINE_EVALUATOR, FINAL_SUFFIX, REFINE_SUFFIX, final_train, refine
from nas.supernet._gradient import GradientConfig, GradientResult, derive, gradient_search
from nas.supernet._gnn import GNNSupernet, gnn_trial_params
from nas.supernet._nasbench import NasBenchGraphSupernet, nasbench_trial_params
from nas.supernet._train import (
    RESUME_SETTINGS, SAMPLINGS, SupernetTrainConfig, SupernetTrainResult, describe_differences,
    init_distributed, is_rank_zero, path_rng, train_supernet, training_differences,
)
from search_spaces import get_space
from search_spaces.resolver import resolve

if TYPE_CHECKING:
    import torch

    from nas.tasks import Task

#: canonical space name -> supernet class; extend by adding a line
SUPERNETS: dict[str, type[Supernet]] = {
    "gnn": GNNSupernet,
    "nasbench-graph": NasBenchGraphSupernet,
}


def build_supernet(space: str, task: Task, **options: Any) -> Supernet:
    """A fresh supernet over ``space`` (any spelling) for ``task``'s dimensions and level.

    Options go to the supernet class (e.g. ``max_depth``, ``widths``, ``convs`` for ``gnn``).
    """
    cls = resolve(space, SUPERNETS, "supernet space")
    check_options(space, options)
    get_space(cls.space_name).check_level(task.level)  # before any data is read
    return cls(task.num_features, task.num_classes, task.level, **options)


def check_options(space: str, options: Mapping[str, Any]) -> None:
    """``ValueError`` naming the options the supernet over ``space`` (any spelling) does not
    take, and the valid ones: its constructor's parameters but the task's dimensions and level,
    which :func:`build_supernet` fills in. Names only, so a script can refuse a bad option
    before it loads the task."""
    import inspect

    cls = resolve(space, SUPERNETS, "supernet space")
    valid = set(inspect.signature(cls.__init__).parameters) - {
        "self", "in_channels", "out_channels", "level",
    }
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} of the {space!r} supernet; valid: {sorted(valid)}")


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """Supernet options written ``KEY=VALUE`` (the CLI's ``--option``) as keyword arguments.

    ``["max_depth=3", "widths=32,64", "dropouts=0.5"]`` ->
    ``{"max_depth": 3, "widths": (32, 64), "dropouts": ("0.5",)}``; options that take several
    values always become tuples. Which options exist is checked by :func:`check_options`
    (which :func:`build_supernet` calls).
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"supernet option {pair!r} must look like KEY=VALUE")
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items:
            raise ValueError(f"supernet option {pair!r} has no value: write KEY=VALUE")
        parsed = [int(v) if v.lstrip("-").isdigit() else v for v in items]
        multi = key.strip() in _MULTI_VALUED or len(parsed) > 1
        options[key.strip().replace("-", "_")] = tuple(parsed) if multi else parsed[0]
    return options


#: options that take several values (a single value still becomes a one-element tuple)
_MULTI_VALUED = ("widths", "convs", "heads", "ops", "dropouts", "split")


def load_supernet(folder: str | Path, device: str | torch.device = "cpu") -> tuple[Supernet, dict[str, Any]]:
    """The trained supernet of a checkpoint folder (on ``device``) and its JSON metadata."""
    from nas.supernet._checkpoint import META, load_weights_into

    meta = read_meta(folder)
    cls = resolve(meta["space"], SUPERNETS, "supernet space")
    try:
        supernet = cls(**meta["supernet"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{Path(folder) / META} holds no {meta['space']!r} supernet config "
                         f"({error})") from None
    load_weights_into(supernet, folder, meta)
    return supernet.to(device).eval(), meta


__all__ = [
    "GNNSupernet", "Gates", "NasBenchGraphSupernet", "nasbench_trial_params", "GradientConfig", "GradientResult", "derive", "gradient_search", "SUPERNETS", "Supernet", "SAMPLINGS", "SupernetTrainConfig", "SupernetTrainResult",
    "DEFAULT_REFINE_EVALUATOR", "FINAL_SUFFIX", "REFINE_SUFFIX", "build_supernet", "check_checkpoint_folder", "check_options", "final_train", "refine", "init_distributed", "is_rank_zero", "gnn_trial_params", "has_checkpoint", "load_supernet", "parse_options", "path_rng",
    "read_meta", "train_supernet", "RESUME_SETTINGS", "describe_differences", "training_differences",
]
