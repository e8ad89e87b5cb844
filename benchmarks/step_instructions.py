"""lr_widget's per-step and per-sweep cost on the tiny MLP, in instructions: a noise-free figure.

Timing a 20 µs difference on a step of about a millisecond needs a quiet machine; a shared VM's
A/A control swings by more than that. Instructions retired do not depend on the neighbours, so
this counts them with valgrind's callgrind for the bare loop and for ``find_lr`` of
:mod:`benchmarks.step_overhead` (same model, batches and AdamW). Each count is one process: a
warm-up sweep of :data:`WARMUP_STEPS`, then a timed sweep of ``steps`` (none for the warm-up-only
count), so that

- per step = (count(long) - count(short)) / (long - short), for each contender;
- per sweep (warm) = count(short) - count(warm-up only) - short x per step.

The per-step difference becomes microseconds at the bare loop's own rate (its CPU time per step
measured natively, divided by its instructions per step), assuming lr_widget's Python runs at
the bare step's instructions per cycle. The per-sweep cost is also timed natively (2-step sweeps,
interleaved, CPU time): its instructions run at another rate than torch's kernels do::

    python -m benchmarks.step_instructions          # about 12 minutes on two cores

It saves ``results/step_instructions.json`` and rewrites ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from benchmarks import report, step_overhead
from benchmarks.common import RESULTS_DIR
from benchmarks.environment import describe_environment

__all__ = ["main", "parse_collected", "summarise"]

CONTENDERS = ("bare", "lr_widget")
WARMUP_STEPS = 50
SHORT_STEPS, LONG_STEPS = 50, 250
_COLLECTED = re.compile(r"Collected\s*:\s*([\d,]+)")


def parse_collected(valgrind_stderr: str) -> int:
    """The instruction count from callgrind's summary (``==1== Collected : 10579904054``).

    >>> parse_collected("==9== Events    : Ir\\n==9== Collected : 1,234\\n")
    1234
    """
    match = _COLLECTED.search(valgrind_stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{valgrind_stderr[-2000:]}")
    return int(match.group(1).replace(",", ""))


def summarise(
    counts: Mapping[str, Mapping[int, int]], bare_cpu_s_per_step: float
) -> dict[str, Any]:
    """Per-step and per-sweep figures from ``counts[contender][steps]`` (steps 0, short, long).

    >>> counts = {"bare": {0: 100, 50: 600, 250: 2600}, "lr_widget": {0: 150, 50: 700, 250: 2740}}
    >>> figures = summarise(counts, 1e-3)
    >>> figures["per_step"]["bare"], figures["per_step"]["lr_widget"], figures["extra_per_step"]
    (10.0, 10.2, 0.2)
    >>> figures["extra_per_sweep"]  # (700 - 150 - 50 x 10.2) - (600 - 100 - 50 x 10)
    40.0
    """
    span = LONG_STEPS - SHORT_STEPS
    per_step = {name: (c[LONG_STEPS] - c[SHORT_STEPS]) / span for name, c in counts.items()}
    per_sweep = {
        name: c[SHORT_STEPS] - c[0] - SHORT_STEPS * per_step[name] for name, c in counts.items()
    }
    extra_step = per_step["lr_widget"] - per_step["bare"]
    extra_sweep = per_sweep["lr_widget"] - per_sweep["bare"]
    seconds_per_instruction = bare_cpu_s_per_step / per_step["bare"]
    return {
        "counts": {name: {str(k): v for k, v in c.items()} for name, c in counts.items()},
        "per_step": {name: round(value, 1) for name, value in per_step.items()},
        "per_sweep": {name: round(value, 1) for name, value in per_sweep.items()},
        "extra_per_step": round(extra_step, 1),
        "extra_per_sweep": round(extra_sweep, 1),
        "step_ratio": per_step["lr_widget"] / per_step["bare"],
        "bare_cpu_us_per_step": bare_cpu_s_per_step * 1e6,
        "extra_us_per_step": extra_step * seconds_per_instruction * 1e6,
        "extra_ms_per_sweep_at_bare_rate": extra_sweep * seconds_per_instruction * 1e3,
    }


def _worker(contender: str, steps: int) -> None:
    torch.set_num_threads(1)
    sweep = step_overhead.bare_loop if contender == "bare" else step_overhead.lr_widget_sweep
    sweep(WARMUP_STEPS)
    if steps:
        sweep(steps)


def _count(contender: str, steps: int, valgrind: str) -> int:
    command = [
        valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, "-m", "benchmarks.step_instructions",
        "--worker", contender, "--steps", str(steps),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # the same dict layouts in every process
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return parse_collected(done.stderr)


def bare_cpu_per_step(rounds: int = 9) -> float:
    """The bare loop's median CPU seconds per step over ``LONG_STEPS``-step sweeps, natively."""
    torch.set_num_threads(1)
    step_overhead.bare_loop(WARMUP_STEPS)
    sweeps = [step_overhead.bare_loop(LONG_STEPS)[0] for _ in range(rounds)]
    return statistics.median(sweeps) / LONG_STEPS


def native_extra_per_sweep(rounds: int = 21) -> float:
    """Median CPU seconds of a warm 2-step ``find_lr`` beyond a 2-step bare loop, interleaved:
    the per-sweep cost timed natively (the instruction count cannot say how fast it runs)."""
    torch.set_num_threads(1)
    step_overhead.lr_widget_sweep(WARMUP_STEPS)
    step_overhead.bare_loop(WARMUP_STEPS)
    extra = []
    for _ in range(rounds):
        ours, bare = step_overhead.lr_widget_sweep(2)[0], step_overhead.bare_loop(2)[0]
        extra.append(ours - bare)
    return statistics.median(extra)


def run(valgrind: str) -> dict[str, Any]:
    """Every count (two processes at a time), then the native rate, then the figures."""
    jobs = [(name, steps) for name in CONTENDERS for steps in (0, SHORT_STEPS, LONG_STEPS)]

    def count_job(job: tuple[str, int]) -> int:
        contender, steps = job
        return _count(contender, steps, valgrind)

    with ThreadPoolExecutor(max_workers=2) as pool:
        found = list(pool.map(count_job, jobs))
    counts: dict[str, dict[int, int]] = {name: {} for name in CONTENDERS}
    for (name, steps), count in zip(jobs, found, strict=True):
        counts[name][steps] = count
    cpu_per_step = bare_cpu_per_step()
    native_sweep = native_extra_per_sweep()
    return {
        "native_extra_ms_per_sweep": native_sweep * 1e3,
        "environment": describe_environment(torch_threads=1),
        "model": "MLP 32-64-10, batch 64, AdamW (benchmarks/step_overhead.py)",
        "warmup_steps": WARMUP_STEPS,
        "steps": [SHORT_STEPS, LONG_STEPS],
        **summarise(counts, cpu_per_step),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker(args.worker, args.steps)
        return 0
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    results = run(valgrind)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "step_instructions.json").write_text(json.dumps(results, indent=1))
    path = report.write_results(RESULTS_DIR)
    print(
        f"lr_widget per step: {results['extra_per_step']:+.0f} instructions "
        f"(x{results['step_ratio']:.4f} of the bare loop's), about "
        f"{results['extra_us_per_step']:.1f} µs CPU; per sweep: "
        f"{results['extra_per_sweep']:+.0f} instructions, "
        f"{results['native_extra_ms_per_sweep']:.2f} ms CPU timed natively; wrote {path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
