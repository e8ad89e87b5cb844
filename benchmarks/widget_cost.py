"""The live widget's own cost: ``LRWidget`` sweeps against the same sweeps headless, in one process.

:mod:`benchmarks.speed` runs every contender in its own process, which its memory figures need;
but on a shared two-core machine the quartiles of its cross-process ratios span about ±10%, wider
than the 5% (tiny MLP) and 2% (mid CNN) the widget's cost must stay under. Here every contender
runs in one process, on its own copy of the same model, in interleaved rounds (the order rotates
each round), and each round's CPU time (``time.process_time``: every thread of the process) is
divided by the headless sweep's time of the same round:

- ``headless``: ``find_lr`` and every rule's suggestion in the main thread, the answer the
  widget shows (speed.py's ``lr_widget-suggest``);
- ``headless-again``: the same once more, the A/A control: its ratio is the noise itself;
- ``headless-in-thread``: the same, run in the widget's sweep thread pool and waited for: the
  part of the widget's cost that comes from sweeping in a thread, with nothing drawn;
- ``live``: ``LRWidget(..., autostart=False)``, then ``run()`` and ``wait()`` per round;
- ``live-fresh-thread``: the same, each sweep in a newly started sweep thread, as a notebook's
  sweep is once the last one's thread has idled out (``IDLE_EXIT_S``): the thread start, and
  torch's intra-op thread count handed to that thread (:mod:`lr_widget.engine.threads`).

Outside a kernel a widget's comm is a dummy that drops each message before it is encoded. Here
each message goes through what ipykernel does with it short of the socket
(:func:`install_session_comm`): the comm message is built, JSON-encoded and HMAC-signed by a
``jupyter_client`` Session on the thread that sent it, as in a notebook. Messages are counted
and sized from those frames.

A last case runs beside a process spinning on one core, with torch's default thread count, as a
notebook's sweep runs beside a busy browser: its wall-time ratio is the widget under load.

A 2-step sweep isolates the per-sweep fixed cost (set-up, the drawings at start and end, the
suggestion markers and buttons, the thread hand-off); the 100-step sweeps give the ratios the
targets are about; a 400-step tiny sweep shows that fixed cost as a share of a longer sweep. The
process keeps the memory it frees (:func:`benchmarks.heap.keep_freed_memory`): with glibc's
default heap a mid-CNN round's page faults alone move its CPU time by 15% or more, depending on
which thread's arena it ran in. The median's 95% interval is distribution-free (order statistics)::

    .venv-bench/bin/python -m benchmarks.widget_cost           # about 5 minutes on two cores
    .venv-bench/bin/python -m benchmarks.widget_cost --quick   # a smoke run, under a minute

It writes ``benchmarks/results/widget_cost.json`` (``widget_cost-quick.json`` with ``--quick``)
and rewrites ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch

from benchmarks import report
from benchmarks.anchors import SweepSpec, prepare
from benchmarks.common import RESULTS_DIR
from benchmarks.speed import END_LR, SPEED_MODELS, START_LR
from benchmarks.speed_report import WIDGET_TARGETS
from benchmarks.stats import median, median_interval, pairwise_ratios, quartiles
from benchmarks.widget_cost_report import widget_cost_headline

__all__ = [
    "CONTENDERS",
    "TALLY",
    "WidgetCase",
    "install_session_comm",
    "main",
    "measure_case",
    "summarise_case",
]

BASELINE, CONTROL, IN_THREAD = "headless", "headless-again", "headless-in-thread"
LIVE, FRESH_THREAD = "live", "live-fresh-thread"
CONTENDERS = (BASELINE, CONTROL, IN_THREAD, LIVE, FRESH_THREAD)
SESSION_KEY = b"lr_widget benchmark"


@dataclass(frozen=True)
class WidgetCase:
    """A model of :data:`benchmarks.speed.SPEED_MODELS`, a sweep length, a round count, and the
    live/headless CPU ratio the case must stay under (None: a case that only informs)."""

    name: str
    model: str
    num_steps: int
    rounds: int
    target: float | None = None
    busy_cores: int = 0
    """Processes spinning on a core each while the case runs (a browser, another kernel)."""
    threads: int | None = None
    """Torch's intra-op threads for the case (``None``: the benchmark's one)."""


CASES = (
    WidgetCase("tiny-mlp, 2 steps", "tiny-mlp", 2, 41),
    WidgetCase("tiny-mlp", "tiny-mlp", 100, 41, WIDGET_TARGETS["tiny-mlp"]),
    # The per-sweep cost is fixed, so it shrinks as a share of a longer sweep.
    WidgetCase("tiny-mlp, 400 steps", "tiny-mlp", 400, 21),
    WidgetCase("mid-cnn", "mid-cnn", 100, 21, WIDGET_TARGETS["mid-cnn"]),
    # Under load, as in a notebook beside a busy core, with torch's default thread count: the
    # widget's sweep thread against the same sweep headless (wall time: waiting counts).
    WidgetCase(
        "tiny-mlp, one busy core", "tiny-mlp", 100, 21, busy_cores=1, threads=os.cpu_count() or 1
    ),
)


@contextmanager
def _under_load(case: WidgetCase) -> Iterator[None]:
    """``case.busy_cores`` spinning processes and ``case.threads`` torch threads while inside."""
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(case.busy_cores)
    ]
    threads = torch.get_num_threads()
    if case.threads is not None:
        torch.set_num_threads(case.threads)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        for process in busy:
            process.kill()
            process.wait()


# -- a comm that costs what a kernel's does ---------------------------------------------------
class MessageTally:
    """How many messages the comms sent since :meth:`reset`, the largest one's bytes, and the
    frames of the last one (as a kernel would write them to its IOPub socket)."""

    def __init__(self) -> None:
        self.messages, self.largest_bytes = 0, 0
        self.last_frames: list[Any] = []

    def reset(self) -> None:
        self.messages, self.largest_bytes, self.last_frames = 0, 0, []

    def record(self, frames: list[Any]) -> None:
        self.messages += 1
        self.largest_bytes = max(self.largest_bytes, sum(memoryview(f).nbytes for f in frames))
        self.last_frames = frames


TALLY = MessageTally()


def install_session_comm() -> None:
    """Make every comm opened from now on encode and sign its messages as ipykernel's does,
    short of the socket, and count them in :data:`TALLY`.

    Imported here, not at the top, so that this module imports without ``comm`` and
    ``jupyter_client`` (the widget's own dependencies pull them in).
    """
    import comm
    from comm.base_comm import BaseComm
    from jupyter_client.session import Session

    session = Session(key=SESSION_KEY)  # signs, as a kernel started with a key does

    class SessionComm(BaseComm):
        def publish_msg(
            self,
            msg_type: str,
            data: dict[str, Any] | None = None,
            metadata: dict[str, Any] | None = None,
            buffers: list[Any] | None = None,
            **keys: Any,
        ) -> None:
            # ipykernel.comm.Comm.publish_msg, then Session.send up to the socket.
            content = {"data": data or {}, "comm_id": self.comm_id, **keys}
            message = session.msg(msg_type, content=content, parent={}, metadata=metadata or {})
            frames: list[Any] = session.serialize(message, self.topic)
            frames.extend(buffers or [])
            TALLY.record(frames)

    comm.create_comm = SessionComm


# -- the contenders ---------------------------------------------------------------------------
def _in_sweep_thread(run: Callable[[], Any]) -> Callable[[], Any]:
    """``run`` handed to the widget's sweep threads, waited for as ``LRWidget.wait`` does."""
    from lr_widget.widget.runner import SWEEP_THREADS

    def in_thread() -> Any:
        done = threading.Event()
        SWEEP_THREADS.submit(run, done.set)
        done.wait()

    return in_thread


def _in_fresh_threads(run: Callable[[], Any]) -> Callable[[], Any]:
    """``run`` with an empty pool of sweep threads, so that its sweep starts a thread (the
    pool's thread idles out after ``IDLE_EXIT_S``, as in a notebook)."""
    from lr_widget.widget import runner

    def fresh() -> Any:
        shared = runner.SWEEP_THREADS
        runner.SWEEP_THREADS = runner.SweepThreads()
        try:
            return run()
        finally:
            runner.SWEEP_THREADS = shared

    return fresh


def prepare_contenders(case: WidgetCase) -> dict[str, Callable[[], Any]]:
    """One runner per contender, each with its own model built from seed 0."""
    model = SPEED_MODELS[case.model]
    spec = SweepSpec(START_LR, END_LR, case.num_steps, stop_on_divergence=False, suggest=False)
    runners: dict[str, Callable[[], Any]] = {}
    for name in CONTENDERS:
        kind = "lr_widget-live" if name in (LIVE, FRESH_THREAD) else "lr_widget-suggest"
        runner = prepare(kind, model.build(0), spec)
        if name == IN_THREAD:
            runner = _in_sweep_thread(runner)
        elif name == FRESH_THREAD:
            runner = _in_fresh_threads(runner)
        runners[name] = runner
    return runners


# -- measuring ----------------------------------------------------------------------------------
def measure_case(case: WidgetCase, rounds: int) -> dict[str, Any]:
    """CPU and wall seconds of every contender, ``rounds`` interleaved rounds after two untimed
    ones; and the live widget's messages per sweep (from an untimed sweep, after)."""
    runners = prepare_contenders(case)
    cpu: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    wall: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with _under_load(case):
        for _ in range(2):
            for run in runners.values():
                run()
        for index in range(rounds):
            shift = index % len(CONTENDERS)
            for name in [*CONTENDERS[shift:], *CONTENDERS[:shift]]:
                gc.collect()
                started_cpu, started_wall = time.process_time(), time.perf_counter()
                runners[name]()
                cpu[name].append(time.process_time() - started_cpu)
                wall[name].append(time.perf_counter() - started_wall)
    TALLY.reset()
    runners[LIVE]()
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "messages_per_sweep": TALLY.messages,
        "largest_message_bytes": TALLY.largest_bytes,
    }


