"""Suggestion rules: read a learning rate off a range-test curve.

Each rule is a pure function ``(lrs, losses) -> Suggestion``. ``lrs`` is strictly increasing
(usually exponentially spaced) and ``losses`` is the *smoothed* loss curve; the caller smooths.
The rules are those of fastai, Lightning and ignite, fixed where those get them wrong.

Every rule first prepares the curve the same way:

1. Check that ``lrs`` and ``losses`` are 1-D, the same length, and that ``lrs`` is positive,
   finite and strictly increasing (``ValueError`` naming the argument otherwise).
2. Cut the curve at the first non-finite loss: what follows is the divergence tail.
3. Trim like fastai: drop the first ``n // 10`` of the ``n`` finite points, where the EMA is
   still warming up, and the last ``TAIL_TRIM`` points, where it lags the blow-up. A short curve
   loses fewer tail points, never so many that fewer than ``MIN_USABLE_POINTS`` remain.
4. Refuse to guess: a curve with fewer than ``MIN_USABLE_POINTS`` usable points, a flat one
   (span at most ``FLAT_TOLERANCE`` of the loss magnitude) or one whose loss never falls by more
   than ``MIN_RELATIVE_DROP`` of its magnitude gets a ``Suggestion`` with ``lr=None`` and a
   reason instead of an arbitrary pick.

Slopes are always taken against ``log10(lr)``, never the raw LR: differentiating in raw LR
(Lightning 2.5.3) weights the smallest LRs by ``1 / lr`` and drags every answer to the left.

Indices in a ``Suggestion`` always refer to the arrays the caller passed in, untrimmed.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "DEFAULT_RULE",
    "FLAT_TOLERANCE",
    "MIN_RELATIVE_DROP",
    "MIN_USABLE_POINTS",
    "RULES",
    "SLIDE_TOLERANCE",
    "SLIDE_WINDOW",
    "TAIL_TRIM",
    "Suggestion",
    "SuggestionSource",
    "longest_decreasing_subsequence",
    "suggest",
    "suggest_all",
    "suggest_consensus",
    "suggest_minimum",
    "suggest_slide",
    "suggest_steep",
    "suggest_valley",
]

FloatArray = NDArray[np.float64]

MIN_USABLE_POINTS = 8
"""Fewest points left after trimming for any rule to answer."""
TAIL_TRIM = 5
"""Points dropped from the end of the finite curve (fastai's ``[:-5]``)."""
FLAT_TOLERANCE = 1e-4
"""A curve whose loss span is at most this fraction of its largest ``|loss|`` is flat."""
MIN_RELATIVE_DROP = 1e-3
"""A curve must fall somewhere by more than this fraction of its largest ``|loss|``."""
SLIDE_WINDOW = 15
"""Width, in points, of the slide rule's window (fastai's ``lr_diff``)."""
SLIDE_TOLERANCE = 0.1
"""Slide rule threshold, per decade of LR, as a fraction of the trimmed curve's loss span."""

_FIELDS = ("rule", "lr", "index", "loss", "reason")


@dataclass(frozen=True)
class Suggestion:
    """One rule's answer: an LR and the curve point to mark, or why there is none.

    Attributes
    ----------
    rule : str
        The rule that produced it: ``"steep"``, ``"valley"``, ``"minimum"`` or ``"slide"``.
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
class _Curve:
    """A validated curve: the finite prefix, and the usable slice ``[start, stop)`` of it."""

    finite_lrs: FloatArray
    finite_losses: FloatArray
    start: int
    stop: int

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


def _prepare(lrs: ArrayLike, losses: ArrayLike) -> _Curve | str:
    """Validate, cut and trim the curve; a ``str`` is the reason there can be no answer."""
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
    curve = _Curve(lr_values[:cut], loss_values[:cut], head, cut - tail)
    return _shape_problem(curve) or curve


def _shape_problem(curve: _Curve) -> str | None:
    """Why the curve's shape gives no answer (flat, never falls), or ``None`` if it can."""
    losses = curve.losses
    magnitude = float(np.max(np.abs(losses)))
    span = float(np.ptp(losses))
    if span <= FLAT_TOLERANCE * magnitude:
        return f"flat: loss changes by {_percent(span, magnitude)} {curve.lr_range}"
    drop = float(np.max(np.maximum.accumulate(losses) - losses))
    if drop <= MIN_RELATIVE_DROP * magnitude:
        return (
            f"the loss never decreases {curve.lr_range} "
            f"(largest drop {_percent(drop, magnitude)} of the loss)"
        )
    return None


def _percent(part: float, whole: float) -> str:
    return "0%" if whole == 0 else f"{100 * part / whole:.2g}%"


def _answer(rule: str, curve: _Curve, usable_index: int, reason: str) -> Suggestion:
    """A suggestion at the recorded point ``usable_index`` of the trimmed curve."""
    index = curve.start + usable_index
    lr = float(curve.finite_lrs[index])
    return Suggestion(rule, lr, index, float(curve.finite_losses[index]), reason)


def _no_answer(rule: str, reason: str) -> Suggestion:
    return Suggestion(rule, None, None, None, reason)


def _log_slopes(curve: _Curve) -> FloatArray:
    """d(loss) / d(log10 lr): loss change per decade of LR, at every usable point."""
    return np.asarray(np.gradient(curve.losses, curve.log_lrs), dtype=np.float64)


def _steep(curve: _Curve) -> Suggestion:
    slopes = _log_slopes(curve)
    steepest = int(np.argmin(slopes))
    slope, lr = float(slopes[steepest]), float(curve.lrs[steepest])
    if slope >= 0:
        return _no_answer(
            "steep", f"the loss never decreases: steepest slope {slope:+.2g} per decade at {lr:.1e}"
        )
    return _answer(
        "steep", curve, steepest, f"steepest descent, {slope:.2g} per decade at {lr:.1e}"
    )


def _minimum(curve: _Curve) -> Suggestion:
    lowest = int(np.argmin(curve.losses))
    lowest_lr = float(curve.lrs[lowest])
    lr = lowest_lr / 10
    # The suggested LR need not be a recorded one; mark the recorded LR nearest to it.
    mark = int(np.argmin(np.abs(np.log10(curve.finite_lrs) - math.log10(lr))))
    reason = (
        f"a tenth of {lowest_lr:.1e}, where the loss is lowest ({curve.losses[lowest]:.4g}): "
        f"{lr:.1e}"
    )
    return Suggestion("minimum", lr, mark, float(curve.finite_losses[mark]), reason)


def longest_decreasing_subsequence(values: Sequence[float] | FloatArray) -> list[int]:
    """Indices of a longest strictly decreasing subsequence of ``values``, in O(n log n).

    Patience sorting with predecessor links. Of the longest subsequences, this returns the one
    that ends earliest (fastai's choice) and, of those, the one that starts latest: each
    element's predecessor is the most recent element one level below it.

    Parameters
    ----------
    values : sequence of float
        Finite numbers.

    Returns
    -------
    list of int
        Increasing indices ``i`` with ``values[i]`` strictly decreasing; empty if ``values`` is.

    Examples
    --------
    >>> longest_decreasing_subsequence([5.0, 3.0, 4.0, 2.0, 2.0, 1.0])
    [0, 2, 4, 5]
    """
    pile_tops: list[float] = []  # -value of each pile's top, increasing
    pile_top_index: list[int] = []
    predecessor: list[int] = []
    lengths: list[int] = []
    for index, value in enumerate(values):
        level = bisect.bisect_left(pile_tops, -float(value))
        predecessor.append(pile_top_index[level - 1] if level else -1)
        if level == len(pile_tops):
            pile_tops.append(-float(value))
            pile_top_index.append(index)
        else:
            pile_tops[level], pile_top_index[level] = -float(value), index
        lengths.append(level + 1)
    if not lengths:
        return []
    chain = [lengths.index(len(pile_tops))]
    while predecessor[chain[-1]] >= 0:
        chain.append(predecessor[chain[-1]])
    return chain[::-1]


def _valley(curve: _Curve) -> Suggestion:
    chain = longest_decreasing_subsequence(curve.losses)
    end = chain[-1]
    # fastai's start: as many points before the end as the run has, not the run's first index.
    # A long decreasing run can begin deep in the flat start, chaining tiny fluctuations; its
    # true first index then drags the pick far too low (measured in benchmarks/RESULTS.md).
    start = max(end - len(chain), 0)
    length = end - start
    pick = start + length // 3 + length // 6
    reason = (
        f"half way into the longest decreasing run ({len(chain)} points, ending at "
        f"{curve.lrs[end]:.1e}): {curve.lrs[pick]:.1e}"
    )
    return _answer("valley", curve, pick, reason)


def _consensus(curve: _Curve) -> Suggestion:
    answers = [_RULE_BODIES[rule](curve) for rule in _SINGLE_RULES]
    picks = [(answer.rule, answer.lr) for answer in answers if answer.lr is not None]
    if not picks:
        return _no_answer("consensus", "no rule gives an answer: " + answers[0].reason)
    lr = 10 ** float(np.median([math.log10(lr) for _, lr in picks]))
    mark = int(np.argmin(np.abs(np.log10(curve.finite_lrs) - math.log10(lr))))
    named = ", ".join(f"{rule} {value:.1e}" for rule, value in picks)
    reason = f"median in log LR of {named}: {lr:.1e}"
    return Suggestion("consensus", lr, mark, float(curve.finite_losses[mark]), reason)


def _slide(curve: _Curve) -> Suggestion:
    if curve.losses.size <= SLIDE_WINDOW:
        return _no_answer(
            "slide",
            f"too short for the slide rule: {curve.losses.size} usable points "
            f"{curve.lr_range}, need {SLIDE_WINDOW + 1}",
        )
    slopes = _log_slopes(curve)
    threshold = SLIDE_TOLERANCE * float(np.ptp(curve.losses))
    # differences[i] compares the slopes at the two ends of the window [i, i + SLIDE_WINDOW].
    differences = np.abs(slopes[SLIDE_WINDOW:] - slopes[:-SLIDE_WINDOW])
    settled = np.flatnonzero(differences <= threshold)
    if settled.size == 0:
        return _no_answer(
            "slide",
            f"the slope never settles {curve.lr_range}: slopes {SLIDE_WINDOW} points apart "
            f"always differ by more than {threshold:.2g} per decade",
        )
    left = int(settled[-1])
    reason = (
        f"slope settles at {curve.lrs[left]:.1e}: within {threshold:.2g} per decade of the slope "
        f"{SLIDE_WINDOW} points to the right"
    )
    return _answer("slide", curve, left, reason)


_RULE_BODIES: dict[str, Callable[[_Curve], Suggestion]] = {
    "steep": _steep,
    "valley": _valley,
    "minimum": _minimum,
    "slide": _slide,
    "consensus": _consensus,
}
_SINGLE_RULES = ("steep", "valley", "minimum", "slide")


def _apply(rule: str, curve: _Curve | str) -> Suggestion:
    if isinstance(curve, str):
        return _no_answer(rule, curve)
    return _RULE_BODIES[rule](curve)


def suggest_steep(lrs: ArrayLike, losses: ArrayLike) -> Suggestion:
    """Suggest the LR where the loss falls fastest per decade of LR.

    The argmin of ``np.gradient(losses, log10(lrs))`` on the trimmed curve. No answer if the
    steepest slope is not negative.

    Parameters
    ----------
    lrs : array_like
        Strictly increasing, positive learning rates.
    losses : array_like
        The smoothed loss at each LR; a non-finite value ends the usable curve.

    Returns
    -------
    Suggestion
    """
    return _apply("steep", _prepare(lrs, losses))


def suggest_valley(lrs: ArrayLike, losses: ArrayLike) -> Suggestion:
    """Suggest an LR about half way into the longest decreasing run (fastai's default rule).

    Finds a longest strictly decreasing subsequence of the trimmed loss (see
    ``longest_decreasing_subsequence``), with first index ``start`` and last index ``end``, and
    picks ``start + L // 3 + L // 6`` with ``L = end - start``, as fastai does, where ``start``
    is ``end`` minus the subsequence's length, as in fastai (its true first index can lie deep in
    the flat start and drags the pick too low). Unlike fastai's O(n^2) search, this runs in
    O(n log n).

    Parameters
    ----------
    lrs : array_like
        Strictly increasing, positive learning rates.
    losses : array_like
        The smoothed loss at each LR; a non-finite value ends the usable curve.

    Returns
    -------
    Suggestion
    """
    return _apply("valley", _prepare(lrs, losses))


def suggest_minimum(lrs: ArrayLike, losses: ArrayLike) -> Suggestion:
    """Suggest a tenth of the LR at the lowest loss.

    ``lr`` is exactly ``lrs[argmin(losses)] / 10`` over the trimmed curve, which need not be a
    recorded LR; ``index`` and ``loss`` are those of the recorded LR nearest to it in log space.

    Parameters
    ----------
    lrs : array_like
        Strictly increasing, positive learning rates.
    losses : array_like
        The smoothed loss at each LR; a non-finite value ends the usable curve.

    Returns
    -------
    Suggestion
    """
    return _apply("minimum", _prepare(lrs, losses))


def suggest_slide(lrs: ArrayLike, losses: ArrayLike) -> Suggestion:
    """Suggest an LR by fastai's interval slide rule, with a threshold that scales with the loss.

    With ``slope = d(loss) / d(log10 lr)`` on the trimmed curve, slide a window of
    ``SLIDE_WINDOW`` (15) points leftward from the right end until the slopes at its two ends
    differ by at most ``threshold = SLIDE_TOLERANCE * (max(loss) - min(loss))`` per decade of LR
    (max and min over the trimmed curve); suggest the LR at the window's left end. fastai uses
    an absolute 0.005 per point, which changes answer when the loss is scaled; this threshold
    scales with the loss, so scaling or shifting the loss never changes the answer. No answer if
    the window reaches the left end without the slopes agreeing, where fastai returns the first
    LR.

    Parameters
    ----------
    lrs : array_like
        Strictly increasing, positive learning rates.
    losses : array_like
        The smoothed loss at each LR; a non-finite value ends the usable curve.

    Returns
    -------
    Suggestion
    """
    return _apply("slide", _prepare(lrs, losses))


def suggest_consensus(lrs: ArrayLike, losses: ArrayLike) -> Suggestion:
    """Suggest the median, in log LR, of the answers of steep, valley, minimum and slide.

    Each single rule fails in its own direction on some curves (steep on the cliff edge or at the
    start, valley too early, minimum too late on convex problems, slide late); the median survives
    any one of them failing and has no constant to tune. It is the default: on the benchmark
    suite it came closest to the best constant LR found by training (``benchmarks/RESULTS.md``).
    ``index`` and ``loss`` are those of the recorded LR nearest to the suggestion in log space.

    Parameters
    ----------
    lrs : array_like
        Strictly increasing, positive learning rates.
    losses : array_like
        The smoothed loss at each LR; a non-finite value ends the usable curve.

    Returns
    -------
    Suggestion
    """
    return _apply("consensus", _prepare(lrs, losses))


RULES: dict[str, Callable[[ArrayLike, ArrayLike], Suggestion]] = {
    "steep": suggest_steep,
    "valley": suggest_valley,
    "minimum": suggest_minimum,
    "slide": suggest_slide,
    "consensus": suggest_consensus,
}
"""Every rule by name."""

DEFAULT_RULE = "consensus"
"""The rule the result's ``suggestion`` uses: the median of the others."""


class SuggestionSource:
    """Mixin: every rule's suggestion and the default one, from the subclass's ``suggest(rule)``
    (a single sweep's curve, or the robust pick over repeated sweeps)."""

    def suggest(self, rule: str = DEFAULT_RULE) -> Suggestion:
        """The suggestion of ``rule`` (one of :data:`RULES`)."""
        raise NotImplementedError

    def suggestions(self) -> dict[str, Suggestion]:
        """Every rule's suggestion, by rule name, in the order of :data:`RULES`."""
        return {rule: self.suggest(rule) for rule in RULES}

    @property
    def suggestion(self) -> Suggestion:
        """The default rule's suggestion."""
        return self.suggest(DEFAULT_RULE)

    @property
    def suggested_lr(self) -> float | None:
        """The default suggestion's LR, or ``None`` when there is no answer (see its reason)."""
        return self.suggestion.lr


def suggest(lrs: ArrayLike, losses: ArrayLike, rule: str = DEFAULT_RULE) -> Suggestion:
    """Apply the rule named ``rule`` (one of ``RULES``) to the curve.

    Raises
    ------
    ValueError
        If ``rule`` is not a key of ``RULES``, or the arrays are invalid.

    Examples
    --------
    >>> import numpy as np
    >>> lrs = np.logspace(-5, -1, 50)
    >>> losses = 2.0 - np.tanh(np.log10(lrs) + 3)
    >>> suggest(lrs, losses, rule="steep").ok
    True
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
    return RULES[rule](lrs, losses)


def suggest_all(lrs: ArrayLike, losses: ArrayLike) -> dict[str, Suggestion]:
    """Apply every rule in ``RULES`` to the curve, preparing it once.

    Returns
    -------
    dict of str to Suggestion
        Keyed by rule name, in the order of ``RULES``.
    """
    curve = _prepare(lrs, losses)
    return {rule: _apply(rule, curve) for rule in RULES}
