"""Speed and memory of a range test: lr_widget against the anchors and a bare training loop.

Every contender runs the same sweep (same model, data, optimizer, LRs and number of steps, no
early stop) in its own worker process, so that its peak RSS is its own. The workers start
together and then take turns: each repetition runs every contender once, in a rotating order,
and a contender's time is divided by the bare loop's time *of the same repetition*; the median
of those ratios is reported. One untimed warm-up round comes first.

Run it with the benchmark environment (``bash benchmarks/setup_env.sh``)::

    .venv-bench/bin/python -m benchmarks.speed            # 5-6 minutes on a busy 2-core machine
    .venv-bench/bin/python -m benchmarks.speed --quick    # a smoke run, a few minutes

It writes ``benchmarks/results/speed.json`` and rewrites ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks import report
from benchmarks.anchors import ANCHORS, Setup, SweepSpec, prepare
from benchmarks.common import RESULTS_DIR
from benchmarks.stats import median, pairwise_ratios, quartiles
from benchmarks.tasks import batch_loader

__all__ = ["SPEED_MODELS", "SpeedModel", "main", "summarise_model"]

BASELINE = "bare"
CONTROL = "bare-again"
HEADLESS, LIVE = "lr_widget", "lr_widget-live"
# The live widget's baseline: find_lr and then every suggestion, the answer the widget shows.
ANSWERED = "lr_widget-suggest"
# Every contender sweeps this range: wide enough to be a real test, low enough that no
# contender's loss turns non-finite (lr_widget stops at a non-finite loss; the others do not).
START_LR, END_LR = 1e-6, 1e-2


# -- the models ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeedModel:
    """A model and data to time, with its sweep length and number of repetitions."""

    name: str
    description: str
    num_steps: int
    repetitions: int
    build: Callable[[int], Setup]
    only: tuple[str, ...] | None = None  # the contenders timed on it (default: all)


def adamw(parameters: Any, lr: float) -> torch.optim.Optimizer:
    """AdamW with torch's defaults: the optimizer of every speed run."""
    return torch.optim.AdamW(parameters, lr=lr)


@functools.cache
def _tiny_data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(4096, 32, generator=generator)
    teacher = torch.randn(32, 10, generator=generator)
    return inputs, (inputs @ teacher).argmax(1)


def tiny_mlp_setup(seed: int) -> Setup:
    """MLP 32-64-10 (2.8k parameters), batch 64: a step costs well under a millisecond, so
    any per-step overhead of a finder shows."""
    inputs, targets = _tiny_data()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    return Setup(model, adamw, batch_loader(inputs, targets, 64, seed), F.cross_entropy)


@functools.cache
def _image_data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(1024, 3, 32, 32, generator=generator)
    return images, torch.randint(0, 10, (1024,), generator=generator)


def _conv_block(inputs: int, outputs: int) -> list[nn.Module]:
    return [
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(),
    ]


