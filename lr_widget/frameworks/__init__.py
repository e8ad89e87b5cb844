"""Training frameworks as first-class inputs: a LightningModule, a Hugging Face ``Trainer`` and a
fastai ``Learner`` are swept with the step, data and optimizer they train with.

:func:`~.adapt.adapt` turns the first argument of :func:`~lr_widget.find_lr` or
:class:`~lr_widget.LRWidget` into the engine's inputs; :class:`~.link.FrameworkLink` restores the
framework's own state after a sweep and writes a chosen LR back (``update_attr=True``). No
framework is imported until an object of it is passed.
"""

from lr_widget.frameworks.adapt import adapt
from lr_widget.frameworks.link import (
    FrameworkLink,
    MissingFrameworkError,
    SweepInputs,
    framework_of,
)

__all__ = ["FrameworkLink", "MissingFrameworkError", "SweepInputs", "adapt", "framework_of"]
