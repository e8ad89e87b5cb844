"""Every contender's range test behind one interface: lr_widget, the anchors, and a bare loop.

A contender is prepared once with a :class:`Setup` (the model, an optimizer factory, the data and
the loss: whatever a user builds anyway, such as fastai's ``Learner`` or Lightning's ``Trainer``,
is built here, untimed) and returns a zero-argument callable that runs the range test itself:
the part the speed benchmark times. The callable returns a :class:`Sweep` with the recorded curve
and, when asked, the tool's own suggestions, read from its real library (nothing re-implemented).

The anchors are imported only inside their functions, so this module imports without them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import tempfile
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

__all__ = [
    "ANCHORS",
    "CONTENDERS",
    "Setup",
    "Sweep",
    "SweepSpec",
    "anchor_versions",
    "prepare",
]

OptimizerFactory = Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]


@dataclass(frozen=True)
class SweepSpec:
    """The sweep every contender is asked to run.

    ``None`` for a field means "the tool's own default" (the quality benchmark scores each tool
    as its users get it); the speed benchmark sets every field, and ``stop_on_divergence=False``
    so that every contender takes exactly ``num_steps`` steps.
    """

    start_lr: float | None = None
    end_lr: float | None = None
    num_steps: int | None = None
    stop_on_divergence: bool = True
    suggest: bool = True
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Setup:
    """What a range test needs: the model, an optimizer factory, the data and the loss."""

    model: nn.Module
    make_optimizer: OptimizerFactory
    train_loader: DataLoader[tuple[Tensor, Tensor]]
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    val_loader: DataLoader[tuple[Tensor, Tensor]] | None = None


@dataclass
class Sweep:
    """What one range test recorded: LRs, losses (as the tool reports them), suggestions."""

    lrs: list[float]
    losses: list[float]
    suggestions: dict[str, float | None] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return len(self.lrs)


Runner = Callable[[], Sweep]

# Each tool's documented defaults, used where a SweepSpec field is None.
DEFAULTS: dict[str, tuple[float, float, int]] = {
    "lr_widget": (1e-7, 10.0, 100),
    "fastai": (1e-7, 10.0, 100),
    "lightning": (1e-8, 1.0, 100),
    "torch-lr-finder": (1e-7, 10.0, 100),  # README: optimizer at lr=1e-7; end_lr defaults to 10
    "bare": (1e-7, 10.0, 100),
}


def _resolve(tool: str, spec: SweepSpec) -> tuple[float, float, int]:
    start, end, steps = DEFAULTS[tool]
    return (
        start if spec.start_lr is None else spec.start_lr,
        end if spec.end_lr is None else spec.end_lr,
        steps if spec.num_steps is None else spec.num_steps,
    )


def exp_schedule(start_lr: float, end_lr: float, num_steps: int) -> list[float]:
    """``num_steps`` LRs spaced evenly in log space from ``start_lr`` to ``end_lr``."""
    ratio = end_lr / start_lr
    return [start_lr * ratio ** (step / (num_steps - 1)) for step in range(num_steps)]


# -- the floor: a plain loop --------------------------------------------------------------------
def prepare_bare(setup: Setup, spec: SweepSpec) -> Runner:
    """A plain training loop taking the same steps at the same LRs, recording each loss.

    It snapshots and restores nothing and suggests nothing: it is the floor every finder is
    measured against.
    """
    start, end, steps = _resolve("bare", spec)
    optimizer = setup.make_optimizer(setup.model.parameters(), start)
    model, loss_fn = setup.model, setup.loss_fn

    def run() -> Sweep:
        lrs = exp_schedule(start, end, steps)
        losses: list[float] = []
        batches = iter(setup.train_loader)
        model.train()
        for lr in lrs:
            try:
                inputs, targets = next(batches)
            except StopIteration:
                batches = iter(setup.train_loader)
                inputs, targets = next(batches)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(inputs), targets)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            losses.append(loss.item())
        return Sweep(lrs, losses)

    return run


# -- lr_widget ----------------------------------------------------------------------------------
def prepare_lr_widget(setup: Setup, spec: SweepSpec) -> Runner:
    """``lr_widget.find_lr`` with the suggestions of every rule."""
    from lr_widget.find import find_lr

    start, end, steps = _resolve("lr_widget", spec)
    optimizer = setup.make_optimizer(setup.model.parameters(), start)
    options = dict(spec.options)
    if not spec.stop_on_divergence:
        options["diverge_factor"] = math.inf
    if setup.val_loader is not None:
        options["val_data"] = setup.val_loader

    def run() -> Sweep:
        result = find_lr(
            setup.model, setup.train_loader, setup.loss_fn, optimizer,
            start_lr=start, end_lr=end, num_steps=steps, **options,
        )  # fmt: skip
        suggestions = {}
        if spec.suggest:
            suggestions = {rule: s.lr for rule, s in result.suggestions().items()}
        return Sweep(list(result.lrs), result.curve.tolist(), suggestions, {"result": result})

    return run


def prepare_lr_widget_suggesting(setup: Setup, spec: SweepSpec) -> Runner:
    """``find_lr`` and then every rule's suggestion: what a script does to get the answer the
    live widget shows, so the baseline of the widget's own cost."""
    return prepare_lr_widget(setup, replace(spec, suggest=True))


