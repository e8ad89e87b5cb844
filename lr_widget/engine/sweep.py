"""The LR range-test engine: the :class:`LRFinder` behind :func:`~lr_widget.find.find_lr`.

The engine trains the user's model for a few hundred mini-batches while the LR rises, records the
loss of every step, stops on divergence, a non-finite loss, a caller's request or an error, and
always restores the model, optimizer, GradScaler, LR scheduler and RNG streams exactly. The
optimizer steps themselves are :class:`~lr_widget.engine.stepping.Stepper`'s. It imports torch and
numpy only; live consumers (the widget, a progress bar) follow it through a per-step callback or
by iterating :meth:`LRFinder.steps`.

Each step's losses stay on the device until :class:`~lr_widget.engine.distributed.StepSync` reads
them, once per step and optionally a step or two late; under ``torch.distributed`` the same read
carries the mean over ranks and every rank's stop request, so all ranks stop together
(see ``docs/distributed.md``).
"""

from __future__ import annotations

import contextlib
import platform
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import torch

from lr_widget.engine.batches import (
    BatchStream,
    LossComputer,
    LossFn,
    StepFn,
    batch_sizes,
    move_to_device,
)
from lr_widget.engine.claims import claimed
from lr_widget.engine.distributed import (
    StepSync,
    default_loss_read_lag,
    resolve_distributed,
    world_size,
)
from lr_widget.engine.inputs import (
    check_callback,
    check_iterable,
    check_loss_read_lag,
    check_model,
    check_optimizer,
    check_scheduler,
    check_stop_event,
    default_optimizer,
    make_settings,
    optimizer_name,
    stop_requested,
)
from lr_widget.engine.recording import CurveRecorder, StepCallback, StepEvent, SweepEnded
from lr_widget.engine.scaling import make_scaler
from lr_widget.engine.schedules import group_lr_ratios, iter_lrs, lr_setter
from lr_widget.engine.state import OuterState, RestoreError, TrainingState
from lr_widget.engine.stepping import Stepper
from lr_widget.results.range_test import RangeTestResult, StopReason
from lr_widget.results.settings import SweepSettings
from lr_widget.version import __version__


