"""Device check: does a range test on an accelerator cost what training costs, and no more?

One short script for a machine with a GPU. It builds a mid-size transformer language model, feeds
it pinned batches from a DataLoader, and takes turns running an ``lr_widget`` sweep and a bare
training loop of the same number of steps on the same data, optimizer and precision. It reports

- the time per step of the sweep over that of the bare loop (median over the repetitions),
- the device memory the sweep needs beyond the bare loop's peak, and what is left after it,
- the device-to-host synchronisations per step (``torch.cuda.set_sync_debug_mode``),
- whether every sweep restored the model, gradients, optimizer and RNG streams bit for bit.

It exits with status 1 if any restore was not exact, 2 if the sweep used extra device memory.
``--device cpu`` runs the same check on the CPU (a smaller model; no memory or sync figures), for
smoke tests on machines without a GPU::

    python benchmarks/gpu_check.py                     # CUDA, bf16 autocast, about a minute
    python benchmarks/gpu_check.py --amp fp16          # fp16 autocast with a GradScaler
    python benchmarks/gpu_check.py --device cpu --steps 20 --repeats 1
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

if __package__ in (None, ""):  # run as a script: make lr_widget importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lr_widget.engine.distributed import default_loss_read_lag
from lr_widget.engine.sweep import LRFinder
from lr_widget.results.range_test import RangeTestResult

MIB = 2**20


@dataclass(frozen=True)
class ModelSize:
    """The shape of the language model and of its batches."""

    vocab: int
    width: int
    layers: int
    heads: int
    sequence: int
    batch: int


SIZES = {
    "mid": ModelSize(vocab=8192, width=768, layers=8, heads=12, sequence=256, batch=32),
    "small": ModelSize(vocab=512, width=64, layers=2, heads=4, sequence=32, batch=8),
}


class TinyLM(nn.Module):
    """A pre-norm transformer encoder with a causal mask, predicting the next token."""

    def __init__(self, size: ModelSize) -> None:
        super().__init__()
        self.embed = nn.Embedding(size.vocab, size.width)
        self.position = nn.Parameter(torch.randn(size.sequence, size.width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            size.width, size.heads, 4 * size.width, dropout=0.1, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, size.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(size.width)
        self.head = nn.Linear(size.width, size.vocab)
        mask = nn.Transformer.generate_square_subsequent_mask(size.sequence)
        self.register_buffer("causal_mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(tokens) + self.position[: tokens.shape[1]]
        hidden = self.encoder(hidden, mask=self.causal_mask, is_causal=True)
        return self.head(self.norm(hidden))  # type: ignore[no-any-return]


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def make_loader(size: ModelSize, batches: int, pin: bool) -> DataLoader[tuple[torch.Tensor, ...]]:
    """Token sequences with a learnable rule (each token depends on the previous two)."""
    generator = torch.Generator().manual_seed(0)
    count = batches * size.batch
    tokens = torch.empty(count, size.sequence + 1, dtype=torch.long)
    tokens[:, :2] = torch.randint(0, size.vocab, (count, 2), generator=generator)
    for position in range(2, size.sequence + 1):
        tokens[:, position] = (tokens[:, position - 1] * 31 + tokens[:, position - 2]) % size.vocab
    dataset = TensorDataset(tokens[:, :-1], tokens[:, 1:])
    return DataLoader(dataset, batch_size=size.batch, shuffle=False, pin_memory=pin)


# -- exact-state fingerprints -----------------------------------------------------------------
@dataclass
class Fingerprint:
    """Everything a sweep may touch, copied to the host for a bit-exact comparison."""

    tensors: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None
    rng: list[Any] = field(default_factory=list)


def fingerprint(
    model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> Fingerprint:
    tensors = {f"param:{k}": v.detach().cpu().clone() for k, v in model.named_parameters()}
    tensors.update((f"buffer:{k}", v.detach().cpu().clone()) for k, v in model.named_buffers())
    tensors.update(
        (f"grad:{k}", v.grad.detach().cpu().clone())
        for k, v in model.named_parameters()
        if v.grad is not None
    )
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []  # type: ignore[no-untyped-call]
    rng = [torch.get_rng_state(), *cuda_rng, np.random.get_state(), random.getstate()]
    return Fingerprint(
        tensors=tensors,
        optimizer=_to_cpu(optimizer.state_dict()),
        scaler=None if scaler is None else copy.deepcopy(scaler.state_dict()),
        rng=rng,
    )


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return copy.deepcopy(value)


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where two fingerprints (or parts of them) differ, bit for bit; empty when identical."""
    if isinstance(expected, Fingerprint):
        return (
            differences(expected.tensors, actual.tensors, "model")
            + differences(expected.optimizer, actual.optimizer, "optimizer")
            + differences(expected.scaler, actual.scaler, "scaler")
            + differences(expected.rng, actual.rng, "rng")
        )
    if isinstance(expected, torch.Tensor):
        same = (
            isinstance(actual, torch.Tensor)
            and expected.dtype == actual.dtype
            and expected.shape == actual.shape
            and torch.equal(expected, actual)
        )
        return [] if same else [path]
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            return [f"{path} (keys)"]
        pairs = [(expected[key], actual[key], f"{path}/{key}") for key in expected]
        return [found for pair in pairs for found in differences(*pair)]
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(expected) != len(actual):
            return [f"{path} (length)"]
        items = zip(expected, actual, strict=True)
        pairs = [(first, second, f"{path}[{index}]") for index, (first, second) in enumerate(items)]
        return [found for pair in pairs for found in differences(*pair)]
    if isinstance(expected, np.ndarray):
        return [] if np.array_equal(expected, actual) else [path]
    return [] if expected == actual else [path]


