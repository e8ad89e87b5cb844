"""Curvature bound: Lanczos iteration matches the exact Hessian, the bound formulas hold on a
quadratic, Adam is handled honestly, and the estimate leaves no trace."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from lr_widget.diagnostics.curvature import estimate_curvature
from lr_widget.diagnostics.hessian import top_eigenvalue
from lr_widget.results.curvature import CurvatureEstimate, lr_stability_bound
from tests.helpers import assert_restored, capture, make_batches, make_classifier, warm_optimizer

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def tiny_mlp(seed: int = 0, norm: bool = False) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Linear(3, 6)]
    if norm:
        layers += [torch.nn.BatchNorm1d(6), torch.nn.Dropout(0.5)]
    layers += [torch.nn.Tanh(), torch.nn.Linear(6, 3)]
    return torch.nn.Sequential(*layers).double()


def tiny_batches(count: int = 3, seed: int = 1) -> Batches:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(16, 3, generator=generator, dtype=torch.float64),
            torch.randint(0, 3, (16,), generator=generator),
        )
        for _ in range(count)
    ]


def exact_hessian(model: torch.nn.Module, batches: Batches) -> torch.Tensor:
    """The full Hessian of the mean batch loss w.r.t. the flattened parameters."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [param.shape for param in model.parameters()]
    flat = torch.cat([param.detach().reshape(-1) for param in model.parameters()])

    def loss_of(vector: torch.Tensor) -> torch.Tensor:
        params, offset = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = vector[offset : offset + shape.numel()].view(shape)
            offset += shape.numel()
        losses = [F.cross_entropy(functional_call(model, params, (x,)), y) for x, y in batches]
        return torch.stack(losses).mean()

    hessian = torch.autograd.functional.hessian(loss_of, flat)  # type: ignore[no-untyped-call]
    assert isinstance(hessian, torch.Tensor)
    return hessian


def top_of(matrix: torch.Tensor) -> float:
    return float(torch.linalg.eigvalsh(matrix).max())


