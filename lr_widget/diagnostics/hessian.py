"""The top eigenvalue of a loss's Hessian: Hessian-vector products and Lanczos iteration.

:class:`HessianOperator` applies the mean Hessian of a few fixed batches to a vector by double
backward (``torch.autograd.grad``) on the flattened trainable parameters; :func:`top_eigenvalue`
finds the most positive eigenvalue of any symmetric operator by Lanczos iteration with a Ritz
residual test. :mod:`lr_widget.diagnostics.curvature` turns the eigenvalue into an LR bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from lr_widget.engine.batches import LossComputer

Operator = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TopEigenpair:
    """The outcome of :func:`top_eigenvalue`: the top Ritz value and vector, and the residual
    ``||A x - lambda x||`` that bounds their error."""

    eigenvalue: float
    vector: torch.Tensor
    iterations: int
    converged: bool
    residual: float


def top_eigenvalue(
    operator: Operator, start: torch.Tensor, *, max_iterations: int = 100, tolerance: float = 1e-3
) -> TopEigenpair:
    """The largest (most positive) eigenvalue of a symmetric linear ``operator`` on vectors.

    Lanczos iteration from ``start`` with full re-orthogonalisation: after ``k`` products the top
    eigenvalue of the small tridiagonal matrix (a Ritz value) approximates the operator's, and the
    residual ``||A x - theta x|| = beta_k |y_k|`` comes for free. It stops when that residual is at
    most ``tolerance * |theta|``; for a symmetric operator the eigenvalue's error is then at most
    the residual, and typically its square over the spectral gap. Unlike power iteration, the most
    positive eigenvalue is found directly even when a negative one is larger in magnitude, and a
    slowly changing estimate cannot pass for a converged one. Memory: the basis holds up to
    ``max_iterations + 1`` vectors of ``start``'s size.

    Examples
    --------
    >>> matrix = torch.diag(torch.tensor([-10.0, 3.0, 1.0], dtype=torch.float64))
    >>> found = top_eigenvalue(lambda v: matrix @ v, torch.ones(3, dtype=torch.float64))
    >>> round(found.eigenvalue, 6), found.converged
    (3.0, True)
    """
    basis = [start / start.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    theta, ritz, residual, converged = math.nan, torch.ones(1, dtype=torch.float64), math.inf, False
    steps = min(max_iterations, start.numel())
    for _ in range(steps):
        product = operator(basis[-1])
        alphas.append(float(torch.dot(product, basis[-1])))
        stacked = torch.stack(basis)
        for _pass in range(2):  # twice: classical Gram-Schmidt loses orthogonality once
            product = product - stacked.T @ (stacked @ product)
        beta = float(product.norm())
        theta, ritz = _top_ritz_pair(alphas, betas)
        residual = beta * abs(float(ritz[-1]))
        if not math.isfinite(theta):
            break
        if residual <= tolerance * abs(theta) or beta <= 1e-12 * max(abs(theta), 1e-30):
            converged = True
            break
        betas.append(beta)
        basis.append(product / beta)
    basis = basis[: len(alphas)]
    vector = torch.stack(basis).T @ ritz.to(basis[0].dtype)
    return TopEigenpair(theta, vector, len(alphas), converged, residual)


def _top_ritz_pair(alphas: list[float], betas: list[float]) -> tuple[float, torch.Tensor]:
    """The top eigenpair of the Lanczos tridiagonal matrix (diagonal ``alphas``, off ``betas``)."""
    size = len(alphas)
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if size > 1:
        off = torch.tensor(betas[: size - 1], dtype=torch.float64)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    if not bool(torch.isfinite(tridiagonal).all()):
        return math.nan, torch.full((size,), math.nan, dtype=torch.float64)
    values, vectors = torch.linalg.eigh(tridiagonal)
    return float(values[-1]), vectors[:, -1]


class HessianOperator:
    """``v -> mean over batches of H_b v`` on the flattened trainable parameters."""

    def __init__(
        self,
        params: list[torch.nn.Parameter],
        batches: list[Any],
        losses: LossComputer,
        seed: int,
    ) -> None:
        self.params = params
        self.batches = batches
        self.losses = losses
        self.seed = seed

    def gradients(self) -> list[torch.Tensor]:
        """The flat gradient of each batch's loss (no graph kept)."""
        return [
            flatten(self._grad(index, create_graph=False)) for index in range(len(self.batches))
        ]

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(vector)
        for index in range(len(self.batches)):
            grads = self._grad(index, create_graph=True)
            pieces = zip(grads, self._split(vector), strict=True)
            dot = torch.stack([(g * v).sum() for g, v in pieces]).sum()
            hvp = torch.autograd.grad(dot, self.params, allow_unused=True)
            total += flatten(zeros_for_unused(hvp, self.params)).detach()
        return total / len(self.batches)

    def _grad(self, index: int, create_graph: bool) -> list[torch.Tensor]:
        # Same seed for a batch at every product: any randomness left in the forward pass (a
        # dropout applied functionally) draws the same numbers, so the operator stays fixed.
        torch.manual_seed(self.seed + index)
        with torch.enable_grad():
            loss = self.losses(self.batches[index])
            grads = torch.autograd.grad(
                loss, self.params, create_graph=create_graph, allow_unused=True
            )
        return zeros_for_unused(grads, self.params)

    def _split(self, vector: torch.Tensor) -> list[torch.Tensor]:
        pieces = torch.split(vector, [p.numel() for p in self.params])
        return [piece.view_as(p) for piece, p in zip(pieces, self.params, strict=True)]


def zeros_for_unused(
    grads: Iterable[torch.Tensor | None], params: list[torch.nn.Parameter]
) -> list[torch.Tensor]:
    """``grads`` with a zero tensor for each parameter the loss does not use."""
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def flatten(tensors: list[torch.Tensor]) -> torch.Tensor:
    """One flat vector of every tensor's values, in order."""
    return torch.cat([t.reshape(-1) for t in tensors])


def scaled_operator(operator: Operator, scale_sqrt: torch.Tensor, decay: torch.Tensor) -> Operator:
    """``v -> S (H + W) S v`` with diagonal ``S`` (LR ratios, Adam's preconditioner) and ``W``
    (coupled weight decay): symmetric, with the eigenvalues of ``S^2 (H + W)``."""

    def apply(vector: torch.Tensor) -> torch.Tensor:
        inner = scale_sqrt * vector
        return scale_sqrt * (operator(inner) + decay * inner)

    return apply