_SENT: list[tuple[Any, Any]] = []


def _count_widget_messages() -> list[tuple[Any, Any]]:
    """Record every message a widget sends, in a list the caller clears per sweep.

    The counting wrapper around ``Widget._send`` is installed once per process: a worker prepares
    this contender once per timed repetition, and wrapping the wrapper again each time would put
    one more Python call per nesting level on every message, a cost that grows with the number of
    repetitions and is not the widget's.
    """
    import ipywidgets

    send = ipywidgets.Widget._send
    if getattr(send, "counts_messages", False):
        return _SENT

    def counting_send(widget: Any, msg: dict[str, Any], buffers: Any = None) -> None:
        # Only references while the sweep is timed: sizing a message means serialising it once
        # more, work a notebook does not do, so it happens after the clock stops (see traffic).
        _SENT.append((msg.get("state", {}), buffers))
        send(widget, msg, buffers)

    counting_send.counts_messages = True  # type: ignore[attr-defined]
    ipywidgets.Widget._send = counting_send  # this worker process runs this contender only
    return _SENT


def prepare_lr_widget_live(setup: Setup, spec: SweepSpec) -> Runner:
    """The same sweep as :func:`prepare_lr_widget`, driven by a live ``LRWidget``.

    Outside a kernel, widgets talk to a dummy comm: every update's state is built and its arrays
    turned into buffers as in a notebook, but the comm drops the message before the kernel would
    JSON-encode and sign it (:mod:`benchmarks.widget_cost` pays that part too). Each sweep also
    counts the messages the widget
    sends and the size of the largest one (its JSON state plus binary buffers): the payload a
    browser would receive.
    """
    from lr_widget import LRWidget
    from lr_widget.results.range_test import RangeTestResult

    sent = _count_widget_messages()

    def traffic() -> dict[str, int]:
        sizes = [
            len(json.dumps(state, default=str))
            + sum(memoryview(buffer).nbytes for buffer in buffers or [])
            for state, buffers in sent
        ]
        return {"messages": len(sizes), "max_message_bytes": max(sizes, default=0)}

    start, end, steps = _resolve("lr_widget", spec)
    optimizer = setup.make_optimizer(setup.model.parameters(), start)
    options = dict(spec.options)
    if not spec.stop_on_divergence:
        options["diverge_factor"] = math.inf
    widget = LRWidget(
        setup.model, setup.train_loader, loss_fn=setup.loss_fn, optimizer=optimizer,
        autostart=False, start_lr=start, end_lr=end, num_steps=steps, **options,
    )  # fmt: skip

    def run() -> Sweep:
        sent.clear()
        widget.run()
        widget.wait()
        result = widget.result
        if not isinstance(result, RangeTestResult):  # None, or a repeated sweep's runs
            raise RuntimeError(f"the widget's sweep left {result!r}, not one range test")
        return Sweep(
            list(result.lrs), result.curve.tolist(), {}, {"result": result, "traffic": traffic}
        )

    return run


# -- fastai -------------------------------------------------------------------------------------
def prepare_fastai(setup: Setup, spec: SweepSpec) -> Runner:
    """fastai's ``Learner.lr_find`` on the same model, with the optimizer wrapped by
    ``OptimWrapper``; its four suggestion functions (valley is its default)."""
    from fastai.callback.schedule import minimum, slide, steep, valley
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.optimizer import OptimWrapper

    start, end, steps = _resolve("fastai", spec)
    workdir = tempfile.TemporaryDirectory(prefix="bench-fastai-")
    dls = DataLoaders(setup.train_loader, setup.val_loader or setup.train_loader)

    def opt_func(params: Any, lr: float) -> Any:
        return OptimWrapper(params, opt=setup.make_optimizer, lr=lr)

    learner = Learner(dls, setup.model, loss_func=setup.loss_fn, opt_func=opt_func)
    learner.path = learner.path.__class__(workdir.name)  # its checkpoint goes to a temp dir
    funcs = (valley, minimum, steep, slide) if spec.suggest else None

    def run() -> Sweep:
        with learner.no_bar(), contextlib.redirect_stdout(io.StringIO()):
            found = learner.lr_find(
                start_lr=start, end_lr=end, num_it=steps, stop_div=spec.stop_on_divergence,
                show_plot=False, suggest_funcs=funcs,
            )  # fmt: skip
        lrs = [float(lr) for lr in learner.recorder.lrs]
        losses = [float(loss) for loss in learner.recorder.losses]
        suggestions: dict[str, float | None] = {}
        if found is not None:
            suggestions = {str(k): float(v) for k, v in found._asdict().items()}
        return Sweep(lrs, losses, suggestions, {"workdir": workdir})

    return run


