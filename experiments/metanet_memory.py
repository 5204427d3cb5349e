"""Benchmark: peak memory of one metanetwork (GMN) training pass against parameter-graph edges.

What :func:`metanets.accuracy.pass_bytes` estimates and ``metanas metanet train`` refuses on
(a fit whose largest network alone would not fit in free memory). The networks are
NAS-Bench-Graph cells built at Cora's size (1,433 features, 7 classes; random weights: the
memory of a pass does not depend on their values), converted to parameter graphs and fitted for
one epoch of two networks (batch size 1, so a pass reads one network) in a fresh subprocess each,
whose peak resident memory after the graphs are built is reset through ``/proc/self/clear_refs``
(Linux), so the peak is the fit's own.

    python -m experiments.metanet_memory [--hidden 32,64] [--layers 3]   # from the repository root

Writes ``experiments/results/metanet_memory.json`` and ``.md``.

With ``--fit pruning`` it measures instead what :func:`metanets.pruning.metanet.step_bytes`
estimates and ``metanas prune-metanet`` refuses on (a zoo whose largest network could not take
a training step in free memory): one training step of the pruning metanetwork, at the command's
defaults (its parser's, with ``--hidden`` and ``--layers``, default 2 layers), on a zoo of one
network built as the command builds a stored one (its space's ``build``; random weights) on
its task's training data (Cora GCNs of the GNN space's widths and one wider, MNIST-14 CNNs of
the CNN space), in a fresh subprocess each, the peak measured above the resident memory when
the refusal would run (every parameter graph built). A network whose estimate is over
``--max-gib`` is skipped (the machine is shared).

    python -m experiments.metanet_memory --fit pruning [--hidden 32,64] [--max-gib 7.5]

Writes ``experiments/results/metanet_memory_pruning.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from experiments._results import positive_ints, write_results

#: (label, links, ops, max_inputs): cells of about 0.2 to 2 million edges, and one summarised
CELLS: list[tuple[str, tuple[int, ...], tuple[str, ...], int]] = [
    ("gcn-gat-sage-fc", (0, 1, 1, 2), ("gcn", "gat", "sage", "fc"), 0),
    ("graph-skip-graph-gin", (0, 0, 0, 0), ("graph", "skip", "graph", "gin"), 0),
    ("graph-skip-graph-gin, max_inputs 64", (0, 0, 0, 0), ("graph", "skip", "graph", "gin"), 64),
]

#: what ``--fit`` measures: a ``metanet train`` pass (CELLS) or a ``prune-metanet`` step (NETWORKS)
FITS = ("accuracy", "pruning")
#: ``--max-gib``'s default (``--fit pruning``): the most this shared machine leaves room for
MAX_GIB = 7.5


def _gcn(*widths: int) -> dict[str, Any]:
    return {"layers": [{"conv": "gcn", "width": width} for width in widths]}


#: --fit pruning: (label, dataset, space, architecture as ``arch.to_dict()``): Cora GCNs of the
#: GNN space's widths (16-256) of 23k to 565k edges, one of width 1024 (1.5 million edges, 7 GiB
#: at hidden 32: the most this shared machine leaves room for), and MNIST-14 CNNs of the CNN space's
#: widest blocks (under a thousand edges: their step is the images' activations)
NETWORKS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("Cora GCN 16-16", "cora", "gnn", _gcn(16, 16)),
    ("Cora GCN 64-64", "cora", "gnn", _gcn(64, 64)),
    ("Cora GCN 256-256", "cora", "gnn", _gcn(256, 256)),
    ("Cora GCN 256-256-256-256", "cora", "gnn", _gcn(256, 256, 256, 256)),
    ("Cora GCN 1024", "cora", "gnn", _gcn(1024)),
    ("MNIST-14 CNN 16-16-16", "mnist14", "cnn", {"widths": [16, 16, 16]}),
    ("MNIST-14 residual CNN 16-16-16", "mnist14", "cnn", {"widths": [16, 16, 16], "residual": True}),
]


def _child(links: list[int], ops: list[str], max_inputs: int, hidden: int, layers: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    import time

    import torch

    import metanets.accuracy as accuracy
    from metanets.gmn import prepare_graph
    from metanets.graphs import to_parameter_graph
    from search_spaces import get_space
    from search_spaces.nasbench_graph import NasBenchGraphArchitecture

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = get_space("nasbench-graph").build(NasBenchGraphArchitecture(tuple(links), tuple(ops)), 1433, 7)
    example = (torch.randn(50, 1433), torch.randint(0, 50, (2, 200)))
    graph = prepare_graph(to_parameter_graph(model.eval(), example), max_inputs)
    del model
    before = _peak_bytes()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    start = time.perf_counter()
    config = accuracy.FitConfig(epochs=1, batch_size=1, hidden=hidden, layers=layers,
                                max_inputs=max_inputs)
    accuracy.check_pass_memory = lambda *args, **kwargs: None  # measure what it would refuse
    accuracy.fit_gmn([graph, graph], torch.tensor([0.1, 0.2]), [graph], torch.tensor([0.1]), config)
    seconds = time.perf_counter() - start
    return {"edges": int(graph.num_edges), "peak_bytes": _peak_bytes(), "baseline_bytes": before,
            "estimate_bytes": accuracy.pass_bytes(int(graph.num_edges), hidden, layers),
            "seconds": seconds}


def _pruning_child(dataset: str, space: str, architecture: dict[str, Any], hidden: int,
                   layers: int) -> dict[str, Any]:
    """One ``--fit pruning`` measurement, in this (fresh) process: one step of
    ``fit_pruning_metanet`` on a zoo of one network, as ``metanas prune-metanet`` runs it."""
    import time

    import torch

    import metanets.pruning.metanet as pruning
    from nas.cli import prune_metanet_config
    from nas.prune import task_loss

    torch.set_num_threads(1)
    torch.manual_seed(0)
    task, model, inputs = _network(dataset, space, architecture)
    args = _prune_metanet_args(dataset, hidden, layers)
    config = prune_metanet_config(args)
    loss = task_loss(task, args.batch_size)
    held: dict[str, Any] = {}

    def reset_peak(network: Any, *_: Any) -> None:  # measure what it would refuse
        held.update(edges=int(network.num_edges), baseline_bytes=_reset_peak(),
                    start=time.perf_counter())

    pruning.check_step_memory = reset_peak
    pruning.fit_pruning_metanet([model], loss, inputs, config)
    return {"edges": held["edges"], "peak_bytes": _peak_bytes(),
            "baseline_bytes": held["baseline_bytes"],
            "estimate_bytes": pruning.step_bytes(held["edges"], config),
            "seconds": time.perf_counter() - held["start"]}


def _network(dataset: str, space: str, architecture: dict[str, Any]) -> tuple[Any, Any, tuple]:
    """The task, the network (built by its space as a stored one is, random weights, eval mode)
    and the inputs ``metanas prune-metanet`` traces it with."""
    from metanets.zoo import example_inputs
    from nas.tasks import load_task
    from search_spaces import get_space

    task = load_task(dataset)
    built = get_space(space)
    model = built.build(built.architecture_from_dict(architecture), task.num_features,
                        task.num_classes, task.level).eval()
    return task, model, example_inputs(task.level, task.num_features, dataset)


def _prune_metanet_args(dataset: str, hidden: int | None = None,
                        layers: int | None = None) -> argparse.Namespace:
    """``metanas prune-metanet``'s flags at its defaults, with ``hidden`` and ``layers`` where
    given and one step."""
    from nas.cli import build_parser

    flags = {"--hidden": hidden, "--layers": layers, "--steps": 1}
    return build_parser().parse_args(
        ["prune-metanet", "--dataset", dataset, "--out", "unused",
         *(text for flag, value in flags.items() if value is not None for text in (flag, str(value)))])


def _peak_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM"))
    return int(line.split()[1]) * 1024


def _reset_peak() -> int:
    """Reset this process's peak resident memory (VmHWM) to what it holds now, and return that."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _peak_bytes()


