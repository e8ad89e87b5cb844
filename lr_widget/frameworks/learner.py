"""A fastai ``Learner`` as the sweep's input: its model, ``dls.train``, ``loss_func`` and optimizer.

The optimizer is ``learn.opt`` when the Learner holds one (mid-training), else the one
``learn.create_opt()`` builds from ``opt_func`` (its parameter groups from the splitter, no weight
decay on norm layers and biases unless ``wd_bn_bias``), which is then taken back off the Learner so
that it is left as it was. A fastai ``Optimizer`` is not a ``torch.optim.Optimizer``: it is
stepped through :class:`FastaiOptimizer`, whose groups carry the LRs the sweep sets; a torch
optimizer wrapped in fastai's ``OptimWrapper`` is used as it is. Discriminative LRs are kept: each
group keeps its ratio to the largest, as for any optimizer.

The data loader's own random stream (fastai shuffles with ``dl.rng``, not torch's) is restored
after every sweep with the rest. A chosen LR is written to ``learn.lr`` (what ``fit`` and
``fit_one_cycle`` use when no LR is given) and, when the Learner holds an optimizer, into its
groups, keeping their ratios.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from lr_widget.engine.schedules import lr_ratios
from lr_widget.frameworks.link import FrameworkLink, SweepInputs

NAME = "fastai Learner"


def learner_inputs(
    learn: Any,
    train_data: Iterable[Any] | None,
    loss_fn: Any,
    optimizer: torch.optim.Optimizer | None,
    own_loss: bool,
) -> SweepInputs:
    """The sweep's inputs from a fastai ``Learner``; ``own_loss`` is false when the caller gave
    a ``loss_fn`` or ``step_fn`` (then ``learn.loss_func`` is not used)."""
    options = callback_options(learn)
    if own_loss:
        options["step_fn"] = LearnerLoss(learn)
    data = learn.dls.train if train_data is None else train_data
    if optimizer is None:
        optimizer = torch_optimizer(_learner_optimizer(learn), _name_of(learn.opt_func))
    link = FrameworkLink(
        NAME, learn, write=lambda lr: _write_lr(learn, lr), save_state=lambda: _save_rng(data)
    )
    return SweepInputs(learn.model, data, loss_fn, optimizer, options, link)


def callback_options(learn: Any) -> dict[str, Any]:
    """What the Learner's callbacks change in each optimizer step, as sweep options:
    ``GradientClip`` (clipping by norm), ``GradientAccumulation`` (``n_acc`` samples a step, in
    batches of ``dls.train.bs``) and ``MixedPrecision`` (fp16 with a GradScaler, or bf16)."""
    options: dict[str, Any] = {}
    for callback in getattr(learn, "cbs", ()):
        kind = type(callback).__name__
        if kind == "GradientClip":
            if float(getattr(callback, "norm_type", 2.0)) != 2.0:
                raise ValueError(
                    f"GradientClip(norm_type={callback.norm_type}): the sweep clips the 2-norm "
                    "only; pass max_grad_norm= and remove the callback, or use norm_type=2"
                )
            options["max_grad_norm"] = float(callback.max_norm)
        elif kind == "GradientAccumulation":
            batch = int(getattr(learn.dls.train, "bs", 0) or 0)
            if batch > 0:
                options["accumulation_steps"] = max(1, math.ceil(int(callback.n_acc) / batch))
        elif kind == "MixedPrecision":
            mode = str(getattr(callback.amp_mode, "value", callback.amp_mode))
            if mode == "bf16":
                options["amp_dtype"] = "bfloat16"
            elif mode == "fp16":
                options.update(amp_dtype="float16", grad_scaler=True)
    return options


class LearnerLoss:
    """``step_fn`` of a Learner: ``loss_func(model(*xb), *yb)``, split at ``dls.n_inp``."""

    def __init__(self, learn: Any) -> None:
        self.learn = learn
        self.inputs = int(getattr(learn.dls, "n_inp", 1))

    def __call__(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        inputs, targets = batch[: self.inputs], batch[self.inputs :]
        return self.learn.loss_func(model(*inputs), *targets)  # type: ignore[no-any-return]


class FastaiOptimizer(torch.optim.Optimizer):
    """A fastai ``Optimizer`` seen as a ``torch.optim.Optimizer``.

    Its param groups are fastai's (same parameters, a copy of each group's hyper-parameters) and
    its ``state`` is fastai's own table, so the engine's snapshot covers the moments fastai keeps.
    :meth:`step` hands each group's ``lr`` to fastai for that step only: fastai's ``hypers`` are
    the same before and after.
    """

    def __init__(self, fastai_optimizer: Any, label: str = "fastai optimizer") -> None:
        self.fastai_optimizer = fastai_optimizer
        self.label = label
        """What results and the widget call it (``"fastai Adam"``)."""
        groups = [
            {**hypers, "params": list(params)}
            for params, hypers in zip(
                fastai_optimizer.param_lists, fastai_optimizer.hypers, strict=True
            )
        ]
        super().__init__(groups, defaults={})
        self.state = fastai_optimizer.state

    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise NotImplementedError("fastai optimizers take no closure")
        hypers = self.fastai_optimizer.hypers
        saved = [hyper["lr"] for hyper in hypers]
        try:
            for hyper, group in zip(hypers, self.param_groups, strict=True):
                hyper["lr"] = group["lr"]
            self.fastai_optimizer.step()
        finally:
            for hyper, lr in zip(hypers, saved, strict=True):
                hyper["lr"] = lr


def torch_optimizer(fastai_optimizer: Any, name: str) -> torch.optim.Optimizer:
    """The torch optimizer a sweep steps for a fastai one: the one inside an ``OptimWrapper``,
    else a :class:`FastaiOptimizer` around it, labelled ``"fastai <name>"``."""
    inner = getattr(fastai_optimizer, "opt", None)
    if isinstance(inner, torch.optim.Optimizer):
        return inner
    return FastaiOptimizer(fastai_optimizer, f"fastai {name}")


def _name_of(opt_func: Any) -> str:
    """``Adam`` for ``Adam`` or ``partial(Adam, ...)``."""
    function = getattr(opt_func, "func", opt_func)
    return str(getattr(function, "__name__", type(function).__name__))


def _learner_optimizer(learn: Any) -> Any:
    if learn.opt is not None:
        return learn.opt
    lr = learn.lr
    try:
        learn.create_opt()  # may read lr from a partial opt_func: put it back too
        return learn.opt
    finally:
        learn.opt, learn.lr = None, lr


def _save_rng(data: Any) -> Callable[[], None]:
    """Save a fastai loader's own random stream (``rng``, replaced at every pass); return what
    puts it back."""
    rng = getattr(data, "rng", None)
    if rng is None or not callable(getattr(rng, "getstate", None)):
        return lambda: None
    state = rng.getstate()

    def restore() -> None:
        rng.setstate(state)
        data.rng = rng

    return restore


def _write_lr(learn: Any, lr: float) -> str:
    learn.lr = lr
    if learn.opt is None:
        return "learn.lr"
    hypers = learn.opt.hypers
    for hyper, ratio in zip(hypers, lr_ratios([float(h["lr"]) for h in hypers]), strict=True):
        hyper["lr"] = lr * ratio
    return "learn.lr and learn.opt"
