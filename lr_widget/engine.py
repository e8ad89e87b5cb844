"""The LR range-test engine: ``find_lr`` and the :class:`LRFinder` behind it.

The engine trains the user's model for a few hundred mini-batches while the LR rises, records the
loss of every step, stops on divergence, a non-finite loss, a caller's request or an error, and
always restores the model, optimizer, GradScaler and RNG streams exactly. It imports torch and
numpy only; live consumers (the widget, a progress bar) follow it through a per-step callback or
by iterating :meth:`LRFinder.steps`.
"""

from __future__ import annotations

import contextlib
import math
import platform
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from lr_widget.batches import BatchStream, LossComputer, LossFn, StepFn, move_to_device
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
        **settings: Any,
    ) -> None:
        self.settings = _make_settings(settings)
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
        self.train_data = train_data
        self.val_data = val_data
        self.losses = LossComputer(model, loss_fn, step_fn)
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
        garbage collection.
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
        train_ema, val_ema = DebiasedEMA(settings.beta), DebiasedEMA(settings.beta)
        best = math.inf
        started = time.perf_counter()
        step_times: list[float] = result.timings.setdefault("step_s", [])
        for step, lr in enumerate(schedule.tolist()):
            if self._stop_event.is_set() or external_stop.is_set():
                raise _StopSweep(StopReason.STOPPED, f"stopped by the caller before step {step}")
            step_started = time.perf_counter()
            apply_lr(self.optimizer, lr, ratios)
            loss = self._train_at_lr(batches)
            val_loss = None
            if val_batches is not None:
                val_loss = self._validation_loss(val_batches, train_modes)
                result.val_losses.append(val_loss)  # type: ignore[union-attr]
            result.lrs.append(lr)
            result.losses.append(loss)
            smoothed = train_ema.update(loss)
            smoothed_val = None if val_loss is None else val_ema.update(val_loss)
            step_times.append(time.perf_counter() - step_started)
            yield StepEvent(
                step, settings.num_steps, lr, loss, smoothed, val_loss, smoothed_val,
                time.perf_counter() - started,
            )  # fmt: skip
            watched = smoothed if smoothed_val is None else smoothed_val
            raw = loss if val_loss is None else val_loss
            if not math.isfinite(raw):
                raise _StopSweep(
                    StopReason.NON_FINITE, f"loss was {raw} at step {step} (lr {lr:.2e})"
                )
            best = min(best, watched)
            if _diverged(watched, best, settings.diverge_factor):
                raise _StopSweep(
                    StopReason.DIVERGED,
                    f"smoothed loss {watched:.4g} exceeded {settings.diverge_factor:g} x its "
                    f"minimum {best:.4g} at step {step} (lr {lr:.2e})",
                )

    def _train_at_lr(self, batches: BatchStream) -> float:
        """Take ``batches_per_step`` optimizer steps at the current LR; return their mean loss.

        With a GradScaler, a skipped (overflowing) step is retried on the next batch: it does not
        count, so the sweep does not advance on a step that changed nothing.
        """
        total = torch.zeros((), device=self.device)
        taken = skipped = 0
        while taken < self.settings.batches_per_step:
            loss, stepped = self._optimizer_step(batches)
            if not math.isfinite(loss.item()):
                return float(loss.item())
            if stepped:
                total += loss
                taken += 1
                skipped = 0
                continue
            skipped += 1
            if skipped > self.settings.max_skipped_steps:
                raise _StopSweep(
                    StopReason.NON_FINITE,
                    f"the GradScaler skipped {skipped} steps in a row (inf/NaN gradients)",
                )
        return float(total.item()) / taken

    def _optimizer_step(self, batches: BatchStream) -> tuple[torch.Tensor, bool]:
        """One optimizer step over ``accumulation_steps`` micro-batches.

        Returns the mean micro-batch loss (detached) and whether the optimizer actually stepped.
        """
        settings, optimizer, scaler = self.settings, self.optimizer, self.scaler
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for _ in range(settings.accumulation_steps):
            batch = move_to_device(next(batches), self.device)
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
        scale_before = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        return mean_loss, scaler.get_scale() >= scale_before

    def _validation_loss(self, val_batches: list[Any], train_modes: list[bool]) -> float:
        self.model.eval()
        try:
            total = torch.zeros((), device=self.device)
            with torch.no_grad(), self._autocast():
                for batch in val_batches:
                    total += self.losses(batch, require_grad=False).detach().float()
            return float(total.item()) / len(val_batches)
        finally:
            for module, training in zip(self.model.modules(), train_modes, strict=False):
                module.training = training

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
            "model": type(self.model).__name__,
            "optimizer": type(self.optimizer).__name__,
            "optimizer_defaults": _plain(self.optimizer.defaults),
            "parameter_groups": len(self.optimizer.param_groups),
            "trainable_parameters": sum(p.numel() for p in self._trainable()),
            "device": str(self.device),
            "grad_scaler": self.scaler is not None,
            "loss": self.losses.loss_name,
            "validation": self.val_data is not None,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "lr_widget": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


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
    **options
        ``val_data``, ``step_fn``, ``grad_scaler`` (a ``GradScaler``, or ``True`` for a new one)
        and the :class:`~lr_widget.settings.SweepSettings` fields: ``beta``, ``diverge_factor``,
        ``batches_per_step``, ``accumulation_steps``, ``max_grad_norm``, ``amp_dtype``,
        ``val_batches``, ``max_skipped_steps``.

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
    return finder.run(callback=callback, stop_event=stop_event)


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