def _measure(spec: dict[str, Any], measured: str = "pass_bytes") -> dict[str, Any]:
    """One measurement in a fresh subprocess, its peak above its baseline as ``measured``;
    ``killed`` when the OOM killer ends it."""
    from metanets.accuracy import available_bytes

    free = available_bytes()
    out = subprocess.run([sys.executable, "-m", "experiments.metanet_memory", "--child",
                          json.dumps(spec)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    if out.returncode == -signal.SIGKILL:
        return {"killed": True, "available_bytes": free}
    if out.returncode:
        raise RuntimeError(f"measurement {spec} failed:\n{out.stderr}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {**row, measured: row["peak_bytes"] - row["baseline_bytes"], "available_bytes": free}


def _cells(row: dict[str, Any]) -> str:
    if row.get("killed"):
        return f"killed (out of memory; {row['available_bytes'] / 2**30:.1f} GiB were free)"
    return (f"{row['edges']:>9,} edges, pass {row['pass_bytes'] / 2**30:5.2f} GiB, estimate "
            f"{row['estimate_bytes'] / 2**30:5.2f} GiB, {row['seconds']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fit", default="accuracy", choices=FITS,
                        help="accuracy (default): a metanet train pass; pruning: a prune-metanet step")
    parser.add_argument("--hidden", type=positive_ints, default=[32, 64])
    parser.add_argument("--layers", type=positive_ints, default=None,
                        help="GMN layers (default 3; 2, prune-metanet's default, with --fit pruning)")
    parser.add_argument("--max-gib", type=_positive_gib, default=None,
                        help=f"--fit pruning: skip a network whose estimate is over this (GiB, "
                             f"default {MAX_GIB:g})")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.max_gib is not None and args.fit != "pruning":
        parser.error(f"--max-gib is read by --fit pruning only, not --fit {args.fit}: drop it "
                     f"or pass --fit pruning")
    if args.child:
        spec = json.loads(args.child)
        child = _pruning_child if spec.pop("fit", None) == "pruning" else _child
        print(json.dumps(child(**spec)))
        return
    if args.fit == "pruning":
        _pruning(args.hidden, args.layers or [_prune_metanet_args("cora").layers],
                 args.max_gib or MAX_GIB)
        return
    args.layers = args.layers or [3]
    rows = []
    for label, links, ops, max_inputs in CELLS:
        for hidden in args.hidden:
            for layers in args.layers:
                spec = {"links": list(links), "ops": list(ops), "max_inputs": max_inputs,
                        "hidden": hidden, "layers": layers}
                row = {"cell": label, **spec, **_measure(spec)}
                rows.append(row)
                print(f"{label:38s} hidden {hidden:3d} layers {layers}: {_cells(row)}", flush=True)
    table = ["| cell | max_inputs | hidden | layers | edges | pass peak GiB | KiB per edge | "
             "pass_bytes estimate GiB | estimate / measured | fit s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lead = f"| {r['cell']} | {r['max_inputs']} | {r['hidden']} | {r['layers']} |"
        if r.get("killed"):
            table.append(f"{lead} - | killed (out of memory; {r['available_bytes'] / 2**30:.1f} GiB "
                         f"were free) | | | | |")
            continue
        table.append(
            f"{lead} {r['edges']:,} | {r['pass_bytes'] / 2**30:.2f} | "
            f"{r['pass_bytes'] / r['edges'] / 1024:.1f} | {r['estimate_bytes'] / 2**30:.2f} | "
            f"{r['estimate_bytes'] / r['pass_bytes']:.2f} | {r['seconds']:.0f} |")
    note = ("Peak resident memory of the fit above what the process held before it (the graph "
            "built, VmHWM reset); one epoch of two networks plus one validation prediction, batch "
            "size 1. The estimate is what `metanet train` compares with free memory before a fit; "
            "a killed row is one the OOM killer ended.")
    path = write_results("metanet_memory", {"rows": rows}, "\n".join(table) + "\n\n" + note)
    print("\n".join(table))
    print(f"wrote {path}")


def _positive_gib(text: str) -> float:
    """An argparse ``type``: a memory size in GiB, > 0 (0 or less skipped every network)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of GiB > 0")
    return value


def _pruning(hiddens: list[int], layer_counts: list[int], max_gib: float) -> None:
    """``--fit pruning``: measure every network of NETWORKS at each hidden and layer count, one
    at a time, and write ``metanet_memory_pruning``."""
    rows = []
    for label, dataset, space, architecture in NETWORKS:
        for hidden in hiddens:
            for layers in layer_counts:
                spec = {"fit": "pruning", "dataset": dataset, "space": space,
                        "architecture": architecture, "hidden": hidden, "layers": layers}
                row = {"network": label, **spec, **_pruning_row(spec, max_gib)}
                rows.append(row)
                print(f"{label:32s} hidden {hidden:3d} layers {layers}: {_pruning_cells(row)}",
                      flush=True)
    table = _pruning_table(rows)
    note = ("Peak resident memory (VmHWM) of one `metanas prune-metanet` training step at the "
            "command's defaults (--penalty lowest --fraction 0.45 --pruned-weight 1, the gate; "
            "a zoo of one network, random weights) above what the process held when the refusal "
            "would compare the estimate with free memory (every parameter graph built). The "
            "estimate is `step_bytes`, what the refusal compares; a skipped row's estimate was "
            f"over --max-gib {max_gib:g}; a killed row is one the OOM killer ended.")
    path = write_results("metanet_memory_pruning", {"rows": rows, "max_gib": max_gib},
                         "\n".join(table) + "\n\n" + note)
    print("\n".join(table))
    print(f"wrote {path}")


def _pruning_row(spec: dict[str, Any], max_gib: float) -> dict[str, Any]:
    """One network's measurement with its ratio and bytes per edge, or why there is none."""
    estimate = _pruning_estimate(spec)
    if estimate["estimate_bytes"] > max_gib * 2**30:
        return {**estimate, "skipped": True}
    row = _measure(spec, measured="step_peak_bytes")
    if row.get("killed"):
        return row
    return {**row, "estimate_over_measured": row["estimate_bytes"] / row["step_peak_bytes"],
            "bytes_per_edge": row["step_peak_bytes"] / row["edges"]}


def _pruning_estimate(spec: dict[str, Any]) -> dict[str, Any]:
    """The network's edges and the refusal's estimate of a step on it, without training."""
    from metanets.graphs import to_parameter_graph
    from metanets.pruning.metanet import step_bytes
    from nas.cli import prune_metanet_config

    _, model, inputs = _network(spec["dataset"], spec["space"], spec["architecture"])
    edges = int(to_parameter_graph(model, inputs).num_edges)
    config = prune_metanet_config(_prune_metanet_args(spec["dataset"], spec["hidden"], spec["layers"]))
    return {"edges": edges, "estimate_bytes": step_bytes(edges, config)}


def _pruning_cells(row: dict[str, Any]) -> str:
    if row.get("skipped"):
        return f"{row['edges']:>9,} edges, skipped (estimate {row['estimate_bytes'] / 2**30:.2f} GiB)"
    if row.get("killed"):
        return f"killed (out of memory; {row['available_bytes'] / 2**30:.1f} GiB were free)"
    return (f"{row['edges']:>9,} edges, step {row['step_peak_bytes'] / 2**30:5.2f} GiB, estimate "
            f"{row['estimate_bytes'] / 2**30:5.2f} GiB ({row['estimate_over_measured']:.2f}x), "
            f"{row['seconds']:.0f} s")


def _pruning_table(rows: list[dict[str, Any]]) -> list[str]:
    table = ["| network | hidden | layers | edges | step peak GiB | KiB per edge | step_bytes "
             "estimate GiB | estimate / measured | step s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lead = f"| {r['network']} | {r['hidden']} | {r['layers']} |"
        if r.get("skipped"):
            table.append(f"{lead} {r['edges']:,} | skipped | | {r['estimate_bytes'] / 2**30:.2f} | | |")
        elif r.get("killed"):
            table.append(f"{lead} - | killed (out of memory; {r['available_bytes'] / 2**30:.1f} GiB "
                         "were free) | | | | |")
        else:
            table.append(
                f"{lead} {r['edges']:,} | {r['step_peak_bytes'] / 2**30:.2f} | "
                f"{r['bytes_per_edge'] / 1024:.1f} | {r['estimate_bytes'] / 2**30:.2f} | "
                f"{r['estimate_over_measured']:.2f} | {r['seconds']:.0f} |")
    return table


if __name__ == "__main__":
    main()
