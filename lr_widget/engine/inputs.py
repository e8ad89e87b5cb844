"""Checks of the engine's arguments, made before the model or optimizer is touched.

Each error names the parameter, the value it got and what would be valid.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from pathlib import Path
from typing import Any

import torch

from lr_widget.curves.arguments import ArgumentTypeError, require_int
from lr_widget.results.settings import SweepSettings, parse_settings


def make_settings(settings: dict[str, Any], train_data: Any = None) -> SweepSettings:
    """The sweep settings from keyword arguments; ``epochs=`` becomes ``train_steps`` through
    the length of ``train_data`` (see :func:`steps_for_epochs`)."""
    settings = dict(settings)
    if "epochs" in settings:
        epochs = settings.pop("epochs")
        if epochs is not None:
            if settings.get("train_steps") is not None:
                raise TypeError(
                    "give train_steps or epochs, not both: epochs is converted to train_steps "
                    "with the length of train_data"
                )
            accumulation = settings.get("accumulation_steps", 1)
            settings["train_steps"] = steps_for_epochs(epochs, train_data, accumulation)
    return parse_settings(settings)


def steps_for_epochs(epochs: Any, train_data: Any, accumulation_steps: Any = 1) -> int:
    """Optimizer steps in ``epochs`` passes over ``train_data``: ``len(train_data)`` batches an
    epoch, ``accumulation_steps`` batches an optimizer step (at least one step).

    >>> steps_for_epochs(3, [0] * 50)
    150
    >>> steps_for_epochs(0.5, [0] * 50, accumulation_steps=4)
    7
    """
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Real):
        raise ArgumentTypeError(f"epochs must be a finite number > 0, got {epochs!r}")
    passes = float(epochs)
    if not (math.isfinite(passes) and passes > 0):
        raise ValueError(f"epochs must be a finite number > 0, got {epochs!r}")
    try:
        batches = len(train_data)
    except (TypeError, NotImplementedError):
        raise TypeError(
            f"epochs needs a train_data with a length (len()), got {type(train_data).__name__}; "
            "pass train_steps= (optimizer steps) instead"
        ) from None
    accumulation = require_int("accumulation_steps", accumulation_steps, 1)
    return max(1, math.ceil(passes * batches / accumulation))


def check_callback(callback: Any) -> None:
    if callback is not None and not callable(callback):
        raise ArgumentTypeError(
            f"callback must be a function of a StepEvent (returning True to stop) or None, got "
            f"{callback!r}"
        )


def check_stop_event(stop_event: Any) -> None:
    if stop_event is not None and not callable(getattr(stop_event, "is_set", None)):
        raise ArgumentTypeError(
            f"stop_event must be a threading.Event (anything with is_set()) or None, got "
            f"{stop_event!r}"
        )


def stop_requested(answer: Any) -> bool:
    """Whether a callback's return value asks to stop: ``True``, or a true one-element tensor
    or numpy value; ``None``/``False`` go on; anything else is a ``TypeError``.

    >>> stop_requested(None), stop_requested(True), stop_requested(torch.tensor(False))
    (False, True, False)
    """
    if answer is None or isinstance(answer, bool):
        return bool(answer)
    size = getattr(answer, "numel", getattr(answer, "size", None))
    count = size() if callable(size) else size
    if count == 1 and hasattr(answer, "dtype"):
        return bool(answer)
    raise ArgumentTypeError(
        "callback must return True (stop), False or None; got "
        + (f"a tensor of {count} values" if count is not None else f"{answer!r}")
    )


def check_save_to(save_to: Any) -> Path | None:
    """``save_to`` as a path whose folder exists, checked before the sweep runs."""
    if save_to is None:
        return None
    if not isinstance(save_to, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"save_to must be a path (str or os.PathLike) or None, got {type(save_to).__name__}"
        )
    path = Path(save_to)
    if path.is_dir():
        raise ValueError(f"save_to must be a file path, got the folder {str(path)!r}")
    if not path.parent.is_dir():
        raise ValueError(f"save_to's folder {str(path.parent)!r} does not exist; create it first")
    return path


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
    if next(iter(model.parameters()), None) is None:
        raise ValueError(
            f"model has no parameters at all ({type(model).__name__}): a learning rate has "
            "nothing to act on"
        )
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
    # An IterableDataset's DataLoader raises TypeError or NotImplementedError from len(): unsized.
    with contextlib.suppress(TypeError, NotImplementedError):
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


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """What a result and the widget call ``optimizer``: its ``label`` when it has one (an
    adapter around another library's optimizer names that one), else its class name.

    >>> optimizer_name(torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1))
    'SGD'
    """
    label = getattr(optimizer, "label", None)
    return label if isinstance(label, str) and label else type(optimizer).__name__


def default_optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    """What every entry point trains with when given no optimizer: AdamW, at PyTorch's defaults,
    over the trainable parameters (the sweep sets its LR at every step)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
