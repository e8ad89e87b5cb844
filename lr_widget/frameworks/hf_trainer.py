"""A Hugging Face ``Trainer`` as the sweep's input: what ``trainer.train()`` would train with.

- the model: ``trainer.model``, its loss through ``trainer.compute_loss`` (the model's own loss,
  or the Trainer's label smoothing or ``compute_loss_func``, or a subclass's override);
- the data: ``trainer.get_train_dataloader()``, its collator, sampler and batch size;
- the optimizer: ``trainer.optimizer`` when one is set (given, or mid-training), else the one
  ``trainer.create_optimizer()`` builds (its weight-decay groups and optimizer choice), which is
  then taken back off the Trainer so that it is left as it was; ``trainer.lr_scheduler``, if set,
  is snapshotted and restored;
- from ``trainer.args``: ``gradient_accumulation_steps``, ``max_grad_norm`` (clipping, 1.0 by
  default) and mixed precision (``bf16``, or ``fp16`` with a GradScaler).

A chosen LR is written to ``trainer.args.learning_rate`` (and into ``trainer.optimizer``'s groups,
keeping their ratios, when the Trainer already holds one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from lr_widget.engine.schedules import apply_lr, group_lr_ratios
from lr_widget.frameworks.link import FrameworkLink, SweepInputs

NAME = "Hugging Face Trainer"


def trainer_inputs(
    trainer: Any,
    train_data: Iterable[Any] | None,
    optimizer: torch.optim.Optimizer | None,
    own_loss: bool,
) -> SweepInputs:
    """The sweep's inputs from a ``transformers.Trainer``; ``own_loss`` is false when the caller
    gave a ``loss_fn`` or ``step_fn`` (then ``compute_loss`` is not used)."""
    args = trainer.args
    options: dict[str, Any] = {
        "accumulation_steps": int(args.gradient_accumulation_steps),
        "max_grad_norm": float(args.max_grad_norm) if args.max_grad_norm else None,
    }
    if args.bf16:
        options["amp_dtype"] = "bfloat16"
    elif args.fp16:
        options.update(amp_dtype="float16", grad_scaler=True)
    if own_loss:
        options["step_fn"] = ComputeLoss(trainer)
    if train_data is None:
        train_data = _train_loader(trainer)
    if optimizer is None:
        optimizer = _optimizer(trainer)
    if trainer.lr_scheduler is not None and trainer.lr_scheduler.optimizer is optimizer:
        options["scheduler"] = trainer.lr_scheduler
    link = FrameworkLink(NAME, trainer, write=lambda lr: _write_lr(trainer, lr))
    return SweepInputs(trainer.model, train_data, None, optimizer, options, link)


class ComputeLoss:
    """``step_fn`` of a Trainer: ``trainer.compute_loss(model, batch)``."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def __call__(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        return self.trainer.compute_loss(model, batch)  # type: ignore[no-any-return]


def _train_loader(trainer: Any) -> Iterable[Any]:
    """``get_train_dataloader()``, without leaving a trace in the Trainer's accelerator.

    Accelerate registers every prepared loader and, while one is iterated, marks it active in
    its gradient-accumulation state; a sweep stops iterating mid-epoch, which would leave it
    marked. In one process the prepared loader only adds device placement (the engine does that),
    so its plain ``base_dataloader`` is iterated instead; across processes it shards the data,
    so the prepared one is kept.
    """
    accelerator = getattr(trainer, "accelerator", None)
    registered = getattr(accelerator, "_dataloaders", None)
    count = len(registered) if isinstance(registered, list) else None
    loader = trainer.get_train_dataloader()
    if isinstance(registered, list) and count is not None:
        del registered[count:]
    if getattr(accelerator, "num_processes", 1) == 1:
        loader = getattr(loader, "base_dataloader", loader)
    return loader  # type: ignore[no-any-return]


def _optimizer(trainer: Any) -> torch.optim.Optimizer:
    if trainer.optimizer is not None:
        return trainer.optimizer  # type: ignore[no-any-return]
    try:
        optimizer = trainer.create_optimizer()
    finally:
        trainer.optimizer = None  # train() builds its own, as if we had never asked
    inner = getattr(optimizer, "optimizer", None)  # accelerate's AcceleratedOptimizer wrapper
    if not isinstance(optimizer, torch.optim.Optimizer) and isinstance(
        inner, torch.optim.Optimizer
    ):
        return inner
    return optimizer  # type: ignore[no-any-return]


def _write_lr(trainer: Any, lr: float) -> str:
    trainer.args.learning_rate = lr
    where = "trainer.args.learning_rate"
    if trainer.optimizer is not None:
        apply_lr(trainer.optimizer, lr, group_lr_ratios(trainer.optimizer))
        where += " and trainer.optimizer"
    return where
