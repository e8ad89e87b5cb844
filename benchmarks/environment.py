"""Facts about the machine and the software a benchmark ran on, recorded with its results."""

from __future__ import annotations

import datetime as _datetime
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["cpu_model", "describe_environment", "git_revision", "load_average", "package_version"]

REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (or ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    """Total memory in GiB from ``/proc/meminfo``."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def package_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or ``None``."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def git_revision() -> str | None:
    """The repository's commit, with ``+dirty`` when the work tree has changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
            text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, to two decimals."""
    return [round(load, 2) for load in os.getloadavg()]


def describe_environment(torch_threads: int | None = None) -> dict[str, Any]:
    """Machine, versions, date and load: everything a results table needs to be read."""
    import numpy
    import torch

    from benchmarks.anchors import anchor_versions

    return {
        "date": _datetime.datetime.now(_datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "load_average": load_average(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch_threads if torch_threads is not None else torch.get_num_threads(),
        "numpy": numpy.__version__,
        "lr_widget": package_version("lr_widget"),
        "lr_widget_commit": git_revision(),
        "anchors": anchor_versions(),
        "scikit-learn": package_version("scikit-learn"),
        "ipywidgets": package_version("ipywidgets"),
        "bqplot": package_version("bqplot"),
    }
