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

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
from typing_extensions import Self

from lr_widget.batches import LossComputer, LossFn, StepFn, move_to_device
from lr_widget.claims import claimed
from lr_widget.hessian import HessianOperator, TopEigenpair, scaled_operator, top_eigenvalue
from lr_widget.jsonfile import DocumentError, JsonDocument, encode_float
from lr_widget.state import TrainingState, seed_everything
from lr_widget.update_rules import (
    UpdateRule,
    adam_denominator,
    coupled_decay,
    estimated_denominator,
    lr_ratio,
    per_coordinate,
    update_rule,
)
from lr_widget.validation import require_fraction, require_int

__all__ = [
    "CURVATURE_FORMAT_NAME",
    "CurvatureEstimate",
    "TopEigenpair",
    "estimate_curvature",
    "lr_stability_bound",
    "top_eigenvalue",
]

CURVATURE_FORMAT_NAME = "lr_widget.curvature"
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


# -- the estimate -----------------------------------------------------------------------------
def estimate_curvature(
    model: torch.nn.Module,
    train_data: Iterable[Any],
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    num_batches: int = 4,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    seed: int = 0,
    step_fn: StepFn | None = None,
    mode: Literal["train", "eval"] = "train",
    estimate_second_moment: bool = True,
) -> CurvatureEstimate:
    """Estimate the sharpness at the model's current weights and the LR bound it implies.

    The model, its gradients, buffers, train/eval modes and the RNG streams are restored exactly
    afterwards; the optimizer is only read.

    Parameters
    ----------
    model, train_data, loss_fn, step_fn
        As for :func:`lr_widget.find_lr`; the first ``num_batches`` batches are used (drawn with
        every RNG seeded ``seed``, so a shuffling DataLoader gives the same batches every time).
    optimizer
        Whose update rule the bound is for (SGD with or without momentum, Adam, AdamW); ``None``
        means a fresh AdamW, the range test's default.
    num_batches
        Batches the Hessian is averaged over (fixed for the whole Lanczos iteration).
    max_iterations, tolerance
        Lanczos stops when the top Ritz pair's residual is within ``tolerance`` of the eigenvalue
        (relative) or after ``max_iterations`` Hessian-vector products per batch.
    seed
        Seeds the start vector and the batch draw: the estimate is deterministic given it.
    mode
        ``"train"`` (default): the model in training mode (BatchNorm normalises with the batch's
        statistics, as in the steps the bound is about) but with every dropout layer off, so the
        operator is a fixed matrix rather than a new random one at each product. ``"eval"``:
        the model in eval mode (BatchNorm uses its running statistics).
    estimate_second_moment
        For an Adam without second-moment state: estimate it from the batches' gradients
        (labelled as an estimate) if ``True``, else report that the bound does not apply.

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    >>> data = [(torch.randn(32, 4), torch.randint(0, 3, (32,))) for _ in range(4)]
    >>> sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> estimate = estimate_curvature(model, data, optimizer=sgd)
    >>> estimate.lr_bound == 2 * 1.9 / estimate.lambda_max
    True
    """
    _check_settings(num_batches, max_iterations, tolerance, seed, mode)
    if optimizer is None:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    params = _trained_params(model, optimizer)
    rule = update_rule(optimizer)
    with claimed("a curvature estimate", model=model):
        snapshot = TrainingState.capture(model)
        try:
            seed_everything(seed)
            _set_mode(model, mode)
            batches = _first_batches(train_data, num_batches, params[0].device)
            hessian = HessianOperator(params, batches, LossComputer(model, loss_fn, step_fn), seed)
            scale, source = _update_scale(rule, optimizer, params, hessian, estimate_second_moment)
            decay = per_coordinate(optimizer, params, coupled_decay(optimizer))
            operator = scaled_operator(hessian, scale.sqrt(), decay)
            start = _start_vector(scale, seed)
            found = top_eigenvalue(
                operator, start, max_iterations=max_iterations, tolerance=tolerance
            )
        finally:
            snapshot.restore(keep=False)
    return _describe(rule, found, len(batches), source)


