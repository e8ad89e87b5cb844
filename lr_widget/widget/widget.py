"""``LRWidget``: a live, clickable LR range test in a Jupyter notebook.

The widget composes the figure (:mod:`.plot`), the controls (:mod:`.controls`) and a background
sweep (:mod:`.runner`) around an :class:`~lr_widget.engine.LRFinder`; the engine does the range
test, the restoring and the suggestions, the widget only drives and shows them.

Threading: the sweep runs in a thread so the cell returns at once and Stop, clicks and sliders
work during it. The sweep thread writes the curves, y range, progress and status; the main thread
writes everything else (selection, sliders, buttons, suggestion markers, ``lr``). End-of-sweep
work is posted to the main thread (:class:`~.runner.MainThreadQueue`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
from collections.abc import Iterable
from typing import Any

import ipywidgets
import torch
import traitlets

from lr_widget.batches import LossFn
from lr_widget.engine import LRFinder, StepCallback, StepEvent
from lr_widget.result import RangeTestResult
from lr_widget.schedules import apply_lr, group_lr_ratios
from lr_widget.suggestions import RULES, Suggestion
from lr_widget.widget.controls import Controls
from lr_widget.widget.plot import Curves, LossPlot, nearest_index
from lr_widget.widget.runner import MainThreadQueue, SweepRunner
from lr_widget.widget.support import (
    assign_in_notebook,
    check_widget_options,
    describe_end,
    settings_of,
    status_of,
    widget_tree,
    x_range,
)

__all__ = ["ROOT_CLASS", "LRWidget"]

ROOT_CLASS = "lr-widget"


class LRWidget(ipywidgets.VBox):
    """A live LR range test: the loss curve draws while the sweep runs; click to pick an LR.

    Takes the arguments of :func:`lr_widget.find_lr` (``loss_fn``, ``optimizer``, ``val_data``,
    ``step_fn``, ``grad_scaler``, ``start_lr``, ``end_lr``, ``num_steps``, ``mode``, ``beta``...).
    Displaying the widget starts the sweep in a background thread; the cell returns at once. The
    model, optimizer, scaler and RNG streams are restored exactly when the sweep ends, whatever
    ends it (Stop, divergence, an error, :meth:`close`).

    Hovering a recorded point of the curve shows its LR and (smoothed) loss. A click on a point
    selects that point, a click elsewhere on the plot the recorded LR nearest to it (in log
    space), a suggestion button that rule's LR; each sets :attr:`lr`.

    Parameters
    ----------
    model, train_data, loss_fn, optimizer
        As for :func:`lr_widget.find_lr`.
    result
        A result to show before any sweep (:meth:`from_result` uses it, without a model).
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
    finder : LRFinder or None
        The engine (``None`` for a widget built from a saved result).
    plot, controls
        The figure and the control widgets.

    Notes
    -----
    Clicks and Stop reach the kernel only while no cell is running: if another long cell runs
    during a sweep, the curve keeps drawing but clicks and Stop wait for that cell. Leave the
    model and optimizer alone while the sweep runs (it trains them in its thread until it
    restores them); :meth:`wait` blocks until then.

    DOM hooks, stable for browser tests and custom CSS: the widget's root element has the class
    ``lr-widget`` (:data:`ROOT_CLASS`), its status line ``lr-widget-status``
    (:data:`~lr_widget.widget.controls.STATUS_CLASS`), the hover tooltip ``lr-widget-tooltip``
    (:data:`~lr_widget.widget.plot.TOOLTIP_CLASS`); the buttons are labelled ``Run``, ``Stop``
    and with the rule names (``valley``...). In the figure, the click overlay is the only
    ``image`` and the hover points are the mark right after it.

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
    >>> w.close()
    """

    lr = traitlets.Float(None, allow_none=True, help="The selected learning rate.")

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        train_data: Iterable[Any] | None = None,
        loss_fn: LossFn | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        result: RangeTestResult | None = None,
        autostart: bool = True,
        apply_to: torch.optim.Optimizer | None = None,
        assign_to: str | None = None,
        update_interval_s: float = 0.15,
        **engine_options: Any,
    ) -> None:
        self._closed = True  # nothing to close until the widget exists (Widget.__del__ closes)
        check_widget_options(result, autostart, apply_to, assign_to, update_interval_s)
        self.finder: LRFinder | None = None
        if model is not None:
            if train_data is None:
                raise TypeError("LRWidget(model, train_data, ...) needs train_data")
            self.finder = LRFinder(model, train_data, loss_fn, optimizer, **engine_options)
        elif (
            train_data is not None or loss_fn is not None or optimizer is not None or engine_options
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
        self._beta = float(
            result.beta if self.finder is None and result is not None else settings.beta
        )
        self._drawn_beta: float | None = None
        self._sweeping = self._apply_pending = False
        self._error: BaseException | None = None
        self._result_before_run: RangeTestResult | None = None
        self._suggestions: dict[str, Suggestion] = {}
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
        self.controls.set_running(False, can_run=self.finder is not None)
        self._show_initial_state()

    @classmethod
    def from_result(
        cls, result: RangeTestResult | str | os.PathLike[str], **options: Any
    ) -> LRWidget:
        """Show a saved sweep for selection, with no model: Run and the range are disabled.

        Smoothing still works. ``result`` is a :class:`~lr_widget.RangeTestResult` (copied, so
        re-smoothing never changes the caller's object) or the path of one saved as JSON.
        ``options`` are the widget options (``apply_to``, ``assign_to``).

        >>> from lr_widget import RangeTestResult
        >>> saved = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0])
        >>> w = LRWidget.from_result(saved)
        >>> w.select(4e-4)
        0.001
        >>> w.close()
        """
        if isinstance(result, (str, os.PathLike)):
            loaded = RangeTestResult.load(result)
        elif isinstance(result, RangeTestResult):
            loaded = dataclasses.replace(result)
        else:
            raise TypeError(
                f"result must be a RangeTestResult or the path of a saved one, got {result!r}"
            )
        return cls(result=loaded, **options)

    # -- public API (main thread) -----------------------------------------------------------
    @property
    def result(self) -> RangeTestResult | None:
        """The latest :class:`~lr_widget.RangeTestResult` (growing while a sweep runs)."""
        if self.finder is not None and self.finder.result is not None:
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
        """The suggestions shown, by rule (empty until a sweep ends)."""
        return dict(self._suggestions)

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
        self._sweeping, self._error = True, None
        self._result_before_run = self.finder.result
        self.controls.set_running(True)
        self.plot.set_lr_range(settings.start_lr, settings.end_lr)
        self.plot.hide_suggestions()
        self._suggestions = {}
        self._show_selection()
        self._runner.start()
        return True

    def stop(self) -> None:
        """Stop the sweep after its current step; the engine restores model and optimizer."""
        self._runner.stop()  # first: whoever sees the Stop button disable may rely on it
        if self._sweeping:
            self.controls.stop_button.disabled = True

    def wait(self, timeout: float | None = None) -> RangeTestResult | None:
        """Block until the sweep ends and its end is shown; return :attr:`result`.

        Raises
        ------
        TimeoutError
            If the sweep is still running after ``timeout`` seconds.
        Exception
            The exception that ended the sweep, if any (it is also shown in the widget, kept on
            :attr:`error` and recorded on ``result.error``).
        """
        if not self._runner.join(timeout):
            raise TimeoutError(f"the sweep is still running after {timeout} s")
        self._main.run_pending()
        if self._error is not None:
            raise self._error
        return self.result

    def select(self, lr: float) -> float:
        """Select the recorded LR nearest to ``lr`` in log space (as a click does); return it."""
        lrs = self._recorded_lrs()
        if not lrs:
            raise ValueError("no recorded learning rates to select from yet")
        chosen = lrs[nearest_index(lrs, float(lr))]
        self.lr = chosen
        return chosen

    def apply(self, optimizer: torch.optim.Optimizer | None = None) -> float:
        """Write the selected LR into ``optimizer`` (default: ``apply_to``); return it.

        Every parameter group keeps its ratio to the largest LR (discriminative LRs), as during
        the sweep.
        """
        target = optimizer if optimizer is not None else self._apply_to
        if target is None:
            raise ValueError("apply() needs an optimizer (or build the widget with apply_to=...)")
        if not isinstance(target, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {target!r}")
        if self.lr is None:
            raise ValueError("no LR selected yet: click the plot or a suggestion button first")
        if self._sweeping and self.finder is not None and target is self.finder.optimizer:
            raise RuntimeError(
                "the sweep is using this optimizer and will restore it; apply after it ends"
            )
        apply_lr(target, self.lr, group_lr_ratios(target))
        return float(self.lr)

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
        controls.run_button.on_click(lambda _button: self._on_run_click())
        controls.stop_button.on_click(lambda _button: self.stop())
        for rule, button in controls.suggestion_buttons.items():
            button.on_click(lambda _button, rule=rule: self._on_suggestion_click(rule))
        controls.beta.observe(self._on_beta_change, names="value")
        self.observe(self._on_lr_change, names="lr")

    @traitlets.validate("lr")
    def _validate_lr(self, proposal: dict[str, Any]) -> float | None:
        value = proposal["value"]
        if value is not None and not (math.isfinite(value) and value > 0):
            raise traitlets.TraitError(f"lr must be a finite number > 0 or None, got {value!r}")
        return value  # type: ignore[no-any-return]

    def _on_run_click(self) -> None:
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            self.run()  # a failure is shown in the status line

    def _on_plot_click(self, lr: float) -> None:
        # A point's own LR snaps to itself, so a click on a point selects exactly that point.
        self._main.run_pending()
        if self._recorded_lrs():
            self._guarded(lambda: self.select(lr))

    def _on_suggestion_click(self, rule: str) -> None:
        self._main.run_pending()
        suggestion = self._suggestions.get(rule)
        if suggestion is not None and suggestion.lr is not None:
            self._guarded(lambda: setattr(self, "lr", suggestion.lr))

    def _on_beta_change(self, change: dict[str, Any]) -> None:
        self._main.run_pending()
        self._beta = float(change["new"])
        if self._sweeping:
            return  # the sweep thread owns the curve: it redraws with the new beta
        result = self.result
        if result is not None:
            result.beta = self._beta
            self._redraw(result)

    def _on_lr_change(self, change: dict[str, Any]) -> None:
        self._show_selection()
        if change["new"] is None:
            return
        if self._apply_to is not None:
            if (
                self._sweeping
                and self.finder is not None
                and self._apply_to is self.finder.optimizer
            ):
                self._apply_pending = True  # the sweep would overwrite it: apply at the end
            else:
                self.apply(self._apply_to)
        if self._assign_to is not None:
            assign_in_notebook(self._assign_to, float(change["new"]))

    def _guarded(self, action: Any) -> None:
        """Run a click's action; show an error in the selection label (ipywidgets hides it)."""
        try:
            action()
        except Exception as error:
            self.controls.show_selection_error(f"{type(error).__name__}: {error}")

    # -- drawing (main thread, when no sweep runs) ------------------------------------------
    def _show_initial_state(self) -> None:
        result = self.result
        if result is not None:
            result.beta = self._beta
            self._redraw(result)
            error = result.error is not None
            self.controls.show_status(f"saved sweep: {describe_end(result)}", error=error)
        elif self._autostart:
            self.controls.show_status("ready: the sweep starts when the widget is displayed")
        else:
            self.controls.show_status("ready: press Run to start the sweep")

    def _redraw(self, result: RangeTestResult) -> None:
        self.plot.draw_curves(Curves.of(result, self._beta))
        self._drawn_beta = self._beta
        self._refresh_suggestions(result)
        self._show_selection()

    def _refresh_suggestions(self, result: RangeTestResult) -> None:
        try:
            self._suggestions = result.suggestions() if result.num_steps else {}
        except ValueError:  # a curve the rules reject (e.g. a hand-made result): no markers
            self._suggestions = {}
        self.plot.show_suggestions(self._suggestions)
        self.controls.show_suggestions(self._suggestions)

    def _shown_result(self) -> RangeTestResult | None:
        """The result on the plot: the current sweep's while sweeping, else :attr:`result`."""
        return self._sweep_result() if self._sweeping else self.result

    def _show_selection(self) -> None:
        lr, loss = self.lr, None
        result = self._shown_result()
        if lr is not None and result is not None:
            curves = Curves.of(result, self._beta)
            if curves.lrs.size:
                loss = float(curves.curve[nearest_index(curves.lrs, lr)])
        self.plot.show_selection(lr, loss)
        self.controls.show_selection(lr, loss)

    def _recorded_lrs(self) -> list[float]:
        result = self._shown_result()
        if result is None:
            return []
        count = min(len(result.lrs), len(result.losses))
        return list(result.lrs[:count])

    # -- the sweep: these run in the sweep thread, except _finish_sweep ----------------------
    def _run_sweep(self, callback: StepCallback, stop_event: threading.Event) -> RangeTestResult:
        assert self.finder is not None
        return self.finder.run(callback=callback, stop_event=stop_event)

    def _on_sweep_start(self) -> None:
        assert self.finder is not None
        self.controls.reset_progress(self.finder.settings.num_steps)
        self.controls.show_status("running…")
        self.plot.draw_curves(Curves.of(RangeTestResult(lrs=[], losses=[]), self._beta))

    def _on_sweep_progress(self, event: StepEvent | None) -> None:
        result = self._sweep_result()
        if result is not None:
            beta = self._beta
            self.plot.draw_curves(Curves.of(result, beta))
            self._drawn_beta = beta
        if event is not None:
            self.controls.show_progress(event)

    def _on_sweep_finish(self, error: BaseException | None) -> None:
        self._error = error
        try:
            text, failed = status_of(self._sweep_result(), error)
            self.controls.show_status(text, error=failed)
        finally:
            self._main.post(self._finish_sweep)  # last: the main thread owns everything after

    def _sweep_result(self) -> RangeTestResult | None:
        """The result of the current sweep, once the engine has made it."""
        result = self.finder.result if self.finder is not None else None
        return None if result is self._result_before_run else result

    def _finish_sweep(self) -> None:
        """Main thread: the sweep thread is done with its widgets; show the end of the sweep."""
        self._sweeping = False
        result = self._sweep_result()
        if result is not None:
            result.beta = self._beta
            if self._drawn_beta != self._beta:  # the slider moved after the last redraw
                self.plot.draw_curves(Curves.of(result, self._beta))
                self._drawn_beta = self._beta
            self._refresh_suggestions(result)
        self._show_selection()
        if not self._closed:
            self.controls.set_running(False)
        if self._apply_pending and self._apply_to is not None and self.lr is not None:
            self._apply_pending = False
            self._guarded(lambda: self.apply(self._apply_to))
