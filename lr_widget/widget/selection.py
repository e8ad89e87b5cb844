"""The selected LR and LR range, snapped to the recorded LRs of the curve shown.

:class:`Selection` holds :attr:`~Selection.lr` and :attr:`~Selection.lr_range` as observable,
validated traits (the widget links its own ``lr`` and ``lr_range`` to them) and snaps what a
click, a drag or a call asks for to the nearest recorded LR in log space. It knows nothing of
widgets: it asks a callable for the recorded LRs, so it is tested without a browser.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import traitlets
from numpy.typing import NDArray

from lr_widget.curves.arguments import require_lr
from lr_widget.curves.axes import nearest_index, snap_range

FloatArray = NDArray[np.float64]


class LRTrait(traitlets.Float):  # type: ignore[type-arg]
    """A selected LR: a finite number > 0, or ``None`` for none."""

    def __init__(self) -> None:
        super().__init__(None, allow_none=True, help="The selected learning rate.")

    def validate(self, obj: Any, value: Any) -> float | None:
        """``TraitError`` unless ``value`` is ``None`` or a finite number > 0."""
        try:
            return None if value is None else require_lr("lr", value)
        except ValueError as error:
            raise traitlets.TraitError(f"{error} (or None)") from None


class LRRangeTrait(traitlets.Tuple):
    """A selected LR range ``(low, high)`` with ``0 < low < high``, or ``None``."""

    def __init__(self) -> None:
        super().__init__(
            traitlets.Float(),
            traitlets.Float(),
            default_value=None,
            allow_none=True,
            help="The selected LR range (low, high), for cyclical and one-cycle schedules.",
        )

    def validate(self, obj: Any, value: Any) -> tuple[float, float] | None:
        """``TraitError`` unless ``value`` is ``None`` or ``(low, high)``, ``0 < low < high``."""
        value = super().validate(obj, value)
        if value is None:
            return None
        low, high = (float(end) for end in value)
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise traitlets.TraitError(
                f"lr_range must be (low, high) with 0 < low < high, or None, got {value!r}"
            )
        return low, high


class Selection(traitlets.HasTraits):
    """The selected LR and range of one curve.

    Parameters
    ----------
    recorded_lrs
        Returns the LRs a selection may snap to (the curve shown now).

    Examples
    --------
    >>> import numpy as np
    >>> selection = Selection(lambda: np.array([1e-4, 1e-3, 1e-2]))
    >>> selection.select(4e-4)
    0.001
    >>> selection.select_range(2e-4, 2e-2)
    (0.0001, 0.01)
    """

    lr = LRTrait()
    lr_range = LRRangeTrait()

    def __init__(self, recorded_lrs: Callable[[], FloatArray]) -> None:
        super().__init__()
        self._recorded_lrs = recorded_lrs

    @property
    def recorded_lrs(self) -> FloatArray:
        """The LRs a selection snaps to now."""
        return self._recorded_lrs()

    def select(self, lr: Any) -> float:
        """Select the recorded LR nearest to ``lr`` in log space; return it.

        Raises ``ValueError`` if ``lr`` is not a finite number > 0 (``None`` included), or
        nothing is recorded.
        """
        wanted = require_lr("lr", lr)
        lrs = self.recorded_lrs
        if not lrs.size:
            raise ValueError("no recorded learning rates to select from yet")
        chosen = float(lrs[nearest_index(lrs, wanted)])
        self.lr = chosen
        return chosen

    def select_range(self, low: Any, high: Any) -> tuple[float, float]:
        """Select the range from the recorded LR nearest ``low`` to the one nearest ``high``.

        Raises ``ValueError`` if an end is not a finite number > 0, ``low >= high``, nothing is
        recorded, or both ends snap to the same recorded LR.
        """
        low_lr, high_lr = require_lr("low", low), require_lr("high", high)
        if not low_lr < high_lr:
            raise ValueError(f"low must be smaller than high, got low={low!r}, high={high!r}")
        lrs = self.recorded_lrs
        if not lrs.size:
            raise ValueError("no recorded learning rates to select a range from yet")
        snapped = snap_range(lrs, low_lr, high_lr)
        self.lr_range = snapped
        return snapped

    def drag_to(self, low: float, high: float) -> str:
        """Select the range a drag spans; return ``""``, or a hint when it selects nothing."""
        lrs = self.recorded_lrs
        if not lrs.size:
            return "run a sweep first: no LRs recorded"
        try:
            self.lr_range = snap_range(lrs, low, high)
        except ValueError:
            return "drag across at least two recorded LRs"
        return ""
