"""The LR widget's controls: sweep sliders, Run/Stop, suggestion buttons, progress and status;
Keep/Clear for comparisons, the range toggle, and the spread, range and curvature lines.

Ownership follows the widget's threading rule. The main thread owns the sliders, the buttons and
the selection, spread, range and curvature labels; the sweep thread owns the progress bar,
progress text and status line while a sweep runs (:meth:`Controls.show_progress`,
:meth:`Controls.show_status`, :meth:`Controls.show_done`), and the main thread owns them
otherwise.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets

from lr_widget.engine.recording import StepEvent
from lr_widget.engine.repeated_sweep import RepeatStepEvent
from lr_widget.results.curvature import CurvatureEstimate
from lr_widget.results.settings import SweepSettings
from lr_widget.results.spread import Bump, SuggestionSpread
from lr_widget.suggestions.curve import Suggestion
from lr_widget.suggestions.length import ASSUMED_TRAIN_STEPS
from lr_widget.suggestions.registry import DEFAULT_RULE

STATUS_CLASS = "lr-widget-status"
ANSWER_CLASS = "lr-widget-answer"
ALL_RULES_BUTTON = "all rules"
SPREAD_CLASS = "lr-widget-spread"
RANGE_CLASS = "lr-widget-range"
CURVATURE_CLASS = "lr-widget-curvature"
RANGE_BUTTON = "Select range"
CONFIRM_BUTTON = "Confirm"
ERROR_COLOR = "#c62828"

_SLIDER_STYLE = {"description_width": "70px"}
_SLIDER_LAYOUT = {"width": "340px"}


def format_seconds(seconds: float) -> str:
    """A short duration: ``"42 s"``, ``"3 min 5 s"``, ``"1 h 2 min"``.

    >>> format_seconds(185.2)
    '3 min 5 s'
    """
    if not math.isfinite(seconds):
        return "?"
    total = round(max(seconds, 0.0))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def _length_note(train_steps: int | None) -> str:
    """The note beside the "train steps" box: what 0 means.

    >>> _length_note(None) == f"0: unknown, {ASSUMED_TRAIN_STEPS:,} assumed"
    True
    """
    return "" if train_steps else f"0: unknown, {ASSUMED_TRAIN_STEPS:,} assumed"


def format_range(lr_range: tuple[float, float]) -> str:
    """``"range 1.0e-04 – 3.0e-02"``.

    >>> format_range((1e-4, 3e-2))
    'range 1.0e-04 – 3.0e-02'
    """
    low, high = lr_range
    return f"range {low:.1e} – {high:.1e}"


class Controls:
    """The widgets below the plot.

    Parameters
    ----------
    settings
        The initial sweep settings; they set the sliders.
    rules
        One suggestion button per rule, described by the rule name (``"valley"``...).
    """

    def __init__(self, settings: SweepSettings, rules: Sequence[str]) -> None:
        self.start_lr = _lr_slider("start LR", settings.start_lr, settings)
        self.end_lr = _lr_slider("end LR", settings.end_lr, settings)
        self.num_steps = ipywidgets.IntSlider(
            value=settings.num_steps,
            min=2,
            max=max(1000, settings.num_steps),
            description="steps",
            style=_SLIDER_STYLE,
            layout=_SLIDER_LAYOUT,
            continuous_update=False,
        )
        self.beta = ipywidgets.FloatSlider(
            value=settings.beta,
            min=0.0,
            max=max(0.999, settings.beta),
            step=0.001,
            readout_format=".3f",
            description="smoothing",
            tooltip="beta of the debiased EMA; changing it re-smooths the curve, no new sweep",
            style=_SLIDER_STYLE,
            layout=_SLIDER_LAYOUT,
            continuous_update=False,
        )
        self.train_steps = ipywidgets.BoundedIntText(
            value=settings.train_steps or 0,
            min=0,
            max=10**9,
            description="train steps",
            tooltip=f"optimizer steps of the training the LR is for: the default suggestion "
            f"moves with it, no new sweep (0: not known, {ASSUMED_TRAIN_STEPS:,} assumed)",
            style=_SLIDER_STYLE,
            layout={"width": "170px"},
        )
        self.train_steps_note = ipywidgets.Label(value=_length_note(settings.train_steps))
        self.run_button = ipywidgets.Button(
            description="Run", icon="play", button_style="primary", tooltip="start a sweep"
        )
        self.stop_button = ipywidgets.Button(
            description="Stop", icon="stop", disabled=True, tooltip="stop the sweep and restore"
        )
        self.progress = ipywidgets.IntProgress(
            value=0, min=0, max=settings.num_steps, layout={"width": "200px"}
        )
        self.progress_text = ipywidgets.Label(value="")
        self.selection_label = ipywidgets.HTML(value="click the plot to pick a learning rate")
        # The answer, in words, right under the plot: the default's LR and its one-line reason.
        self.answer = ipywidgets.HTML(value="")
        self.answer.add_class(ANSWER_CLASS)
        # The default rule's button first and distinct; the other rules one toggle away.
        ordered = sorted(rules, key=lambda rule: rule != DEFAULT_RULE)
        self.suggestion_buttons = {
            rule: ipywidgets.Button(
                description=rule,
                disabled=True,
                button_style="success" if rule == DEFAULT_RULE else "",
                icon="star" if rule == DEFAULT_RULE else "",
                layout={"width": "auto", "display": None if rule == DEFAULT_RULE else "none"},
            )
            for rule in ordered
        }
        self.all_rules = ipywidgets.ToggleButton(
            value=False,
            description=ALL_RULES_BUTTON,
            icon="list",
            tooltip="show every rule's marker and button, not only the suggested LR",
            layout={"width": "auto"},
        )
        # Hidden while a sweep runs (the buttons would pick the previous result's LRs): one
        # message for the row, where disabling each button and enabling it again sent two per
        # rule per sweep. "hidden", not "none": the row keeps its room, so nothing jumps.
        self.suggestion_row = ipywidgets.HBox(
            [ipywidgets.Label("suggestions:"), *self.suggestion_buttons.values(), self.all_rules],
            layout={"align_items": "center", "flex_flow": "row wrap"},
        )
        self.confirm_button = ipywidgets.Button(
            description=CONFIRM_BUTTON,
            icon="check",
            disabled=True,
            tooltip="train short probes at 1/3, 1 and 3 times the selected LR (else the minimum "
            "rule's) from the same weights, restored after each; a clear winner is selected",
        )
        self.status = ipywidgets.HTML(value="")
        self.status.add_class(STATUS_CLASS)
        self.keep_button = ipywidgets.Button(
            description="Keep",
            icon="thumb-tack",
            disabled=True,
            tooltip="keep this result on the plot, to compare with the next sweeps",
        )
        self.clear_button = ipywidgets.Button(
            description="Clear", icon="times", disabled=True, tooltip="remove the kept results"
        )
        self.range_button = ipywidgets.ToggleButton(
            value=False,
            description=RANGE_BUTTON,
            icon="arrows-h",
            tooltip="drag across the plot to select an LR range (cyclical / one-cycle schedules);"
            " off: click to pick one LR",
        )
        self.range_label = _hideable_html(RANGE_CLASS)
        self.spread_label = _hideable_html(SPREAD_CLASS)
        self.curvature_label = _hideable_html(CURVATURE_CLASS)

    def rows(self) -> list[Any]:
        """The control rows, top to bottom."""
        return [
            self.answer,
            ipywidgets.HBox(
                [
                    self.selection_label,
                    self.suggestion_row,
                    self.confirm_button,
                    # the length of the run moves the default suggestion: beside the answers
                    ipywidgets.HBox(
                        [self.train_steps, self.train_steps_note],
                        layout={"align_items": "center"},
                    ),
                ],
                layout={"align_items": "center", "flex_flow": "row wrap"},
            ),
            self.spread_label,
            ipywidgets.HBox(
                [self.run_button, self.stop_button, self.progress, self.progress_text],
                layout={"align_items": "center"},
            ),
            ipywidgets.HBox(
                [self.range_button, self.range_label, self.keep_button, self.clear_button],
                layout={"align_items": "center", "flex_flow": "row wrap"},
            ),
            ipywidgets.HBox([self.start_lr, self.end_lr]),
            ipywidgets.HBox([self.num_steps, self.beta]),
            self.curvature_label,
            self.status,
        ]

    # -- main thread ------------------------------------------------------------------------
    def sweep_changes(self) -> dict[str, Any]:
        """The slider values as ``LRFinder.configure`` arguments."""
        return {
            "start_lr": float(self.start_lr.value),
            "end_lr": float(self.end_lr.value),
            "num_steps": int(self.num_steps.value),
        }

    def chosen_train_steps(self) -> int | None:
        """The training length typed in, or ``None`` for 0 (not known); the note beside the
        box follows it."""
        steps = int(self.train_steps.value) or None
        note = _length_note(steps)
        if self.train_steps_note.value != note:
            self.train_steps_note.value = note
        return steps

    def set_running(self, running: bool, *, can_run: bool = True, can_keep: bool = True) -> None:
        """Enable the controls that make sense while (not) sweeping; Keep needs a result
        (``can_keep``)."""
        self.run_button.disabled = running or not can_run
        self.stop_button.disabled = not running
        for slider in (self.start_lr, self.end_lr, self.num_steps):
            slider.disabled = running or not can_run
        self.keep_button.disabled = running or not can_keep
        self.confirm_button.disabled = running or not (can_run and can_keep)
        self._show_suggestion_row(not running)

    def _show_suggestion_row(self, show: bool) -> None:
        """Show the suggestion buttons, or hide them if any could be clicked (all disabled, as
        before the first answers, they are left as they are: no message)."""
        layout = self.suggestion_row.layout
        if show and layout.visibility == "hidden":
            layout.visibility = "visible"
        elif not show and any(not button.disabled for button in self.suggestion_buttons.values()):
            layout.visibility = "hidden"

    def set_kept(self, count: int) -> None:
        """Enable Clear while something is kept."""
        self.clear_button.disabled = count == 0
        self.clear_button.tooltip = f"remove the {count} kept result(s)" if count else ""

    def show_suggestions(
        self,
        suggestions: Mapping[str, Suggestion],
        spreads: Mapping[str, SuggestionSpread] | None = None,
    ) -> None:
        """Enable a button per rule with an answer; its tooltip gives the LR and the reason, and
        for repeated runs the spread of the picks (:meth:`SuggestionSpread.describe`)."""
        spreads = spreads or {}
        for rule, button in self.suggestion_buttons.items():
            suggestion, spread = suggestions.get(rule), spreads.get(rule)
            tooltip = "" if suggestion is None else str(suggestion)
            if spread is not None and spread.describe() not in tooltip:
                tooltip = f"{spread.describe()}\n{tooltip}"
            disabled = suggestion is None or suggestion.lr is None
            if (button.disabled, button.tooltip) == (disabled, tooltip):
                continue  # a re-run with the same answers sends nothing
            with button.hold_sync():  # one message, not one per trait
                button.disabled, button.tooltip = disabled, tooltip

    def show_all_rules(self, on: bool) -> None:
        """Show every rule's button (``on``), or only the default's."""
        for rule, button in self.suggestion_buttons.items():
            display = None if on or rule == DEFAULT_RULE else "none"
            if button.layout.display != display:
                button.layout.display = display

    def show_answer(self, answer: Suggestion | None) -> None:
        """The default suggestion in words under the plot: "suggested 3.1e-03 (for_length): its
        reason", or why there is none; empty before any result."""
        if answer is None:
            text = ""
        else:
            head = "no suggestion" if answer.lr is None else f"suggested {answer.lr:.1e}"
            text = (
                f"<b>{head}</b> <span style='opacity: 0.75'>({html.escape(answer.rule)}: "
                f"{html.escape(answer.reason)})</span>"
            )
        if self.answer.value != text:
            self.answer.value = text

    def show_spreads(
        self, spreads: Mapping[str, SuggestionSpread], real_bumps: Sequence[Bump] = ()
    ) -> None:
        """One line per rule's spread over the runs (the default rule first, in bold), then one
        per rise of the median that is larger than the noise; hidden without runs."""
        if not spreads:
            _set_hideable(self.spread_label, "")
            return
        rules = sorted(spreads, key=lambda rule: rule != DEFAULT_RULE)
        lines = [html.escape(spreads[rule].describe()) for rule in rules]
        if DEFAULT_RULE in spreads:
            lines[0] = f"<b>{lines[0]}</b>"
        lines.extend(f"▲ {html.escape(bump.describe())}" for bump in real_bumps)
        _set_hideable(
            self.spread_label, f'<div style="line-height: 1.35">{"<br>".join(lines)}</div>'
        )

    def show_range(self, lr_range: tuple[float, float] | None, hint: str = "") -> None:
        """Show the selected LR range, or ``hint`` (e.g. why a drag selected nothing)."""
        text = "" if lr_range is None else html.escape(format_range(lr_range))
        if hint:
            text = f"{text} <i>({html.escape(hint)})</i>" if text else f"<i>{html.escape(hint)}</i>"
        _set_hideable(self.range_label, text)

    def show_curvature(self, estimate: CurvatureEstimate | None, note: str = "") -> None:
        """The curvature bound's label, or why there is none (its explanation); hidden for
        ``None``. The explanation is also the label's tooltip."""
        if estimate is None:
            _set_hideable(self.curvature_label, html.escape(note))
            return
        text = estimate.label if estimate.applies else f"curvature: {estimate.explanation}"
        suffix = f" ({note})" if note else ""
        _set_hideable(self.curvature_label, html.escape(f"{text}{suffix}"))
        self.curvature_label.tooltip = estimate.explanation

    def show_selection(self, lr: float | None, loss: float | None, on_fit: bool = False) -> None:
        """Show the selected LR, and the loss there on the bold curve, named: the lag-free fit
        the rules read (``on_fit``) or the smoothed loss (while sweeping, past the blow-up)."""
        if lr is None:
            self.selection_label.value = "click the plot to pick a learning rate"
            return
        curve = "the lag-free fit" if on_fit else "the smoothed curve"
        where = "" if loss is None or not math.isfinite(loss) else f" (loss {loss:.4g} on {curve})"
        self.selection_label.value = f"selected LR <b>{lr:.3e}</b>{where}"

    def show_selection_error(self, text: str) -> None:
        """Show why a selection failed (ipywidgets would only log it)."""
        self.selection_label.value = _red(html.escape(text))

    # -- owner of progress and status: the sweep thread while sweeping, else the main thread --
    def reset_progress(self, num_steps: int) -> None:
        """An empty progress bar for a sweep of ``num_steps`` steps."""
        with self.progress.hold_sync():
            self.progress.max = num_steps
            self.progress.value = 0
        self.progress_text.value = ""

    def show_progress(self, event: StepEvent) -> None:
        """Step (and run, when repeated), current LR and loss, and the time left."""
        self.progress.value = event.step + 1
        run, eta_s = "", event.eta_s
        if isinstance(event, RepeatStepEvent):
            run = f"run {event.run + 1}/{event.repeats} · "
            # The runs left after this one take about as long as this one will in all.
            per_run_s = event.elapsed_s / event.fraction_done
            eta_s += (event.repeats - event.run - 1) * per_run_s
        self.progress_text.value = (
            f"{run}step {event.step + 1}/{event.num_steps} · lr {event.lr:.2e} · "
            f"loss {event.loss:.4g} · {format_seconds(eta_s)} left"
        )

    def show_done(self, text: str) -> None:
        """Replace the progress text once the sweep has ended (``"diverged: 92 steps in 3 s"``)
        and fill the bar: the sweep is over, however it ended (a divergence at 92 of 100 steps
        left it at 92%, as if still running)."""
        self.progress_text.value = text
        if self.progress.value != self.progress.max:
            self.progress.value = self.progress.max

    def show_status(self, text: str, *, error: bool = False) -> None:
        """One status line; an error is shown in red."""
        escaped = html.escape(text)
        self.status.value = _red(escaped) if error else escaped


def _hideable_html(dom_class: str) -> Any:
    """An HTML line that takes no room while empty."""
    label = ipywidgets.HTML(value="", layout={"display": "none"})
    label.add_class(dom_class)
    return label


def _set_hideable(label: Any, markup: str) -> None:
    with label.hold_sync():
        label.value = markup
        label.layout.display = None if markup else "none"


def _red(markup: str) -> str:
    return f'<span style="color: {ERROR_COLOR}; font-weight: bold">{markup}</span>'


def _lr_slider(description: str, value: float, settings: SweepSettings) -> Any:
    low = min(-10, math.floor(math.log10(settings.start_lr)))
    high = max(1, math.ceil(math.log10(settings.end_lr)))
    return ipywidgets.FloatLogSlider(
        value=value,
        base=10,
        min=low,
        max=high,
        step=0.1,
        readout_format=".1e",
        description=description,
        style=_SLIDER_STYLE,
        layout=_SLIDER_LAYOUT,
        continuous_update=False,
    )
