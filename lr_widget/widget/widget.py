"""``LRWidget``: a live, clickable LR range test in a Jupyter notebook.

The widget composes the figure (:mod:`.plot`, its overlays in :mod:`.overlays`), the controls
(:mod:`.controls`) and a background sweep (:mod:`.runner`, :mod:`.sweeping`) around an
:class:`~lr_widget.engine.LRFinder` or, with ``repeats=k``, a
:class:`~lr_widget.repeats.RepeatedSweep`; the engine does the range tests, the restoring, the
suggestions, the noise band and the comparisons, the widget only drives and shows them.

Threading: the sweep runs in a thread so the cell returns at once and Stop, clicks and sliders
work during it. The sweep thread writes the curves, band, y range, progress and status; the main
thread writes everything else (selection, range, sliders, buttons, suggestion markers, kept
results, curvature line, ``lr``). End-of-sweep work is posted to the main thread
(:class:`~.runner.MainThreadQueue`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ipywidgets
import torch
import traitlets

from lr_widget.batches import LossFn
from lr_widget.compare import AnyResult, Comparison
from lr_widget.curvature import CurvatureEstimate
from lr_widget.engine import LRFinder
from lr_widget.repeats import RepeatedRangeTest, RepeatedSweep
from lr_widget.result import RangeTestResult
from lr_widget.settings import SweepSettings
from lr_widget.spread import SuggestionSpread
from lr_widget.suggestions import RULES, Suggestion
from lr_widget.validation import require_lr
from lr_widget.widget.controls import Controls
from lr_widget.widget.overlaying import OverlayHalf, default_labels
from lr_widget.widget.plot import LossPlot
from lr_widget.widget.runner import MainThreadQueue, SweepRunner
from lr_widget.widget.selecting import SelectionHalf
from lr_widget.widget.support import (
    check_curvature_option,
    check_widget_options,
    describe_end,
    has_data,
    optimizer_note,
    read_result,
    set_beta,
    settings_of,
    widget_tree,
    x_range,
)
from lr_widget.widget.sweeping import SweepHalf, real_bumps

__all__ = ["ROOT_CLASS", "LRWidget"]

ROOT_CLASS = "lr-widget"


class LRWidget(SweepHalf, SelectionHalf, OverlayHalf, ipywidgets.VBox):
    """A live LR range test: the loss curve draws while the sweep runs; click to pick an LR.

    Takes the arguments of :func:`lr_widget.find_lr` (``loss_fn``, ``optimizer``, ``val_data``,
    ``step_fn``, ``grad_scaler``, ``start_lr``, ``end_lr``, ``num_steps``, ``mode``, ``beta``...).
    Displaying the widget starts the sweep in a background thread; the cell returns at once. The
    model, optimizer, scaler and RNG streams are restored exactly when the sweep ends, whatever
    ends it (Stop, divergence, an error, :meth:`close`).

    Hovering a recorded point of the curve shows its LR and (smoothed) loss. A click on a point
    selects that point, a click elsewhere on the plot the recorded LR nearest to it (in log
    space), a suggestion button that rule's LR; each sets :attr:`lr`. With "Select range" on, a
    drag across the plot selects an LR range instead (:attr:`lr_range`, for cyclical and
    one-cycle schedules); off, clicks pick an LR again.

    Parameters
    ----------
    model, train_data, loss_fn, optimizer
        As for :func:`lr_widget.find_lr`. The status line names the optimizer swept (``"AdamW
        (default)"`` when none is given): the LR found is for that optimizer.
    result
        A result to show before any sweep (:meth:`from_result` uses it, without a model).
    repeats
        Run the sweep this many times (:class:`~lr_widget.repeats.RepeatedSweep`, run ``i``
        seeded ``seed + i``; give a shuffling DataLoader) and show the median curve with the
        band of the runs' spread, growing as runs complete. :attr:`result` is then a
        :class:`~lr_widget.RepeatedRangeTest`, the suggestions are its robust picks (the
        geometric median of the runs' picks), each with the range of the picks, and every rise
        of the median that stands out of the band is marked "real rise". ``None``: one sweep.
    seed
        First seed of the repeated runs (default 0); only with ``repeats``.
    curvature
        Estimate the sharpness of the starting weights before the first sweep (in the sweep
        thread, :func:`~lr_widget.estimate_curvature`, which restores the model itself) and
        draw its LR stability bound as a dashed vertical line; ``True``, or a dict of
        ``estimate_curvature`` options (``num_batches``, ``estimate_second_moment``...).
    autostart
        Start the sweep when the widget is first displayed (else press Run or call :meth:`run`).
    apply_to
        An optimizer that receives every selected LR (:meth:`apply`).
    assign_to
        A variable name: every selected LR is also written to that variable of the notebook
        namespace (``get_ipython().user_ns[assign_to]``); nothing is written unless asked.
    update_interval_s
        Least time between two redraws during the sweep; the final state is always drawn.
    **engine_options
        The other :func:`~lr_widget.find_lr` options (sweep settings, ``val_data``, ``step_fn``,
        ``grad_scaler``).

    Attributes
    ----------
    lr : float or None
        The selected LR; an observable trait: ``w.observe(callback, "lr")``.
    lr_range : tuple of two floats, or None
        The selected LR range ``(low, high)``, both recorded LRs, ``low < high``; an observable
        trait, set by a drag in range mode or :meth:`select_range`.
    comparison : Comparison
        The kept results drawn over the curve (:meth:`keep`, :meth:`clear_kept`, :meth:`compare`).
    finder : LRFinder or None
        The engine (``None`` for a widget built from a saved result).
    plot, controls
        The figure and the control widgets.

    Notes
    -----
    Clicks and Stop reach the kernel only while no cell is running: if another long cell runs
    during a sweep, the curve keeps drawing but clicks and Stop wait for that cell. Leave the
    model and optimizer alone while the sweep runs (it trains them in its thread until it
    restores them); :meth:`wait` blocks until then. Stop ends the current run of a repeated
    sweep and starts no more.

    DOM hooks, stable for browser tests and custom CSS: the widget's root element has the class
    ``lr-widget`` (:data:`ROOT_CLASS`), its status line ``lr-widget-status``, the spread lines
    ``lr-widget-spread``, the range label ``lr-widget-range``, the curvature line
    ``lr-widget-curvature`` (:mod:`~lr_widget.widget.controls`), the hover tooltip
    ``lr-widget-tooltip`` (:data:`~lr_widget.widget.plot.TOOLTIP_CLASS`); the buttons are labelled
    ``Run``, ``Stop``, ``Keep``, ``Clear``, ``Select range`` and with the rule names
    (``valley``...). In the figure, the click overlay is the only ``image``, the hover points are
    the mark right after it, a band is a ``path.area``, and in range mode the brush is the group
    ``g.brushintsel``.

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

    lr = traitlets.Float(None, allow_none=True, help="The selected learning rate.")
    lr_range = traitlets.Tuple(
        traitlets.Float(),
        traitlets.Float(),
        default_value=None,
        allow_none=True,
        help="The selected LR range (low, high), for cyclical and one-cycle schedules.",
    )

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        train_data: Iterable[Any] | None = None,
        loss_fn: LossFn | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        result: AnyResult | None = None,
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
        self._curvature_options = check_curvature_option(curvature)
        self._curvature_inputs = (loss_fn, engine_options.get("step_fn"))
        self._repeated: RepeatedSweep | None = None
        self.finder: LRFinder | None = None
        if model is not None:
            self._make_engine(model, train_data, loss_fn, optimizer, repeats, seed, engine_options)
        elif (
            train_data is not None
            or loss_fn is not None
            or optimizer is not None
            or engine_options
            or repeats is not None
            or seed is not None
            or self._curvature_options is not None
        ):
            raise TypeError("LRWidget got sweep arguments but no model; pass the model first")
        elif result is None:
            raise TypeError(
                "LRWidget needs a model and train_data, or a saved result: "
                "LRWidget(model, train_data, ...) or LRWidget.from_result(result_or_path)"
            )
        settings = self.finder.settings if self.finder is not None else settings_of(result)
        self._loaded_result = result
        self._autostart, self._autostarted = autostart, False
        self._apply_to, self._assign_to = apply_to, assign_to
        self._beta = float(settings.beta if self.finder is not None else _saved_beta(result))
        self._drawn_beta: float | None = None
        self._sweeping = self._apply_pending = self._started = False
        self._error: BaseException | None = None
        self._result_before_run: RangeTestResult | None = None
        self._suggestions: dict[str, Suggestion] = {}
        self._spreads: dict[str, SuggestionSpread] = {}
        self._curvature: CurvatureEstimate | None = None
        self._curvature_tried = False
        self._sweep_started_at = 0.0
        self._primary_label: str | None = None
        self._optimizer_note = optimizer_note(self.finder, result)
        self.comparison = Comparison()
        self._main = MainThreadQueue()
        self._runner = SweepRunner(
            self._run_sweep,
            on_start=self._on_sweep_start,
            on_progress=self._on_sweep_progress,
            on_finish=self._on_sweep_finish,
            interval_s=update_interval_s,
        )
        self.plot = LossPlot(*x_range(settings, result))
        self.controls = Controls(dataclasses.replace(settings, beta=self._beta), tuple(RULES))
        super().__init__(children=[self.plot.figure, *self.controls.rows()])
        self._closed = False
        self.add_class(ROOT_CLASS)
        self._wire()
        self._set_controls_idle()
        self._show_initial_state()

    def _make_engine(
        self,
        model: torch.nn.Module,
        train_data: Iterable[Any] | None,
        loss_fn: LossFn | None,
        optimizer: torch.optim.Optimizer | None,
        repeats: int | None,
        seed: int | None,
        engine_options: dict[str, Any],
    ) -> None:
        if train_data is None:
            raise TypeError("LRWidget(model, train_data, ...) needs train_data")
        if repeats is None:
            if seed is not None:
                raise TypeError("seed= seeds repeated runs; pass repeats=k with it")
            self.finder = LRFinder(model, train_data, loss_fn, optimizer, **engine_options)
            return
        self._repeated = RepeatedSweep(
            model,
            train_data,
            loss_fn,
            optimizer,
            repeats=repeats,
            seed=0 if seed is None else seed,
            **engine_options,
        )
        self.finder = self._repeated.finder

    @classmethod
    def from_result(cls, result: AnyResult | str | os.PathLike[str], **options: Any) -> LRWidget:
        """Show a saved sweep for selection, with no model: Run and the range are disabled.

        Smoothing still works. ``result`` is a :class:`~lr_widget.RangeTestResult` or a
        :class:`~lr_widget.RepeatedRangeTest` (copied, so re-smoothing never changes the
        caller's object) or the path of either saved as JSON. ``options`` are the widget options
        (``apply_to``, ``assign_to``).

        >>> from lr_widget import RangeTestResult
        >>> saved = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0])
        >>> w = LRWidget.from_result(saved)
        >>> w.select(4e-4)
        0.001
        >>> w.close()
        """
        return cls(result=read_result(result), **options)

    @classmethod
    def compare(
        cls,
        results_or_paths: Comparison | Iterable[AnyResult | str | os.PathLike[str]],
        labels: Sequence[str] | None = None,
        **options: Any,
    ) -> LRWidget:
        """Show several saved results overlaid, with no model.

        The first result is the primary one: it draws as :meth:`from_result` draws it (its band
        if repeated), with its suggestions, and clicks, suggestion buttons and ranges select
        among *its* recorded LRs. The others draw as thin lines (a faint band for a repeated
        result), each with its colour and legend entry. All of them, the first included, are
        in :attr:`comparison` under their labels.

        Parameters
        ----------
        results_or_paths
            Single or repeated results, or paths of either saved as JSON
            (:func:`~lr_widget.load_result`), or a :class:`~lr_widget.Comparison` (e.g.
            ``Comparison.load(path)``, or another widget's ``comparison``) with its labels;
            results are copied.
        labels
            One per result; default: a comparison's labels, a path's file name without
            ``.json``, else ``"run N"``.
        **options
            Widget options (``apply_to``, ``assign_to``).

        Examples
        --------
        >>> from lr_widget import RangeTestResult
        >>> sgd = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0])
        >>> adam = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[0.9, 0.4, 3.0])
        >>> w = LRWidget.compare([sgd, adam], labels=["sgd", "adam"])
        >>> w.comparison.labels
        ['sgd', 'adam']
        >>> w.close()
        """
        if isinstance(results_or_paths, Comparison):
            labels = results_or_paths.labels if labels is None else labels
            results_or_paths = results_or_paths.results
        if isinstance(results_or_paths, (str, os.PathLike, RangeTestResult, RepeatedRangeTest)):
            raise TypeError("compare() takes a list of results or paths, not a single one")
        items = list(results_or_paths)
        if not items:
            raise ValueError("compare() needs at least one result or path")
        if labels is not None and len(labels) != len(items):
            raise ValueError(
                f"labels must have one entry per result, got {len(labels)} labels for "
                f"{len(items)} results"
            )
        names = list(labels) if labels is not None else default_labels(items)
        comparison = Comparison()
        for item, name in zip(items, names, strict=True):
            comparison.add(read_result(item), name)
        widget = cls(result=comparison[0], **options)
        widget.comparison = comparison
        widget._primary_label = comparison.labels[0]
        widget.plot.set_primary_label(widget._primary_label)
        widget._redraw(comparison[0])
        widget._draw_kept()
        return widget

    # -- public API (main thread) -----------------------------------------------------------
    @property
    def result(self) -> AnyResult | None:
        """The latest result (growing while a sweep runs): a :class:`~lr_widget.RangeTestResult`,
        or with ``repeats`` a :class:`~lr_widget.RepeatedRangeTest` holding the finished runs."""
        if self._repeated is not None and self._started:
            return self._repeated.result
        if self._repeated is None and self.finder is not None and self.finder.result is not None:
            return self.finder.result
        return self._loaded_result

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the latest sweep, or ``None``."""
        return self._error

    @property
    def running(self) -> bool:
        """Whether a sweep is in progress (from :meth:`run` until its end is shown)."""
        self._main.run_pending()
        return self._sweeping

    @property
    def suggestions(self) -> dict[str, Suggestion]:
        """The suggestions shown, by rule (empty until a sweep ends); robust picks for repeats."""
        return dict(self._suggestions)

    @property
    def spreads(self) -> dict[str, SuggestionSpread]:
        """Each rule's picks across the runs of a repeated result, by rule (else empty)."""
        return dict(self._spreads)

    def run(self) -> bool:
        """Start a sweep with the current slider values, in a background thread.

        Returns ``False`` and does nothing while a sweep is running.

        Raises
        ------
        RuntimeError
            If the widget has no model (built from a result) or is closed.
        ValueError, TypeError
            If the slider values are not valid sweep settings (also shown in the status line).
        """
        self._main.run_pending()
        if self.finder is None:
            raise RuntimeError(
                "this LRWidget shows a saved result and has no model to sweep; build one with "
                "LRWidget(model, train_data, ...) to run"
            )
        if self._closed:
            raise RuntimeError("this LRWidget is closed")
        if self._sweeping:
            return False
        self._autostarted = True
        try:
            settings = self.finder.configure(**self.controls.sweep_changes())
        except (TypeError, ValueError) as error:
            self.controls.show_status(f"cannot run: {error}", error=True)
            raise
        self._runner.join()  # the previous sweep thread has already posted its last work
        self._sweeping, self._started, self._error = True, True, None
        self._result_before_run = self.finder.result
        self.controls.set_running(True)
        self.plot.set_lr_range(*self._x_range(settings, None))
        self.plot.hide_suggestions()
        self._suggestions, self._spreads = {}, {}
        self.controls.show_spreads({})
        self._show_selection()
        self._runner.start()
        return True

    def stop(self) -> None:
        """Stop the sweep after its current step (and, with repeats, start no further run); the
        engine restores model and optimizer."""
        self._runner.stop()  # first: whoever sees the Stop button disable may rely on it
        if self._sweeping:
            self.controls.stop_button.disabled = True

    def wait(self, timeout: float | None = None) -> AnyResult | None:
        """Block until the sweep ends and its end is shown; return :attr:`result`.

        Raises
        ------
        TimeoutError
            If the sweep is still running after ``timeout`` seconds.
        Exception
            The exception that ended the sweep, if any (it is also shown in the widget, kept on
            :attr:`error` and recorded on the run's ``result.error``).
        """
        if not self._runner.join(timeout):
            raise TimeoutError(f"the sweep is still running after {timeout} s")
        self._main.run_pending()
        if self._error is not None:
            raise self._error
        return self.result

    def close(self) -> None:
        """Stop the sweep, wait for its thread (the state is restored), and close every view."""
        if self._closed:
            return
        self.stop()
        self._runner.join()
        self._main.run_pending()
        self._closed = True
        for child in widget_tree(self):
            child.close()
        self.plot.close()
        super().close()

    # -- display ----------------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        if self._autostart and not self._autostarted and self.finder is not None:
            self._autostarted = True
            with contextlib.suppress(TypeError, ValueError, RuntimeError):
                self.run()  # a failure is shown in the status line
        return super()._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        picked = "none" if self.lr is None else f"{self.lr:.3e}"
        return f"LRWidget(lr={picked}, result={self.result!r})"

    # -- wiring and main-thread handlers ----------------------------------------------------
    def _wire(self) -> None:
        controls = self.controls
        self.plot.on_click(self._on_plot_click)
        self.plot.on_range_drag(self._on_range_drag)
        controls.run_button.on_click(lambda _button: self._on_run_click())
        controls.stop_button.on_click(lambda _button: self.stop())
        controls.keep_button.on_click(lambda _button: self._guarded(self.keep))
        controls.clear_button.on_click(lambda _button: self.clear_kept())
        for rule, button in controls.suggestion_buttons.items():
            button.on_click(lambda _button, rule=rule: self._on_suggestion_click(rule))
        controls.range_button.observe(self._on_range_mode, names="value")
        controls.beta.observe(self._on_beta_change, names="value")
        self.observe(self._on_lr_change, names="lr")
        self.observe(self._on_lr_range_change, names="lr_range")

    @traitlets.validate("lr")
    def _validate_lr(self, proposal: dict[str, Any]) -> float | None:
        value = proposal["value"]
        try:
            return None if value is None else require_lr("lr", value)
        except ValueError as error:
            raise traitlets.TraitError(f"{error} (or None)") from None

    @traitlets.validate("lr_range")
    def _validate_lr_range(self, proposal: dict[str, Any]) -> tuple[float, float] | None:
        value = proposal["value"]
        if value is None:
            return None
        low, high = value
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
            raise traitlets.TraitError(
                f"lr_range must be (low, high) with 0 < low < high, or None, got {value!r}"
            )
        return float(low), float(high)

    def _on_run_click(self) -> None:
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            self.run()  # a failure is shown in the status line

    def _on_beta_change(self, change: dict[str, Any]) -> None:
        self._main.run_pending()
        self._beta = float(change["new"])
        if self._sweeping:
            return  # the sweep thread owns the curve: it redraws with the new beta
        result = self.result
        if result is not None:
            set_beta(result, self._beta)
            self._redraw(result)
        self._draw_kept()

    # -- drawing (main thread, when no sweep runs) ------------------------------------------
    def _with_optimizer(self, text: str) -> str:
        return f"{text} · {self._optimizer_note}" if self._optimizer_note else text

    def _set_controls_idle(self) -> None:
        self.controls.set_running(
            False, can_run=self.finder is not None, can_keep=has_data(self.result)
        )

    def _show_initial_state(self) -> None:
        result = self.result
        if result is not None:
            set_beta(result, self._beta)
            self._redraw(result)
            error = not isinstance(result, RepeatedRangeTest) and result.error is not None
            status = f"saved sweep: {describe_end(result)}"
            self.controls.show_status(self._with_optimizer(status), error=error)
        elif self._autostart:
            self.controls.show_status(
                self._with_optimizer("ready: the sweep starts when the widget is displayed")
            )
        else:
            self.controls.show_status(self._with_optimizer("ready: press Run to start the sweep"))

    def _redraw(self, result: AnyResult) -> None:
        self._redraw_result(result)
        self._refresh_suggestions(result)
        self._show_selection()

    def _after_sweep(self, result: AnyResult | None) -> None:
        """Main thread, once a sweep's end is drawn: suggestions, kept results, controls."""
        if result is not None:
            self._refresh_suggestions(result)
        self._draw_kept()
        self._show_selection()
        if not self._closed:
            self._set_controls_idle()
        if self._apply_pending and self._apply_to is not None and self.lr is not None:
            self._apply_pending = False
            self._guarded(lambda: self.apply(self._apply_to))

    def _refresh_suggestions(self, result: AnyResult) -> None:
        bumps = []
        try:
            if isinstance(result, RepeatedRangeTest):
                self._suggestions = result.suggestions() if result.runs else {}
                self._spreads = result.spreads() if result.runs else {}
                bumps = real_bumps(result) if result.runs else []
            else:
                self._suggestions = result.suggestions() if result.num_steps else {}
                self._spreads = {}
        except ValueError:  # a curve the rules reject (e.g. a hand-made result): no markers
            self._suggestions, self._spreads = {}, {}
        self.plot.show_suggestions(self._suggestions)
        self.plot.show_spreads(self._spreads, self._suggestions)
        self.controls.show_suggestions(self._suggestions, self._spreads)
        self.controls.show_spreads(self._spreads, bumps)


def _saved_beta(result: AnyResult | None) -> float:
    run = result.runs[0] if isinstance(result, RepeatedRangeTest) and result.runs else result
    return SweepSettings().beta if run is None or isinstance(run, RepeatedRangeTest) else run.beta
