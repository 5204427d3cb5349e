"""Which statistic of a short training ranks architectures best: per-epoch validation curves of
the supernet's ``ftN`` scorer and of its short-training control, read off in several ways.

The ``ftN`` scorers of ``supernet_ranking.py`` score an architecture by its best validation
accuracy over N epochs of fine-tuning the supernet's weights (``scratchN``: the same N epochs
from random weights). On Cora that is the maximum of N accuracies over 500 nodes: coarse, and
biased towards architectures whose curve is noisy. This script records the whole curve (the
validation accuracy and loss after every epoch, through ``TrainConfig.checkpoint_epochs`` of
the one training loop) for the rows of an earlier ``supernet_ranking.py`` result, and scores
them by :data:`STATISTICS` over the first N epochs, N in :data:`EPOCHS`.

Collect (shards with ``--start`` / ``--stop``, joined by ``--read``)::

    python experiments/supernet_ranking_curves.py --rows supernet_ranking_pool500_control \\
        --supernet FOLDER --epochs 20 --control-seed 100 --threads 1 --name curves_a

Read: the statistic and N of the ``ft`` scorer are chosen on the rows before ``--split`` (Kendall
tau against the reference's test accuracy, the cheaper N on a tie), and read on the rows after
it, with the control's same statistic beside it and a paired bootstrap of their difference::

    python experiments/supernet_ranking_curves.py --read curves_a curves_b --split 250 \\
        --name supernet_ranking_curves
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
from typing import Any, Callable

from experiments._results import positive_int, result_file_error
from experiments._supernet_common import RESULTS, check_name, kendall_tau, machine, write_results

#: N: the fine-tuning (or control training) epochs a score reads, the first N of the curve
EPOCHS = (5, 10, 20)


def _best_acc(curve: list[dict[str, float]]) -> float:
    return max(point["val_acc"] for point in curve)


def _lowest_loss(curve: list[dict[str, float]]) -> float:
    return -min(_loss(point) for point in curve)


def _late_acc(curve: list[dict[str, float]]) -> float:
    late = _late(curve)
    return sum(point["val_acc"] for point in late) / len(late)


def _late_loss(curve: list[dict[str, float]]) -> float:
    late = _late(curve)
    return -sum(_loss(point) for point in late) / len(late)


def _late(curve: list[dict[str, float]]) -> list[dict[str, float]]:
    """The second half of the curve's epochs (the last epoch of a one-epoch curve)."""
    return curve[len(curve) // 2:]


def _loss(point: dict[str, float]) -> float:
    """Validation loss, a non-finite one (a blown-up epoch) read as the worst."""
    return point["val_loss"] if math.isfinite(point["val_loss"]) else math.inf


#: score statistics of a curve (higher is better); ``best_acc`` is what ``ftN`` reports
STATISTICS: dict[str, Callable[[list[dict[str, float]]], float]] = {
    "best_acc": _best_acc, "lowest_loss": _lowest_loss, "late_acc": _late_acc, "late_loss": _late_loss,
}


def score(curve: list[dict[str, float]], epochs: int, statistic: str) -> float:
    """``statistic`` of the first ``epochs`` epochs of ``curve`` (fewer where training diverged:
    the epochs it has). ``ValueError`` names an unknown statistic and the valid ones."""
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; choose from {sorted(STATISTICS)}")
    head = curve[:epochs]
    if not head:
        return -math.inf
    return STATISTICS[statistic](head)


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    check_name(args.name, parser)
    for option, names in (("--rows", [args.rows]), ("--read", args.read or [])):
        for name in filter(None, names):
            error = result_file_error(option, name, "supernet_ranking.py" if option == "--rows"
                                      else "supernet_ranking_curves.py", RESULTS)
            if error:
                parser.error(error)
    if args.read:
        return _read(args, machine())
    if not (args.rows and args.supernet):
        parser.error("collecting curves needs --rows NAME (a supernet_ranking.py result) and "
                     "--supernet FOLDER (the supernet that scored them); or --read NAME ...")
    if args.epochs < max(EPOCHS):
        parser.error(f"--epochs {args.epochs}: the statistics read up to {max(EPOCHS)} epochs")
    return _collect(args, machine())


def _collect(args: argparse.Namespace, info: dict[str, Any]) -> None:
    """Curves of the ``ft`` scorer (the supernet's weights, seed ``args.seed``) and of the
    control (random weights, seed ``args.control_seed``) for every row; each row also records
    whether its curve reproduces the result's ``ft<epochs>`` / ``scratch<epochs>`` score."""
    import torch

    from nas.evaluators import SupernetEvaluator, finetune_config
    from nas.tasks import load_task
    from nas.train import resolve_device, seed_everything, train_model
    from search_spaces import GNNArchitecture, GNNSpace

    torch.set_num_threads(args.threads)
    device = str(resolve_device(args.device))
    source = json.loads((RESULTS / f"{args.rows}.json").read_text())
    task, space = load_task(source["args"]["dataset"]), GNNSpace()
    scorer = SupernetEvaluator(args.supernet)
    supernet = scorer.supernet(device)
    epochs = tuple(range(1, args.epochs + 1))

    def curve(model: Any, arch: Any, seed: int) -> tuple[list[dict[str, float]], float]:
        config = dataclasses.replace(finetune_config(space, arch, args.epochs, seed=seed, device=device),
                                     checkpoint_epochs=epochs)
        result = train_model(model, task, config)
        points = [{key: metrics[key] for key in ("val_acc", "val_loss", "test_acc")}
                  for _, (metrics, _) in sorted(result.checkpoints.items())]
        return points, result.seconds

    rows = []
    selected = source["rows"][args.start:args.stop]
    for i, row in enumerate(selected):
        arch = GNNArchitecture.from_dict(row["arch"])
        seed_everything(args.seed)
        ft, ft_seconds = curve(scorer.inherited_model(supernet.project(arch), task, device), arch, args.seed)
        seed_everything(args.control_seed)
        model = space.build(arch, task.num_features, task.num_classes, task.level)
        scratch, scratch_seconds = curve(model, arch, args.control_seed)
        recorded = row["variants"]
        rows.append({
            "arch": row["arch"], "summary": row["summary"], "position": args.start + i,
            "scratch_val": row["scratch_val"], "scratch_test": row["scratch_test"],
            "curves": {"ft": ft, "scratch": scratch},
            "seconds": {"ft": ft_seconds, "scratch": scratch_seconds},
            "reproduces": {
                name: abs(_best_acc(points) - recorded[key]["val"]) < 1e-6
                for name, points, key in (("ft", ft, str(args.epochs)), ("scratch", scratch, f"scratch{args.epochs}"))
                if key in recorded
            },
        })
        print(f"[{args.start + i + 1}] {row['summary']:40s} ft best {_best_acc(ft):.3f} "
              f"(recorded {recorded.get(str(args.epochs), {}).get('val', math.nan):.3f}) scratch best "
              f"{_best_acc(scratch):.3f} | reference test {row['scratch_test']:.3f}", flush=True)
        if len(rows) % 25 == 0 or len(rows) == len(selected):
            payload = {"machine": info, "args": vars(args), "rows": rows}
            (RESULTS / f"{args.name}.json").write_text(json.dumps(payload, indent=1, sort_keys=True))
    print(f"wrote {RESULTS / f'{args.name}.json'}: {len(rows)} rows")


def taus(rows: list[dict[str, Any]], scorer: str) -> dict[tuple[int, str], float]:
    """Kendall tau of every (N, statistic) score of ``scorer``'s curves against the reference's
    test accuracy over ``rows``."""
    truth = [r["scratch_test"] for r in rows]
    return {(n, stat): kendall_tau([score(r["curves"][scorer], n, stat) for r in rows], truth)
            for n in EPOCHS for stat in STATISTICS}


def choose(tau: dict[tuple[int, str], float]) -> tuple[int, str]:
    """The (N, statistic) of the highest tau; on a tie the fewer epochs, then the first statistic
    of :data:`STATISTICS`. A statistic that ranks nothing (every score equal: tau NaN) is never
    chosen."""
    order = list(STATISTICS)
    ranked = [key for key in tau if not math.isnan(tau[key])]
    if not ranked:
        raise ValueError("no statistic ranks these rows: every score of every statistic is tied")
    return max(ranked, key=lambda key: (round(tau[key], 12), -key[0], -order.index(key[1])))


def paired_bootstrap(rows: list[dict[str, Any]], a: Callable[[dict], float], b: Callable[[dict], float],
                     resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """tau(a) - tau(b) against the reference's test accuracy over ``rows``, and the 2.5% and
    97.5% quantiles of the same difference over ``resamples`` resamples of the rows."""
    def difference(sample: list[dict[str, Any]]) -> float:
        truth = [r["scratch_test"] for r in sample]
        return kendall_tau([a(r) for r in sample], truth) - kendall_tau([b(r) for r in sample], truth)

    rng = random.Random(seed)
    draws = sorted(difference([rows[rng.randrange(len(rows))] for _ in rows]) for _ in range(resamples))
    return difference(rows), draws[int(0.025 * resamples)], draws[int(0.975 * resamples) - 1]


def _read(args: argparse.Namespace, info: dict[str, Any]) -> None:
    parts = [json.loads((RESULTS / f"{name}.json").read_text()) for name in args.read]
    rows = sorted((r for part in parts for r in part["rows"]), key=lambda r: r["position"])
    positions = [r["position"] for r in rows]
    if len(set(positions)) != len(positions):
        raise SystemExit(f"--read {' '.join(args.read)}: a row appears in two parts")
    choosing = [r for r in rows if r["position"] < args.split]
    reading = [r for r in rows if r["position"] >= args.split]
    if not choosing or not reading:
        raise SystemExit(f"--split {args.split} leaves no rows on one side ({len(choosing)} / {len(reading)})")
    chosen_taus = taus(choosing, "ft")
    n, stat = choose(chosen_taus)
    read = {scorer: taus(reading, scorer) for scorer in ("ft", "scratch")}
    whole = {scorer: taus(rows, scorer) for scorer in ("ft", "scratch")}
    difference = paired_bootstrap(reading, lambda r: score(r["curves"]["ft"], n, stat),
                                  lambda r: score(r["curves"]["scratch"], n, stat))
    reproduced = {s: sum(r["reproduces"].get(s, False) for r in rows) for s in ("ft", "scratch")}
    lines = [
        f"# Supernet ranking: statistics of the fine-tuning curve ({len(rows)} rows of "
        f"{parts[0]['args']['rows']})", "",
        f"- machine: {info['platform']}, {info['cpu_count']} CPUs, load at start {info['loadavg_at_start']}",
        f"- command: `{info['command']}`", f"- date: {info['date']}",
        f"- curves: {', '.join(p['machine']['command'] for p in parts)}",
        f"- curves whose best accuracy equals the rows' recorded ft / scratch score: ft {reproduced['ft']} / {len(rows)} "
        "(only if the supernet is the rows' own, bit for bit), "
        f"control {reproduced['scratch']} / {len(rows)}",
        f"- chosen on positions < {args.split} ({len(choosing)} rows): **ft, N={n}, {stat}** "
        f"(tau {chosen_taus[(n, stat)]:.3f})",
        f"- read on positions >= {args.split} ({len(reading)} rows): ft {read['ft'][(n, stat)]:.3f}, "
        f"control {read['scratch'][(n, stat)]:.3f}; ft - control {difference[0]:+.3f} "
        f"[{difference[1]:+.3f}, {difference[2]:+.3f}] (paired bootstrap, 95%)", "",
        "Kendall tau against the reference's test accuracy (ft: the supernet's weights fine-tuned; "
        "control: random weights trained the same epochs):", "",
        "| N | statistic | ft, choosing half | ft, reading half | control, reading half | ft, all | control, all |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {key[0]} | {key[1]} | {chosen_taus[key]:.3f} | {read['ft'][key]:.3f} | "
              f"{read['scratch'][key]:.3f} | {whole['ft'][key]:.3f} | {whole['scratch'][key]:.3f} |"
              for key in chosen_taus]
    payload = {"machine": info, "args": vars(args), "chosen": {"epochs": n, "statistic": stat},
               "difference_ft_minus_control": difference, "reproduced": reproduced,
               "tau": {"choosing_ft": _keyed(chosen_taus), "reading": {k: _keyed(v) for k, v in read.items()},
                       "all": {k: _keyed(v) for k, v in whole.items()}}}
    write_results(args.name, payload, "\n".join(lines) + "\n")


def _keyed(tau: dict[tuple[int, str], float]) -> dict[str, float]:
    return {f"{n}:{stat}": value for (n, stat), value in tau.items()}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default=None, metavar="NAME", help="a supernet_ranking.py result whose rows to curve")
    p.add_argument("--supernet", default=None, metavar="FOLDER", help="the supernet that scored them")
    p.add_argument("--epochs", type=positive_int, default=max(EPOCHS), help="epochs of each curve")
    p.add_argument("--seed", type=int, default=0, help="fine-tuning seed (supernet_ranking.py's --seed)")
    p.add_argument("--control-seed", type=int, default=100, help="seed of the random-weight control")
    p.add_argument("--start", type=int, default=0, help="first row (a shard)")
    p.add_argument("--stop", type=int, default=None, help="stop before this row")
    p.add_argument("--read", nargs="+", default=None, metavar="NAME", help="curve files to read (shards)")
    p.add_argument("--split", type=positive_int, default=250,
                   help="rows before this position choose the statistic, the others read it")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--name", default="supernet_ranking_curves")
    return p


if __name__ == "__main__":
    main()
