"""The rule bodies: each reads a prepared :class:`~lr_widget.suggestions.curve.Curve` and returns
a :class:`~lr_widget.suggestions.curve.Suggestion`.

They are registered by name, with their description, in :mod:`lr_widget.suggestions.registry`;
call them through :func:`lr_widget.suggestions.suggest` or the ``suggest_<rule>`` functions.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from lr_widget.suggestions.curve import (
    Curve,
    Suggestion,
    answer_at,
    answer_near,
    log_slopes,
    no_answer,
)

SLIDE_WINDOW = 15
"""Width, in points, of the slide rule's window (fastai's ``lr_diff``)."""
SLIDE_TOLERANCE = 0.1
"""Slide rule threshold, per decade of LR, as a fraction of the trimmed curve's loss span."""

RuleBody = Callable[[Curve], Suggestion]


def steep(curve: Curve, rule: str = "steep") -> Suggestion:
    """The LR where the loss falls fastest per decade (no answer if it never falls)."""
    slopes = log_slopes(curve)
    steepest = int(np.argmin(slopes))
    slope, lr = float(slopes[steepest]), float(curve.lrs[steepest])
    if slope >= 0:
        return no_answer(
            rule, f"the loss never decreases: steepest slope {slope:+.2g} per decade at {lr:.1e}"
        )
    return answer_at(rule, curve, steepest, f"steepest descent, {slope:.2g} per decade at {lr:.1e}")


def lowest_point(curve: Curve) -> int:
    """Index, into the prepared curve, of its lowest loss."""
    return int(np.argmin(curve.losses))


def minimum_over(divisor: float) -> RuleBody:
    """The rule "the LR of the lowest loss, divided by ``divisor``" (``minimum`` is ``10``); its
    answers are named ``minimum_over_<divisor>`` until a registered rule names them."""
    name = "minimum" if divisor == 10 else f"minimum_over_{divisor:g}"
    fraction = "a tenth" if divisor == 10 else f"1/{divisor:g}"

    def body(curve: Curve) -> Suggestion:
        lowest = lowest_point(curve)
        lowest_lr = float(curve.lrs[lowest])
        lr = lowest_lr / divisor
        reason = (
            f"{fraction} of {lowest_lr:.1e}, where the loss is lowest "
            f"({curve.losses[lowest]:.4g}): {lr:.1e}"
        )
        return answer_near(name, curve, lr, reason)

    return body


minimum = minimum_over(10)


def longest_decreasing_subsequence(values: Sequence[float] | NDArray[np.float64]) -> list[int]:
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


def valley(curve: Curve) -> Suggestion:
    """About half way into the longest decreasing run (fastai's default rule)."""
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
    return answer_at("valley", curve, pick, reason)


def slide(curve: Curve) -> Suggestion:
    """fastai's interval slide rule, with a threshold that scales with the loss."""
    if curve.losses.size <= SLIDE_WINDOW:
        return no_answer(
            "slide",
            f"too short for the slide rule: {curve.losses.size} usable points "
            f"{curve.lr_range}, need {SLIDE_WINDOW + 1}",
        )
    slopes = log_slopes(curve)
    threshold = SLIDE_TOLERANCE * float(np.ptp(curve.losses))
    # differences[i] compares the slopes at the two ends of the window [i, i + SLIDE_WINDOW].
    differences = np.abs(slopes[SLIDE_WINDOW:] - slopes[:-SLIDE_WINDOW])
    settled = np.flatnonzero(differences <= threshold)
    if settled.size == 0:
        return no_answer(
            "slide",
            f"the slope never settles {curve.lr_range}: slopes {SLIDE_WINDOW} points apart "
            f"always differ by more than {threshold:.2g} per decade",
        )
    left = int(settled[-1])
    reason = (
        f"slope settles at {curve.lrs[left]:.1e}: within {threshold:.2g} per decade of the slope "
        f"{SLIDE_WINDOW} points to the right"
    )
    return answer_at("slide", curve, left, reason)


def consensus(curve: Curve) -> Suggestion:
    """The median in log LR of steep, valley, minimum and slide."""
    answers = [body(curve) for body in (steep, valley, minimum, slide)]
    picks = [(answer.rule, answer.lr) for answer in answers if answer.lr is not None]
    if not picks:
        return no_answer("consensus", "no rule gives an answer: " + answers[0].reason)
    lr = 10 ** float(np.median([math.log10(lr) for _, lr in picks]))
    named = ", ".join(f"{rule} {value:.1e}" for rule, value in picks)
    return answer_near("consensus", curve, lr, f"median in log LR of {named}: {lr:.1e}")


def geometric_mean_of(bodies: Sequence[RuleBody]) -> RuleBody:
    """The rule "geometric mean of these rules' LRs"; no answer unless every one answers. Its
    answers are named ``geometric_mean`` until a registered rule names them."""
    name = "geometric_mean"

    def body(curve: Curve) -> Suggestion:
        answers = [rule(curve) for rule in bodies]
        missing = [answer for answer in answers if answer.lr is None]
        if missing:
            return no_answer(name, f"{missing[0].rule} gives no answer: {missing[0].reason}")
        lrs = [float(answer.lr) for answer in answers if answer.lr is not None]
        lr = 10 ** float(np.mean(np.log10(lrs)))
        named = " and ".join(f"{answer.rule} {answer.lr:.1e}" for answer in answers)
        return answer_near(name, curve, lr, f"geometric mean of {named}: {lr:.1e}")

    return body