# -- Lightning ----------------------------------------------------------------------------------
def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def prepare_lightning(setup: Setup, spec: SweepSpec) -> Runner:
    """Lightning's ``Tuner.lr_find``; its suggestion is ``lr_finder.suggestion()``."""
    import lightning.pytorch as pl
    from lightning.pytorch.tuner.tuning import Tuner

    _quiet_lightning()
    start, end, steps = _resolve("lightning", spec)

    # Without Lightning installed (the main venv, where mypy runs) its base class is Any.
    class Module(pl.LightningModule):  # type: ignore[misc, unused-ignore]
        def __init__(self) -> None:
            super().__init__()
            self.model = setup.model

        def training_step(self, batch: Any, batch_idx: int) -> Tensor:
            inputs, targets = batch
            return setup.loss_fn(self.model(inputs), targets)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return setup.make_optimizer(self.parameters(), start)

    workdir = tempfile.TemporaryDirectory(prefix="bench-lightning-")
    module = Module()
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=workdir.name,
    )  # fmt: skip

    def run() -> Sweep:
        with contextlib.redirect_stderr(io.StringIO()):  # its own tqdm bar, even when disabled
            finder = _lightning_lr_find()
        suggestions = {"steep": finder.suggestion()} if spec.suggest else {}
        return Sweep(
            list(finder.results["lr"]), list(finder.results["loss"]), suggestions,
            {"workdir": workdir},
        )  # fmt: skip

    def _lightning_lr_find() -> Any:
        return Tuner(trainer).lr_find(
            module, train_dataloaders=setup.train_loader, min_lr=start, max_lr=end,
            num_training=steps, early_stop_threshold=4.0 if spec.stop_on_divergence else None,
            update_attr=False,
        )  # fmt: skip

    return run


# -- torch-lr-finder ----------------------------------------------------------------------------
def prepare_torch_lr_finder(setup: Setup, spec: SweepSpec) -> Runner:
    """torch-lr-finder's ``range_test`` then ``reset`` (its restore), as its README does; its
    suggestion is the one ``plot(suggest_lr=True)`` returns (steepest gradient)."""
    from torch_lr_finder import LRFinder

    start, end, steps = _resolve("torch-lr-finder", spec)
    optimizer = setup.make_optimizer(setup.model.parameters(), start)

    def run() -> Sweep:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            finder = LRFinder(setup.model, optimizer, setup.loss_fn, device="cpu")
            finder.range_test(
                setup.train_loader, start_lr=start, end_lr=end, num_iter=steps,
                diverge_th=5 if spec.stop_on_divergence else math.inf,
            )  # fmt: skip
            finder.reset()
        sweep = Sweep(list(finder.history["lr"]), list(finder.history["loss"]))
        if spec.suggest:
            sweep.suggestions["steep"] = _torch_lr_finder_suggestion(finder)
        return sweep

    return run


def _torch_lr_finder_suggestion(finder: Any) -> float | None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    axes = Figure().subplots()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _, lr = finder.plot(ax=axes, suggest_lr=True)
        except (ValueError, IndexError):  # too few points to suggest
            return None
    return None if lr is None else float(lr)


CONTENDERS: dict[str, Callable[[Setup, SweepSpec], Runner]] = {
    "bare": prepare_bare,
    "bare-again": prepare_bare,  # an A/A control: its ratio to "bare" shows the timing noise
    "lr_widget": prepare_lr_widget,
    "fastai": prepare_fastai,
    "lightning": prepare_lightning,
    "torch-lr-finder": prepare_torch_lr_finder,
    "lr_widget-suggest": prepare_lr_widget_suggesting,
    "lr_widget-live": prepare_lr_widget_live,
}
"""Every contender by name."""

ANCHORS: tuple[str, ...] = ("fastai", "lightning", "torch-lr-finder")
"""The tools users would otherwise pick."""

_DISTRIBUTIONS = {
    "fastai": "fastai",
    "lightning": "lightning",
    "torch-lr-finder": "torch-lr-finder",
}


def prepare(name: str, setup: Setup, spec: SweepSpec) -> Runner:
    """Prepare contender ``name`` (a key of :data:`CONTENDERS`)."""
    if name not in CONTENDERS:
        raise KeyError(f"unknown contender {name!r}; known: {sorted(CONTENDERS)}")
    return CONTENDERS[name](setup, spec)


def anchor_versions() -> dict[str, str | None]:
    """Installed version of each anchor (``None`` when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for anchor, distribution in _DISTRIBUTIONS.items():
        try:
            versions[anchor] = version(distribution)
        except PackageNotFoundError:
            versions[anchor] = None
    return versions
