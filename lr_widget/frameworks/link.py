"""What a training framework's object becomes for the engine, and the way back to it.

:class:`SweepInputs` holds what :func:`~lr_widget.engine.runner.make_runner` takes (model, data,
loss, optimizer, options) as read from a LightningModule, a Hugging Face ``Trainer`` or a fastai
``Learner``; :class:`FrameworkLink` is the object's side: its name, the state of its own that a
sweep changes (restored with the model), and where a chosen LR is written back.

No framework is imported here: an object is recognised by the names of its classes, so importing
lr_widget never imports Lightning, transformers or fastai.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch

from lr_widget.engine.batches import LossFn


def _no_state() -> Callable[[], None]:
    return lambda: None


@dataclass
class FrameworkLink:
    """A framework object a sweep runs through: ``name`` (``"LightningModule"``, ``"Hugging Face
    Trainer"``, ``"fastai Learner"``) and the object's own state.

    It is the engine's :class:`~lr_widget.engine.state.OuterState`: :meth:`capture` saves the
    framework state that training steps change outside the model and optimizer (torchmetrics
    counters, a data loader's random stream) and returns what restores it.
    """

    name: str
    target: Any
    """The user's object (the module, the Trainer, the Learner)."""
    write: Callable[[float], str]
    """Writes a chosen LR into the object; returns where it went, as a user reads it."""
    save_state: Callable[[], Callable[[], None]] = _no_state

    def capture(self) -> Callable[[], None]:
        return self.save_state()

    def write_lr(self, lr: float) -> str:
        """Write ``lr`` where the framework reads its LR (see each adapter); return where."""
        if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0):
            raise ValueError(f"lr must be a number > 0, got {lr!r}")
        return self.write(float(lr))


@dataclass
class SweepInputs:
    """The engine's arguments, read from a framework object (see :func:`.adapt.adapt`)."""

    model: torch.nn.Module
    train_data: Iterable[Any]
    loss_fn: LossFn | None
    optimizer: torch.optim.Optimizer | None
    options: dict[str, Any] = field(default_factory=dict)
    """Engine options the object implies (``step_fn``, ``scheduler``, ``accumulation_steps``,
    ``max_grad_norm``, ``amp_dtype``...); the caller's own options win over them."""
    link: FrameworkLink | None = None
    update_attr: bool = False
    """Whether the caller asked for the chosen LR to be written back through :attr:`link`."""


# Each framework object by what results call it, the classes that mark it (package, class name),
# and the pip extra that installs its library.
FRAMEWORKS: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {
    "LightningModule": (
        (("lightning.pytorch", "LightningModule"), ("pytorch_lightning", "LightningModule")),
        "lightning",
    ),
    "Hugging Face Trainer": ((("transformers", "Trainer"),), "transformers"),
    "fastai Learner": ((("fastai", "Learner"),), "fastai"),
}


def framework_of(obj: Any) -> str | None:
    """The framework whose object ``obj`` is (a key of :data:`FRAMEWORKS`), or ``None``.

    Read from the names and modules of its classes: nothing is imported.

    >>> framework_of(torch.nn.Linear(2, 1)) is None
    True
    """
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        for name, (markers, _) in FRAMEWORKS.items():
            for package, class_name in markers:
                if cls.__name__ == class_name and (
                    module == package or module.startswith(package + ".")
                ):
                    return name
    return None


class MissingFrameworkError(ImportError):
    """A framework lr_widget needs for this call is not installed; the message names the extra."""


def import_framework(framework: str, module: str) -> ModuleType:
    """Import ``module`` of ``framework``, or raise :class:`MissingFrameworkError` naming the
    pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        extra = FRAMEWORKS[framework][1]
        raise MissingFrameworkError(
            f"a {framework} needs {extra} ({module} could not be imported: {error}); install "
            f"it with pip install 'lr_widget[{extra}]'"
        ) from error


def require_framework(obj: Any, framework: str, constructor: str) -> None:
    """Raise unless ``obj`` is an object of ``framework``; the error says what was passed, and
    names the extra when the framework is not even installed."""
    if framework_of(obj) == framework:
        return
    markers, extra = FRAMEWORKS[framework]
    installed = any(_installed(package.split(".")[0]) for package, _ in markers)
    wanted = " or ".join(f"{package}.{cls}" for package, cls in markers)
    missing = (
        "" if installed else f" ({framework} is not installed: pip install 'lr_widget[{extra}]')"
    )
    raise TypeError(f"{constructor} needs a {wanted}, got {type(obj).__name__}{missing}")


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a broken or blocked install is no install
        return False
