"""The one registry of suggestion rules, the default, and the rule for each target schedule.

Every rule is registered once, as a :class:`Rule` (name, body, one-line description), in
:data:`REGISTRY`; :data:`RULES` maps each name to its public ``(lrs, losses) -> Suggestion``
function. :data:`DEFAULT_RULE` and :data:`SCHEDULE_RULES` were chosen by the quality benchmarks
(``benchmarks/RESULTS.md``): by cross-validation over their development tasks, then checked on
held-out ones. The default reads the length of the training the LR is for
(:mod:`~lr_widget.suggestions.length`); the other rules do not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from numpy.typing import ArrayLike

from lr_widget.curves.smoothing import LAG_FREE_WIDTH
from lr_widget.suggestions import length, rules
from lr_widget.suggestions.curve import Curve, Suggestion, no_answer, prepare

CURVE_READ = (
    f"the lag-free curve (robust local linear fit in log LR, {LAG_FREE_WIDTH:g} decades wide, "
    "blow-up cut)"
)
"""Which curve the rules read, in words, for ``summary()`` and the widget."""


@dataclass(frozen=True)
class Rule:
    """One suggestion rule: its name, what it computes on a prepared curve, and a description.

    The name is written here only: the body's answer is given it (a body such as
    ``minimum_over(3)`` does not know what it is registered as).

    ``body(curve)``, or ``body(curve, train_steps)`` for a rule that ``reads_length``: the length
    of the training the LR is for (``None``: not known). A rule that ``reads_flat`` also answers
    on a curve with no descent beyond its noise (:attr:`Curve.flat`); the others say why they
    cannot.
    """

    name: str
    body: Callable[..., Suggestion]
    description: str
    reads_length: bool = False
    reads_flat: bool = False

    def __call__(
        self,
        lrs: ArrayLike,
        losses: ArrayLike,
        train_steps: int | None = None,
        noise: float | None = None,
    ) -> Suggestion:
        """Apply the rule to a curve (validated and prepared first; ``noise`` as in
        :func:`~lr_widget.suggestions.curve.prepare`)."""
        return self.apply(prepare(lrs, losses, noise), train_steps)

    def apply(self, curve: Curve | str, train_steps: int | None = None) -> Suggestion:
        """Apply the rule to a prepared curve, or report why there is none (a ``str``)."""
        if isinstance(curve, str):
            return no_answer(self.name, curve)
        if curve.flat is not None and not self.reads_flat:
            return no_answer(self.name, "flat curve: no descent beyond batch noise to read")
        answer = self.body(curve, train_steps) if self.reads_length else self.body(curve)
        return answer if answer.rule == self.name else replace(answer, rule=self.name)


REGISTRY: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            length.LENGTH_RULE,
            length.for_length,
            "the LR of the lowest loss divided by a factor that grows with the training length "
            "(the default, for training at constant LR)",
            reads_length=True,
            reads_flat=True,
        ),
        Rule("steep", rules.steep, "where the loss falls fastest per decade of LR"),
        Rule("valley", rules.valley, "half way into the longest decreasing run (fastai)"),
        Rule("minimum", rules.minimum, "a tenth of the LR of the lowest loss"),
        Rule(
            "minimum_third",
            rules.minimum_over(3),
            "a third of the LR of the lowest loss",
        ),
        Rule(
            "minimum_half",
            rules.minimum_over(2),
            "half the LR of the lowest loss (for the peak of a one-cycle schedule)",
        ),
        Rule("slide", rules.slide, "where the slope settles (fastai's slide, scaled)"),
        Rule("consensus", rules.consensus, "median in log LR of steep, valley, minimum and slide"),
        Rule(
            "steep_minimum",
            rules.geometric_mean_of((rules.steep, rules.minimum)),
            "geometric mean of steep and minimum",
        ),
    )
}
"""Every rule, by name, in display order."""

RULES: dict[str, Callable[[ArrayLike, ArrayLike], Suggestion]] = {
    name: rule.__call__ for name, rule in REGISTRY.items()
}
"""Every rule's ``(lrs, losses) -> Suggestion`` function, by name (the order of the registry)."""

DEFAULT_RULE = length.LENGTH_RULE
"""The rule ``result.suggestion`` uses, for training at constant LR: the leave-one-task-out pick
over the realistic-budget benchmark's development tasks (``benchmarks/budget_rescore.py``)."""

SCHEDULES = ("constant", "one-cycle")
"""The target schedules a suggestion can be for: training at constant LR, or with the LR as the
peak of a one-cycle (or warm-up + cosine) schedule."""

SCHEDULE_RULES: dict[str, str] = {"constant": DEFAULT_RULE, "one-cycle": "minimum_half"}
"""The rule to read for each target schedule, each the development tasks' pick for it: the best
peak LR of a one-cycle schedule lies higher than the best constant LR."""


