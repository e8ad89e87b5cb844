"""A curvature bound for the range-test plot: the LR above which the first steps are unstable.

On a quadratic model of the loss with Hessian ``H``, gradient descent at LR ``eta`` is stable only
while ``eta < 2 / lambda_max(H)``; with heavy-ball momentum ``mu`` (PyTorch's ``SGD(momentum=mu,
dampening=d)``) the bound is ``2 (1 + mu) / ((1 - d) lambda_max)``, and with Nesterov momentum
``2 (1 + mu) / ((1 + 2 mu) lambda_max)``. Cohen et al. 2021, "Gradient Descent on Neural Networks
Typically Occurs at the Edge of Stability" (ICLR 2021), derive these (section 2 and appendix) and
show that full-batch training drives the sharpness up to exactly this threshold.

Adam's step is preconditioned by ``P = diag(sqrt(v_hat) + eps)``; the matching quantity is the
*preconditioned sharpness* ``lambda_max(P^-1 H)``, and the bound, Adam being heavy-ball momentum
``beta1`` with dampening ``beta1``, is ``2 (1 + beta1) / ((1 - beta1) lambda_max(P^-1 H))``
(``38 / lambda`` for ``beta1 = 0.9``): Cohen et al. 2022, "Adaptive Gradient Methods at the Edge of
Stability". A fresh Adam has no ``v`` yet; ``estimate_curvature`` then estimates it as the mean
squared gradient of the batches it uses (which is what Adam's debiased ``v`` holds after its
first steps at a range test's tiny starting LR) and labels the bound as an estimate, or, with
``estimate_second_moment=False``, says the bound does not apply.

``lambda_max`` comes from Lanczos iteration on Hessian-vector products (double backward through
``torch.autograd.grad``), averaged over the first ``num_batches`` batches, the same batches at
every iteration so the operator is fixed. A bound only describes the starting weights: sharpness
changes as training goes on (it usually rises), so the plot shows it as a guide, not a wall.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from typing_extensions import Self

from lr_widget.curves.arguments import require_fraction
from lr_widget.results.jsonfile import DocumentError, JsonDocument, encode_float

CURVATURE_FORMAT_NAME = "lr_widget.diagnostics.curvature"
CURVATURE_FORMAT_VERSION = 1


# -- the bound --------------------------------------------------------------------------------
def lr_stability_bound(
    lambda_max: float, *, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False
) -> float:
    """The largest stable LR on a quadratic whose (preconditioned) top curvature is ``lambda_max``.

    ``2 (1 + mu) / ((1 - d) lambda)`` for heavy-ball momentum ``mu`` with dampening ``d`` (plain
    GD: ``2 / lambda``; Adam: ``mu = d = beta1``), ``2 (1 + mu) / ((1 + 2 mu) lambda)`` for
    Nesterov momentum (Cohen et al. 2021, appendix; linear stability of the iteration on
    ``0.5 lambda x^2``).

    Examples
    --------
    >>> lr_stability_bound(100.0)
    0.02
    >>> round(lr_stability_bound(100.0, momentum=0.9), 6)
    0.038
    >>> round(lr_stability_bound(100.0, momentum=0.9, dampening=0.9), 6)  # Adam, beta1 = 0.9
    0.38
    """
    if not (math.isfinite(lambda_max) and lambda_max > 0):
        raise ValueError(f"lambda_max must be a finite curvature > 0, got {lambda_max!r}")
    require_fraction("momentum", momentum)
    require_fraction("dampening", dampening)
    if nesterov:
        return 2.0 * (1.0 + momentum) / ((1.0 + 2.0 * momentum) * lambda_max)
    return 2.0 * (1.0 + momentum) / ((1.0 - dampening) * lambda_max)


@dataclass(frozen=True)
class CurvatureEstimate(JsonDocument):
    """The sharpness at the starting weights and the LR bound it implies.

    Attributes
    ----------
    lambda_max : float
        Top eigenvalue of the operator that governs the update's stability: the Hessian of the
        loss (plus coupled weight decay), scaled by each parameter group's LR ratio and, for
        Adam, preconditioned by ``1 / (sqrt(v_hat) + eps)``.
    lr_bound : float or None
        The LR (of the group with the largest LR, the one the range test sweeps) above which the
        update is unstable; ``None`` when no bound applies.
    optimizer_kind : str
        ``"gd"``, ``"sgd-momentum"``, ``"sgd-nesterov"``, ``"adam"`` or ``"unsupported"``.
    applies : bool
        Whether ``lr_bound`` is meaningful for this optimizer.
    explanation : str
        How the bound was obtained, or why there is none.
    iterations, converged : int, bool
        Power-iteration steps taken and whether the eigenvalue met the tolerance.
    batches : int
        Batches the Hessian was averaged over.
    formula, detail : str
        The bound's formula (``"2(1+μ)/λ"``) and its hyper-parameters (``"momentum 0.9"``).
    preconditioned : bool
        Whether ``lambda_max`` is Adam's preconditioned sharpness.

    Examples
    --------
    >>> estimate = CurvatureEstimate(
    ...     64.5, 2.0 / 64.5, "gd", True, "plain gradient descent", 12, True, 4, "2/λ", "SGD"
    ... )
    >>> estimate.label
    'GD unstable above 2/λ = 3.1e-02 (λ_max 64.5, SGD)'
    >>> CurvatureEstimate.from_dict(estimate.to_dict()) == estimate
    True
    """

    format_name: ClassVar[str] = CURVATURE_FORMAT_NAME
    format_version: ClassVar[int] = CURVATURE_FORMAT_VERSION
    document_kind: ClassVar[str] = "curvature estimate"

    lambda_max: float
    lr_bound: float | None
    optimizer_kind: str
    applies: bool
    explanation: str
    iterations: int
    converged: bool
    batches: int
    formula: str = ""
    detail: str = ""
    preconditioned: bool = False

    @property
    def label(self) -> str:
        """One line for the plot."""
        sharpness = "preconditioned λ_max" if self.preconditioned else "λ_max"
        if not self.applies or self.lr_bound is None:
            return f"no LR bound for this optimizer ({sharpness} {self.lambda_max:.3g})"
        name = {"gd": "GD", "adam": "Adam"}.get(self.optimizer_kind, "SGD")
        extra = f", {self.detail}" if self.detail else ""
        unconverged = ", not converged" if not self.converged else ""
        return (
            f"{name} unstable above {self.formula} = {self.lr_bound:.1e} "
            f"({sharpness} {self.lambda_max:.3g}{extra}{unconverged})"
        )

    def _to_fields(self) -> dict[str, Any]:
        """Strict-JSON-safe fields (a non-finite ``lambda_max`` becomes a string)."""
        data = asdict(self)
        data["lambda_max"] = encode_float(self.lambda_max)
        return data

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Self:
        names = set(cls.__dataclass_fields__)
        values = {key: value for key, value in data.items() if key in names}
        if "lambda_max" not in values:
            raise DocumentError("the curvature estimate has no lambda_max field")
        lambda_max = values["lambda_max"]
        if isinstance(lambda_max, bool) or not isinstance(lambda_max, (int, float, str)):
            raise DocumentError(f"lambda_max must be a number, got {lambda_max!r}")
        try:
            values["lambda_max"] = float(lambda_max)  # "NaN"/"Infinity" (and older "nan") too
        except ValueError:
            raise DocumentError(f"lambda_max must be a number, got {lambda_max!r}") from None
        return cls(**values)
