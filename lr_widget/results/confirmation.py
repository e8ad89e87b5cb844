"""Confirm a suggested LR by training: short probes at a few LRs around it, from the same state.

A rule reads a curve that mixes the effect of the LR with that of the training the sweep has
already done; a probe asks the question directly. :func:`confirm_lr` trains ``steps`` steps at
each candidate ``lr * factor`` from the current state, restores the model, optimizer and RNG
streams exactly after each (:class:`~lr_widget.engine.state.TrainingState`), and compares the mean
loss of the last part of each probe. :func:`compare_probes` is that comparison alone, on losses
recorded elsewhere.

A probe's noise is the standard error of its tail mean, from the scatter of the tail losses
about a straight line (so a loss still falling is not mistaken for noise). The winner is
``decisive`` when its margin over the runner-up is at least ``DECISIVE_MARGIN`` of those
combined standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lr_widget.curves.arguments import ArgumentTypeError, require_int, require_lr, require_real
from lr_widget.suggestions.curve import Suggestion
from lr_widget.suggestions.registry import DEFAULT_RULE

DEFAULT_FACTORS = (1 / 3, 1.0, 3.0)
"""Candidate LRs, as multiples of the suggestion: a third, the suggestion, three times it."""
DECISIVE_MARGIN = 2.0
"""A winner is decisive when it beats the runner-up by this many combined standard errors."""
TAIL_FRACTION = 0.5
"""The part of each probe, at its end, whose mean loss is compared."""
CONFIRM_RULE = "minimum"
"""The rule whose LR a confirmation centres on when none is given: of the centres measured
(``minimum``, ``minimum_third``, ``steep_minimum``), the best on the benchmark's development tasks
(x1.14 there; probing around the default ``minimum_third`` scored x1.33)."""
CONFIRM_OPTIONS = frozenset({"factors", "steps", "tail"})
"""The options of :func:`confirm_lr` that ``find_lr(confirm={...})`` passes on."""


def confirm_centre(suggestions: Mapping[str, Suggestion]) -> Suggestion | None:
    """The suggestion a confirmation centres on, from a result's ``suggestions()``:
    :data:`CONFIRM_RULE`'s, or, when it has none because the curve is flat (no descent beyond
    batch noise), the default rule's, which then reads where the loss starts to rise: the case
    where probing helps most. ``None`` without either; else the one returned has ``lr=None``
    and its reason when neither answers.

    >>> flat = Suggestion(CONFIRM_RULE, None, None, None, "flat curve")
    >>> default = Suggestion(DEFAULT_RULE, 1e-3, 5, 0.5, "the rise, divided")
    >>> confirm_centre({CONFIRM_RULE: flat, DEFAULT_RULE: default}).lr
    0.001
    """
    own = suggestions.get(CONFIRM_RULE)
    if own is not None and own.ok:
        return own
    fallback = suggestions.get(DEFAULT_RULE)
    return fallback if fallback is not None and fallback.ok else own


@dataclass(frozen=True)
class Probe:
    """One probe: its LR, its losses, the mean and standard error of their tail."""

    lr: float
    factor: float
    losses: tuple[float, ...]
    mean_loss: float
    noise: float
    diverged: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: a diverged probe's mean is ``None``."""
        return {
            "lr": self.lr,
            "factor": self.factor,
            "losses": [loss if math.isfinite(loss) else None for loss in self.losses],
            "mean_loss": self.mean_loss if math.isfinite(self.mean_loss) else None,
            "noise": self.noise if math.isfinite(self.noise) else None,
            "diverged": self.diverged,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Probe:
        """The inverse of :meth:`to_dict` (``None`` reads back as ``inf``/``nan``)."""
        losses = tuple(math.nan if loss is None else float(loss) for loss in data["losses"])
        return cls(
            lr=float(data["lr"]),
            factor=float(data["factor"]),
            losses=losses,
            mean_loss=_number(data["mean_loss"], math.inf),
            noise=_number(data["noise"], math.inf),
            diverged=bool(data["diverged"]),
        )


def _number(value: Any, missing: float) -> float:
    return missing if value is None else float(value)


@dataclass(frozen=True)
class Confirmation:
    """The outcome of :func:`confirm_lr`: every probe, the winner and how clearly it won.

    Attributes
    ----------
    suggested_lr : float
        The LR the probes were centred on.
    probes : tuple of Probe
        One per candidate, in increasing LR.
    winner : float
        The LR whose probe ended with the lowest mean loss.
    margin : float
        The runner-up's tail mean minus the winner's (``inf`` when every other probe diverged).
    margin_over_noise : float
        ``margin`` in combined standard errors of the two tail means.
    decisive : bool
        ``margin_over_noise >= DECISIVE_MARGIN``.
    reason : str
        One line saying what was found.
    steps : int
        Training steps the probes took in all.

    Examples
    --------
    >>> result = compare_probes([1e-3, 1e-2], [[2.0, 1.9, 1.8, 1.7], [2.0, 1.5, 1.0, 0.5]])
    >>> result.winner, result.decisive
    (0.01, True)
    """

    suggested_lr: float
    probes: tuple[Probe, ...]
    winner: float
    margin: float
    margin_over_noise: float
    decisive: bool
    reason: str
    steps: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (non-finite margins become ``None``)."""

        def finite(value: float) -> float | None:
            return value if math.isfinite(value) else None

        return {
            "suggested_lr": self.suggested_lr,
            "probes": [probe.to_dict() for probe in self.probes],
            "winner": self.winner,
            "margin": finite(self.margin),
            "margin_over_noise": finite(self.margin_over_noise),
            "decisive": self.decisive,
            "reason": self.reason,
            "steps": self.steps,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Confirmation:
        """The inverse of :meth:`to_dict`, as saved in a result's ``confirmation`` field.

        >>> found = compare_probes([1e-3, 1e-2], [[2.0, 1.9, 1.8, 1.7], [2.0, 1.5, 1.0, 0.5]])
        >>> Confirmation.from_dict(found.to_dict()) == found
        True
        """
        try:
            return cls(
                suggested_lr=float(data["suggested_lr"]),
                probes=tuple(Probe.from_dict(probe) for probe in data["probes"]),
                winner=float(data["winner"]),
                margin=_number(data["margin"], math.inf),
                margin_over_noise=_number(data["margin_over_noise"], math.inf),
                decisive=bool(data["decisive"]),
                reason=str(data["reason"]),
                steps=int(data["steps"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a saved confirmation: {type(error).__name__}: {error}") from None


def _tail_statistics(losses: Sequence[float], tail: float) -> tuple[float, float]:
    """Mean of the last ``tail`` of ``losses`` and its standard error about a fitted line."""
    values = np.asarray(losses, dtype=np.float64)
    count = max(2, math.ceil(tail * values.size))
    end = values[-count:]
    mean = float(end.mean())
    if end.size < 3:
        return mean, float(np.std(end, ddof=1) / math.sqrt(end.size))
    steps = np.arange(end.size, dtype=np.float64)
    slope, intercept = np.polyfit(steps, end, 1)
    residuals = end - (slope * steps + intercept)
    scatter = float(np.sqrt(np.sum(residuals**2) / (end.size - 2)))
    return mean, scatter / math.sqrt(end.size)


def compare_probes(
    lrs: Sequence[float],
    losses: Sequence[Sequence[float]],
    suggested_lr: float | None = None,
    tail: float = TAIL_FRACTION,
) -> Confirmation:
    """Judge probes already run: ``losses[i]`` are the losses of the probe at ``lrs[i]``.

    A probe with a non-finite loss, or shorter than the others (it stopped early), diverged and
    never wins. ``suggested_lr`` (default: the geometric middle of ``lrs``) only sets each
    probe's ``factor``.
    """
    if len(lrs) != len(losses) or len(lrs) < 2:
        raise ValueError(
            f"lrs and losses must pair up, at least two probes: got {len(lrs)} LRs and "
            f"{len(losses)} loss lists"
        )
    centre = suggested_lr or float(10 ** np.mean(np.log10(np.asarray(lrs, dtype=np.float64))))
    length = max(len(run) for run in losses)
    probes = []
    for lr, run in sorted(zip(lrs, losses, strict=True), key=lambda pair: pair[0]):
        values = tuple(float(loss) for loss in run)
        diverged = len(values) < max(length, 2) or not all(math.isfinite(v) for v in values)
        mean, noise = (math.inf, math.inf) if diverged else _tail_statistics(values, tail)
        probes.append(Probe(float(lr), float(lr) / centre, values, mean, noise, diverged))
    return _judge(centre, tuple(probes), sum(len(run) for run in losses))


def _judge(centre: float, probes: tuple[Probe, ...], steps: int) -> Confirmation:
    ranked = sorted(probes, key=lambda probe: probe.mean_loss)
    best, second = ranked[0], ranked[1]
    if best.diverged:
        reason = "every probe diverged: the suggestion is too high; run the range test lower"
        return Confirmation(
            centre, probes, min(p.lr for p in probes), 0.0, 0.0, False, reason, steps
        )
    margin = second.mean_loss - best.mean_loss
    noise = math.hypot(best.noise, second.noise)
    if math.isinf(margin):
        over = math.inf
    else:
        over = margin / noise if noise > 0 else (math.inf if margin > 0 else 0.0)
    decisive = over >= DECISIVE_MARGIN
    edge = best is probes[0] or best is probes[-1]
    reason = (
        f"{best.lr:.2e} ended lowest ({best.mean_loss:.4g}), {margin:.3g} below {second.lr:.2e}"
        f" = {over:.2g} standard errors: {'decisive' if decisive else 'within the noise'}"
    )
    if edge and decisive:
        reason += "; it is at the edge of the LRs tried, so the best may lie further out"
    return Confirmation(centre, probes, best.lr, margin, over, decisive, reason, steps)


def _check_factors(factors: object) -> tuple[float, ...]:
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Iterable):
        raise ArgumentTypeError(f"factors must be a sequence of positive numbers, got {factors!r}")
    values = tuple(factors)
    checked = tuple(require_lr("factors[]", value) for value in values)
    if len(checked) < 2 or len(set(checked)) != len(checked):
        raise ValueError(f"factors must hold at least two distinct values, got {values!r}")
    return tuple(sorted(checked))


def check_probe_options(
    factors: Sequence[float] = DEFAULT_FACTORS, steps: int = 30, tail: float = TAIL_FRACTION
) -> tuple[tuple[float, ...], int, float]:
    """``(factors, steps, tail)`` checked as :func:`confirm_lr` needs them (factors sorted):
    ``TypeError``/``ValueError`` naming the option and its valid range otherwise."""
    candidates = _check_factors(factors)
    steps = require_int("steps", steps, minimum=4)
    tail = require_real("tail", tail)
    if not 0 < tail <= 1:
        raise ValueError(f"tail must be in (0, 1], got {tail!r}")
    return candidates, steps, tail


def check_confirm_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` for :func:`confirm_lr` (``factors``, ``steps``, ``tail``), checked before
    anything trains: ``ValueError`` for an unknown one, else as :func:`check_probe_options`.

    >>> check_confirm_options({"steps": 8})
    {'steps': 8}
    """
    unknown = set(options) - CONFIRM_OPTIONS
    if unknown:
        raise ValueError(
            f"confirm got unknown options {sorted(unknown)}; known: {sorted(CONFIRM_OPTIONS)}"
        )
    check_probe_options(**options)
    return dict(options)