def rule_for_schedule(schedule: str) -> str:
    """The rule of :data:`SCHEDULE_RULES` for ``schedule``.

    >>> rule_for_schedule("constant") == SCHEDULE_RULES["constant"]
    True
    """
    if schedule not in SCHEDULE_RULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULE_RULES)}, got {schedule!r}")
    return SCHEDULE_RULES[schedule]


def suggest(
    lrs: ArrayLike,
    losses: ArrayLike,
    rule: str = DEFAULT_RULE,
    train_steps: int | None = None,
    noise: float | None = None,
) -> Suggestion:
    """Apply the rule named ``rule`` (one of ``RULES``) to the curve, for ``train_steps`` of
    training (read by the default rule only; ``None``: not known). ``noise``, the curve's
    standard error from batch noise when known, lets a curve with no descent beyond it be read
    as flat (:func:`~lr_widget.suggestions.curve.prepare`).

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
    if rule not in REGISTRY:
        raise ValueError(f"rule must be one of {sorted(REGISTRY)}, got {rule!r}")
    return REGISTRY[rule](lrs, losses, length.check_train_steps(train_steps), noise)


def suggest_all(
    lrs: ArrayLike, losses: ArrayLike, train_steps: int | None = None, noise: float | None = None
) -> dict[str, Suggestion]:
    """Apply every rule in ``RULES`` to the curve, preparing it once (``noise`` as in
    :func:`suggest`).

    Returns
    -------
    dict of str to Suggestion
        Keyed by rule name, in the order of ``RULES``.
    """
    curve = prepare(lrs, losses, noise)
    steps = length.check_train_steps(train_steps)
    return {name: rule.apply(curve, steps) for name, rule in REGISTRY.items()}


class SuggestionSource:
    """Mixin: every rule's suggestion, the default one and the one for each target schedule, from
    the subclass's ``suggest(rule, train_steps)`` (a single sweep's curve, or the robust pick
    over repeated sweeps) and its ``settings`` (which hold the training length given to the
    sweep, if any)."""

    def suggest(self, rule: str = DEFAULT_RULE, train_steps: int | None = None) -> Suggestion:
        """The suggestion of ``rule`` (one of :data:`RULES`) for ``train_steps`` of training
        (``None``: :attr:`train_steps`)."""
        raise NotImplementedError

    if TYPE_CHECKING:

        @property
        def settings(self) -> dict[str, Any]:
            """The sweep's settings as saved."""

    @property
    def train_steps(self) -> int | None:
        """The length of the training the suggestions are for, as given to the sweep
        (``train_steps=`` or ``epochs=``), or ``None`` when it was not given; the default
        rule then assumes :data:`~lr_widget.suggestions.length.ASSUMED_TRAIN_STEPS`."""
        value = self.settings.get("train_steps")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _length(self, train_steps: int | None) -> int | None:
        steps = length.check_train_steps(train_steps)
        return self.train_steps if steps is None else steps

    def suggestions(self, train_steps: int | None = None) -> dict[str, Suggestion]:
        """Every rule's suggestion, by rule name, in the order of :data:`RULES`."""
        steps = self._length(train_steps)
        return {rule: self.suggest(rule, steps) for rule in RULES}

    def suggestion_for(
        self, schedule: str = "constant", train_steps: int | None = None
    ) -> Suggestion:
        """The suggestion to take when training with ``schedule`` for ``train_steps`` optimizer
        steps: ``"constant"`` LR, or ``"one-cycle"`` (the LR is then the schedule's peak); see
        :data:`SCHEDULE_RULES`. ``train_steps=None`` uses the length given to the sweep, else
        the assumed one.

        >>> from lr_widget import RangeTestResult
        >>> import numpy as np
        >>> lrs = np.logspace(-5, 0, 60)
        >>> losses = 1 + (np.log10(lrs) + 2) ** 2
        >>> result = RangeTestResult(lrs=lrs.tolist(), losses=losses.tolist())
        >>> short = result.suggestion_for("constant", train_steps=100).lr
        >>> long = result.suggestion_for("constant", train_steps=10_000).lr
        >>> long < short
        True
        """
        return self.suggest(rule_for_schedule(schedule), self._length(train_steps))

    @property
    def suggestion(self) -> Suggestion:
        """The default rule's suggestion, for the length given to the sweep (else the assumed
        one)."""
        return self.suggest(DEFAULT_RULE, self.train_steps)

    @property
    def suggested_lr(self) -> float | None:
        """The default suggestion's LR, or ``None`` when there is no answer (see its reason)."""
        return self.suggestion.lr
