"""How an optimizer's update rule turns a Hessian eigenvalue into an LR stability bound.

:func:`update_rule` reads the kind of update (plain gradient descent, heavy-ball or Nesterov
momentum, Adam) and its hyper-parameters from a ``torch.optim`` optimizer; the per-coordinate
helpers build the diagonal scalings the bound needs: each parameter group's LR ratio, coupled
weight decay, and Adam's preconditioner ``sqrt(v_hat) + eps``, read from the optimizer's state or
estimated from the batches' gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from lr_widget.diagnostics.hessian import HessianOperator, flatten
from lr_widget.engine.schedules import group_lr_ratios


@dataclass(frozen=True)
class UpdateRule:
    """An optimizer's update: its kind, momentum and dampening, and why no bound may apply."""

    kind: str
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False
    problem: str = ""

    @property
    def adaptive(self) -> bool:
        return self.kind == "adam"

    @property
    def formula(self) -> str:
        if self.kind == "adam":
            return "2(1+β1)/((1-β1)λ)"
        if self.kind == "sgd-nesterov":
            return "2(1+μ)/((1+2μ)λ)"
        if self.kind == "sgd-momentum":
            return "2(1+μ)/λ" if self.dampening == 0 else "2(1+μ)/((1-d)λ)"
        return "2/λ"


def _shared(optimizer: torch.optim.Optimizer, key: str, default: Any) -> tuple[Any, str]:
    """The value of ``key`` in every parameter group, or a problem if the groups disagree."""
    values = {repr(group.get(key, default)) for group in optimizer.param_groups}
    value = optimizer.param_groups[0].get(key, default)
    if len(values) > 1:
        return value, f"its parameter groups use different {key} ({', '.join(sorted(values))})"
    return value, ""


def update_rule(optimizer: torch.optim.Optimizer) -> UpdateRule:
    """The update rule of ``optimizer`` (``"unsupported"`` for kinds without a bound)."""
    if isinstance(optimizer, torch.optim.SGD):
        momentum, problem = _shared(optimizer, "momentum", 0.0)
        dampening, problem_d = _shared(optimizer, "dampening", 0.0)
        nesterov, problem_n = _shared(optimizer, "nesterov", False)
        problem = problem or problem_d or problem_n
        if momentum == 0:
            return UpdateRule("gd", problem=problem)
        kind = "sgd-nesterov" if nesterov else "sgd-momentum"
        return UpdateRule(kind, float(momentum), float(dampening), bool(nesterov), problem)
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        betas, problem = _shared(optimizer, "betas", (0.9, 0.999))
        beta1 = float(betas[0])
        return UpdateRule("adam", beta1, beta1, False, problem)
    name = type(optimizer).__name__
    return UpdateRule("unsupported", problem=f"no stability bound is implemented for {name}")


GroupValue = Callable[[Mapping[str, Any], float], float]


def per_coordinate(
    optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], value: GroupValue
) -> torch.Tensor:
    """A flat vector holding, for each parameter, ``value(group, lr_ratio)`` of its group."""
    value_of: dict[int, float] = {}
    for group, ratio in zip(optimizer.param_groups, group_lr_ratios(optimizer), strict=True):
        value_of.update((id(p), float(value(group, ratio))) for p in group["params"])
    device = params[0].device
    pieces = [torch.full((p.numel(),), value_of[id(p)], dtype=p.dtype) for p in params]
    return torch.cat(pieces).to(device)


def coupled_decay(optimizer: torch.optim.Optimizer) -> GroupValue:
    """Weight decay that enters the gradient (SGD, Adam), not AdamW's decoupled shrinkage."""

    def decay(group: Mapping[str, Any], ratio: float) -> float:
        decoupled = isinstance(optimizer, torch.optim.AdamW) or group.get("decoupled_weight_decay")
        return 0.0 if decoupled else float(group.get("weight_decay", 0.0))

    return decay


def lr_ratio(group: Mapping[str, Any], ratio: float) -> float:
    """A group's LR relative to the largest one."""
    return ratio


def group_eps(group: Mapping[str, Any], ratio: float) -> float:
    """A group's Adam ``eps``."""
    return float(group.get("eps", 1e-8))


def adam_denominator(
    optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]
) -> torch.Tensor | None:
    """``sqrt(v_hat) + eps`` from the optimizer's state, flat; ``None`` if any is missing."""
    pieces = []
    for group in optimizer.param_groups:
        beta2, eps = float(group["betas"][1]), float(group["eps"])
        held = {id(p) for p in group["params"]}
        for param in (p for p in params if id(p) in held):
            state = optimizer.state.get(param, {})
            key = "max_exp_avg_sq" if group.get("amsgrad") else "exp_avg_sq"
            if key not in state or float(state["step"]) == 0:
                return None
            correction = 1.0 - beta2 ** float(state["step"])
            pieces.append((param, (state[key] / correction).sqrt() + eps))
    order = {id(p): index for index, p in enumerate(params)}
    pieces.sort(key=lambda item: order[id(item[0])])
    return flatten([piece.detach() for _, piece in pieces])


def estimated_denominator(
    optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], hessian: HessianOperator
) -> torch.Tensor:
    """``sqrt(mean squared gradient) + eps`` over the batches: Adam's ``sqrt(v_hat) + eps``
    after its first steps at a tiny LR (coupled weight decay included in the gradient)."""
    decay = per_coordinate(optimizer, params, coupled_decay(optimizer))
    weights = flatten([p.detach() for p in params])
    squares = torch.stack([(g + decay * weights) ** 2 for g in hessian.gradients()])
    return squares.mean(dim=0).sqrt() + per_coordinate(optimizer, params, group_eps)