class LRFinder:
    """An LR range test on ``model``; see :func:`find_lr` for the parameters.

    Build it once, then :meth:`run` it (or iterate :meth:`steps`); each run restores the model,
    optimizer, scaler, scheduler and RNG streams on exit, whatever the exit. :meth:`stop` may be
    called from another thread.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(4, 2)
    >>> data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(4)]
    >>> finder = LRFinder(model, data, num_steps=10)
    >>> result = finder.run()
    >>> len(result.lrs)
    10
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_data: Iterable[Any],
        loss_fn: LossFn | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        val_data: Iterable[Any] | None = None,
        step_fn: StepFn | None = None,
        grad_scaler: torch.amp.GradScaler | bool | None = None,
        scheduler: Any = None,
        distributed: bool | None = None,
        loss_read_lag: int | None = None,
        outer_state: OuterState | None = None,
        **settings: Any,
    ) -> None:
        self.settings = make_settings(settings, train_data)
        check_loss_read_lag(loss_read_lag)
        check_model(model, train_data)
        check_iterable(train_data, "train_data")
        if val_data is not None:
            check_iterable(val_data, "val_data")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable or None, got {loss_fn!r}")
        if step_fn is not None and not callable(step_fn):
            raise TypeError(f"step_fn must be callable or None, got {step_fn!r}")
        self.model = model
        self.device = next(p.device for p in model.parameters() if p.requires_grad)
        self.optimizer = optimizer if optimizer is not None else default_optimizer(model)
        check_optimizer(self.optimizer, model)
        self.owns_optimizer = optimizer is None
        check_scheduler(scheduler, self.optimizer)
        self.scheduler = scheduler
        self.scaler = make_scaler(grad_scaler, self.device)
        self.distributed = resolve_distributed(distributed)
        self.loss_read_lag = (
            default_loss_read_lag(self.device) if loss_read_lag is None else loss_read_lag
        )
        self.train_data = train_data
        self.val_data = val_data
        self.outer_state = outer_state
        self.losses = LossComputer(model, loss_fn, step_fn)
        self.stepper = Stepper(
            model, self.optimizer, self.scaler, self.losses, self.device, self.distributed
        )
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        self.result: RangeTestResult | None = None

    # -- control ----------------------------------------------------------------------------
    def configure(self, **changes: Any) -> SweepSettings:
        """Change sweep settings for the next run (validated; not allowed while running).

        >>> finder = LRFinder(torch.nn.Linear(2, 1), [(torch.zeros(1, 2), torch.zeros(1, 1))])
        >>> finder.configure(start_lr=1e-5, num_steps=50).num_steps
        50
        """
        if self._running:
            raise RuntimeError("cannot change the settings while a sweep is running")
        current = self.settings.to_dict()
        if changes.get("epochs") is not None:  # a new length in epochs replaces the old one
            current.pop("train_steps")
        self.settings = make_settings({**current, **changes}, self.train_data)
        return self.settings

    def stop(self) -> None:
        """Ask a running sweep to stop after its current step (thread-safe)."""
        self._stop_event.set()

    @property
    def running(self) -> bool:
        """Whether a sweep is in progress."""
        return self._running

    @property
    def finder(self) -> LRFinder:
        """This sweep: what :class:`~lr_widget.engine.runner.RangeTestRunner` asks for."""
        return self

    def run(
        self,
        callback: StepCallback | None = None,
        stop_event: threading.Event | None = None,
        on_run_done: Callable[[RangeTestResult], None] | None = None,
    ) -> RangeTestResult:
        """Run the sweep to its end and return the result.

        ``callback(event)`` is called after every step; returning ``True`` (or a one-element
        tensor that is true) stops the sweep; ``on_run_done(result)`` once it has ended (as
        after each run of a repeated sweep). An exception in user code (model, loss, data,
        callback) restores the state, is recorded on :attr:`result` (``stop_reason="error"``)
        and is raised again.
        """
        check_callback(callback)
        steps = self.steps(stop_event)
        try:
            event = next(steps, None)
            while event is not None:
                try:
                    wants_stop = callback is not None and stop_requested(callback(event))
                except BaseException as error:
                    steps.throw(error)  # records the error and restores, then raises it again
                    raise  # pragma: no cover - throw() always raises here
                if wants_stop:
                    self.stop()
                event = next(steps, None)
        finally:
            steps.close()  # whatever escapes, the restore happens now, not at garbage collection
        assert self.result is not None
        if on_run_done is not None:
            on_run_done(self.result)
        return self.result

    def steps(self, stop_event: threading.Event | None = None) -> Generator[StepEvent, None, None]:
        """Run the sweep lazily, yielding a :class:`StepEvent` after each step.

        The state is restored when the generator finishes, raises, or is closed; when breaking out
        early, close it (``contextlib.closing``) so the restore happens at once rather than at
        garbage collection. With ``loss_read_lag > 0`` each event comes that many steps after its
        step was trained; steps trained past the one that ends the sweep are not recorded.
        """
        check_stop_event(stop_event)
        if torch.is_inference_mode_enabled():
            raise RuntimeError(
                "a range test trains, and torch.inference_mode() is on in this thread: call it "
                "outside the `with torch.inference_mode():` block"
            )
        with self._lock:
            if self._running:
                raise RuntimeError("this LRFinder is already running a sweep")
            self._running = True
        self._stop_event.clear()
        external_stop = stop_event or threading.Event()
        started = time.perf_counter()
        claim = contextlib.ExitStack()  # this model and optimizer are ours until restored
        try:
            claim.enter_context(claimed("a sweep", model=self.model, optimizer=self.optimizer))
            snapshot = TrainingState.capture(
                self.model, self.optimizer, self.scaler, self.scheduler, self.outer_state
            )
        except BaseException:
            claim.close()
            self._running = False
            raise
        snapshot_s = time.perf_counter() - started
        result = self.result = self._new_result()
        reason, detail = StopReason.ERROR, ""
        try:
            yield from self._sweep(result, external_stop)
            reason, detail = StopReason.COMPLETED, f"reached end_lr after {result.num_steps} steps"
        except SweepEnded as stop:
            reason, detail = stop.reason, stop.detail
        except (GeneratorExit, KeyboardInterrupt) as interrupt:
            reason, detail = StopReason.STOPPED, f"interrupted ({type(interrupt).__name__})"
            raise
        except BaseException as error:
            result.error = f"{type(error).__name__}: {error}"
            detail = f"error at step {result.num_steps}: {result.error}"
            raise
        finally:
            restore_started = time.perf_counter()
            try:
                snapshot.restore(keep=False)
            except RestoreError as error:
                result.error = f"{type(error).__name__}: {error}"
                reason, detail = StopReason.ERROR, f"restore failed: {error}"
                raise
            finally:
                result.stop_reason, result.stop_detail = reason, detail
                result.metadata["loss"] = self.losses.loss_name
                result.metadata["snapshot_bytes"] = snapshot.host_bytes
                result.timings.update(
                    snapshot_s=snapshot_s,
                    restore_s=time.perf_counter() - restore_started,
                    total_s=time.perf_counter() - started,
                )
                claim.close()
                self._running = False

    # -- the loop ---------------------------------------------------------------------------
    def _sweep(
        self, result: RangeTestResult, external_stop: threading.Event
    ) -> Iterator[StepEvent]:
        settings, stepper = self.settings, self.stepper
        schedule = iter_lrs(settings.num_steps, settings.start_lr, settings.end_lr, settings.mode)
        set_lr = lr_setter(self.optimizer, group_lr_ratios(self.optimizer))
        if not self.model.training:
            self.model.train()
        train_modes = [module.training for module in self.model.modules()]
        batches = BatchStream(self.train_data, "train_data")
        val_batches = self._cached_val_batches()
        sync = StepSync(
            lag=self.loss_read_lag,
            distributed=self.distributed,
            optimizer_steps=settings.batches_per_step,
            val_batches=None if val_batches is None else len(val_batches),
        )
        recorder = CurveRecorder(result, settings, sync.ranks)
        try:
            with stepper.watching_scaler_steps():
                for step, lr in enumerate(schedule):
                    stop_requested = False
                    if self._stop_event.is_set() or external_stop.is_set():
                        stop_requested = self._stop_requested(external_stop, sync, result)
                    step_started = time.perf_counter()
                    set_lr(lr)
                    try:
                        loss_sum = stepper.train_at_lr(batches, settings)
                    except SweepEnded:  # record the steps still queued first, as with no lag
                        yield from recorder.reveal(sync.drain())
                        raise
                    val_sum = None
                    if val_batches is not None:
                        val_sum = stepper.validation_loss_sum(val_batches, train_modes, settings)
                    sync.push(step, lr, loss_sum, val_sum, stop_requested)
                    readings = sync.ready()
                    recorder.step_took(step, time.perf_counter() - step_started)
                    for reading in readings:  # inline, not reveal(): this runs every step
                        event = recorder.record(reading)
                        yield event
                        recorder.check(reading, event)
                yield from recorder.reveal(sync.drain())
        finally:  # what one optimizer step saw, however the sweep ended
            result.metadata.update(
                batch_sizes(batches.batch_rows, settings.accumulation_steps, sync.ranks)
            )

    def _stop_requested(
        self, external_stop: threading.Event, sync: StepSync, result: RangeTestResult
    ) -> bool:
        """Whether the caller asked to stop; a lone process stops at once, before training.

        Under ``torch.distributed`` the request must first reach the other ranks, so it travels
        with the next step (see :meth:`StepSync.push`) and every rank stops after that step.
        """
        requested = self._stop_event.is_set() or external_stop.is_set()
        if requested and not sync.distributed:  # steps trained ahead but not yet read: dropped
            raise SweepEnded(
                StopReason.STOPPED, f"stopped by the caller before step {result.num_steps}"
            )
        return requested

    def _cached_val_batches(self) -> list[Any] | None:
        if self.val_data is None:
            return None
        stream = BatchStream(self.val_data, "val_data")
        count = self.settings.val_batches
        return [move_to_device(next(stream), self.device) for _ in range(count)]

    def _new_result(self) -> RangeTestResult:
        return RangeTestResult(
            lrs=[],
            losses=[],
            val_losses=None if self.val_data is None else [],
            beta=self.settings.beta,
            stop_reason=StopReason.RUNNING,
            settings=self.settings.to_dict(),
            metadata=self._metadata(),
        )

    def _metadata(self) -> dict[str, Any]:
        return {
            "model": type(_unwrapped(self.model)).__name__,
            "optimizer": optimizer_name(self.optimizer),
            "optimizer_defaults": _plain(self.optimizer.defaults),
            "parameter_groups": len(self.optimizer.param_groups),
            "trainable_parameters": sum(p.numel() for p in self.stepper.trainable),
            "device": str(self.device),
            "grad_scaler": self.scaler is not None,
            "scheduler": None if self.scheduler is None else type(self.scheduler).__name__,
            "closure": self.stepper.closure,
            "world_size": world_size() if self.distributed else 1,
            "framework": None if self.outer_state is None else self.outer_state.name,
            "loss_read_lag": self.loss_read_lag,
            "loss": self.losses.loss_name,
            "validation": self.val_data is not None,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "lr_widget": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module inside a ``DistributedDataParallel`` wrapper."""
    inner = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else None
    return inner if isinstance(inner, torch.nn.Module) else model


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """Hyper-parameters as JSON-friendly values (tensors and tuples become numbers and lists)."""
    plain: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (bool, int, float, str)) or value is None:
            plain[key] = value
        elif isinstance(value, (tuple, list)):
            plain[key] = [v if isinstance(v, (bool, int, float, str)) else str(v) for v in value]
        else:
            plain[key] = str(value)
    return plain
