"""Where a selected LR goes besides ``w.lr``: an optimizer, a notebook variable, a framework.

:class:`LRTargets` writes every selected LR into the ``apply_to`` optimizer (keeping its
parameter groups' ratios, as the sweep does), the ``assign_to`` notebook variable and, with
``update_attr=True``, the framework object swept (a LightningModule's ``lr``, a Trainer's
``args.learning_rate``, a Learner's ``lr``). While a sweep trains that very optimizer (or the
framework's) it would overwrite the LR and then restore it, so the write is deferred to the
sweep's end.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lr_widget.engine.schedules import apply_lr, group_lr_ratios
from lr_widget.frameworks import FrameworkLink


def assign_in_notebook(name: str, value: float) -> None:
    """Write ``value`` to variable ``name`` of the IPython namespace, when there is one."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.user_ns[name] = value


class LRTargets:
    """The optimizer and variable that receive every selected LR.

    Parameters
    ----------
    apply_to
        An optimizer that receives every selected LR, or ``None``.
    assign_to
        A notebook variable name that receives every selected LR, or ``None``.
    swept_optimizer
        Returns the optimizer a running sweep trains, or ``None`` when no sweep runs.
    framework
        The framework object swept, to receive every selected LR (``update_attr=True``), or
        ``None``.

    Examples
    --------
    >>> model = torch.nn.Linear(2, 1)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> targets = LRTargets(optimizer, None, swept_optimizer=lambda: None)
    >>> targets.selected(0.01)
    >>> optimizer.param_groups[0]["lr"]
    0.01
    """

    def __init__(
        self,
        apply_to: torch.optim.Optimizer | None,
        assign_to: str | None,
        *,
        swept_optimizer: Callable[[], torch.optim.Optimizer | None],
        framework: FrameworkLink | None = None,
    ) -> None:
        self.apply_to = apply_to
        self.assign_to = assign_to
        self.framework = framework
        self._swept_optimizer = swept_optimizer
        self._pending: float | None = None
        self._pending_framework: float | None = None

    def apply(self, lr: float | None, optimizer: torch.optim.Optimizer | None = None) -> float:
        """Write ``lr`` into ``optimizer`` (default: ``apply_to``), every parameter group keeping
        its ratio to the largest LR; return it."""
        target = optimizer if optimizer is not None else self.apply_to
        if target is None:
            raise ValueError("apply() needs an optimizer (or build the widget with apply_to=...)")
        if not isinstance(target, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {target!r}")
        if lr is None:
            raise ValueError("no LR selected yet: click the plot or a suggestion button first")
        if target is self._swept_optimizer():
            raise RuntimeError(
                "the sweep is using this optimizer and will restore it; apply after it ends"
            )
        apply_lr(target, lr, group_lr_ratios(target))
        return float(lr)

    def selected(self, lr: float) -> None:
        """A new LR was selected: apply it (or, while the sweep trains ``apply_to``, once the
        sweep ends) and assign it."""
        if self.apply_to is not None:
            if self.apply_to is self._swept_optimizer():
                self._pending = lr  # the sweep would overwrite it: apply at the end
            else:
                self.apply(lr)
        if self.assign_to is not None:
            assign_in_notebook(self.assign_to, float(lr))
        if self.framework is not None:
            if self._swept_optimizer() is not None:
                self._pending_framework = lr  # the framework's optimizer is being swept
            else:
                self.framework.write_lr(lr)

    def sweep_ended(self, lr: float | None) -> None:
        """Apply the LR selected during the sweep, now that the optimizer is restored."""
        pending, self._pending = self._pending, None
        if pending is not None and lr is not None and self.apply_to is not None:
            self.apply(lr)
        pending, self._pending_framework = self._pending_framework, None
        if pending is not None and lr is not None and self.framework is not None:
            self.framework.write_lr(lr)
