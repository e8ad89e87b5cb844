"""Snapshot and exact restore of everything a range test changes.

The snapshot lives in host memory only (pinned when the model is on CUDA, so the copy back is
fast), never on the accelerator, and never in a file: parameters and buffers (looked up by name,
so non-persistent buffers are covered too), gradients, the optimizer's state and hyper-parameters,
a GradScaler, the RNG streams of torch (CPU and CUDA), numpy and ``random``, and the train/eval
mode of every module. :meth:`TrainingState.restore` writes it all back bit for bit.

A tensor sharded across ranks (a ``DTensor``, as FSDP2's ``fully_shard`` and tensor parallelism
make them) is snapshotted as this rank's own local shard: nothing is gathered, and each rank
holds only what it holds on the device. An LR scheduler given to :meth:`TrainingState.capture` is
snapshotted too, through its ``state_dict``.

The snapshot costs host memory only: the parameters, buffers, gradients (when set) and optimizer
state, once each. Restoring adds nothing on the device: the sweep's gradients and optimizer state
are released before the saved ones are copied back, so the device never holds both.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["MAX_SEED", "RNGState", "TrainingState", "local_shard", "seed_everything", "to_host"]

MAX_SEED = 2**32 - 1
"""The largest seed every stream accepts (numpy's legacy seeding takes ``[0, 2**32)``)."""


_MISSING = object()


def local_shard(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's own part of ``tensor``: the local shard of a ``DTensor``, else ``tensor``."""
    local = getattr(tensor, "_local_tensor", None)
    return local if isinstance(local, torch.Tensor) else tensor


def to_host(value: Any, pin: bool = False) -> Any:
    """Deep copy ``value`` with every tensor copied to CPU memory (pinned if asked).

    Containers (dicts, lists, tuples) are rebuilt; other objects are deep-copied. The result never
    shares storage with ``value``. A ``DTensor`` keeps its sharding: its local shard is copied,
    never gathered.
    """
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if local_shard(tensor) is not tensor:
            return _dtensor_to_host(tensor, pin)
        if tensor.device.type == "cpu":
            return tensor.clone()
        host = torch.empty_like(tensor, device="cpu", pin_memory=pin and torch.cuda.is_available())
        host.copy_(tensor, non_blocking=pin)
        return host
    if isinstance(value, Mapping):
        return {key: to_host(item, pin) for key, item in value.items()}
    if isinstance(value, list):
        return [to_host(item, pin) for item in value]
    if isinstance(value, tuple):
        return tuple(to_host(item, pin) for item in value)
    return copy.deepcopy(value)


def _dtensor_to_host(tensor: torch.Tensor, pin: bool) -> torch.Tensor:
    if tensor.device.type == "cpu":
        return tensor.clone()  # a local op on a DTensor: each rank clones its own shard
    from torch.distributed.tensor import DTensor

    assert isinstance(tensor, DTensor)
    return DTensor.from_local(
        to_host(tensor.to_local(), pin), tensor.device_mesh, tensor.placements,
        run_check=False, shape=tensor.shape, stride=tensor.stride(),
    )  # fmt: skip


@dataclass
class RNGState:
    """The global random streams a training step may consume."""

    torch_cpu: torch.Tensor
    torch_cuda: list[torch.Tensor] | None
    numpy: Any
    python: Any

    @classmethod
    def capture(cls) -> RNGState:
        cuda = None
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
            cuda = torch.cuda.get_rng_state_all()
        return cls(torch.get_rng_state(), cuda, np.random.get_state(), random.getstate())

    def restore(self) -> None:
        torch.set_rng_state(self.torch_cpu)
        if self.torch_cuda is not None:
            torch.cuda.set_rng_state_all(self.torch_cuda)
        np.random.set_state(self.numpy)
        random.setstate(self.python)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every CUDA device), numpy and ``random`` with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


class TrainingState:
    """A host-memory snapshot of a model, its optimizer, a GradScaler, an LR scheduler and the
    RNG streams.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> state = TrainingState.capture(model, optimizer)
    >>> with torch.no_grad():
    ...     _ = model.weight.add_(1.0)
    >>> state.restore()
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scaler: torch.amp.GradScaler | None,
        scheduler: Any = None,
    ) -> None:
        self._model = model
        self._optimizer = optimizer
        self._scaler = scaler if scaler is not None and scaler.is_enabled() else None
        pin = any(tensor.is_cuda for tensor in self._tensors())
        self._pinned = pin
        self._tensor_values = {
            name: to_host(local_shard(t), pin) for name, t in self._named_tensors().items()
        }
        self._grads = {
            name: to_host(param.grad, pin)
            for name, param in model.named_parameters()
            if param.grad is not None
        }
        self._modes = [module.training for module in model.modules()]
        self._optimizer_state = to_host(optimizer.state_dict(), pin) if optimizer else None
        self._scaler_state = to_host(self._scaler.state_dict()) if self._scaler else None
        # An attached LR scheduler marks the optimizer's step as called; the sweep must not.
        self._opt_called = getattr(optimizer, "_opt_called", _MISSING)
        self._scheduler = scheduler
        self._scheduler_state = to_host(scheduler.state_dict()) if scheduler is not None else None
        self._rng = RNGState.capture()
        self._host_bytes = _tensor_bytes([self._tensor_values, self._grads, self._optimizer_state])
        if pin:
            torch.cuda.synchronize()

    @classmethod
    def capture(
        cls,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scaler: torch.amp.GradScaler | None = None,
        scheduler: Any = None,
    ) -> TrainingState:
        """Snapshot ``model``, ``optimizer``, ``scaler`` and an LR ``scheduler`` (anything with
        ``state_dict``/``load_state_dict``); any may be shared with the caller."""
        return cls(model, optimizer, scaler, scheduler)

    def _named_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = dict(self._model.named_parameters())
        tensors.update((f"buffer:{name}", buffer) for name, buffer in self._model.named_buffers())
        return tensors

    def _tensors(self) -> list[torch.Tensor]:
        return list(self._named_tensors().values())

    @property
    def host_bytes(self) -> int:
        """Bytes of host memory the snapshot's tensors hold (held when it was captured)."""
        return self._host_bytes

    def restore(self, keep: bool = True) -> None:
        """Write the snapshot back into the live objects, bit for bit.

        With ``keep=False`` the optimizer state is handed over instead of copied (a restore that
        ends the snapshot's life saves one copy of the optimizer state) and the host copies are
        let go at once; the snapshot must not be restored again after that.
        """
        # From pinned memory the copies are asynchronous: one wait at the end, not one per tensor.
        current = self._named_tensors()
        with torch.no_grad():
            for name, saved in self._tensor_values.items():
                local_shard(current[name]).copy_(saved, non_blocking=self._pinned)
        self._restore_grads()
        # Set the flag itself: Module.train() recurses into children and may be overridden.
        for module, training in zip(self._model.modules(), self._modes, strict=False):
            module.training = training
        if self._optimizer is not None and self._optimizer_state is not None:
            state = to_host(self._optimizer_state) if keep else self._optimizer_state
            self._optimizer.state.clear()  # free the sweep's state on the device before loading
            self._optimizer.load_state_dict(state)
            self._restore_opt_called()
        if self._scheduler is not None and self._scheduler_state is not None:
            self._scheduler.load_state_dict(to_host(self._scheduler_state))
        if self._scaler is not None and self._scaler_state is not None:
            self._scaler.load_state_dict(dict(self._scaler_state))
        self._rng.restore()
        if self._pinned:
            torch.cuda.synchronize()
        if not keep:
            self._release()

    def _restore_opt_called(self) -> None:
        if self._opt_called is _MISSING:
            vars(self._optimizer).pop("_opt_called", None)
        else:
            self._optimizer._opt_called = self._opt_called  # type: ignore[union-attr]

    def _release(self) -> None:
        self._tensor_values, self._grads, self._optimizer_state = {}, {}, None
        if self._pinned:
            _return_pinned_memory()

    def _restore_grads(self) -> None:
        parameters = list(self._model.named_parameters())
        for _, param in parameters:
            param.grad = None  # free the sweep's gradients before the saved ones are copied back
        for name, param in parameters:
            saved_grad = self._grads.get(name)
            if saved_grad is not None:
                param.grad = saved_grad.to(param.device, copy=True, non_blocking=self._pinned)


def _return_pinned_memory() -> None:
    """Give torch's cached, unused pinned blocks back to the system.

    torch keeps freed pinned blocks for reuse, rounded up to a power of two; the snapshot's would
    otherwise stay page-locked for the rest of the process, through the whole training run.
    """
    empty_host_cache = getattr(getattr(torch, "accelerator", None), "empty_host_cache", None)
    if callable(empty_host_cache):
        empty_host_cache()


def _tensor_bytes(values: Any) -> int:
    if isinstance(values, torch.Tensor):
        local = local_shard(values)
        return local.numel() * local.element_size()
    if isinstance(values, Mapping):
        return sum(_tensor_bytes(item) for item in values.values())
    if isinstance(values, (list, tuple)):
        return sum(_tensor_bytes(item) for item in values)
    return 0
