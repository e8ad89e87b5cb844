"""Suggestion rules: read a learning rate off a range-test curve.

Each rule is a pure function ``(lrs, losses) -> Suggestion`` (:mod:`.curve` for what they share,
:mod:`.rules` for the rules themselves, :mod:`.registry` for the one registry, the default and
the rule per target schedule). The results (:class:`~lr_widget.results.range_test.RangeTestResult`,
:class:`~lr_widget.results.repeated.RepeatedRangeTest`) apply them to the lag-free curve
(:data:`CURVE_READ`), computed from the raw losses; the functions here read whatever curve they
are given.

Examples
--------
>>> import numpy as np
>>> lrs = np.logspace(-6, 0, 61)
>>> losses = (np.log10(lrs) + 2.0) ** 2  # lowest at 1e-2
>>> suggest_minimum(lrs, losses).lr
0.001
"""

from __future__ import annotations

from numpy.typing import ArrayLike

from lr_widget.suggestions.curve import (
    FLAT_TOLERANCE,
    MIN_RELATIVE_DROP,
    MIN_USABLE_POINTS,
    TAIL_TRIM,
    Suggestion,
)
from lr_widget.suggestions.registry import (
    CURVE_READ,
    DEFAULT_RULE,
    REGISTRY,
    RULES,
    SCHEDULE_RULES,
    SCHEDULES,
    Rule,
    SuggestionSource,
    rule_for_schedule,
    suggest,
    suggest_all,
)
from lr_widget.suggestions.rules import (
    SLIDE_TOLERANCE,
    SLIDE_WINDOW,
    longest_decreasing_subsequence,
)

__all__ = [
    "CURVE_READ",
    "DEFAULT_RULE",
    "FLAT_TOLERANCE",
    "MIN_RELATIVE_DROP",
    "MIN_USABLE_POINTS",
    "REGISTRY",
    "RULES",
    "SCHEDULES",
    "SCHEDULE_RULES",
    "SLIDE_TOLERANCE",
    "SLIDE_WINDOW",
    "TAIL_TRIM",
    "Rule",
    "Suggestion",
    "SuggestionSource",
    "longest_decreasing_subsequence",
    "rule_for_schedule",
    "suggest",
    "suggest_all",
    "suggest_consensus",
    "suggest_minimum",
    "suggest_slide",
    "suggest_steep",
    "suggest_valley",
]


def suggest_steep(lrs: ArrayLike, losses: ArrayLike) -> Suggestion:
    """Suggest the LR where the loss falls fastest per decade of LR.

    The argmin of ``np.gradient(losses, log10(lrs))`` on the trimmed curve. No answer if the
    steepest slope is not negative.
    """
    return REGISTRY["steep"](lrs, losses)


def suggest_valley(lrs: ArrayLike, losses: ArrayLike) -> Suggestion:
    """Suggest an LR about half way into the longest decreasing run (fastai's default rule).

    Finds a longest strictly decreasing subsequence of the trimmed loss (see
    ``longest_decreasing_subsequence``) ending at ``end`` with ``len`` points, sets
    ``start = end - len`` as fastai does (its true first index can lie deep in the flat start and
    drags the pick too low) and picks ``start + L // 3 + L // 6`` with ``L = end - start``. Unlike
    fastai's O(n^2) search, this runs in O(n log n).
    """
    return REGISTRY["valley"](lrs, losses)


def suggest_minimum(lrs: ArrayLike, losses: ArrayLike) -> Suggestion:
    """Suggest a tenth of the LR at the lowest loss.

    ``lr`` is exactly ``lrs[argmin(losses)] / 10`` over the trimmed curve, which need not be a
    recorded LR; ``index`` and ``loss`` are those of the recorded LR nearest to it in log space.
    """
    return REGISTRY["minimum"](lrs, losses)


def suggest_slide(lrs: ArrayLike, losses: ArrayLike) -> Suggestion:
    """Suggest an LR by fastai's interval slide rule, with a threshold that scales with the loss.

    With ``slope = d(loss) / d(log10 lr)`` on the trimmed curve, slide a window of
    ``SLIDE_WINDOW`` (15) points leftward from the right end until the slopes at its two ends
    differ by at most ``SLIDE_TOLERANCE * (max(loss) - min(loss))`` per decade of LR; suggest
    the LR at the window's left end. fastai uses an absolute 0.005 per point, which changes
    answer when the loss is scaled. No answer if the slopes never agree, where fastai returns the
    first LR.
    """
    return REGISTRY["slide"](lrs, losses)


def suggest_consensus(lrs: ArrayLike, losses: ArrayLike) -> Suggestion:
    """Suggest the median, in log LR, of the answers of steep, valley, minimum and slide.

    Each single rule fails in its own direction on some curves; the median survives any one of
    them failing and has no constant to tune. ``index`` and ``loss`` are those of the recorded LR
    nearest to the suggestion in log space.
    """
    return REGISTRY["consensus"](lrs, losses)