# -- the two contenders -----------------------------------------------------------------------
@dataclass
class Run:
    """One timed run: seconds per step, peak device memory, synchronisations per step."""

    step_s: float
    peak_bytes: int = 0
    syncs_per_step: float = 0.0
    result: RangeTestResult | None = None
    pinned_peak_bytes: int = 0
    pinned_after_bytes: int = 0


@dataclass
class Setup:
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    loader: DataLoader[tuple[torch.Tensor, ...]]
    amp_dtype: torch.dtype | None
    steps: int


def bare_loop(setup: Setup) -> Run:
    """What a user's training loop does for ``steps`` steps, with an LR schedule."""
    model, optimizer, scaler = setup.model, setup.optimizer, setup.scaler
    lrs = np.geomspace(1e-6, 1e-4, setup.steps)
    model.train()
    batches = _cycle(setup.loader)
    with DeviceWatch(setup.device) as watch:
        for lr in lrs:
            for group in optimizer.param_groups:
                group["lr"] = float(lr)
            tokens, targets = (t.to(setup.device, non_blocking=True) for t in next(batches))
            optimizer.zero_grad(set_to_none=True)
            with _autocast(setup):
                loss = next_token_loss(model(tokens), targets)
            if scaler is None:
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            else:
                scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
                scaler.step(optimizer)
                scaler.update()
    return Run(watch.seconds / setup.steps, watch.peak_bytes, watch.syncs() / setup.steps)


def sweep(setup: Setup, loss_read_lag: int | None) -> Run:
    finder = LRFinder(
        setup.model, setup.loader, next_token_loss, setup.optimizer,
        grad_scaler=setup.scaler, loss_read_lag=loss_read_lag, start_lr=1e-6, end_lr=1e-4,
        num_steps=setup.steps, diverge_factor=math.inf,
        amp_dtype=None if setup.amp_dtype is None else str(setup.amp_dtype).removeprefix("torch."),
    )  # fmt: skip
    syncs_at_step: list[int] = []  # counted between steps: the snapshot and restore are not
    with DeviceWatch(setup.device) as watch:
        result = finder.run(callback=lambda event: syncs_at_step.append(watch.syncs()))
    in_loop = watch.seconds - result.timings["snapshot_s"] - result.timings["restore_s"]
    loop_syncs = (syncs_at_step[-1] - syncs_at_step[0]) / max(1, len(syncs_at_step) - 1)
    run = Run(in_loop / setup.steps, watch.peak_bytes, loop_syncs, result)
    run.pinned_peak_bytes, run.pinned_after_bytes = watch.pinned_peak, watch.pinned_after
    return run