def _against(times: Mapping[str, Sequence[float]], baseline: str, name: str) -> dict[str, Any]:
    """``name``'s times against ``baseline``'s in the same rounds: the median ratio, its
    quartiles and 95% interval, and the median difference in milliseconds."""
    ratios = pairwise_ratios(times, baseline)[name]
    extra_ms = [(a - b) * 1e3 for a, b in zip(times[name], times[baseline], strict=True)]
    return {
        "ratio": median(ratios),
        "ratio_quartiles": quartiles(ratios),
        "ratio_interval": median_interval(ratios),
        "extra_ms": median(extra_ms),
    }


def summarise_case(case: WidgetCase, raw: dict[str, Any]) -> dict[str, Any]:
    """Per contender: the median ratio to ``headless`` (same round) in CPU and wall time, its
    quartiles and 95% interval, and the median CPU milliseconds beyond ``headless``; and the
    drawing alone: ``live`` against ``headless-in-thread`` (the same sweep in the same pool)."""
    rows = {}
    for name in CONTENDERS:
        row: dict[str, Any] = {"median_cpu_ms": median(raw["cpu_s"][name]) * 1e3}
        for clock in ("cpu", "wall"):
            compared = _against(raw[f"{clock}_s"], BASELINE, name)
            row.update({f"{clock}_{key}": value for key, value in compared.items()})
        rows[name] = row
    drawing = _against(raw["cpu_s"], IN_THREAD, LIVE)
    return {
        "case": case.name,
        "model": case.model,
        "description": SPEED_MODELS[case.model].description,
        "num_steps": case.num_steps,
        "rounds": len(raw["cpu_s"][BASELINE]),
        "target": case.target,
        "busy_cores": case.busy_cores,
        "threads": case.threads or 1,
        "contenders": rows,
        **{f"drawing_cpu_{key}": value for key, value in drawing.items()},
        "messages_per_sweep": raw["messages_per_sweep"],
        "largest_message_bytes": raw["largest_message_bytes"],
        "raw": raw,
    }


def run_benchmark(quick: bool) -> dict[str, Any]:
    """Every case; the results document written to ``widget_cost.json``."""
    from benchmarks.environment import describe_environment
    from benchmarks.heap import keep_freed_memory

    heap = keep_freed_memory()  # else page faults swing a mid-CNN round by 15% (benchmarks/heap.py)
    torch.set_num_threads(1)
    install_session_comm()
    environment = {**describe_environment(1), "heap": heap}
    cases = []
    for case in CASES:
        rounds = 3 if quick else case.rounds
        if quick:
            case = replace(case, num_steps=min(case.num_steps, 10), rounds=rounds)
        print(f"{case.name}: {rounds} rounds of {case.num_steps}-step sweeps", flush=True)
        cases.append(summarise_case(case, measure_case(case, rounds)))
    return {"quick": quick, "environment": environment, "cases": cases}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 steps, 3 rounds")
    args = parser.parse_args(argv)
    results = run_benchmark(args.quick)
    RESULTS_DIR.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS_DIR / f"widget_cost{suffix}.json").write_text(json.dumps(results, indent=1))
    path = report.write_results(RESULTS_DIR, quick=args.quick)
    for line in widget_cost_headline(results):
        print(line)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
