"""Stepping through a GradScaler while knowing, without an extra device read, whether it stepped.

A GradScaler skips ``optimizer.step()`` on inf/NaN gradients; the range test must not advance its
LR on such a step, so it needs to know which steps were real.
"""

from __future__ import annotations

from typing import Any

import torch


def make_scaler(
    grad_scaler: torch.amp.GradScaler | bool | None, device: torch.device
) -> torch.amp.GradScaler | None:
    if grad_scaler is None or grad_scaler is False:
        return None
    if grad_scaler is True:
        return torch.amp.GradScaler(device.type)
    if not isinstance(grad_scaler, torch.amp.GradScaler):
        raise TypeError(
            f"grad_scaler must be a torch.amp.GradScaler, True, False or None, got {grad_scaler!r}"
        )
    return grad_scaler if grad_scaler.is_enabled() else None


class ScalerStepWatch:
    """Steps through a GradScaler and tells whether the optimizer really stepped.

    A GradScaler skips ``optimizer.step()`` on inf/NaN gradients after reading its own found-inf
    flag, so a post-step hook sees exactly the real steps without any read of ours. Optimizers
    that take the scaling into their own kernels (``_step_supports_amp_scaling``, e.g. fused
    AdamW) are always called and skip on the device, and wrappers may bypass the hooks; for those
    the scale is compared across the update (a skipped step lowers it): one read per step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        self._optimizer = optimizer
        self._scaler = scaler
        self._steps_seen = 0
        self._hook: Any = None
        self._scale = 0.0
        if _post_step_hooks_run(optimizer):
            self._hook = optimizer.register_step_post_hook(self._count_step)
        else:
            self._scale = scaler.get_scale()

    def step(self) -> bool:
        """``scaler.step(optimizer)`` then ``scaler.update()``; whether the optimizer stepped."""
        steps_before, scale_before = self._steps_seen, self._scale
        self._scaler.step(self._optimizer)
        self._scaler.update()
        if self._hook is not None:
            return self._steps_seen > steps_before
        self._scale = self._scaler.get_scale()
        return self._scale >= scale_before

    def close(self) -> None:
        """Remove the hook from the user's optimizer."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _count_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._steps_seen += 1


def _post_step_hooks_run(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` runs post-step hooks and is skipped, not called, on overflow."""
    if getattr(optimizer, "_step_supports_amp_scaling", False):
        return False
    hooked = getattr(type(optimizer).step, "hooked", False)
    return bool(hooked) and "_optimizer_step_post_hooks" in vars(optimizer)