def _start_vector(like: torch.Tensor, seed: int) -> torch.Tensor:
    """A seeded random vector shaped like ``like``, drawn on the CPU (same on every device)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(like.numel(), generator=generator, dtype=like.dtype).to(like.device)


def _update_scale(
    rule: UpdateRule,
    optimizer: torch.optim.Optimizer,
    params: list[torch.nn.Parameter],
    hessian: HessianOperator,
    estimate_second_moment: bool,
) -> tuple[torch.Tensor, str]:
    """Per coordinate, the factor the update applies to the gradient, relative to the swept LR:
    the group's LR ratio, divided by Adam's ``sqrt(v_hat) + eps``; and where ``v`` came from
    (``""`` when not preconditioned)."""
    scale = per_coordinate(optimizer, params, lr_ratio)
    if not rule.adaptive:
        return scale, ""
    denominator = adam_denominator(optimizer, params)
    if denominator is not None:
        return scale / denominator, "Adam's state"
    if not estimate_second_moment:
        return scale, ""
    estimated = estimated_denominator(optimizer, params, hessian)
    return scale / estimated, f"v estimated from {len(hessian.batches)} batches' squared gradients"


def _describe(
    rule: UpdateRule, found: TopEigenpair, batches: int, source: str
) -> CurvatureEstimate:
    lam, preconditioned = found.eigenvalue, bool(source)
    reason = _no_bound_reason(rule, lam, preconditioned)
    bound = None
    if not reason:
        bound = lr_stability_bound(
            lam, momentum=rule.momentum, dampening=rule.dampening, nesterov=rule.nesterov
        )
    status = "converged" if found.converged else "NOT converged"
    explanation = reason or (
        f"{rule.formula} with λ = {lam:.4g}, the top eigenvalue of the "
        f"{'preconditioned ' if preconditioned else ''}Hessian averaged over {batches} batches "
        f"({found.iterations} Lanczos iterations, {status}); linear stability on a quadratic "
        f"model (Cohen et al. {'2022' if rule.adaptive else '2021'}), valid near the starting "
        "weights"
    )
    return CurvatureEstimate(
        lambda_max=lam,
        lr_bound=bound,
        optimizer_kind=rule.kind,
        applies=bound is not None,
        explanation=explanation,
        iterations=found.iterations,
        converged=found.converged,
        batches=batches,
        formula=rule.formula,
        detail=_detail(rule, source),
        preconditioned=preconditioned,
    )


def _no_bound_reason(rule: UpdateRule, lam: float, preconditioned: bool) -> str:
    if rule.problem:
        return f"no single stability bound: {rule.problem}"
    if rule.adaptive and not preconditioned:
        return (
            "the bound does not apply: this Adam has no second-moment state yet (a fresh "
            "optimizer), so its preconditioned sharpness λ_max(P⁻¹H), which bounds Adam's LR "
            "(Cohen et al. 2022), is undefined; λ_max shown is the plain Hessian's, and 2/λ "
            "would bound plain gradient descent, not Adam. Pass estimate_second_moment=True to "
            "estimate v from gradient samples"
        )
    if not (math.isfinite(lam) and lam > 0):
        return f"no positive curvature found (λ_max = {lam:.4g}): no LR bound from curvature"
    return ""


def _detail(rule: UpdateRule, source: str) -> str:
    if rule.kind == "adam":
        return f"β1 {rule.momentum:g}, {source}"
    if rule.kind == "gd":
        return "SGD"
    parts = [f"SGD momentum {rule.momentum:g}"]
    if rule.nesterov:
        parts.append("Nesterov")
    if rule.dampening:
        parts.append(f"dampening {rule.dampening:g}")
    return ", ".join(parts)


# -- helpers ----------------------------------------------------------------------------------
def _check_settings(
    num_batches: int, max_iterations: int, tolerance: float, seed: int, mode: str
) -> None:
    require_int("num_batches", num_batches, 1)
    require_int("max_iterations", max_iterations, 1)
    require_int("seed", seed, 0)
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
        raise ValueError(f"tolerance must be a number in (0, 1), got {tolerance!r}")
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")


def _trained_params(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> list[torch.nn.Parameter]:
    """The model's trainable parameters that the optimizer updates, in model order."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {optimizer!r}")
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    params = [p for p in model.parameters() if p.requires_grad and id(p) in held]
    if not params:
        raise ValueError(
            f"the optimizer updates none of {type(model).__name__}'s trainable parameters; "
            "build it from model.parameters()"
        )
    return params


_DROPOUT_LAYERS = (
    torch.nn.Dropout,
    torch.nn.Dropout1d,
    torch.nn.Dropout2d,
    torch.nn.Dropout3d,
    torch.nn.AlphaDropout,
    torch.nn.FeatureAlphaDropout,
)


def _set_mode(model: torch.nn.Module, mode: str) -> None:
    model.train(mode == "train")
    for module in model.modules():
        if isinstance(module, _DROPOUT_LAYERS):
            module.training = False  # a random mask per product would make H a random matrix


def _first_batches(train_data: Iterable[Any], count: int, device: torch.device) -> list[Any]:
    if isinstance(train_data, (str, bytes, torch.Tensor)) or not hasattr(train_data, "__iter__"):
        raise TypeError(
            f"train_data must be a DataLoader or another iterable of batches, got "
            f"{type(train_data).__name__}"
        )
    batches = [move_to_device(batch, device) for batch in itertools.islice(train_data, count)]
    if not batches:
        raise ValueError("train_data is empty: it yielded no batch")
    return batches
