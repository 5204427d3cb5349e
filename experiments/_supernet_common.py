"""Shared bits of the experiment entry points: machine record and result files."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from experiments._results import file_stem_error

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Machine, load and command, recorded with every result."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "gpu": gpu,
        "command": "python " + " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def check_name(name: str, parser: argparse.ArgumentParser | None = None) -> str:
    """``name`` if it is a plain file stem; a path (``../x``, ``a/b``) would write outside RESULTS.

    Refused through ``parser`` when given (a usage error: exit 2, one line naming it), else with
    a ``ValueError``.
    """
    error = file_stem_error("--name", name)
    if error:
        if parser is not None:
            parser.error(f"{error} in {RESULTS}")
        raise ValueError(f"{error} in {RESULTS}")
    return name


def write_results(name: str, payload: dict[str, Any], markdown: str, quiet: bool = False) -> None:
    check_name(name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1, sort_keys=True))
    (RESULTS / f"{name}.md").write_text(markdown)
    if not quiet:
        print(markdown)


def kendall_tau(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)
