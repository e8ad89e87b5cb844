"""The suggestion for the training you will run: the LR of the lowest loss, divided by a factor
that grows with the length of that training.

A range test is about a hundred steps long; the training a user runs is often 10-1000 times
longer, and the best constant LR moves with that length (on the benchmark's tasks it mostly falls,
mildly when the run keeps its best checkpoint). The rule reads the lag-free curve's lowest point,
``lowest``, and suggests

    lowest / (DIVISOR_AT_REFERENCE * (train_steps / REFERENCE_STEPS) ** LENGTH_EXPONENT)

clamped to at most :data:`MAX_DIVISOR`. When the length is not known the rule assumes
:data:`ASSUMED_TRAIN_STEPS`. The three constants are the ones leave-one-task-out chose over the
development tasks of the realistic-budget benchmark (``benchmarks/budget_rescore.py``: every
length of a task held out together, no constant fitted to one task); a test holds them equal to
the committed selection, and ``benchmarks/RESULTS.md`` has the evidence and the held-out scores.
"""

from __future__ import annotations

from lr_widget.curves.arguments import require_int
from lr_widget.suggestions.curve import Curve, Suggestion, answer_near, no_answer
from lr_widget.suggestions.rules import lowest_point

LENGTH_RULE = "for_length"
"""The rule's name (the default rule)."""
REFERENCE_STEPS = 100
"""The length at which the divisor is :data:`DIVISOR_AT_REFERENCE`: one default sweep."""
DIVISOR_AT_REFERENCE = 3.0
"""The divisor for a training run as long as the sweep."""
LENGTH_EXPONENT = 0.1
"""How fast the divisor grows with the length: ``x(10 ** LENGTH_EXPONENT)`` per decade of steps."""
MAX_DIVISOR = 100.0
"""The largest divisor, however long the run (the benchmark measures runs up to 4,800 steps)."""
ASSUMED_TRAIN_STEPS = 300
"""The length assumed when none is given: the safest one to assume on the development tasks."""


def check_train_steps(train_steps: object) -> int | None:
    """``train_steps`` as an ``int`` (``None`` passes): ``ValueError``/``TypeError`` naming it
    otherwise.

    >>> check_train_steps(3000)
    3000
    """
    if train_steps is None:
        return None
    return require_int("train_steps", train_steps, 1)


def divisor_for(train_steps: int | None) -> float:
    """The divisor of the LR of the lowest loss for a run of ``train_steps`` optimizer steps
    (``None``: :data:`ASSUMED_TRAIN_STEPS`).

    >>> divisor_for(REFERENCE_STEPS) == DIVISOR_AT_REFERENCE
    True
    >>> divisor_for(10 * REFERENCE_STEPS) > divisor_for(REFERENCE_STEPS)
    True
    """
    steps = ASSUMED_TRAIN_STEPS if train_steps is None else train_steps
    divisor = DIVISOR_AT_REFERENCE * (steps / REFERENCE_STEPS) ** LENGTH_EXPONENT
    return float(min(max(divisor, 1.0), MAX_DIVISOR))


def describe_length(train_steps: int | None) -> str:
    """The training length a suggestion is for, in words.

    >>> describe_length(3000)
    '3,000 training steps'
    >>> describe_length(None).endswith("training steps (assumed; pass train_steps= or epochs=)")
    True
    """
    if train_steps is None:
        return f"{ASSUMED_TRAIN_STEPS:,} training steps (assumed; pass train_steps= or epochs=)"
    return f"{train_steps:,} training steps"


def for_length(curve: Curve, train_steps: int | None) -> Suggestion:
    """The rule's suggestion on a prepared curve, for ``train_steps`` of training.

    On a flat curve (no descent beyond batch noise, :attr:`Curve.flat`) the lowest point is
    noise; the LR where the loss starts to rise takes its place, divided the same way.
    """
    divisor = divisor_for(train_steps)
    flat = curve.flat
    if flat is not None:
        if flat.rise_lr is None:
            return no_answer(LENGTH_RULE, f"{flat.description}; {flat.how_to_decide}")
        lr = flat.rise_lr / divisor
        reason = (
            f"{flat.description}; 1/{divisor:.3g} of it for {describe_length(train_steps)}: "
            f"{lr:.1e}. {flat.how_to_decide[0].upper()}{flat.how_to_decide[1:]}"
        )
        return answer_near(LENGTH_RULE, curve, lr, reason)
    lowest = lowest_point(curve)
    lowest_lr, lowest_loss = float(curve.lrs[lowest]), float(curve.losses[lowest])
    lr = lowest_lr / divisor
    reason = (
        f"1/{divisor:.3g} of {lowest_lr:.1e}, where the loss is lowest ({lowest_loss:.4g}), "
        f"for {describe_length(train_steps)}: {lr:.1e}"
    )
    return answer_near(LENGTH_RULE, curve, lr, reason)
