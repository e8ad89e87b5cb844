"""The range test on an FSDP2 model (``torch.distributed.fsdp.fully_shard``): two CPU ranks (gloo).

Each rank shards the same seeded model, feeds it its own shard of the data and runs ``find_lr``.
Both must record the same curve and stop at the same step, each must come back bit for bit, and
each rank's snapshot must hold its own local shards only: never a gathered, full copy.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from lr_widget.engine.state import local_shard
from lr_widget.find import find_lr
from tests.engine.test_distributed import DEADLINE_S, WORLD_SIZE, _free_port, _sharded_loader
from tests.helpers import make_batches, make_classifier

SWEEP: dict[str, Any] = {"start_lr": 1e-3, "end_lr": 1e4, "num_steps": 40}


def _tensor_bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _digest(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> str:
    """This rank's local shards of the parameters and optimizer state, its buffers, its grads,
    its hyper-parameters and the torch RNG stream, hashed (no collective: local data only)."""
    digest = hashlib.sha256()
    tensors = [local_shard(p) for p in model.parameters()] + list(model.buffers())
    tensors += [local_shard(p.grad) for p in model.parameters() if p.grad is not None]
    for state in optimizer.state.values():
        tensors += [local_shard(v) for _, v in sorted(state.items()) if torch.is_tensor(v)]
    for tensor in [*tensors, torch.get_rng_state()]:
        digest.update(tensor.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    digest.update(repr(groups).encode())
    return digest.hexdigest()


def _sweep_on_rank(rank_index: int) -> dict[str, Any]:
    from torch.distributed.fsdp import fully_shard

    model = make_classifier(seed=0)
    for layer in model.modules():
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters())
    for x, y in make_batches(seed=99, count=2):  # moments to restore
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    digest_before = _digest(model, optimizer)
    parameters = list(model.parameters())
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    local_bytes = _tensor_bytes([local_shard(t) for t in parameters + state])
    full_bytes = _tensor_bytes(parameters + state)  # numel() of a DTensor is the global one
    replicated_bytes = _tensor_bytes([t for t in parameters + state if local_shard(t) is t])
    result = find_lr(model, _sharded_loader(rank_index), None, optimizer, **SWEEP)
    return {
        "losses": result.losses,
        "lrs": result.lrs,
        "stop_reason": result.stop_reason.value,
        "stop_detail": result.stop_detail,
        "world_size": result.metadata["world_size"],
        "snapshot_bytes": result.metadata["snapshot_bytes"],
        "local_bytes": local_bytes,
        "buffer_bytes": _tensor_bytes(list(model.buffers())),
        "full_bytes": full_bytes,
        "replicated_bytes": replicated_bytes,  # AdamW's step counts: one per rank
        "digest_before": digest_before,
        "digest_after": _digest(model, optimizer),
        "sharded": all(local_shard(p) is not p for p in parameters),
    }


def _rank_main(rank_index: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(
        "gloo", rank=rank_index, world_size=WORLD_SIZE, timeout=timedelta(seconds=60)
    )
    try:
        torch.set_num_threads(1)
        report = _sweep_on_rank(rank_index)
        Path(out_dir, f"rank{rank_index}.json").write_text(json.dumps(report), encoding="utf-8")
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()
    os._exit(0)  # as in test_distributed: no C++ teardown racing gloo's threads


def _run_two_ranks(out_dir: Path) -> list[dict[str, Any]]:
    import time

    import torch.multiprocessing as mp

    context = mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
        _rank_main, args=(_free_port(), str(out_dir)), nprocs=WORLD_SIZE, join=False,
        start_method="spawn",
    )  # fmt: skip
    deadline = time.monotonic() + DEADLINE_S
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                pytest.fail(f"the ranks were still running after {DEADLINE_S} s (hung collective?)")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [json.loads((out_dir / f"rank{i}.json").read_text()) for i in range(WORLD_SIZE)]


@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_fsdp2_sweep_agrees_on_both_ranks_restores_and_snapshots_local_shards_only(
    tmp_path: Path,
) -> None:
    pytest.importorskip("torch.distributed.fsdp", reason="FSDP2 needs torch.distributed")
    rank0, rank1 = _run_two_ranks(tmp_path)
    assert rank0["sharded"]
    assert rank1["sharded"]
    assert rank0["stop_reason"] == rank1["stop_reason"] == "diverged"
    assert 2 < len(rank0["losses"]) < SWEEP["num_steps"]
    assert rank0["losses"] == rank1["losses"]
    assert rank0["lrs"] == rank1["lrs"]
    assert rank0["stop_detail"] == rank1["stop_detail"]
    assert rank0["world_size"] == WORLD_SIZE
    for report in (rank0, rank1):
        assert report["digest_after"] == report["digest_before"]
        # Each rank's own shards of the parameters and AdamW moments, plus its (unsharded)
        # BatchNorm buffers: about half of the full model, never a gathered copy.
        assert report["snapshot_bytes"] == report["local_bytes"] + report["buffer_bytes"]
        assert report["local_bytes"] < 0.6 * report["full_bytes"]
    shards = rank0["local_bytes"] + rank1["local_bytes"]
    assert shards == rank0["full_bytes"] + rank0["replicated_bytes"]  # the shards add up
