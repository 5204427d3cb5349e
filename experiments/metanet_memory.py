"""Benchmark: peak memory of one metanetwork (GMN) training pass against parameter-graph edges.

What :func:`metanets.accuracy.pass_bytes` estimates and ``metanas metanet train`` refuses on
(a fit whose largest network alone would not fit in free memory). The networks are
NAS-Bench-Graph cells built at Cora's size (1,433 features, 7 classes; random weights: the
memory of a pass does not depend on their values), converted to parameter graphs and fitted for
one epoch of two networks (batch size 1, so a pass reads one network) in a fresh subprocess each,
whose peak resident memory after the graphs are built is reset through ``/proc/self/clear_refs``
(Linux), so the peak is the fit's own.

    python -m experiments.metanet_memory [--hidden 32 64] [--layers 3]   # from the repository root

Writes ``experiments/results/metanet_memory.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from typing import Any

from experiments._results import positive_ints, write_results

#: (label, links, ops, max_inputs): cells of about 0.2 to 2 million edges, and one summarised
CELLS: list[tuple[str, tuple[int, ...], tuple[str, ...], int]] = [
    ("gcn-gat-sage-fc", (0, 1, 1, 2), ("gcn", "gat", "sage", "fc"), 0),
    ("graph-skip-graph-gin", (0, 0, 0, 0), ("graph", "skip", "graph", "gin"), 0),
    ("graph-skip-graph-gin, max_inputs 64", (0, 0, 0, 0), ("graph", "skip", "graph", "gin"), 64),
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


def _peak_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM"))
    return int(line.split()[1]) * 1024


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in a fresh subprocess; ``killed`` when the OOM killer ends it."""
    from metanets.accuracy import available_bytes

    free = available_bytes()
    out = subprocess.run([sys.executable, "-m", "experiments.metanet_memory", "--child",
                          json.dumps(spec)], capture_output=True, text=True)
    if out.returncode == -signal.SIGKILL:
        return {"killed": True, "available_bytes": free}
    if out.returncode:
        raise RuntimeError(f"measurement {spec} failed:\n{out.stderr}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {**row, "pass_bytes": row["peak_bytes"] - row["baseline_bytes"], "available_bytes": free}


def _cells(row: dict[str, Any]) -> str:
    if row.get("killed"):
        return f"killed (out of memory; {row['available_bytes'] / 2**30:.1f} GiB were free)"
    return (f"{row['edges']:>9,} edges, pass {row['pass_bytes'] / 2**30:5.2f} GiB, estimate "
            f"{row['estimate_bytes'] / 2**30:5.2f} GiB, {row['seconds']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", type=positive_ints, default=[32, 64])
    parser.add_argument("--layers", type=positive_ints, default=[3])
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(**json.loads(args.child))))
        return
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


if __name__ == "__main__":
    main()
