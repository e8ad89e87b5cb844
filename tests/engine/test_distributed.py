"""The range test inside a torch.distributed job: two CPU ranks (gloo) sweep one DDP model.

Each test spawns two processes that join a gloo process group on 127.0.0.1, wrap the same seeded
model in DistributedDataParallel, feed it their own shard (DistributedSampler) and run ``find_lr``.
Each rank writes what it saw to a JSON file for the parent to compare; a hung collective fails the
test after a deadline instead of blocking CI.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lr_widget.diagnostics.confirm import confirm_lr
from lr_widget.engine.distributed import (
    StepSync,
    is_distributed,
    is_main_process,
    rank,
    resolve_distributed,
    save_on_main_process,
    world_size,
)
from lr_widget.find import find_lr
from lr_widget.results.range_test import RangeTestResult, StopReason
from tests.helpers import assert_restored, capture, make_batches, make_classifier, warm_optimizer

WORLD_SIZE = 2
DEADLINE_S = 90.0
SWEEP = {"start_lr": 1e-3, "end_lr": 1e4, "num_steps": 40}


# -- what each rank runs ----------------------------------------------------------------------
def _sharded_loader(rank_index: int) -> DataLoader[tuple[torch.Tensor, ...]]:
    """16 batches of 16 samples split between the ranks: each rank sees its own 8 batches."""
    batches = make_batches(seed=3, count=16, size=16)
    dataset = TensorDataset(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))
    sampler = DistributedSampler(dataset, num_replicas=WORLD_SIZE, rank=rank_index, shuffle=False)
    return DataLoader(dataset, batch_size=16, sampler=sampler)


def _state_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _recording_loss(local_losses: list[float], nan_from_call: int | None) -> Any:
    """Cross-entropy that notes this rank's own loss, and turns NaN from a given call on."""

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(output, target)
        if nan_from_call is not None and len(local_losses) >= nan_from_call:
            loss = loss * float("nan")
        local_losses.append(float(loss.detach()))
        return loss

    return loss_fn


def _count_saves(log: Path, rank_index: int) -> None:
    """Make every RangeTestResult.save in this process append its rank to ``log``."""
    original = RangeTestResult.save

    def save(result: RangeTestResult, path: str | os.PathLike[str]) -> Path:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"{rank_index}\n")
        return original(result, path)

    RangeTestResult.save = save  # type: ignore[method-assign]


def _count_gradient_reductions(ddp: DistributedDataParallel) -> dict[str, int]:
    """Count the gradient buckets DDP all-reduces (one per optimizer step for this small model)."""
    counts = {"buckets": 0}

    # Unannotated on purpose: DDP checks the annotations, and postponed ones are strings.
    def hook(state, bucket):  # type: ignore[no-untyped-def]
        counts["buckets"] += 1
        return allreduce_hook(state, bucket)

    ddp.register_comm_hook(None, hook)
    return counts


