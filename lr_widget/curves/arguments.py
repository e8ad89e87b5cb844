"""Argument checks shared by every public entry point.

Each check returns the value in its plain Python type or raises before anything has changed, with
a message that names the parameter, the value it got and what would be valid. A value of the
wrong type raises :class:`ArgumentTypeError`, which is both a ``TypeError`` and a ``ValueError``
(callers catching either see it); a value of the right type but out of range raises
``ValueError``. ``bool`` is never accepted as a number.

Examples
--------
>>> require_int("num_steps", 100, minimum=2)
100
>>> require_lr("start_lr", 1e-7)
1e-07
>>> require_fraction("beta", 1.0)
Traceback (most recent call last):
    ...
ValueError: beta must be in [0, 1), got 1.0
>>> require_int("num_steps", 10.0, minimum=2)
Traceback (most recent call last):
    ...
lr_widget.curves.arguments.ArgumentTypeError: num_steps must be an integer >= 2, got 10.0
"""

from __future__ import annotations

import math
import numbers


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type (a string where a number belongs, a bool, ``None``)."""


def _is_bool(value: object) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool too


def require_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (no upper bound by default)."""
    valid = (
        f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
    )
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {valid}, got {value!r}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {valid}, got {value!r}")
    return number


def require_real(name: str, value: object) -> float:
    """``value`` as a ``float``: any real number (NaN and infinities included)."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def require_lr(name: str, value: object) -> float:
    """``value`` as a ``float``: a learning rate, finite and > 0."""
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a finite number > 0, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def require_fraction(name: str, value: object) -> float:
    """``value`` as a ``float`` in ``[0, 1)``: a smoothing ``beta``, a momentum, a dampening."""
    number = require_real(name, value)
    if not 0.0 <= number < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return number
