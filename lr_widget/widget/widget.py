"""``LRWidget``: a live, clickable LR range test in a Jupyter notebook.

A thin facade over parts that each do one job: a :class:`~.session.SweepSession` (engine, sweep
thread, results, kept results; no widgets), a :class:`~.selection.Selection` (the selected LR and
range), :class:`~.targets.LRTargets` (where a selected LR goes), the views drawn by a
:class:`~.display.SweepDisplay`, and :class:`~.events.BrowserEvents` wiring the browser to them.
The sweep thread writes the curves, band, y range, progress and status; the main thread writes
everything else; end-of-sweep work is posted to the main thread.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ipywidgets
import torch
import traitlets

from lr_widget.engine.batches import LossFn
from lr_widget.engine.sweep import LRFinder
from lr_widget.frameworks.link import require_framework
from lr_widget.results.compare import Comparison
from lr_widget.results.confirmation import Confirmation
from lr_widget.results.curvature import CurvatureEstimate
from lr_widget.results.protocol import SweepResult
from lr_widget.results.spread import SuggestionSpread
from lr_widget.suggestions.curve import Suggestion
from lr_widget.suggestions.length import check_train_steps
from lr_widget.suggestions.registry import DEFAULT_RULE, RULES
from lr_widget.widget.controls import Controls
from lr_widget.widget.display import SweepDisplay
from lr_widget.widget.events import BrowserEvents
from lr_widget.widget.plot import LossPlot
from lr_widget.widget.selection import LRRangeTrait, LRTrait, Selection
from lr_widget.widget.session import SweepSession
from lr_widget.widget.support import (
    check_curvature_option,
    check_widget_options,
    comparison_of,
    make_engine,
    optimizer_note,
    read_result,
    widget_tree,
    x_range,
)
from lr_widget.widget.targets import LRTargets

ROOT_CLASS = "lr-widget"
CLOSE_WAIT_S = 5.0
"""How long :meth:`LRWidget.close` waits for a sweep to stop before returning."""


class LRWidget(ipywidgets.VBox):
    """A live LR range test: the loss curve draws while the sweep runs; click to pick an LR.

    Takes the arguments of :func:`lr_widget.find_lr` (``loss_fn``, ``optimizer``, ``val_data``,
    ``step_fn``, ``grad_scaler``, ``start_lr``, ``end_lr``, ``num_steps``, ``mode``, ``beta``...).
    Displaying the widget starts the sweep in a background thread; the cell returns at once. The
    model, optimizer, scaler and RNG streams are restored exactly when the sweep ends, whatever
    ends it (Stop, divergence, an error, :meth:`close`). Hovering a point shows its LR and loss;
    a click selects the recorded LR nearest to it (in log space), a suggestion button that rule's
    LR; each sets :attr:`lr`. With "Select range" on, a drag selects an LR range instead
    (:attr:`lr_range`, for cyclical and one-cycle schedules).

    Parameters
    ----------
    model, train_data, loss_fn, optimizer
        As for :func:`lr_widget.find_lr`. The status line names the optimizer swept (``"AdamW
        (default)"`` when none is given): the LR found is for that optimizer. ``model`` may be a
        LightningModule, a Hugging Face ``Trainer`` or a fastai ``Learner`` (see
        :meth:`from_lightning`, :meth:`from_hf_trainer`, :meth:`from_learner`), swept with its
        own step, data and optimizer; ``update_attr=True`` then writes every selected LR into
        it (:attr:`framework`, :meth:`write_back`).
    result
        A result to show before any sweep (:meth:`from_result` uses it, without a model).
    repeats, seed
        Sweep ``repeats`` times (:class:`~lr_widget.engine.repeated_sweep.RepeatedSweep`, run ``i``
        seeded ``seed + i``; give a shuffling DataLoader): the median of the runs' lag-free fits
        in the band of their spread, :attr:`result` a :class:`~lr_widget.RepeatedRangeTest`,
        robust picks, "real rise" marks.
    curvature
        ``True`` or a dict of :func:`~lr_widget.estimate_curvature` options: estimate the
        sharpness of the starting weights before the first sweep (in the sweep thread) and draw
        its LR stability bound as a dashed vertical line.
    autostart
        Start the sweep when the widget is first displayed (else press Run or call :meth:`run`).
    apply_to, assign_to
        An optimizer, and a notebook variable name, that receive every selected LR
        (:meth:`apply`); nothing is written unless asked.
    update_interval_s
        Least time between two redraws during the sweep (the final state is always drawn).
    train_steps, epochs
        The length of the training the LR is for (optimizer steps, or epochs of ``train_data``):
        the default suggestion reads it (:attr:`train_steps`, the "train steps" box).
    **engine_options
        The other :func:`~lr_widget.find_lr` options.

    Attributes
    ----------
    lr, lr_range
        The selected LR and LR range ``(low, high)`` (recorded LRs), or ``None``: observable
        traits (``w.observe(callback, "lr")``), linked to :attr:`selection`.
    session, selection
        The sweeps and results without widgets (:class:`~.session.SweepSession`); the selected
        LR and range snapped to the recorded LRs (:class:`~.selection.Selection`).
    finder, plot, controls
        The engine (``None`` for a saved result); the figure and controls (they only display).
    framework
        The framework object swept (:class:`~lr_widget.frameworks.FrameworkLink`), or ``None``.

    Notes
    -----
    Clicks and Stop reach the kernel only while no cell runs (the curve keeps drawing). Leave
    the model and optimizer alone while the sweep runs; :meth:`wait` blocks until it ends. DOM
    hooks for browser tests and custom CSS are listed in :mod:`lr_widget.widget`.

    Examples
    --------
    >>> import torch
    >>> from lr_widget import LRWidget
    >>> model = torch.nn.Linear(4, 2)
    >>> data = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(4)]
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> w = LRWidget(model, data, optimizer=optimizer, num_steps=20, autostart=False)
    >>> w.run()  # in a notebook, displaying ``w`` does this
    True
    >>> len(w.wait().lrs)
    20
    >>> w.select(1e-3) == w.lr
    True
    >>> w.apply(optimizer) == optimizer.param_groups[0]["lr"]
    True
    >>> low, high = w.select_range(1e-5, 1e-2)
    >>> w.lr_range == (low, high)
    True
    >>> w.keep("first")
    'first'
    >>> w.close()
    """

    lr = LRTrait()
    lr_range = LRRangeTrait()

    def __init__(
        self,
        model: torch.nn.Module | Any = None,
        train_data: Iterable[Any] | None = None,
        loss_fn: LossFn | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        result: SweepResult | None = None,
        repeats: int | None = None,
        seed: int | None = None,
        curvature: bool | Mapping[str, Any] = False,
        autostart: bool = True,
        apply_to: torch.optim.Optimizer | None = None,
        assign_to: str | None = None,
        update_interval_s: float = 0.15,
        **engine_options: Any,
    ) -> None:
        self._closed = True  # nothing to close until the widget exists (Widget.__del__ closes)
        check_widget_options(result, autostart, apply_to, assign_to, update_interval_s)
        curvature_options = check_curvature_option(curvature)
        engine, inputs = make_engine(
            model, train_data, loss_fn, optimizer, repeats=repeats, seed=seed,
            engine_options=engine_options, has_result=result is not None,
            wants_curvature=curvature_options is not None,
        )  # fmt: skip
        self.session = session = SweepSession(
            engine,
            result,
            curvature_options=curvature_options,
            curvature_inputs=(None, None)
            if inputs is None
            else (inputs.loss_fn, inputs.options.get("step_fn")),
            update_interval_s=update_interval_s,
        )
        self._autostart, self._autostarted = autostart, False
        self.framework = None if inputs is None else inputs.link
        self._targets = LRTargets(
            apply_to,
            assign_to,
            swept_optimizer=self._swept_optimizer,
            framework=self.framework if inputs is not None and inputs.update_attr else None,
        )
        settings = session.settings
        self.plot = LossPlot(*x_range(settings, result))
        self.controls = Controls(dataclasses.replace(settings, beta=session.beta), tuple(RULES))
        self._display = SweepDisplay(
            self.plot, self.controls, optimizer_note(session.finder, result)
        )
        self.selection = Selection(session.recorded_lrs)
        super().__init__(
            children=[self.plot.figure, self.plot.legend.widget, *self.controls.rows()]
        )
        traitlets.link((self.selection, "lr"), (self, "lr"))
        traitlets.link((self.selection, "lr_range"), (self, "lr_range"))
        self._events = BrowserEvents(
            self, session, self.selection, self._display, self._targets,
            is_closed=lambda: self._closed,
        )  # fmt: skip
        session.attach(
            self._display, on_ended=self._events.sweep_ended, on_curvature=self._events.curvature
        )
        self._closed = False
        self.add_class(ROOT_CLASS)
        self._display.set_idle(session)
        self._display.show_initial(session, self.lr, autostart=autostart)

    @classmethod
    def from_result(cls, result: SweepResult | str | os.PathLike[str], **options: Any) -> LRWidget:
        """Show a saved sweep for selection, with no model (Run is disabled): a single or
        repeated result (copied) or the path of either saved as JSON; ``options`` are widget
        options (``apply_to``, ``assign_to``).

        >>> from lr_widget import RangeTestResult
        >>> saved = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0])
        >>> w = LRWidget.from_result(saved)
        >>> w.select(4e-4)
        0.001
        >>> w.close()
        """
        return cls(result=read_result(result), **options)

    @classmethod
    def from_lightning(
        cls,
        module: Any,
        datamodule: Any = None,
        train_dataloaders: Any = None,
        trainer: Any = None,
        **options: Any,
    ) -> LRWidget:
        """The widget on a LightningModule: its ``training_step``, the first optimizer of its
        ``configure_optimizers`` (a scheduler there is restored, never stepped), the data of
        ``datamodule`` or ``train_dataloaders``, and the step settings of ``trainer`` (default:
        the Trainer it is attached to, if any: accumulation, clipping, mixed precision).
        ``update_attr=True`` writes every selected LR to the module's ``lr``/``learning_rate``
        (attribute or hparams), as Lightning's tuner does. ``options`` are those of the widget
        and :func:`~lr_widget.find_lr`.

        In a notebook::

            from lr_widget import LRWidget
            w = LRWidget.from_lightning(module, datamodule=dm, update_attr=True)
            w  # click an LR; module.hparams.lr follows, then Trainer(...).fit(module, dm)
        """
        require_framework(module, "LightningModule", "LRWidget.from_lightning")
        return cls(
            module, datamodule=datamodule, train_dataloaders=train_dataloaders, trainer=trainer,
            **options,
        )  # fmt: skip

    @classmethod
    def from_hf_trainer(cls, trainer: Any, **options: Any) -> LRWidget:
        """The widget on a Hugging Face ``Trainer``: its model and ``compute_loss``, its
        training loader (collator, sampler, batch size), the optimizer ``create_optimizer``
        builds (weight-decay groups), and accumulation, clipping and mixed precision from its
        ``args``; ``update_attr=True`` writes every selected LR to
        ``trainer.args.learning_rate``. ``options`` as for the widget and
        :func:`~lr_widget.find_lr`.

        In a notebook::

            from lr_widget import LRWidget
            w = LRWidget.from_hf_trainer(trainer, epochs=3, update_attr=True)
            w  # click an LR; trainer.args.learning_rate follows, then trainer.train()
        """
        require_framework(trainer, "Hugging Face Trainer", "LRWidget.from_hf_trainer")
        return cls(trainer, **options)

    @classmethod
    def from_learner(cls, learn: Any, **options: Any) -> LRWidget:
        """The widget on a fastai ``Learner``: its model, ``dls.train``, ``loss_func`` and its
        optimizer (from ``opt_func``, its LR groups kept); ``update_attr=True`` writes every
        selected LR to ``learn.lr``. ``options`` as for the widget and
        :func:`~lr_widget.find_lr`.

        In a notebook::

            from lr_widget import LRWidget
            w = LRWidget.from_learner(learn, update_attr=True)
            w  # click an LR; learn.lr follows, then learn.fit_one_cycle(5)
        """
        require_framework(learn, "fastai Learner", "LRWidget.from_learner")
        return cls(learn, **options)

    @classmethod
    def compare(
        cls,
        results_or_paths: Comparison | Iterable[SweepResult | str | os.PathLike[str]],
        labels: Sequence[str] | None = None,
        **options: Any,
    ) -> LRWidget:
        """Show several saved results overlaid, with no model.

        The first (results, paths saved as JSON, or a :class:`~lr_widget.Comparison`; copied)
        is the primary one: drawn as :meth:`from_result` draws it, its suggestions shown and its
        LRs selectable; the others draw as thin lines (a faint band if repeated). All are in
        :attr:`comparison`; ``labels`` default to a comparison's, a file's stem, else "run N".

        >>> from lr_widget import RangeTestResult
        >>> sgd = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0])
        >>> adam = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[0.9, 0.4, 3.0])
        >>> w = LRWidget.compare([sgd, adam], labels=["sgd", "adam"])
        >>> w.comparison.labels
        ['sgd', 'adam']
        >>> w.close()
        """
        comparison = comparison_of(results_or_paths, labels)
        widget = cls(result=comparison[0], **options)
        widget.session.comparison = comparison
        widget.plot.set_primary_label(comparison.labels[0])
        widget._display.draw_session(widget.session, widget.lr, redraw=True)
        return widget

    # -- what there is ----------------------------------------------------------------------
    @property
    def result(self) -> SweepResult | None:
        """The latest result (growing while a sweep runs): a :class:`~lr_widget.RangeTestResult`,
        or with ``repeats`` a :class:`~lr_widget.RepeatedRangeTest` holding the finished runs."""
        return self.session.result

    @property
    def shown_result(self) -> SweepResult | None:
        """:attr:`result` smoothed as the slider says: what the plot and the suggestion
        buttons show (a copy; :attr:`result` itself never changes)."""
        shown = self.session.shown()
        return None if shown is None else shown.result

    @property
    def train_steps(self) -> int | None:
        """The length, in optimizer steps, of the training the default suggestion is for
        (``None``: not known, a length is assumed); the "train steps" box. Setting it moves the
        default suggestion without a new sweep; ``train_steps=`` or ``epochs=`` set it at the
        start."""
        return self.session.train_steps

    @train_steps.setter
    def train_steps(self, value: int | None) -> None:
        steps = check_train_steps(value)
        self.controls.train_steps.value = steps or 0  # its observer re-reads the suggestions

    @property
    def finder(self) -> LRFinder | None:
        """The sweep that trains the model (``None`` for a saved result shown alone)."""
        return self.session.finder

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the latest sweep, or ``None``."""
        return self.session.error

    @property
    def running(self) -> bool:
        """Whether a sweep is in progress (from :meth:`run` until its end is shown)."""
        return self.session.sweeping

    @property
    def suggestions(self) -> dict[str, Suggestion]:
        """The suggestions shown, by rule (empty while a sweep runs); robust picks for repeats."""
        return dict(self.session.settled().suggestions)

    @property
    def spreads(self) -> dict[str, SuggestionSpread]:
        """Each rule's picks across the runs of a repeated result, by rule (else empty)."""
        return dict(self.session.settled().spreads)

    @property
    def comparison(self) -> Comparison:
        """The kept results drawn over the curve."""
        return self.session.comparison

    @property
    def curvature(self) -> CurvatureEstimate | None:
        """The curvature estimate drawn (``curvature=True`` or :meth:`show_curvature`)."""
        return self.session.curvature

    # -- sweeping ---------------------------------------------------------------------------
    def run(self) -> bool:
        """Start a sweep with the slider values in a background thread; ``False`` while one
        runs. ``RuntimeError`` without a model or once closed; ``ValueError``/``TypeError`` for
        invalid slider values (also shown in the status line)."""
        if self.finder is not None and self._closed:
            raise RuntimeError("this LRWidget is closed")
        self._autostarted = True
        try:
            started = self.session.start(self.controls.sweep_changes())
        except (TypeError, ValueError) as error:
            self.controls.show_status(f"cannot run: {error}", error=True)
            raise
        if started:
            self._display.sweep_starting(self.session, self.lr)
        return started

    def stop(self) -> None:
        """Stop after the current step (with repeats: start no further run); the engine
        restores model and optimizer."""
        self.session.stop()  # first: whoever sees the Stop button disable may rely on it
        if self.session.sweeping:
            self.controls.stop_button.disabled = True

    def wait(self, timeout: float | None = None) -> SweepResult | None:
        """Block until the sweep ends and its end is shown; return :attr:`result`. Raises
        ``TimeoutError`` after ``timeout`` seconds, and the exception that ended the sweep."""
        if not (self.session.join(timeout) and self.session.join_probes(timeout)):
            raise TimeoutError(f"the sweep (or confirmation) still runs after {timeout} s")
        if self.session.error is not None:
            raise self.session.error
        return self.result

    def close(self) -> None:
        """Stop the sweep, wait for its end (the state is restored), and close every view.

        The wait is bounded (:data:`CLOSE_WAIT_S`): a sweep inside a slow or hung batch stops,
        and restores the model and optimizer, as soon as that batch returns; a warning says so.
        """
        if self._closed:
            return
        self.stop()  # disables Stop first: whoever watches it may rely on the order
        if not self.session.close(timeout=CLOSE_WAIT_S):
            warnings.warn(
                f"LRWidget.close(): the sweep is inside a batch that has taken over "
                f"{CLOSE_WAIT_S:g} s; it stops, and restores the model and optimizer, as soon as "
                "that batch returns (w.wait() blocks until then)",
                RuntimeWarning,
                stacklevel=2,
            )
        self._closed = True
        for child in widget_tree(self):
            child.close()
        self.plot.close()
        super().close()

    # -- selecting --------------------------------------------------------------------------
    def select(self, lr: float) -> float:
        """Select the recorded LR nearest to ``lr`` in log space (as a click does); return it.
        ``ValueError`` unless ``lr`` is a finite number > 0 and something is recorded."""
        return self.selection.select(lr)

    def select_range(self, low: float, high: float) -> tuple[float, float]:
        """Select the recorded LRs nearest ``low`` and ``high`` (log space) as a range, as a
        drag in range mode does; return it (:attr:`lr_range`). ``ValueError`` if bad or empty."""
        snapped = self.selection.select_range(low, high)
        self.plot.ranges.set_brush(snapped)
        return snapped

    def pick(self, rule: str | None = None, timeout: float | None = None) -> float:
        """The LR to train with: wait for the sweep (starting it if none ran), keep the LR
        selected if any, else select ``rule``'s suggestion (default: the default rule).
        ``ValueError`` if ``rule`` is unknown or has no answer (with the rule's reason)."""
        rule = DEFAULT_RULE if rule is None else rule
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)} or None, got {rule!r}")
        if self.result is None and self.finder is not None and not self.session.sweeping:
            self.run()
        self.wait(timeout)
        if self.lr is None:
            self.lr = self.session.suggested_lr(rule)
        return float(self.lr)

    def confirm(self, lr: float | None = None, **options: Any) -> bool:
        """Confirm ``lr`` (default: the selected LR, else the ``minimum`` rule's, or the default
        rule's on a flat curve: :func:`~lr_widget.results.confirmation.confirm_centre`) by training:
        short probes at 1/3, 1 and 3 times it from the same weights, each restored after
        (:func:`~lr_widget.diagnostics.confirm.confirm_lr` with ``options``), in a background
        thread, as the Confirm button does. When they end, :attr:`confirmation` holds the outcome,
        the status line says it, and a decisive winner becomes :attr:`lr`. ``False`` while a sweep
        or probes run; ``RuntimeError`` without a model, ``ValueError`` without an LR to confirm."""
        if lr is None:
            lr = self.lr if self.lr is not None else self.session.confirm_centre_lr()
        started = self.session.confirm(lr, self._events.confirmed, **options)
        if started:
            self._display.confirm_started(float(lr))
        return started

    @property
    def confirmation(self) -> Confirmation | None:
        """What the latest :meth:`confirm` found (``None`` before it ends)."""
        return self.session.confirmation

    def apply(self, optimizer: torch.optim.Optimizer | None = None) -> float:
        """Write the selected LR into ``optimizer`` (default: ``apply_to``); return it. Every
        parameter group keeps its ratio to the largest LR, as during the sweep."""
        return self._targets.apply(self.lr, optimizer)

    def write_back(self) -> str:
        """Write the selected LR into the framework object swept (a LightningModule's ``lr`` or
        ``learning_rate``, ``trainer.args.learning_rate``, ``learn.lr``), as ``update_attr=True``
        does on every selection; return where it went."""
        if self.framework is None:
            raise ValueError(
                "write_back() writes into a LightningModule, a Hugging Face Trainer or a fastai "
                "Learner, and this widget sweeps a plain model; use apply(optimizer)"
            )
        if self.lr is None:
            raise ValueError("no LR selected yet: click the plot or a suggestion button first")
        if self.session.sweeping:
            raise RuntimeError("a sweep is running and will restore the object; write after it")
        return self.framework.write_lr(self.lr)

    # -- kept results and the curvature -----------------------------------------------------
    def keep(
        self, label: str | None = None, result: SweepResult | str | os.PathLike[str] | None = None
    ) -> str:
        """Keep a copy of the current result on the plot under ``label`` (default "run N"),
        to compare with later sweeps; return the label (see :meth:`SweepSession.keep`).
        ``result`` keeps that one instead: a result of another widget or ``find_lr``, or the
        path of one saved as JSON."""
        kept = self.session.keep(label, None if result is None else read_result(result))
        self._display.draw_kept(self.session)
        return kept

    def clear_kept(self) -> None:
        """Remove every kept result (the whole :attr:`comparison`) from the plot."""
        self.session.clear_kept()
        self._display.draw_kept(self.session)

    def show_curvature(self, estimate: CurvatureEstimate | None) -> None:
        """Draw ``estimate``'s LR bound as a dashed vertical line labelled with
        ``estimate.label``; when the bound does not apply, show its explanation instead.
        ``None`` removes it."""
        if estimate is not None and not isinstance(estimate, CurvatureEstimate):
            raise TypeError(f"estimate must be a CurvatureEstimate or None, got {estimate!r}")
        self.session.show_curvature(estimate)

    # -- display ----------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self._autostart and not self._autostarted and self.finder is not None:
            self._autostarted = True
            self._events.run_quietly()
        return super()._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        picked = "none" if self.lr is None else f"{self.lr:.3e}"
        return f"LRWidget(lr={picked}, result={self.result!r})"

    def _swept_optimizer(self) -> torch.optim.Optimizer | None:
        """The optimizer a running sweep trains (and will restore), if any."""
        return self.finder.optimizer if self.session.sweeping and self.finder else None