def mid_cnn_setup(seed: int) -> Setup:
    """A 4-block conv + BatchNorm network on 3x32x32 images (61k parameters), batch 16: a
    step costs tens of milliseconds, so per-step overhead should vanish."""
    images, labels = _image_data()
    torch.manual_seed(seed)
    model = nn.Sequential(
        *_conv_block(3, 16), *_conv_block(16, 32), nn.MaxPool2d(2),
        *_conv_block(32, 64), nn.MaxPool2d(2), *_conv_block(64, 64), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip
    return Setup(model, adamw, batch_loader(images, labels, 16, seed), F.cross_entropy)


SPEED_MODELS: dict[str, SpeedModel] = {
    "tiny-mlp": SpeedModel("tiny-mlp", "MLP 32-64-10, batch 64, AdamW", 100, 20, tiny_mlp_setup),
    "mid-cnn": SpeedModel(
        "mid-cnn", "4 conv+BatchNorm blocks on 3x32x32, batch 16, AdamW", 100, 12, mid_cnn_setup
    ),
    # A long sweep in the widget: the browser payload must stay bounded (drawn points are
    # decimated) while the result keeps every step.
    "tiny-mlp-10k": SpeedModel(
        "tiny-mlp-10k",
        "MLP 32-64-10, batch 64, AdamW",
        10_000,
        3,
        tiny_mlp_setup,
        only=("bare", "bare-again", HEADLESS, ANSWERED, LIVE),
    ),
}


# -- the worker (one contender, one process) ----------------------------------------------------
def current_rss_kib() -> int:
    """This process's resident set size now, in KiB."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_rss_kib() -> int:
    """This process's peak resident set size so far, in KiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark of this process's RSS (``VmHWM``; Linux >= 4.0).

    Returns whether it worked; without it, a sweep's peak cannot be told from an earlier one.
    """
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def high_water_rss_kib() -> int:
    """``VmHWM`` from ``/proc/self/status``: the peak RSS since the last reset, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def timed_sweep(contender: str, model: SpeedModel) -> dict[str, Any]:
    """Build a fresh setup, prepare the contender (untimed), then time its sweep."""
    setup = model.build(0)
    spec = SweepSpec(START_LR, END_LR, model.num_steps, stop_on_divergence=False, suggest=False)
    runner = prepare(contender, setup, spec)
    gc.collect()
    peak_resets = reset_peak_rss()
    resident = current_rss_kib()
    wall, cpu = time.perf_counter(), time.process_time()
    sweep = runner()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    reply: dict[str, Any] = {"wall_s": wall, "cpu_s": cpu, "steps": sweep.num_steps}
    if peak_resets:
        reply["sweep_rss_increase_kib"] = high_water_rss_kib() - resident
    if "traffic" in sweep.extra:  # sized only now, after the clock stopped
        reply.update(sweep.extra["traffic"]())
    result = sweep.extra.get("result")
    if result is not None:
        reply["snapshot_bytes"] = result.metadata.get("snapshot_bytes")
        reply["engine_timings"] = {k: v for k, v in result.timings.items() if k != "step_s"}
    reply["peak_rss_kib"] = peak_rss_kib()
    return reply


def tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Total bytes of ``tensors``' elements."""
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the tensors of ``optimizer``'s per-parameter state."""
    tensors = [
        value
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    ]
    return tensor_bytes(tensors)


def snapshot_accounting(model: SpeedModel, keep_grads: bool) -> dict[str, int]:
    """What lr_widget's restore snapshot holds after one real training step.

    The optimizer then has state (Adam's two moments); with ``keep_grads`` the gradients of that
    step are left on the parameters, as they are between ``backward`` and ``zero_grad``.
    """
    from lr_widget.find import find_lr

    setup = model.build(0)
    optimizer = setup.make_optimizer(setup.model.parameters(), 1e-3)
    inputs, targets = next(iter(setup.train_loader))
    setup.loss_fn(setup.model(inputs), targets).backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    if not keep_grads:
        optimizer.zero_grad(set_to_none=True)
    result = find_lr(setup.model, setup.train_loader, setup.loss_fn, optimizer, num_steps=5)
    return {
        "snapshot_bytes": int(result.metadata["snapshot_bytes"]),
        "parameter_bytes": tensor_bytes(list(setup.model.parameters())),
        "buffer_bytes": tensor_bytes(list(setup.model.buffers())),
        "gradient_bytes": tensor_bytes(
            [p.grad for p in setup.model.parameters() if p.grad is not None]
        ),
        "optimizer_state_bytes": optimizer_state_bytes(optimizer),
    }


def serve(contender: str, model_name: str, threads: int, num_steps: int) -> None:
    """Worker main loop: answer ``run``, ``snapshot`` and ``quit`` requests, one JSON line each.

    The first sweep runs at once, untimed for the comparison: it warms the contender up and, in
    this fresh process where no freed memory can be reused yet, measures how far one sweep
    raises the RSS. The protocol uses the process's original stdout; whatever libraries print
    goes to stderr.
    """
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    torch.set_num_threads(threads)
    model = _with_steps(SPEED_MODELS[model_name], num_steps)
    first = timed_sweep(contender, model)
    gc.collect()
    gc.freeze()  # what is alive now stays: later full collections skip it (quick, not timed)
    _reply(channel, {"first": first})
    for line in sys.stdin:
        request = line.strip()
        if request == "run":
            _reply(channel, timed_sweep(contender, model))
        elif request.startswith("snapshot"):
            _reply(channel, snapshot_accounting(model, keep_grads=request.endswith("grads")))
        elif request == "quit":
            return


def _with_steps(model: SpeedModel, num_steps: int) -> SpeedModel:
    return dataclasses.replace(model, num_steps=num_steps)


def _reply(channel: IO[str], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


# -- the parent ---------------------------------------------------------------------------------
class Worker:
    """A worker process running :func:`serve` for one contender."""

    def __init__(self, contender: str, model: SpeedModel, threads: int, log: IO[str]) -> None:
        self.contender = contender
        command = [
            sys.executable, "-m", "benchmarks.speed", "--worker", contender, "--model",
            model.name, "--threads", str(threads), "--steps", str(model.num_steps),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )  # fmt: skip
        self.ready: dict[str, Any] | None = None

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the {self.contender} worker exited (code {self.process.wait()}); see its log"
            )
        message: dict[str, Any] = json.loads(line)
        return message

    def request(self, message: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(message + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def measure_model(
    model: SpeedModel, contenders: Sequence[str], repetitions: int, threads: int, log: IO[str]
) -> dict[str, Any]:
    """Run every contender ``repetitions`` times, interleaved; return the raw measurements."""
    workers = {name: Worker(name, model, threads, log) for name in contenders}
    try:
        first = {name: worker.receive()["first"] for name, worker in workers.items()}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
        for repetition in range(repetitions):
            shift = repetition % len(contenders)
            for name in [*contenders[shift:], *contenders[:shift]]:
                runs[name].append(workers[name].request("run"))
            print(f"  {model.name}: repetition {repetition + 1}/{repetitions} done", flush=True)
        snapshot = None
        if HEADLESS in workers:
            snapshot = {
                "grads_cleared": workers[HEADLESS].request("snapshot"),
                "grads_kept": workers[HEADLESS].request("snapshot grads"),
            }
    finally:
        for worker in workers.values():
            worker.close()
    return {"runs": runs, "first": first, "snapshot": snapshot}


def _per_step_overheads(times: dict[str, list[float]], name: str, steps: int) -> list[float]:
    """Microseconds per step that ``name`` spent beyond the bare loop, repetition by repetition."""
    return [
        (mine - base) / steps * 1e6
        for mine, base in zip(times[name], times[BASELINE], strict=False)
    ]


def _memory(raw: dict[str, Any], name: str) -> dict[str, float]:
    """Peak RSS of the worker, and how far its first sweep raised the RSS (also versus bare)."""
    first = raw["first"]
    increase = first[name].get("sweep_rss_increase_kib", math.nan)
    base = first[BASELINE].get("sweep_rss_increase_kib", math.nan)
    return {
        "peak_rss_mib": max(run["peak_rss_kib"] for run in [first[name], *raw["runs"][name]])
        / 1024,
        "sweep_increment_mib": increase / 1024,
        "extra_over_bare_mib": (increase - base) / 1024,
    }


def summarise_model(model: SpeedModel, raw: dict[str, Any]) -> dict[str, Any]:
    """Medians, pairwise ratios, per-step overheads and memory for one model."""
    runs = raw["runs"]
    wall = {name: [run["wall_s"] for run in values] for name, values in runs.items()}
    cpu = {name: [run["cpu_s"] for run in values] for name, values in runs.items()}
    wall_ratios = pairwise_ratios(wall, BASELINE)
    cpu_ratios = pairwise_ratios(cpu, BASELINE)
    rows = {}
    for name in runs:
        rows[name] = {
            "steps": runs[name][0]["steps"],
            "median_wall_s": median(wall[name]),
            "median_cpu_s": median(cpu[name]),
            "wall_ratio": median(wall_ratios[name]),
            "wall_ratio_range": quartiles(wall_ratios[name]),
            "best_time_ratio": min(wall[name]) / min(wall[BASELINE]),
            "cpu_ratio": median(cpu_ratios[name]),
            "overhead_us_per_step": median(_per_step_overheads(wall, name, model.num_steps)),
            "cpu_overhead_us_per_step": median(_per_step_overheads(cpu, name, model.num_steps)),
            **_memory(raw, name),
            **_traffic(runs[name]),
        }
    summary: dict[str, Any] = {
        "model": model.name, "description": model.description, "num_steps": model.num_steps,
        "repetitions": len(wall[BASELINE]), "contenders": rows, "snapshot": raw["snapshot"],
    }  # fmt: skip
    summary["versus_anchors"] = _versus(wall, HEADLESS, [a for a in ANCHORS if a in wall])
    summary["versus_anchors_cpu"] = _versus(cpu, HEADLESS, [a for a in ANCHORS if a in cpu])
    if LIVE in wall:
        baseline = ANSWERED if ANSWERED in wall else HEADLESS
        summary["widget_baseline"] = baseline
        summary["widget"] = _versus(wall, LIVE, [baseline])[baseline]
        summary["widget_cpu"] = _versus(cpu, LIVE, [baseline])[baseline]
        summary["widget_engine_only"] = _versus(wall, LIVE, [HEADLESS])[HEADLESS]
    engine = [run.get("engine_timings", {}) for run in runs.get(HEADLESS, [])]
    if engine:
        summary["engine_timings"] = {
            key: median([timings[key] for timings in engine]) for key in engine[0]
        }
    return summary


def _traffic(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The live widget's messages per sweep and its largest message, as the browser gets them."""
    if not runs or "max_message_bytes" not in runs[0]:
        return {}
    return {
        "messages_per_sweep": median([run["messages"] for run in runs]),
        "max_message_bytes": max(run["max_message_bytes"] for run in runs),
    }


def _versus(times: dict[str, list[float]], subject: str, others: Sequence[str]) -> dict[str, Any]:
    """The median, over repetitions, of ``subject``'s time divided by each other's."""
    if subject not in times:
        return {}
    out = {}
    for other in others:
        ratios = [mine / theirs for mine, theirs in zip(times[subject], times[other], strict=False)]
        out[other] = {"ratio": median(ratios), "range": quartiles(ratios)}
    return out


def available_contenders(include_widget: bool) -> list[str]:
    """The bare loop, lr_widget, every installed anchor, and the live widget when it exists."""
    names = [BASELINE, CONTROL, HEADLESS, ANSWERED]
    for anchor, module in (
        ("fastai", "fastai"), ("lightning", "lightning"), ("torch-lr-finder", "torch_lr_finder")
    ):  # fmt: skip
        if importlib.util.find_spec(module) is not None:
            names.append(anchor)
        else:
            print(f"warning: {anchor} is not installed; it is left out", file=sys.stderr)
    if include_widget:
        try:
            from lr_widget import LRWidget  # noqa: F401
        except ImportError as error:
            print(f"warning: no live-widget run ({error})", file=sys.stderr)
        else:
            names.append(LIVE)
    return names


def run_benchmark(quick: bool, threads: int, models: Sequence[str]) -> dict[str, Any]:
    """Measure every model; return the results document written to ``speed.json``."""
    from benchmarks.environment import describe_environment, load_average

    environment = describe_environment(threads)
    contenders = available_contenders(include_widget=True)
    summaries = []
    with tempfile.NamedTemporaryFile("w+", prefix="speed-workers-", suffix=".log") as log:
        for name in models:
            model = SPEED_MODELS[name]
            repetitions = 2 if quick else model.repetitions
            if quick:
                model = _with_steps(model, min(model.num_steps, 30 if model.only is None else 2000))
            timed = [name for name in contenders if model.only is None or name in model.only]
            print(f"{model.name}: {', '.join(timed)} x {repetitions}", flush=True)
            try:
                raw = measure_model(model, timed, repetitions, threads, log)
            except RuntimeError:
                log.seek(0)
                print(log.read()[-4000:], file=sys.stderr)
                raise
            summaries.append(summarise_model(model, raw) | {"raw": raw})
    environment["load_average_end"] = load_average()
    return {
        "benchmark": "speed", "quick": quick, "environment": environment,
        "sweep": {"start_lr": START_LR, "end_lr": END_LR, "optimizer": "AdamW"},
        "models": summaries,
    }  # fmt: skip


def profile_engine(model_name: str, num_steps: int, out: IO[str]) -> None:
    """cProfile one lr_widget sweep in this process and print where its time goes.

    The bare loop's functions (forward, backward, the optimizer) show too; what lr_widget adds
    is everything under ``lr_widget/``, listed separately by own time.
    """
    import cProfile
    import pstats

    torch.set_num_threads(1)
    model = _with_steps(SPEED_MODELS[model_name], num_steps)
    timed_sweep(HEADLESS, model)  # warm-up: imports and first-call costs
    setup = model.build(0)
    spec = SweepSpec(START_LR, END_LR, num_steps, stop_on_divergence=False, suggest=False)
    runner = prepare(HEADLESS, setup, spec)
    profiler = cProfile.Profile()
    profiler.runcall(runner)
    stats = pstats.Stats(profiler, stream=out).sort_stats("tottime")
    print(f"== {model_name}, {num_steps} steps: top functions by own time", file=out)
    stats.print_stats(20)
    print("== lr_widget's own functions by own time", file=out)
    stats.print_stats(r"lr_widget[/\\]", 25)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: short and few")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--models", nargs="+", default=list(SPEED_MODELS), choices=SPEED_MODELS)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile one lr_widget sweep and print it"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        serve(args.worker, args.model, args.threads, args.steps)
        return 0
    if args.profile:
        for name in args.models:
            profile_engine(name, 2000 if name == "tiny-mlp" else 100, sys.stdout)
        return 0
    results = run_benchmark(args.quick, args.threads, args.models)
    name = "speed-quick.json" if args.quick else "speed.json"
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / name).write_text(json.dumps(results, indent=1))
    path = report.write_results(RESULTS_DIR, quick=args.quick)
    print(f"wrote {RESULTS_DIR / name} and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
