"""Predict a trained network's test accuracy from its weights: metanetworks (``--metanets``:
the graph metanetwork ``GMN``; ``probes``, the networks' answers to probes learned from noise;
``data-probes``, probes that start at unlabelled training images; ``GMN+probes`` and
``GMN+data-probes``, both) and baselines (total weight norm, StatNN, flat-weights MLP on
fixed-architecture zoos), Kendall tau and R^2 as mean +- std over seeds, on the whole test
split and on the runs above chance. ``--update`` recomputes only the rows asked for in a stored
part (``--metanets`` with no name: the baselines only).

Splits are by training run (every checkpoint of a run in one split): ``id`` = random 70/10/20
split of the runs; ``ood`` = train on shallow networks, test on the deepest (CNN zoos: depth <= 2
vs 3; GNN zoos: depth <= 2 vs >= 3). Each seed redraws the split (id) and reinitialises every
model.

One zoo per invocation, results in ``experiments/results/metanet_accuracy_<label>.json``;
``--merge`` joins the parts into ``metanet_accuracy.{json,md}``::

    python experiments/metanet_accuracy.py --zoo sqlite:///zoo.db --study zoo-mnist14-cnn \\
        --label mnist-cnn --splits id ood --seeds 0 1 2
    python experiments/metanet_accuracy.py --merge
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metanets.accuracy import FitConfig, fit_gmn, kendall_tau, predict, r2_score  # noqa: E402
from metanets.probes import task_probe_inputs  # noqa: E402
from metanets.baselines import FlatMLP, StatNN, WeightNorm, architecture_signature  # noqa: E402
from metanets.zoo import Zoo, load_zoo, split_by_architecture, split_by_run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: "above chance": measured test accuracy above this multiple of 1 / classes
ABOVE_CHANCE = 1.5


def depth_of(arch: dict[str, Any]) -> int:
    return len(arch["widths"]) if "widths" in arch else len(arch["layers"])


#: splits of a zoo: by training run (in distribution) or by depth (out of distribution)
SPLITS = ("id", "ood")


def make_split(zoo: Zoo, kind: str, seed: int) -> dict[str, list[int]]:
    if kind == "id":
        return split_by_run(zoo, (0.7, 0.1, 0.2), seed=seed)
    if kind == "ood":
        deepest = max(depth_of(e.architecture) for e in zoo)
        cut = 2 if deepest >= 3 else deepest - 1
        return split_by_architecture(zoo, lambda a: depth_of(a) > cut, val_fraction=0.1, seed=seed)
    raise ValueError(f"split {kind!r} is not among {list(SPLITS)}")


def scores(pred: np.ndarray, zoo: Zoo) -> dict[str, float]:
    y = zoo.targets("test_acc").numpy()
    chance = np.array([ABOVE_CHANCE / e.out_channels for e in zoo])
    above = y > chance
    return {
        "tau": kendall_tau(pred, y), "r2": r2_score(pred, y),
        "tau_above": kendall_tau(pred[above], y[above]) if above.sum() > 2 else math.nan,
        "r2_above": r2_score(pred[above], y[above]) if above.sum() > 2 else math.nan,
        "n_test": int(len(y)), "n_test_above": int(above.sum()),
    }


def run_methods(zoo: Zoo, split: dict[str, list[int]], seed: int, args: argparse.Namespace,
                fixed: bool) -> dict[str, dict[str, float]]:
    train, val, test = (zoo.subset(split[k]) for k in ("train", "val", "test"))
    out: dict[str, dict[str, float]] = {}
    states = lambda z: [e.state_dict for e in z]  # noqa: E731
    y_train = train.targets("test_acc").numpy()
    baselines = [WeightNorm(), StatNN(seed=seed)] + ([FlatMLP(seed=seed)] if fixed else [])
    for method in baselines:
        start = time.perf_counter()
        method.fit(states(train), y_train)
        out[method.name] = {**scores(method.predict(states(test)), test),
                            "seconds": time.perf_counter() - start}
    for name in args.metanets:
        out[name] = fit_metanet(name, train, val, test, seed, args)
    out["_sizes"] = {k: len(set(zoo.subset(v).runs)) for k, v in split.items()}
    return out


#: metanetwork rows: (reads the parameter graph, probe init or None for no probes)
METANETS = {
    "GMN": (True, None), "GMN+probes": (True, "noise"), "probes": (False, "noise"),
    "GMN+data-probes": (True, "data"), "data-probes": (False, "data"),
}


def fit_metanet(name: str, train: Zoo, val: Zoo, test: Zoo, seed: int,
                args: argparse.Namespace) -> dict[str, float]:
    """Fit one metanetwork row of :data:`METANETS` on the training runs (epoch chosen on the
    validation runs) and score it on the test runs."""
    graph_branch, init = METANETS[name]
    config = FitConfig(epochs=args.epochs, hidden=args.hidden, layers=args.layers, seed=seed,
                       eval_every=args.eval_every, max_inputs=args.max_inputs,
                       batch_size=args.batch_size, lr=args.lr, probes=args.probes if init else 0,
                       probe_init=init or "noise", graph_branch=graph_branch)
    nets = {part: z.networks() if init else None
            for part, z in (("train", train), ("val", val), ("test", test))}
    start = task_probe_inputs(train[0].dataset, args.probes, seed=seed) if init == "data" else None
    result = fit_gmn(train.graphs(), train.targets(), val.graphs(), val.targets(), config,
                     train_networks=nets["train"], val_networks=nets["val"], probe_start=start)
    pred = predict(result.model, test.graphs(), nets["test"])[:, 0].numpy()
    return {**scores(pred, test), "seconds": result.seconds, "best_epoch": result.best_epoch}


def prediction_time(zoo: Zoo, args: argparse.Namespace) -> dict[str, float]:
    """Seconds to predict 1000 networks from their parameter graphs (an untrained GMN of the
    experiment's size: the cost does not depend on the weights), and to convert 100 networks
    from weights to graphs."""
    from metanets.gmn import GMN, GMNConfig
    from metanets.zoo import build_module, network_graph
    from storage import ModelStore

    graphs = [zoo[i % len(zoo)].graph for i in range(1000)]
    model = GMN(GMNConfig(hidden=args.hidden, layers=args.layers,
                          kernel_width=graphs[0].edge_attr.size(1), max_inputs=args.max_inputs))
    start = time.perf_counter()
    predict(model, graphs)
    predict_s = time.perf_counter() - start
    probed_s = math.nan
    if args.probes and zoo[0].level == "image":
        networks = Zoo([zoo[i % len(zoo)] for i in range(1000)]).networks()
        probed = GMN(dataclasses.replace(model.config, probes=args.probes,
                                         probe_shape=networks[0].input_shape,
                                         probe_outputs=zoo[0].out_channels))
        start = time.perf_counter()
        predict(probed, graphs, networks)
        probed_s = time.perf_counter() - start
    store = ModelStore(args.zoo)
    start = time.perf_counter()
    runs = sorted(set(zoo.runs))[:100]
    for study, trial in runs:
        module = build_module(store.get(study, trial))
        entry = next(e for e in zoo if e.run == (study, trial))
        module.load_state_dict(entry.state_dict)
        network_graph(module, entry.level, entry.in_channels, entry.dataset,
                      graphs[0].edge_attr.size(1))
    convert_s = time.perf_counter() - start
    return {"predict_1000_s": predict_s, "predict_1000_probes_s": probed_s,
            "convert_per_network_s": convert_s / len(runs), "converted": len(runs)}


def summarise(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, Any]]:
    methods = [m for m in per_seed[0] if not m.startswith("_")]
    table = {}
    for method in methods:
        row: dict[str, Any] = {}
        for key in ("tau", "r2", "tau_above", "r2_above", "seconds"):
            values = np.array([s[method][key] for s in per_seed], float)
            row[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)),
                        "values": values.tolist()}
        row["n_test"] = [s[method]["n_test"] for s in per_seed]
        row["n_test_above"] = [s[method]["n_test_above"] for s in per_seed]
        table[method] = row
    return table


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    meta = {
        "machine": platform.platform(), "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg(), "command": " ".join([sys.executable, *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch_threads": args.threads,
    }
    start = time.perf_counter()
    zoo = load_zoo(args.zoo, args.study, kernel_width=args.kernel_width, limit=args.limit)
    load_s = time.perf_counter() - start
    fixed = len({architecture_signature(e.state_dict) for e in zoo}) == 1
    print(f"{args.label}: {zoo} loaded in {load_s:.0f}s; fixed architecture: {fixed}", flush=True)
    result: dict[str, Any] = {
        "label": args.label, "zoo": args.study, "networks": len(zoo), "runs": len(set(zoo.runs)),
        "epochs_per_run": sorted({e.epoch for e in zoo if e.epoch is not None}),
        "load_seconds": load_s, "fixed_architecture": fixed, "settings": {
            k: getattr(args, k) for k in ("epochs", "hidden", "layers", "kernel_width",
                                          "max_inputs", "batch_size", "lr", "seeds", "probes")},
        "meta": meta, "splits": {},
    }
    for kind in args.splits:
        per_seed = []
        for seed in args.seeds:
            per_seed.append(run_methods(zoo, make_split(zoo, kind, seed), seed, args, fixed))
            print(f"  {kind} seed {seed}: " + ", ".join(
                f"{m} tau {v['tau']:.3f}" for m, v in per_seed[-1].items() if not m.startswith("_")),
                flush=True)
        result["splits"][kind] = {"sizes_runs": [s["_sizes"] for s in per_seed],
                                  "methods": summarise(per_seed)}
    if args.timing:
        result["timing"] = prediction_time(zoo, args)
        print(f"  timing: {result['timing']}", flush=True)
    result["seconds"] = time.perf_counter() - start
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"metanet_accuracy_{args.label}.json"
    if args.update:
        result = updated_part(json.loads(path.read_text()), result)
    path.write_text(json.dumps(result, indent=2))
    return result


def updated_part(part: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``part`` (an earlier run of the same zoo and seeds) with the rows ``new`` computed
    replacing or adding to its own; the update's command and rows are recorded in its meta."""
    same = ("zoo", "networks", "runs")
    if any(part[k] != new[k] for k in same) or part["settings"]["seeds"] != new["settings"]["seeds"]:
        raise ValueError(f"--update needs the same zoo and seeds as the stored part: stored "
                         f"{[part[k] for k in same]} seeds {part['settings']['seeds']}, now "
                         f"{[new[k] for k in same]} seeds {new['settings']['seeds']}")
    rows = {}
    for kind, split in new["splits"].items():
        part["splits"][kind]["methods"].update(split["methods"])
        rows[kind] = sorted(split["methods"])
    part.setdefault("updates", []).append({"meta": new["meta"], "rows": rows})
    return part


def fmt(cell: dict[str, float]) -> str:
    return "n/a" if math.isnan(cell["mean"]) else f"{cell['mean']:.3f} ± {cell['std']:.3f}"


def merge() -> None:
    parts = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("metanet_accuracy_*.json"))]
    lines = [
        "# Predicting test accuracy from weights", "",
        "Kendall tau and R^2 on the test split (mean ± std over seeds); 'above chance' = runs "
        f"whose measured test accuracy exceeds {ABOVE_CHANCE} / classes. Splits by training run; "
        "ood = train on depth <= 2, test on deeper networks.", "",
        "| zoo | networks (runs) | split | method | tau | R^2 | tau above chance | R^2 above chance | test nets (above) | fit s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for part in parts:
        for kind, split in part["splits"].items():
            for method, row in split["methods"].items():
                lines.append(
                    f"| {part['label']} | {part['networks']} ({part['runs']}) | {kind} | {method} | "
                    f"{fmt(row['tau'])} | {fmt(row['r2'])} | {fmt(row['tau_above'])} | "
                    f"{fmt(row['r2_above'])} | {row['n_test'][0]} ({row['n_test_above'][0]}) | "
                    f"{row['seconds']['mean']:.0f} |")
    lines += ["", "## Timing", ""]
    for part in parts:
        if "timing" in part:
            t = part["timing"]
            lines.append(f"- {part['label']}: GMN prediction for 1000 networks from their parameter "
                         f"graphs {t['predict_1000_s']:.2f} s"
                         + (f" ({t['predict_1000_probes_s']:.2f} s with probes)"
                            if not math.isnan(t.get("predict_1000_probes_s", math.nan)) else "")
                         + "; weights -> graph conversion "
                         f"{t['convert_per_network_s']:.3f} s per network (measured on {t['converted']}).")
    lines += ["", "## Runs", ""]
    for part in parts:
        m = part["meta"]
        lines.append(f"- {part['label']}: `{m['command']}` on {m['machine']} ({m['cpu_count']} CPUs, "
                     f"load {tuple(round(x, 1) for x in m['loadavg_start'])} at start), {m['date']}, "
                     f"settings {part['settings']}, {part['seconds']:.0f} s in all")
        for update in part.get("updates", []):
            u = update["meta"]
            lines.append(f"  - rows {update['rows']} recomputed by `{u['command']}` "
                         f"(load {tuple(round(x, 1) for x in u['loadavg_start'])}), {u['date']}")
    (RESULTS / "metanet_accuracy.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "metanet_accuracy.json").write_text(json.dumps(parts, indent=2))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", help="storage URL")
    parser.add_argument("--study", help="zoo / study name")
    parser.add_argument("--label", help="name of this zoo in the table")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--kernel-width", type=int, default=25)
    parser.add_argument("--max-inputs", type=int, default=0)
    parser.add_argument("--probes", type=int, default=32, help="learned probes of the probe rows")
    parser.add_argument("--metanets", nargs="*", default=["GMN", "probes"],
                        choices=sorted(METANETS), help="metanetwork rows to fit (none: baselines only)")
    parser.add_argument("--update", action="store_true",
                        help="replace only the rows computed now in the label's stored part")
    parser.add_argument("--limit", type=int, default=None, help="read at most this many runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timing", action="store_true", help="measure prediction time too")
    parser.add_argument("--merge", action="store_true", help="join the parts into the table")
    args = parser.parse_args()
    if args.merge:
        merge()
        return
    if not (args.zoo and args.study and args.label):
        parser.error("--zoo, --study and --label are required (or --merge)")
    run(args)


if __name__ == "__main__":
    main()
