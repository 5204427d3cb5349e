"""Write a benchmark's results with the machine, its load, the command and the date."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

RESULTS = Path(__file__).resolve().parent / "results"


def file_stem_error(option: str, name: str) -> str | None:
    """The message for ``option``'s value ``name`` if it is not a plain file stem (a path such
    as ``../x`` would write outside experiments/results/), else ``None``."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", name):
        return None
    return f"{option} {name!r} must be letters, digits, '_' or '-' (a file stem)"


def positive_int(text: str) -> int:
    """An argparse ``type``: a count that must be >= 1 (0 or less ran an empty benchmark)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 1")
    return value


def positive_ints(text: str) -> list[int]:
    """An argparse ``type``: comma-separated counts, each >= 1."""
    return [positive_int(part) for part in text.split(",")]


def resolved_name(resolve: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type`` of a name: ``resolve(text)``, e.g. ``nas.tasks.resolve_dataset``
    (the canonical name); the ``ValueError`` of an unknown name, which names it and the choices,
    becomes a usage error (exit 2, one line) instead of a traceback once the run started."""

    def parse(text: str) -> T:
        try:
            return resolve(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def resolved_names(resolve: Callable[[str], T]) -> Callable[[str], list[T]]:
    """An argparse ``type``: comma-separated names, each as :func:`resolved_name`."""
    one = resolved_name(resolve)
    return lambda text: [one(part) for part in text.split(",")]


def result_file_error(option: str, name: str, producer: str, results: Path = RESULTS) -> str | None:
    """Why ``name`` (given to ``option``) names no JSON result file of ``results``, else
    ``None``: a path instead of a file stem, or no such file (``producer``: the script that
    writes it)."""
    error = file_stem_error(option, name)
    if error:
        return error
    path = results / f"{name}.json"
    return None if path.is_file() else f"{option} {name!r}: there is no {path} (a result of {producer})"


def named_counts(resolve: Callable[[str], str]) -> Callable[[str], dict[str, int]]:
    """An argparse ``type``: comma-separated ``NAME=COUNT`` pairs (``gp=5,tpe=10``), each name
    resolved as by :func:`resolved_name` (a typo was ignored), each count as :func:`positive_int`;
    ``""`` is no pair."""
    name = resolved_name(resolve)

    def parse(text: str) -> dict[str, int]:
        pairs = {}
        for part in filter(None, text.split(",")):
            key, sep, value = part.partition("=")
            if not sep:
                raise argparse.ArgumentTypeError(f"{part!r} must look like NAME=COUNT, e.g. gp=5")
            resolved = name(key.strip())
            if resolved in pairs:
                raise argparse.ArgumentTypeError(f"{resolved!r} given twice in {text!r}")
            pairs[resolved] = positive_int(value.strip())
        return pairs

    return parse


def machine() -> dict[str, Any]:
    """The machine and its load when the results are written (the end of the run: a benchmark
    that wants its load at the start records it in its payload)."""
    import torch

    return {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_when_written": list(os.getloadavg()),
    }


def write_results(name: str, payload: dict[str, Any], table_md: str) -> Path:
    """``experiments/results/<name>.json`` and ``.md``; returns the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    document = {**header, **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    meta = "\n".join(f"- {key}: `{value}`" for key, value in header.items() if key != "machine")
    mach = "\n".join(f"- {key}: `{value}`" for key, value in header["machine"].items())
    (RESULTS / f"{name}.md").write_text(f"# {name}\n\n{meta}\n{mach}\n\n{table_md}\n")
    return path