def preconditioned(hessian: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``D^1/2 H D^1/2`` with ``D = 1 / denominator``: the eigenvalues of ``P^-1 H``."""
    scale = denominator.rsqrt()
    return scale[:, None] * hessian * scale[None, :]


# -- Lanczos against the exact Hessian ----------------------------------------------------
def test_top_eigenvalue_matches_the_exact_hessian_of_a_small_mlp() -> None:
    model, batches = tiny_mlp(), tiny_batches()
    exact = top_of(exact_hessian(model, batches))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    tight = estimate_curvature(
        model, batches, optimizer=sgd, num_batches=3, tolerance=1e-10, max_iterations=500
    )
    default = estimate_curvature(model, batches, optimizer=sgd, num_batches=3)
    assert tight.converged
    assert tight.lambda_max == pytest.approx(exact, rel=1e-6)
    assert default.lambda_max == pytest.approx(exact, rel=0.01)  # the issue asks for 5%
    assert tight.batches == 3
    assert tight.lr_bound == pytest.approx(2.0 / exact, rel=1e-6)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batchnorm_follows_the_mode_and_dropout_is_off(mode: str) -> None:
    model, batches = tiny_mlp(norm=True), tiny_batches()
    reference = copy.deepcopy(model).train(mode == "train")
    reference[2].eval()  # the dropout layer
    exact = top_of(exact_hessian(reference, batches))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    estimate = estimate_curvature(
        model,
        batches,
        optimizer=sgd,
        num_batches=3,
        tolerance=1e-10,
        max_iterations=500,
        mode=mode,  # type: ignore[arg-type]
    )
    assert estimate.lambda_max == pytest.approx(exact, rel=1e-6)


def test_lanczos_finds_the_top_eigenvalue_when_negative_curvature_dominates() -> None:
    matrix = torch.diag(torch.tensor([-10.0, 3.0, 1.0], dtype=torch.float64))
    start = torch.ones(3, dtype=torch.float64)
    found = top_eigenvalue(lambda v: matrix @ v, start, max_iterations=1000, tolerance=1e-12)
    assert found.eigenvalue == pytest.approx(3.0, rel=1e-9)
    assert found.converged


def test_estimate_is_deterministic_given_the_seed_even_with_a_shuffling_loader() -> None:
    dataset = torch.utils.data.TensorDataset(*map(torch.cat, zip(*make_batches(), strict=True)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=16, shuffle=True)
    model = make_classifier()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    first = estimate_curvature(model, loader, optimizer=sgd, seed=3)
    again = estimate_curvature(model, loader, optimizer=sgd, seed=3)
    other = estimate_curvature(model, loader, optimizer=sgd, seed=4)
    assert first == again
    assert other.lambda_max != first.lambda_max  # other batches, other start vector


class FunctionalDropout(torch.nn.Module):
    """Dropout written as a function call, which no layer check can switch off."""

    def __init__(self) -> None:
        super().__init__()
        self.body = tiny_mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.body(F.dropout(x, p=0.3, training=True))
        return output


def test_randomness_left_in_the_forward_pass_does_not_stop_convergence() -> None:
    model = FunctionalDropout()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    settings: dict[str, Any] = {"num_batches": 3, "tolerance": 1e-9, "max_iterations": 300}
    estimate = estimate_curvature(model, tiny_batches(), optimizer=sgd, **settings)
    assert estimate.converged  # each batch draws the same mask at every product: H is fixed
    assert estimate == estimate_curvature(model, tiny_batches(), optimizer=sgd, **settings)


# -- state --------------------------------------------------------------------------------------
def test_estimate_restores_weights_grads_buffers_modes_and_rng_exactly() -> None:
    model = make_classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    warm_optimizer(model, optimizer)  # leaves gradients and Adam state behind
    model.eval()
    list(model.children())[3].train()  # a mixed mode pattern that must come back as is
    before = capture(model, optimizer)
    estimate_curvature(model, make_batches(), optimizer=optimizer, num_batches=2)
    assert_restored(before, model, optimizer)


# -- the bound ----------------------------------------------------------------------------------
def test_stability_bound_formulas() -> None:
    assert lr_stability_bound(50.0) == 2.0 / 50.0
    assert lr_stability_bound(50.0, momentum=0.9) == 2.0 * 1.9 / 50.0
    assert lr_stability_bound(50.0, momentum=0.9, dampening=0.5) == 2.0 * 1.9 / (0.5 * 50.0)
    assert lr_stability_bound(50.0, momentum=0.9, nesterov=True) == 2.0 * 1.9 / (2.8 * 50.0)
    # Adam with beta1 = 0.9 is heavy ball with momentum and dampening 0.9: 38 / lambda.
    assert lr_stability_bound(50.0, momentum=0.9, dampening=0.9) == pytest.approx(38.0 / 50.0)
    with pytest.raises(ValueError, match="lambda_max"):
        lr_stability_bound(0.0)
    with pytest.raises(ValueError, match="momentum"):
        lr_stability_bound(1.0, momentum=1.0)


def test_sgd_momentum_estimate_uses_the_momentum_bound_and_labels_it() -> None:
    model, batches = tiny_mlp(), tiny_batches()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    estimate = estimate_curvature(model, batches, optimizer=sgd)
    assert estimate.optimizer_kind == "sgd-momentum"
    assert estimate.applies
    assert estimate.lr_bound == 2.0 * (1.0 + 0.9) / estimate.lambda_max
    assert estimate.label.startswith(f"SGD unstable above 2(1+μ)/λ = {estimate.lr_bound:.1e}")
    assert "SGD momentum 0.9" in estimate.label


class Quadratic(torch.nn.Module):
    """``loss = 0.5 x^T A x``: the Hessian is ``A`` everywhere."""

    matrix: torch.Tensor

    def __init__(self, eigenvalues: list[float], seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        size = len(eigenvalues)
        noise = torch.randn(size, size, generator=generator, dtype=torch.float64)
        rotation, _ = torch.linalg.qr(noise)
        diagonal = torch.diag(torch.tensor(eigenvalues, dtype=torch.float64))
        self.register_buffer("matrix", rotation @ diagonal @ rotation.T)
        self.x = torch.nn.Parameter(torch.ones(size, dtype=torch.float64))

    def forward(self, batch: Any) -> torch.Tensor:
        return 0.5 * self.x @ self.matrix @ self.x


def quadratic_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    return model(batch)  # type: ignore[no-any-return]


def final_distance(
    model: Quadratic,
    make: Callable[[Any, float], torch.optim.Optimizer],
    lr: float,
    steps: int = 800,
) -> float:
    optimizer = make(model.parameters(), lr)
    for _ in range(steps):
        optimizer.zero_grad()
        quadratic_loss(model, None).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return float(model.x.detach().norm())


SGD_VARIANTS: dict[str, Callable[[Any, float], torch.optim.Optimizer]] = {
    "gd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "heavy ball": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "dampened": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.5, dampening=0.3),
    "nesterov": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True),
}


@pytest.mark.parametrize("variant", sorted(SGD_VARIANTS))
def test_on_a_quadratic_sgd_converges_just_below_the_bound_and_diverges_just_above(
    variant: str,
) -> None:
    make = SGD_VARIANTS[variant]
    model = Quadratic([4.0, 1.5, 0.5])
    estimate = estimate_curvature(
        model,
        [torch.zeros(1)],
        optimizer=make(model.parameters(), 0.1),
        step_fn=quadratic_loss,
        tolerance=1e-12,
        max_iterations=1000,
    )
    assert estimate.lambda_max == pytest.approx(4.0, rel=1e-9)
    assert estimate.lr_bound is not None
    below = final_distance(Quadratic([4.0, 1.5, 0.5]), make, 0.97 * estimate.lr_bound)
    above = final_distance(Quadratic([4.0, 1.5, 0.5]), make, 1.03 * estimate.lr_bound)
    assert below < 1e-6
    assert above > 1e3


def test_parameter_groups_scale_the_curvature_by_their_lr_ratio() -> None:
    class TwoBlocks(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))
            self.body = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

        def forward(self, batch: Any) -> torch.Tensor:
            return 0.5 * (1.0 * self.head**2 + 8.0 * self.body**2).sum()

    model = TwoBlocks()
    sgd = torch.optim.SGD(
        [{"params": [model.head], "lr": 1.0}, {"params": [model.body], "lr": 0.1}]
    )
    estimate = estimate_curvature(
        model,
        [torch.zeros(1)],
        optimizer=sgd,
        step_fn=quadratic_loss,
        tolerance=1e-12,
        max_iterations=500,
    )
    # The swept LR eta moves the body at 0.1 eta: its curvature counts as 0.8, the head's as 1.
    assert estimate.lambda_max == pytest.approx(1.0, rel=1e-9)


def test_coupled_weight_decay_adds_to_the_curvature() -> None:
    model = Quadratic([4.0, 1.5, 0.5])
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.25)
    estimate = estimate_curvature(
        model,
        [torch.zeros(1)],
        optimizer=sgd,
        step_fn=quadratic_loss,
        tolerance=1e-12,
        max_iterations=1000,
    )
    assert estimate.lambda_max == pytest.approx(4.25, rel=1e-9)


# -- Adam ---------------------------------------------------------------------------------------
def adam_denominator(optimizer: torch.optim.Adam, model: torch.nn.Module) -> torch.Tensor:
    beta2, eps = optimizer.param_groups[0]["betas"][1], optimizer.param_groups[0]["eps"]
    pieces = []
    for param in model.parameters():
        state = optimizer.state[param]
        v_hat = state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))
        pieces.append((v_hat.sqrt() + eps).reshape(-1))
    return torch.cat(pieces)


def test_adam_with_state_uses_the_preconditioned_sharpness() -> None:
    model, batches = tiny_mlp(), tiny_batches()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.99))
    for x, y in tiny_batches(count=5, seed=7):
        adam.zero_grad()
        F.cross_entropy(model(x), y).backward()  # type: ignore[no-untyped-call]
        adam.step()
    exact = top_of(preconditioned(exact_hessian(model, batches), adam_denominator(adam, model)))
    estimate = estimate_curvature(
        model, batches, optimizer=adam, num_batches=3, tolerance=1e-10, max_iterations=1000
    )
    assert estimate.preconditioned
    assert estimate.applies
    assert estimate.lambda_max == pytest.approx(exact, rel=1e-6)
    assert estimate.lr_bound == pytest.approx(2 * 1.8 / (0.2 * exact), rel=1e-6)
    assert "Adam's state" in estimate.label


def test_fresh_adam_says_the_bound_does_not_apply_unless_asked_to_estimate() -> None:
    model, batches = tiny_mlp(), tiny_batches()
    adam = torch.optim.AdamW(model.parameters(), lr=1e-3)
    estimate = estimate_curvature(model, batches, optimizer=adam, estimate_second_moment=False)
    assert not estimate.applies
    assert estimate.lr_bound is None
    assert estimate.optimizer_kind == "adam"
    assert "does not apply" in estimate.explanation
    assert "no second-moment state" in estimate.explanation
    assert estimate.label.startswith("no LR bound")


def test_fresh_adam_estimates_v_from_squared_gradients_and_labels_it() -> None:
    model, batches = tiny_mlp(), tiny_batches()
    grads = []
    for x, y in batches:
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()  # type: ignore[no-untyped-call]
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))  # type: ignore[union-attr]
    model.zero_grad(set_to_none=True)
    denominator = torch.stack(grads).pow(2).mean(dim=0).sqrt() + 1e-8
    exact = top_of(preconditioned(exact_hessian(model, batches), denominator))
    estimate = estimate_curvature(
        model, batches, num_batches=3, tolerance=1e-10, max_iterations=1000
    )  # optimizer=None: a fresh AdamW, the range test's default
    assert estimate.applies
    assert estimate.preconditioned
    assert estimate.lambda_max == pytest.approx(exact, rel=1e-6)
    assert estimate.lr_bound == pytest.approx(2 * 1.9 / (0.1 * exact), rel=1e-6)
    assert "v estimated from 3 batches" in estimate.label


def test_unsupported_optimizer_reports_curvature_without_a_bound() -> None:
    model, batches = tiny_mlp(), tiny_batches()
    estimate = estimate_curvature(model, batches, optimizer=torch.optim.RMSprop(model.parameters()))
    assert not estimate.applies
    assert estimate.lr_bound is None
    assert "RMSprop" in estimate.explanation
    assert estimate.lambda_max > 0


# -- boundaries and serialisation ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"num_batches": 0}, "num_batches"),
        ({"max_iterations": 0}, "max_iterations"),
        ({"tolerance": 0.0}, "tolerance"),
        ({"seed": -1}, "seed"),
        ({"mode": "inference"}, "mode"),
    ],
)
def test_bad_settings_are_rejected_with_their_name(options: dict[str, Any], name: str) -> None:
    model = tiny_mlp()
    with pytest.raises(ValueError, match=name):
        estimate_curvature(model, tiny_batches(), **options)


def test_an_optimizer_of_another_model_is_rejected() -> None:
    other = torch.optim.SGD(tiny_mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"optimizer holds none of the model.s parameters"):
        estimate_curvature(tiny_mlp(), tiny_batches(), optimizer=other)


def test_estimate_survives_strict_json() -> None:
    model, batches = tiny_mlp(), tiny_batches()
    estimate = estimate_curvature(model, batches, optimizer=torch.optim.SGD(model.parameters()))
    text = json.dumps(estimate.to_dict(), allow_nan=False)
    assert CurvatureEstimate.from_dict(json.loads(text)) == estimate
    odd = CurvatureEstimate(math.nan, None, "gd", False, "diverged", 3, False, 1)
    loaded = CurvatureEstimate.from_dict(json.loads(json.dumps(odd.to_dict(), allow_nan=False)))
    assert math.isnan(loaded.lambda_max)
