"""What every rule shares: the :class:`Suggestion` it returns and the curve it reads.

A rule is a pure function ``(lrs, losses) -> Suggestion``. ``lrs`` is strictly increasing
(usually exponentially spaced) and ``losses`` is the curve the rule reads: the result objects
pass the lag-free curve (:func:`lr_widget.curves.smoothing.lag_free`, NaN past the blow-up), and any
smoothed curve works. Every rule first prepares the curve the same way (:func:`prepare`):

1. Check that ``lrs`` and ``losses`` are 1-D, the same length, and that ``lrs`` is positive,
   finite and strictly increasing (``ValueError`` naming the argument otherwise).
2. Cut the curve at the first non-finite loss: what follows is the divergence tail.
3. Trim like fastai: drop the first ``n // 10`` of the ``n`` finite points (where an EMA is
   still warming up) and the last ``TAIL_TRIM`` points (where it lags the blow-up). A short
   curve loses fewer tail points, never so many that fewer than ``MIN_USABLE_POINTS`` remain.
4. Refuse to guess: a curve with fewer than ``MIN_USABLE_POINTS`` usable points, a flat one
   (span at most ``FLAT_TOLERANCE`` of the loss magnitude) or one whose loss never falls by more
   than ``MIN_RELATIVE_DROP`` of its magnitude gets a ``Suggestion`` with ``lr=None`` and a
   reason instead of an arbitrary pick.
5. Name a curve with no descent beyond batch noise (:class:`Flat`): when the caller knows the
   noise of the curve (the results pass :func:`~lr_widget.curves.smoothing.fit_noise`), a
   curve whose largest fall is at most ``NOISE_SIGMAS`` times it has nothing for a rule to read
   (typically a model already trained, the forum's "I ran the finder after a few epochs and
   there is no descent"). What such a curve still tells is where the loss starts to rise; the
   rules that read a descent answer nothing and say so, and the default reads the rise instead.

Slopes are always taken against ``log10(lr)``, never the raw LR: differentiating in raw LR
(Lightning 2.5.3) weights the smallest LRs by ``1 / lr`` and drags every answer to the left.

Indices in a ``Suggestion`` always refer to the arrays the caller passed in, untrimmed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lr_widget.curves.axes import nearest_index

FloatArray = NDArray[np.float64]

MIN_USABLE_POINTS = 8
"""Fewest points left after trimming for any rule to answer."""
TAIL_TRIM = 5
"""Points dropped from the end of the finite curve (fastai's ``[:-5]``)."""
FLAT_TOLERANCE = 1e-4
"""A curve whose loss span is at most this fraction of its largest ``|loss|`` is flat."""
MIN_RELATIVE_DROP = 1e-3
"""A curve must fall somewhere by more than this fraction of its largest ``|loss|``."""

NOISE_SIGMAS = 6.0
"""A descent of at most this many standard errors of the curve (batch noise) is no descent.

Chosen on the development tasks' sweeps in the quality cache: above the largest fall of every
mid-training task, below the smallest of every other (``tests/benchmarks/test_flat_threshold.py``
holds it there and prints both)."""

_FIELDS = ("rule", "lr", "index", "loss", "reason")


@dataclass(frozen=True)
class Suggestion:
    """One rule's answer: an LR and the curve point to mark, or why there is none.

    Attributes
    ----------
    rule : str
        The rule that produced it: a name in :data:`lr_widget.suggestions.RULES`.
    lr : float or None
        The suggested learning rate; ``None`` when the curve gives no answer.
    index : int or None
        Index, into the caller's untrimmed arrays, of the point to mark on the plot.
    loss : float or None
        The loss at ``index``.
    reason : str
        One line: why this LR, or why there is no answer.

    Examples
    --------
    >>> s = Suggestion("valley", 3.16e-3, 42, 0.5, "half way into the valley at 3.2e-03")
    >>> s.ok
    True
    >>> str(s)
    'valley: 3.16e-03 (half way into the valley at 3.2e-03)'
    >>> Suggestion.from_dict(s.to_dict()) == s
    True
    """

    rule: str
    lr: float | None
    index: int | None
    loss: float | None
    reason: str

    def __post_init__(self) -> None:
        given = [value is not None for value in (self.lr, self.index, self.loss)]
        if any(given) and not all(given):
            raise ValueError(
                "lr, index and loss must be all set or all None, "
                f"got lr={self.lr!r}, index={self.index!r}, loss={self.loss!r}"
            )

    @property
    def ok(self) -> bool:
        """Whether the rule found an LR."""
        return self.lr is not None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of plain ``str``, ``float``, ``int`` and ``None`` values."""
        return {
            "rule": str(self.rule),
            "lr": _optional_float(self.lr),
            "index": None if self.index is None else int(self.index),
            "loss": _optional_float(self.loss),
            "reason": str(self.reason),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Suggestion:
        """Rebuild a ``Suggestion`` from ``to_dict()`` output (for example after JSON)."""
        missing = [name for name in _FIELDS if name not in data]
        if missing:
            raise ValueError(f"data is missing {missing}; a Suggestion needs {list(_FIELDS)}")
        return cls(
            rule=str(data["rule"]),
            lr=_optional_float(data["lr"]),
            index=None if data["index"] is None else int(data["index"]),
            loss=_optional_float(data["loss"]),
            reason=str(data["reason"]),
        )

    def __str__(self) -> str:
        answer = "no suggestion" if self.lr is None else f"{self.lr:.2e}"
        return f"{self.rule}: {answer} ({self.reason})"


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Flat:
    """What a curve with no descent beyond batch noise still tells.

    Attributes
    ----------
    drop : float
        The curve's largest fall (from a running maximum), in loss units.
    noise : float
        The standard error of the curve from batch noise.
    rise_index : int or None
        Index, into the caller's arrays, of the first point where the loss has risen beyond
        the noise above its lowest so far (or the blow-up begins); ``None`` if it never rises.
    rise_lr : float or None
        The LR at ``rise_index``.
    """

    drop: float
    noise: float
    rise_index: int | None
    rise_lr: float | None

    @property
    def description(self) -> str:
        """One line: no descent, and where the loss rises (what is still known)."""
        measured = (
            f"flat: no descent beyond batch noise (the loss falls at most {self.drop:.2g}, "
            f"{self.drop / self.noise:.1f} x its noise {self.noise:.2g})"
        )
        if self.rise_lr is None:
            return f"{measured}, and it never rises in the range swept"
        return f"{measured}; the loss starts to rise at {self.rise_lr:.1e}"

    @property
    def how_to_decide(self) -> str:
        """What the user can do to decide within the safe range."""
        if self.rise_lr is None:
            return "raise end_lr until the loss rises"
        return (
            f"LRs below {self.rise_lr:.1e} are safe; to choose among them run "
            "find_lr(..., confirm=True) or repeats=3"
        )


@dataclass(frozen=True)
class Curve:
    """A validated curve: the finite prefix, and the usable slice ``[start, stop)`` of it (what a
    rule reads; build one with :func:`prepare`). ``flat`` is set when the curve has no descent
    beyond its noise (known only when :func:`prepare` was given the noise)."""

    finite_lrs: FloatArray
    finite_losses: FloatArray
    start: int
    stop: int
    flat: Flat | None = None

    @property
    def lrs(self) -> FloatArray:
        return self.finite_lrs[self.start : self.stop]

    @property
    def losses(self) -> FloatArray:
        return self.finite_losses[self.start : self.stop]

    @property
    def log_lrs(self) -> FloatArray:
        return np.log10(self.lrs)

    @property
    def lr_range(self) -> str:
        return f"between {self.lrs[0]:.1e} and {self.lrs[-1]:.1e}"

    @property
    def largest_fall(self) -> float:
        """The largest fall of the usable losses below their running maximum (0 if they never
        fall)."""
        return float(np.max(np.maximum.accumulate(self.losses) - self.losses))


def _as_1d(values: ArrayLike, name: str) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got {values!r}") from error
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got an array of shape {array.shape}")
    return array


def _validated(lrs: ArrayLike, losses: ArrayLike) -> tuple[FloatArray, FloatArray]:
    lr_values, loss_values = _as_1d(lrs, "lrs"), _as_1d(losses, "losses")
    if lr_values.size != loss_values.size:
        raise ValueError(
            "lrs and losses must have the same length, "
            f"got {lr_values.size} lrs and {loss_values.size} losses"
        )
    bad = np.flatnonzero(~(np.isfinite(lr_values) & (lr_values > 0)))
    if bad.size:
        first = int(bad[0])
        raise ValueError(
            f"lrs must be positive and finite, got {lr_values[first]!r} at index {first}"
        )
    backwards = np.flatnonzero(np.diff(lr_values) <= 0)
    if backwards.size:
        at = int(backwards[0]) + 1
        raise ValueError(
            f"lrs must be strictly increasing, got {lr_values[at]!r} at index {at} "
            f"after {lr_values[at - 1]!r}"
        )
    return lr_values, loss_values


def prepare(lrs: ArrayLike, losses: ArrayLike, noise: float | None = None) -> Curve | str:
    """Validate, cut and trim the curve; a ``str`` is the reason there can be no answer.

    ``noise``, the curve's standard error from batch noise when known, lets the curve be named
    flat (:attr:`Curve.flat`) when it falls by no more than ``NOISE_SIGMAS`` times it.

    >>> import numpy as np
    >>> lrs = np.logspace(-6, 0, 60)
    >>> rising = 1.0 + np.where(lrs > 1e-2, np.log10(lrs / 1e-2), 0.0)  # flat, then rises
    >>> curve = prepare(lrs, rising + 0.01 * np.sin(np.arange(60)), noise=0.01)
    >>> f"{curve.flat.rise_lr:.1e}"
    '1.2e-02'
    """
    lr_values, loss_values = _validated(lrs, losses)
    finite = np.isfinite(loss_values)
    if loss_values.size == 0:
        return "no losses recorded"
    if not finite.any():
        return f"no finite losses: all {loss_values.size} are nan or inf"
    cut = loss_values.size if finite.all() else int(np.argmin(finite))
    head = cut // 10
    tail = min(TAIL_TRIM, max(0, cut - head - MIN_USABLE_POINTS))
    usable = cut - head - tail
    if usable < MIN_USABLE_POINTS:
        cut_short = (
            f" before the first non-finite loss at {lr_values[cut]:.1e}"
            if cut < loss_values.size
            else ""
        )
        return f"too short: {usable} usable points{cut_short}, need at least {MIN_USABLE_POINTS}"
    curve = Curve(lr_values[:cut], loss_values[:cut], head, cut - tail)
    problem = _shape_problem(curve)
    if problem is not None:
        return problem
    if noise is None or not math.isfinite(noise) or noise <= 0:
        return curve
    flat = _flat(curve, float(noise), lr_values)
    return curve if flat is None else replace(curve, flat=flat)


def _flat(curve: Curve, noise: float, lrs: FloatArray) -> Flat | None:
    """The curve's :class:`Flat` reading if its largest fall is within ``NOISE_SIGMAS`` noise."""
    drop = curve.largest_fall
    threshold = NOISE_SIGMAS * noise
    if drop > threshold:
        return None
    # The rise: from the usable start to the end of the finite curve (its trimmed tail
    # included), the first point from which the loss stays above its lowest so far by more than
    # the threshold (a bump that comes back down is noise); else where the curve was cut, if it
    # was (the blow-up: the caller's curve turns non-finite).
    tail = curve.finite_losses[curve.start :]
    stays_above = np.minimum.accumulate(tail[::-1])[::-1]
    risen = np.flatnonzero(stays_above - np.minimum.accumulate(tail) > threshold)
    if risen.size:
        index: int | None = curve.start + int(risen[0])
    else:
        index = curve.finite_lrs.size if curve.finite_lrs.size < lrs.size else None
    rise_lr = None if index is None else float(lrs[index])
    return Flat(drop, noise, index, rise_lr)


def _shape_problem(curve: Curve) -> str | None:
    """Why the curve's shape gives no answer (flat, never falls), or ``None`` if it can."""
    losses = curve.losses
    magnitude = float(np.max(np.abs(losses)))
    span = float(np.ptp(losses))
    if span <= FLAT_TOLERANCE * magnitude:
        return f"flat: loss changes by {_percent(span, magnitude)} {curve.lr_range}"
    drop = curve.largest_fall
    if drop <= MIN_RELATIVE_DROP * magnitude:
        return (
            f"the loss never decreases {curve.lr_range} "
            f"(largest drop {_percent(drop, magnitude)} of the loss)"
        )
    return None


def _percent(part: float, whole: float) -> str:
    return "0%" if whole == 0 else f"{100 * part / whole:.2g}%"


def answer_at(rule: str, curve: Curve, usable_index: int, reason: str) -> Suggestion:
    """A suggestion at the recorded point ``usable_index`` of the trimmed curve."""
    index = curve.start + usable_index
    lr = float(curve.finite_lrs[index])
    return Suggestion(rule, lr, index, float(curve.finite_losses[index]), reason)


def no_answer(rule: str, reason: str) -> Suggestion:
    return Suggestion(rule, None, None, None, reason)


def answer_near(rule: str, curve: Curve, lr: float, reason: str) -> Suggestion:
    """A suggestion of exactly ``lr``, marked at the recorded LR nearest to it in log space
    (``lr`` need not be a recorded one)."""
    mark = nearest_index(curve.finite_lrs, lr)
    return Suggestion(rule, float(lr), mark, float(curve.finite_losses[mark]), reason)


def log_slopes(curve: Curve) -> FloatArray:
    """d(loss) / d(log10 lr): loss change per decade of LR, at every usable point."""
    return np.asarray(np.gradient(curve.losses, curve.log_lrs), dtype=np.float64)
