"""The LR range-test engine: ``find_lr`` and the :class:`LRFinder` behind it.

The engine trains the user's model for a few hundred mini-batches while the LR rises, records the
loss of every step, stops on divergence, a non-finite loss, a caller's request or an error, and
always restores the model, optimizer, GradScaler and RNG streams exactly. It imports torch and
numpy only; live consumers (the widget, a progress bar) follow it through a per-step callback or
by iterating :meth:`LRFinder.steps`.

Each step's losses stay on the device until :class:`~lr_widget.distributed.StepSync` reads them,
once per step and optionally a step or two late; under ``torch.distributed`` the same read carries
the mean over ranks and every rank's stop request, so all ranks stop together
(see ``docs/distributed.md``).
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from lr_widget.batches import BatchStream, LossComputer, LossFn, StepFn, move_to_device
from lr_widget.distributed import (
    StepReading,
    StepSync,
    any_rank,
    default_loss_read_lag,
    resolve_distributed,
    save_on_main_process,
    world_size,
)
from lr_widget.result import RangeTestResult, StopReason
from lr_widget.schedules import apply_lr, group_lr_ratios, lr_schedule
from lr_widget.settings import SweepSettings
from lr_widget.smoothing import DebiasedEMA
from lr_widget.state import TrainingState

__all__ = ["LRFinder", "StepCallback", "StepEvent", "find_lr"]


@dataclass(frozen=True)
class StepEvent:
    """What a live consumer learns after each step of the sweep."""

    step: int
    num_steps: int
    lr: float
    loss: float
    smoothed_loss: float
    val_loss: float | None
    smoothed_val_loss: float | None
    elapsed_s: float

    @property
    def fraction_done(self) -> float:
        """Share of the planned steps completed, in (0, 1]."""
        return (self.step + 1) / self.num_steps

    @property
    def eta_s(self) -> float:
        """Estimated seconds left if the sweep runs to its last step."""
        return self.elapsed_s / (self.step + 1) * (self.num_steps - self.step - 1)


# A callback returning True asks the sweep to stop after the current step.
StepCallback = Callable[[StepEvent], "bool | None"]


class _StopSweep(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside the loop to end the sweep with a given reason."""

    def __init__(self, reason: StopReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class LRFinder:
    """An LR range test on ``model``; see :func:`find_lr` for the parameters.

    Build it once, then :meth:`run` it (or iterate :meth:`steps`); each run restores the model,
    optimizer, scaler and RNG streams on exit, whatever the exit. :meth:`stop` may be called from
    another thread.

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
        distributed: bool | None = None,
        loss_read_lag: int | None = None,
        **settings: Any,
    ) -> None:
        self.settings = _make_settings(settings)
        _check_loss_read_lag(loss_read_lag)
        _check_model(model)
        _check_iterable(train_data, "train_data")
        if val_data is not None:
            _check_iterable(val_data, "val_data")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable or None, got {loss_fn!r}")
        if step_fn is not None and not callable(step_fn):
            raise TypeError(f"step_fn must be callable or None, got {step_fn!r}")
        self.model = model
        self.device = next(p.device for p in model.parameters() if p.requires_grad)
        self.optimizer = optimizer if optimizer is not None else _default_optimizer(model)
        _check_optimizer(self.optimizer, model)
        self.owns_optimizer = optimizer is None
        self.scaler = _make_scaler(grad_scaler, self.device)
        self.distributed = resolve_distributed(distributed)
        self.loss_read_lag = (
            default_loss_read_lag(self.device) if loss_read_lag is None else loss_read_lag
        )
        self.train_data = train_data
        self.val_data = val_data
        self.losses = LossComputer(model, loss_fn, step_fn)
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        self._scaler_steps: _ScalerStepWatch | None = None
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
        self.settings = _make_settings({**self.settings.to_dict(), **changes})
        return self.settings

    def stop(self) -> None:
        """Ask a running sweep to stop after its current step (thread-safe)."""
        self._stop_event.set()

    @property
    def running(self) -> bool:
        """Whether a sweep is in progress."""
        return self._running

    def run(
        self, callback: StepCallback | None = None, stop_event: threading.Event | None = None
    ) -> RangeTestResult:
        """Run the sweep to its end and return the result.

        ``callback(event)`` is called after every step; returning ``True`` stops the sweep. An
        exception in user code (model, loss, data, callback) restores the state, is recorded on
        :attr:`result` (``stop_reason="error"``) and is raised again.
        """
        steps = self.steps(stop_event)
        event = next(steps, None)
        while event is not None:
            try:
                wants_stop = callback(event) if callback is not None else False
            except BaseException as error:
                steps.throw(error)  # records the error and restores, then raises it again
                raise  # pragma: no cover - throw() always raises here
            if wants_stop:
                self.stop()
            event = next(steps, None)
        assert self.result is not None
        return self.result

    def steps(self, stop_event: threading.Event | None = None) -> Generator[StepEvent, None, None]:
        """Run the sweep lazily, yielding a :class:`StepEvent` after each step.

        The state is restored when the generator finishes, raises, or is closed; when breaking out
        early, close it (``contextlib.closing``) so the restore happens at once rather than at
        garbage collection. With ``loss_read_lag > 0`` each event comes that many steps after its
        step was trained; steps trained past the one that ends the sweep are not recorded.
        """
        with self._lock:
            if self._running:
                raise RuntimeError("this LRFinder is already running a sweep")
            self._running = True
        self._stop_event.clear()
        external_stop = stop_event or threading.Event()
        started = time.perf_counter()
        try:
            snapshot = TrainingState.capture(self.model, self.optimizer, self.scaler)
        except BaseException:
            self._running = False
            raise
        snapshot_s = time.perf_counter() - started
        result = self.result = self._new_result()
        reason, detail = StopReason.ERROR, ""
        try:
            yield from self._sweep(result, external_stop)
            reason, detail = StopReason.COMPLETED, f"reached end_lr after {result.num_steps} steps"
        except _StopSweep as stop:
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
            finally:
                result.stop_reason, result.stop_detail = reason, detail
                result.metadata["loss"] = self.losses.loss_name
                result.metadata["snapshot_bytes"] = snapshot.host_bytes
                result.timings.update(
                    snapshot_s=snapshot_s,
                    restore_s=time.perf_counter() - restore_started,
                    total_s=time.perf_counter() - started,
                )
                self._running = False

    # -- the loop ---------------------------------------------------------------------------
    def _sweep(
        self, result: RangeTestResult, external_stop: threading.Event
    ) -> Iterator[StepEvent]:
        settings = self.settings
        schedule = lr_schedule(
            settings.num_steps, settings.start_lr, settings.end_lr, settings.mode
        )
        ratios = group_lr_ratios(self.optimizer)
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
        recorder = _CurveRecorder(result, settings, sync.ranks)
        with self._watching_scaler_steps():
            for step, lr in enumerate(schedule.tolist()):
                stop_requested = self._stop_requested(external_stop, sync, result)
                step_started = time.perf_counter()
                apply_lr(self.optimizer, lr, ratios)
                try:
                    loss_sum = self._train_at_lr(batches)
                except _StopSweep:  # record the steps still queued first, as with no lag
                    yield from recorder.reveal(sync.drain())
                    raise
                val_sum = None
                if val_batches is not None:
                    val_sum = self._validation_loss_sum(val_batches, train_modes)
                sync.push(step, lr, loss_sum, val_sum, stop_requested)
                readings = sync.ready()
                recorder.step_took(step, time.perf_counter() - step_started)
                for reading in readings:  # inline, not reveal(): this runs every step
                    event = recorder.record(reading)
                    yield event
                    recorder.check(reading, event)
            yield from recorder.reveal(sync.drain())

    def _stop_requested(
        self, external_stop: threading.Event, sync: StepSync, result: RangeTestResult
    ) -> bool:
        """Whether the caller asked to stop; a lone process stops at once, before training.

        Under ``torch.distributed`` the request must first reach the other ranks, so it travels
        with the next step (see :meth:`StepSync.push`) and every rank stops after that step.
        """
        requested = self._stop_event.is_set() or external_stop.is_set()
        if requested and not sync.distributed:  # steps trained ahead but not yet read: dropped
            raise _StopSweep(
                StopReason.STOPPED, f"stopped by the caller before step {result.num_steps}"
            )
        return requested

    def _train_at_lr(self, batches: BatchStream) -> torch.Tensor:
        """Take ``batches_per_step`` optimizer steps at the current LR; return their loss sum.

        The sum stays on the device, unread. With a GradScaler, a skipped (overflowing) step is
        retried on the next batch: it does not count, so the sweep does not advance on a step that
        changed nothing; only then is the loss read at once, to stop on a non-finite one.
        """
        total = torch.zeros((), device=self.device)
        taken = skipped = 0
        while taken < self.settings.batches_per_step:
            loss, stepped = self._optimizer_step(batches)
            if stepped:
                total += loss
                taken += 1
                skipped = 0
                continue
            if any_rank(~torch.isfinite(loss), self.distributed):
                return total + loss  # non-finite: the step's mean is too, on every rank
            skipped += 1
            if skipped > self.settings.max_skipped_steps:
                raise _StopSweep(
                    StopReason.NON_FINITE,
                    f"the GradScaler skipped {skipped} steps in a row (inf/NaN gradients)",
                )
        return total

    def _optimizer_step(self, batches: BatchStream) -> tuple[torch.Tensor, bool]:
        """One optimizer step over ``accumulation_steps`` micro-batches.

        Returns the mean micro-batch loss (detached) and whether the optimizer actually stepped.
        """
        settings, optimizer, scaler = self.settings, self.optimizer, self.scaler
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for index in range(settings.accumulation_steps):
            batch = move_to_device(next(batches), self.device)
            with self._gradient_sync(last=index == settings.accumulation_steps - 1):
                with self._autocast():
                    loss = self.losses(batch)
                scaled = loss / settings.accumulation_steps
                (scaler.scale(scaled) if scaler is not None else scaled).backward()  # type: ignore[no-untyped-call]
            total += loss.detach().float()
        mean_loss = total / settings.accumulation_steps
        if scaler is None:
            if settings.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self._trainable(), settings.max_grad_norm)
            optimizer.step()
            return mean_loss, True
        if settings.max_grad_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self._trainable(), settings.max_grad_norm)
        assert self._scaler_steps is not None
        return mean_loss, self._scaler_steps.step()

    def _validation_loss_sum(self, val_batches: list[Any], train_modes: list[bool]) -> torch.Tensor:
        """The sum of the validation batches' losses, on the device, in eval mode."""
        self.model.eval()
        try:
            total = torch.zeros((), device=self.device)
            with torch.no_grad(), self._autocast():
                for batch in val_batches:
                    total += self.losses(batch, require_grad=False).detach().float()
            return total
        finally:
            for module, training in zip(self.model.modules(), train_modes, strict=False):
                module.training = training

    @contextlib.contextmanager
    def _watching_scaler_steps(self) -> Iterator[None]:
        if self.scaler is None:
            yield
            return
        self._scaler_steps = _ScalerStepWatch(self.optimizer, self.scaler)
        try:
            yield
        finally:
            self._scaler_steps.close()
            self._scaler_steps = None

    def _gradient_sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """DDP all-reduces gradients on the last micro-batch only, as in a training loop."""
        if last or not isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _cached_val_batches(self) -> list[Any] | None:
        if self.val_data is None:
            return None
        stream = BatchStream(self.val_data, "val_data")
        count = self.settings.val_batches
        return [move_to_device(next(stream), self.device) for _ in range(count)]

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self.settings.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

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
        from lr_widget import __version__

        return {
            "model": type(_unwrapped(self.model)).__name__,
            "optimizer": type(self.optimizer).__name__,
            "optimizer_defaults": _plain(self.optimizer.defaults),
            "parameter_groups": len(self.optimizer.param_groups),
            "trainable_parameters": sum(p.numel() for p in self._trainable()),
            "device": str(self.device),
            "grad_scaler": self.scaler is not None,
            "world_size": world_size() if self.distributed else 1,
            "loss_read_lag": self.loss_read_lag,
            "loss": self.losses.loss_name,
            "validation": self.val_data is not None,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "lr_widget": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


class _CurveRecorder:
    """Writes each step, once read, into the result, smooths it, and decides when to stop.

    Every rank reads the same numbers in the same order, so every rank records the same curve and
    stops at the same step.
    """

    def __init__(self, result: RangeTestResult, settings: SweepSettings, ranks: int) -> None:
        self.result = result
        self.settings = settings
        self.ranks = ranks
        self.train_ema = DebiasedEMA(settings.beta)
        self.val_ema = DebiasedEMA(settings.beta)
        self.best = math.inf
        self.started = time.perf_counter()
        self._seconds_by_step: dict[int, float] = {}
        self._step_times: list[float] = result.timings.setdefault("step_s", [])

    def step_took(self, step: int, seconds: float) -> None:
        """Note the host time of a trained step, recorded when the step is."""
        self._seconds_by_step[step] = seconds

    def reveal(self, readings: list[StepReading]) -> Iterator[StepEvent]:
        """Record and yield each reading in turn, raising :class:`_StopSweep` at the first that
        ends the sweep (later ones, trained ahead, are dropped)."""
        for reading in readings:
            event = self.record(reading)
            yield event
            self.check(reading, event)

    def record(self, reading: StepReading) -> StepEvent:
        """Append the step to the result and return its event; raise if a rank asked to stop."""
        if reading.stop_ranks:
            raise _StopSweep(
                StopReason.STOPPED,
                f"stopped by the caller on {reading.stop_ranks} of {self.ranks} ranks before "
                f"step {reading.step}",
            )
        result = self.result
        result.lrs.append(reading.lr)
        result.losses.append(reading.loss)
        if result.val_losses is not None and reading.val_loss is not None:
            result.val_losses.append(reading.val_loss)
        self._step_times.append(self._seconds_by_step.pop(reading.step))
        smoothed = self.train_ema.update(reading.loss)
        smoothed_val = None if reading.val_loss is None else self.val_ema.update(reading.val_loss)
        return StepEvent(
            reading.step, self.settings.num_steps, reading.lr, reading.loss, smoothed,
            reading.val_loss, smoothed_val, time.perf_counter() - self.started,
        )  # fmt: skip

    def check(self, reading: StepReading, event: StepEvent) -> None:
        """Raise :class:`_StopSweep` if the step's loss is non-finite or has diverged."""
        raw = event.loss if event.val_loss is None else event.val_loss
        if not math.isfinite(raw):
            ranks = ""
            if self.ranks > 1 and reading.non_finite_ranks:
                ranks = f", non-finite on {reading.non_finite_ranks} of {self.ranks} ranks"
            raise _StopSweep(
                StopReason.NON_FINITE,
                f"loss was {raw} at step {event.step} (lr {event.lr:.2e}){ranks}",
            )
        watched = (
            event.smoothed_loss if event.smoothed_val_loss is None else event.smoothed_val_loss
        )
        self.best = min(self.best, watched)
        factor = self.settings.diverge_factor
        if _diverged(watched, self.best, factor):
            raise _StopSweep(
                StopReason.DIVERGED,
                f"smoothed loss {watched:.4g} exceeded {factor:g} x its minimum {self.best:.4g} at "
                f"step {event.step} (lr {event.lr:.2e})",
            )


class _ScalerStepWatch:
    """Steps through a GradScaler and tells whether the optimizer really stepped.

    A GradScaler skips ``optimizer.step()`` on inf/NaN gradients after reading its own found-inf
    flag, so a post-step hook sees exactly the real steps without any read of ours. Optimizers
    that take the scaling into their own kernels (``_step_supports_amp_scaling``, e.g. fused
    AdamW) are always called and skip on the device, and wrappers may bypass the hooks; for those
    the scale is compared across the update (a skipped step lowers it): one read per step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        self._optimizer = optimizer
        self._scaler = scaler
        self._steps_seen = 0
        self._hook: Any = None
        self._scale = 0.0
        if _post_step_hooks_run(optimizer):
            self._hook = optimizer.register_step_post_hook(self._count_step)
        else:
            self._scale = scaler.get_scale()

    def step(self) -> bool:
        """``scaler.step(optimizer)`` then ``scaler.update()``; whether the optimizer stepped."""
        steps_before, scale_before = self._steps_seen, self._scale
        self._scaler.step(self._optimizer)
        self._scaler.update()
        if self._hook is not None:
            return self._steps_seen > steps_before
        self._scale = self._scaler.get_scale()
        return self._scale >= scale_before

    def close(self) -> None:
        """Remove the hook from the user's optimizer."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _count_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._steps_seen += 1


def _post_step_hooks_run(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` runs post-step hooks and is skipped, not called, on overflow."""
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        return False
    hooked = getattr(type(optimizer).step, "hooked", False)
    return bool(hooked) and "_optimizer_step_post_hooks" in vars(optimizer)


def find_lr(
    model: torch.nn.Module,
    train_data: Iterable[Any],
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    callback: StepCallback | None = None,
    stop_event: threading.Event | None = None,
    save_to: str | os.PathLike[str] | None = None,
    **options: Any,
) -> RangeTestResult:
    """Run an LR range test on ``model`` and return its :class:`RangeTestResult`.

    The model and optimizer are restored exactly afterwards, whatever happens.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``; batches are moved to the device of its parameters.
    train_data
        A DataLoader or any re-iterable of batches, iterated again when it runs out. Batches may
        be ``(x, y)``, ``(x1, ..., y)``, dicts (``{"input_ids": ..., "labels": ...}``), or
        anything a ``step_fn`` understands.
    loss_fn
        ``loss_fn(output, target) -> scalar``. ``None`` uses the model's own loss if its output
        carries one, else infers cross-entropy (integer targets) or MSE (float targets).
    optimizer
        Used as is (hyper-parameters and state; restored afterwards). ``None`` uses AdamW.
    start_lr, end_lr, num_steps, mode
        The sweep: ``num_steps`` LRs from ``start_lr`` to ``end_lr`` inclusive, spaced ``"exp"``
        (log-uniform) or ``"linear"``.
    callback
        Called with a :class:`StepEvent` after every step; returning ``True`` stops the sweep.
    stop_event
        A ``threading.Event``; setting it stops the sweep after the current step.
    save_to
        A path to write the result to as JSON (what ``LRWidget.from_result`` opens), from the main
        process only: rank 0 under ``torch.distributed``, else the only process.
    **options
        ``val_data``, ``step_fn``, ``grad_scaler`` (a ``GradScaler``, or ``True`` for a new one),
        ``distributed`` (``None`` follows an initialised process group, see
        :func:`~lr_widget.distributed.resolve_distributed`), ``loss_read_lag`` (steps the
        host may run ahead before reading a loss; ``None``: 0 on the CPU, 1 on an accelerator)
        and the :class:`~lr_widget.settings.SweepSettings` fields: ``beta``, ``diverge_factor``,
        ``batches_per_step``, ``accumulation_steps``, ``max_grad_norm``, ``amp_dtype``,
        ``val_batches``, ``max_skipped_steps``.

    Under ``torch.distributed`` (DDP under ``torchrun``), call it on every rank with the same
    settings: each rank trains on its own shard, records the mean loss over the ranks, and stops
    at the same step as the others; each rank is restored, and each returns the same curve.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> data = [(torch.randn(32, 4), torch.randint(0, 3, (32,))) for _ in range(8)]
    >>> result = find_lr(model, data, num_steps=30)
    >>> result.stop_reason.value in {"completed", "diverged"}
    True
    """
    finder = LRFinder(
        model,
        train_data,
        loss_fn,
        optimizer,
        start_lr=start_lr,
        end_lr=end_lr,
        num_steps=num_steps,
        mode=mode,
        **options,
    )
    result = finder.run(callback=callback, stop_event=stop_event)
    if save_to is not None:
        save_on_main_process(result, save_to)
    return result


def _diverged(smoothed: float, best: float, factor: float) -> bool:
    """Whether ``smoothed`` is ``factor`` times above ``best``; for losses that can be negative
    (log-likelihoods), "times" is measured as a distance of ``(factor - 1) * |best|``."""
    if not math.isfinite(factor):
        return False
    return smoothed > best + (factor - 1.0) * abs(best)


def _make_settings(settings: dict[str, Any]) -> SweepSettings:
    known = set(SweepSettings.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(
            f"unknown argument(s) {', '.join(unknown)}; valid sweep settings are "
            f"{', '.join(sorted(known))}"
        )
    return SweepSettings(**settings)


def _check_loss_read_lag(loss_read_lag: Any) -> None:
    if loss_read_lag is None:
        return
    if isinstance(loss_read_lag, bool) or not isinstance(loss_read_lag, int) or loss_read_lag < 0:
        raise ValueError(
            f"loss_read_lag must be an integer >= 0 (steps the host may run ahead of the device) "
            f"or None for the device's default, got {loss_read_lag!r}"
        )


def _check_model(model: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"model has no trainable parameters (every parameter of {type(model).__name__} has "
            "requires_grad=False); unfreeze at least one"
        )


def _check_iterable(data: Any, name: str) -> None:
    if isinstance(data, (str, bytes, torch.Tensor)) or not hasattr(data, "__iter__"):
        raise TypeError(
            f"{name} must be a DataLoader or another iterable of batches, got {type(data).__name__}"
        )
    with contextlib.suppress(TypeError):
        if len(data) == 0:
            raise ValueError(f"{name} is empty (len() == 0); it must yield at least one batch")


def _check_optimizer(optimizer: Any, model: torch.nn.Module) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {optimizer!r}")
    model_params = {id(p) for p in model.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(id(p) in model_params for p in held):
        raise ValueError(
            f"optimizer holds none of the model's parameters ({len(held)} parameters, none from "
            f"{type(model).__name__}); build it from model.parameters()"
        )


def _default_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])


def _make_scaler(
    grad_scaler: torch.amp.GradScaler | bool | None, device: torch.device
) -> torch.amp.GradScaler | None:
    if grad_scaler is None or grad_scaler is False:
        return None
    if grad_scaler is True:
        return torch.amp.GradScaler(device.type)
    if not isinstance(grad_scaler, torch.amp.GradScaler):
        raise TypeError(
            f"grad_scaler must be a torch.amp.GradScaler, True, False or None, got {grad_scaler!r}"
        )
    return grad_scaler if grad_scaler.is_enabled() else None


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
