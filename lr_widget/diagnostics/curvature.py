"""Estimating the curvature bound: Lanczos on Hessian-vector products at the current weights.

What the bound means and the document it is saved in: :mod:`lr_widget.results.curvature`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any, Literal

import torch

from lr_widget.curves.arguments import require_int
from lr_widget.diagnostics.hessian import (
    HessianOperator,
    TopEigenpair,
    scaled_operator,
    top_eigenvalue,
)
from lr_widget.diagnostics.update_rules import (
    UpdateRule,
    adam_denominator,
    coupled_decay,
    estimated_denominator,
    lr_ratio,
    per_coordinate,
    update_rule,
)
from lr_widget.engine.batches import LossComputer, LossFn, StepFn, move_to_device
from lr_widget.engine.claims import claimed
from lr_widget.engine.inputs import (
    check_iterable,
    check_model,
    check_optimizer,
    default_optimizer,
)
from lr_widget.engine.state import TrainingState, seed_everything
from lr_widget.results.curvature import CurvatureEstimate, lr_stability_bound


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
    check_model(model, train_data)  # the sweep's own input gate
    check_iterable(train_data, "train_data")
    if optimizer is None:
        optimizer = default_optimizer(model)
    check_optimizer(optimizer, model)
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
