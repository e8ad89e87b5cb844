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

import contextlib
import copy
import random
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

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
    return map_tensors(value, lambda tensor: _tensor_to_host(tensor, pin))


def map_tensors(value: Any, copy_tensor: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Deep copy ``value``: every tensor through ``copy_tensor``, dicts, lists and tuples
    rebuilt, anything else deep-copied."""
    if isinstance(value, torch.Tensor):
        return copy_tensor(value)
    if isinstance(value, Mapping):
        return {key: map_tensors(item, copy_tensor) for key, item in value.items()}
    if isinstance(value, list):
        return [map_tensors(item, copy_tensor) for item in value]
    if isinstance(value, tuple):
        return tuple(map_tensors(item, copy_tensor) for item in value)
    return copy.deepcopy(value)


def _tensor_to_host(value: torch.Tensor, pin: bool) -> torch.Tensor:
    tensor = value.detach()
    if local_shard(tensor) is not tensor:
        return _dtensor_to_host(tensor, pin)
    if tensor.device.type == "cpu":
        return tensor.clone()
    host = torch.empty_like(tensor, device="cpu", pin_memory=pin and torch.cuda.is_available())
    host.copy_(tensor, non_blocking=pin)
    return host


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


class OuterState(Protocol):
    """State outside the model and optimizer that a sweep changes, and that its owner restores:
    a training framework's own (a fastai data loader's random stream, a Trainer's counters).

    :class:`TrainingState` calls :meth:`capture` with the rest of the snapshot and the function
    it returns with the rest of the restore.
    """

    name: str
    """Whose state it is, as a result's metadata names it (``"fastai Learner"``)."""

    def capture(self) -> Callable[[], None]:
        """Save the state now; return what writes it back."""
        ...


class RestoreError(RuntimeError):
    """Some parts of a snapshot could not be written back; every other part was.

    ``failures`` lists ``(what, why)`` for each part that failed.
    """

    def __init__(self, failures: list[tuple[str, str]]) -> None:
        self.failures = failures
        listed = "; ".join(f"{what}: {why}" for what, why in failures)
        super().__init__(f"restored everything except {len(failures)} part(s): {listed}")


_TABLES = ("_parameters", "_buffers", "_modules")
"""The tables of a module whose entries a sweep may replace, empty or add to."""


@dataclass
class _Slot:
    """One entry of a module's ``_parameters``, ``_buffers`` or ``_modules``: the object it
    held (or ``None``), put back by identity at restore."""

    module: torch.nn.Module
    table: str
    name: str
    value: Any  # a tensor, a submodule, or None


class TrainingState:
    """A host-memory snapshot of a model, its optimizer, a GradScaler, an LR scheduler and the
    RNG streams.

    What it covers: every parameter, buffer and submodule of every module, by the object each
    module held (a buffer that ``forward`` regrows or replaces, or a ``None`` buffer it fills,
    gets its object back; names registered during the sweep are removed); every tensor of every
    optimizer param group, the model's or not (a learnable temperature in the loss); their
    gradients and ``requires_grad`` flags; the optimizer's state, param groups and defaults,
    put back as the same objects (the user's tensor ``lr``, an fp32 master copy of bf16 weights
    keep their identity and dtype; nothing is cast); the scheduler, scaler, RNG streams and
    every module's train/eval mode.
    :meth:`restore` writes back every part it can, even when one fails, and then raises one
    :class:`RestoreError` listing what it could not; a KeyboardInterrupt arriving meanwhile
    waits until it is done.

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
        outer: OuterState | None = None,
    ) -> None:
        self._model = model
        self._optimizer = optimizer
        self._scaler = scaler if scaler is not None and scaler.is_enabled() else None
        with torch.inference_mode(False), torch.no_grad():
            self._capture(model, optimizer, scheduler)
        self._outer = outer
        self._restore_outer = None if outer is None else outer.capture()
        if self._pinned:
            torch.cuda.synchronize()

    def _capture(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, scheduler: Any
    ) -> None:
        self._slots = [
            _Slot(module, table, name, value)
            for module in model.modules()
            for table in _TABLES
            for name, value in getattr(module, table).items()
        ]
        self._names = {
            (id(module), table): set(getattr(module, table))
            for module in model.modules()
            for table in _TABLES
        }
        tensors = _unique(
            [slot.value for slot in self._slots if isinstance(slot.value, torch.Tensor)]
        )
        known = {id(tensor) for tensor in tensors}
        self._extra_params = _unique([
            param for group in (optimizer.param_groups if optimizer else [])
            for param in group["params"] if id(param) not in known
        ])  # fmt: skip
        every = tensors + self._extra_params
        pin = any(tensor.is_cuda for tensor in every)
        self._pinned = pin
        self._values = {id(t): (t, to_host(local_shard(t), pin)) for t in every}
        extra = {id(param) for param in self._extra_params}
        self._params = [t for t in every if isinstance(t, torch.nn.Parameter) or id(t) in extra]
        self._grads = {
            id(param): None if param.grad is None else to_host(param.grad, pin)
            for param in self._params
        }
        self._requires_grad = [(param, param.requires_grad) for param in self._params]
        self._modes = [(module, module.training) for module in model.modules()]
        self._optimizer_state = _OptimizerState(optimizer, pin) if optimizer else None
        self._scaler_state = to_host(self._scaler.state_dict()) if self._scaler else None
        # An attached LR scheduler marks the optimizer's step as called; the sweep must not.
        self._opt_called = getattr(optimizer, "_opt_called", _MISSING)
        self._scheduler = scheduler
        self._scheduler_state = to_host(scheduler.state_dict()) if scheduler is not None else None
        self._rng = RNGState.capture()
        self._host_bytes = _tensor_bytes(
            [[value for _, value in self._values.values()], list(self._grads.values()),
             self._optimizer_state.host_values() if self._optimizer_state else []]
        )  # fmt: skip

    @classmethod
    def capture(
        cls,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scaler: torch.amp.GradScaler | None = None,
        scheduler: Any = None,
        outer: OuterState | None = None,
    ) -> TrainingState:
        """Snapshot ``model``, ``optimizer``, ``scaler``, an LR ``scheduler`` (anything with
        ``state_dict``/``load_state_dict``) and ``outer`` state (a framework's); any may be
        shared with the caller."""
        return cls(model, optimizer, scaler, scheduler, outer)

    @property
    def host_bytes(self) -> int:
        """Bytes of host memory the snapshot's tensors hold (held when it was captured)."""
        return self._host_bytes

    def restore(self, keep: bool = True) -> None:
        """Write the snapshot back into the live objects, bit for bit.

        Every part is restored even when another fails; then a :class:`RestoreError` lists the
        parts that failed. A KeyboardInterrupt (SIGINT in the main thread) arriving during the
        restore is raised after it. With ``keep=False`` the host copies are let go afterwards;
        the snapshot must not be restored again after that.
        """
        failures: list[tuple[str, str]] = []
        with _interrupts_deferred() as interrupted:
            with torch.inference_mode(False), torch.no_grad():
                for what, part in self._parts():
                    try:
                        part(failures)
                    except BaseException as error:  # every part must get its turn
                        failures.append((what, _why(error)))
            if self._pinned:
                torch.cuda.synchronize()
            if not keep:
                self._release()
        if failures:
            interrupt = [why for _, why in failures if why.startswith("KeyboardInterrupt")]
            if interrupt and len(interrupt) == len(failures):
                raise KeyboardInterrupt
            raise RestoreError(failures)
        if interrupted:
            raise KeyboardInterrupt

    def _parts(self) -> list[tuple[str, Any]]:
        return [
            ("parameters and buffers", self._restore_tensors),
            ("gradients", self._restore_grads),
            ("train/eval modes", lambda _failures: self._restore_modes()),
            ("optimizer", self._restore_optimizer),
            ("LR scheduler", lambda _failures: self._restore_scheduler()),
            ("GradScaler", lambda _failures: self._restore_scaler()),
            ("random number generators", lambda _failures: self._rng.restore()),
            (
                self._outer.name if self._outer else "",
                lambda _failures: self._restore_outer_state(),
            ),
        ]

    def _restore_outer_state(self) -> None:
        if self._restore_outer is not None:
            self._restore_outer()

    def _restore_tensors(self, failures: list[tuple[str, str]]) -> None:
        for _, (tensor, saved) in self._values.items():
            try:
                _write(tensor, saved, self._pinned)
            except BaseException as error:
                failures.append((f"tensor of shape {tuple(saved.shape)}", _why(error)))
        for slot in self._slots:
            table = getattr(slot.module, slot.table)
            if table.get(slot.name, _MISSING) is not slot.value:
                table[slot.name] = slot.value  # replaced, emptied or removed: the object again
        for module, _ in self._modes:
            for table_name in _TABLES:
                table = getattr(module, table_name)
                known = self._names.get((id(module), table_name), set())
                for name in [name for name in table if name not in known]:
                    del table[name]  # registered during the sweep

    def _restore_grads(self, _failures: list[tuple[str, str]]) -> None:
        for param, requires_grad in self._requires_grad:
            if param.requires_grad != requires_grad:  # frozen or unfrozen during the sweep
                param.requires_grad_(requires_grad)
        for param in self._params:
            param.grad = None  # free the sweep's gradients before the saved ones are copied back
        for param in self._params:
            saved = self._grads[id(param)]
            if saved is not None:
                param.grad = saved.to(param.device, copy=True, non_blocking=self._pinned)

    def _restore_modes(self) -> None:
        # Set the flag itself: Module.train() recurses into children and may be overridden.
        for module, training in self._modes:
            module.training = training

    def _restore_optimizer(self, failures: list[tuple[str, str]]) -> None:
        if self._optimizer is None or self._optimizer_state is None:
            return
        self._optimizer_state.restore(self._optimizer, failures, self._pinned)
        if self._opt_called is _MISSING:
            vars(self._optimizer).pop("_opt_called", None)
        else:
            self._optimizer._opt_called = self._opt_called  # type: ignore[attr-defined]

    def _restore_scheduler(self) -> None:
        if self._scheduler is not None and self._scheduler_state is not None:
            self._scheduler.load_state_dict(to_host(self._scheduler_state))

    def _restore_scaler(self) -> None:
        if self._scaler is not None and self._scaler_state is not None:
            self._scaler.load_state_dict(dict(self._scaler_state))

    def _release(self) -> None:
        self._values, self._grads, self._optimizer_state = {}, {}, None
        if self._pinned:
            _return_pinned_memory()


class _OptimizerState:
    """An optimizer's param groups and per-parameter state, kept as the objects they are.

    ``optimizer.load_state_dict`` is not an exact restore: it casts state to each parameter's
    dtype, replaces a tensor ``lr`` the user holds, and builds new group dicts (inference tensors
    under ``torch.inference_mode``). This puts back the same group dicts, lists and tensors, each
    tensor's saved value copied into it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, pin: bool) -> None:
        self.defaults = (optimizer.defaults, copy.deepcopy(optimizer.defaults))
        self.groups_list = optimizer.param_groups
        self.groups = [(group, dict(group), list(group["params"])) for group in self.groups_list]
        self.state_table = optimizer.state
        self.state = [(param, entries, dict(entries)) for param, entries in optimizer.state.items()]
        values = [value for _, items, _ in self.groups for value in items.values()]
        values += [value for _, _, items in self.state for value in items.values()]
        self.tensors = {
            id(value): (value, to_host(local_shard(value), pin))
            for value in values
            if isinstance(value, torch.Tensor)
        }
        # Other values (LBFGS keeps lists of tensors, counters as ints) are copied to the host,
        # and go back to their parameter's device when restored.
        self.plain = {
            id(value): to_host(value, pin)
            for _, _, items in self.state
            for value in items.values()
            if not isinstance(value, torch.Tensor)
        }

    def host_values(self) -> list[torch.Tensor]:
        return [saved for _, saved in self.tensors.values()]

    def restore(
        self, optimizer: torch.optim.Optimizer, failures: list[tuple[str, str]], pinned: bool
    ) -> None:
        optimizer.state = self.state_table
        self.state_table.clear()  # the sweep's own state is freed before the copies come back
        for tensor, saved in self.tensors.values():
            try:
                _write(tensor, saved, pinned)
            except BaseException as error:
                failures.append((f"optimizer tensor of shape {tuple(saved.shape)}", _why(error)))
        for param, entries, items in self.state:
            device = local_shard(param).device if isinstance(param, torch.Tensor) else None
            to_device = copier_to(device)
            entries.clear()
            entries.update({
                key: value
                if isinstance(value, torch.Tensor)
                else map_tensors(self.plain[id(value)], to_device)
                for key, value in items.items()
            })  # fmt: skip
            self.state_table[param] = entries
        optimizer.param_groups = self.groups_list
        self.groups_list[:] = [group for group, _, _ in self.groups]
        optimizer.defaults = self.defaults[0]
        self.defaults[0].clear()
        self.defaults[0].update(copy.deepcopy(self.defaults[1]))
        for group, items, params in self.groups:
            group.clear()
            group.update(items)
            items["params"][:] = params


def copier_to(device: torch.device | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """Copies a tensor to ``device`` (each tensor's own device where ``None``)."""
    return lambda tensor: tensor.to(device or tensor.device, copy=True)


def _write(tensor: torch.Tensor, saved: torch.Tensor, pinned: bool) -> None:
    """Copy ``saved`` into ``tensor``; where the sweep resized it in place, give it back its
    own shape and dtype."""
    target = local_shard(tensor)
    if target.shape == saved.shape and target.dtype == saved.dtype:
        target.copy_(saved, non_blocking=pinned)
    else:
        target.data = saved.to(target.device, copy=True)


def _unique(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for tensor in tensors:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            out.append(tensor)
    return out


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".rstrip(": ")


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[list[bool]]:
    """Hold a SIGINT (Ctrl-C, a kernel interrupt) until the block ends; the list says whether
    one came. Only the main thread receives signals; elsewhere this does nothing."""
    interrupted: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        yield interrupted
        return
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


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