def _confirm_on_rank(rank_index: int) -> dict[str, Any]:
    """Confirmation probes on DDP whose loss turns NaN on rank 1 alone, in the second probe."""
    model = make_classifier(seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before, digest_before = capture(model, optimizer), _state_digest(model)
    local_losses: list[float] = []
    loss_fn = _recording_loss(local_losses, nan_from_call=10 if rank_index == 1 else None)
    found = confirm_lr(
        DistributedDataParallel(model), _sharded_loader(rank_index), 0.01, loss_fn, optimizer,
        steps=8,
    )  # fmt: skip
    assert_restored(before, model, optimizer)
    return {
        "probe_losses": [list(probe.losses) for probe in found.probes],
        "winner": found.winner,
        "local_losses": local_losses,
        "digest_before": digest_before,
        "digest_after": _state_digest(model),
    }


def _sweep_on_rank(rank_index: int, out_dir: Path, scenario: str) -> dict[str, Any]:
    if scenario == "confirm with nan on rank 1":
        return _confirm_on_rank(rank_index)
    model = make_classifier(seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    digest_before = _state_digest(model)
    ddp = DistributedDataParallel(model)
    gradient_reductions = _count_gradient_reductions(ddp)
    local_losses: list[float] = []
    nan_from_call = 5 if scenario == "nan on rank 1" and rank_index == 1 else None
    stop_at = 3 if scenario == "stop on rank 1" and rank_index == 1 else None
    # Accumulation runs the micro-batches but the last under DDP's no_sync(), as training does.
    accumulation = 2 if scenario == "stop on rank 1" else 1
    _count_saves(out_dir / "writes.log", rank_index)
    result = find_lr(
        ddp,
        _sharded_loader(rank_index),
        _recording_loss(local_losses, nan_from_call),
        optimizer,
        callback=lambda event: event.step == stop_at,
        save_to=out_dir / "result.json",
        accumulation_steps=accumulation,
        **SWEEP,
    )
    assert_restored(before, model, optimizer)
    report = {
        "losses": result.losses,
        "lrs": result.lrs,
        "stop_reason": result.stop_reason.value,
        "stop_detail": result.stop_detail,
        "world_size": result.metadata["world_size"],
        "batch_size": result.metadata["batch_size"],
        "effective_batch_size": result.metadata["effective_batch_size"],
        "summary": result.summary(),
        "local_losses": local_losses,
        "gradient_reductions": gradient_reductions["buckets"],
        "digest_before": digest_before,
        "digest_after": _state_digest(model),
    }
    if scenario == "sweep":  # the same sweep again, reading each loss one step late
        loss_fn = _recording_loss([], nan_from_call=None)
        lagged = find_lr(
            ddp, _sharded_loader(rank_index), loss_fn, optimizer, loss_read_lag=1, **SWEEP
        )
        assert_restored(before, model, optimizer)
        report["lagged_losses"] = lagged.losses
    return report


def _rank_main(rank_index: int, port: int, scenario: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(
        "gloo", rank=rank_index, world_size=WORLD_SIZE, timeout=timedelta(seconds=60)
    )
    try:
        torch.set_num_threads(1)
        report = _sweep_on_rank(rank_index, Path(out_dir), scenario)
        Path(out_dir, f"rank{rank_index}.json").write_text(json.dumps(report), encoding="utf-8")
        # The DDP wrapper (kept alive by reference cycles through the stop's traceback) must be
        # gone before its process group: a reducer outliving it aborted a rank at exit
        # ("terminate called without an active exception") in 2 of ~30 full-suite runs.
        gc.collect()
        dist.barrier()  # no rank tears its connections down while another still reads from them
    finally:
        dist.destroy_process_group()
    # Skip the interpreter's teardown: gloo's threads have nothing left to do, and C++ static
    # destructors racing them is the one way this rank could still fail after its report.
    os._exit(0)


# -- the parent -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_two_ranks(scenario: str, out_dir: Path) -> list[dict[str, Any]]:
    """Run ``scenario`` on two spawned gloo ranks; return each rank's report."""
    context = mp.start_processes(
        _rank_main,
        args=(_free_port(), scenario, str(out_dir)),
        nprocs=WORLD_SIZE,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                pytest.fail(f"the ranks were still running after {DEADLINE_S} s (hung collective?)")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [
        json.loads((out_dir / f"rank{index}.json").read_text(encoding="utf-8"))
        for index in range(WORLD_SIZE)
    ]


def same_floats(first: list[float], second: list[float]) -> bool:
    """Exact equality, NaN equal to NaN."""
    return np.array_equal(np.array(first), np.array(second), equal_nan=True)


def assert_restored_on_every_rank(reports: list[dict[str, Any]]) -> None:
    for report in reports:
        assert report["digest_after"] == report["digest_before"]
    assert len({report["digest_after"] for report in reports}) == 1


# -- the tests --------------------------------------------------------------------------------
@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_ddp_sweep_on_two_ranks_agrees_restores_and_writes_one_file(tmp_path: Path) -> None:
    rank0, rank1 = run_two_ranks("sweep", tmp_path)
    assert rank0["stop_reason"] == rank1["stop_reason"] == "diverged"
    steps = len(rank0["losses"])
    assert 2 < steps < SWEEP["num_steps"]
    assert rank0["lrs"] == rank1["lrs"]
    assert rank0["losses"] == rank1["losses"]
    assert rank0["stop_detail"] == rank1["stop_detail"]
    assert rank0["world_size"] == WORLD_SIZE
    # The LR found is for the batch of one step over every rank: 16 per rank x 2 ranks.
    assert rank0["batch_size"] == 16
    assert rank0["effective_batch_size"] == 16 * WORLD_SIZE
    assert (
        "effective batch 32 samples per optimizer step (16 per batch x 2 ranks)"
        in (rank0["summary"])
    )
    ranks_mean = [
        (own + other) / 2
        for own, other in zip(rank0["local_losses"], rank1["local_losses"], strict=True)
    ]
    assert rank0["losses"] == pytest.approx(ranks_mean[:steps], rel=1e-6)
    assert rank0["local_losses"][:steps] != rank1["local_losses"][:steps]  # really two shards
    assert rank0["lagged_losses"] == rank0["losses"] == rank1["lagged_losses"]
    assert_restored_on_every_rank([rank0, rank1])
    assert (tmp_path / "writes.log").read_text(encoding="utf-8") == "0\n"
    saved = RangeTestResult.load(tmp_path / "result.json")
    assert saved.losses == rank0["losses"]
    assert saved.stop_reason is StopReason.DIVERGED
    from lr_widget import LRWidget  # the notebook side: only here, the rest is engine-only

    widget = LRWidget.from_result(tmp_path / "result.json")
    assert widget.result is not None
    assert widget.result.losses == rank0["losses"]
    widget.close()


@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_nan_on_one_rank_stops_both_at_the_same_step(tmp_path: Path) -> None:
    rank0, rank1 = run_two_ranks("nan on rank 1", tmp_path)
    for report in (rank0, rank1):
        assert report["stop_reason"] == "non-finite loss"
        assert len(report["losses"]) == 6  # steps 0-5; rank 1's loss is NaN from step 5
        assert math.isnan(report["losses"][-1])
        assert "non-finite on 1 of 2 ranks" in report["stop_detail"]
    assert math.isfinite(rank0["local_losses"][5])
    assert same_floats(rank0["losses"], rank1["losses"])
    assert_restored_on_every_rank([rank0, rank1])


@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_stop_requested_on_one_rank_stops_both_at_the_same_step(tmp_path: Path) -> None:
    rank0, rank1 = run_two_ranks("stop on rank 1", tmp_path)
    for report in (rank0, rank1):
        assert report["stop_reason"] == "stopped"
        assert len(report["losses"]) == 4  # rank 1's callback asked to stop after step 3
        assert len(report["local_losses"]) == 2 * 5  # two micro-batches a step, step 4 dropped
        assert report["gradient_reductions"] == 5  # the first micro-batch ran under no_sync()
        assert report["stop_detail"] == "stopped by the caller on 1 of 2 ranks before step 4"
    assert rank0["losses"] == rank1["losses"]
    assert_restored_on_every_rank([rank0, rank1])


ACCELERATE_NOTEBOOK = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    def sweep(out_dir):  # what a notebook cell hands to notebook_launcher
        from accelerate import Accelerator
        from lr_widget import find_lr
        from lr_widget.engine.distributed import rank
        from tests.helpers import assert_restored, capture, make_batches, make_classifier

        accelerator = Accelerator(cpu=True)
        batches = make_batches(seed=3, count=16, size=16)
        data = TensorDataset(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))
        model = make_classifier()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        before = capture(model, optimizer)
        model, optimizer, loader = accelerator.prepare(
            model, optimizer, DataLoader(data, batch_size=16)
        )
        result = find_lr(
            model, loader, None, optimizer, start_lr=1e-3, end_lr=1e4, num_steps=40,
            save_to=os.path.join(out_dir, "result.json"),
        )
        assert_restored(before, accelerator.unwrap_model(model), optimizer)
        with open(os.path.join(out_dir, f"rank{rank()}.json"), "w") as handle:
            report = {"losses": result.losses, "world_size": result.metadata["world_size"]}
            json.dump(report, handle)

    if __name__ == "__main__":
        from accelerate import notebook_launcher

        notebook_launcher(sweep, args=(sys.argv[1],), num_processes=2, use_port=sys.argv[2])
    """
)


@pytest.mark.distributed
@pytest.mark.timeout(180)
def test_accelerate_notebook_launcher_runs_the_sweep_on_two_cpu_processes(tmp_path: Path) -> None:
    pytest.importorskip("accelerate", reason="Accelerate is an optional launcher")
    script = tmp_path / "notebook.py"
    script.write_text(ACCELERATE_NOTEBOOK, encoding="utf-8")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])}
    completed = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(_free_port())],
        capture_output=True, text=True, timeout=150, check=False, cwd=root, env=env,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(WORLD_SIZE)]
    assert reports[0]["world_size"] == reports[1]["world_size"] == WORLD_SIZE
    assert reports[0]["losses"] == reports[1]["losses"]
    assert RangeTestResult.load(tmp_path / "result.json").losses == reports[0]["losses"]


# -- the API without a process group ----------------------------------------------------------
def test_without_a_process_group_this_is_the_only_and_main_process(tmp_path: Path) -> None:
    assert not is_distributed()
    assert (rank(), world_size()) == (0, 1)
    assert is_main_process()
    result = find_lr(make_classifier(), make_batches(), num_steps=5, end_lr=1e-3)
    assert save_on_main_process(result, tmp_path / "a.json") == tmp_path / "a.json"
    find_lr(make_classifier(), make_batches(), num_steps=5, save_to=tmp_path / "b.json")
    assert RangeTestResult.load(tmp_path / "b.json").num_steps == 5
    assert result.metadata["world_size"] == 1


def test_distributed_true_without_a_process_group_is_refused() -> None:
    with pytest.raises(ValueError, match=r"distributed=True but torch\.distributed has no"):
        find_lr(make_classifier(), make_batches(), distributed=True)
    with pytest.raises(TypeError, match=r"distributed must be True, False or None, got 'yes'"):
        resolve_distributed("yes")  # type: ignore[arg-type]
    assert resolve_distributed(False) is False


@pytest.mark.parametrize("lag", [-1, 1.0, True])
def test_bad_loss_read_lag_is_refused(lag: Any) -> None:
    with pytest.raises(ValueError, match=r"loss_read_lag must be an integer >= 0"):
        find_lr(make_classifier(), make_batches(), loss_read_lag=lag)


def test_step_sync_reads_each_step_lag_steps_later_and_in_order() -> None:
    sync = StepSync(lag=2, distributed=False, optimizer_steps=2, val_batches=4)
    read: list[tuple[int, float, float | None]] = []
    for step in range(5):
        sync.push(step, 10.0**-step, torch.tensor(2.0 * step), torch.tensor(4.0 * step))
        read.extend((r.step, r.loss, r.val_loss) for r in sync.ready())
        assert sync.pending == min(step + 1, 2)
    assert read == [(0, 0.0, 0.0), (1, 1.0, 1.0), (2, 2.0, 2.0)]
    assert [(r.step, r.loss) for r in sync.drain()] == [(3, 3.0), (4, 4.0)]
    assert sync.pending == 0


def test_step_sync_flags_a_non_finite_step() -> None:
    sync = StepSync(lag=0, distributed=False, optimizer_steps=1, val_batches=None)
    sync.push(0, 1e-3, torch.tensor(float("inf")))
    (reading,) = sync.ready()
    assert (reading.loss, reading.val_loss, reading.non_finite_ranks, reading.stop_ranks) == (
        math.inf,
        None,
        1,
        0,
    )


@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_confirm_probes_stop_together_when_one_rank_sees_nan(tmp_path: Path) -> None:
    """A probe that breaks out on one rank while the other steps on would leave that one waiting
    in DDP's all-reduce: the probes read each loss as the mean over the ranks, so both stop."""
    rank0, rank1 = run_two_ranks("confirm with nan on rank 1", tmp_path)
    assert rank0["probe_losses"] == rank1["probe_losses"]
    first, second, third = rank0["probe_losses"]
    assert len(first) == 8
    assert all(math.isfinite(loss) for loss in first)
    assert len(second) == 3
    assert math.isnan(second[-1])
    assert len(third) == 1
    assert math.isnan(third[0])
    assert rank0["winner"] == rank1["winner"]
    assert len(rank0["local_losses"]) == len(rank1["local_losses"]) == 12
    assert_restored_on_every_rank([rank0, rank1])
