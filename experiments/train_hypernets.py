"""Train the pretrained graph hypernetworks shipped in ``metanets/pretrained/``.

- ``gnn-cora``: the GNN macro space on Cora (node classification), trained on architectures of
  depth <= 2 and widths <= 64 (deeper and wider ones stay unseen for experiments/hypernet_eval).
  Cora has 140 labelled training nodes, which a GHN memorises (its predicted networks reach
  100% training accuracy and generalise worse than SGD-trained ones, and fine-tuning them
  barely moves): this GHN reads input features through the fixed data basis (the leading right
  singular vectors of the node features, no labels) instead of a learned per-feature table,
  penalises the squared norm of the predicted parameters as SGD's weight decay does, and keeps
  the step with the best validation accuracy of training architectures.
- ``cnn-mnist``: the CNN space on MNIST, trained on the whole default space (depth <= 3, widths
  <= 16; 4-block and 32-channel CNNs stay unseen for the held-out evaluation). Trained on
  depth <= 2 only, a GHN never saw a block between two others and decoded the third block of a
  3-block net like a last block. With operation-wise normalisation of the predicted weights
  (``weight_norm="op"``: Kaiming scale times a bounded decoded gain). With fan-in
  normalisation the GHN learned weight scales per width and position (classifier weights 3-4x
  larger after 4 channels than after 8, hidden convs 5-8x Kaiming that the classifier of a
  2-block net compensates), so in a 3-block net without BatchNorm the pre-activations grew
  2.8 -> 13 -> 66. Layers wider than 16 channels are decoded as tiled copies of 16
  (``tile_width``), and the GHN reads each op's feature-map size at MNIST's 28 pixels
  (``spatial``): without it a 4-block CNN's last block, which works on 3x3 maps no training
  network has, was decoded like a 7x7 one (see ``experiments/results/hypernet_notes.md``).

    python -m experiments.train_hypernets [--only gnn-cora] [--steps N]   # from the root

``--seed N --out-dir DIR`` trains a setup again from another initialisation (and batch order)
on the same training architectures: the run-to-run spread of the shipped GHN.

A killed run started again with the same flags resumes from its training state (written every
selection interval to ``$METANAS_CACHE/train_hypernets/<name>-<settings digest>.state``, removed
once the checkpoint is written) and ends as an uninterrupted run would.

Writes the checkpoints (safetensors, config and training-pool hashes in the metadata) and
``experiments/results/train_hypernets.{json,md}`` with machine, load, command and date.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from experiments._results import positive_int
from metanets.ghn import PRETRAINED_DIR
from metanets.ghn_train import HypernetTrainConfig, pool_seed, train_hypernet
from nas.tasks import load_task
from search_spaces import get_space

RESULTS = Path(__file__).parent / "results"

#: name -> (space, dataset, training config)
SETUPS: dict[str, tuple[str, str, HypernetTrainConfig]] = {
    "gnn-cora": ("gnn", "cora", HypernetTrainConfig(
        steps=500, archs_per_step=2, pool_size=100, max_depth=2, max_width=64, lr=2e-3,
        weight_decay=5e-4, log_every=50, select_every=50, select_archs=8,
        param_decay=5e-4, feature_basis="data")),
    "cnn-mnist": ("cnn", "mnist", HypernetTrainConfig(
        steps=30000, archs_per_step=2, pool_size=300, max_depth=3, max_width=16, lr=2e-3,
        weight_decay=5e-4, batch_size=128, log_every=250, select_every=1000, select_archs=8,
        select_items=2000, weight_norm="op", tile_width=16, spatial=True)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated names of SETUPS")
    parser.add_argument("--steps", type=positive_int, default=None, help="override the steps")
    parser.add_argument("--max-distance", type=positive_int, default=None,
                        help="override the GHN's longest virtual edge (a variant)")
    parser.add_argument("--spatial", action="store_true",
                        help="the GHN reads each op's feature-map size (a variant)")
    parser.add_argument("--seed", type=int, default=None,
                        help="another run of the setup: initialisation, basis, batches and draw "
                             "order from this seed, the same training pool (a variant)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="write the checkpoints and the train_hypernets.{json,md} record "
                             "here instead of metanets/pretrained/ and experiments/results/ "
                             "(variants that are not shipped)")
    parser.add_argument("--threads", type=positive_int, default=1)
    args = parser.parse_args()
    unknown = [name for name in (args.only or "").split(",") if args.only and name not in SETUPS]
    if unknown:
        parser.error(f"--only {unknown} not among choices {list(SETUPS)}")
    torch.set_num_threads(args.threads)
    if args.seed is not None and args.out_dir is None:
        parser.error("--seed trains a variant: give --out-dir (the shipped GHNs stay as they are)")
    names = args.only.split(",") if args.only else list(SETUPS)
    record = {"machine": platform.platform(), "cpu_count": os.cpu_count(),
              "load_at_start": os.getloadavg(), "command": " ".join(["python -m experiments.train_hypernets", *sys.argv[1:]]),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "runs": {}}
    results, checkpoints = args.out_dir or RESULTS, args.out_dir or PRETRAINED_DIR
    out_json = results / "train_hypernets.json"
    for name in names:
        space_name, dataset, config = SETUPS[name]
        overrides = {"steps": args.steps, "max_distance": args.max_distance, "spatial": args.spatial}
        config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v})
        if args.seed is not None:  # the same training architectures: their seed is kept
            config = dataclasses.replace(config, seed=args.seed, pool_seed=pool_seed(config))
        space, task = get_space(space_name), load_task(dataset)
        cpu = time.process_time()
        state = state_file(name, config)
        if state.exists():
            print(f"{name}: resuming from {state}", flush=True)
        result = train_hypernet(space, task, config, log=lambda s, e: print(name, e, flush=True),
                                state=state, state_every=config.select_every or config.log_every)
        checkpoints.mkdir(parents=True, exist_ok=True)
        path = result.ghn.save(checkpoints / f"{name}.safetensors", {
            "train_hashes": result.train_hashes, "train_config": dataclasses_asdict(config),
            "space": space_name, "dataset": dataset})
        state.unlink()
        record["runs"][name] = {
            "space": space_name, "dataset": dataset, "config": dataclasses_asdict(config),
            "seconds": round(result.seconds, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
            "best_step": result.best_step, "history": result.history,
            "resumed_from_step": result.resumed_from,
            "file": str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path),
            "megabytes": round(path.stat().st_size / 1e6, 2),
            "ghn_parameters": sum(p.numel() for p in result.ghn.parameters()),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "load_at_start": record["load_at_start"], "command": record["command"],
            "machine": record["machine"], "cpu_count": record["cpu_count"],
        }
        results.mkdir(parents=True, exist_ok=True)
        if out_json.is_file():  # runs of other names (possibly written by a parallel process)
            earlier = json.loads(out_json.read_text()).get("runs", {})
            record["runs"] = {**{k: v for k, v in earlier.items() if k != name}, **record["runs"]}
        out_json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {path} ({record['runs'][name]['megabytes']} MB)", flush=True)
    _write_md(json.loads(out_json.read_text()) if out_json.is_file() else record, results)


def state_file(name: str, config: HypernetTrainConfig) -> Path:
    """Where the training state of setup ``name`` with ``config`` lies while it trains (in the
    cache, named by every setting, so a run with other settings never meets it)."""
    from nas.tasks import cache_dir

    settings = json.dumps(dataclasses_asdict(config), sort_keys=True)
    digest = hashlib.sha256(settings.encode()).hexdigest()[:12]
    return cache_dir() / "train_hypernets" / f"{name}-{digest}.state"


def dataclasses_asdict(config: HypernetTrainConfig) -> dict:
    return dataclasses.asdict(config)


def _write_md(record: dict, results: Path = RESULTS) -> None:
    lines = ["# Pretrained graph hypernetworks", ""]
    for name, run in record["runs"].items():
        lines += [f"- {name}: machine {run.get('machine', record['machine'])}, "
                  f"{run.get('cpu_count', record['cpu_count'])} CPUs, load at start "
                  f"{tuple(round(x, 1) for x in run['load_at_start'])}, finished {run['date']}; "
                  f"command `{run.get('command', record['command'])}`"]
    lines += ["",
             "| name | space | dataset | steps | pool | range | wall s | CPU s | best step | "
             "last loss | selection val acc (train archs) | MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in record["runs"].items():
        c, h = run["config"], run["history"]
        best = max((e["select_val_acc"] for e in h if "select_val_acc" in e), default=float("nan"))
        lines.append(
            f"| {name} | {run['space']} | {run['dataset']} | {c['steps']} | {c['pool_size']} | "
            f"depth<={c['max_depth']}, width<={c['max_width']} | {run['seconds']} | "
            f"{run.get('cpu_seconds', '-')} | {run['best_step']} | {h[-1]['loss']:.3f} | {best:.3f} | "
            f"{run['megabytes']} |")
    notes = [f"- {name}: {run['note']}" for name, run in record["runs"].items() if run.get("note")]
    lines += ["", *notes] if notes else []
    (results / "train_hypernets.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
