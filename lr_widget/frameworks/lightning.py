"""A LightningModule as the sweep's input: its own ``training_step``, optimizer and data.

The step is the module's ``training_step(batch, batch_idx)`` (its loss, or ``{"loss": ...}``),
after its batch-transfer hooks; the optimizer is the first one ``configure_optimizers`` returns,
and a scheduler built with it is snapshotted and restored, never stepped. The data is
``datamodule.train_dataloader()`` (after ``prepare_data`` and ``setup("fit")``), the loaders given
as ``train_dataloaders``, or the module's own ``train_dataloader()``. A chosen LR is written to the
module's ``lr`` or ``learning_rate`` attribute or hyper-parameter, as Lightning's tuner does.

No Trainer is attached: ``self.log`` inside ``training_step`` does nothing (its warning is
silenced), and a step that needs ``self.trainer`` fails with Lightning's own error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from lr_widget.engine.state import copier_to, map_tensors, to_host
from lr_widget.frameworks.link import FrameworkLink, SweepInputs, import_framework

NAME = "LightningModule"
LR_ATTRIBUTES = ("lr", "learning_rate")
"""Where Lightning's tuner looks for the LR to update, in this order (``update_attr``)."""
_NO_TRAINER_LOG = r"You are trying to `self.log\(\)` but the `self.trainer` reference"
"""Lightning's warning for ``self.log`` with no Trainer: every sweep step would raise it."""


def lightning_inputs(
    module: torch.nn.Module,
    train_data: Iterable[Any] | None,
    optimizer: torch.optim.Optimizer | None,
    own_loss: bool,
    *,
    datamodule: Any = None,
    train_dataloaders: Any = None,
    trainer: Any = None,
    update_attr: bool = False,
) -> SweepInputs:
    """The sweep's inputs from a LightningModule; ``own_loss`` is false when the caller gave a
    ``loss_fn`` or ``step_fn`` (then ``training_step`` is not used). ``trainer`` (default: the
    Trainer the module is attached to, if any) gives the step's settings: see
    :func:`trainer_options`."""
    parsing = import_framework(NAME, _package(module) + ".utilities.parsing")
    warnings.filterwarnings("ignore", message=_NO_TRAINER_LOG)  # added once, however often
    if update_attr and _lr_attribute(module, parsing) is None:
        raise AttributeError(
            f"update_attr=True writes the LR to the module's {' or '.join(LR_ATTRIBUTES)} "
            f"(attribute or hparams), and {type(module).__name__} has neither; add one or pass "
            "update_attr=False"
        )
    if own_loss and not getattr(module, "automatic_optimization", True):
        raise ValueError(
            f"{type(module).__name__} uses manual optimization (automatic_optimization=False): "
            "its training_step steps the optimizer itself; pass step_fn=lambda model, batch: loss"
        )
    data = _train_data(module, train_data, datamodule, train_dataloaders)
    if trainer is None:
        trainer = getattr(module, "_trainer", None)
    options: dict[str, Any] = {} if trainer is None else trainer_options(trainer)
    if optimizer is None:
        optimizer, scheduler = first_optimizer(module.configure_optimizers(), module)  # type: ignore[operator]
        if scheduler is not None:
            options["scheduler"] = scheduler
    if own_loss:
        options["step_fn"] = TrainingStep(module)
    link = FrameworkLink(
        NAME,
        module,
        write=lambda lr: _write_lr(module, parsing, lr),
        save_state=lambda: _save_metrics(module),
    )
    return SweepInputs(module, data, None, optimizer, options, link)


def trainer_options(trainer: Any) -> dict[str, Any]:
    """What a Lightning ``Trainer`` changes in each optimizer step, as sweep options:
    ``accumulate_grad_batches``, clipping by norm (``gradient_clip_val``) and mixed precision
    (``"bf16-mixed"``, ``"16-mixed"`` with a GradScaler). A ``"*-true"`` precision is the
    module's own dtype, nothing to add; clipping by value has no equivalent in the sweep, which
    warns and leaves it out.
    """
    options: dict[str, Any] = {}
    accumulation = int(getattr(trainer, "accumulate_grad_batches", 1) or 1)
    if accumulation > 1:
        options["accumulation_steps"] = accumulation
    clip = getattr(trainer, "gradient_clip_val", None)
    if clip:
        algorithm = str(getattr(trainer, "gradient_clip_algorithm", None) or "norm")
        if algorithm == "norm":
            options["max_grad_norm"] = float(clip)
        else:
            warnings.warn(
                f"the Trainer clips gradients by {algorithm} ({clip}); the sweep clips by norm "
                "only, so it runs without clipping (pass max_grad_norm= for a norm limit)",
                UserWarning,
                stacklevel=4,
            )
    precision = str(getattr(trainer, "precision", "32-true"))
    if precision.startswith("bf16-mixed"):
        options["amp_dtype"] = "bfloat16"
    elif precision.startswith("16-mixed"):
        options.update(amp_dtype="float16", grad_scaler=True)
    return options


