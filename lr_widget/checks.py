"""Checks of the engine's arguments, made before the model or optimizer is touched.

Each error names the parameter, the value it got and what would be valid.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from lr_widget.settings import SweepSettings
from lr_widget.validation import require_int

__all__ = [
    "check_iterable",
    "check_loss_read_lag",
    "check_model",
    "check_optimizer",
    "check_scheduler",
    "make_settings",
]


def make_settings(settings: dict[str, Any]) -> SweepSettings:
    known = set(SweepSettings.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(
            f"unknown argument(s) {', '.join(unknown)}; valid sweep settings are "
            f"{', '.join(sorted(known))}"
        )
    return SweepSettings(**settings)


def check_loss_read_lag(loss_read_lag: Any) -> None:
    if loss_read_lag is not None:  # steps the host may run ahead of the device
        require_int("loss_read_lag", loss_read_lag, 0)


_SWAPPED = (
    "; did you swap the model and the data? The call is find_lr(model, train_data, loss_fn, "
    "optimizer)"
)


def check_model(model: Any, train_data: Any = None) -> None:
    if not isinstance(model, torch.nn.Module):
        swapped = _SWAPPED if isinstance(train_data, torch.nn.Module) else ""
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}{swapped}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            f"model has no trainable parameters (every parameter of {type(model).__name__} has "
            "requires_grad=False); unfreeze at least one"
        )


def check_iterable(data: Any, name: str) -> None:
    if isinstance(data, torch.nn.Module):  # nn.Sequential and ModuleList are iterable
        raise TypeError(
            f"{name} must be a DataLoader or another iterable of batches, got the module "
            f"{type(data).__name__}{_SWAPPED}"
        )
    if isinstance(data, (str, bytes, torch.Tensor)) or not hasattr(data, "__iter__"):
        raise TypeError(
            f"{name} must be a DataLoader or another iterable of batches, got {type(data).__name__}"
        )
    with contextlib.suppress(TypeError):
        if len(data) == 0:
            raise ValueError(f"{name} is empty (len() == 0); it must yield at least one batch")


def check_optimizer(optimizer: Any, model: torch.nn.Module) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {optimizer!r}")
    model_params = {id(p) for p in model.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(id(p) in model_params for p in held):
        raise ValueError(
            f"optimizer holds none of the model's parameters ({len(held)} parameters, none from "
            f"{type(model).__name__}); build it from model.parameters()"
        )


def check_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> None:
    """An LR scheduler to snapshot and restore: it must drive ``optimizer`` itself."""
    if scheduler is None:
        return
    if not (callable(getattr(scheduler, "state_dict", None)) and hasattr(scheduler, "optimizer")):
        raise TypeError(
            "scheduler must be a torch.optim.lr_scheduler scheduler (with state_dict() and "
            f".optimizer) or None, got {scheduler!r}"
        )
    if scheduler.optimizer is not optimizer:
        raise ValueError(
            f"scheduler drives another optimizer ({type(scheduler.optimizer).__name__} at "
            f"{id(scheduler.optimizer):#x}) than the sweep's; build it on the optimizer you pass"
        )
