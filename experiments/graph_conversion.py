"""Benchmark: parameter-graph conversion time, peak memory and size against parameter count.

Networks from ~10K to ~25M parameters built from plain torch layers (an MLP, a small CNN,
ResNet-18/50-shaped CNNs at several widths). Each network is converted in a fresh subprocess so
its peak memory is its own (Linux: the peak RSS is reset through ``/proc/self/clear_refs``).

    python -m experiments.graph_conversion [--repeats 3] [--only resnet50]   # from the root

Writes ``experiments/results/graph_conversion.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from experiments._results import positive_int

RESULTS = Path(__file__).parent / "results"


# networks ------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.down = _shortcut(cin, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.down(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.down = _shortcut(cin, width * 4, stride)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        h = torch.relu(self.bn2(self.conv2(h)))
        return torch.relu(self.bn3(self.conv3(h)) + self.down(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if cin == cout and stride == 1:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def resnet(block: type[nn.Module], depths: list[int], base: int = 64, classes: int = 1000
           ) -> nn.Module:
    """ResNet of He et al. (2016): 7x7 stem, four stages, global pooling, linear classifier."""
    layers: list[nn.Module] = [nn.Conv2d(3, base, 7, 2, 3, bias=False), nn.BatchNorm2d(base),
                               nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = base
    for stage, depth in enumerate(depths):
        width = base * 2 ** stage
        for i in range(depth):
            layers.append(block(cin, width, 2 if i == 0 and stage > 0 else 1))
            cin = width * block.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


NETWORKS: dict[str, tuple[Any, tuple[int, ...]]] = {  # name -> (factory, input shape)
    "mlp": (lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), (1, 64)),
    "small_cnn": (small_cnn, (1, 3, 32, 32)),
    "resnet18_w16": (lambda: resnet(BasicBlock, [2, 2, 2, 2], 16, 10), (1, 3, 32, 32)),
    "resnet18_w32": (lambda: resnet(BasicBlock, [2, 2, 2, 2], 32, 100), (1, 3, 32, 32)),
    "resnet18": (lambda: resnet(BasicBlock, [2, 2, 2, 2]), (1, 3, 64, 64)),
    "resnet50_w32": (lambda: resnet(Bottleneck, [3, 4, 6, 3], 32), (1, 3, 64, 64)),
    "resnet18_w96": (lambda: resnet(BasicBlock, [2, 2, 2, 2], 96), (1, 3, 64, 64)),
    "resnet50": (lambda: resnet(Bottleneck, [3, 4, 6, 3]), (1, 3, 64, 64)),
}


# measuring -----------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(l for l in f if l.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _tensor_mb(data: Any) -> float:
    return sum(v.numel() * v.element_size() for _, v in data.items()
               if isinstance(v, Tensor)) / 2**20


def measure(name: str, repeats: int) -> dict[str, Any]:
    """Convert network ``name`` ``repeats`` times in this process; sizes, times, peak memory."""
    import gc

    from metanets.graphs import to_parameter_graph

    factory, shape = NETWORKS[name]
    torch.manual_seed(0)
    module = factory().eval()
    inputs = (torch.randn(shape),)
    param_mb = sum(t.numel() * t.element_size() for t in module.state_dict().values()) / 2**20
    seconds, cpu_seconds, peaks = [], [], []
    for _ in range(repeats):
        data = None
        gc.collect()
        base = _rss_mb()
        _reset_peak()
        start, cpu_start = time.perf_counter(), time.process_time()
        data = to_parameter_graph(module, inputs)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
        peaks.append(_peak_mb() - base)
    graph_mb = _tensor_mb(data)
    return {
        "network": name, "params": sum(p.numel() for p in module.parameters()),
        "nodes": data.num_nodes, "edges": data.num_edges, "seconds": min(seconds),
        "seconds_all": [round(s, 3) for s in seconds], "cpu_seconds": min(cpu_seconds),
        "cpu_seconds_all": [round(s, 3) for s in cpu_seconds], "peak_mb": max(peaks),
        "graph_mb": graph_mb, "param_mb": param_mb, "graph_over_params": graph_mb / param_mb,
        "graph_mb_by_tensor": {k: round(v.numel() * v.element_size() / 2**20, 2)
                               for k, v in data.items() if isinstance(v, Tensor)},
    }


def _run_child(name: str, repeats: int) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-m", "experiments.graph_conversion", "--child", name,
         "--repeats", str(repeats)], check=True, capture_output=True, text=True, cwd=root)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("| network | params | nodes | edges | wall s | CPU s | peak MB | graph MB | param MB "
            "| graph / params |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    return head + "\n".join(
        f"| {r['network']} | {r['params']:,} | {r['nodes']:,} | {r['edges']:,} | "
        f"{r['seconds']:.3f} | {r['cpu_seconds']:.3f} | {r['peak_mb']:.0f} | "
        f"{r['graph_mb']:.1f} | {r['param_mb']:.1f} | "
        f"{r['graph_over_params']:.2f} |" for r in rows)


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=positive_int, default=3, help="conversions per network")
    parser.add_argument("--only", nargs="*", default=list(NETWORKS), choices=list(NETWORKS), help="network names")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.repeats)))
        return
    machine = _machine()
    rows = []
    for name in args.only:
        rows.append(_run_child(name, args.repeats))
        print(_table(rows[-1:]).splitlines()[-1], flush=True)
    report = {
        "command": " ".join(["python -m experiments.graph_conversion", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_at_end": os.getloadavg()},
        "goal": "25M params in < 2 s, graph memory <= 3x parameter memory",
        "notes": "wall s / CPU s: best of --repeats conversions (trace, shapes, graph); peak MB: "
                 "peak RSS above the RSS before conversion; graph MB: bytes of all tensors of the "
                 "Data; param MB: bytes of the state_dict; default kernel_width=9",
        "results": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "graph_conversion.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "graph_conversion.md").write_text(
        f"# Parameter-graph conversion\n\n`{report['command']}` on {report['date']}\n\n"
        f"Machine: `{json.dumps(report['machine'])}`\n\n{_table(rows)}\n")
    print(_table(rows))


if __name__ == "__main__":
    main()
