"""Per-step CPU overhead of ``find_lr`` against a bare training loop on the tiny MLP.

``--model null`` runs both on a 4-4-2 MLP with batches of 2, where torch's own work is smallest,
so the difference (lr_widget's Python per step) stands out of a busy machine's noise.

Both run the same model (MLP 32-64-10, batch 64, AdamW) on the same batches for ``--steps``
optimizer steps, in interleaved A/B rounds, timed with ``time.process_time`` (CPU time, so a busy
neighbour on a shared machine costs less noise than wall time would). Prints the median per-step
overhead in microseconds, with the wall-clock figure beside it::

    python -m benchmarks.step_overhead --steps 500 --rounds 31 [--model null]

On a shared machine whose neighbours load both cores the per-step times swing by tens of
microseconds. Instructions counted by valgrind do not: run ``bare_loop(n)`` and
``lr_widget_sweep(n)`` under ``valgrind --tool=callgrind`` for n = 50 and n = 2050 (with
``PYTHONHASHSEED=0``) and divide the differences by 2000 to get instructions per step.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn

from lr_widget.find import find_lr

MODELS = ("tiny", "null")
MODEL = "tiny"  # set by --model: "null" is Linear(4, 2) on batches of 2, for the Python cost alone


def _setup(seed: int) -> tuple[nn.Module, torch.optim.Optimizer, list[tuple[torch.Tensor, ...]]]:
    torch.manual_seed(seed)
    features, hidden, classes, size = (32, 64, 10, 64) if MODEL == "tiny" else (4, 4, 2, 2)
    model = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs, targets = torch.randn(size * 16, features), torch.randint(0, classes, (size * 16,))
    batches: list[tuple[torch.Tensor, ...]] = [
        (inputs[i : i + size], targets[i : i + size]) for i in range(0, size * 16, size)
    ]
    return model, optimizer, batches


def bare_loop(steps: int) -> tuple[float, float]:
    """CPU and wall seconds of a plain loop: zero_grad, forward, loss, backward, step, read."""
    model, optimizer, batches = _setup(0)
    loss_fn = nn.functional.cross_entropy
    lrs = [1e-7 * (1e-2 / 1e-7) ** (i / (steps - 1)) for i in range(steps)]
    cpu, wall = time.process_time(), time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lrs[step]
        x, y = batches[step % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        if not math.isfinite(loss.item()):
            break
    return time.process_time() - cpu, time.perf_counter() - wall


def lr_widget_sweep(steps: int) -> tuple[float, float]:
    """CPU and wall seconds of ``find_lr`` over the same steps (never stops early)."""
    model, optimizer, batches = _setup(0)
    cpu, wall = time.process_time(), time.perf_counter()
    result = find_lr(
        model, batches, nn.functional.cross_entropy, optimizer, start_lr=1e-7, end_lr=1e-2,
        num_steps=steps, diverge_factor=math.inf,
    )  # fmt: skip
    assert result.num_steps == steps, result.stop_detail
    return time.process_time() - cpu, time.perf_counter() - wall


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", choices=MODELS, default="tiny")
    args = parser.parse_args(argv)
    global MODEL
    MODEL = args.model
    torch.set_num_threads(args.threads)
    bare_loop(200), lr_widget_sweep(200)  # warm up allocator and dispatch caches
    cpu_deltas, wall_deltas, bare_cpu = [], [], []
    for index in range(args.rounds):
        order = (bare_loop, lr_widget_sweep) if index % 2 == 0 else (lr_widget_sweep, bare_loop)
        times = {run.__name__: run(args.steps) for run in order}
        (bare_c, bare_w), (ours_c, ours_w) = times["bare_loop"], times["lr_widget_sweep"]
        cpu_deltas.append((ours_c - bare_c) / args.steps * 1e6)
        wall_deltas.append((ours_w - bare_w) / args.steps * 1e6)
        bare_cpu.append(bare_c / args.steps * 1e6)
    print(
        f"bare loop {statistics.median(bare_cpu):.1f} us CPU/step; lr_widget overhead: "
        f"median {statistics.median(cpu_deltas):+.1f} us CPU/step "
        f"(rounds: {', '.join(f'{d:+.1f}' for d in cpu_deltas)}), "
        f"wall {statistics.median(wall_deltas):+.1f} us/step"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