class TrainingStep:
    """``step_fn`` of a LightningModule: its batch hooks, then ``training_step``."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.batch_idx = 0

    def __call__(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        module: Any = self.module
        device = next(module.parameters()).device
        batch = module.on_before_batch_transfer(batch, 0)
        batch = module.transfer_batch_to_device(batch, device, 0)
        batch = module.on_after_batch_transfer(batch, 0)
        output = module.training_step(batch, self.batch_idx)
        self.batch_idx += 1
        if isinstance(output, Mapping):
            if "loss" not in output:
                raise ValueError(
                    "training_step returned a dict without a 'loss' key: "
                    f"{sorted(map(str, output))}; return the loss or {{'loss': loss, ...}}"
                )
            output = output["loss"]
        if output is None:
            raise ValueError(
                f"training_step returned None at batch {self.batch_idx - 1} (Lightning skips "
                "such a batch); a range test needs a loss at every step"
            )
        return output  # type: ignore[no-any-return]


def first_optimizer(configured: Any, module: torch.nn.Module) -> tuple[torch.optim.Optimizer, Any]:
    """The first optimizer of what ``configure_optimizers`` returned, in any of the forms
    Lightning accepts, and the first LR scheduler built on it (or ``None``).

    >>> model = torch.nn.Linear(2, 1)
    >>> sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> steps = torch.optim.lr_scheduler.StepLR(sgd, 10)
    >>> first_optimizer({"optimizer": sgd, "lr_scheduler": {"scheduler": steps}}, model)[1] is steps
    True
    >>> first_optimizer(([sgd], [steps]), model) == (sgd, steps)
    True
    """
    optimizers, schedulers = _forms(configured)
    if not optimizers:
        raise ValueError(
            f"{type(module).__name__}.configure_optimizers() returned no optimizer "
            f"({configured!r}); return one, or pass optimizer=..."
        )
    optimizer = optimizers[0]
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"{type(module).__name__}.configure_optimizers() gave a "
            f"{type(optimizer).__name__}, not a torch.optim.Optimizer"
        )
    scheduler = next((s for s in schedulers if getattr(s, "optimizer", None) is optimizer), None)
    return optimizer, scheduler


def _forms(configured: Any) -> tuple[list[Any], list[Any]]:
    """Optimizers and schedulers from a ``configure_optimizers`` return value."""
    if configured is None:
        return [], []
    if isinstance(configured, torch.optim.Optimizer):
        return [configured], []
    if isinstance(configured, Mapping):
        scheduler = configured.get("lr_scheduler")
        if isinstance(scheduler, Mapping):
            scheduler = scheduler.get("scheduler")
        return [configured.get("optimizer")], [] if scheduler is None else [scheduler]
    if isinstance(configured, Sequence):
        items = list(configured)
        if len(items) == 2 and all(isinstance(item, Sequence) for item in items):
            schedulers = [s.get("scheduler") if isinstance(s, Mapping) else s for s in items[1]]
            return list(items[0]), schedulers
        optimizers: list[Any] = []
        schedulers = []
        for item in items:
            more_optimizers, more_schedulers = _forms(item)
            optimizers += more_optimizers
            schedulers += more_schedulers
        return optimizers, schedulers
    return [configured], []


def _train_data(
    module: Any, train_data: Any, datamodule: Any, train_dataloaders: Any
) -> Iterable[Any]:
    given = [
        name
        for name, value in (
            ("train_data", train_data),
            ("datamodule", datamodule),
            ("train_dataloaders", train_dataloaders),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise TypeError(f"give one source of training data, got {' and '.join(given)}")
    if train_data is not None:
        return train_data  # type: ignore[no-any-return]
    if train_dataloaders is not None:
        return train_dataloaders  # type: ignore[no-any-return]
    if datamodule is not None:
        if not callable(getattr(datamodule, "train_dataloader", None)):
            raise TypeError(
                f"datamodule must be a LightningDataModule, got {type(datamodule).__name__}"
            )
        datamodule.prepare_data()
        datamodule.setup("fit")
        return datamodule.train_dataloader()  # type: ignore[no-any-return]
    if _overrides(module, "train_dataloader"):
        return module.train_dataloader()  # type: ignore[no-any-return]
    raise TypeError(
        f"{type(module).__name__} needs training data: pass datamodule=, train_dataloaders= "
        "(a DataLoader), or define train_dataloader() on the module"
    )


def _overrides(module: Any, method: str) -> bool:
    """Whether ``method`` is defined by the user's class rather than Lightning's."""
    for cls in type(module).__mro__:
        if method in vars(cls):
            return not (cls.__module__ or "").startswith(("lightning", "pytorch_lightning"))
    return False


def _package(module: Any) -> str:
    for cls in type(module).__mro__:
        if (cls.__module__ or "").startswith("pytorch_lightning"):
            return "pytorch_lightning"
    return "lightning.pytorch"


def _lr_attribute(module: Any, parsing: Any) -> str | None:
    return next((name for name in LR_ATTRIBUTES if parsing.lightning_hasattr(module, name)), None)


def _write_lr(module: Any, parsing: Any, lr: float) -> str:
    name = _lr_attribute(module, parsing)
    if name is None:
        raise AttributeError(
            f"{type(module).__name__} has no {' or '.join(LR_ATTRIBUTES)} attribute or "
            "hyper-parameter to write the LR to"
        )
    parsing.lightning_setattr(module, name, lr)
    return f"{type(module).__name__}.{name}"


def _save_metrics(module: torch.nn.Module) -> Callable[[], None]:
    """Save every torchmetrics ``Metric``'s accumulated state (updated by ``training_step``,
    kept outside the module's buffers); return what restores it."""
    saved = []
    for metric in module.modules():
        defaults = getattr(metric, "_defaults", None)
        if isinstance(defaults, dict) and callable(getattr(metric, "reset", None)):
            names = [*defaults, "_update_count", "_computed"]
            values = {
                name: to_host(getattr(metric, name)) for name in names if hasattr(metric, name)
            }
            saved.append((metric, values))

    def restore() -> None:
        for metric, values in saved:
            device = getattr(metric, "device", None)  # where torchmetrics keeps its states
            to_metric = copier_to(device if isinstance(device, torch.device) else None)
            for name, value in values.items():
                setattr(metric, name, map_tensors(value, to_metric))  # list states too

    return restore
