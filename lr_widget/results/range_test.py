"""The outcome of a range test: the curve, why it stopped, and what it suggests.

A :class:`RangeTestResult` keeps the raw loss of every step (and the validation loss when one was
measured); the smoothed curves are derived from them on demand, so a curve can be re-smoothed
with another ``beta`` without a new sweep. Results save to strict JSON (no pickles: loading a file
someone sent you runs no code) and export to CSV.

A :class:`RangeTestResult` is a :class:`~lr_widget.results.protocol.SweepResult`, the protocol it
shares with repeated sweeps.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Self

from lr_widget.curves.arguments import require_fraction
from lr_widget.curves.smoothing import LAG_FREE_WIDTH, debiased_ema, fit_noise, lag_free
from lr_widget.results.confirmation import Confirmation
from lr_widget.results.jsonfile import (
    DocumentError,
    decode_floats,
    decode_tree,
    encode_floats,
    encode_tree,
    require_mapping,
)
from lr_widget.results.protocol import SweepResult, write_csv
from lr_widget.results.settings import parse_settings
from lr_widget.results.spread import NoiseBand
from lr_widget.suggestions.curve import Curve, Flat, Suggestion, prepare
from lr_widget.suggestions.length import check_train_steps, describe_length
from lr_widget.suggestions.registry import CURVE_READ, DEFAULT_RULE, suggest

FORMAT_NAME = "lr_widget.range_test"
FORMAT_VERSION = 1

FloatArray = NDArray[np.float64]


class StopReason(str, Enum):
    """Why a sweep ended."""

    COMPLETED = "completed"
    DIVERGED = "diverged"
    NON_FINITE = "non-finite loss"
    STOPPED = "stopped"
    ERROR = "error"
    RUNNING = "running"

    def __str__(self) -> str:
        return self.value


@dataclass
class _Fit:
    """A result's lag-free fit, its noise and (once read) the curve the rules prepare from it,
    with the bytes of the LRs and losses they were computed from."""

    key: bytes
    fit: np.ndarray
    noise: float
    prepared: Curve | str | None = None


@dataclass
class RangeTestResult(SweepResult):
    """The curve of one LR range test.

    Attributes
    ----------
    lrs
        The LR of each recorded step (the LR of the parameter group with the largest LR).
    losses
        The raw training loss of each step (mean over ``batches_per_step`` optimizer steps).
    val_losses
        The validation loss after each step, when validation data was given.
    beta
        Smoothing of the live view's curve (:attr:`smoothed_losses`, :attr:`curve`); the
        suggestions read the lag-free curve instead (:attr:`lag_free_curve`).
    stop_reason, stop_detail
        Why the sweep ended (:class:`StopReason`) and a one-line explanation.
    error
        ``"ExceptionType: message"`` when the sweep ended in an error.
    settings, timings, metadata
        The sweep's settings, timings in seconds, and facts about the run (model, optimizer,
        device, versions).

    Examples
    --------
    >>> result = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0], beta=0.0)
    >>> result.smoothed_losses.tolist()
    [1.0, 0.5, 2.0]
    >>> RangeTestResult.from_json(result.to_json()) == result
    True
    """

    format_name: ClassVar[str] = FORMAT_NAME
    format_version: ClassVar[int] = FORMAT_VERSION
    document_kind: ClassVar[str] = "range-test result"

    lrs: list[float]
    losses: list[float]
    val_losses: list[float] | None = None
    beta: float = 0.98
    stop_reason: StopReason = StopReason.COMPLETED
    stop_detail: str = ""
    error: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    confirmation: Confirmation | None = None
    # The last lag-free fit and what it was computed from: every rule reads it.
    _fit_cache: _Fit | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.stop_reason = StopReason(self.stop_reason)
        if len(self.lrs) != len(self.losses):
            raise ValueError(
                f"lrs and losses must have the same length, got {len(self.lrs)} and "
                f"{len(self.losses)}"
            )
        if self.val_losses is not None and len(self.val_losses) != len(self.lrs):
            raise ValueError(
                f"val_losses must have one value per LR, got {len(self.val_losses)} for "
                f"{len(self.lrs)} LRs"
            )
        require_fraction("beta", self.beta)

    # -- curves -----------------------------------------------------------------------------
    @property
    def num_steps(self) -> int:
        """Number of recorded steps."""
        return len(self.lrs)

    @property
    def smoothed_losses(self) -> np.ndarray:
        """The training losses smoothed by a debiased EMA with :attr:`beta`."""
        return debiased_ema(self.losses, self.beta)

    @property
    def smoothed_val_losses(self) -> np.ndarray | None:
        """The validation losses smoothed likewise, or ``None`` without validation."""
        return None if self.val_losses is None else debiased_ema(self.val_losses, self.beta)

    @property
    def curve(self) -> np.ndarray:
        """The EMA-smoothed series of the live view: smoothed validation losses if measured,
        else smoothed training losses."""
        smoothed_val = self.smoothed_val_losses
        return self.smoothed_losses if smoothed_val is None else smoothed_val

    @property
    def raw_curve(self) -> np.ndarray:
        """The raw series the rules start from: validation losses if measured, else training
        losses."""
        raw = self.losses if self.val_losses is None else self.val_losses
        return np.asarray(raw, dtype=np.float64)

    @property
    def lag_free_curve(self) -> np.ndarray:
        """The curve the suggestions read: :func:`~lr_widget.curves.smoothing.lag_free` of
        :attr:`raw_curve` (a zero-phase fit in log LR, NaN past the blow-up), which puts a
        minimum where the raw loss has it, where the EMA lags it by up to a decade."""
        return self._fitted()[0]

    @property
    def curve_noise(self) -> float:
        """The standard error of :attr:`lag_free_curve` from batch noise
        (:func:`~lr_widget.curves.smoothing.fit_noise`): a descent of a few of these is noise,
        not shape. NaN for a curve too short to tell."""
        return self._fitted()[1]

    @property
    def flat(self) -> Flat | None:
        """What the curve still tells when it has no descent beyond batch noise
        (:class:`~lr_widget.suggestions.curve.Flat`: where the loss starts to rise), or
        ``None`` when it descends (or is too short to read at all)."""
        if not self.lrs:
            return None
        cached = self._fit_record()
        if cached.prepared is None:  # read once per fit: a repeated result asks per rule
            cached.prepared = prepare(self.lrs, cached.fit, cached.noise)
        return None if isinstance(cached.prepared, str) else cached.prepared.flat

    def _fitted(self) -> tuple[np.ndarray, float]:
        if not self.lrs:
            return np.empty(0), math.nan
        cached = self._fit_record()
        return cached.fit, cached.noise

    def _fit_record(self) -> _Fit:
        """The lag-free fit of the curve as it is now (recomputed when the losses changed)."""
        raw = self.raw_curve
        key = np.asarray(self.lrs, dtype=np.float64).tobytes() + raw.tobytes()
        if self._fit_cache is None or self._fit_cache.key != key:
            fit = lag_free(self.lrs, raw, LAG_FREE_WIDTH)
            fit.flags.writeable = False  # shared by every reader of the cache
            self._fit_cache = _Fit(key, fit, fit_noise(self.lrs, raw, fit, LAG_FREE_WIDTH))
        return self._fit_cache

    def with_beta(self, beta: float) -> Self:
        """A copy re-smoothed with ``beta`` (no new sweep; this result is unchanged)."""
        return replace(self.copy(), beta=beta)

    def with_train_steps(self, train_steps: int | None) -> Self:
        """A copy whose suggestions are for ``train_steps`` of training (no new sweep)."""
        steps = check_train_steps(train_steps)
        copied = self.copy()
        return replace(copied, settings={**copied.settings, "train_steps": steps})

    # -- the protocol -----------------------------------------------------------------------
    @property
    def runs(self) -> list[RangeTestResult]:
        """``[self]``: a single sweep is its only run."""
        return [self]

    def band(self) -> NoiseBand:
        """:attr:`lag_free_curve`, the curve the rules read, as a band of zero width (``count``
        1 up to the blow-up, where the fit ends)."""
        return NoiseBand.from_curves(self.lrs, [self.lag_free_curve])

    def shown_curve(self) -> tuple[FloatArray, FloatArray]:
        """``(lrs, smoothed loss)``: the recorded LRs and :attr:`curve`, the moving average of
        the live view (the suggestions read :attr:`lag_free_curve` instead)."""
        return np.asarray(self.lrs, dtype=np.float64), self.curve

    @property
    def outcome(self) -> str:
        """The stop reason's value: ``"completed"``, ``"diverged"``, ``"stopped"``..."""
        return self.stop_reason.value

    def describe_end(self) -> str:
        """``"<stop reason>: <detail>"``, not repeating the reason when the detail starts with
        it."""
        reason, detail = str(self.stop_reason), self.stop_detail
        if not detail or detail.startswith(reason):
            return detail or reason
        return f"{reason}: {detail}"

    # -- suggestions ------------------------------------------------------------------------
    def suggest(self, rule: str = DEFAULT_RULE, train_steps: int | None = None) -> Suggestion:
        """The suggestion of ``rule`` (one of :data:`lr_widget.suggestions.RULES`), read off
        :attr:`lag_free_curve`, for ``train_steps`` of training (``None``: the length given to
        the sweep, else the default rule assumes one; the other rules ignore it)."""
        fit, noise = self._fitted()
        return suggest(self.lrs, fit, rule, self._length(train_steps), noise)

    # -- serialisation ----------------------------------------------------------------------
    def _to_fields(self) -> dict[str, Any]:
        """Strict-JSON-safe fields (non-finite floats become ``"NaN"``/``"Infinity"``)."""
        return {
            "lrs": encode_floats(self.lrs),
            "losses": encode_floats(self.losses),
            "val_losses": None if self.val_losses is None else encode_floats(self.val_losses),
            "beta": self.beta,
            "stop_reason": self.stop_reason.value,
            "stop_detail": self.stop_detail,
            "error": self.error,
            "settings": encode_tree(self.settings),
            "timings": encode_tree(self.timings),
            "metadata": encode_tree(self.metadata),
            "confirmation": None if self.confirmation is None else self.confirmation.to_dict(),
        }

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Self:
        missing = [key for key in ("lrs", "losses") if key not in data]
        if missing:
            raise DocumentError(f"the result document has no {' or '.join(missing)} field")
        val_losses, beta = data.get("val_losses"), data.get("beta", 0.98)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise DocumentError(f"beta must be a number in [0, 1), got {beta!r}")
        error = data.get("error")
        stop_reason = data.get("stop_reason", "completed")
        if stop_reason not in {reason.value for reason in StopReason}:
            raise DocumentError(
                f"stop_reason must be one of {[reason.value for reason in StopReason]}, got "
                f"{stop_reason!r}"
            )
        lrs = decode_floats(data["lrs"], "lrs")
        _check_saved_lrs(lrs)
        metadata = decode_tree(require_mapping(data.get("metadata", {}), "metadata"))
        # Files written before confirmation had a field of its own kept it in the metadata.
        legacy = metadata.pop("confirmation", None)
        saved = data.get("confirmation") if data.get("confirmation") is not None else legacy
        settings = decode_tree(require_mapping(data.get("settings", {}), "settings"))
        try:
            parse_settings(settings, ignore_unknown=True)
        except (TypeError, ValueError) as error:
            raise DocumentError(f"the result's settings are not valid: {error}") from None
        return cls(
            lrs=lrs,
            losses=decode_floats(data["losses"], "losses"),
            val_losses=None if val_losses is None else decode_floats(val_losses, "val_losses"),
            beta=float(beta),
            stop_reason=StopReason(stop_reason),
            stop_detail=str(data.get("stop_detail", "")),
            error=None if error is None else str(error),
            settings=settings,
            timings=decode_tree(require_mapping(data.get("timings", {}), "timings")),
            metadata=metadata,
            confirmation=saved_confirmation(saved),
        )

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one row per step: step, lr, loss, smoothed_loss (and the validation columns)."""
        columns: dict[str, Sequence[float]] = {
            "lr": self.lrs,
            "loss": self.losses,
            "smoothed_loss": self.smoothed_losses.tolist(),
        }
        smoothed_val = self.smoothed_val_losses
        if self.val_losses is not None and smoothed_val is not None:
            columns["val_loss"] = self.val_losses
            columns["smoothed_val_loss"] = smoothed_val.tolist()
        return write_csv(path, columns)

    # -- display ----------------------------------------------------------------------------
    def summary(self) -> str:
        """A few readable lines: range, stop reason, which curve the rules read, suggestions."""
        lines = [
            repr(self),
            f"   rules read {CURVE_READ}",
            f"   the default ({DEFAULT_RULE}) is for {describe_length(self.train_steps)}",
        ]
        batch = describe_batch(self.metadata)
        if batch is not None:
            lines.append(f"   {batch}")
        for rule, suggestion in self.suggestions().items():
            marker = "*" if rule == DEFAULT_RULE else " "
            lines.append(f" {marker} {suggestion}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        if not self.lrs:
            return f"RangeTestResult(no steps, {self.stop_reason})"
        stop = str(self.stop_reason)
        if self.stop_reason is not StopReason.COMPLETED:
            stop += f" at step {self.num_steps - 1} (lr {self.lrs[-1]:.2e})"
        if self.error:
            stop += f": {self.error}"
        suggestion = self.suggestion
        pick = f"{suggestion.rule} {suggestion.lr:.2e}" if suggestion.lr is not None else "none"
        seconds = self.timings.get("total_s")
        took = f", {seconds:.2f} s" if seconds is not None else ""
        return (
            f"RangeTestResult({self.num_steps} steps, lr {self.lrs[0]:.2e} -> {self.lrs[-1]:.2e}, "
            f"{stop}, suggestion {pick}{took})"
        )


def describe_batch(metadata: Mapping[str, Any]) -> str | None:
    """The batch one optimizer step of the sweep saw, in words, from a result's metadata (the
    LR found holds for it); ``None`` when the sweep did not record it.

    >>> describe_batch({"batch_size": 32, "effective_batch_size": 256, "world_size": 4})
    'effective batch 256 samples per optimizer step (32 per batch x 2 accumulated x 4 ranks)'
    >>> describe_batch({"batch_size": 64, "effective_batch_size": 64, "world_size": 1})
    'effective batch 64 samples per optimizer step'
    """
    batch, effective = metadata.get("batch_size"), metadata.get("effective_batch_size")
    if not isinstance(batch, int) or not isinstance(effective, int):
        return None
    world_size = metadata.get("world_size")
    ranks = world_size if isinstance(world_size, int) else 1
    accumulated = effective // max(1, batch * ranks)
    text = f"effective batch {effective} samples per optimizer step"
    if effective == batch:
        return text
    parts = [f"{batch} per batch"]
    if accumulated > 1:
        parts.append(f"{accumulated} accumulated")
    if ranks > 1:
        parts.append(f"{ranks} ranks")
    return f"{text} ({' x '.join(parts)})"


def _check_saved_lrs(lrs: list[float]) -> None:
    """A saved sweep's LRs are finite, positive and strictly increasing (every schedule's are)."""
    bad = next((lr for lr in lrs if not (np.isfinite(lr) and lr > 0)), None)
    if bad is not None:
        raise DocumentError(f"lrs must be finite numbers > 0, got {bad!r}")
    steps = np.diff(np.asarray(lrs, dtype=np.float64))
    if steps.size and not np.all(steps > 0):
        at = int(np.argmin(steps > 0)) + 1
        raise DocumentError(
            f"lrs must increase strictly, step by step; lrs[{at}] = {lrs[at]!r} follows "
            f"{lrs[at - 1]!r}"
        )


def saved_confirmation(saved: Any) -> Confirmation | None:
    """A saved confirmation, read back; a ``DocumentError`` if it is unusable."""
    if saved is None:
        return None
    try:
        return Confirmation.from_dict(require_mapping(saved, "confirmation"))
    except DocumentError:
        raise
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise DocumentError(f"the saved confirmation is unusable: {error!r}") from None
