"""Speed of ``metanas prune``'s pruning: ``prune_model`` counting the MACs of its pruned copies
from their weights' shapes (``WeightMacs``, commit e35954b) against counting every pruning step
by a ``FlopCounterMode`` forward pass, as it did before.

    python -m experiments.prune_speed [--repeats 7] [--networks gcn,cnn,resnet] [--speedups 2,3]

For every network and speed-up, magnitude importance on the inputs ``metanas prune`` uses
(``metanets.pruning.pipeline.example_inputs``: Cora's whole graph, 64 mnist14 training images),
``prune_model`` runs ``--repeats`` times in each mode, interleaved (the first mode alternates
from repeat to repeat, so a drift of the shared CPU's load hits both alike). The forward mode is
the comparison the tests use: ``metanets.pruning.core.counted_by_weights`` returns an empty
``WeightMacs``, which explains no product, so every step is counted forward. One untimed run
per mode first counts its forward passes and checks that both modes give the same
``PruneResult`` (MACs, parameters, widths, weights); every timed run is checked against it too.
The networks have seeded initial weights (pruning's cost depends on their shapes, not on
training). Writes ``experiments/results/<--name>.{json,md}`` (default ``prune_speed``) and
exits 1 if any row's modes disagree.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from torch import nn

import metanets.pruning.core as core
from experiments._results import file_stem_error, positive_int, write_results
from metanets.pruning.pipeline import example_inputs
from nas.tasks import load_task
from nas.train import seed_everything
from search_spaces import get_space
from search_spaces.cnn import CNNArchitecture
from search_spaces.gnn import GNNArchitecture, LayerSpec

#: key -> (name, dataset, space, architecture): the networks of e35954b's measurement
NETWORKS: dict[str, tuple[str, str, str, Any]] = {
    "gcn": ("Cora GCN 64-64", "cora", "gnn",
            GNNArchitecture(layers=(LayerSpec("gcn", 64), LayerSpec("gcn", 64)))),
    "cnn": ("MNIST CNN c8-c16", "mnist14", "cnn", CNNArchitecture(widths=(8, 16))),
    "resnet": ("MNIST ResNet c16x4 bn res", "mnist14", "cnn",
               CNNArchitecture(widths=(16, 16, 16, 16), norm="batch", residual=True)),
}
MODES = ("weights", "forward")


def network_keys(text: str) -> list[str]:
    """An argparse ``type``: comma-separated keys of :data:`NETWORKS`."""
    keys = text.split(",")
    for key in keys:
        if key not in NETWORKS:
            raise argparse.ArgumentTypeError(f"network {key!r} is not one of {sorted(NETWORKS)}")
    return keys


def speedups(text: str) -> list[float]:
    """An argparse ``type``: comma-separated speed-ups, each a finite number above 1."""
    values = []
    for part in text.split(","):
        try:
            values.append(float(part))
            core.check_speedup(values[-1])
        except ValueError:
            raise argparse.ArgumentTypeError(f"speed-up {part!r} must be a finite number > 1") from None
    return values


@contextlib.contextmanager
def counted(mode: str) -> Iterator[list[int]]:
    """Inside, ``prune_model`` counts its pruned copies' MACs as ``mode`` says (``forward``: no
    product is explained by a weight, so every step is a forward pass); yields a list that
    gets one entry per forward pass counted."""
    passes: list[int] = []
    forward_count = core.count_macs
    by_weights = core.counted_by_weights

    def count_macs(*args: Any) -> int:
        passes.append(1)
        return forward_count(*args)

    def nothing_by_weights(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[int, core.WeightMacs]:
        return core.count_macs(model, inputs), core.WeightMacs(())

    core.count_macs = count_macs
    if mode == "forward":
        core.counted_by_weights = nothing_by_weights
    try:
        yield passes
    finally:
        core.count_macs, core.counted_by_weights = forward_count, by_weights


def result_key(result: core.PruneResult) -> tuple[Any, ...]:
    """What two pruning runs must agree on: MACs, parameters, widths and the pruned weights."""
    weights = tuple((k, v.tolist()) for k, v in result.model.state_dict().items())
    return (result.macs_before, result.macs_after, result.params_before, result.params_after,
            result.removed_fraction, result.widths_before, result.widths_after, weights)


def timed(prune: Callable[[], core.PruneResult], mode: str) -> tuple[float, float, core.PruneResult]:
    """Wall and process CPU seconds of one ``prune()`` counted as ``mode`` says."""
    with counted(mode):
        start, cpu = time.perf_counter(), time.process_time()
        result = prune()
        return time.perf_counter() - start, time.process_time() - cpu, result


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def measure_row(name: str, model: nn.Module, inputs: tuple[Any, ...], speedup: float,
                repeats: int) -> dict[str, Any]:
    """One network at one speed-up: the untimed check run of each mode, then ``repeats``
    interleaved timed runs of both."""
    def prune() -> core.PruneResult:
        return core.prune_model(model, inputs, speedup, importance="magnitude")

    checks = {}
    row: dict[str, Any] = {"network": name, "speedup": speedup}
    for mode in MODES:
        with counted(mode) as passes:
            checks[mode] = prune()
        row[f"{mode}_forward_passes"] = len(passes)
    reference = result_key(checks["weights"])
    same = result_key(checks["forward"]) == reference
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    for repeat in range(repeats):
        for mode in (MODES if repeat % 2 == 0 else MODES[::-1]):
            wall, used, result = timed(prune, mode)
            seconds[mode].append(wall)
            cpu[mode].append(used)
            same = same and result_key(result) == reference
    first = checks["weights"]
    row.update({
        "same_result": same, "macs_before": first.macs_before, "macs_after": first.macs_after,
        "speedup_reached": first.speedup, "widths_before": list(first.widths_before),
        "widths_after": list(first.widths_after),
        **{f"{mode}_s": spread(seconds[mode]) for mode in MODES},
        **{f"{mode}_cpu_s": spread(cpu[mode]) for mode in MODES},
    })
    row["gain"] = row["forward_s"]["median"] / row["weights_s"]["median"]
    row["cpu_gain"] = row["forward_cpu_s"]["median"] / row["weights_cpu_s"]["median"]
    return row


def network(key: str) -> tuple[str, nn.Module, tuple[Any, ...]]:
    """The network ``key`` of :data:`NETWORKS` (seed 0) and the inputs ``metanas prune`` gives it."""
    name, dataset, space, arch = NETWORKS[key]
    task = load_task(dataset)
    seed_everything(0)
    model = get_space(space).build(arch, task.num_features, task.num_classes, task.level).eval()
    return name, model, example_inputs(task)


def _seconds(entry: dict[str, Any]) -> str:
    return f"{entry['median']:.3f} ({entry['min']:.3f}-{entry['max']:.3f})"


def table(rows: list[dict[str, Any]], repeats: int, load: tuple[list[float], list[float]]) -> str:
    lines = [
        "| network | speed-up | MACs before -> after | widths after | from weights s | "
        "every step forward s | gain | CPU-time gain | forward passes | same result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['speedup']:g}x | {r['macs_before']:,} -> {r['macs_after']:,} "
            f"({r['speedup_reached']:.3f}x) | {'-'.join(map(str, r['widths_after']))} | "
            f"{_seconds(r['weights_s'])} | {_seconds(r['forward_s'])} | {r['gain']:.1f}x | "
            f"{r['cpu_gain']:.1f}x | {r['weights_forward_passes']} vs {r['forward_forward_passes']} | "
            f"{'yes' if r['same_result'] else '**NO**'} |")
    start, end = load
    lines += ["", f"Median (min-max) of {repeats} runs per mode, interleaved, magnitude importance; "
              "gain: ratio of the medians. Load average (1, 5, 15 min) at start "
              f"{', '.join(f'{v:.2f}' for v in start)}, at end {', '.join(f'{v:.2f}' for v in end)}."]
    cores = os.cpu_count() or 1
    if max(start[0], end[0]) > cores:
        lines += ["", f"The load was above the {cores} cores: other processes shared the CPU, "
                  "which stretches both modes' seconds; the gains compare runs interleaved "
                  "under the same load."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=7, help="timed runs per mode")
    parser.add_argument("--networks", type=network_keys, default=list(NETWORKS),
                        help=f"comma-separated, of {', '.join(NETWORKS)}")
    parser.add_argument("--speedups", type=speedups, default=[2.0, 3.0])
    parser.add_argument("--name", default="prune_speed", help="results file stem")
    args = parser.parse_args(argv)
    if error := file_stem_error("--name", args.name):
        parser.error(error)
    load_start = [round(v, 2) for v in os.getloadavg()]
    rows = []
    for key in args.networks:
        name, model, inputs = network(key)
        for speedup in args.speedups:
            row = measure_row(name, model, inputs, speedup, args.repeats)
            rows.append(row)
            print(f"{name} {speedup:g}x: weights {_seconds(row['weights_s'])} s, forward "
                  f"{_seconds(row['forward_s'])} s, gain {row['gain']:.1f}x, same result "
                  f"{row['same_result']}, load {os.getloadavg()[0]:.1f}", flush=True)
    load_end = [round(v, 2) for v in os.getloadavg()]
    markdown = table(rows, args.repeats, (load_start, load_end))
    print(markdown)
    write_results(args.name, {"repeats": args.repeats, "importance": "magnitude",
                              "load_start": load_start, "load_end": load_end, "rows": rows},
                  markdown)
    if not all(row["same_result"] for row in rows):
        print("the two ways of counting gave different pruning results (rows marked NO)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
