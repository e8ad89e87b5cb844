"""The settings of one range test, validated once at the public boundary.

Every check raises before the model or optimizer is touched, with a message that names the
parameter, the value it got, and what would be valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lr_widget.curves.arguments import require_fraction, require_int, require_lr, require_real

MODES: tuple[str, ...] = ("exp", "linear")
"""How the LRs of a sweep are spaced: evenly in log space, or evenly."""
AMP_DTYPES: tuple[str, ...] = ("bfloat16", "float16")
"""The autocast dtypes a sweep can run under, by their ``torch`` names."""


def amp_dtype_name(amp_dtype: object) -> str | None:
    """Normalise an autocast dtype given as ``torch.bfloat16``, ``"bf16"``, ``"float16"``...

    A ``torch.dtype`` is read by its name, so the settings (saved in every result) need no torch.
    """
    if amp_dtype is None:
        return None
    aliases = {"bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    if type(amp_dtype).__module__ == "torch" and type(amp_dtype).__name__ == "dtype":
        name = str(amp_dtype).removeprefix("torch.")
    elif isinstance(amp_dtype, str):
        name = aliases.get(amp_dtype, amp_dtype.removeprefix("torch."))
    else:
        raise TypeError(f"amp_dtype must be a torch.dtype, a string or None, got {amp_dtype!r}")
    if name not in AMP_DTYPES:
        valid = ", ".join(f"torch.{key}" for key in AMP_DTYPES)
        raise ValueError(f"amp_dtype must be one of {valid} or None, got {amp_dtype!r}")
    return name


@dataclass(frozen=True)
class SweepSettings:
    """What one LR range test does; the engine's keyword arguments, checked.

    Parameters
    ----------
    start_lr, end_lr
        The LR of the first and of the last step; ``0 < start_lr < end_lr``.
    num_steps
        Number of LR values (optimizer steps unless ``batches_per_step > 1``); at least 2.
    mode
        ``"exp"`` (LRs evenly spaced in log space, the usual range test) or ``"linear"``.
    beta
        Smoothing of the debiased EMA, in [0, 1). Only the drawn curve and the divergence check
        use it; raw losses are kept and can be re-smoothed later.
    diverge_factor
        Stop when the smoothed loss exceeds this many times its minimum so far; > 1
        (``math.inf`` never stops on divergence).
    batches_per_step
        Optimizer steps taken at each LR; the recorded loss is their mean (tames batch noise).
    accumulation_steps
        Micro-batches whose gradients are accumulated into one optimizer step.
    max_grad_norm
        Clip the gradient norm to this value before each optimizer step; ``None`` for no clipping.
    amp_dtype
        Autocast dtype (``"bfloat16"`` or ``"float16"``), or ``None`` for full precision.
    val_batches
        With validation data, the number of its batches evaluated after every step.
    max_skipped_steps
        With a GradScaler, how many consecutive skipped (overflowing) steps to retry at one LR
        before stopping with a non-finite loss.
    train_steps
        The length, in optimizer steps, of the training the suggested LR is for; the default
        rule reads it (``None``: not known, a length is assumed; see
        :mod:`lr_widget.suggestions.length`). The sweep itself does not depend on it.
    """

    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_steps: int = 100
    mode: str = "exp"
    beta: float = 0.98
    diverge_factor: float = 4.0
    batches_per_step: int = 1
    accumulation_steps: int = 1
    max_grad_norm: float | None = None
    amp_dtype: str | None = None
    val_batches: int = 4
    max_skipped_steps: int = 20
    train_steps: int | None = None

    def __post_init__(self) -> None:
        start_lr = require_lr("start_lr", self.start_lr)
        end_lr = require_lr("end_lr", self.end_lr)
        if start_lr >= end_lr:
            raise ValueError(
                f"start_lr must be smaller than end_lr, got start_lr={start_lr!r} >= "
                f"end_lr={end_lr!r}"
            )
        require_int("num_steps", self.num_steps, 2)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        require_fraction("beta", self.beta)
        diverge_factor = require_real("diverge_factor", self.diverge_factor)
        if not diverge_factor > 1.0:
            raise ValueError(f"diverge_factor must be > 1 (or math.inf), got {diverge_factor!r}")
        require_int("batches_per_step", self.batches_per_step, 1)
        require_int("accumulation_steps", self.accumulation_steps, 1)
        if self.max_grad_norm is not None:
            norm = require_real("max_grad_norm", self.max_grad_norm)
            if not (math.isfinite(norm) and norm > 0):
                raise ValueError(f"max_grad_norm must be a finite number > 0 or None, got {norm!r}")
        object.__setattr__(self, "amp_dtype", amp_dtype_name(self.amp_dtype))
        require_int("val_batches", self.val_batches, 1)
        require_int("max_skipped_steps", self.max_skipped_steps, 0)
        if self.train_steps is not None:
            object.__setattr__(self, "train_steps", require_int("train_steps", self.train_steps, 1))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dictionary of the settings (``math.inf`` is kept as a float)."""
        return asdict(self)


def parse_settings(values: Mapping[str, Any], *, ignore_unknown: bool = False) -> SweepSettings:
    """The one parser of sweep settings, for keyword arguments and for a result's record alike.

    An unknown name is a ``TypeError`` listing the valid ones (``ignore_unknown`` skips it, for
    the settings a result records beside them); a bad value is the field's own error.

    >>> parse_settings({"num_steps": 50}).num_steps
    50
    >>> parse_settings({"num_step": 50})
    Traceback (most recent call last):
    ...
    TypeError: unknown argument(s) num_step; valid sweep settings are ...
    """
    known = SweepSettings.__dataclass_fields__
    unknown = sorted(set(values) - set(known))
    if unknown and not ignore_unknown:
        raise TypeError(
            f"unknown argument(s) {', '.join(unknown)}; valid sweep settings are "
            f"{', '.join(sorted(known))}"
        )
    return SweepSettings(**{key: value for key, value in values.items() if key in known})
