"""A steady glibc heap for a benchmark process: freed memory is kept for reuse, not handed back.

By default glibc's malloc gives freed memory back to the kernel (it trims the top of the heap and
unmaps large blocks), then takes a page fault on every page when it grows again. On the mid CNN of
:mod:`benchmarks.speed` that came to 80,000-290,000 minor faults and 0.17-0.45 s of system time in
a 2 s sweep, and how many depends on the heap's state (the main thread's arena or a thread's, what
ran before): one round's CPU time moved by 15% or more against the next, far more than the 2% a
benchmark of the widget's cost must resolve. With both thresholds fixed high the faults are gone,
for every contender alike. :func:`keep_freed_memory` is what the widget-cost benchmark calls; run
as a module, this measures the effect on a headless mid-CNN sweep, each setting in its own process,
in interleaved rounds::

    .venv-bench/bin/python -m benchmarks.heap    # about 2 minutes on two cores

It writes ``benchmarks/results/heap.json`` and rewrites ``RESULTS.md``.

A process-wide setting that cannot be undone (glibc stops adapting its thresholds once one is
set), so only benchmark processes call it, before they build anything.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import RESULTS_DIR

__all__ = [
    "MMAP_THRESHOLD_BYTES",
    "TRIM_THRESHOLD_BYTES",
    "keep_freed_memory",
    "summarise",
]

MODES = ("default", "kept")  # glibc's own thresholds; keep_freed_memory()'s
MODEL, NUM_STEPS, TIMED_SWEEPS = "mid-cnn", 100, 2

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest on 64-bit: smaller blocks come from the heap
TRIM_THRESHOLD_BYTES = 1 << 30  # free memory at the heap's top is kept up to 1 GiB


def keep_freed_memory() -> dict[str, int] | None:
    """Fix this process's glibc mmap and trim thresholds; the values set, or None where the C
    library is not glibc (or refused them) and the heap keeps its default behaviour."""
    if platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    if libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        return None
    if libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) != 1:
        return None
    return _thresholds()


def _thresholds() -> dict[str, int]:
    return {
        "mmap_threshold_bytes": MMAP_THRESHOLD_BYTES,
        "trim_threshold_bytes": TRIM_THRESHOLD_BYTES,
    }


# -- measuring ----------------------------------------------------------------------------------
def _worker(mode: str) -> None:
    """One warm-up and :data:`TIMED_SWEEPS` timed headless sweeps in the main thread, as a
    script runs them; prints each sweep's CPU and system seconds and minor page faults."""
    import torch

    from benchmarks.anchors import SweepSpec, prepare
    from benchmarks.speed import END_LR, SPEED_MODELS, START_LR

    heap = keep_freed_memory() if mode == "kept" else None
    if mode == "kept" and heap is None:
        raise RuntimeError("this C library is not glibc, or it refused the thresholds")
    torch.set_num_threads(1)
    spec = SweepSpec(START_LR, END_LR, NUM_STEPS, stop_on_divergence=False, suggest=False)
    run = prepare("lr_widget-suggest", SPEED_MODELS[MODEL].build(0), spec)
    run()
    sweeps = []
    for _ in range(TIMED_SWEEPS):
        before, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
        run()
        after, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time() - cpu
        sweeps.append(
            {
                "cpu_s": cpu,
                "system_s": after.ru_stime - before.ru_stime,
                "minor_faults": after.ru_minflt - before.ru_minflt,
            }
        )
    print(json.dumps(sweeps))


def _measure(mode: str) -> list[dict[str, float]]:
    command = [sys.executable, "-m", "benchmarks.heap", "--worker", mode]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    sweeps: list[dict[str, float]] = json.loads(done.stdout.splitlines()[-1])
    return sweeps


def summarise(rounds: Sequence[dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    """Per mode, the median over every sweep of CPU and system seconds and page faults; and the
    kept heap's CPU time over the default's, per round (each round's medians), with its median
    and 95% interval.

    >>> sweep = lambda cpu, faults: [{"cpu_s": cpu, "system_s": 0.1, "minor_faults": faults}]
    >>> figures = summarise([{"default": sweep(2.0, 9), "kept": sweep(1.5, 1)}] * 6)
    >>> figures["modes"]["kept"]["minor_faults"], figures["cpu_ratio"]
    (1.0, 0.75)
    """
    from benchmarks.stats import median, median_interval

    modes = {
        mode: {
            key: median([sweep[key] for one in rounds for sweep in one[mode]])
            for key in ("cpu_s", "system_s", "minor_faults")
        }
        for mode in MODES
    }
    ratios = [
        median([s["cpu_s"] for s in one["kept"]]) / median([s["cpu_s"] for s in one["default"]])
        for one in rounds
    ]
    return {
        "modes": modes,
        "cpu_ratios": ratios,
        "cpu_ratio": median(ratios),
        "cpu_ratio_interval": median_interval(ratios),
    }


def run_benchmark(rounds: int) -> dict[str, Any]:
    """``rounds`` rounds of one process per mode, the order alternating; the results document."""
    from benchmarks.environment import describe_environment, load_average
    from benchmarks.speed import SPEED_MODELS

    environment = describe_environment(1)
    measured = []
    for index in range(rounds):
        order = MODES if index % 2 == 0 else MODES[::-1]
        measured.append({mode: _measure(mode) for mode in order})
        print(f"round {index + 1}/{rounds} done", flush=True)
    environment["load_average_end"] = load_average()
    return {
        "environment": environment,
        "model": MODEL,
        "description": SPEED_MODELS[MODEL].description,
        "num_steps": NUM_STEPS,
        "rounds": rounds,
        "thresholds": _thresholds(),
        **summarise(measured),
        "raw": measured,
    }


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7, help="process pairs (default 7)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker)
        return 0
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    results = run_benchmark(args.rounds)
    path = RESULTS_DIR / "heap.json"
    path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    print(f"wrote {report.write_results(RESULTS_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