def _cycle(loader: DataLoader[tuple[torch.Tensor, ...]]) -> Iterator[tuple[torch.Tensor, ...]]:
    while True:
        yield from loader


def _autocast(setup: Setup) -> Any:
    if setup.amp_dtype is None:
        return torch.autocast(setup.device.type, enabled=False)
    return torch.autocast(setup.device.type, dtype=setup.amp_dtype)


class DeviceWatch:
    """Times a block, waiting for the device; on CUDA also its peak memory and its syncs.

    Syncs are counted from the warnings of ``torch.cuda.set_sync_debug_mode("warn")``.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.seconds = 0.0
        self.peak_bytes = 0
        self.pinned_peak = self.pinned_after = 0
        self._recording = warnings.catch_warnings(record=True)
        self._caught: list[warnings.WarningMessage] = []
        self._started = 0.0

    def __enter__(self) -> DeviceWatch:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.reset_peak_host_memory_stats()
            self._caught = self._recording.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.set_sync_debug_mode("default")
            torch.cuda.synchronize()
            self._recording.__exit__(None, None, None)
            self.peak_bytes = torch.cuda.max_memory_allocated()
            host = torch.cuda.host_memory_stats()  # pinned blocks, as torch rounds them
            self.pinned_peak = int(host.get("allocated_bytes.peak", 0))
            self.pinned_after = int(host.get("allocated_bytes.current", 0))
        self.seconds = time.perf_counter() - self._started

    def syncs(self) -> int:
        """Device-to-host synchronisations so far (0 off CUDA)."""
        return sum("synchroniz" in str(caught.message) for caught in self._caught)


# -- the check --------------------------------------------------------------------------------
def build(args: argparse.Namespace) -> Setup:
    device = torch.device(args.device)
    torch.manual_seed(0)
    size = SIZES[args.size]
    model = TinyLM(size).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    scaler = torch.amp.GradScaler(device.type) if args.amp == "fp16" else None
    loader = make_loader(size, batches=8, pin=device.type == "cuda")
    setup = Setup(device, model, optimizer, scaler, loader, amp_dtype, args.steps)
    warm = Setup(device, model, optimizer, scaler, loader, amp_dtype, steps=3)
    bare_loop(warm)  # kernels compiled, optimizer state allocated: a model mid-training
    return setup


def check(args: argparse.Namespace) -> int:
    setup = build(args)
    params = sum(p.numel() for p in setup.model.parameters())
    print(f"device {setup.device} ({_device_name(setup.device)}), torch {torch.__version__}")
    print(
        f"model {params / 1e6:.1f} M parameters (size {args.size}), amp {args.amp}, "
        f"{args.steps} steps, {args.repeats} repeats"
    )
    lags = sorted({default_loss_read_lag(setup.device), 0}, reverse=True)  # the default first
    sweeps: dict[int, list[Run]] = {lag: [] for lag in lags}
    bares: list[Run] = []
    mismatches: list[str] = []
    leaked = 0
    for repeat in range(args.repeats):  # take turns, so that drifts hit every contender alike
        for lag in lags:
            before = fingerprint(setup.model, setup.optimizer, setup.scaler)
            allocated = torch.cuda.memory_allocated() if setup.device.type == "cuda" else 0
            sweeps[lag].append(sweep(setup, loss_read_lag=lag))
            if setup.device.type == "cuda":
                leaked = max(leaked, torch.cuda.memory_allocated() - allocated)
            diff = differences(before, fingerprint(setup.model, setup.optimizer, setup.scaler))
            mismatches += [f"repeat {repeat}, lag {lag}: {found}" for found in diff]
        bares.append(bare_loop(setup))
    return report(setup, sweeps, bares, mismatches, leaked)


def report(
    setup: Setup,
    sweeps: dict[int, list[Run]],
    bares: list[Run],
    mismatches: list[str],
    leaked: int,
) -> int:
    """Print the report; return the exit status (1: restore not exact, 2: extra memory)."""
    print(f"{'bare loop':16} {_median_ms(bares):8.2f} ms/step")
    for lag, runs in sweeps.items():
        name = f"sweep (lag {lag})"
        print(f"{name:16} {_median_ms(runs):8.2f} ms/step   ratio {_ratio(runs, bares):.3f}")
    first = next(iter(sweeps.values()))[0].result
    assert first is not None
    print(
        f"snapshot {first.timings['snapshot_s'] * 1e3:.1f} ms, restore "
        f"{first.timings['restore_s'] * 1e3:.1f} ms, in host memory "
        f"{first.metadata['snapshot_bytes'] / MIB:.1f} MiB"
    )
    status = 0
    if setup.device.type == "cuda":
        status = _report_device(setup, sweeps, bares, leaked)
    else:
        print("device memory and syncs: n/a on the CPU")
    if mismatches:
        print(f"RESTORE: FAIL, {len(mismatches)} differences, first: {mismatches[:5]}")
        return 1
    print(f"RESTORE: bit-exact after all {sum(map(len, sweeps.values()))} sweeps")
    return status


def _report_device(
    setup: Setup, sweeps: dict[int, list[Run]], bares: list[Run], leaked: int
) -> int:
    bare_peak = max(run.peak_bytes for run in bares)
    sweep_peak = max(run.peak_bytes for runs in sweeps.values() for run in runs)
    extra = max(0, sweep_peak - bare_peak)
    print(
        f"device memory: bare loop peak {bare_peak / MIB:.1f} MiB, sweep peak "
        f"{sweep_peak / MIB:.1f} MiB, extra {extra / MIB:.2f} MiB, left after the sweep "
        f"{leaked / MIB:.2f} MiB"
    )
    last = next(iter(sweeps.values()))[-1]
    print(
        f"pinned host memory: peak {last.pinned_peak_bytes / MIB:.1f} MiB during the sweep, "
        f"{last.pinned_after_bytes / MIB:.1f} MiB kept after it"
    )
    per_step = ", ".join(f"lag {lag}: {runs[0].syncs_per_step:.2f}" for lag, runs in sweeps.items())
    print(f"device syncs per step: sweep {per_step}; bare loop {bares[0].syncs_per_step:.2f}")
    if extra > MIB or leaked > 0:
        print("MEMORY: FAIL (the sweep used device memory beyond what training uses)")
        return 2
    print("MEMORY: no device memory beyond training")
    return 0


def _median_ms(runs: list[Run]) -> float:
    return statistics.median(run.step_s for run in runs) * 1e3


def _ratio(runs: list[Run], bares: list[Run]) -> float:
    """Median over the repeats of the run's time per step over the bare loop's, repeat by repeat."""
    return statistics.median(
        run.step_s / bare.step_s for run, bare in zip(runs, bares, strict=True)
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument(
        "--size", choices=sorted(SIZES), help="model size; default mid on CUDA, small on the CPU"
    )
    parser.add_argument(
        "--amp", choices=["none", "bf16", "fp16"], help="default bf16 on CUDA, none on the CPU"
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    on_cpu = torch.device(args.device).type == "cpu"
    if not on_cpu and not torch.cuda.is_available():
        parser.error("CUDA is not available here; pass --device cpu for a CPU smoke run")
    args.size = args.size or ("small" if on_cpu else "mid")
    args.amp = args.amp or ("none" if on_cpu else "bf16")
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
