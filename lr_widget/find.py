"""``find_lr``: the one call that runs a range test, once or ``repeats`` times.

Without ``repeats`` it runs one :class:`~lr_widget.engine.sweep.LRFinder` sweep and returns its
:class:`~lr_widget.results.range_test.RangeTestResult`; with ``repeats=k`` it runs the same sweep
``k`` times through :class:`~lr_widget.engine.repeated_sweep.RepeatedSweep` and returns the
:class:`~lr_widget.results.repeated.RepeatedRangeTest`, as ``LRWidget(..., repeats=k)`` does.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, overload

import torch

from lr_widget.curves.arguments import ArgumentTypeError
from lr_widget.diagnostics.confirm import confirm_with
from lr_widget.engine.batches import LossFn
from lr_widget.engine.distributed import is_main_process
from lr_widget.engine.inputs import check_callback, check_save_to, check_stop_event
from lr_widget.engine.recording import StepCallback
from lr_widget.engine.repeated_sweep import RepeatCallback
from lr_widget.engine.runner import RangeTestRunner, make_runner
from lr_widget.engine.sweep import LRFinder
from lr_widget.frameworks import FrameworkLink, adapt
from lr_widget.results.confirmation import check_confirm_options, confirm_centre
from lr_widget.results.protocol import SweepResult
from lr_widget.results.range_test import RangeTestResult
from lr_widget.results.repeated import RepeatedRangeTest


@overload
def find_lr(
    model: torch.nn.Module | Any,
    train_data: Iterable[Any] | None = None,
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    callback: StepCallback | None = None,
    stop_event: threading.Event | None = None,
    save_to: str | os.PathLike[str] | None = None,
    repeats: None = None,
    confirm: bool | Mapping[str, Any] = False,
    **options: Any,
) -> RangeTestResult: ...


@overload
def find_lr(
    model: torch.nn.Module | Any,
    train_data: Iterable[Any] | None = None,
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    callback: RepeatCallback | None = None,
    stop_event: threading.Event | None = None,
    save_to: str | os.PathLike[str] | None = None,
    repeats: int,
    seed: int = 0,
    confirm: bool | Mapping[str, Any] = False,
    **options: Any,
) -> RepeatedRangeTest: ...


def find_lr(
    model: torch.nn.Module | Any,
    train_data: Iterable[Any] | None = None,
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    callback: Any = None,
    stop_event: threading.Event | None = None,
    save_to: str | os.PathLike[str] | None = None,
    repeats: int | None = None,
    confirm: bool | Mapping[str, Any] = False,
    **options: Any,
) -> RangeTestResult | RepeatedRangeTest:
    """Run an LR range test on ``model`` and return its :class:`RangeTestResult`.

    The model, optimizer and (if given) LR scheduler are restored exactly afterwards, whatever
    happens.

    Parameters
    ----------
    model
        Any ``torch.nn.Module``; batches are moved to the device of its parameters. Or a training
        framework's object, swept with the step, data and optimizer it trains with (see
        :mod:`lr_widget.frameworks`): a LightningModule (its ``training_step`` and the first
        optimizer of ``configure_optimizers``; data from ``datamodule=``, ``train_dataloaders=``
        or ``train_data``), a Hugging Face ``Trainer`` (``compute_loss``,
        ``get_train_dataloader()``, ``create_optimizer()``, and accumulation, clipping and mixed
        precision from its ``args``) or a fastai ``Learner`` (``dls.train``, ``loss_func``, its
        optimizer with its LR groups). The object is left as it was; ``update_attr=True`` writes
        the LR found (the confirmation's winner, else the default suggestion) back into it:
        the module's ``lr``/``learning_rate``, ``trainer.args.learning_rate``, ``learn.lr``.
    train_data
        A DataLoader or any re-iterable of batches, iterated again when it runs out (optional for
        a framework object, which brings its own). Batches may
        be ``(x, y)``, ``(x1, ..., y)``, dicts (``{"input_ids": ..., "labels": ...}``), or
        anything a ``step_fn`` understands. A one-shot iterator (a generator) is read in a single
        pass: an endless one is fine, one that runs out before the sweep ends raises
        ``ValueError`` (with the state restored).
    loss_fn
        ``loss_fn(output, target) -> scalar``. ``None`` uses the model's own loss if its output
        carries one (Hugging Face models given ``labels``), else infers cross-entropy (integer
        targets) or MSE (float targets).
    optimizer
        Used as is (hyper-parameters and state; restored afterwards). ``None`` uses AdamW. An
        optimizer whose ``step`` needs a closure (LBFGS) is stepped through one, evaluated on the
        step's batches; the recorded loss is its first evaluation.
    start_lr, end_lr, num_steps, mode
        The sweep: ``num_steps`` LRs from ``start_lr`` to ``end_lr`` inclusive, spaced ``"exp"``
        (log-uniform) or ``"linear"``; each is computed when its step comes.
    callback
        Called with a :class:`StepEvent` after every step; returning ``True`` stops the sweep.
    stop_event
        A ``threading.Event``; setting it stops the sweep after the current step.
    save_to
        A path to write the result to as JSON (what ``LRWidget.from_result`` opens), from the main
        process only: rank 0 under ``torch.distributed``, else the only process.
    repeats
        Run the sweep this many times from the same state, seeded ``seed + i`` (``seed=``, default
        0), and return the :class:`~lr_widget.results.repeated.RepeatedRangeTest` of the runs and
        their noise band (see :class:`~lr_widget.engine.repeated_sweep.RepeatedSweep`); the callback
        then receives :class:`~lr_widget.engine.repeated_sweep.RepeatStepEvent`\\ s.
    train_steps, epochs
        The length of the training the LR is for, in optimizer steps, or in epochs of
        ``train_data`` (converted with its ``len()`` and ``accumulation_steps``): the default
        suggestion reads it, since the best constant LR falls as runs get longer. Not given, it
        assumes :data:`~lr_widget.suggestions.length.ASSUMED_TRAIN_STEPS` and ``summary()`` says
        so. ``result.suggestion_for("constant", train_steps=n)`` answers for another length.
    confirm
        ``True`` (or a dict of :func:`~lr_widget.diagnostics.confirm.confirm_lr` options:
        ``factors``, ``steps``, ``tail``): after the sweep, train short probes at 1/3, 1 and 3 times
        the ``minimum`` rule's LR (:data:`~lr_widget.results.confirmation.CONFIRM_RULE`; on a
        flat curve the default's) from the restored state (restored again after each) and keep
        what they found in ``result.confirmation`` (saved with it);
        ``result.confirmation.winner`` is the LR to take. It costs ``steps`` (30) steps per probe;
        nothing is probed when neither rule has an answer.
    **options
        ``val_data``, ``step_fn``, ``grad_scaler`` (a ``GradScaler``, or ``True`` for a new one),
        ``scheduler`` (an LR scheduler attached to the optimizer: its state is snapshotted and
        restored too; the sweep never steps it), ``distributed`` (``None`` follows an initialised
        process group, see :func:`~lr_widget.engine.distributed.resolve_distributed`),
        ``loss_read_lag`` (steps the host may run ahead before reading a loss; ``None``: 0 on the
        CPU, 1 on an accelerator) and the :class:`~lr_widget.results.settings.SweepSettings` fields:
        ``beta``, ``diverge_factor``, ``batches_per_step``, ``accumulation_steps``,
        ``max_grad_norm``, ``amp_dtype``, ``val_batches``, ``max_skipped_steps``.

    Under ``torch.distributed`` (DDP or FSDP2 under ``torchrun``), call it on every rank with the
    same settings: each rank trains on its own shard, records the mean loss over the ranks, and
    stops at the same step as the others; each rank is restored, and each returns the same curve.

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    >>> data = [(torch.randn(32, 4), torch.randint(0, 3, (32,))) for _ in range(8)]
    >>> result = find_lr(model, data, num_steps=30)
    >>> result.stop_reason.value in {"completed", "diverged"}
    True
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> dataset = TensorDataset(torch.randn(64, 4), torch.randint(0, 3, (64,)))
    >>> loader = DataLoader(dataset, batch_size=16, shuffle=True)  # each run another order
    >>> repeated = find_lr(model, loader, num_steps=20, repeats=2)
    >>> len(repeated.runs), repeated.seeds
    (2, [0, 1])
    """
    confirm_options = _confirm_options(confirm)
    save_path = check_save_to(save_to)
    check_callback(callback)
    check_stop_event(stop_event)
    sweep: dict[str, Any] = {
        "start_lr": start_lr,
        "end_lr": end_lr,
        "num_steps": num_steps,
        "mode": mode,
    }
    inputs = adapt(model, train_data, loss_fn, optimizer, {**sweep, **options})
    runner: RangeTestRunner = make_runner(
        inputs.model, inputs.train_data, inputs.loss_fn, inputs.optimizer, repeats=repeats,
        **inputs.options,
    )  # fmt: skip
    result = runner.run(callback, stop_event)
    if confirm_options is not None:
        confirm_result(result, runner.finder, confirm_options)
    if inputs.update_attr and inputs.link is not None:
        write_back(result, inputs.link)
    if save_path is not None and is_main_process():
        try:
            result.save(save_path)
        except OSError as error:  # the sweep's result is worth more than the file
            warnings.warn(
                f"the sweep finished but its result could not be saved to {save_path}: {error}; "
                "it is returned all the same (result.save(path) to try again)",
                RuntimeWarning,
                stacklevel=2,
            )
    assert isinstance(result, (RangeTestResult, RepeatedRangeTest))
    return result


def write_back(result: SweepResult, link: FrameworkLink) -> str | None:
    """Write the LR ``result`` found (the confirmation's winner, else the default suggestion)
    into the framework object of ``link``; return where, or ``None`` (with a warning) when the
    sweep found no LR to write."""
    lr = result.confirmation.winner if result.confirmation is not None else result.suggestion.lr
    if lr is None:
        warnings.warn(
            f"update_attr=True: nothing written to the {link.name}, the sweep found no LR "
            f"({result.suggestion.reason})",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return link.write_lr(lr)


def confirm_result(result: SweepResult, finder: LRFinder, options: Mapping[str, Any]) -> None:
    """Probe around ``result``'s :func:`~lr_widget.results.confirmation.confirm_centre` (the
    :data:`~lr_widget.results.confirmation.CONFIRM_RULE` LR, or the default's on a flat curve)
    with ``finder``'s model, data and step path, and keep the verdict in ``result``; nothing is
    probed when neither rule has an answer. ``find_lr(confirm=...)`` and ``lr-widget --confirm``
    use it."""
    centre = confirm_centre(result.suggestions())
    if centre is not None and centre.lr is not None:
        result.confirmation = confirm_with(finder, centre.lr, **options)


def _confirm_options(confirm: bool | Mapping[str, Any]) -> dict[str, Any] | None:
    """``confirm=`` as ``confirm_lr`` options, or ``None`` for no confirmation; checked before
    anything runs."""
    if isinstance(confirm, bool):
        return {} if confirm else None
    if not isinstance(confirm, Mapping):
        raise ArgumentTypeError(
            f"confirm must be True, False or a dict of confirm_lr options, got {confirm!r}"
        )
    return check_confirm_options(confirm)
