"""One entry for every first argument: a plain model, or a framework object read by its adapter.

:func:`adapt` is what :func:`~lr_widget.find_lr` and :class:`~lr_widget.LRWidget` call before
they build a runner: a ``torch.nn.Module`` passes through untouched; a LightningModule, a
Hugging Face ``Trainer`` or a fastai ``Learner`` becomes the model, data, loss and optimizer it
trains with (see :mod:`.lightning`, :mod:`.hf_trainer`, :mod:`.learner`). What the caller passes
explicitly wins over what is read from the object.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from lr_widget.engine.batches import LossFn
from lr_widget.frameworks.hf_trainer import trainer_inputs
from lr_widget.frameworks.learner import learner_inputs
from lr_widget.frameworks.lightning import lightning_inputs
from lr_widget.frameworks.link import SweepInputs, framework_of

FRAMEWORK_OPTIONS = ("datamodule", "train_dataloaders", "trainer", "update_attr")
"""Options only a framework object takes; popped from the engine's options by :func:`adapt`."""


def adapt(
    model: Any,
    train_data: Iterable[Any] | None,
    loss_fn: LossFn | None,
    optimizer: torch.optim.Optimizer | None,
    options: dict[str, Any],
) -> SweepInputs:
    """What the engine is to sweep for ``model`` (a module or a framework object), with
    ``options`` (the caller's engine options, not changed) merged over what the object implies.

    A plain module needs ``train_data``; a framework object brings its own unless given.
    ``update_attr=True`` asks that the chosen LR be written back to the object: this checks
    first that it can be, before anything trains.

    >>> model = torch.nn.Linear(2, 1)
    >>> inputs = adapt(model, [(torch.zeros(1, 2), torch.zeros(1, 1))], None, None, {"beta": 0.9})
    >>> inputs.model is model, inputs.link, inputs.options
    (True, None, {'beta': 0.9})
    """
    options = dict(options)
    framework_options = {name: options.pop(name) for name in FRAMEWORK_OPTIONS if name in options}
    framework = framework_of(model)
    update_attr = framework_options.pop("update_attr", False)
    if not isinstance(update_attr, bool):
        raise TypeError(f"update_attr must be True or False, got {update_attr!r}")
    lightning_options = {k: v for k, v in framework_options.items() if v is not None}
    if framework != "LightningModule" and lightning_options:
        raise TypeError(
            f"{' and '.join(lightning_options)} are for a LightningModule, and the model is a "
            f"{type(model).__name__}; pass train_data instead"
        )
    if update_attr and framework is None:
        raise TypeError(
            "update_attr=True writes the LR back into a LightningModule, a Hugging Face Trainer "
            f"or a fastai Learner, and the model is a {type(model).__name__}; to set an "
            "optimizer's LR use apply_to= (the widget) or result.suggestion"
        )
    own_loss = loss_fn is None and options.get("step_fn") is None
    if framework is None:
        if train_data is None:
            raise TypeError(
                "train_data is missing: pass the batches to train on (a DataLoader), or a "
                "framework object that holds them (a Hugging Face Trainer, a fastai Learner, a "
                "LightningModule with datamodule=)"
            )
        return SweepInputs(model, train_data, loss_fn, optimizer, options)
    if framework == "LightningModule":
        inputs = lightning_inputs(
            model, train_data, optimizer, own_loss, update_attr=update_attr, **lightning_options
        )
    elif framework == "Hugging Face Trainer":
        inputs = trainer_inputs(model, train_data, optimizer, own_loss)
    else:
        inputs = learner_inputs(model, train_data, loss_fn, optimizer, own_loss)
    inputs.loss_fn = loss_fn
    inputs.options = {**inputs.options, "outer_state": inputs.link, **options}
    inputs.update_attr = update_attr
    return inputs
