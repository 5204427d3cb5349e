"""Layer-by-layer scales of GHN-predicted networks: why held-out (deeper, wider) CNNs get poor
parameters. For held-out architectures of ``experiments/hypernet_eval.py`` and a few training
ones: predicted validation accuracy (first 2000 images), every weight matrix's
``std * sqrt(fan_in)`` (Kaiming: sqrt(2)) and every conv/linear layer's input and output std on
one training batch, BatchNorm statistics recomputed as in the evaluation.

    python -m experiments.hypernet_scales --setup cnn-mnist [--hypernet PATH] [--per-kind 3]

Prints a table and writes ``experiments/results/hypernet_scales_<label>.md``.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from experiments._results import file_stem_error, positive_int
from experiments.hypernet_eval import held_out
from experiments.train_hypernets import SETUPS
from metanets.ghn_train import TaskBatches, accuracy, load_hypernet, predicted_model, training_pool
from nas.tasks import load_task
from search_spaces import get_space

RESULTS = Path(__file__).parent / "results"
#: the setups this diagnosis runs on: their models take one image batch
IMAGE_SETUPS = [name for name, (space, _, _) in SETUPS.items() if space == "cnn"]


def layer_scales(model: nn.Module, x: torch.Tensor) -> dict[str, tuple[float, float, float]]:
    """``{layer: (weight std * sqrt(fan_in), input std, output std)}`` of conv/linear layers
    (residual 1x1 shortcuts left out) on one forward pass of ``x``."""
    found: dict[str, tuple[float, float, float]] = {}

    def hook(name: str, module: nn.Module):
        w = module.weight.detach()
        scale = float(w.std()) * math.sqrt(w[0].numel())
        return lambda mod, args, out: found.__setitem__(name, (scale, float(args[0].std()), float(out.std())))

    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear)) and "shortcut" not in n]
    handles = [m.register_forward_hook(hook(n, m)) for n, m in layers]
    with torch.no_grad():
        model.eval()(x)
    for handle in handles:
        handle.remove()
    return found


def rows(setup: str, hypernet: str, per_kind: int) -> list[dict[str, Any]]:
    space_name, dataset, config = SETUPS[setup]
    space, task = get_space(space_name), load_task(dataset)
    ghn = load_hypernet(hypernet, task)
    batches = TaskBatches(task, seed=1)
    x = batches.calibration_inputs(1)[0][0]
    pool = training_pool(space, config)
    archs = [("train", a) for a in pool[:per_kind]]
    counts: dict[str, int] = {}
    for kind, arch in held_out(setup):
        counts[kind] = counts.get(kind, 0) + 1
        if counts[kind] <= per_kind:
            archs.append((kind, arch))
    out = []
    for kind, arch in archs:
        model = predicted_model(ghn, space, arch, task, batches)
        out.append({"kind": kind, "short": arch.short(), "val_acc": accuracy(model, batches, "val", 2000),
                    "layers": layer_scales(model, x)})
    return out


def to_markdown(setup: str, hypernet: str, found: list[dict[str, Any]]) -> str:
    lines = [f"# Layer scales of `{hypernet}` ({setup})", "",
             "Per layer: weight std * sqrt(fan_in) (Kaiming: 1.41) / input std -> output std on one "
             "training batch of 128.", "", "| kind | architecture | val acc | layers |", "|---|---|---|---|"]
    for r in found:
        layers = "; ".join(f"{name.replace('blocks.', 'b').replace('.conv', '')}: {w:.2f} / "
                           f"{i:.2f} -> {o:.2f}" for name, (w, i, o) in r["layers"].items())
        lines.append(f"| {r['kind']} | {r['short']} | {r['val_acc']:.3f} | {layers} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", required=True, choices=IMAGE_SETUPS,
                        help="a setup of experiments/train_hypernets.py over images (the layer "
                             "scales are read on one image batch)")
    parser.add_argument("--hypernet", default=None, help="default pretrained:<setup>")
    parser.add_argument("--label", default="current", help="suffix of the results file")
    parser.add_argument("--per-kind", type=positive_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=1)
    args = parser.parse_args()
    if file_stem_error("--label", args.label):
        parser.error(file_stem_error("--label", args.label))
    torch.set_num_threads(args.threads)
    hypernet = args.hypernet or f"pretrained:{args.setup}"
    text = to_markdown(args.setup, hypernet, rows(args.setup, hypernet, args.per_kind))
    print(text)
    (RESULTS / f"hypernet_scales_{args.label}.md").write_text(text)


if __name__ == "__main__":
    main()
