"""Specification of the suggestion rules on synthetic curves whose right answer is known."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import ArrayLike

from lr_widget.suggestions import (
    suggest_consensus,
    suggest_minimum,
    suggest_slide,
    suggest_steep,
    suggest_valley,
)
from lr_widget.suggestions.curve import MIN_USABLE_POINTS, Suggestion
from lr_widget.suggestions.length import divisor_for
from lr_widget.suggestions.registry import (
    DEFAULT_RULE,
    REGISTRY,
    RULES,
    SCHEDULE_RULES,
    suggest,
    suggest_all,
)
from lr_widget.suggestions.rules import SLIDE_WINDOW, longest_decreasing_subsequence

NUM_STEPS = 101  # so that 1e-3 is a recorded LR
LRS = np.logspace(-6, 0, NUM_STEPS)
LOG_LRS = np.log10(LRS)
# The rules read the curve trimmed like fastai: the first n // 10 and the last 5 points go.
FIRST_USED, LAST_USED = NUM_STEPS // 10, NUM_STEPS - 6


def drop_then_blow_up(width: float = 0.4) -> np.ndarray:
    """A sigmoid drop of 2 centred at 1e-3 (``width`` decades wide), blowing up after 1e-1."""
    drop = 2.0 / (1.0 + np.exp(-(LOG_LRS + 3.0) / width))
    return 2.3 - drop + 5.0 * np.maximum(0.0, LOG_LRS + 1.0) ** 2


def noisy_drop_then_blow_up() -> np.ndarray:
    rng = np.random.default_rng(0)
    return drop_then_blow_up() + np.convolve(rng.normal(0, 0.05, NUM_STEPS), np.ones(5) / 5, "same")


def test_steep_finds_the_steepest_descent_in_log_lr() -> None:
    result = suggest_steep(LRS, drop_then_blow_up())

    assert result.index == 50
    assert result.lr == pytest.approx(1e-3, rel=1e-12)


def test_steep_differentiates_in_log_lr_not_raw_lr() -> None:
    losses = drop_then_blow_up(width=0.4)
    used = slice(FIRST_USED, LAST_USED + 1)
    raw_lr_steepest = FIRST_USED + int(np.argmin(np.gradient(losses[used], LRS[used])))
    # The curve tells the two apart: in raw LR the steepest point is over a decade too low.
    assert LOG_LRS[raw_lr_steepest] < -4.0

    result = suggest_steep(LRS, losses)

    assert result.index == 50


def test_steep_on_linearly_spaced_lrs_still_uses_log_lr() -> None:
    lrs = np.linspace(1e-4, 1e-1, 400)
    losses = 2.0 - np.tanh((np.log10(lrs) + 2.0) / 0.3)

    result = suggest_steep(lrs, losses)

    assert result.lr == pytest.approx(1e-2, rel=0.02)


def test_minimum_is_a_tenth_of_the_lr_at_the_lowest_loss() -> None:
    losses = drop_then_blow_up()
    lowest = FIRST_USED + int(np.argmin(losses[FIRST_USED : LAST_USED + 1]))
    expected_lr = LRS[lowest] / 10

    result = suggest_minimum(LRS, losses)

    assert result.lr == pytest.approx(expected_lr, rel=1e-12)
    nearest = int(np.argmin(np.abs(LOG_LRS - math.log10(expected_lr))))
    assert result.index == nearest
    assert result.loss == losses[nearest]


def test_minimum_marks_the_nearest_recorded_lr_in_log_space() -> None:
    lrs = np.array([1e-4, 1e-3, 2e-3, 4e-3, 1e-2, 2e-2, 4e-2, 1e-1, 2e-1, 4e-1])
    losses = np.array([3.0, 2.9, 2.8, 2.7, 2.0, 1.9, 1.5, 1.0, 1.2, 2.0])

    result = suggest_minimum(lrs, losses)  # lowest at 1e-1, suggests 1e-2

    assert result.lr == pytest.approx(1e-2)
    assert result.index == 4
    assert result.loss == 2.0


def test_valley_picks_half_way_into_the_descent_before_the_minimum() -> None:
    losses = drop_then_blow_up()
    # The loss falls strictly from the first used point to the minimum, then only rises.
    start, end = FIRST_USED, int(np.argmin(losses))
    length = end - start

    result = suggest_valley(LRS, losses)

    assert result.index == start + length // 3 + length // 6
    assert LRS[start] < (result.lr or 0) < LRS[end]


def brute_force_longest_decreasing(values: list[float]) -> tuple[int, int, int]:
    """(length, start, end) by the O(n^2) dynamic programme fastai uses, plus an O(n^3) search.

    ``end`` is the first index where a longest strictly decreasing subsequence ends, ``start``
    the latest index a longest subsequence ending at ``end`` can start from.
    """
    ending_at = [1] * len(values)
    for i in range(len(values)):
        for j in range(i):
            if values[j] > values[i]:
                ending_at[i] = max(ending_at[i], ending_at[j] + 1)
    length = max(ending_at)
    end = ending_at.index(length)
    for start in range(end, -1, -1):
        within = [1 if k == start else 0 for k in range(end + 1)]
        for i in range(start + 1, end + 1):
            steps = [within[j] + 1 for j in range(start, i) if within[j] and values[j] > values[i]]
            within[i] = max(steps, default=0)
        if within[end] == length:
            return length, start, end
    raise AssertionError("unreachable: the subsequence ending at end has a start")


def test_longest_decreasing_subsequence_matches_brute_force_on_random_values() -> None:
    rng = np.random.default_rng(1234)
    for _ in range(300):
        # Few distinct values, so that ties (which must not count as decreasing) are common.
        values = [float(v) for v in rng.integers(0, 8, size=int(rng.integers(1, 30)))]
        chain = longest_decreasing_subsequence(values)

        length, start, end = brute_force_longest_decreasing(values)
        assert len(chain) == length
        assert (chain[0], chain[-1]) == (start, end)
        assert all(a < b for a, b in itertools.pairwise(chain))
        assert all(values[a] > values[b] for a, b in itertools.pairwise(chain))


def test_valley_matches_brute_force_on_random_walks() -> None:
    rng = np.random.default_rng(99)
    lrs = np.logspace(-7, 1, 60)
    for _ in range(40):
        losses = 3.0 + np.cumsum(rng.normal(-0.02, 0.1, lrs.size))
        used = list(losses[6:55])  # n // 10 = 6 first and 5 last points trimmed
        chain_length, _, end = brute_force_longest_decreasing(used)
        start = max(end - chain_length, 0)  # fastai's start: the run's length before its end
        length = end - start

        result = suggest_valley(lrs, losses)

        assert result.index == 6 + start + length // 3 + length // 6


def test_longest_decreasing_subsequence_of_nothing_is_empty() -> None:
    assert longest_decreasing_subsequence([]) == []


def test_slide_stops_at_the_rightmost_window_of_constant_slope() -> None:
    # Slope -1 per decade up to the kink at index 85, then +9: only 9 points lie right of the
    # kink, so every window reaching past it straddles the kink and its slopes differ by 10.
    kink = 85
    losses = -LOG_LRS + 10.0 * np.maximum(0.0, LOG_LRS - LOG_LRS[kink])

    result = suggest_slide(LRS, losses)

    # Rightmost window with both ends at slope -1 ends at kink - 1 (np.gradient is central).
    assert result.index == kink - 1 - SLIDE_WINDOW


def test_slide_without_a_window_of_constant_slope_gives_no_answer() -> None:
    result = suggest_slide(LRS, (LOG_LRS + 3.0) ** 2)

    assert not result.ok
    assert "never settles" in result.reason


def test_slide_needs_more_points_than_its_window() -> None:
    lrs = np.logspace(-5, -1, 20)
    losses = 2.0 - np.tanh(np.log10(lrs) + 3.0)

    results = suggest_all(lrs, losses)

    assert not results["slide"].ok
    assert results["slide"].reason.startswith("too short for the slide rule: 13 usable points")
    assert results["steep"].ok
    assert results["valley"].ok


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("curve", [drop_then_blow_up, noisy_drop_then_blow_up])
@pytest.mark.parametrize(
    ("scale", "shift"), [(1000.0, 0.0), (0.001, 0.0), (1.0, 7.0), (1000.0, -2000.0)]
)
def test_every_rule_ignores_the_scale_and_offset_of_the_loss(
    rule: str, curve: Callable[[], np.ndarray], scale: float, shift: float
) -> None:
    losses = curve()

    original = suggest(LRS, losses, rule=rule)
    transformed = suggest(LRS, scale * losses + shift, rule=rule)

    assert original.ok
    assert transformed.lr == pytest.approx(original.lr, rel=1e-12)
    assert transformed.index == original.index


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_slide_threshold_scales_with_the_loss(scale: float) -> None:
    # fastai's absolute threshold (0.005 per point) would stop elsewhere at either scale.
    kink = 85
    losses = -LOG_LRS + 10.0 * np.maximum(0.0, LOG_LRS - LOG_LRS[kink])

    assert suggest_slide(LRS, scale * losses).index == kink - 1 - SLIDE_WINDOW


def test_the_non_finite_tail_is_cut_off() -> None:
    losses = drop_then_blow_up()
    diverged = losses.copy()
    diverged[90] = np.inf
    diverged[91:] = np.nan

    for rule, result in suggest_all(LRS, diverged).items():
        assert result == suggest(LRS[:90], losses[:90], rule=rule)
        assert result.index is not None
        assert result.index < 90


@pytest.mark.parametrize("rule", sorted(RULES))
def test_indices_refer_to_the_untrimmed_arrays(rule: str) -> None:
    losses = noisy_drop_then_blow_up()

    result = suggest(LRS, losses, rule=rule)

    assert result.index is not None
    assert result.loss == losses[result.index]
    off_grid = ("minimum", "minimum_third", "minimum_half", "consensus", "steep_minimum")
    if rule not in (*off_grid, "for_length"):
        assert result.lr == LRS[result.index]


@pytest.mark.parametrize("rule", sorted(RULES))
def test_too_short_a_curve_gives_no_answer(rule: str) -> None:
    lrs = np.logspace(-4, -1, MIN_USABLE_POINTS - 1)

    result = suggest(lrs, np.linspace(3.0, 1.0, lrs.size), rule=rule)

    assert not result.ok
    assert result.reason == "too short: 7 usable points, need at least 8"


@pytest.mark.parametrize("rule", ["steep", "valley", "minimum"])
def test_the_shortest_usable_curve_is_used_untrimmed(rule: str) -> None:
    lrs = np.logspace(-4, -1, MIN_USABLE_POINTS)
    losses = np.array([3.0, 2.9, 2.7, 2.0, 1.2, 1.0, 0.9, 0.95])

    result = suggest(lrs, losses, rule=rule)

    assert result.ok
    assert result.index == {"steep": 3, "valley": 3, "minimum": 4}[rule]


def test_a_curve_cut_short_by_divergence_says_where() -> None:
    lrs = np.logspace(-4, -1, 30)
    losses = np.linspace(3.0, 1.0, 30)
    losses[6] = np.nan

    result = suggest_valley(lrs, losses)

    assert not result.ok
    assert result.reason == (
        f"too short: 6 usable points before the first non-finite loss at {lrs[6]:.1e}, "
        "need at least 8"
    )


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_curve_without_finite_losses_gives_no_answer(rule: str) -> None:
    losses = np.array([np.nan, np.inf, -np.inf] * 10)

    result = suggest(np.logspace(-4, -1, 30), losses, rule=rule)

    assert not result.ok
    assert result.reason == "no finite losses: all 30 are nan or inf"


def test_an_empty_curve_gives_no_answer() -> None:
    result = suggest_steep([], [])

    assert not result.ok
    assert result.reason == "no losses recorded"


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_flat_curve_gives_no_answer(rule: str) -> None:
    rng = np.random.default_rng(5)
    losses = 2.0 + 1e-6 * rng.standard_normal(NUM_STEPS)

    result = suggest(LRS, losses, rule=rule)

    assert not result.ok
    assert result.reason.startswith("flat: loss changes by ")
    assert "between 4.0e-06 and 5.0e-01" in result.reason


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_rising_curve_gives_no_answer(rule: str) -> None:
    # Ripples of 0.01% of the loss are no descent.
    losses = np.exp(LOG_LRS) + 1.0 + 1e-4 * np.sin(np.arange(NUM_STEPS))

    result = suggest(LRS, losses, rule=rule)

    assert not result.ok
    assert result.reason.startswith("the loss never decreases between 4.0e-06 and 5.0e-01")


def test_steep_gives_no_answer_when_no_slope_is_negative() -> None:
    # Zigzag: it does fall (2 -> 1), but every central-difference slope is positive.
    lrs = np.logspace(-3, -2, 8)
    losses = [0.0, 2.0, 1.0, 3.0, 2.0, 4.0, 3.0, 5.0]

    result = suggest_steep(lrs, losses)

    assert not result.ok
    assert result.reason.startswith("the loss never decreases: steepest slope +")
    assert suggest_valley(lrs, losses).ok


def test_every_reason_is_one_line_naming_the_lr() -> None:
    for result in suggest_all(LRS, noisy_drop_then_blow_up()).values():
        assert result.ok
        assert "\n" not in result.reason
        assert f"{result.lr:.1e}" in result.reason
        assert re.fullmatch(r"\d\.\de[+-]\d\d", f"{result.lr:.1e}")


def test_unknown_rule_raises_naming_the_parameter_and_the_choices() -> None:
    with pytest.raises(ValueError, match=r"rule must be one of .*'valley'.*, got 'steepest'"):
        suggest(LRS, drop_then_blow_up(), rule="steepest")


@pytest.mark.parametrize(
    ("lrs", "losses", "message"),
    [
        (LRS, drop_then_blow_up()[:-1], "lrs and losses must have the same length"),
        (np.r_[0.0, LRS[1:]], drop_then_blow_up(), "lrs must be positive and finite"),
        (LRS[::-1], drop_then_blow_up(), "lrs must be strictly increasing"),
        (LRS, np.ones((2, NUM_STEPS)), "losses must be 1-D"),
        (["a"], [1.0], "lrs must be a 1-D sequence of numbers"),
    ],
)
def test_bad_arrays_raise_naming_the_argument(
    lrs: ArrayLike, losses: ArrayLike, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        suggest_steep(lrs, losses)


def test_default_rule_divides_the_minimum_by_the_length_factor_and_one_cycle_reads_half() -> None:
    losses = drop_then_blow_up()

    assert DEFAULT_RULE == "for_length" == SCHEDULE_RULES["constant"]
    assert SCHEDULE_RULES["one-cycle"] == "minimum_half"
    lowest = LRS[10 + int(np.argmin(losses[10:-5]))]
    assert suggest(LRS, losses).lr == pytest.approx(lowest / divisor_for(None))
    assert suggest(LRS, losses, train_steps=2000).lr == pytest.approx(lowest / divisor_for(2000))
    assert suggest(LRS, losses, "minimum_half").lr == pytest.approx(lowest / 2)


def test_consensus_is_the_median_in_log_lr_of_the_rules_that_answer() -> None:
    losses = noisy_drop_then_blow_up()
    singles = [suggest(LRS, losses, rule=rule) for rule in ("steep", "valley", "minimum", "slide")]
    logs = sorted(math.log10(s.lr) for s in singles if s.lr is not None)

    result = suggest_consensus(LRS, losses)

    assert result.lr == pytest.approx(10 ** float(np.median(logs)), rel=1e-12)
    assert result.index is not None
    nearest = int(np.argmin(np.abs(np.log10(LRS) - math.log10(result.lr))))
    assert result.index == nearest
    assert all(s.rule in result.reason for s in singles if s.lr is not None)


def test_consensus_ignores_a_rule_without_an_answer() -> None:
    # A curve too short for slide (which needs SLIDE_WINDOW + 1 points) still gets a consensus.
    lrs = np.logspace(-4, 0, 20)  # 13 usable points after trimming: too few for slide
    losses = 2.0 - np.tanh(2 * (np.log10(lrs) + 2)) + np.maximum(0, np.log10(lrs) + 0.5) ** 2
    assert not suggest_slide(lrs, losses).ok
    result = suggest_consensus(lrs, losses)
    assert result.ok
    assert "slide" not in result.reason


def test_consensus_without_any_answer_explains_why() -> None:
    result = suggest_consensus(LRS, np.full(LRS.size, np.nan))
    assert not result.ok
    assert "no finite losses" in result.reason


def test_suggest_all_equals_each_rule_alone() -> None:
    losses = noisy_drop_then_blow_up()

    results = suggest_all(LRS, losses)

    assert list(results) == list(REGISTRY)
    assert {"steep", "valley", "minimum", "slide", "consensus"} <= set(results)
    assert results == {name: rule(LRS, losses) for name, rule in RULES.items()}


def test_suggestions_round_trip_through_json() -> None:
    answers = list(suggest_all(LRS, noisy_drop_then_blow_up()).values())
    refusals = list(suggest_all(LRS, np.full(NUM_STEPS, 2.0)).values())

    for original in answers + refusals:
        data = json.loads(json.dumps(original.to_dict(), allow_nan=False))
        assert Suggestion.from_dict(data) == original


def test_to_dict_holds_plain_python_values() -> None:
    data = suggest_valley(LRS, np.float32(drop_then_blow_up())).to_dict()

    assert [type(data[key]) for key in ("rule", "lr", "index", "loss", "reason")] == [
        str,
        float,
        int,
        float,
        str,
    ]


def test_from_dict_names_missing_fields() -> None:
    with pytest.raises(ValueError, match=r"missing \['index', 'loss'\]"):
        Suggestion.from_dict({"rule": "steep", "lr": 1e-3, "reason": "x"})


def test_a_suggestion_is_all_answer_or_no_answer() -> None:
    with pytest.raises(ValueError, match="lr, index and loss must be all set or all None"):
        Suggestion("steep", 1e-3, None, None, "half an answer")


def test_str_is_one_readable_line() -> None:
    answer = Suggestion("valley", 3.16e-3, 7, 0.5, "half way into the run: 3.2e-03")
    refusal = Suggestion("steep", None, None, None, "no finite losses: all 3 are nan or inf")

    assert str(answer) == "valley: 3.16e-03 (half way into the run: 3.2e-03)"
    assert str(refusal) == "steep: no suggestion (no finite losses: all 3 are nan or inf)"
