"""The outcome of a range test: the curve, why it stopped, and what it suggests.

A :class:`RangeTestResult` keeps the raw loss of every step (and the validation loss when one was
measured); the smoothed curves are derived from them on demand, so a curve can be re-smoothed
with another ``beta`` without a new sweep. Results save to strict JSON (no pickles: loading a file
someone sent you runs no code) and export to CSV.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from typing_extensions import Self

from lr_widget.jsonfile import JsonDocument
from lr_widget.smoothing import debiased_ema
from lr_widget.suggestions import DEFAULT_RULE, Suggestion, SuggestionSource, suggest
from lr_widget.validation import require_fraction

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "RangeTestResult", "StopReason"]

FORMAT_NAME = "lr_widget.range_test"
FORMAT_VERSION = 1


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
class RangeTestResult(SuggestionSource, JsonDocument):
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
        Smoothing used by :attr:`smoothed_losses` and the suggestions.
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
        """The series the suggestions read: smoothed validation losses if measured, else
        smoothed training losses."""
        smoothed_val = self.smoothed_val_losses
        return self.smoothed_losses if smoothed_val is None else smoothed_val

    def with_beta(self, beta: float) -> RangeTestResult:
        """A copy re-smoothed with ``beta`` (no new sweep)."""
        return replace(self, beta=beta)

    # -- suggestions ------------------------------------------------------------------------
    def suggest(self, rule: str = DEFAULT_RULE) -> Suggestion:
        """The suggestion of ``rule`` (one of :data:`lr_widget.suggestions.RULES`)."""
        return suggest(self.lrs, self.curve, rule)

    # -- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-safe dictionary (non-finite floats become ``"NaN"``/``"Infinity"``)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "lrs": _encode_floats(self.lrs),
            "losses": _encode_floats(self.losses),
            "val_losses": None if self.val_losses is None else _encode_floats(self.val_losses),
            "beta": self.beta,
            "stop_reason": self.stop_reason.value,
            "stop_detail": self.stop_detail,
            "error": self.error,
            "settings": _encode_tree(self.settings),
            "timings": _encode_tree(self.timings),
            "metadata": _encode_tree(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a result from :meth:`to_dict`'s output, checking its shape."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_NAME:
            raise ValueError(
                f"not an lr_widget range-test result (expected format {FORMAT_NAME!r})"
            )
        version = data.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(
                f"unsupported result version {version!r}; this lr_widget reads versions up to "
                f"{FORMAT_VERSION}"
            )
        missing = [key for key in ("lrs", "losses") if key not in data]
        if missing:
            raise ValueError(f"the result document has no {' or '.join(missing)} field")
        val_losses = data.get("val_losses")
        return cls(
            lrs=_decode_floats(data["lrs"], "lrs"),
            losses=_decode_floats(data["losses"], "losses"),
            val_losses=None if val_losses is None else _decode_floats(val_losses, "val_losses"),
            beta=float(data.get("beta", 0.98)),
            stop_reason=StopReason(data.get("stop_reason", "completed")),
            stop_detail=str(data.get("stop_detail", "")),
            error=None if data.get("error") is None else str(data["error"]),
            settings=_decode_tree(_require_mapping(data.get("settings", {}), "settings")),
            timings=_decode_tree(_require_mapping(data.get("timings", {}), "timings")),
            metadata=_decode_tree(_require_mapping(data.get("metadata", {}), "metadata")),
        )

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one row per step: step, lr, loss, smoothed_loss (and the validation columns)."""
        target = Path(path)
        columns: dict[str, Sequence[float]] = {
            "lr": self.lrs,
            "loss": self.losses,
            "smoothed_loss": self.smoothed_losses.tolist(),
        }
        smoothed_val = self.smoothed_val_losses
        if self.val_losses is not None and smoothed_val is not None:
            columns["val_loss"] = self.val_losses
            columns["smoothed_val_loss"] = smoothed_val.tolist()
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", *columns])
            for step in range(self.num_steps):
                writer.writerow([step, *(repr(float(values[step])) for values in columns.values())])
        return target

    # -- display ----------------------------------------------------------------------------
    def summary(self) -> str:
        """A few readable lines: range, stop reason, suggestions."""
        lines = [repr(self)]
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


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _encode_float(value: float) -> float | str:
    value = float(value)
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _encode_floats(values: Sequence[float]) -> list[float | str]:
    return [_encode_float(value) for value in values]


def _decode_floats(values: Any, name: str) -> list[float]:
    if not isinstance(values, list):
        raise ValueError(f"{name} must be a list of numbers, got {type(values).__name__}")
    decoded = []
    for value in values:
        if isinstance(value, str) and value in _NON_FINITE:
            decoded.append(_NON_FINITE[value])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            decoded.append(float(value))
        else:
            raise ValueError(f"{name} must hold numbers, got {value!r}")
    return decoded


def _encode_tree(value: Any) -> Any:
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, Mapping):
        return {str(key): _encode_tree(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode_tree(item) for item in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def _decode_tree(value: Any) -> Any:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, Mapping):
        return {key: _decode_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_tree(item) for item in value]
    return value


def _require_mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value
